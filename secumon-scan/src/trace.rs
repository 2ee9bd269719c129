//! Traceroute and MTR over IPv4: each round sends one probe per TTL at once (ICMP echo,
//! UDP to a high port, or a TCP SYN), and one raw ICMP socket hears the routers' "time
//! exceeded" and the destination's answer (echo reply, port unreachable, or the TCP
//! handshake itself). A "destination unreachable" from anyone else (or of another kind from
//! the destination) ends the path at the hop that sent it, with its code, as mtr shows it:
//! the destination was not reached. Over rounds each hop gathers loss and
//! last/avg/best/worst/stddev, as `mtr --report` shows them. Needs CAP_NET_RAW for the raw
//! socket.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secumon_core::{CheckStatus, Labels};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::sync::oneshot;

use crate::check::{Check, CheckError, Outcome, resolve};
use crate::spec::required;

/// How probes are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceMode {
    /// ICMP echo requests.
    Icmp,
    /// UDP datagrams to high ports.
    Udp,
    /// TCP SYNs.
    Tcp,
}

impl std::str::FromStr for TraceMode {
    type Err = CheckError;

    fn from_str(text: &str) -> Result<Self, CheckError> {
        match text.to_ascii_lowercase().as_str() {
            "icmp" => Ok(Self::Icmp),
            "udp" => Ok(Self::Udp),
            "tcp" => Ok(Self::Tcp),
            _ => Err(CheckError::Invalid(format!("trace mode {text:?} is not icmp, udp or tcp"))),
        }
    }
}

/// How a trace runs.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// How probes are sent (ICMP).
    pub mode: TraceMode,
    /// The largest TTL tried (30).
    pub max_hops: u8,
    /// Rounds of probes (10).
    pub rounds: u32,
    /// Pause between rounds.
    pub interval: Duration,
    /// How long a probe's answer is awaited.
    pub timeout: Duration,
    /// Destination port for UDP (first of a range, one per probe) and TCP probes.
    pub port: u16,
    /// Look up each hop's name (off).
    pub reverse_dns: bool,
}

impl Default for TraceOptions {
    fn default() -> Self {
        Self {
            mode: TraceMode::Icmp,
            max_hops: 30,
            rounds: 10,
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            port: 33434,
            reverse_dns: false,
        }
    }
}

/// One hop's statistics over every round, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct Hop {
    /// The TTL of this hop, from 1.
    pub ttl: u8,
    /// Every address that answered at this TTL, most frequent first; empty when none did.
    pub addresses: Vec<IpAddr>,
    /// Their reverse DNS names, when looked up.
    pub names: Vec<String>,
    /// Probes sent at this TTL.
    pub sent: u32,
    /// Answers received.
    pub received: u32,
    /// Lost probes over those sent, 0 to 1.
    pub loss_ratio: f64,
    /// The last round trip.
    pub last_ms: Option<f64>,
    /// The mean round trip.
    pub avg_ms: Option<f64>,
    /// The shortest round trip.
    pub best_ms: Option<f64>,
    /// The longest round trip.
    pub worst_ms: Option<f64>,
    /// Standard deviation of the round trips.
    pub stddev_ms: Option<f64>,
}

/// A whole trace: the path to the destination, hop by hop.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct TraceReport {
    /// The address traced to.
    pub destination: IpAddr,
    /// How the probes were sent.
    pub mode: TraceMode,
    /// The destination itself answered (echo reply; port unreachable from it in UDP mode;
    /// SYN-ACK or RST in TCP mode).
    pub reached: bool,
    /// The "destination unreachable" that ended the path, when one did.
    pub unreachable: Option<Unreachable>,
    /// Each hop, by TTL; a hop that never answered has no address.
    pub hops: Vec<Hop>,
}

/// An ICMP "destination unreachable" that ended the path.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct Unreachable {
    /// The hop that sent it.
    pub ttl: u8,
    /// Its address.
    pub from: IpAddr,
    /// The ICMP code (0 network, 1 host, 3 port, 13 administratively prohibited...).
    pub code: u8,
    /// The code in words: `network unreachable`, `host unreachable`...
    pub reason: &'static str,
}

