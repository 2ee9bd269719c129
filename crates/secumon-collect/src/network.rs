//! Traffic counters per network interface from `/proc/net/dev`.

use std::path::{Path, PathBuf};

use secumon_core::{Labels, Sample};

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
}

impl NetworkCollector {
    pub fn new(proc_root: &Path) -> Self {
        Self { root: proc_root.to_path_buf() }
    }
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
        Ok(())
    }
}

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
