//! TCP connect and UDP port scans. TCP: a completed handshake is `open`, a reset `closed`,
//! silence until the timeout (or an ICMP unreachable from a router) `filtered`. UDP: any
//! answer is `open`, ICMP port unreachable `closed`, silence `open|filtered`; well-known
//! ports get requests their service answers whatever its configuration (DNS, SNMP, NTP), as
//! nmap's payloads do: for SNMP an SNMPv3 engine discovery, which any v3-capable agent
//! answers with a report without knowing a community or user, beside a v2c `public` get.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use secumon_core::{CheckStatus, Labels};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpSocket, UdpSocket};

use crate::check::{Check, CheckError, Outcome, resolve};
use crate::details::CheckDetails;
use crate::spec::{Progress, required};

/// Ports to scan, from text such as `22,80,443,8000-8100`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortList(Vec<u16>);

impl PortList {
    /// Parses a list such as `22,80,8000-8100` (sorted, duplicates dropped).
    pub fn parse(text: &str) -> Result<Self, CheckError> {
        let mut ports = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let port = |p: &str| -> Result<u16, CheckError> {
                match p.trim().parse::<u16>() {
                    Ok(0) | Err(_) => Err(CheckError::Invalid(format!("{p:?} is not a port (1-65535) in {text:?}"))),
                    Ok(port) => Ok(port),
                }
            };
            match part.split_once('-') {
                Some((low, high)) => {
                    let (low, high) = (port(low)?, port(high)?);
                    if low > high {
                        return Err(CheckError::Invalid(format!("range {part:?} runs backwards in {text:?}")));
                    }
                    ports.extend(low..=high);
                }
                None => ports.push(port(part)?),
            }
        }
        if ports.is_empty() {
            return Err(CheckError::Invalid(format!("no port in {text:?}")));
        }
        ports.sort_unstable();
        ports.dedup();
        Ok(Self(ports))
    }

    /// One port.
    pub fn single(port: u16) -> Self {
        Self(vec![port])
    }

    /// Every port, 1 to 65535.
    pub fn all() -> Self {
        Self((1..=u16::MAX).collect())
    }

    /// The ports, ascending.
    pub fn ports(&self) -> &[u16] {
        &self.0
    }
}

/// What a scan learnt about one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PortState {
    /// Something answers: a TCP handshake, or any UDP answer.
    #[serde(rename = "open")]
    Open,
    /// Refused: a TCP reset, or ICMP port unreachable.
    #[serde(rename = "closed")]
    Closed,
    /// No answer, or an ICMP unreachable from a router (TCP).
    #[serde(rename = "filtered")]
    Filtered,
    /// UDP silence: open, or filtered on the way.
    #[serde(rename = "open|filtered")]
    OpenFiltered,
}

impl PortState {
    /// `open`, `closed`, `filtered` or `open|filtered`, as the details write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Filtered => "filtered",
            Self::OpenFiltered => "open|filtered",
        }
    }
}

/// What a `tcp` or `udp` check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PortsDetails {
    /// The address scanned.
    pub address: IpAddr,
    /// `tcp` or `udp`.
    // (Default: the result's kind says it too, so details without it still read.)
    #[serde(default)]
    pub protocol: String,
    /// How many ports were scanned.
    pub scanned: usize,
    /// How many ports are in each state, by state (`open`, `closed`...).
    pub counts: BTreeMap<String, usize>,
    /// Every port not `closed`, with its state.
    pub ports: BTreeMap<u16, PortState>,
    /// Expected ports not open, and open ports not expected.
    pub problems: Vec<String>,
}

/// A scan's findings: every port's state, by port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortReport {
    /// The address scanned.
    pub address: IpAddr,
    /// Every scanned port's state.
    pub states: BTreeMap<u16, PortState>,
}

impl PortReport {
    /// The ports in `state`, ascending.
    pub fn with_state(&self, state: PortState) -> Vec<u16> {
        self.states.iter().filter(|(_, s)| **s == state).map(|(p, _)| *p).collect()
    }
}

/// Connect-scans `ports` of `address`, `concurrency` at a time.
pub async fn scan_tcp(address: IpAddr, ports: &PortList, concurrency: usize, timeout: Duration) -> PortReport {
    scan_tcp_with_progress(address, ports, concurrency, timeout, |_| {}).await
}