/// [`Unreachable`] as JSON has it: its `reason` is read back from the code, so that it
/// stays one of [`unreachable_reason`]'s words.
#[derive(Deserialize)]
struct UnreachableJson {
    ttl: u8,
    from: IpAddr,
    code: u8,
}

impl<'de> Deserialize<'de> for Unreachable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = UnreachableJson::deserialize(deserializer)?;
        Ok(Self { ttl: json.ttl, from: json.from, code: json.code, reason: unreachable_reason(json.code) })
    }
}

/// What a `trace` check found: the path, and why it is not healthy when it is not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct TraceDetails {
    /// The path, hop by hop.
    #[serde(flatten)]
    pub report: TraceReport,
    /// Why the destination was not reached; absent when it was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The words for an ICMPv4 destination unreachable code (RFC 792, 1122, 1812).
pub fn unreachable_reason(code: u8) -> &'static str {
    match code {
        0 => "network unreachable",
        1 => "host unreachable",
        2 => "protocol unreachable",
        3 => "port unreachable",
        4 => "fragmentation needed",
        5 => "source route failed",
        6 => "destination network unknown",
        7 => "destination host unknown",
        8 => "source host isolated",
        9 => "network administratively prohibited",
        10 => "host administratively prohibited",
        11 => "network unreachable for type of service",
        12 => "host unreachable for type of service",
        13 => "communication administratively prohibited",
        14 => "host precedence violation",
        15 => "precedence cutoff in effect",
        _ => "unreachable (unknown code)",
    }
}

/// What kind of ICMP message (or TCP event) answered a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// A router on the way: time exceeded.
    TimeExceeded,
    /// Destination unreachable, with its code; whether it ends the trace as "reached"
    /// depends on who sent it and the mode.
    Unreachable(u8),
    /// Echo reply, SYN-ACK or RST.
    Destination,
}

/// What answered a probe.
#[derive(Debug, Clone, Copy)]
struct Answer {
    from: IpAddr,
    at: Instant,
    reply: Reply,
}

impl Answer {
    /// The destination itself answered: an echo reply or a TCP handshake/reset, or in UDP
    /// mode the destination's own port unreachable. Anything else is not the destination.
    fn reached(&self, target: Ipv4Addr, mode: TraceMode) -> bool {
        match self.reply {
            Reply::Destination => true,
            Reply::Unreachable(3) => mode == TraceMode::Udp && self.from == IpAddr::V4(target),
            _ => false,
        }
    }
}

/// Identifies a probe in the ICMP error that quotes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ProbeKey {
    Echo { ident: u16, seq: u16 },
    Port(u16),
}

type Waiters = Arc<Mutex<HashMap<ProbeKey, oneshot::Sender<Answer>>>>;

/// How long a failed TCP connect waits for the raw socket to hand over the ICMP message
/// that failed it (already queued; this only covers the receiving task's turn).
const ICMP_GRACE: Duration = Duration::from_millis(100);

