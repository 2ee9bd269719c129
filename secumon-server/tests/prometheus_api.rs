//! The Prometheus-compatible query API against Prometheus' own client: Debian's `promtool`
//! queries a real server holding known data (counters with known slopes, gauges with known
//! values and a known change), and its answers carry the numbers those imply. Errors,
//! form posts and tenant isolation are checked over plain HTTP.

use std::process::Command;

use reqwest::{Client, StatusCode};
use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_server::auth::Role;
use secumon_server::{Server, ServerConfig};
use serde_json::Value;

const MINUTE: i64 = 60_000;

/// (host, role, counter slope per second, CPU before and after the change, memory).
const HOSTS: [(&str, &str, f64, f64, f64, f64); 3] = [
    ("web-1", "web", 100.0, 0.1, 0.2, 1_000.0),
    ("web-2", "web", 250.0, 0.3, 0.6, 3_000.0),
    ("db-1", "db", 40.0, 0.5, 0.9, 8_000.0),
];

/// Samples every 15 s for 59 minutes from `t0`; the CPU gauges change at `t0 + 30m`.
fn known_data(t0: i64) -> Vec<IngestBatch> {
    HOSTS
        .iter()
        .enumerate()
        .map(|(i, (host, role, slope, cpu_before, cpu_after, memory))| {
            let labels = |extra: &[(&str, &str)]| -> Labels {
                let mut labels =
                    Labels::from([("host".to_string(), host.to_string()), ("role".into(), role.to_string())]);
                labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                labels
            };
            let mut samples = Vec::new();
            for step in 0..=236 {
                let t = t0 + step * 15_000;
                let seconds = (t - t0) as f64 / 1000.0;
                samples.push(Sample::new(
                    "net_bytes_total",
                    labels(&[("interface", "eth0")]),
                    t,
                    1e6 + slope * seconds,
                ));
                let cpu = if t < t0 + 30 * MINUTE { *cpu_before } else { *cpu_after };
                samples.push(Sample::new("cpu_usage_ratio", labels(&[]), t, cpu));
                samples.push(Sample::new("mem_used_bytes", labels(&[]), t, *memory));
            }
            IngestBatch {
                agent_id: format!("agent-{i}"),
                sequence: 1,
                host: host.to_string(),
                samples,
                ..Default::default()
            }
        })
        .collect()
}