/// [`scan_tcp`], calling `progress` with each port as it is done (for progress bars).
pub async fn scan_tcp_with_progress(
    address: IpAddr,
    ports: &PortList,
    concurrency: usize,
    timeout: Duration,
    mut progress: impl FnMut(u16),
) -> PortReport {
    // One worker task per core, each with its share of the connections in flight, taking
    // ports from a common queue: a single task tops out at one core's worth of connects.
    let workers = std::thread::available_parallelism().map_or(1, usize::from).min(concurrency.max(1));
    let per_worker = (concurrency.max(1) / workers).max(1);
    let queue: Arc<[u16]> = ports.ports().into();
    let next = Arc::new(AtomicUsize::new(0));
    let (done, mut finished) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..workers {
        let (queue, next, done) = (Arc::clone(&queue), Arc::clone(&next), done.clone());
        tokio::spawn(async move {
            let ports = std::iter::from_fn(|| queue.get(next.fetch_add(1, Ordering::Relaxed)).copied());
            let mut results = futures::stream::iter(ports)
                .map(|port| async move { (port, tcp_state(SocketAddr::new(address, port), timeout).await) })
                .buffer_unordered(per_worker);
            while let Some(result) = results.next().await {
                if done.send(result).is_err() {
                    return;
                }
            }
        });
    }
    drop(done);
    let mut states = BTreeMap::new();
    while let Some((port, state)) = finished.recv().await {
        progress(port);
        states.insert(port, state);
    }
    PortReport { address, states }
}

async fn tcp_state(target: SocketAddr, timeout: Duration) -> PortState {
    let socket = match if target.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() } {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(%target, %error, "cannot open a socket for the scan");
            return PortState::Filtered;
        }
    };
    // Close open ports with a reset: a full scan must not leave thousands of TIME_WAITs.
    // (Linger zero never blocks the drop, which is what tokio's deprecation is about.)
    let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
    match tokio::time::timeout(timeout, socket.connect(target)).await {
        // On loopback the kernel may pick the target port as our own source port and the
        // socket connects to itself (TCP simultaneous open): nothing listens there.
        Ok(Ok(stream)) if stream.local_addr().is_ok_and(|local| local == target) => PortState::Closed,
        Ok(Ok(_stream)) => PortState::Open,
        Ok(Err(error)) if error.kind() == ErrorKind::ConnectionRefused => PortState::Closed,
        Ok(Err(_)) | Err(_) => PortState::Filtered,
    }
}

/// UDP-scans `ports` of `address`: each port gets its protocol's probe, and one retry
/// when silent.
pub async fn scan_udp(address: IpAddr, ports: &PortList, concurrency: usize, timeout: Duration) -> PortReport {
    let results: Vec<(u16, PortState)> = futures::stream::iter(ports.ports().iter().copied())
        .map(|port| async move { (port, udp_state(SocketAddr::new(address, port), timeout).await) })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    PortReport { address, states: results.into_iter().collect() }
}

async fn udp_state(target: SocketAddr, timeout: Duration) -> PortState {
    let local: SocketAddr = if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = match UdpSocket::bind(local).await {
        Ok(socket) => socket,
        Err(_) => return PortState::OpenFiltered,
    };
    // A connected UDP socket reports the ICMP port unreachable as ECONNREFUSED.
    if socket.connect(target).await.is_err() {
        return PortState::OpenFiltered;
    }
    let probes = udp_probes(target.port());
    let mut buffer = [0u8; 1500];
    for _ in 0..2 {
        for probe in &probes {
            match socket.send(probe).await {
                Err(error) if error.kind() == ErrorKind::ConnectionRefused => return PortState::Closed,
                Err(_) => return PortState::OpenFiltered,
                Ok(_) => {}
            }
        }
        match tokio::time::timeout(timeout, socket.recv(&mut buffer)).await {
            Ok(Ok(_)) => return PortState::Open,
            Ok(Err(error)) if error.kind() == ErrorKind::ConnectionRefused => return PortState::Closed,
            Ok(Err(_)) => return PortState::OpenFiltered,
            Err(_) => continue,
        }
    }
    PortState::OpenFiltered
}