/// Traces the path to `destination`.
pub async fn trace(destination: IpAddr, options: &TraceOptions) -> Result<TraceReport, CheckError> {
    let IpAddr::V4(target) = destination else {
        return Err(CheckError::Invalid("traceroute supports IPv4 destinations".into()));
    };
    if options.max_hops == 0 || options.rounds == 0 {
        return Err(CheckError::Invalid("max_hops and rounds must be at least 1".into()));
    }
    let listener = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).map_err(|error| {
        CheckError::Other(format!(
            "traceroute needs a raw ICMP socket ({error}): run it as root or with CAP_NET_RAW \
             (setcap cap_net_raw+ep on the binary)"
        ))
    })?;
    listener.set_nonblocking(true)?;
    // A raw socket reads like a datagram socket: tokio's UdpSocket can wait on it.
    let listener = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(listener))?;
    let waiters: Waiters = Arc::default();
    let ident = fastrand::u16(..);
    let receiving = {
        let waiters = Arc::clone(&waiters);
        async move { receive(&listener, &waiters, ident).await }
    };
    let probing = async {
        let mut samples: Vec<Vec<Option<(IpAddr, f64)>>> = vec![Vec::new(); usize::from(options.max_hops)];
        let mut last_hop = options.max_hops;
        let mut reached = false;
        let mut unreachable: Option<Unreachable> = None;
        for round in 0..options.rounds {
            if round > 0 {
                tokio::time::sleep(options.interval).await;
            }
            let probes = (1..=last_hop).map(|ttl| {
                let sequence = (round * u32::from(options.max_hops) + u32::from(ttl)) as u16;
                probe(target, ttl, sequence, ident, options, &waiters)
            });
            let answers: Vec<Result<Option<(Answer, Instant)>, CheckError>> = futures::future::join_all(probes).await;
            for (index, answer) in answers.into_iter().enumerate() {
                let answer = answer?;
                samples[index].push(answer.map(|(a, sent)| (a.from, a.at.duration_since(sent).as_secs_f64() * 1000.0)));
                let Some((answer, _)) = answer else { continue };
                let ttl = index as u8 + 1;
                if answer.reached(target, options.mode) {
                    reached = true;
                    last_hop = last_hop.min(ttl);
                } else if let Reply::Unreachable(code) = answer.reply {
                    // Nothing gets past the hop that rejects the probe: the path ends there.
                    last_hop = last_hop.min(ttl);
                    if unreachable.as_ref().is_none_or(|u| ttl < u.ttl) {
                        unreachable =
                            Some(Unreachable { ttl, from: answer.from, code, reason: unreachable_reason(code) });
                    }
                }
            }
        }
        Ok::<_, CheckError>((samples, last_hop, reached, unreachable))
    };
    let (samples, last_hop, reached, unreachable) = tokio::select! {
        result = probing => result?,
        error = receiving => return Err(error),
    };
    let mut hops: Vec<Hop> =
        samples.into_iter().take(usize::from(last_hop)).enumerate().map(|(i, s)| hop(i as u8 + 1, &s)).collect();
    if options.reverse_dns {
        for hop in &mut hops {
            for address in &hop.addresses {
                if let Ok(name) = reverse_name(*address).await {
                    hop.names.push(name);
                }
            }
        }
    }
    // An unreachable beyond the hop where the destination answered does not end the path.
    let unreachable = unreachable.filter(|u| u.ttl <= last_hop);
    Ok(TraceReport { destination, mode: options.mode, reached, unreachable, hops })
}

async fn reverse_name(address: IpAddr) -> Result<String, CheckError> {
    let resolver =
        hickory_resolver::TokioResolver::builder_tokio().map_err(|e| CheckError::Other(e.to_string()))?.build();
    let names = resolver.reverse_lookup(address).await.map_err(|e| CheckError::Other(e.to_string()))?;
    names.iter().next().map(|n| n.to_string()).ok_or_else(|| CheckError::Other("no name".into()))
}