/// Runs promtool with `-o json` and returns what it printed.
async fn promtool(args: Vec<String>) -> Value {
    let output = tokio::task::spawn_blocking(move || Command::new("promtool").args(&args).output())
        .await
        .unwrap()
        .expect("promtool runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "promtool failed: {stdout} {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("promtool printed no JSON ({e}): {stdout}"))
}

/// `(label value, value)` of each element of a vector answer, in promtool's order.
fn elements(answer: &Value, label: &str) -> Vec<(String, f64)> {
    answer
        .as_array()
        .unwrap_or_else(|| panic!("not a vector: {answer}"))
        .iter()
        .map(|e| {
            let name = e["metric"][label].as_str().unwrap_or("").to_string();
            let value: f64 = e["value"][1].as_str().unwrap().parse().unwrap();
            (name, value)
        })
        .collect()
}

fn sorted(mut pairs: Vec<(String, f64)>) -> Vec<(String, f64)> {
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

fn assert_close(got: &[(String, f64)], want: &[(&str, f64)]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for ((name, value), (want_name, want_value)) in got.iter().zip(want) {
        assert_eq!(name, want_name, "{got:?} vs {want:?}");
        assert!((value - want_value).abs() <= 1e-9 * want_value.abs().max(1.0), "{name}: {value} vs {want_value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_reads_known_rates_sums_topk_and_offsets() {
    if Command::new("promtool").arg("--version").output().is_err() {
        secumon_core::testing::peer_missing(
            "promtool is not installed (Debian's prometheus; scripts/test installs it)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config).await.unwrap();
    let accounts = server.accounts();
    accounts.add_user("ops", "a long test password", "acme", Role::Viewer, false).await.unwrap();
    let (_, key) = accounts.create_api_key("acme", "grafana", Role::Viewer, "ops").await.unwrap();
    let t0 = (now_ms() - 90 * MINUTE).div_euclid(MINUTE) * MINUTE;
    for batch in known_data(t0) {
        server.store().write_batch("acme", &batch).await.unwrap();
    }
    // Another tenant's series, which acme must never see.
    let mut secret = known_data(t0).remove(0);
    (secret.host, secret.agent_id) = ("b-secret-host".into(), "b-agent".into());
    for sample in &mut secret.samples {
        sample.series.labels.insert("host".into(), "b-secret-host".into());
    }
    server.store().write_batch("globex", &secret).await.unwrap();
    let (_, other_key) = accounts.create_api_key("globex", "b", Role::Viewer, "ops").await.unwrap();

    // promtool's instant queries cannot send a header: the key goes as basic auth's password.
    assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{key}");
    let url = format!("http://grafana:{key}@{}/prometheus", server.api_addr());
    let at = t0 + 55 * MINUTE;
    let instant = |expr: &str| {
        let args = ["query", "instant", "-o", "json", "--time", &(at / 1000).to_string(), &url, expr];
        promtool(args.iter().map(|s| s.to_string()).collect())
    };

    // Rates equal the slopes; the name goes, the other labels stay.
    let rates = instant("rate(net_bytes_total[5m])").await;
    assert_close(&sorted(elements(&rates, "host")), &[("db-1", 40.0), ("web-1", 100.0), ("web-2", 250.0)]);
    assert!(rates[0]["metric"]["__name__"].is_null() && rates[0]["metric"]["interface"] == "eth0", "{rates}");
    assert_eq!(rates[0]["value"][0].as_f64(), Some((at / 1000) as f64));
    let sums = instant("sum by (role) (rate(net_bytes_total[5m]))").await;
    assert_close(&sorted(elements(&sums, "role")), &[("db", 40.0), ("web", 350.0)]);
    let increase = instant(r#"increase(net_bytes_total{host="db-1"}[10m])"#).await;
    assert_close(&elements(&increase, "host"), &[("db-1", 40.0 * 600.0)]);
    let irate = instant(r#"irate(net_bytes_total{host=~"web-.*"}[1m])"#).await;
    assert_close(&sorted(elements(&irate, "host")), &[("web-1", 100.0), ("web-2", 250.0)]);

    // Gauges: averages by label, topk in order, offset back to before the change.
    let averages = instant("avg by (role) (cpu_usage_ratio)").await;
    assert_close(&sorted(elements(&averages, "role")), &[("db", 0.9), ("web", 0.4)]);
    let top = instant("topk(2, cpu_usage_ratio)").await;
    assert_close(&elements(&top, "host"), &[("db-1", 0.9), ("web-2", 0.6)]);
    assert_eq!(top[0]["metric"]["__name__"], "cpu_usage_ratio", "topk keeps the series: {top}");
    let bottom = instant("bottomk(1, cpu_usage_ratio) by (role)").await;
    assert_close(&sorted(elements(&bottom, "host")), &[("db-1", 0.9), ("web-1", 0.2)]);
    let before = instant("cpu_usage_ratio offset 40m").await;
    assert_close(&sorted(elements(&before, "host")), &[("db-1", 0.5), ("web-1", 0.1), ("web-2", 0.3)]);
    let without = instant("sum without (host) (mem_used_bytes)").await;
    assert_close(&sorted(elements(&without, "role")), &[("db", 8_000.0), ("web", 4_000.0)]);
    let filtered = instant("mem_used_bytes / 1000 > 2").await;
    assert_close(&sorted(elements(&filtered, "host")), &[("db-1", 8.0), ("web-2", 3.0)]);
    let counted = instant("sum(cpu_usage_ratio > bool 0.5)").await;
    assert_close(&elements(&counted, "host"), &[("", 2.0)]);
    let clamped = instant(r#"clamp_max(round(cpu_usage_ratio{host="web-2"} * 10), 5)"#).await;
    assert_close(&elements(&clamped, "host"), &[("web-2", 5.0)]);

    // Ranges: a rate at every step, and a mean across the gauge's change.
    let range = |expr: &str, start: i64, end: i64, step: &str| {
        let (start, end) = ((start / 1000).to_string(), (end / 1000).to_string());
        let args = ["query", "range", "-o", "json", "--start", &start, "--end", &end, "--step", step, &url, expr];
        promtool(args.iter().map(|s| s.to_string()).collect())
    };
    let rates = range(r#"rate(net_bytes_total{host="web-2"}[2m])"#, t0 + 10 * MINUTE, t0 + 50 * MINUTE, "1m").await;
    let values = rates[0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 41, "{rates}");
    assert_eq!(values[0][0].as_f64(), Some(((t0 + 10 * MINUTE) / 1000) as f64));
    for point in values {
        let v: f64 = point[1].as_str().unwrap().parse().unwrap();
        assert!((v - 250.0).abs() < 1e-9, "{point}");
    }
    let mean =
        range(r#"avg_over_time(cpu_usage_ratio{host="db-1"}[1m])"#, t0 + 25 * MINUTE, t0 + 35 * MINUTE, "5m").await;
    let values: Vec<f64> =
        mean[0]["values"].as_array().unwrap().iter().map(|p| p[1].as_str().unwrap().parse().unwrap()).collect();
    // At +30m the minute holds three samples before the change and one after.
    assert_eq!(values.len(), 3);
    for (got, want) in values.iter().zip([0.5, (0.5 * 3.0 + 0.9) / 4.0, 0.9]) {
        assert!((got - want).abs() < 1e-12, "{values:?}");
    }

    // Series and label values.
    let series = promtool(
        [
            "query",
            "series",
            "-o",
            "json",
            "--match",
            "net_bytes_total",
            "--match",
            r#"cpu_usage_ratio{host="db-1"}"#,
            &url,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    let mut names: Vec<(String, String)> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["__name__"].as_str().unwrap().into(), s["host"].as_str().unwrap().into()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("cpu_usage_ratio".to_string(), "db-1".to_string()),
            ("net_bytes_total".into(), "db-1".into()),
            ("net_bytes_total".into(), "web-1".into()),
            ("net_bytes_total".into(), "web-2".into()),
        ]
    );
    let roles = promtool(["query", "labels", "-o", "json", &url, "role"].iter().map(|s| s.to_string()).collect()).await;
    assert_eq!(roles, serde_json::json!(["db", "web"]));

    // Over plain HTTP: Prometheus' shapes, errors and a form post.
    let http = Client::new();
    let base = format!("http://{}/prometheus/api/v1", server.api_addr());
    let get = |path: String, token: Option<&str>| {
        let mut request = http.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let (status, body) = get(format!("/query?query={}&time={}", encode("1 + 1"), at / 1000), Some(&key)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [at / 1000, "2"]}})
    );
    let (status, body) =
        get(format!("/query?query={}", encode("label_replace(x, \"a\", \"b\", \"c\", \"d\")")), Some(&key)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!((body["status"].as_str(), body["errorType"].as_str()), (Some("error"), Some("bad_data")));
    assert!(body["error"].as_str().unwrap().contains("label_replace"), "{body}");
    let (status, body) = get(format!("/query_range?query=up&start=0&end={}&step=1", 11_001), Some(&key)).await;
    assert_eq!((status, body["errorType"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_data")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("11,000"), "{body}");
    let ambiguous = encode("cpu_usage_ratio / on(role) mem_used_bytes");
    let (status, body) = get(format!("/query?query={ambiguous}&time={}", at / 1000), Some(&key)).await;
    assert_eq!((status, body["errorType"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("execution")), "{body}");
    let (status, body) = get("/query?query=cpu_usage_ratio&timeout=0".into(), Some(&key)).await;
    assert_eq!((status, body["errorType"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("timeout")), "{body}");
    let (status, _) = get("/labels".into(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, names) = get("/label/__name__/values".into(), Some(&key)).await;
    assert_eq!(names["data"], serde_json::json!(["cpu_usage_ratio", "mem_used_bytes", "net_bytes_total"]));
    let posted = http
        .post(format!("{base}/query"))
        .bearer_auth(&key)
        .form(&[("query", "sum(mem_used_bytes)"), ("time", &(at / 1000).to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::OK);
    let posted: Value = posted.json().await.unwrap();
    assert_eq!(posted["data"]["result"][0]["value"][1], "12000", "{posted}");

    // Another tenant's key sees its own series only, and acme sees none of them.
    let (_, theirs) = get("/label/host/values".into(), Some(&other_key)).await;
    assert_eq!(theirs["data"], serde_json::json!(["b-secret-host"]));
    for path in ["/label/host/values".to_string(), format!("/series?match[]={}", encode(r#"{__name__=~".+"}"#))] {
        let (status, ours) = get(path.clone(), Some(&key)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!ours.to_string().contains("b-secret-host"), "{path}: {ours}");
    }
    server.shutdown().await;
}

/// `ALERTS`, as Grafana's alert panels read it: made from the alert engine and its history,
/// one series per alert and state with `alertname` and `severity`, gone (not lingering for
/// the five-minute lookback) once the alert is over, and per tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_series_follow_the_alerts_state_and_end_when_it_is_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::loopback(dir.path().join("s.db"));
    let rules =
        "rules:\n  - {name: RoomHot, expr: 'max_over_time(temperature_celsius[2s]) > 30', severity: critical}\n";
    config.alerting = Some(secumon_alert::RuleFile::parse(rules, "rules.yaml").unwrap());
    let server = Server::start(config).await.unwrap();
    let base = format!("http://{}/prometheus/api/v1", server.api_addr());
    let http = Client::new();
    let get = |path: String| {
        let request = http.get(format!("{base}/{path}"));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let query = |expr: &str| {
        get(format!("query?query={}", url::form_urlencoded::byte_serialize(expr.as_bytes()).collect::<String>()))
    };

    let started = now_ms();
    let room = Labels::from([("room".to_string(), "a".to_string())]);
    let hot = IngestBatch {
        agent_id: "sensor".into(),
        sequence: 1,
        host: "lab".into(),
        samples: vec![Sample::new("temperature_celsius", room, started, 35.0)],
        ..Default::default()
    };
    server.store().write_batch("default", &hot).await.unwrap();
    server.alerting().observe_batch("default", &hot);
    let firing = query("ALERTS{alertstate=\"firing\"}").await;
    let result = &firing["data"]["result"];
    assert_eq!(result.as_array().map(Vec::len), Some(1), "{firing}");
    let metric = &result[0]["metric"];
    assert_eq!(
        (metric["__name__"].as_str(), metric["alertname"].as_str(), metric["severity"].as_str()),
        (Some("ALERTS"), Some("RoomHot"), Some("critical")),
        "{firing}"
    );
    assert_eq!((metric["room"].as_str(), metric["host"].as_str()), (Some("a"), Some("lab")), "{firing}");
    assert_eq!(result[0]["value"][1], "1");
    let by_severity = query("count by (severity) (ALERTS{alertstate=\"firing\"})").await;
    assert_eq!(by_severity["data"]["result"][0]["metric"]["severity"], "critical", "{by_severity}");
    assert_eq!(by_severity["data"]["result"][0]["value"][1], "1", "{by_severity}");
    let series = get("series?match[]=ALERTS".into()).await;
    assert!(series["data"].as_array().unwrap().iter().any(|s| s["alertname"] == "RoomHot"), "{series}");

    // The data stops: the engine calls the alert stale within seconds, and `firing` ends then
    // rather than five minutes later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let stale = query("ALERTS{alertstate=\"stale\"}").await;
        if stale["data"]["result"].as_array().is_some_and(|r| r.len() == 1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never stale: {stale}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(query("ALERTS{alertstate=\"firing\"}").await["data"]["result"], serde_json::json!([]));
    // Over the whole time, firing came first, then stale.
    let end = now_ms();
    let range = get(format!(
        "query_range?query=ALERTS&start={}&end={}&step=1",
        (started - 1_000) as f64 / 1000.0,
        end as f64 / 1000.0
    ))
    .await;
    let states: Vec<(&str, f64)> = range["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["metric"]["alertstate"].as_str().unwrap(), s["values"][0][0].as_f64().unwrap()))
        .collect();
    assert_eq!(states.iter().map(|s| s.0).collect::<Vec<_>>(), ["firing", "stale"], "{range}");
    assert!(states[0].1 < states[1].1, "{range}");

    // Another tenant has no alerts.
    let accounts = server.accounts();
    accounts.add_user("ops", "a long test password", "globex", Role::Viewer, false).await.unwrap();
    let (_, key) = accounts.create_api_key("globex", "grafana", Role::Viewer, "ops").await.unwrap();
    let other = http
        .get(format!("{base}/query?query=ALERTS"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(other["data"]["result"], serde_json::json!([]), "{other}");
}
