//! The wire side of TLS analysis, with no TLS library: a ClientHello for one protocol
//! version offering chosen suites, and a parser for what comes back (ServerHello,
//! HelloRetryRequest, the certificates and key exchange of TLS ≤ 1.2, or an alert). The
//! parser takes any bytes a server sends, so it never panics (it is fuzzed).

use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Protocol versions, by their wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Version {
    /// SSL 3.0.
    #[serde(rename = "SSLv3")]
    Ssl3,
    /// TLS 1.0.
    #[serde(rename = "TLSv1.0")]
    Tls10,
    /// TLS 1.1.
    #[serde(rename = "TLSv1.1")]
    Tls11,
    /// TLS 1.2.
    #[serde(rename = "TLSv1.2")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 5] = [Self::Ssl3, Self::Tls10, Self::Tls11, Self::Tls12, Self::Tls13];

    /// The version's wire code (`0x0303` for TLS 1.2).
    pub fn code(self) -> u16 {
        match self {
            Self::Ssl3 => 0x0300,
            Self::Tls10 => 0x0301,
            Self::Tls11 => 0x0302,
            Self::Tls12 => 0x0303,
            Self::Tls13 => 0x0304,
        }
    }

    /// The version of a wire code, if it is one of these.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.code() == code)
    }

    /// `SSLv3`, `TLSv1.0`... as the details name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ssl3 => "SSLv3",
            Self::Tls10 => "TLSv1.0",
            Self::Tls11 => "TLSv1.1",
            Self::Tls12 => "TLSv1.2",
            Self::Tls13 => "TLSv1.3",
        }
    }
}

/// Named groups we offer, most preferred first.
pub const GROUPS: &[u16] = &[29, 23, 24, 25, 30, 256, 257, 258];

pub fn group_name(group: u16) -> String {
    match group {
        23 => "secp256r1".into(),
        24 => "secp384r1".into(),
        25 => "secp521r1".into(),
        29 => "x25519".into(),
        30 => "x448".into(),
        256 => "ffdhe2048".into(),
        257 => "ffdhe3072".into(),
        258 => "ffdhe4096".into(),
        other => format!("0x{other:04x}"),
    }
}

/// A ClientHello offering `suites` for exactly `version`.
pub fn client_hello(version: Version, suites: &[u16], server_name: Option<&str>) -> Vec<u8> {
    let mut body = Vec::with_capacity(512);
    // TLS 1.3 is negotiated by extension; the legacy field says 1.2.
    body.extend_from_slice(&version.code().min(0x0303).to_be_bytes());
    body.extend((0..32).map(|_| fastrand::u8(..)));
    if version == Version::Tls13 {
        body.push(32);
        body.extend((0..32).map(|_| fastrand::u8(..)));
    } else {
        body.push(0);
    }
    let mut offered: Vec<u16> = suites.to_vec();
    if version != Version::Tls13 {
        offered.push(0x00ff); // renegotiation SCSV, as real clients send
    }
    push_u16(&mut body, (offered.len() * 2) as u16);
    for suite in offered {
        push_u16(&mut body, suite);
    }
    body.extend_from_slice(&[1, 0]); // compression: null only

    if version != Version::Ssl3 {
        let mut extensions = Vec::new();
        if let Some(name) = server_name.filter(|n| n.parse::<std::net::IpAddr>().is_err()) {
            let mut list = vec![0];
            push_u16(&mut list, name.len() as u16);
            list.extend_from_slice(name.as_bytes());
            let mut data = Vec::new();
            push_u16(&mut data, list.len() as u16);
            data.extend(list);
            extension(&mut extensions, 0, &data);
        }
        let mut groups = Vec::new();
        push_u16(&mut groups, (GROUPS.len() * 2) as u16);
        GROUPS.iter().for_each(|g| push_u16(&mut groups, *g));
        extension(&mut extensions, 10, &groups);
        extension(&mut extensions, 11, &[1, 0]);
        let signature_algorithms: &[u16] = &[
            0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0203, 0x0201,
            0x0402, 0x0202,
        ];
        let mut algorithms = Vec::new();
        push_u16(&mut algorithms, (signature_algorithms.len() * 2) as u16);
        signature_algorithms.iter().for_each(|a| push_u16(&mut algorithms, *a));
        extension(&mut extensions, 13, &algorithms);
        extension(&mut extensions, 23, &[]); // extended master secret
        extension(&mut extensions, 5, &[1, 0, 0, 0, 0]); // OCSP stapling, please
        if version == Version::Tls13 {
            extension(&mut extensions, 43, &[2, 0x03, 0x04]);
            extension(&mut extensions, 45, &[1, 1]);
            // A share for x25519 only; a server preferring another group asks again (HRR).
            let mut share = Vec::new();
            push_u16(&mut share, 36);
            push_u16(&mut share, 29);
            push_u16(&mut share, 32);
            share.extend((0..32).map(|_| fastrand::u8(..)));
            extension(&mut extensions, 51, &share);
        }
        push_u16(&mut body, extensions.len() as u16);
        body.extend(extensions);
    }

    let mut handshake = vec![1];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![22];
    record.extend_from_slice(&version.code().min(0x0301).to_be_bytes());
    push_u16(&mut record, handshake.len() as u16);
    record.extend(handshake);
    record
}

