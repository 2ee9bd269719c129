//! TCP sockets counted by state through the kernel's `sock_diag` netlink interface, which
//! `ss` uses too.
//!
//! `/proc/net/tcp` and `/proc/net/tcp6` give the same counts, but every read of them walks
//! the whole established-socket hash table with a reschedule check per bucket, and the two
//! files walk it twice each (the read, then the read that finds the end). The table is sized
//! from memory, not from the sockets in use: 262 144 buckets on a 24 GiB machine, where the
//! two files cost about 10 ms of CPU however few sockets there are, most of an agent cycle.
//! One `sock_diag` dump walks the table once, without the per-bucket overhead, for both
//! families (the `TCPDIAG_GETSOCK` request, whose family is left unspecified): about 1.7 ms
//! on that machine.
//!
//! The request builder and the reply parser do no I/O, so they are tested on byte fixtures;
//! [`tcp_states`] is the one function that talks to the kernel.

use std::os::fd::AsFd;

use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink};

/// Kernel TCP states, numbered from 1 (`TCP_ESTABLISHED`) to 12 (`TCP_NEW_SYN_RECV`).
pub(crate) const TCP_STATE_COUNT: usize = 12;

/// Sockets per TCP state (index = state - 1), per address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TcpStates {
    pub ipv4: [u64; TCP_STATE_COUNT],
    pub ipv6: [u64; TCP_STATE_COUNT],
}