/// Requests the service usually behind `port` answers, each sent as its own datagram; one
/// empty datagram for other ports.
pub(crate) fn udp_probes(port: u16) -> Vec<Vec<u8>> {
    match port {
        53 | 5353 => vec![
            // A standard query for the root's NS records (a recursive server answers it)...
            vec![0x53, 0x4d, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x02, 0x00, 0x01],
            // ...and version.bind TXT in class CHAOS (an authoritative-only one answers it).
            [&[0x53, 0x4e, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7][..], b"version", &[4], b"bind", &[0, 0, 0x10, 0, 3]]
                .concat(),
        ],
        161 => vec![
            // SNMPv3 GetRequest with empty engine ID and user (RFC 3414 section 4): an agent
            // answers engine discovery with a usmStatsUnknownEngineIDs report, whatever
            // its communities and users.
            vec![
                0x30, 0x3a, 0x02, 0x01, 0x03, // SNMPv3Message, msgVersion 3
                0x30, 0x0f, 0x02, 0x02, 0x53, 0x4d, // msgGlobalData, msgID
                0x02, 0x03, 0x00, 0xff, 0xe3, // msgMaxSize 65507
                0x04, 0x01, 0x04, // msgFlags: reportable, no auth, no privacy
                0x02, 0x01, 0x03, // msgSecurityModel: USM
                0x04, 0x10, 0x30, 0x0e, // msgSecurityParameters: UsmSecurityParameters
                0x04, 0x00, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, // engine ID, boots, time
                0x04, 0x00, 0x04, 0x00, 0x04, 0x00, // user, auth and privacy parameters
                0x30, 0x12, 0x04, 0x00, 0x04, 0x00, // ScopedPDU: context engine ID and name
                0xa0, 0x0c, 0x02, 0x02, 0x53, 0x4e, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x00, // empty get
            ],
            // SNMP v2c GetRequest, community "public", sysDescr.0: v1/v2c-only agents.
            vec![
                0x30, 0x29, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x1c, 0x02, 0x04,
                0x53, 0x4d, 0x4f, 0x4e, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c, 0x06, 0x08, 0x2b,
                0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, 0x05, 0x00,
            ],
        ],
        // NTP v4 client request (mode 3), as any server answers a client.
        123 => {
            let mut packet = vec![0u8; 48];
            packet[0] = 0x23;
            vec![packet]
        }
        _ => vec![Vec::new()],
    }
}

/// Scan settings shared by the TCP and UDP checks.
#[derive(Debug, Clone)]
struct ScanSettings {
    id: String,
    host: String,
    ports: PortList,
    concurrency: usize,
    timeout: Duration,
    /// Ports that must be open; any other open port is unexpected. `None`: report only.
    expect_open: Option<Vec<u16>>,
    /// Told how many ports are done (TCP scans), for a progress display.
    progress: Option<ProgressHook>,
}

/// A [`Progress`] that `ScanSettings` can derive `Debug` with.
#[derive(Clone)]
struct ProgressHook(Progress);

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook")
    }
}

/// A `tcp` or `udp` check as configured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PortsSpec {
    /// Name or address to scan.
    pub host: Option<String>,
    /// Ports such as `22,80,8000-8100`; or `port` for one.
    pub ports: Option<String>,
    /// One port, expected open unless `expect_open` says otherwise.
    pub port: Option<u16>,
    /// Critical unless exactly these ports are open.
    pub expect_open: Option<Vec<u16>>,
    /// Probes in flight at once (200).
    pub concurrency: Option<usize>,
    /// How long each port's answer is awaited (1 s).
    #[serde(default, with = "humantime_serde")]
    pub port_timeout: Option<Duration>,
}

impl PortsSpec {
    pub(crate) fn build(self, id: String, kind: &str) -> Result<Box<dyn Check>, CheckError> {
        self.build_with(id, kind, None)
    }

    pub(crate) fn build_with(
        self,
        id: String,
        kind: &str,
        progress: Option<Progress>,
    ) -> Result<Box<dyn Check>, CheckError> {
        let ports = match (&self.ports, self.port) {
            (Some(ports), None) => PortList::parse(ports)?,
            (None, Some(port)) => PortList::parse(&port.to_string())?,
            _ => return Err(CheckError::Invalid(format!("{kind} checks need one of `ports` or `port`"))),
        };
        // A single-port check expects that port open unless told otherwise.
        let expect_open = self.expect_open.or_else(|| self.port.map(|p| vec![p]));
        let settings = ScanSettings {
            id,
            host: required(self.host, kind, "host")?,
            ports,
            concurrency: self.concurrency.unwrap_or(200),
            timeout: self.port_timeout.unwrap_or(Duration::from_secs(1)),
            expect_open,
            progress: progress.map(ProgressHook),
        };
        Ok(if kind == "udp" { Box::new(UdpScan(settings)) } else { Box::new(TcpScan(settings)) })
    }
}

impl ScanSettings {
    async fn address(&self) -> Result<IpAddr, CheckError> {
        Ok(resolve(&self.host).await?[0])
    }
}

