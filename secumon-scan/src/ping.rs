//! ICMP echo, IPv4 and IPv6: `count` echoes `interval` apart, each waiting up to `timeout`;
//! loss ratio, min/avg/max/stddev round trip and jitter (mean difference between
//! consecutive round trips, as RFC 3550 smooths it, unsmoothed). A raw socket when
//! privileged, the unprivileged ICMP datagram socket otherwise. A round trip runs, as
//! ping's does, from just before the send to the kernel's receive timestamp
//! (SO_TIMESTAMPNS), so a fast link reads microseconds, never zero; the monotonic clock
//! stands in when the kernel gives no timestamp or the wall clock stepped.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use secumon_core::{CheckStatus, Labels};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;

use crate::check::{Check, CheckError, Outcome, resolve};
use crate::spec::required;

/// What a series of echoes found: the details of a `ping` check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct PingStats {
    /// The address pinged.
    pub address: IpAddr,
    /// Echo requests sent.
    pub sent: u32,
    /// Echo replies received.
    pub received: u32,
    /// Lost echoes over those sent, 0 to 1.
    pub loss_ratio: f64,
    /// Round trips in milliseconds; `None` when nothing came back.
    pub min_ms: Option<f64>,
    /// Mean round trip.
    pub avg_ms: Option<f64>,
    /// Longest round trip.
    pub max_ms: Option<f64>,
    /// Standard deviation of the round trips (population).
    pub stddev_ms: Option<f64>,
    /// Mean difference between consecutive round trips; `None` under two replies.
    pub jitter_ms: Option<f64>,
    /// Each echo's round trip, `None` for a lost one.
    pub rtts_ms: Vec<Option<f64>>,
}

impl PingStats {
    /// The statistics of a series of round trips (`None` for each lost echo).
    pub fn from_rtts(address: IpAddr, rtts_ms: Vec<Option<f64>>) -> Self {
        let got: Vec<f64> = rtts_ms.iter().flatten().copied().collect();
        let sent = rtts_ms.len() as u32;
        let received = got.len() as u32;
        let n = got.len() as f64;
        let avg = (!got.is_empty()).then(|| got.iter().sum::<f64>() / n);
        let stddev = avg.map(|avg| (got.iter().map(|r| (r - avg).powi(2)).sum::<f64>() / n).sqrt());
        let jitter =
            (got.len() > 1).then(|| got.windows(2).map(|pair| (pair[1] - pair[0]).abs()).sum::<f64>() / (n - 1.0));
        Self {
            address,
            sent,
            received,
            loss_ratio: if sent == 0 { 0.0 } else { f64::from(sent - received) / f64::from(sent) },
            min_ms: got.iter().copied().reduce(f64::min),
            avg_ms: avg,
            max_ms: got.iter().copied().reduce(f64::max),
            stddev_ms: stddev,
            jitter_ms: jitter,
            rtts_ms,
        }
    }
}

/// An ICMP socket that sends echo requests and reads replies with their kernel timestamps.
struct EchoSocket {
    /// A raw or ICMP datagram socket reads and writes like a UDP one: tokio's UdpSocket
    /// waits on it, and `async_io` lets recvmsg fetch the control messages.
    socket: tokio::net::UdpSocket,
    address: IpAddr,
    /// Raw sockets see every ICMP message (and the IPv4 header); datagram ones only the
    /// replies to their own echoes, with the identifier the kernel chose.
    raw: bool,
}

