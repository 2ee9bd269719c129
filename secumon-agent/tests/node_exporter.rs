//! Truth test: the agent and Debian's `prometheus-node-exporter`, run side by side on this
//! machine, must agree on the figures both report. The exporter listens on loopback only.
//! Counters are read by the exporter just before and just after the agent, so the agent's
//! value must fall between the two readings (within the kernel's tick rounding).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type Labels = BTreeMap<String, String>;

/// Parsed exposition or JSON samples: (name, labels, value).
type Samples = Vec<(String, Labels, f64)>;

fn exporter_binary() -> Option<&'static str> {
    ["prometheus-node-exporter", "node_exporter"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
}

struct Exporter(Child, u16);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_exporter(binary: &str) -> Exporter {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(binary)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(["--collector.disable-defaults", "--collector.cpu", "--collector.meminfo"])
        .args(["--collector.filesystem", "--collector.netdev", "--collector.loadavg"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node exporter");
    let exporter = Exporter(child, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "node exporter did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    exporter
}

fn scrape(port: u16) -> Samples {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    let text = body.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).filter_map(parse_exposition_line).collect()
}

fn parse_exposition_line(line: &str) -> Option<(String, Labels, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series.to_string(), Labels::new()),
        Some((name, rest)) => {
            let mut labels = Labels::new();
            for pair in rest.trim_end_matches('}').split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once("=\"")?;
                labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
            }
            (name.to_string(), labels)
        }
    };
    Some((name, labels, value))
}

fn agent_snapshot() -> Samples {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.yaml");
    std::fs::write(&config, "collector:\n  endpoint: 127.0.0.1:9\nmetrics:\n  enabled: [cpu, memory, disk, network]\n")
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_secumon-agent"))
        .arg("--config")
        .arg(&config)
        .args(["--once", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let labels = serde_json::from_value(v["labels"].clone()).unwrap();
            (v["name"].as_str().unwrap().to_string(), labels, v["value"].as_f64().unwrap())
        })
        .collect()
}

/// Sum of every sample of `name` whose labels include `matchers`.
fn sum(samples: &Samples, name: &str, matchers: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name && matchers.iter().all(|(k, v)| labels.get(*k).map(String::as_str) == Some(v))
        })
        .map(|(_, _, v)| *v)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn assert_between(what: &str, ours: f64, before: f64, after: f64, slack: f64) {
    let (low, high) = (before.min(after) - slack, before.max(after) + slack);
    assert!((low..=high).contains(&ours), "{what}: agent {ours}, node_exporter {before} then {after} (slack {slack})");
}

#[test]
fn agent_agrees_with_node_exporter() {
    let Some(binary) = exporter_binary() else {
        secumon_core::testing::peer_missing("prometheus-node-exporter is not installed (scripts/test installs it)");
        return;
    };
    let exporter = start_exporter(binary);
    let before = scrape(exporter.1);
    let ours = agent_snapshot();
    let after = scrape(exporter.1);

    // Each core's counter may be a tick (10 ms at 100 Hz) apart between the two readers.
    let cores = before.iter().filter(|(n, l, _)| n == "node_cpu_seconds_total" && l["mode"] == "idle").count() as f64;
    for mode in ["user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice"] {
        assert_between(
            &format!("cpu seconds {mode}"),
            sum(&ours, "cpu_seconds_total", &[("mode", mode)]).unwrap(),
            sum(&before, "node_cpu_seconds_total", &[("mode", mode)]).unwrap(),
            sum(&after, "node_cpu_seconds_total", &[("mode", mode)]).unwrap(),
            0.02 * cores + 0.05,
        );
    }

    for (_, labels, _) in before.iter().filter(|(n, l, _)| n == "node_cpu_seconds_total" && l["mode"] == "user") {
        let core = labels["cpu"].as_str();
        for mode in ["user", "system", "idle"] {
            assert_between(
                &format!("cpu {core} seconds {mode}"),
                sum(&ours, "cpu_core_seconds_total", &[("core", core), ("mode", mode)]).unwrap(),
                sum(&before, "node_cpu_seconds_total", &[("cpu", core), ("mode", mode)]).unwrap(),
                sum(&after, "node_cpu_seconds_total", &[("cpu", core), ("mode", mode)]).unwrap(),
                0.05,
            );
        }
    }

    assert_eq!(sum(&ours, "memory_total_bytes", &[]), sum(&before, "node_memory_MemTotal_bytes", &[]), "memory total");
    for (ours_name, theirs) in [
        ("memory_available_bytes", "node_memory_MemAvailable_bytes"),
        ("memory_free_bytes", "node_memory_MemFree_bytes"),
        ("memory_buffers_bytes", "node_memory_Buffers_bytes"),
        ("swap_total_bytes", "node_memory_SwapTotal_bytes"),
    ] {
        // Memory moves while we read: allow 64 MiB beyond what the exporter saw.
        assert_between(
            ours_name,
            sum(&ours, ours_name, &[]).unwrap(),
            sum(&before, theirs, &[]).unwrap(),
            sum(&after, theirs, &[]).unwrap(),
            64.0 * 1024.0 * 1024.0,
        );
    }

    let mut compared_filesystems = 0;
    for (name, labels, size) in ours.iter().filter(|(n, _, _)| n == "filesystem_size_bytes") {
        let mountpoint = labels["mountpoint"].as_str();
        if let Some(theirs) = sum(&before, "node_filesystem_size_bytes", &[("mountpoint", mountpoint)]) {
            assert_eq!(*size, theirs, "{name} of {mountpoint}");
            compared_filesystems += 1;
        }
    }
    assert!(compared_filesystems > 0, "no filesystem in common: {ours:?}");

    // node_exporter leaves `lo` out by default: compare every interface both report.
    let interfaces: Vec<String> = before
        .iter()
        .filter(|(n, _, _)| n == "node_network_receive_bytes_total")
        .map(|(_, l, _)| l["device"].clone())
        .filter(|d| sum(&ours, "network_receive_bytes_total", &[("interface", d)]).is_some())
        .collect();
    assert!(!interfaces.is_empty(), "no interface in common");
    for interface in &interfaces {
        for (ours_name, theirs) in [
            ("network_receive_bytes_total", "node_network_receive_bytes_total"),
            ("network_transmit_packets_total", "node_network_transmit_packets_total"),
        ] {
            assert_between(
                &format!("{ours_name} of {interface}"),
                sum(&ours, ours_name, &[("interface", interface)]).unwrap(),
                sum(&before, theirs, &[("device", interface)]).unwrap(),
                sum(&after, theirs, &[("device", interface)]).unwrap(),
                0.0,
            );
        }
    }
    assert_between(
        "load1",
        sum(&ours, "load1", &[]).unwrap(),
        sum(&before, "node_load1", &[]).unwrap(),
        sum(&after, "node_load1", &[]).unwrap(),
        0.1,
    );
}