fn push_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    push_u16(out, kind);
    push_u16(out, data.len() as u16);
    out.extend_from_slice(data);
}

/// What a server answered to one ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerAnswer {
    /// The version and suite the server chose, when it accepted.
    pub accepted: Option<(Version, u16)>,
    /// The choice came in a TLS 1.3 HelloRetryRequest (the server wants another key share).
    pub retry_request: bool,
    /// The group of the key exchange, when the handshake shows it.
    pub group: Option<u16>,
    /// Bits of the finite-field DH prime (TLS ≤ 1.2 DHE).
    pub dh_bits: Option<u32>,
    /// Certificates sent in the clear (TLS ≤ 1.2), leaf first.
    pub certificates: Vec<Vec<u8>>,
    /// A stapled OCSP response (TLS ≤ 1.2), DER.
    pub ocsp_response: Option<Vec<u8>>,
    /// A fatal alert the server sent instead.
    pub alert: Option<u8>,
}

const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11,
    0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Reads a server's records (as many as are complete in `bytes`) into an answer; `done`
/// tells whether more bytes could change it.
pub fn parse_answer(bytes: &[u8]) -> (ServerAnswer, bool) {
    let mut answer = ServerAnswer::default();
    let mut handshake = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 5 {
        let (kind, length) = (rest[0], usize::from(u16::from_be_bytes([rest[3], rest[4]])));
        let Some(fragment) = rest.get(5..5 + length) else { break };
        match kind {
            21 if fragment.len() >= 2 => {
                answer.alert = Some(fragment[1]);
                return (answer, true);
            }
            22 => handshake.extend_from_slice(fragment),
            // Anything else before the handshake ends (ChangeCipherSpec in TLS 1.3 compat
            // mode, encrypted records) means the clear part is over.
            _ => return (parse_handshakes(&handshake, answer), true),
        }
        rest = &rest[5 + length..];
    }
    let answer = parse_handshakes(&handshake, answer);
    // Done when the server said its last clear word: ServerHelloDone, or a TLS 1.3 hello.
    let done = answer.accepted.is_some_and(|(v, _)| v == Version::Tls13)
        || answer.retry_request
        || ends_with_hello_done(&handshake);
    if !bytes.is_empty() && bytes[0] != 21 && bytes[0] != 22 {
        return (answer, true); // not TLS at all
    }
    (answer, done)
}

fn ends_with_hello_done(handshake: &[u8]) -> bool {
    let mut rest = handshake;
    while rest.len() >= 4 {
        let length = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
        if rest[0] == 14 {
            return true;
        }
        let Some(next) = rest.get(4 + length..) else { return false };
        rest = next;
    }
    false
}

fn parse_handshakes(handshake: &[u8], mut answer: ServerAnswer) -> ServerAnswer {
    let mut rest = handshake;
    let mut suite = 0u16;
    while rest.len() >= 4 {
        let length = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
        let Some(message) = rest.get(4..4 + length) else { break };
        match rest[0] {
            2 => {
                if let Some((version, chosen, retry, group)) = server_hello(message) {
                    suite = chosen;
                    answer.accepted = Some((version, chosen));
                    answer.retry_request = retry;
                    answer.group = group;
                }
            }
            11 => answer.certificates = certificates(message).unwrap_or_default(),
            // CertificateStatus: type 1 (OCSP), then the DER OCSPResponse.
            22 if message.first() == Some(&1) => answer.ocsp_response = message.get(4..).map(<[u8]>::to_vec),
            12 => {
                let name = super::suites::name(suite);
                if name.starts_with("TLS_ECDHE_") {
                    // curve_type 3 (named_curve), then the group.
                    if message.first() == Some(&3) && message.len() >= 3 {
                        answer.group = Some(u16::from_be_bytes([message[1], message[2]]));
                    }
                } else if name.starts_with("TLS_DHE_") && message.len() >= 2 {
                    let prime = usize::from(u16::from_be_bytes([message[0], message[1]]));
                    let leading =
                        message.get(2..2 + prime).map(|p| p.iter().take_while(|b| **b == 0).count()).unwrap_or(0);
                    answer.dh_bits = Some(((prime - leading.min(prime)) * 8) as u32);
                }
            }
            _ => {}
        }
        rest = &rest[4 + length..];
    }
    answer
}

