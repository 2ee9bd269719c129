//! The SQLite store against a real database file: atomic batches, duplicate filtering,
//! range queries, tenant separation and persistence across reopen.

use secumon_core::{CheckResult, CheckStatus, Event, IngestBatch, Labels, LogRecord, Sample, Severity};
use secumon_store::{
    Aggregation, AlertHistoryEntry, RangeQuery, SeriesSelector, SqliteStore, Store, StoreError, WriteOutcome,
};

const T0: i64 = 1_700_000_000_000;

fn batch(agent: &str, sequence: u64, host: &str, samples: Vec<Sample>) -> IngestBatch {
    IngestBatch {
        agent_id: agent.into(),
        sequence,
        host: host.into(),
        agent_labels: Labels::from([("env".to_string(), "test".to_string())]),
        created_at_ms: T0,
        samples,
        ..Default::default()
    }
}

fn load(ts: i64, value: f64) -> Sample {
    Sample::new("load1", Labels::new(), ts, value)
}

fn range(name: &str, host: &str, step_ms: i64, aggregation: Aggregation) -> RangeQuery {
    RangeQuery {
        selector: SeriesSelector::new(name).with("host", host),
        start_ms: T0,
        end_ms: T0 + 3_600_000,
        step_ms,
        aggregation,
    }
}

#[tokio::test]
async fn stores_queries_and_drops_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();

    let first = batch("a1", 1, "web-1", vec![load(T0, 1.0), load(T0 + 1_000, 3.0)]);
    assert_eq!(store.write_batch("default", &first).await.unwrap(), WriteOutcome::Committed);
    // The same sequence again, even with other content, is a duplicate and writes nothing.
    let replay = batch("a1", 1, "web-1", vec![load(T0 + 2_000, 100.0)]);
    assert_eq!(store.write_batch("default", &replay).await.unwrap(), WriteOutcome::Duplicate);
    let second = batch("a1", 2, "web-1", vec![load(T0 + 60_000, 5.0)]);
    assert_eq!(store.write_batch("default", &second).await.unwrap(), WriteOutcome::Committed);

    let answer = store.query_range("default", &range("load1", "web-1", 60_000, Aggregation::Avg)).await.unwrap();
    assert_eq!(answer.len(), 1);
    assert_eq!(answer[0].series.labels["env"], "test");
    assert_eq!(answer[0].series.labels["tenant"], "default");
    let points: Vec<(i64, f64)> = answer[0].points.iter().map(|p| (p.timestamp_ms, p.value)).collect();
    assert_eq!(points, vec![(T0, 2.0), (T0 + 60_000, 5.0)]);

    let count = store.query_range("default", &range("load1", "web-1", 3_600_000, Aggregation::Count)).await.unwrap();
    assert_eq!(count[0].points[0].value, 3.0, "the duplicate's sample was not stored");

    let agents = store.list_agents("default").await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!((agents[0].host.as_str(), agents[0].last_sequence, agents[0].batches), ("web-1", 2, 2));
}

#[tokio::test]
async fn tenants_do_not_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
    store.write_batch("acme", &batch("a1", 1, "web-1", vec![load(T0, 1.0)])).await.unwrap();
    store.write_batch("globex", &batch("b1", 1, "web-1", vec![load(T0, 9.0)])).await.unwrap();

    let acme = store.query_range("acme", &range("load1", "web-1", 60_000, Aggregation::Max)).await.unwrap();
    assert_eq!(acme.len(), 1);
    assert_eq!(acme[0].points[0].value, 1.0);
    assert_eq!(store.list_agents("acme").await.unwrap().len(), 1);
    assert_eq!(store.list_agents("nobody").await.unwrap().len(), 0);

    // An agent cannot move to another tenant by pushing there.
    let err = store.write_batch("globex", &batch("a1", 2, "web-1", vec![load(T0, 1.0)])).await.unwrap_err();
    assert!(matches!(err, StoreError::TenantMismatch { .. }), "{err}");
    let acme_agent = &store.list_agents("acme").await.unwrap()[0];
    assert_eq!(acme_agent.batches, 1, "the rejected batch left no trace");
}