/// Sends one probe with `ttl` and waits for what answers it.
async fn probe(
    target: Ipv4Addr,
    ttl: u8,
    sequence: u16,
    ident: u16,
    options: &TraceOptions,
    waiters: &Waiters,
) -> Result<Option<(Answer, Instant)>, CheckError> {
    let (tell, told) = oneshot::channel();
    match options.mode {
        TraceMode::Icmp => {
            let key = ProbeKey::Echo { ident, seq: sequence };
            lock(waiters).insert(key, tell);
            let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
            socket.set_ttl_v4(u32::from(ttl))?;
            let sent = Instant::now();
            socket.send_to(&echo_request(ident, sequence), &SockAddr::from(SocketAddrV4::new(target, 0)))?;
            let answer = tokio::time::timeout(options.timeout, told).await.ok().and_then(Result::ok);
            lock(waiters).remove(&key);
            Ok(answer.map(|a| (a, sent)))
        }
        TraceMode::Udp => {
            let port = options.port.wrapping_add(sequence);
            let key = ProbeKey::Port(port);
            lock(waiters).insert(key, tell);
            let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            socket.set_ttl_v4(u32::from(ttl))?;
            let sent = Instant::now();
            socket.send_to(&[0u8; 32], &SockAddr::from(SocketAddrV4::new(target, port)))?;
            let answer = tokio::time::timeout(options.timeout, told).await.ok().and_then(Result::ok);
            lock(waiters).remove(&key);
            Ok(answer.map(|a| (a, sent)))
        }
        TraceMode::Tcp => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket2::SockRef::from(&socket).set_ttl_v4(u32::from(ttl))?;
            socket.bind(SocketAddr::from(([0, 0, 0, 0], 0)))?;
            let key = ProbeKey::Port(socket.local_addr()?.port());
            lock(waiters).insert(key, tell);
            let sent = Instant::now();
            let connecting = socket.connect(SocketAddr::from((target, options.port)));
            let answer = tokio::time::timeout(options.timeout, async {
                tokio::pin!(told);
                tokio::select! {
                    connected = connecting => {
                        let at = Instant::now();
                        let destination = Answer { from: IpAddr::V4(target), at, reply: Reply::Destination };
                        match connected {
                            // A handshake: the destination answered.
                            Ok(_) => Some(destination),
                            // The kernel fails the connect on any ICMP error (time exceeded,
                            // unreachable: ECONNREFUSED for a port unreachable, like a reset).
                            // The raw socket's copy, which names the sender, was queued first;
                            // none means it was the destination's reset.
                            Err(error) => match tokio::time::timeout(ICMP_GRACE, &mut told).await {
                                Ok(Ok(answer)) => Some(answer),
                                _ if error.kind() == std::io::ErrorKind::ConnectionRefused => Some(destination),
                                _ => None,
                            },
                        }
                    },
                    answer = &mut told => answer.ok(),
                }
            })
            .await
            .ok()
            .flatten();
            lock(waiters).remove(&key);
            Ok(answer.map(|a| (a, sent)))
        }
    }
}

/// Reads ICMP messages and hands each to the probe it answers.
async fn receive(listener: &tokio::net::UdpSocket, waiters: &Waiters, ident: u16) -> CheckError {
    let mut buffer = [0u8; 1500];
    loop {
        let length = match listener.recv(&mut buffer).await {
            Ok(length) => length,
            Err(error) => return CheckError::Io(error),
        };
        let at = Instant::now();
        if let Some((key, from, reply)) = parse_icmp(&buffer[..length], ident)
            && let Some(waiter) = lock(waiters).remove(&key)
        {
            let _ = waiter.send(Answer { from, at, reply });
        }
    }
}

fn lock(waiters: &Waiters) -> std::sync::MutexGuard<'_, HashMap<ProbeKey, oneshot::Sender<Answer>>> {
    waiters.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads an IPv4 packet carrying ICMP: which probe it answers, who sent it, and what kind