/// Why the kernel could not be asked; the caller then reads `/proc/net/tcp` instead.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiagError {
    #[error("sock_diag: {0}")]
    Io(#[from] std::io::Error),
    #[error("sock_diag refused the dump: {0}")]
    Refused(std::io::Error),
    #[error("sock_diag reply malformed: {0}")]
    Malformed(&'static str),
}

// <linux/netlink.h>, <linux/inet_diag.h>
const NLMSG_HEADER_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// The original inet_diag request: unlike `SOCK_DIAG_BY_FAMILY` it takes no family, so one
/// dump (one walk of the hash tables) returns IPv4 and IPv6 sockets alike.
const TCPDIAG_GETSOCK: u16 = 18;
/// `struct inet_diag_req`: family, src_len, dst_len, ext, a 48-byte socket id, states, dbs.
const INET_DIAG_REQ_LEN: usize = 4 + 48 + 4 + 4;
/// Every state from 1 to 12; `TCPF_SYN_RECV` also brings the request sockets
/// (`TCP_NEW_SYN_RECV`), which the kernel reports as `SYN_RECV`, as `/proc/net/tcp` does.
const ALL_STATES: u32 = 0x1ffe;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// The kernel sizes a dump's messages to the largest buffer a reader offered, up to 32 KiB,
/// so this one is never truncated.
const RECEIVE_BUFFER: usize = 32 * 1024;

/// The dump request for every TCP socket of this network namespace, numbered `sequence`.
pub(crate) fn dump_request(sequence: u32) -> [u8; NLMSG_HEADER_LEN + INET_DIAG_REQ_LEN] {
    let mut request = [0u8; NLMSG_HEADER_LEN + INET_DIAG_REQ_LEN];
    let length = request.len() as u32;
    request[0..4].copy_from_slice(&length.to_ne_bytes());
    request[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    request[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request[8..12].copy_from_slice(&sequence.to_ne_bytes());
    // Port id 0: the kernel. The request body is zero (any family, any address) but for
    // the states wanted.
    let states = NLMSG_HEADER_LEN + 4 + 48;
    request[states..states + 4].copy_from_slice(&ALL_STATES.to_ne_bytes());
    request
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// Counts the sockets in one datagram of the reply to request `sequence`. Returns whether
/// the dump is complete (its `NLMSG_DONE` was in this datagram).
pub(crate) fn parse_reply(datagram: &[u8], sequence: u32, counts: &mut TcpStates) -> Result<bool, DiagError> {
    let mut at = 0;
    while at + NLMSG_HEADER_LEN <= datagram.len() {
        let malformed = DiagError::Malformed;
        let length = u32_at(datagram, at).ok_or(malformed("short header"))? as usize;
        let kind = u16_at(datagram, at + 4).ok_or(malformed("short header"))?;
        let message_sequence = u32_at(datagram, at + 8).ok_or(malformed("short header"))?;
        if length < NLMSG_HEADER_LEN || at + length > datagram.len() {
            return Err(malformed("message length outside the datagram"));
        }
        let payload = &datagram[at + NLMSG_HEADER_LEN..at + length];
        // Messages are padded to 4 bytes.
        at += (length + 3) & !3;
        if message_sequence != sequence {
            continue;
        }
        match kind {
            NLMSG_DONE => {
                // A dump that failed half-way ends with a negative errno here.
                let status = payload.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                return if status < 0 { Err(refused(status)) } else { Ok(true) };
            }
            NLMSG_ERROR => {
                let status = payload.get(..4).ok_or(malformed("short error message"))?;
                let status = i32::from_ne_bytes([status[0], status[1], status[2], status[3]]);
                // An error 0 is an acknowledgement, which a dump does not ask for.
                if status < 0 {
                    return Err(refused(status));
                }
            }
            NLMSG_OVERRUN => return Err(malformed("overrun: messages were lost")),
            TCPDIAG_GETSOCK => {
                // `struct inet_diag_msg` opens with the family and the state.
                let (Some(&family), Some(&state)) = (payload.first(), payload.get(1)) else {
                    return Err(malformed("short socket message"));
                };
                let per_state = match family {
                    AF_INET => &mut counts.ipv4,
                    AF_INET6 => &mut counts.ipv6,
                    _ => continue,
                };
                // A state a later kernel adds is not counted rather than failing the cycle.
                if let Some(slot) = usize::from(state).checked_sub(1).and_then(|i| per_state.get_mut(i)) {
                    *slot += 1;
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

fn refused(negative_errno: i32) -> DiagError {
    DiagError::Refused(std::io::Error::from_raw_os_error(negative_errno.saturating_neg()))
}

/// This network namespace's TCP sockets by family and state, in one dump.
pub(crate) fn tcp_states() -> Result<TcpStates, DiagError> {
    let socket = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )
    .map_err(std::io::Error::from)?;
    // A fresh socket per dump: no reply of an earlier, abandoned dump can be waiting on it.
    const SEQUENCE: u32 = 1;
    let request = dump_request(SEQUENCE);
    // Unconnected netlink sockets send to the kernel.
    retry_interrupted(|| rustix::net::send(socket.as_fd(), &request, SendFlags::empty()))?;
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    let mut counts = TcpStates::default();
    loop {
        let (_, length) = retry_interrupted(|| rustix::net::recv(socket.as_fd(), &mut buffer[..], RecvFlags::TRUNC))?;
        if length > buffer.len() {
            return Err(DiagError::Malformed("reply larger than the receive buffer"));
        }
        if length == 0 {
            return Err(DiagError::Malformed("the dump ended without NLMSG_DONE"));
        }
        if parse_reply(&buffer[..length], SEQUENCE, &mut counts)? {
            return Ok(counts);
        }
    }
}

fn retry_interrupted<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> std::io::Result<T> {
    loop {
        match call() {
            Err(Errno::INTR) => continue,
            other => return other.map_err(std::io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One netlink message of `kind` with `payload`, padded as the kernel pads it.
    fn message(kind: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((NLMSG_HEADER_LEN + payload.len()) as u32).to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&0x2u16.to_ne_bytes()); // NLM_F_MULTI
        bytes.extend_from_slice(&sequence.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(payload);
        bytes.resize((bytes.len() + 3) & !3, 0);
        bytes
    }

    /// A `struct inet_diag_msg` (72 bytes) for a socket of `family` in `state`.
    fn socket(sequence: u32, family: u8, state: u8) -> Vec<u8> {
        let mut payload = vec![0u8; 72];
        payload[0] = family;
        payload[1] = state;
        message(TCPDIAG_GETSOCK, sequence, &payload)
    }

    #[test]
    fn request_asks_the_kernel_for_every_state_of_every_family() {
        let request = dump_request(7);
        assert_eq!(request.len(), 76);
        assert_eq!(u32_at(&request, 0), Some(76));
        assert_eq!(u16_at(&request, 4), Some(18));
        assert_eq!(u16_at(&request, 6), Some(0x301));
        assert_eq!(u32_at(&request, 8), Some(7));
        assert_eq!(request[16], 0, "family unspecified: IPv4 and IPv6 in one dump");
        assert_eq!(u32_at(&request, 16 + 52), Some(0x1ffe));
    }

    #[test]
    fn counts_sockets_by_family_and_state_until_done() {
        let mut first = Vec::new();
        for (family, state) in [(AF_INET, 10), (AF_INET, 1), (AF_INET, 1), (AF_INET6, 10), (AF_INET, 6)] {
            first.extend(socket(1, family, state));
        }
        let mut counts = TcpStates::default();
        assert!(!parse_reply(&first, 1, &mut counts).unwrap(), "no NLMSG_DONE yet");
        let mut last = socket(1, AF_INET6, 1);
        last.extend(socket(1, AF_INET, 13)); // a state this code does not know: skipped
        last.extend(socket(1, 1, 1)); // AF_UNIX cannot be in a TCP dump: skipped
        last.extend(message(NLMSG_DONE, 1, &0i32.to_ne_bytes()));
        assert!(parse_reply(&last, 1, &mut counts).unwrap());
        let mut ipv4 = [0; 12];
        (ipv4[0], ipv4[5], ipv4[9]) = (2, 1, 1);
        let mut ipv6 = [0; 12];
        (ipv6[0], ipv6[9]) = (1, 1);
        assert_eq!(counts, TcpStates { ipv4, ipv6 });
    }

    #[test]
    fn messages_of_another_request_are_ignored() {
        let mut datagram = socket(9, AF_INET, 1);
        datagram.extend(socket(1, AF_INET, 1));
        let mut counts = TcpStates::default();
        assert!(!parse_reply(&datagram, 1, &mut counts).unwrap());
        assert_eq!(counts.ipv4[0], 1);
    }

    #[test]
    fn errors_and_damage_are_reported() {
        let mut counts = TcpStates::default();
        let einval = message(NLMSG_ERROR, 1, &(-22i32).to_ne_bytes());
        let error = parse_reply(&einval, 1, &mut counts).unwrap_err();
        assert!(matches!(&error, DiagError::Refused(e) if e.raw_os_error() == Some(22)), "{error}");
        let failed_dump = message(NLMSG_DONE, 1, &(-16i32).to_ne_bytes());
        assert!(matches!(parse_reply(&failed_dump, 1, &mut counts), Err(DiagError::Refused(_))));
        let mut cut = socket(1, AF_INET, 1);
        cut.truncate(40);
        assert!(matches!(parse_reply(&cut, 1, &mut counts), Err(DiagError::Malformed(_))));
        let mut short = message(TCPDIAG_GETSOCK, 1, &[]);
        short.extend(message(NLMSG_DONE, 1, &[]));
        assert!(matches!(parse_reply(&short, 1, &mut counts), Err(DiagError::Malformed(_))));
        assert!(matches!(parse_reply(&message(NLMSG_OVERRUN, 1, &[]), 1, &mut counts), Err(DiagError::Malformed(_))));
        assert_eq!(counts, TcpStates::default(), "nothing counted from the damaged replies");
    }
}