impl EchoSocket {
    fn open(address: IpAddr) -> Result<Self, CheckError> {
        let (domain, protocol) =
            if address.is_ipv4() { (Domain::IPV4, Protocol::ICMPV4) } else { (Domain::IPV6, Protocol::ICMPV6) };
        let (socket, raw) = match Socket::new(domain, Type::RAW, Some(protocol)) {
            Ok(socket) => (socket, true),
            Err(_) => match Socket::new(domain, Type::DGRAM, Some(protocol)) {
                Ok(socket) => (socket, false),
                Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                    return Err(CheckError::Other(format!(
                        "ICMP is not allowed for this process ({error}): run it with CAP_NET_RAW \
                         (setcap cap_net_raw+ep on the binary) or allow unprivileged ICMP for its group \
                         (sysctl net.ipv4.ping_group_range=\"0 2147483647\")"
                    )));
                }
                Err(error) => return Err(CheckError::Io(error)),
            },
        };
        socket.set_nonblocking(true)?;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket, and a c_int option value of the size given. A kernel that
        // refuses leaves the monotonic clock to time the round trips.
        let _ = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        let socket = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(socket))?;
        Ok(Self { socket, address, raw })
    }

    /// One echo: its round trip in milliseconds, `None` when no reply came in `timeout`.
    async fn echo(&self, ident: u16, seq: u16, timeout: Duration) -> Result<Option<f64>, CheckError> {
        let packet = echo_request(self.address.is_ipv4(), ident, seq);
        let target = SocketAddr::new(self.address, 0);
        // Monotonic first, wall clock second: the kernel's round trip then never exceeds the
        // monotonic one unless the wall clock stepped.
        let sent = Instant::now();
        let sent_wall = SystemTime::now();
        match self.socket.send_to(&packet, target).await {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                return Err(CheckError::Other(format!("ICMP send refused: {error}")));
            }
            Err(error) => {
                tracing::debug!(address = %self.address, %error, "echo not sent");
                return Ok(None);
            }
        }
        let deadline = tokio::time::Instant::from_std(sent + timeout);
        let mut buffer = [0u8; 1500];
        loop {
            let Ok(received) = tokio::time::timeout_at(deadline, self.receive(&mut buffer)).await else {
                return Ok(None);
            };
            let (length, from, stamp) = received?;
            let at = Instant::now();
            if from != Some(self.address) || !self.is_reply(&buffer[..length], ident, seq) {
                continue;
            }
            let monotonic = at.duration_since(sent);
            let kernel = stamp.and_then(|stamp| stamp.duration_since(sent_wall).ok()).filter(|k| *k <= monotonic);
            return Ok(Some(kernel.unwrap_or(monotonic).as_secs_f64() * 1000.0));
        }
    }

    async fn receive(&self, buffer: &mut [u8]) -> io::Result<(usize, Option<IpAddr>, Option<SystemTime>)> {
        let fd = self.socket.as_raw_fd();
        self.socket.async_io(Interest::READABLE, || receive_with_timestamp(fd, buffer)).await
    }

    /// Whether `packet` is the echo reply to (ident, seq).
    fn is_reply(&self, packet: &[u8], ident: u16, seq: u16) -> bool {
        let icmp = if self.raw && self.address.is_ipv4() {
            let header = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
            packet.get(header..).unwrap_or_default()
        } else {
            packet
        };
        let reply_type = if self.address.is_ipv4() { 0 } else { 129 };
        let word = |at: usize| icmp.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        icmp.first() == Some(&reply_type)
            && word(6) == Some(seq)
            // A datagram socket's identifier is the kernel's, and only its replies reach it.
            && (!self.raw || word(4) == Some(ident))
    }
}

/// recvmsg with the source address and the SCM_TIMESTAMPNS control message.
fn receive_with_timestamp(
    fd: std::os::fd::RawFd,
    buffer: &mut [u8],
) -> io::Result<(usize, Option<IpAddr>, Option<SystemTime>)> {
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 16];
    let mut vector = libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: buffer.len() };
    // SAFETY: as above.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    message.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    message.msg_iov = &mut vector;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `message` points at a live buffer of the length it gives.
    let length = unsafe { libc::recvmsg(fd, &mut message, 0) };
    if length < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: the kernel wrote `msg_controllen` bytes of control messages into `control`;
    // the CMSG_* macros walk within them, and the timestamp is read unaligned.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&message);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_TIMESTAMPNS {
                let time: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(header).cast());
                if let (Ok(seconds), Ok(nanos)) = (u64::try_from(time.tv_sec), u32::try_from(time.tv_nsec)) {
                    stamp = Some(SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos));
                }
            }
            header = libc::CMSG_NXTHDR(&message, header);
        }
    }
    let from = match i32::from(name.ss_family) {
        // SAFETY: the family says which sockaddr the kernel wrote into the storage.
        libc::AF_INET => {
            let v4: libc::sockaddr_in = unsafe { std::ptr::read((&name as *const libc::sockaddr_storage).cast()) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            let v6: libc::sockaddr_in6 = unsafe { std::ptr::read((&name as *const libc::sockaddr_storage).cast()) };
            Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
        }
        _ => None,
    };
    Ok((length as usize, from, stamp))
}