/// of answer it is.
fn parse_icmp(packet: &[u8], ident: u16) -> Option<(ProbeKey, IpAddr, Reply)> {
    let header = usize::from(packet.first()? & 0x0f) * 4;
    let from = IpAddr::V4(Ipv4Addr::new(*packet.get(12)?, *packet.get(13)?, *packet.get(14)?, *packet.get(15)?));
    let icmp = packet.get(header..)?;
    let word =
        |bytes: &[u8], at: usize| -> Option<u16> { Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?])) };
    match *icmp.first()? {
        // Echo reply: the destination, in ICMP mode.
        0 => {
            let key = ProbeKey::Echo { ident: word(icmp, 4)?, seq: word(icmp, 6)? };
            (word(icmp, 4)? == ident).then_some((key, from, Reply::Destination))
        }
        // Time exceeded (a router) or destination unreachable (from the destination in UDP
        // mode, or from a router that rejects the probe); both quote the probe's IP header
        // and 8 bytes.
        kind @ (3 | 11) => {
            let quoted = icmp.get(8..)?;
            let quoted_header = usize::from(quoted.first()? & 0x0f) * 4;
            let protocol = *quoted.get(9)?;
            let payload = quoted.get(quoted_header..)?;
            let reply = if kind == 3 { Reply::Unreachable(*icmp.get(1)?) } else { Reply::TimeExceeded };
            match protocol {
                1 if word(payload, 4)? == ident => {
                    Some((ProbeKey::Echo { ident, seq: word(payload, 6)? }, from, reply))
                }
                // UDP probes are told apart by destination port, TCP ones by source port.
                17 => Some((ProbeKey::Port(word(payload, 2)?), from, reply)),
                6 => Some((ProbeKey::Port(word(payload, 0)?), from, reply)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// An ICMP echo request with our identifier and sequence number.
fn echo_request(ident: u16, seq: u16) -> Vec<u8> {
    let mut packet = vec![8, 0, 0, 0];
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(b"secumon-trace-probe-0123456789abcdef");
    let checksum = internet_checksum(&packet);
    packet[2..4].copy_from_slice(&checksum.to_be_bytes());
    packet
}

fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn hop(ttl: u8, samples: &[Option<(IpAddr, f64)>]) -> Hop {
    let rtts: Vec<f64> = samples.iter().flatten().map(|(_, rtt)| *rtt).collect();
    let mut counts: HashMap<IpAddr, usize> = HashMap::new();
    for (address, _) in samples.iter().flatten() {
        *counts.entry(*address).or_default() += 1;
    }
    let mut addresses: Vec<(IpAddr, usize)> = counts.into_iter().collect();
    addresses.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let sent = samples.len() as u32;
    let received = rtts.len() as u32;
    let n = rtts.len() as f64;
    let avg = (!rtts.is_empty()).then(|| rtts.iter().sum::<f64>() / n);
    Hop {
        ttl,
        addresses: addresses.into_iter().map(|(a, _)| a).collect(),
        names: Vec::new(),
        sent,
        received,
        loss_ratio: if sent == 0 { 0.0 } else { f64::from(sent - received) / f64::from(sent) },
        last_ms: samples.iter().rev().flatten().next().map(|(_, rtt)| *rtt),
        avg_ms: avg,
        best_ms: rtts.iter().copied().reduce(f64::min),
        worst_ms: rtts.iter().copied().reduce(f64::max),
        stddev_ms: avg.map(|avg| (rtts.iter().map(|r| (r - avg).powi(2)).sum::<f64>() / n).sqrt()),
    }
}

/// A traceroute check: critical when the destination is never reached (a router's
/// "unreachable" included, named with its code in `problems`), warning when its own loss
/// exceeds `warn_loss`.
#[derive(Debug, Clone)]
pub struct TraceCheck {
    /// The check's name in the configuration.
    pub id: String,
    /// The host name or address traced to.
    pub host: String,
    /// How the trace runs.
    pub options: TraceOptions,
    /// A last-hop loss ratio above this is a warning (0.1).
    pub warn_loss: f64,
}

/// A `trace` check as configured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TraceSpec {
    /// Name or address of the destination.
    pub host: Option<String>,
    /// `icmp` (default), `udp` or `tcp`.
    pub mode: Option<String>,
    /// Highest TTL tried (30).
    pub max_hops: Option<u8>,
    /// Probes per hop (10).
    pub rounds: Option<u32>,
    /// UDP: the first destination port (33434); TCP: the destination port (80).
    pub port: Option<u16>,
    /// Look up hop names.
    pub reverse_dns: Option<bool>,
    /// Warning above this loss at the destination (0.1).
    pub warn_loss: Option<f64>,
}

impl TraceSpec {
    pub(crate) fn build(self, id: String, kind: &str) -> Result<Box<dyn Check>, CheckError> {
        let defaults = TraceOptions::default();
        let mode: TraceMode = self.mode.as_deref().unwrap_or("icmp").parse()?;
        let default_port = if mode == TraceMode::Tcp { 80 } else { defaults.port };
        let options = TraceOptions {
            mode,
            max_hops: self.max_hops.unwrap_or(defaults.max_hops),
            rounds: self.rounds.unwrap_or(defaults.rounds),
            port: self.port.unwrap_or(default_port),
            reverse_dns: self.reverse_dns.unwrap_or(false),
            ..defaults
        };
        let host = required(self.host, kind, "host")?;
        Ok(Box::new(TraceCheck { id, host, options, warn_loss: self.warn_loss.unwrap_or(0.1) }))
    }
}

#[async_trait]
impl Check for TraceCheck {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "trace"
    }

    fn target(&self) -> String {
        self.host.clone()
    }

    async fn execute(&self) -> Result<Outcome, CheckError> {
        let address = resolve(&self.host)
            .await?
            .into_iter()
            .find(IpAddr::is_ipv4)
            .ok_or_else(|| CheckError::Invalid(format!("{} has no IPv4 address to trace", self.host)))?;
        let report = trace(address, &self.options).await?;
        let last = report.hops.last();
        let status = match last {
            Some(hop) if report.reached && hop.loss_ratio > self.warn_loss => CheckStatus::Warning,
            _ if report.reached => CheckStatus::Ok,
            _ => CheckStatus::Critical,
        };
        let distinct: BTreeSet<IpAddr> = report.hops.iter().flat_map(|h| h.addresses.iter().copied()).collect();
        let problem = match &report.unreachable {
            Some(u) if !report.reached => {
                Some(format!("{} (hop {}) answered {} (ICMP code {})", u.from, u.ttl, u.reason, u.code))
            }
            _ if !report.reached => Some(format!("{} not reached", report.destination)),
            _ => None,
        };
        let mut samples = vec![
            ("trace_hops".to_string(), Labels::new(), report.hops.len() as f64),
            ("trace_distinct_addresses".to_string(), Labels::new(), distinct.len() as f64),
        ];
        for hop in &report.hops {
            let labels = Labels::from([("hop".to_string(), hop.ttl.to_string())]);
            samples.push(("trace_hop_loss_ratio".to_string(), labels.clone(), hop.loss_ratio));
            if let Some(avg) = hop.avg_ms {
                samples.push(("trace_hop_rtt_avg_seconds".to_string(), labels, avg / 1000.0));
            }
        }
        let details = TraceDetails { report, problems: problem.into_iter().collect() };
        Ok(Outcome { status, details: details.into(), samples })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_keep_their_json() {
        let hop = |ttl: u8, address: &str, avg: Option<f64>| Hop {
            ttl,
            addresses: if avg.is_some() { vec![address.parse().unwrap()] } else { Vec::new() },
            names: Vec::new(),
            sent: 2,
            received: if avg.is_some() { 2 } else { 0 },
            loss_ratio: if avg.is_some() { 0.0 } else { 1.0 },
            last_ms: avg,
            avg_ms: avg,
            best_ms: avg,
            worst_ms: avg,
            stddev_ms: avg.map(|_| 0.0),
        };
        let report = TraceReport {
            destination: "192.0.2.9".parse().unwrap(),
            mode: TraceMode::Udp,
            reached: false,
            unreachable: Some(Unreachable {
                ttl: 2,
                from: "192.0.2.254".parse().unwrap(),
                code: 13,
                reason: unreachable_reason(13),
            }),
            hops: vec![hop(1, "192.0.2.1", Some(1.5)), hop(2, "", None)],
        };
        let problems =
            vec!["192.0.2.254 (hop 2) answered communication administratively prohibited (ICMP code 13)".to_string()];
        crate::details::assert_wire(
            "trace",
            TraceDetails { report: report.clone(), problems }.into(),
            serde_json::json!({
                "destination": "192.0.2.9", "mode": "udp", "reached": false,
                "unreachable": {"ttl": 2, "from": "192.0.2.254", "code": 13, "reason": "communication administratively prohibited"},
                "hops": [
                    {"ttl": 1, "addresses": ["192.0.2.1"], "names": [], "sent": 2, "received": 2, "loss_ratio": 0.0,
                     "last_ms": 1.5, "avg_ms": 1.5, "best_ms": 1.5, "worst_ms": 1.5, "stddev_ms": 0.0},
                    {"ttl": 2, "addresses": [], "names": [], "sent": 2, "received": 0, "loss_ratio": 1.0,
                     "last_ms": null, "avg_ms": null, "best_ms": null, "worst_ms": null, "stddev_ms": null},
                ],
                "problems": ["192.0.2.254 (hop 2) answered communication administratively prohibited (ICMP code 13)"],
            }),
        );
        let reached = TraceReport { reached: true, unreachable: None, hops: Vec::new(), ..report };
        crate::details::assert_wire(
            "trace",
            TraceDetails { report: reached, problems: Vec::new() }.into(),
            serde_json::json!({"destination": "192.0.2.9", "mode": "udp", "reached": true, "unreachable": null, "hops": []}),
        );
    }

    #[test]
    fn echo_requests_carry_a_valid_checksum() {
        let packet = echo_request(0x1234, 7);
        assert_eq!(internet_checksum(&packet), 0, "a correct checksum sums to zero");
        assert_eq!(&packet[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn icmp_errors_are_matched_to_the_probe_they_quote() {
        // Outer IPv4 header from 192.0.2.254, then time exceeded quoting a UDP probe to port 33500.
        let mut packet = vec![0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 192, 0, 2, 254, 192, 0, 2, 1];
        packet.extend_from_slice(&[11, 0, 0, 0, 0, 0, 0, 0]);
        packet.extend_from_slice(&[0x45, 0, 0, 60, 0, 0, 0, 0, 1, 17, 0, 0, 192, 0, 2, 1, 198, 51, 100, 1]);
        packet.extend_from_slice(&[0x9c, 0x40, 0x82, 0xdc, 0, 40, 0, 0]);
        let (key, from, reply) = parse_icmp(&packet, 1).unwrap();
        assert_eq!((key, from, reply), (ProbeKey::Port(33500), "192.0.2.254".parse().unwrap(), Reply::TimeExceeded));
        packet[20] = 3; // destination unreachable, code 13: administratively prohibited
        packet[21] = 13;
        assert_eq!(parse_icmp(&packet, 1).unwrap().2, Reply::Unreachable(13));
        assert!(parse_icmp(&packet[..30], 1).is_none(), "truncated packets are ignored");
    }

    #[test]
    fn only_the_destination_reaches() {
        let target = Ipv4Addr::new(198, 51, 100, 1);
        let answer = |from: [u8; 4], reply| Answer { from: IpAddr::from(from), at: Instant::now(), reply };
        let router = [192, 0, 2, 254];
        // Port unreachable counts from the destination, in UDP mode only.
        assert!(answer([198, 51, 100, 1], Reply::Unreachable(3)).reached(target, TraceMode::Udp));
        assert!(!answer([198, 51, 100, 1], Reply::Unreachable(3)).reached(target, TraceMode::Icmp));
        assert!(!answer(router, Reply::Unreachable(3)).reached(target, TraceMode::Udp));
        for code in [0, 1, 13] {
            assert!(!answer(router, Reply::Unreachable(code)).reached(target, TraceMode::Icmp), "{code}");
            assert!(!answer([198, 51, 100, 1], Reply::Unreachable(code)).reached(target, TraceMode::Udp), "{code}");
        }
        assert!(!answer(router, Reply::TimeExceeded).reached(target, TraceMode::Icmp));
        assert!(answer([198, 51, 100, 1], Reply::Destination).reached(target, TraceMode::Tcp));
        assert_eq!(unreachable_reason(13), "communication administratively prohibited");
    }

    #[test]
    fn hop_statistics_like_mtr() {
        let a: IpAddr = "192.0.2.254".parse().unwrap();
        let hop = hop(1, &[Some((a, 1.0)), None, Some((a, 3.0)), Some((a, 2.0))]);
        assert_eq!((hop.sent, hop.received, hop.loss_ratio), (4, 3, 0.25));
        assert_eq!((hop.last_ms, hop.avg_ms, hop.best_ms, hop.worst_ms), (Some(2.0), Some(2.0), Some(1.0), Some(3.0)));
        assert_eq!(hop.addresses, vec![a]);
    }
}
