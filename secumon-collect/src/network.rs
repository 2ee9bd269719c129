//! Traffic counters per network interface from `/proc/net/dev`.

use std::path::{Path, PathBuf};

use secumon_core::{Labels, Sample};

use crate::sockdiag::{self, TCP_STATE_COUNT};
use crate::{CollectError, Collector, parse_error, read_proc};

/// Column of `/proc/net/dev` (after the interface name) and the series it feeds.
const COLUMNS: [(usize, &str); 8] = [
    (0, "network_receive_bytes_total"),
    (1, "network_receive_packets_total"),
    (2, "network_receive_errors_total"),
    (3, "network_receive_drop_total"),
    (8, "network_transmit_bytes_total"),
    (9, "network_transmit_packets_total"),
    (10, "network_transmit_errors_total"),
    (11, "network_transmit_drop_total"),
];

/// `network_{receive,transmit}_{bytes,packets,errors,drop}_total{interface}`,
/// `network_tcp_connections{family,state}`, `network_udp_sockets{family}`.
pub struct NetworkCollector {
    root: PathBuf,
    /// Count TCP sockets through `sock_diag` rather than `/proc/net/tcp{,6}`: the same
    /// figures at a fifth of the CPU (see the `sockdiag` module). Turned off for good the
    /// first time the kernel refuses it (no `inet_diag`).
    sock_diag: bool,
}

impl NetworkCollector {
    /// Reads everything from files under `proc_root`.
    pub fn new(proc_root: &Path) -> Self {
        Self { root: proc_root.to_path_buf(), sock_diag: false }
    }

    /// Asks the kernel for the TCP socket states through netlink (for this process's network
    /// namespace, as `/proc/net/tcp` would give them), reading the files only if it refuses.
    #[must_use]
    pub fn with_sock_diag(mut self) -> Self {
        self.sock_diag = true;
        self
    }

    /// TCP sockets by state, per family; IPv6 only where the kernel has it.
    fn tcp_states(&mut self) -> Result<Vec<(&'static str, [u64; TCP_STATES.len()])>, CollectError> {
        if self.sock_diag {
            match sockdiag::tcp_states() {
                Ok(counts) => {
                    let mut families = vec![("ipv4", counts.ipv4)];
                    // The file is not read, only looked up: it exists when IPv6 does.
                    if self.root.join("net/tcp6").exists() {
                        families.push(("ipv6", counts.ipv6));
                    }
                    return Ok(families);
                }
                Err(error) => {
                    tracing::info!(%error, "counting TCP sockets from /proc/net/tcp instead");
                    self.sock_diag = false;
                }
            }
        }
        let mut families = Vec::with_capacity(2);
        for (file, family) in [("net/tcp", "ipv4"), ("net/tcp6", "ipv6")] {
            // A kernel without IPv6 has no tcp6: nothing to count.
            let Ok((path, table)) = read_proc(&self.root, file) else { continue };
            families.push((family, count_tcp_states(&path, &table)?));
        }
        Ok(families)
    }
}

/// Sockets per state in a `/proc/net/tcp` table.
fn count_tcp_states(path: &Path, table: &str) -> Result<[u64; TCP_STATES.len()], CollectError> {
    let mut by_state = [0u64; TCP_STATES.len()];
    for line in table.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let code = line.split_ascii_whitespace().nth(3).and_then(|st| u8::from_str_radix(st, 16).ok());
        match code {
            Some(code @ 1..=12) => by_state[usize::from(code) - 1] += 1,
            _ => return Err(parse_error(path, format!("bad socket line {line:?}"))),
        }
    }
    Ok(by_state)
}

impl Collector for NetworkCollector {
    fn name(&self) -> &'static str {
        "network"
    }

    fn collect(&mut self, timestamp_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let (path, text) = read_proc(&self.root, "net/dev")?;
        // Two header lines, then `iface: 16 numbers`.
        for line in text.lines().skip(2) {
            let Some((interface, counters)) = line.split_once(':') else {
                continue;
            };
            let numbers: Vec<u64> = counters
                .split_ascii_whitespace()
                .map(|n| {
                    n.parse().map_err(|_| parse_error(&path, format!("bad counter {n:?} for {}", interface.trim())))
                })
                .collect::<Result<_, _>>()?;
            if numbers.len() < 16 {
                return Err(parse_error(
                    &path,
                    format!("{} has {} counters, expected 16", interface.trim(), numbers.len()),
                ));
            }
            let labels = Labels::from([("interface".to_string(), interface.trim().to_string())]);
            for (column, name) in COLUMNS {
                out.push(Sample::new(name, labels.clone(), timestamp_ms, numbers[column] as f64));
            }
        }
        for (family, by_state) in self.tcp_states()? {
            for (state, count) in TCP_STATES.iter().zip(by_state) {
                let labels = Labels::from([
                    ("family".to_string(), family.to_string()),
                    ("state".to_string(), state.to_string()),
                ]);
                out.push(Sample::new("network_tcp_connections", labels, timestamp_ms, count as f64));
            }
        }
        for (file, family) in [("net/udp", "ipv4"), ("net/udp6", "ipv6")] {
            let Ok((_, table)) = read_proc(&self.root, file) else { continue };
            let sockets = table.lines().skip(1).filter(|l| !l.trim().is_empty()).count();
            let labels = Labels::from([("family".to_string(), family.to_string())]);
            out.push(Sample::new("network_udp_sockets", labels, timestamp_ms, sockets as f64));
        }
        Ok(())
    }
}