#[tokio::test]
async fn large_batches_with_every_part_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let mut samples = Vec::new();
    for core in 0..50 {
        let labels = Labels::from([("core".to_string(), core.to_string())]);
        for i in 0..200 {
            samples.push(Sample::new("cpu_core_usage_ratio", labels.clone(), T0 + i * 1_000, f64::from(core) / 100.0));
        }
    }
    samples.push(load(T0, f64::NAN));
    let mut big = batch("a1", 1, "db-1", samples);
    big.check_results.push(CheckResult {
        check_id: "web".into(),
        kind: "http".into(),
        target: "http://127.0.0.1/".into(),
        status: CheckStatus::Ok,
        timestamp_ms: T0,
        duration_us: 10,
        details: serde_json::json!({"code": 200}),
        samples: vec![Sample::new("http_duration_seconds", Labels::new(), T0, 0.01)],
    });
    big.events.push(Event {
        timestamp_ms: T0,
        kind: "k".into(),
        severity: Severity::Info,
        labels: Labels::new(),
        message: "m".into(),
    });
    big.logs.push(LogRecord {
        timestamp_ms: T0,
        source: "/var/log/syslog".into(),
        labels: Labels::new(),
        line: "l".into(),
    });
    store.write_batch("default", &big).await.unwrap();
    store.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    let mut query = range("cpu_core_usage_ratio", "db-1", 3_600_000, Aggregation::Count);
    let all = store.query_range("default", &query).await.unwrap();
    assert_eq!(all.len(), 50);
    assert!(all.iter().all(|s| s.points[0].value == 200.0));
    query.selector = query.selector.with("core", "7");
    query.aggregation = Aggregation::Avg;
    let one = store.query_range("default", &query).await.unwrap();
    assert_eq!(one.len(), 1);
    assert!((one[0].points[0].value - 0.07).abs() < 1e-12);

    let nan = store.query_range("default", &range("load1", "db-1", 1_000, Aggregation::Last)).await.unwrap();
    assert!(nan[0].points[0].value.is_nan(), "NaN is stored as such, not lost");
    let http =
        store.query_range("default", &range("http_duration_seconds", "db-1", 1_000, Aggregation::Last)).await.unwrap();
    assert_eq!(http[0].points[0].value, 0.01);
    // The duplicate filter survives the reopen.
    assert_eq!(store.write_batch("default", &big).await.unwrap(), WriteOutcome::Duplicate);
}

#[tokio::test]
async fn state_documents_survive_reopen_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.get_state("acme", "alerts").await.unwrap(), None);
    store.put_state("acme", "alerts", "{\"v\":1}").await.unwrap();
    store.put_state("acme", "alerts", "{\"v\":2}").await.unwrap();
    store.close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.get_state("acme", "alerts").await.unwrap().as_deref(), Some("{\"v\":2}"));
    assert_eq!(store.get_state("globex", "alerts").await.unwrap(), None);
}