/// An echo request: the IPv4 checksum computed here, ICMPv6's by the kernel (it covers a
/// pseudo-header with addresses only the kernel knows).
fn echo_request(ipv4: bool, ident: u16, seq: u16) -> Vec<u8> {
    let mut packet = vec![if ipv4 { 8 } else { 128 }, 0, 0, 0];
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend((0..56u8).map(|i| i.wrapping_add(0x10)));
    if ipv4 {
        let mut sum: u32 =
            packet.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        packet[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
    packet
}

/// Sends `count` echoes to `address`.
pub async fn ping(address: IpAddr, count: u32, interval: Duration, timeout: Duration) -> Result<PingStats, CheckError> {
    let socket = EchoSocket::open(address)?;
    let ident = fastrand::u16(..);
    let mut rtts = Vec::with_capacity(count as usize);
    for seq in 0..count {
        if seq > 0 {
            tokio::time::sleep(interval).await;
        }
        rtts.push(socket.echo(ident, seq as u16, timeout).await?);
    }
    Ok(PingStats::from_rtts(address, rtts))
}

/// A ping check: critical when every echo is lost, warning above `warn_loss` or
/// `warn_rtt`.
#[derive(Debug, Clone)]
pub struct PingCheck {
    /// The check's name in the configuration.
    pub id: String,
    /// The host name or address pinged.
    pub host: String,
    /// Echoes per run (5).
    pub count: u32,
    /// Pause between echoes (200 ms).
    pub interval: Duration,
    /// How long each reply is awaited (1 s).
    pub timeout: Duration,
    /// A loss ratio above this is a warning (0.2).
    pub warn_loss: f64,
    /// A mean round trip above this is a warning (none).
    pub warn_rtt: Option<Duration>,
}

impl PingCheck {
    /// 5 echoes 200 ms apart, 1 s timeout, warning above 20 % loss.
    pub fn new(id: impl Into<String>, host: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            host: host.into(),
            count: 5,
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            warn_loss: 0.2,
            warn_rtt: None,
        }
    }
}

/// A `ping` check as configured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PingSpec {
    /// Name or address to ping.
    pub host: Option<String>,
    /// Echo requests per run (5).
    pub count: Option<u32>,
    /// Warning above this ratio of lost echoes (0.2).
    pub warn_loss: Option<f64>,
    /// Warning above this average round trip.
    #[serde(default, with = "humantime_serde")]
    pub warn_rtt: Option<Duration>,
    /// Pause between echo requests (200 ms).
    #[serde(default, with = "humantime_serde")]
    pub echo_interval: Option<Duration>,
    /// How long each echo reply is awaited (1 s).
    #[serde(default, with = "humantime_serde")]
    pub echo_timeout: Option<Duration>,
}

impl PingSpec {
    pub(crate) fn build(self, id: String, kind: &str) -> Result<Box<dyn Check>, CheckError> {
        let defaults = PingCheck::new(id, required(self.host, kind, "host")?);
        Ok(Box::new(PingCheck {
            count: self.count.unwrap_or(defaults.count).max(1),
            warn_loss: self.warn_loss.unwrap_or(defaults.warn_loss),
            warn_rtt: self.warn_rtt,
            interval: self.echo_interval.unwrap_or(defaults.interval),
            timeout: self.echo_timeout.unwrap_or(defaults.timeout),
            ..defaults
        }))
    }
}

