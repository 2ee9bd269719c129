//! Prometheus remote write into SecuMon: a hand-made request per host and tenant, with the
//! refusals a sender must see; then a real Prometheus (Debian's `prometheus`) scraping a real
//! node_exporter (and itself) every second and remote-writing to SecuMon, whose answers to the
//! same range queries (every scraped series, then rates, aggregations, vector matching with
//! `group_left`, set operators and `histogram_quantile`) must equal that Prometheus' own.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use secumon_core::now_ms;
use secumon_server::auth::Role;
use secumon_server::remote_write::{Label, TimeSeries, WireSample, WriteRequest, encode};
use secumon_server::{Server, ServerConfig};
use serde_json::Value;

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn started_with_keys() -> (Server, tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config).await.unwrap();
    let accounts = server.accounts();
    accounts.add_user("ops", "a long test password", "acme", Role::Operator, false).await.unwrap();
    let (_, writer) = accounts.create_api_key("acme", "prometheus", Role::Operator, "ops").await.unwrap();
    let (_, reader) = accounts.create_api_key("acme", "grafana", Role::Viewer, "ops").await.unwrap();
    (server, dir, writer, reader)
}

/// `query_range` of `expr` on a Prometheus API at `base`, as `(labels, [(t, value)])` by
/// label set, without the labels SecuMon adds (`host`, `tenant`).
async fn range(
    http: &Client,
    base: &str,
    key: Option<&str>,
    expr: &str,
    start: f64,
    end: f64,
) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut request = http.post(format!("{base}/api/v1/query_range")).form(&[
        ("query", expr.to_string()),
        ("start", start.to_string()),
        ("end", end.to_string()),
        ("step", "1".to_string()),
    ]);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let answer: Value = request.send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["status"], "success", "{base}: {answer}");
    answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|series| {
            let mut labels = series["metric"].as_object().unwrap().clone();
            labels.remove("host");
            labels.remove("tenant");
            let points = series["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().parse::<f64>().unwrap()))
                .collect();
            (Value::Object(labels).to_string(), points)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_written_request_is_stored_per_host_for_the_callers_tenant_and_bad_ones_are_refused() {
    let (server, _dir, writer, reader) = started_with_keys().await;
    let url = format!("http://{}/prometheus/api/v1/write", server.api_addr());
    let http = Client::new();
    let t = now_ms() - 10_000;
    let series = |name: &str, instance: &str, values: &[f64]| TimeSeries {
        labels: [("__name__", name), ("instance", instance), ("job", "node")]
            .iter()
            .map(|(n, v)| Label { name: n.to_string(), value: v.to_string() })
            .collect(),
        samples: values
            .iter()
            .enumerate()
            .map(|(i, &value)| WireSample { value, timestamp: t + i as i64 * 1_000 })
            .collect(),
    };
    let request = WriteRequest {
        timeseries: vec![series("node_load1", "web-1:9100", &[0.5, 0.75]), series("node_load1", "web-2:9100", &[2.0])],
    };
    let post = |key: &str, body: Vec<u8>| {
        http.post(&url)
            .bearer_auth(key)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
    };
    assert_eq!(post(&writer, encode(&request)).await.unwrap().status(), StatusCode::NO_CONTENT);

    let query = |key: &str, expr: &str| {
        let request = http
            .get(format!("http://{}/prometheus/api/v1/query", server.api_addr()))
            .bearer_auth(key)
            .query(&[("query", expr), ("time", &((t + 1_000) as f64 / 1000.0).to_string())]);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let answer = query(&reader, "node_load1").await;
    let mut got: Vec<(String, String, String)> = answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let host = e["metric"]["host"].as_str().unwrap().to_string();
            (host, e["metric"]["instance"].as_str().unwrap().to_string(), e["value"][1].as_str().unwrap().to_string())
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("web-1".to_string(), "web-1:9100".to_string(), "0.75".to_string()),
            ("web-2".to_string(), "web-2:9100".to_string(), "2".to_string())
        ]
    );

    // A viewer may read, not write; a body that is not snappy protobuf is refused whole.
    assert_eq!(post(&reader, encode(&request)).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(post(&writer, b"not snappy".to_vec()).await.unwrap().status(), StatusCode::BAD_REQUEST);
    let mut nameless = request.clone();
    nameless.timeseries[1].labels.remove(0);
    let refused = post(&writer, encode(&nameless)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.text().await.unwrap().contains("__name__"));
    // Another tenant sees none of it.
    let accounts = server.accounts();
    accounts.add_user("other", "a long test password", "globex", Role::Viewer, false).await.unwrap();
    let (_, other) = accounts.create_api_key("globex", "g", Role::Viewer, "other").await.unwrap();
    assert_eq!(query(&other, "node_load1").await["data"]["result"], serde_json::json!([]));
}

/// PromQL asked of both over the same range: raw series, rates, aggregations, matching,
/// set operators and quantiles over Prometheus' own histograms.
const CONFORMANCE: &[&str] = &[
    "{job=\"node\"}",
    "{job=\"prometheus\"}",
    "rate(node_cpu_seconds_total[5s])",
    "irate(node_network_receive_bytes_total[5s])",
    "increase(node_context_switches_total[5s])",
    "sum by (mode) (rate(node_cpu_seconds_total[5s]))",
    "avg without (cpu) (node_cpu_seconds_total)",
    "max_over_time(node_load1[5s]) - min_over_time(node_load1[5s])",
    "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
    "node_filesystem_avail_bytes * on (instance) group_left (nodename) node_uname_info",
    "node_uname_info * on (instance) group_right (nodename) node_filesystem_size_bytes",
    "node_load1 offset 2s",
    "node_filesystem_size_bytes > 0 and on (device, mountpoint) node_filesystem_readonly == 0",
    "count(up) or vector(0)",
    "up unless on (instance) node_load1",
    "count by (job) (up == 1)",
    "histogram_quantile(0.9, prometheus_http_request_duration_seconds_bucket)",
    "histogram_quantile(0.5, sum by (le) (rate(prometheus_http_response_size_bytes_bucket[5s])))",
    "histogram_quantile(0.99, sum by (le, handler) (prometheus_http_request_duration_seconds_bucket))",
];

/// Equal, both NaN, or within float summation's rounding.
fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_remote_writes_what_it_scrapes_and_both_answer_the_same() {
    let installed = |binary: &str| Command::new(binary).arg("--version").output().is_ok_and(|o| o.status.success());
    if !installed("prometheus") || !installed("prometheus-node-exporter") {
        secumon_core::testing::peer_missing(
            "prometheus or prometheus-node-exporter is not installed (Debian's packages; scripts/test installs them)",
        );
        return;
    }
    let (server, dir, writer, reader) = started_with_keys().await;
    let (exporter_port, prometheus_port) = (free_port(), free_port());
    let _exporter = Killed(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{exporter_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         scrape_configs:\n  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n\
         \x20 - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{prometheus_port}']}}]\n\
         remote_write:\n  - url: http://{api}/prometheus/api/v1/write\n    authorization: {{credentials: {writer}}}\n\
         \x20   queue_config: {{batch_send_deadline: 1s, max_samples_per_send: 5000}}\n",
        api = server.api_addr()
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let http = Client::new();
    let secumon = format!("http://{}/prometheus", server.api_addr());
    let prometheus = format!("http://127.0.0.1:{prometheus_port}");

    // Ten seconds of scrapes, the last of them written to SecuMon.
    let started = now_ms();
    let deadline = Instant::now() + Duration::from_secs(40);
    let (start, end) = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (start, end) = ((started as f64 / 1000.0 + 3.0).ceil(), (now_ms() as f64 / 1000.0 - 3.0).floor());
        let enough = end - start >= 8.0 && !range(&http, &secumon, Some(&reader), "up", end, end).await.is_empty();
        if enough {
            break (start, end);
        }
        let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "no remote-written data in SecuMon after 40 s; prometheus said:\n{log}");
    };
    // Remote write sends every second: wait for what was scraped up to `end`.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Every series both jobs scraped, raw, at every second; then what dashboards ask of them.
    for expr in CONFORMANCE {
        let theirs = range(&http, &prometheus, None, expr, start, end).await;
        let ours = range(&http, &secumon, Some(&reader), expr, start, end).await;
        assert!(!theirs.is_empty() || expr.contains("unless"), "{expr}: Prometheus answers nothing");
        let missing: Vec<&String> = theirs.keys().filter(|k| !ours.contains_key(*k)).take(5).collect();
        let extra: Vec<&String> = ours.keys().filter(|k| !theirs.contains_key(*k)).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{expr}: series missing in SecuMon {missing:?}, extra {extra:?}"
        );
        for (labels, points) in &theirs {
            let same = ours[labels].len() == points.len()
                && ours[labels].iter().zip(points).all(|(a, b)| a.0 == b.0 && same_value(a.1, b.1));
            assert!(same, "{expr}: {labels}: SecuMon {:?}, Prometheus {points:?}", ours[labels]);
        }
    }
}