/// Judges a scan: with `expect_open`, critical unless exactly those ports are open.
pub fn port_outcome(protocol: &str, report: &PortReport, expect_open: Option<&[u16]>) -> Outcome {
    let open = report.with_state(PortState::Open);
    let (status, problems) = match expect_open {
        None => (CheckStatus::Ok, Vec::new()),
        Some(expected) => {
            let mut problems: Vec<String> = expected
                .iter()
                .filter(|p| !open.contains(p))
                .map(|p| format!("{p}/{protocol} expected open, is {}", state_name(report, *p)))
                .collect();
            problems.extend(
                open.iter().filter(|p| !expected.contains(p)).map(|p| format!("{p}/{protocol} open unexpectedly")),
            );
            (if problems.is_empty() { CheckStatus::Ok } else { CheckStatus::Critical }, problems)
        }
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for state in report.states.values() {
        *counts.entry(state.as_str().to_string()).or_default() += 1;
    }
    let details = PortsDetails {
        address: report.address,
        protocol: protocol.to_string(),
        scanned: report.states.len(),
        counts,
        ports: report.states.iter().filter(|(_, s)| !matches!(s, PortState::Closed)).map(|(p, s)| (*p, *s)).collect(),
        problems,
    };
    let details = if protocol == "udp" { CheckDetails::Udp(details) } else { CheckDetails::Tcp(details) };
    let mut outcome = Outcome::new(status, details).sample("scan_open_ports", Labels::new(), open.len() as f64);
    for port in expect_open.into_iter().flatten() {
        let labels =
            Labels::from([("port".to_string(), port.to_string()), ("protocol".to_string(), protocol.to_string())]);
        outcome = outcome.sample("port_open", labels, f64::from(u8::from(open.contains(port))));
    }
    outcome
}

fn state_name(report: &PortReport, port: u16) -> &'static str {
    report.states.get(&port).map(|s| s.as_str()).unwrap_or("not scanned")
}

macro_rules! scan_check {
    ($name:ident, $kind:literal, $scan:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone)]
        pub struct $name(ScanSettings);

        impl $name {
            /// 200 ports at a time, 1 s per port, report only.
            pub fn new(id: impl Into<String>, host: impl Into<String>, ports: PortList) -> Self {
                Self(ScanSettings {
                    id: id.into(),
                    host: host.into(),
                    ports,
                    concurrency: 200,
                    timeout: Duration::from_secs(1),
                    expect_open: None,
                    progress: None,
                })
            }

            /// Ports probed at once.
            pub fn concurrency(mut self, concurrency: usize) -> Self {
                self.0.concurrency = concurrency;
                self
            }

            /// How long each port's answer is awaited.
            pub fn timeout(mut self, timeout: Duration) -> Self {
                self.0.timeout = timeout;
                self
            }

            /// Critical unless exactly these ports are open.
            pub fn expect_open(mut self, ports: Vec<u16>) -> Self {
                self.0.expect_open = Some(ports);
                self
            }

            /// Tells `progress` how many ports are done (TCP scans; UDP scans do not report).
            pub fn progress(mut self, progress: Progress) -> Self {
                self.0.progress = Some(ProgressHook(progress));
                self
            }
        }

        #[async_trait]
        impl Check for $name {
            fn id(&self) -> &str {
                &self.0.id
            }

            fn kind(&self) -> &'static str {
                $kind
            }

            fn target(&self) -> String {
                self.0.host.clone()
            }

            async fn execute(&self) -> Result<Outcome, CheckError> {
                let address = self.0.address().await?;
                let report = $scan(address, &self.0).await;
                Ok(port_outcome($kind, &report, self.0.expect_open.as_deref()))
            }
        }
    };
}

scan_check!(TcpScan, "tcp", tcp_with_settings, "A TCP connect scan as a check.");
scan_check!(UdpScan, "udp", udp_with_settings, "A UDP scan as a check.");

async fn tcp_with_settings(address: IpAddr, settings: &ScanSettings) -> PortReport {
    let total = settings.ports.ports().len() as u64;
    let mut done = 0;
    scan_tcp_with_progress(address, &settings.ports, settings.concurrency, settings.timeout, |_| {
        if let Some(ProgressHook(progress)) = &settings.progress {
            done += 1;
            progress(done, total);
        }
    })
    .await
}

