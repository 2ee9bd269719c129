//! The probe end to end: `probe.yaml` checks run on their intervals and their results reach
//! the server as series an alert rule can watch; `secumon scan` exit codes.

use std::process::Command;
use std::time::{Duration, Instant};

use secumon_agent::Probe;
use secumon_scan::ProbeConfig;
use secumon_server::{Server, ServerConfig};
use secumon_store::{Aggregation, DEFAULT_TENANT, RangeQuery, SeriesSelector};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_results_reach_the_server_and_its_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::loopback(dir.path().join("s.db"));
    config.alerting = Some(
        secumon_alert::RuleFile::parse(
            "rules:\n  - {name: PortDown, source: check, check: {kind: tcp}, expr: status != ok, severity: critical}\n",
            "rules.yaml",
        )
        .unwrap(),
    );
    let server = Server::start(config).await.unwrap();
    let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open_port = open.local_addr().unwrap().port();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let yaml = format!(
        r#"
probe: {{name: probe-test, labels: {{site: lab}}}}
collector: {{endpoint: "{grpc}"}}
spool: {{dir: "{spool}"}}
checks:
  - {{name: api, type: http, url: "http://{api}/api/v1/agents", interval: 200ms, body_contains: agents}}
  - {{name: up, type: tcp, host: 127.0.0.1, port: {open_port}, interval: 200ms}}
  - {{name: down, type: tcp, host: 127.0.0.1, port: {closed_port}, interval: 200ms}}
"#,
        grpc = server.grpc_addr(),
        api = server.api_addr(),
        spool = dir.path().join("probe").display(),
    );
    let probe = Probe::open(&ProbeConfig::parse(&yaml, "probe.yaml").unwrap()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(probe.run(async move {
        let _ = stopped.await;
    }));

    // The closed port makes the check rule fire, through the server's own pipeline.
    let deadline = Instant::now() + Duration::from_secs(15);
    let alert = loop {
        let active = server.alerting().active();
        if let Some(alert) = active.into_iter().find(|a| a.rule == "PortDown") {
            break alert;
        }
        assert!(Instant::now() < deadline, "the PortDown alert never fired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(alert.labels["check"], "down");
    assert_eq!(alert.labels["host"], "probe-test");
    assert_eq!(alert.labels["site"], "lab");

    let status = |check: &str| RangeQuery {
        selector: SeriesSelector::new("check_status").with("check", check),
        start_ms: 0,
        end_ms: i64::MAX,
        step_ms: 1,
        aggregation: Aggregation::Last,
    };
    let store = server.store();
    // Each check first runs somewhere in its first interval: wait until all three have.
    let deadline = Instant::now() + Duration::from_secs(15);
    for check in ["api", "up", "down"] {
        while store.query_range(DEFAULT_TENANT, &status(check)).await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "no result of {check} stored");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let _ = stop.send(());
    running.await.unwrap();
    for (check, expected) in [("api", 0.0), ("up", 0.0), ("down", 2.0)] {
        let series = store.query_range(DEFAULT_TENANT, &status(check)).await.unwrap();
        assert_eq!(series.len(), 1, "{check}");
        assert!(series[0].points.iter().all(|p| p.value == expected), "{check}: {:?}", series[0].points);
    }
    // The API's view: the latest run of each check, with the probe that ran it.
    let checks: serde_json::Value =
        reqwest::get(format!("http://{}/api/v1/checks", server.api_addr())).await.unwrap().json().await.unwrap();
    let latest: Vec<(&str, &str, &str)> = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["result"]["check_id"].as_str().unwrap(),
                c["result"]["status"].as_str().unwrap(),
                c["host"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        latest,
        vec![("api", "ok", "probe-test"), ("down", "critical", "probe-test"), ("up", "ok", "probe-test")]
    );
    let latency = RangeQuery { selector: SeriesSelector::new("http_total_seconds"), ..status("api") };
    assert!(!store.query_range(DEFAULT_TENANT, &latency).await.unwrap().is_empty());
    server.shutdown().await;
}

#[test]
fn scan_exit_codes() {
    let secumon = env!("CARGO_BIN_EXE_secumon");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let run = |args: &[&str]| Command::new(secumon).args(args).output().unwrap();

    let ok = run(&["scan", "ports", "127.0.0.1", "--ports", &port, "--expect-open", &port]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
    let table = String::from_utf8_lossy(&ok.stdout).to_string();
    assert!(table.lines().any(|l| l.starts_with(&format!("{port}/tcp")) && l.ends_with("open")), "{table}");
    let json = run(&["scan", "ports", "127.0.0.1", "--ports", &port, "--json"]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed["details"]["ports"][&port], "open");

    drop(listener);
    let not_ok = run(&["scan", "ports", "127.0.0.1", "--ports", &port, "--expect-open", &port]);
    assert_eq!(not_ok.status.code(), Some(1));
    let unreachable = run(&["scan", "http", &format!("http://127.0.0.1:{port}/")]);
    assert_eq!(unreachable.status.code(), Some(1), "connection refused: not ok");

    for bad in [
        vec!["scan", "ports", "127.0.0.1", "--ports", "80-20"],
        vec!["scan", "http", "http://127.0.0.1/", "--regex", "("],
        vec!["scan", "dns", "example.com", "--type", "SRV"],
        vec!["scan", "trace", "127.0.0.1", "--mode", "sctp"],
        vec!["scan", "ping"],
    ] {
        let output = run(&bad);
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
}
