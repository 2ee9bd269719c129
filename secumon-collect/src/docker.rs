//! Docker containers through the Engine API on its unix socket: state, restarts, CPU,
//! memory and network per container. Without Docker the collector reports itself
//! unavailable and asks again only every few minutes.
//!
//! The API is plain HTTP/1.1 on a local socket; a small blocking client (httparse for the
//! head, our own bounded chunked decoder) keeps the agent free of an HTTP stack for it.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use secumon_core::{Labels, Sample};
use serde::Deserialize;

use crate::{CollectError, Collector};

const API: &str = "/v1.43";
const RETRY_UNAVAILABLE: Duration = Duration::from_secs(300);
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);
const KNOWN_STATES: [&str; 6] = ["created", "running", "paused", "restarting", "exited", "dead"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerSummary {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    image: String,
    #[serde(default)]
    state: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ContainerInspect {
    restart_count: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Stats {
    cpu_stats: CpuStats,
    precpu_stats: CpuStats,
    memory_stats: MemoryStats,
    networks: BTreeMap<String, NetworkStats>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(default)]
struct CpuStats {
    cpu_usage: CpuUsage,
    system_cpu_usage: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(default)]
struct CpuUsage {
    total_usage: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MemoryStats {
    usage: Option<u64>,
    limit: Option<u64>,
    stats: HashMap<String, u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NetworkStats {
    rx_bytes: u64,
    tx_bytes: u64,
}

/// `containers{state}`, and per container (`container`, `image`): `container_up`,
/// `container_restarts_total`, `container_cpu_seconds_total`, `container_cpu_usage_ratio`
/// (share of the whole machine), `container_memory_usage_bytes` (without inactive page
/// cache, as `docker stats`), `container_memory_limit_bytes`,
/// `container_network_{receive,transmit}_bytes_total{interface}`.
pub struct DockerCollector {
    socket: PathBuf,
    unavailable_since: Option<Instant>,
    last_reason: String,
    /// Container id → (container CPU ns, system CPU ns) at the previous cycle.
    previous_cpu: HashMap<String, (u64, u64)>,
}

impl DockerCollector {
    /// A collector asking the Docker Engine API on the unix `socket` (`/var/run/docker.sock`).
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            unavailable_since: None,
            last_reason: String::new(),
            previous_cpu: HashMap::new(),
        }
    }

    /// `None` when the object is gone (a container removed between list and inspect).
    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>, CollectError> {
        let Some(body) = http_get(&self.socket, path)? else { return Ok(None) };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| CollectError::Parse { path: path.to_string(), reason: e.to_string() })
    }
}

impl Collector for DockerCollector {
    fn name(&self) -> &'static str {
        "containers"
    }

    fn collect(&mut self, timestamp_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        if self.unavailable_since.is_some_and(|since| since.elapsed() < RETRY_UNAVAILABLE) {
            return Err(CollectError::Unavailable { collector: "containers", reason: self.last_reason.clone() });
        }
        let containers: Option<Vec<ContainerSummary>> = match self.get(&format!("{API}/containers/json?all=1")) {
            Err(CollectError::Read { path, source }) => {
                self.unavailable_since = Some(Instant::now());
                self.last_reason = format!("no Docker Engine on {path}: {source}");
                return Err(CollectError::Unavailable { collector: "containers", reason: self.last_reason.clone() });
            }
            other => other?,
        };
        let containers = containers.unwrap_or_default();
        self.unavailable_since = None;

        // Every known state is reported, so a count falls to zero when its last container goes.
        let mut states: BTreeMap<String, u64> = KNOWN_STATES.iter().map(|s| (s.to_string(), 0)).collect();
        let mut seen = HashMap::new();
        for container in &containers {
            *states.entry(container.state.clone()).or_default() += 1;
            let name = container.names.first().map(|n| n.trim_start_matches('/')).unwrap_or(&container.id);
            let labels = Labels::from([
                ("container".to_string(), name.to_string()),
                ("image".to_string(), container.image.clone()),
            ]);
            let push = |out: &mut Vec<Sample>, metric: &str, labels: &Labels, value: f64| {
                out.push(Sample::new(metric, labels.clone(), timestamp_ms, value))
            };
            let running = container.state == "running";
            let Some(inspect) = self.get::<ContainerInspect>(&format!("{API}/containers/{}/json", container.id))?
            else {
                continue;
            };
            push(out, "container_up", &labels, f64::from(u8::from(running)));
            push(out, "container_restarts_total", &labels, inspect.restart_count as f64);
            if !running {
                continue;
            }
            let Some(stats) =
                self.get::<Stats>(&format!("{API}/containers/{}/stats?stream=false&one-shot=true", container.id))?
            else {
                continue;
            };
            let cpu = stats.cpu_stats.cpu_usage.total_usage;
            push(out, "container_cpu_seconds_total", &labels, cpu as f64 / 1e9);
            if let Some(system) = stats.cpu_stats.system_cpu_usage {
                // Against our previous reading, or the one Docker took a moment before.
                let before = self.previous_cpu.get(&container.id).copied().or_else(|| {
                    stats.precpu_stats.system_cpu_usage.map(|s| (stats.precpu_stats.cpu_usage.total_usage, s))
                });
                if let Some((cpu_before, system_before)) = before
                    && cpu >= cpu_before
                    && system > system_before
                {
                    let ratio = (cpu - cpu_before) as f64 / (system - system_before) as f64;
                    push(out, "container_cpu_usage_ratio", &labels, ratio.clamp(0.0, 1.0));
                }
                seen.insert(container.id.clone(), (cpu, system));
            }
            if let Some(usage) = stats.memory_stats.usage {
                let inactive = ["inactive_file", "total_inactive_file"]
                    .iter()
                    .find_map(|k| stats.memory_stats.stats.get(*k).copied())
                    .unwrap_or(0);
                push(out, "container_memory_usage_bytes", &labels, usage.saturating_sub(inactive) as f64);
            }
            if let Some(limit) = stats.memory_stats.limit {
                push(out, "container_memory_limit_bytes", &labels, limit as f64);
            }
            for (interface, network) in &stats.networks {
                let mut labels = labels.clone();
                labels.insert("interface".to_string(), interface.clone());
                push(out, "container_network_receive_bytes_total", &labels, network.rx_bytes as f64);
                push(out, "container_network_transmit_bytes_total", &labels, network.tx_bytes as f64);
            }
        }
        self.previous_cpu = seen;
        for (state, count) in states {
            out.push(Sample::new(
                "containers",
                Labels::from([("state".to_string(), state)]),
                timestamp_ms,
                count as f64,
            ));
        }
        Ok(())
    }
}

/// One `GET` over the unix socket: the body of a 2xx answer, `None` for 404 and 409 (the
/// container went away or is being removed).
fn http_get(socket: &std::path::Path, path: &str) -> Result<Option<Vec<u8>>, CollectError> {
    let read_error = |source| CollectError::Read { path: socket.display().to_string(), source };
    let parse_error = |reason: String| CollectError::Parse { path: path.to_string(), reason };
    let mut stream = UnixStream::connect(socket).map_err(read_error)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(read_error)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(read_error)?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(read_error)?;
    let mut raw = Vec::new();
    stream.take(MAX_BODY_BYTES as u64 + 64 * 1024).read_to_end(&mut raw).map_err(read_error)?;

    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(&raw) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err(parse_error("truncated HTTP answer".into())),
        Err(e) => return Err(parse_error(format!("bad HTTP answer: {e}"))),
    };
    let status = response.code.unwrap_or(0);
    if status == 404 || status == 409 {
        return Ok(None);
    }
    if !(200..300).contains(&status) {
        return Err(parse_error(format!("Docker answered HTTP {status}")));
    }
    let chunked = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding") && String::from_utf8_lossy(h.value).contains("chunked")
    });
    let body = &raw[head_len..];
    let body = if chunked {
        decode_chunked(body).ok_or_else(|| parse_error("bad chunked encoding".into()))?
    } else {
        body.to_vec()
    };
    Ok(Some(body))
}