#[async_trait]
impl Check for PingCheck {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "ping"
    }

    fn target(&self) -> String {
        self.host.clone()
    }

    async fn execute(&self) -> Result<Outcome, CheckError> {
        let address = resolve(&self.host).await?[0];
        let stats = ping(address, self.count, self.interval, self.timeout).await?;
        let slow = self.warn_rtt.zip(stats.avg_ms).is_some_and(|(limit, avg)| avg > limit.as_secs_f64() * 1000.0);
        let status = if stats.received == 0 {
            CheckStatus::Critical
        } else if stats.loss_ratio > self.warn_loss || slow {
            CheckStatus::Warning
        } else {
            CheckStatus::Ok
        };
        let mut outcome =
            Outcome::new(status, stats.clone()).sample("ping_loss_ratio", Labels::new(), stats.loss_ratio);
        for (name, value) in [
            ("ping_rtt_min_seconds", stats.min_ms),
            ("ping_rtt_avg_seconds", stats.avg_ms),
            ("ping_rtt_max_seconds", stats.max_ms),
            ("ping_rtt_stddev_seconds", stats.stddev_ms),
            ("ping_jitter_seconds", stats.jitter_ms),
        ] {
            if let Some(ms) = value {
                outcome = outcome.sample(name, Labels::new(), ms / 1000.0);
            }
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_from_round_trips() {
        let stats = PingStats::from_rtts("192.0.2.1".parse().unwrap(), vec![Some(10.0), None, Some(14.0), Some(12.0)]);
        assert_eq!((stats.sent, stats.received, stats.loss_ratio), (4, 3, 0.25));
        assert_eq!((stats.min_ms, stats.avg_ms, stats.max_ms), (Some(10.0), Some(12.0), Some(14.0)));
        assert!((stats.stddev_ms.unwrap() - (8.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert_eq!(stats.jitter_ms, Some(3.0), "(|14-10| + |12-14|) / 2");
        let lost = PingStats::from_rtts("192.0.2.1".parse().unwrap(), vec![None, None]);
        assert_eq!((lost.loss_ratio, lost.avg_ms, lost.jitter_ms), (1.0, None, None));
    }

    #[test]
    fn details_keep_their_json() {
        let stats = PingStats::from_rtts("192.0.2.1".parse().unwrap(), vec![Some(10.0), None, Some(14.0), None]);
        crate::details::assert_wire(
            "ping",
            stats.into(),
            serde_json::json!({
                "address": "192.0.2.1", "sent": 4, "received": 2, "loss_ratio": 0.5, "min_ms": 10.0, "avg_ms": 12.0,
                "max_ms": 14.0, "stddev_ms": 2.0, "jitter_ms": 4.0, "rtts_ms": [10.0, null, 14.0, null],
            }),
        );
        let lost = PingStats::from_rtts("::1".parse().unwrap(), vec![None]);
        crate::details::assert_wire(
            "ping",
            lost.into(),
            serde_json::json!({
                "address": "::1", "sent": 1, "received": 0, "loss_ratio": 1.0, "min_ms": null, "avg_ms": null,
                "max_ms": null, "stddev_ms": null, "jitter_ms": null, "rtts_ms": [null],
            }),
        );
    }

    #[tokio::test]
    async fn loopback_answers_on_ipv4_and_ipv6() {
        for host in ["127.0.0.1", "::1"] {
            let check = PingCheck { count: 3, interval: Duration::from_millis(20), ..PingCheck::new("lo", host) };
            let result = crate::run_check(&check, Duration::from_secs(10)).await;
            assert_eq!(result.status, CheckStatus::Ok, "{host}: {}", result.details);
            assert_eq!(result.details["received"], 3);
            assert!(result.samples.iter().any(|s| s.series.name == "ping_rtt_avg_seconds"));
        }
    }

    #[test]
    fn echo_requests_are_well_formed() {
        let v4 = echo_request(true, 0x1234, 7);
        let sum: u32 = v4.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
        assert_eq!((sum & 0xffff) + (sum >> 16), 0xffff, "a correct checksum sums to all ones");
        assert_eq!(&v4[..1], &[8]);
        assert_eq!(&v4[4..8], &[0x12, 0x34, 0, 7]);
        assert_eq!(echo_request(false, 1, 2)[0], 128);
    }
}