/// (version, suite, is a HelloRetryRequest, key share group).
fn server_hello(message: &[u8]) -> Option<(Version, u16, bool, Option<u16>)> {
    let legacy = u16::from_be_bytes([*message.first()?, *message.get(1)?]);
    let random = message.get(2..34)?;
    let session_length = usize::from(*message.get(34)?);
    let mut at = 35 + session_length;
    let suite = u16::from_be_bytes([*message.get(at)?, *message.get(at + 1)?]);
    at += 3; // suite and compression method
    let mut version = legacy;
    let mut group = None;
    if let Some(length) = message.get(at..at + 2) {
        let end = (at + 2 + usize::from(u16::from_be_bytes([length[0], length[1]]))).min(message.len());
        let mut extensions = message.get(at + 2..end)?;
        while extensions.len() >= 4 {
            let kind = u16::from_be_bytes([extensions[0], extensions[1]]);
            let size = usize::from(u16::from_be_bytes([extensions[2], extensions[3]]));
            let data = extensions.get(4..4 + size)?;
            match kind {
                43 if data.len() >= 2 => version = u16::from_be_bytes([data[0], data[1]]),
                51 if data.len() >= 2 => group = Some(u16::from_be_bytes([data[0], data[1]])),
                _ => {}
            }
            extensions = &extensions[4 + size..];
        }
    }
    Some((Version::from_code(version)?, suite, random == HRR_RANDOM, group))
}

fn certificates(message: &[u8]) -> Option<Vec<Vec<u8>>> {
    let total = u32::from_be_bytes([0, *message.first()?, *message.get(1)?, *message.get(2)?]) as usize;
    let mut list = message.get(3..3 + total)?;
    let mut out = Vec::new();
    while list.len() >= 3 {
        let length = u32::from_be_bytes([0, list[0], list[1], list[2]]) as usize;
        out.push(list.get(3..3 + length)?.to_vec());
        list = &list[3 + length..];
    }
    Some(out)
}

/// Sends a ClientHello on `stream` and reads the answer, within `timeout`.
pub async fn exchange(stream: &mut TcpStream, hello: &[u8], timeout: Duration) -> std::io::Result<ServerAnswer> {
    stream.write_all(hello).await?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await;
        match read {
            Ok(Ok(0)) => return Ok(parse_answer(&received).0),
            Ok(Ok(n)) => {
                received.extend_from_slice(&buffer[..n]);
                let (answer, done) = parse_answer(&received);
                if done || received.len() > 256 * 1024 {
                    return Ok(answer);
                }
            }
            Ok(Err(error)) if error.kind() == ErrorKind::ConnectionReset => return Ok(parse_answer(&received).0),
            Ok(Err(error)) => return Err(error),
            Err(_) if received.is_empty() => {
                return Err(std::io::Error::new(ErrorKind::TimedOut, "the server did not answer the ClientHello"));
            }
            Err(_) => return Ok(parse_answer(&received).0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hellos_are_well_formed_records() {
        for version in Version::ALL {
            let hello = client_hello(version, &[0xc02f, 0x1301], Some("example.com"));
            assert_eq!(hello[0], 22);
            assert_eq!(usize::from(u16::from_be_bytes([hello[3], hello[4]])), hello.len() - 5);
            assert_eq!(hello[5], 1, "ClientHello");
            let body_length = u32::from_be_bytes([0, hello[6], hello[7], hello[8]]) as usize;
            assert_eq!(body_length, hello.len() - 9);
        }
    }

    #[test]
    fn parses_a_server_hello_with_certificates_and_an_alert() {
        let mut hello = vec![0x03, 0x03];
        hello.extend([7u8; 32]);
        hello.push(0);
        hello.extend([0xc0, 0x2f, 0]);
        let mut handshake = vec![2, 0, 0, hello.len() as u8];
        handshake.extend(&hello);
        let certificate = [0x30, 0x03, 1, 2, 3];
        let mut certs = vec![0, 0, 8, 0, 0, 5];
        certs.extend(certificate);
        handshake.extend([11, 0, 0, certs.len() as u8]);
        handshake.extend(&certs);
        handshake.extend([14, 0, 0, 0]);
        let mut record = vec![22, 3, 3, 0, handshake.len() as u8];
        record.extend(&handshake);
        let (answer, done) = parse_answer(&record);
        assert!(done);
        assert_eq!(answer.accepted, Some((Version::Tls12, 0xc02f)));
        assert_eq!(answer.certificates, vec![certificate.to_vec()]);
        let (alert, done) = parse_answer(&[21, 3, 3, 0, 2, 2, 40]);
        assert!(done);
        assert_eq!(alert.alert, Some(40));
        assert!(!parse_answer(&record[..20]).1, "a partial record waits for more");
    }

    #[test]
    fn garbage_never_panics() {
        for seed in 0..2_000u64 {
            fastrand::seed(seed);
            let length = fastrand::usize(0..300);
            let mut bytes: Vec<u8> = (0..length).map(|_| fastrand::u8(..)).collect();
            if !bytes.is_empty() {
                bytes[0] = 22;
            }
            let _ = parse_answer(&bytes);
        }
    }
}