/// Joins the chunks of a `Transfer-Encoding: chunked` body.
fn decode_chunked(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if out.len() + size > MAX_BODY_BYTES || body.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;
    use std::os::unix::net::UnixListener;
    use std::sync::{Arc, Mutex};

    use super::*;

    const LIST: &str = r#"[
      {"Id":"a1","Names":["/web"],"Image":"nginx:1.25","State":"running","Status":"Up 2 hours"},
      {"Id":"b2","Names":["/batch"],"Image":"busybox","State":"exited","Status":"Exited (0)"},
      {"Id":"gone","Names":["/removed-meanwhile"],"Image":"busybox","State":"exited","Status":"Exited (0)"}
    ]"#;

    fn stats(cpu: u64, system: u64) -> String {
        format!(
            r#"{{"read":"2026-11-24T07:00:00Z","cpu_stats":{{"cpu_usage":{{"total_usage":{cpu}}},"system_cpu_usage":{system},"online_cpus":2}},
               "precpu_stats":{{"cpu_usage":{{"total_usage":1000000000}},"system_cpu_usage":100000000000}},
               "memory_stats":{{"usage":50000000,"limit":1073741824,"stats":{{"inactive_file":10000000,"anon":30000000}}}},
               "networks":{{"eth0":{{"rx_bytes":12345,"tx_bytes":678,"rx_packets":10}}}}}}"#
        )
    }

    /// A fake Engine API: answers by path; the stats answer comes chunked.
    fn fake_docker(socket: &std::path::Path, stats_body: Arc<Mutex<String>>) {
        let listener = UnixListener::bind(socket).unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut request_line = String::new();
                std::io::BufReader::new(&stream).read_line(&mut request_line).unwrap();
                let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
                let answer = if path.starts_with("/v1.43/containers/json") {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{LIST}",
                        LIST.len()
                    )
                } else if path.ends_with("/a1/json") {
                    let body = r#"{"Id":"a1","RestartCount":3,"State":{"Status":"running"}}"#;
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                } else if path.ends_with("/gone/json") {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}".to_string()
                } else if path.ends_with("/b2/json") {
                    let body = r#"{"Id":"b2","RestartCount":0}"#;
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                } else if path.contains("/a1/stats") {
                    let body = stats_body.lock().unwrap().clone();
                    let (first, rest) = body.split_at(body.len() / 2);
                    format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{rest}\r\n0\r\n\r\n",
                        first.len(),
                        rest.len()
                    )
                } else {
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}".to_string()
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
    }

    fn value(samples: &[Sample], name: &str, container: &str) -> Option<f64> {
        samples
            .iter()
            .find(|s| s.series.name == name && s.series.labels.get("container").map(String::as_str) == Some(container))
            .map(|s| s.value)
    }

    #[test]
    fn reads_state_restarts_cpu_memory_and_network() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let stats_body = Arc::new(Mutex::new(stats(3_000_000_000, 110_000_000_000)));
        fake_docker(&socket, stats_body.clone());
        let mut collector = DockerCollector::new(&socket);
        let mut first = Vec::new();
        collector.collect(1, &mut first).unwrap();
        assert_eq!(value(&first, "container_up", "web"), Some(1.0));
        assert_eq!(value(&first, "container_up", "batch"), Some(0.0));
        assert_eq!(value(&first, "container_restarts_total", "web"), Some(3.0));
        assert_eq!(value(&first, "container_cpu_seconds_total", "web"), Some(3.0));
        // Against Docker's own previous reading: 2 s of CPU over 10 s of machine time.
        assert_eq!(value(&first, "container_cpu_usage_ratio", "web"), Some(0.2));
        assert_eq!(value(&first, "container_memory_usage_bytes", "web"), Some(40_000_000.0));
        assert_eq!(value(&first, "container_memory_limit_bytes", "web"), Some(1_073_741_824.0));
        assert_eq!(value(&first, "container_network_receive_bytes_total", "web"), Some(12345.0));
        assert_eq!(value(&first, "container_network_transmit_bytes_total", "web"), Some(678.0));
        assert_eq!(value(&first, "container_cpu_seconds_total", "batch"), None, "no stats for a stopped container");
        let states: Vec<(String, f64)> = first
            .iter()
            .filter(|s| s.series.name == "containers")
            .map(|s| (s.series.labels["state"].clone(), s.value))
            .collect();
        let expected: Vec<(String, f64)> =
            [("created", 0.0), ("dead", 0.0), ("exited", 2.0), ("paused", 0.0), ("restarting", 0.0), ("running", 1.0)]
                .into_iter()
                .map(|(s, n)| (s.to_string(), n))
                .collect();
        assert_eq!(states, expected);
        assert_eq!(
            value(&first, "container_up", "removed-meanwhile"),
            None,
            "a container gone before inspect is skipped"
        );

        // Next cycle: against our own previous reading, 1 s over 20 s.
        *stats_body.lock().unwrap() = stats(4_000_000_000, 130_000_000_000);
        let mut second = Vec::new();
        collector.collect(2, &mut second).unwrap();
        assert_eq!(value(&second, "container_cpu_usage_ratio", "web"), Some(0.05));
    }

    #[test]
    fn without_docker_it_is_unavailable_and_waits_before_asking_again() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let mut collector = DockerCollector::new(&socket);
        let err = collector.collect(1, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, CollectError::Unavailable { collector: "containers", .. }), "{err}");
        // Docker appears, but inside the retry window the collector does not look.
        fake_docker(&socket, Arc::new(Mutex::new(stats(1, 1))));
        let err = collector.collect(2, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, CollectError::Unavailable { .. }), "{err}");
        collector.unavailable_since = None; // the window has passed
        collector.collect(3, &mut Vec::new()).unwrap();
    }

    #[test]
    fn server_errors_and_bad_chunks_are_parse_errors() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        fake_docker(&socket, Arc::new(Mutex::new(String::new())));
        assert_eq!(http_get(&socket, "/v1.43/containers/gone/json").unwrap(), None);
        let err = http_get(&socket, "/v1.43/nothing").unwrap_err().to_string();
        assert!(err.contains("/v1.43/nothing") && err.contains("500"), "{err}");
        assert_eq!(decode_chunked(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), Some(b"abcde".to_vec()));
        assert_eq!(decode_chunked(b"ff\r\nabc"), None);
        assert_eq!(decode_chunked(b"zz\r\n"), None);
    }
}