async fn udp_with_settings(address: IpAddr, settings: &ScanSettings) -> PortReport {
    scan_udp(address, &settings.ports, settings.concurrency, settings.timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_keep_their_json() {
        let report = PortReport {
            address: "127.0.0.1".parse().unwrap(),
            states: BTreeMap::from([
                (22, PortState::Open),
                (80, PortState::Closed),
                (443, PortState::Open),
                (1000, PortState::Filtered),
            ]),
        };
        let outcome = port_outcome("tcp", &report, Some(&[22, 8080]));
        assert_eq!(outcome.status, CheckStatus::Critical);
        crate::details::assert_wire(
            "tcp",
            outcome.details,
            serde_json::json!({
                "address": "127.0.0.1", "protocol": "tcp", "scanned": 4,
                "counts": {"closed": 1, "filtered": 1, "open": 2},
                "ports": {"1000": "filtered", "22": "open", "443": "open"},
                "problems": ["8080/tcp expected open, is not scanned", "443/tcp open unexpectedly"],
            }),
        );
        let report = PortReport {
            address: "::1".parse().unwrap(),
            states: BTreeMap::from([(53, PortState::Open), (161, PortState::OpenFiltered)]),
        };
        crate::details::assert_wire(
            "udp",
            port_outcome("udp", &report, None).details,
            serde_json::json!({
                "address": "::1", "protocol": "udp", "scanned": 2, "counts": {"open": 1, "open|filtered": 1},
                "ports": {"161": "open|filtered", "53": "open"}, "problems": [],
            }),
        );
    }

    #[test]
    fn port_lists_parse_lists_and_ranges_and_say_what_is_wrong() {
        assert_eq!(PortList::parse("80, 22,8000-8002,22").unwrap().ports(), &[22, 80, 8000, 8001, 8002]);
        assert_eq!(PortList::all().ports().len(), 65_535);
        for (bad, needle) in
            [("0", "not a port"), ("70000", "not a port"), ("9-3", "backwards"), ("", "no port"), ("a-b", "not a port")]
        {
            let error = PortList::parse(bad).unwrap_err().to_string();
            assert!(error.contains(needle), "{bad:?}: {error}");
        }
    }

    #[test]
    fn snmp_probes_are_well_formed_ber() {
        // Every constructed value's length covers exactly what it holds.
        fn check(bytes: &[u8]) -> usize {
            let (tag, length) = (bytes[0], usize::from(bytes[1]));
            assert!(length < 0x80, "short form only");
            if tag & 0x20 != 0 {
                let mut at = 2;
                while at < 2 + length {
                    at += check(&bytes[at..]);
                }
                assert_eq!(at, 2 + length, "tag {tag:#x}");
            }
            2 + length
        }
        let probes = udp_probes(161);
        assert_eq!(probes.len(), 2);
        for probe in &probes {
            assert_eq!(check(probe), probe.len());
        }
        assert_eq!(probes[0][4], 3, "SNMPv3 first: engine discovery needs no community");
        assert_eq!(check(&probes[0][24..]), 16, "the security parameters inside their octet string");
        assert_eq!(udp_probes(123)[0].len(), 48);
        assert_eq!(udp_probes(9999), vec![Vec::<u8>::new()]);
        let dns = udp_probes(53);
        assert!(dns.iter().all(|q| q.len() >= 12 && q[5] == 1), "one question each");
    }

    #[tokio::test]
    async fn tcp_states_on_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap().port()
        };
        let ports = PortList::parse(&format!("{open},{closed}")).unwrap();
        let report = scan_tcp("127.0.0.1".parse().unwrap(), &ports, 10, Duration::from_secs(1)).await;
        assert_eq!(report.states[&open], PortState::Open);
        assert_eq!(report.states[&closed], PortState::Closed);

        let check = TcpScan::new("t", "127.0.0.1", ports).expect_open(vec![closed]);
        let result = crate::run_check(&check, Duration::from_secs(5)).await;
        assert_eq!(result.status, CheckStatus::Critical);
        let problems = result.details["problems"].to_string();
        assert!(problems.contains(&format!("{closed}/tcp expected open, is closed")), "{problems}");
        assert!(problems.contains(&format!("{open}/tcp open unexpectedly")), "{problems}");
    }

    #[tokio::test]
    async fn unresolvable_names_are_unknown_with_the_reason() {
        let check = TcpScan::new("t", "no-such-host.invalid", PortList::parse("80").unwrap());
        let result = crate::run_check(&check, Duration::from_secs(10)).await;
        assert_eq!(result.status, CheckStatus::Unknown);
        assert!(result.details["error"].as_str().unwrap().contains("no-such-host.invalid"), "{}", result.details);
    }
}