/// TCP states in the kernel's numbering (`st` column of `/proc/net/tcp`), from 1.
const TCP_STATES: [&str; TCP_STATE_COUNT] = [
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
    "new_syn_recv",
];

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n  \
eth0: 987654321 12345 3 4 0 0 0 17 123456789 6789 5 6 0 0 0 0\n";

    fn value(samples: &[Sample], name: &str, interface: &str) -> f64 {
        samples.iter().find(|s| s.series.name == name && s.series.labels["interface"] == interface).unwrap().value
    }

    #[test]
    fn reads_every_counter_per_interface() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("net")).unwrap();
        std::fs::write(dir.path().join("net/dev"), NET_DEV).unwrap();
        let mut samples = Vec::new();
        NetworkCollector::new(dir.path()).collect(1, &mut samples).unwrap();
        assert_eq!(samples.len(), 16);
        assert_eq!(value(&samples, "network_receive_bytes_total", "eth0"), 987_654_321.0);
        assert_eq!(value(&samples, "network_receive_errors_total", "eth0"), 3.0);
        assert_eq!(value(&samples, "network_receive_drop_total", "eth0"), 4.0);
        assert_eq!(value(&samples, "network_transmit_bytes_total", "eth0"), 123_456_789.0);
        assert_eq!(value(&samples, "network_transmit_packets_total", "eth0"), 6789.0);
        assert_eq!(value(&samples, "network_transmit_drop_total", "eth0"), 6.0);
        assert_eq!(value(&samples, "network_transmit_bytes_total", "lo"), 1000.0);
    }

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n\
   2: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n\
   3: 0100007F:C352 0100007F:1F90 06 00000000:00000000 03:00001000 00000000     0        0 0 3 0\n";

    #[test]
    fn counts_tcp_states_and_udp_sockets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("net")).unwrap();
        std::fs::write(dir.path().join("net/dev"), NET_DEV).unwrap();
        std::fs::write(dir.path().join("net/tcp"), TCP).unwrap();
        let udp: Vec<&str> = TCP.lines().take(3).collect();
        std::fs::write(dir.path().join("net/udp"), udp.join("\n")).unwrap();
        let mut samples = Vec::new();
        NetworkCollector::new(dir.path()).collect(1, &mut samples).unwrap();
        let count = |name: &str, family: &str, state: Option<&str>| {
            samples
                .iter()
                .find(|s| {
                    s.series.name == name
                        && s.series.labels["family"] == family
                        && state.is_none_or(|st| s.series.labels["state"] == st)
                })
                .map(|s| s.value)
        };
        assert_eq!(count("network_tcp_connections", "ipv4", Some("established")), Some(2.0));
        assert_eq!(count("network_tcp_connections", "ipv4", Some("listen")), Some(1.0));
        assert_eq!(count("network_tcp_connections", "ipv4", Some("time_wait")), Some(1.0));
        assert_eq!(count("network_tcp_connections", "ipv4", Some("close_wait")), Some(0.0));
        assert_eq!(count("network_tcp_connections", "ipv6", None), None, "no tcp6 file, no series");
        assert_eq!(count("network_udp_sockets", "ipv4", None), Some(2.0));

        std::fs::write(dir.path().join("net/tcp"), "header\n   0: garbage\n").unwrap();
        let err = NetworkCollector::new(dir.path()).collect(1, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("net/tcp"), "{err}");
    }

    #[test]
    fn live_listening_socket_is_counted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut samples = Vec::new();
        NetworkCollector::new(Path::new("/proc")).collect(1, &mut samples).unwrap();
        let listening = samples.iter().find(|s| {
            s.series.name == "network_tcp_connections"
                && s.series.labels["family"] == "ipv4"
                && s.series.labels["state"] == "listen"
        });
        assert!(listening.is_some_and(|s| s.value >= 1.0), "our listener is counted: {listening:?}");
        drop(listener);
    }

    #[test]
    fn sock_diag_agrees_with_proc_net_tcp() {
        // Sockets of our own, listening and established, so the comparison is not of zeros.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        let _listener6 = std::net::TcpListener::bind("[::1]:0"); // where the machine has IPv6
        let mut files = NetworkCollector::new(Path::new("/proc"));
        let mut netlink = NetworkCollector::new(Path::new("/proc")).with_sock_diag();
        // Other programs open and close sockets meanwhile: both readings must agree at a
        // moment the machine is quiet (the files read the same before and after), looked for
        // over up to ten seconds.
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let before = files.tcp_states().unwrap();
            let asked = netlink.tcp_states().unwrap();
            if !netlink.sock_diag {
                secumon_core::testing::peer_missing("the kernel refuses sock_diag (no inet_diag)");
                return;
            }
            let after = files.tcp_states().unwrap();
            if before == after && asked == before {
                let ipv4 = asked.iter().find(|(family, _)| *family == "ipv4").unwrap().1;
                assert!(ipv4[0] >= 2, "our connection, both ends, is established: {ipv4:?}");
                assert!(ipv4[9] >= 1, "our listener listens: {ipv4:?}");
                return;
            }
            seen.truncate(4); // the first few disagreements are enough to read
            seen.push((before, asked, after));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("sock_diag and /proc/net/tcp never agreed: {seen:?}");
    }

    #[test]
    fn loopback_bytes_grow_with_loopback_traffic() {
        let mut collector = NetworkCollector::new(Path::new("/proc"));
        let mut before = Vec::new();
        collector.collect(1, &mut before).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[1u8; 100_000]).unwrap();
        drop(client);
        let mut received = Vec::new();
        server.read_to_end(&mut received).unwrap();
        let mut after = Vec::new();
        collector.collect(2, &mut after).unwrap();
        let grown =
            value(&after, "network_receive_bytes_total", "lo") - value(&before, "network_receive_bytes_total", "lo");
        assert!(grown >= 100_000.0, "lo received only {grown} more bytes");
    }
}