#[tokio::test]
async fn alert_history_is_kept_per_tenant_and_rule_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let entry =
        |rule: &str, at_ms| AlertHistoryEntry { rule: rule.into(), at_ms, record: format!("{{\"at\":{at_ms}}}") };
    let entries: Vec<AlertHistoryEntry> = (0..500).map(|i| entry(if i % 2 == 0 { "Hot" } else { "Cold" }, i)).collect();
    store.append_alert_history("acme", &entries).await.unwrap();
    store.append_alert_history("globex", &[entry("Hot", 1_000)]).await.unwrap();
    store.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    let hot = store.alert_history("acme", Some("Hot"), 3).await.unwrap();
    assert_eq!(hot.iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![498, 496, 494]);
    assert_eq!(hot[0].record, "{\"at\":498}");
    assert_eq!(store.alert_history("acme", None, 1000).await.unwrap().len(), 500);
    assert_eq!(store.alert_history("globex", None, 10).await.unwrap(), vec![entry("Hot", 1_000)]);
    assert!(store.alert_history("acme", Some("Nope"), 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn rejects_nonsense_queries() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
    let mut q = range("load1", "h", 0, Aggregation::Avg);
    assert!(matches!(store.query_range("default", &q).await, Err(StoreError::InvalidQuery(_))));
    q.step_ms = 1000;
    q.end_ms = q.start_ms - 1;
    assert!(matches!(store.query_range("default", &q).await, Err(StoreError::InvalidQuery(_))));
}

fn vuln(id: &str, asset: &str, severity: Severity) -> secumon_core::Finding {
    secumon_core::Finding {
        id: id.into(),
        severity,
        asset: asset.into(),
        title: format!("{id} title"),
        description: String::new(),
        first_seen_ms: 0,
        last_seen_ms: 0,
        status: secumon_core::FindingStatus::Open,
    }
}

#[tokio::test]
async fn findings_open_fix_reopen_with_samples_and_events() {
    use secumon_core::FindingStatus;
    use secumon_store::{FindingFilter, FindingsImport};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("f.db")).await.unwrap();
    let import = |findings, at_ms| FindingsImport { source: "trivy".into(), findings, full_scan: true, at_ms };

    let first = import(
        vec![
            vuln("CVE-1", "web", Severity::Critical),
            vuln("CVE-2", "web", Severity::Medium),
            vuln("CVE-2", "web", Severity::Medium),
            vuln("CVE-3", "db", Severity::High),
        ],
        T0,
    );
    let summary = store.import_findings("acme", &first).await.unwrap();
    assert_eq!((summary.new.len(), summary.fixed.len(), summary.unchanged), (3, 0, 0), "duplicates count once");
    let open = |summary: &secumon_store::ImportSummary, host: &str, severity: &str| {
        summary
            .samples
            .iter()
            .find(|s| s.series.labels["host"] == host && s.series.labels["severity"] == severity)
            .unwrap()
            .value
    };
    assert_eq!(open(&summary, "web", "critical"), 1.0);
    assert_eq!(open(&summary, "web", "low"), 0.0, "every severity is written");

    // A later full scan of web no longer reports CVE-1: fixed. db is not in it: untouched.
    let summary =
        store.import_findings("acme", &import(vec![vuln("CVE-2", "web", Severity::Medium)], T0 + 1_000)).await.unwrap();
    assert_eq!(summary.fixed.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), vec!["CVE-1"]);
    assert_eq!(summary.unchanged, 1);
    assert_eq!(open(&summary, "web", "critical"), 0.0);
    // It comes back: reopened, first seen kept.
    let summary = store
        .import_findings("acme", &import(vec![vuln("CVE-1", "web", Severity::Critical)], T0 + 2_000))
        .await
        .unwrap();
    assert_eq!(summary.reopened.len(), 1);
    assert_eq!(summary.reopened[0].first_seen_ms, T0);

    let all = |filter: FindingFilter| {
        let store = &store;
        async move { store.list_findings("acme", &FindingFilter { limit: 100, ..filter }).await.unwrap() }
    };
    let listed = all(FindingFilter::default()).await;
    assert_eq!(
        listed.iter().map(|f| (f.id.as_str(), f.status)).collect::<Vec<_>>(),
        vec![("CVE-1", FindingStatus::Open), ("CVE-3", FindingStatus::Open), ("CVE-2", FindingStatus::Fixed),]
    );
    assert_eq!(all(FindingFilter { severity: Some(Severity::High), ..Default::default() }).await.len(), 2);
    assert_eq!(all(FindingFilter { asset: Some("db".into()), ..Default::default() }).await.len(), 1);
    assert_eq!(all(FindingFilter { status: Some(FindingStatus::Fixed), ..Default::default() }).await.len(), 1);
    assert!(
        store.list_findings("globex", &FindingFilter { limit: 100, ..Default::default() }).await.unwrap().is_empty()
    );

    // The samples are series like any other.
    let query = RangeQuery {
        selector: SeriesSelector::new("findings_open").with("host", "web").with("severity", "critical"),
        start_ms: T0,
        end_ms: T0 + 10_000,
        step_ms: 1,
        aggregation: Aggregation::Last,
    };
    let points: Vec<f64> = store.query_range("acme", &query).await.unwrap()[0].points.iter().map(|p| p.value).collect();
    assert_eq!(points, vec![1.0, 0.0, 1.0]);
}
