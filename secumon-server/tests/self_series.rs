//! The server's own health as series of the host `secumon-server`: stored like an agent's
//! (every `/metrics` value, its memory, CPU and descriptors, the open push streams), visible
//! to rules, and agreeing with what `/metrics` says.

use std::time::{Duration, Instant};

use secumon_alert::RuleFile;
use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_server::self_series::SERVER_HOST;
use secumon_server::{Server, ServerConfig};
use secumon_store::{Aggregation, DEFAULT_TENANT, RangeQuery, SeriesSelector};
use secumon_transport::{PushClient, PushClientConfig};

/// The latest stored value of the server's series `name` with `labels`, if any.
async fn latest(server: &Server, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut selector = SeriesSelector::new(name).with("host", SERVER_HOST);
    for (key, value) in labels {
        selector = selector.with(*key, *value);
    }
    let query = RangeQuery { selector, start_ms: 0, end_ms: i64::MAX, step_ms: 1, aggregation: Aggregation::Last };
    let series = server.store().query_range(DEFAULT_TENANT, &query).await.unwrap();
    series.into_iter().flat_map(|s| s.points).max_by_key(|p| p.timestamp_ms).map(|p| p.value)
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stores_its_own_health_as_series_rules_can_alert_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::loopback(dir.path().join("s.db"));
    config.self_series_interval = Some(Duration::from_millis(200));
    config.alerting = Some(
        RuleFile::parse(
            "rules:\n  - {name: ServerStreams, expr: 'secumon_ingest_streams{host=\"secumon-server\"} >= 1', severity: info}\n",
            "rules.yaml",
        )
        .unwrap(),
    );
    let server = Server::start(config).await.unwrap();

    // One agent connected and pushing: three committed batches.
    let client =
        PushClient::open(PushClientConfig::new(server.grpc_addr().to_string(), dir.path().join("spool"))).unwrap();
    let runner = client.clone();
    let delivery = tokio::spawn(async move { runner.run(std::future::pending()).await });
    for sequence in 0..3 {
        let labels = Labels::from([("host".to_string(), "web-1".to_string())]);
        let batch = IngestBatch {
            agent_id: "agent-web-1".into(),
            host: "web-1".into(),
            created_at_ms: now_ms(),
            samples: vec![Sample::new("load1", labels, now_ms(), f64::from(sequence))],
            ..Default::default()
        };
        client.enqueue(batch).await.unwrap();
    }

    eventually("the open stream counted in the stored series", async || {
        latest(&server, "secumon_ingest_streams", &[]).await == Some(1.0)
    })
    .await;
    eventually("the agent's three batches counted in the stored series", async || {
        latest(&server, "secumon_ingest_batches_total", &[("outcome", "committed")]).await.is_some_and(|n| n >= 3.0)
    })
    .await;
    let rss = latest(&server, "process_resident_memory_bytes", &[]).await.expect("the server's memory is stored");
    assert!(rss > 1e6, "{rss}");
    assert!(latest(&server, "process_cpu_seconds_total", &[]).await.is_some_and(|cpu| cpu > 0.0));
    assert_eq!(latest(&server, "secumon_store_writable", &[]).await, Some(1.0));
    // /metrics shows the same gauge and the process' figures.
    let metrics = reqwest::get(format!("http://{}/metrics", server.api_addr())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("\nsecumon_ingest_streams 1\n"), "{metrics}");
    assert!(metrics.contains("\nprocess_resident_memory_bytes "), "{metrics}");

    // A rule on the server's own series fires.
    eventually("ServerStreams firing", async || {
        server
            .alerting()
            .active()
            .iter()
            .any(|a| a.rule == "ServerStreams" && a.labels.get("host").map(String::as_str) == Some(SERVER_HOST))
    })
    .await;
    // The server is listed as a host of its own.
    let agents = server.store().list_agents(DEFAULT_TENANT).await.unwrap();
    assert!(agents.iter().any(|a| a.host == SERVER_HOST && a.agent_id.starts_with("server:")), "{agents:?}");

    // The agent goes away: the stored gauge follows.
    delivery.abort();
    drop(client);
    eventually("the closed stream no longer counted", async || {
        latest(&server, "secumon_ingest_streams", &[]).await == Some(0.0)
    })
    .await;
    server.shutdown().await;
}
