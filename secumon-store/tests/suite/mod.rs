//! The store test suite, written once and run against every backend (`sqlite_store.rs`,
//! `postgres_store.rs`): atomic batches, duplicates, range queries and tiers, compaction,
//! retention, special values, tenants and persistence across reopen.
#![allow(dead_code)]

use std::sync::Arc;

use secumon_core::{CheckResult, CheckStatus, Event, IngestBatch, Labels, LogRecord, Sample, Severity};
use secumon_store::{
    AgentFilter, AgentRecord, Aggregation, AlertHistoryEntry, AuditEntry, AuditFilter, RangeQuery, RecordSwap,
    SeriesSelector, Store, StoreError, StoreOptions, TierRetention, WriteOutcome,
};

/// A database that tests can open, close and open again.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Opens the backend's database with the test options (no background maintenance).
    async fn open(&self) -> Arc<dyn Store> {
        self.open_with(test_options()).await
    }
    async fn open_with(&self, options: StoreOptions) -> Arc<dyn Store>;
    /// Makes every `DELETE` of a row of `table` fail with "injected failure" (a trigger, as
    /// a full disk or a lost connection would fail it), or (`false`) lets them work again.
    async fn fail_deletes(&self, table: &str, fail: bool);
    /// Blocks every agent batch's write (from another connection: SQLite's write lock, a
    /// lock on PostgreSQL's `ingested_batches`) until the returned sender is used or dropped,
    /// so that batches arriving meanwhile queue and are committed together in one group.
    async fn hold_writes(&self) -> tokio::sync::oneshot::Sender<()>;
}

pub fn test_options() -> StoreOptions {
    StoreOptions { background: false, ..StoreOptions::default() }
}

/// Declares one `#[tokio::test]` per suite test; `$backend` is an async fn returning
/// `Option<impl Backend>` (None: the backend is not available here; the test says so).
#[macro_export]
macro_rules! store_suite {
    ($backend:path) => {
        store_suite!(@each $backend:
            stores_queries_and_drops_duplicates,
            tenants_do_not_see_each_other,
            series_are_listed_per_tenant_sorted_and_by_name,
            agents_are_paged_and_found_by_id_and_host,
            large_batches_with_every_part_survive_reopen,
            state_documents_survive_reopen_per_tenant,
            records_page_by_id_per_tenant_and_kind_and_delete_once,
            record_swaps_apply_together_or_not_at_all,
            records_put_together_replace_and_survive_reopen,
            alert_history_is_kept_per_tenant_by_rule_and_by_time,
            rejects_nonsense_queries,
            findings_open_fix_reopen_with_samples_and_events,
            fifty_thousand_findings_on_as_many_assets_are_stored_right,
            findings_caps_refuse_a_report_whole_naming_the_limit,
            compaction_keeps_every_sample_and_queries_merge_chunks_and_head,
            special_values_come_back_bit_for_bit,
            far_future_samples_are_refused_naming_the_series,
            many_labels_and_any_utf8_are_kept,
            old_ranges_are_answered_from_rollups_after_raw_expires,
            retention_expires_logs_events_and_history,
            retention_failing_half_way_resumes_losing_and_doubling_nothing,
            each_tenant_keeps_each_tier_for_its_own_retention,
            audit_log_is_per_tenant_filtered_paged_newest_first_and_expires,
            a_tenant_over_its_series_limit_is_refused_whole_and_others_are_not,
            logs_page_by_cursor_range_source_and_filter,
            the_servers_own_samples_make_no_agent_and_are_never_duplicates,
            hundreds_of_concurrent_writers_are_each_answered_and_stored_once,
            the_same_batch_twice_at_once_is_stored_once,
            refused_batches_leave_their_group_alone_and_the_others_commit
        );
    };
    (@each $backend:path: $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                match $backend().await {
                    Some(backend) => suite::$test(&backend).await,
                    None => secumon_core::testing::peer_missing(concat!(stringify!($test), ": backend not available")),
                }
            }
        )+
    };
}

/// An hour-aligned instant a day ago: recent enough for the raw tier.
fn t0() -> i64 {
    let now = secumon_core::now_ms();
    now - now % 3_600_000 - 86_400_000
}

fn batch(agent: &str, sequence: u64, host: &str, samples: Vec<Sample>) -> IngestBatch {
    IngestBatch {
        agent_id: agent.into(),
        sequence,
        host: host.into(),
        agent_labels: Labels::from([("env".to_string(), "test".to_string())]),
        created_at_ms: t0(),
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
        start_ms: t0(),
        end_ms: t0() + 3_600_000,
        step_ms,
        aggregation,
    }
}

pub async fn stores_queries_and_drops_duplicates(backend: &dyn Backend) {
    let store = backend.open().await;

    let first = batch("a1", 1, "web-1", vec![load(t0(), 1.0), load(t0() + 1_000, 3.0)]);
    assert_eq!(store.write_batch("default", &first).await.unwrap(), WriteOutcome::Committed);
    // The same sequence again, even with other content, is a duplicate and writes nothing.
    let replay = batch("a1", 1, "web-1", vec![load(t0() + 2_000, 100.0)]);
    assert_eq!(store.write_batch("default", &replay).await.unwrap(), WriteOutcome::Duplicate);
    let second = batch("a1", 2, "web-1", vec![load(t0() + 60_000, 5.0)]);
    assert_eq!(store.write_batch("default", &second).await.unwrap(), WriteOutcome::Committed);

    let answer = store.query_range("default", &range("load1", "web-1", 60_000, Aggregation::Avg)).await.unwrap();
    assert_eq!(answer.len(), 1);
    assert_eq!(answer[0].series.labels["env"], "test");
    assert_eq!(answer[0].series.labels["tenant"], "default");
    let points: Vec<(i64, f64)> = answer[0].points.iter().map(|p| (p.timestamp_ms, p.value)).collect();
    assert_eq!(points, vec![(t0(), 2.0), (t0() + 60_000, 5.0)]);

    let count = store.query_range("default", &range("load1", "web-1", 3_600_000, Aggregation::Count)).await.unwrap();
    assert_eq!(count[0].points[0].value, 3.0, "the duplicate's sample was not stored");

    let agents = store.list_agents("default").await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!((agents[0].host.as_str(), agents[0].last_sequence, agents[0].batches), ("web-1", 2, 2));
}

/// A batch without an agent id (the server's own samples, such as a refused sender's clock
/// offset) stores its samples, every time, and makes or touches no agent.
pub async fn the_servers_own_samples_make_no_agent_and_are_never_duplicates(backend: &dyn Backend) {
    let store = backend.open().await;
    let agent = batch("a1", 1, "web-1", vec![load(t0(), 1.0)]);
    assert_eq!(store.write_batch("default", &agent).await.unwrap(), WriteOutcome::Committed);
    for (i, host) in ["web-1", "ghost"].iter().enumerate() {
        for n in 0..2 {
            let at = t0() + 1_000 * (2 * i as i64 + n + 1);
            let own = batch("", 0, host, vec![load(at, 7.0)]);
            assert_eq!(store.write_batch("default", &own).await.unwrap(), WriteOutcome::Committed, "{host} {n}");
        }
    }
    let agents = store.list_agents("default").await.unwrap();
    let listed: Vec<(&str, u64, u64)> =
        agents.iter().map(|a| (a.agent_id.as_str(), a.last_sequence, a.batches)).collect();
    assert_eq!(listed, [("a1", 1, 1)], "no agent made, none touched");
    for (host, expected) in [("web-1", 3.0), ("ghost", 2.0)] {
        let count = store.query_range("default", &range("load1", host, 3_600_000, Aggregation::Count)).await.unwrap();
        assert_eq!(count[0].points[0].value, expected, "{host}: every one stored, none taken as a duplicate");
        assert_eq!(count[0].series.labels["env"], "test");
    }
}

pub async fn tenants_do_not_see_each_other(backend: &dyn Backend) {
    let store = backend.open().await;
    store.write_batch("acme", &batch("a1", 1, "web-1", vec![load(t0(), 1.0)])).await.unwrap();
    store.write_batch("globex", &batch("b1", 1, "web-1", vec![load(t0(), 9.0)])).await.unwrap();

    let acme = store.query_range("acme", &range("load1", "web-1", 60_000, Aggregation::Max)).await.unwrap();
    assert_eq!(acme.len(), 1);
    assert_eq!(acme[0].points[0].value, 1.0);
    assert_eq!(store.list_agents("acme").await.unwrap().len(), 1);
    assert_eq!(store.list_agents("nobody").await.unwrap().len(), 0);

    // An agent cannot move to another tenant by pushing there.
    let err = store.write_batch("globex", &batch("a1", 2, "web-1", vec![load(t0(), 1.0)])).await.unwrap_err();
    assert!(matches!(err, StoreError::TenantMismatch { .. }), "{err}");
    let acme_agent = &store.list_agents("acme").await.unwrap()[0];
    assert_eq!(acme_agent.batches, 1, "the rejected batch left no trace");
}

pub async fn series_are_listed_per_tenant_sorted_and_by_name(backend: &dyn Backend) {
    let store = backend.open().await;
    let cpu = Sample::new("cpu", Labels::from([("core".to_string(), "0".to_string())]), t0(), 0.5);
    store.write_batch("acme", &batch("a1", 1, "web-2", vec![load(t0(), 1.0), cpu])).await.unwrap();
    store.write_batch("acme", &batch("a2", 1, "web-1", vec![load(t0(), 2.0)])).await.unwrap();
    store.write_batch("globex", &batch("b1", 1, "b-host", vec![load(t0(), 9.0)])).await.unwrap();

    let all = store.list_series("acme", None).await.unwrap();
    let names: Vec<(&str, &str)> = all.iter().map(|k| (k.name.as_str(), k.labels["host"].as_str())).collect();
    assert_eq!(names, [("cpu", "web-2"), ("load1", "web-1"), ("load1", "web-2")]);
    assert_eq!(all[0].labels.get("core").map(String::as_str), Some("0"), "{all:?}");
    let load = store.list_series("acme", Some("load1")).await.unwrap();
    assert_eq!(load.len(), 2);
    assert!(store.list_series("acme", Some("nothing")).await.unwrap().is_empty());
    let theirs = store.list_series("globex", None).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].labels["host"], "b-host");
}

pub async fn agents_are_paged_and_found_by_id_and_host(backend: &dyn Backend) {
    let store = backend.open().await;
    for (agent, host) in [("a3", "web-2"), ("a1", "web-1"), ("a2", "web-1"), ("a4", "db-1")] {
        store.write_batch("acme", &batch(agent, 1, host, vec![load(t0(), 1.0)])).await.unwrap();
    }
    store.write_batch("globex", &batch("b1", 1, "web-1", vec![load(t0(), 1.0)])).await.unwrap();
    let ids = |agents: &[AgentRecord]| agents.iter().map(|a| a.agent_id.clone()).collect::<Vec<_>>();

    let page = |offset, limit| AgentFilter { offset, limit: Some(limit), ..Default::default() };
    let (first, total) = store.agents("acme", &page(0, 2)).await.unwrap();
    assert_eq!((ids(&first), total), (vec!["a4".to_string(), "a1".into()], 4), "by host, then id");
    let (rest, total) = store.agents("acme", &page(2, 10)).await.unwrap();
    assert_eq!((ids(&rest), total), (vec!["a2".to_string(), "a3".into()], 4));
    let (beyond, total) = store.agents("acme", &page(10, 10)).await.unwrap();
    assert_eq!((beyond.len(), total), (0, 4), "past the end: nothing, but the count");

    let on_host = AgentFilter { host: Some("web-1".into()), ..Default::default() };
    assert_eq!(ids(&store.agents("acme", &on_host).await.unwrap().0), ["a1", "a2"]);
    let one = AgentFilter { agent_id: Some("b1".into()), ..Default::default() };
    assert_eq!(store.agents("acme", &one).await.unwrap(), (vec![], 0), "another tenant's agent is not found");
    assert_eq!(ids(&store.agents("globex", &one).await.unwrap().0), ["b1"]);
}

pub async fn large_batches_with_every_part_survive_reopen(backend: &dyn Backend) {
    let store = backend.open().await;
    let mut samples = Vec::new();
    for core in 0..50 {
        let labels = Labels::from([("core".to_string(), core.to_string())]);
        for i in 0..200 {
            samples.push(Sample::new(
                "cpu_core_usage_ratio",
                labels.clone(),
                t0() + i * 1_000,
                f64::from(core) / 100.0,
            ));
        }
    }
    samples.push(load(t0(), f64::NAN));
    let mut big = batch("a1", 1, "db-1", samples);
    big.check_results.push(CheckResult {
        check_id: "web".into(),
        kind: "http".into(),
        target: "http://127.0.0.1/".into(),
        status: CheckStatus::Ok,
        timestamp_ms: t0(),
        duration_us: 10,
        details: serde_json::json!({"code": 200}),
        samples: vec![Sample::new("http_duration_seconds", Labels::new(), t0(), 0.01)],
    });
    big.events.push(Event {
        timestamp_ms: t0(),
        kind: "k".into(),
        severity: Severity::Info,
        labels: Labels::new(),
        message: "m".into(),
    });
    big.logs.push(LogRecord {
        timestamp_ms: t0(),
        source: "/var/log/syslog".into(),
        labels: Labels::new(),
        line: "l".into(),
    });
    store.write_batch("default", &big).await.unwrap();
    store.close().await;

    let store = backend.open().await;
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

pub async fn state_documents_survive_reopen_per_tenant(backend: &dyn Backend) {
    let store = backend.open().await;
    assert_eq!(store.get_state("acme", "alerts").await.unwrap(), None);
    store.put_state("acme", "alerts", "{\"v\":1}").await.unwrap();
    store.put_state("acme", "alerts", "{\"v\":2}").await.unwrap();
    store.close().await;
    let store = backend.open().await;
    assert_eq!(store.get_state("acme", "alerts").await.unwrap().as_deref(), Some("{\"v\":2}"));
    assert_eq!(store.get_state("globex", "alerts").await.unwrap(), None);
}

pub async fn record_swaps_apply_together_or_not_at_all(backend: &dyn Backend) {
    let store = backend.open().await;
    store.put_record("acme", "user", "ada", "{\"v\":1}").await.unwrap();
    store.put_record("acme", "key", "current", "{\"k\":1}").await.unwrap();
    let swap = |kind: &str, id: &str, expected: &str, body: &str| RecordSwap {
        kind: kind.into(),
        id: id.into(),
        expected: expected.into(),
        body: body.into(),
    };
    // The second swap expects a body the record no longer has: the first is rolled back.
    let stale = [swap("user", "ada", "{\"v\":1}", "{\"v\":2}"), swap("key", "current", "{\"k\":0}", "{\"k\":2}")];
    assert!(!store.swap_records("acme", &stale).await.unwrap());
    assert_eq!(store.get_record("acme", "user", "ada").await.unwrap().as_deref(), Some("{\"v\":1}"));
    let missing = [swap("user", "ada", "{\"v\":1}", "{\"v\":2}"), swap("key", "gone", "{}", "{}")];
    assert!(!store.swap_records("acme", &missing).await.unwrap());
    assert_eq!(store.get_record("acme", "user", "ada").await.unwrap().as_deref(), Some("{\"v\":1}"));
    assert!(!store.swap_records("globex", &stale[..1]).await.unwrap(), "another tenant's record is not touched");

    let fresh = [swap("user", "ada", "{\"v\":1}", "{\"v\":2}"), swap("key", "current", "{\"k\":1}", "{\"k\":2}")];
    assert!(store.swap_records("acme", &fresh).await.unwrap());
    store.close().await;
    let store = backend.open().await;
    assert_eq!(store.get_record("acme", "user", "ada").await.unwrap().as_deref(), Some("{\"v\":2}"));
    assert_eq!(store.get_record("acme", "key", "current").await.unwrap().as_deref(), Some("{\"k\":2}"));
}

pub async fn records_put_together_replace_and_survive_reopen(backend: &dyn Backend) {
    let store = backend.open().await;
    store.put_record("acme", "clock", "a1", "{\"v\":0}").await.unwrap();
    let records: Vec<(String, String)> = (1..=500).map(|i| (format!("a{i}"), format!("{{\"v\":{i}}}"))).collect();
    store.put_records("acme", "clock", &records).await.unwrap();
    store.put_records("acme", "clock", &[]).await.unwrap();
    store.close().await;
    let store = backend.open().await;
    assert_eq!(store.get_record("acme", "clock", "a1").await.unwrap().as_deref(), Some("{\"v\":1}"), "replaced");
    assert_eq!(store.list_records("acme", "clock", None, 1_000).await.unwrap().len(), 500);
    assert_eq!(store.get_record("acme", "other", "a1").await.unwrap(), None, "kind kept apart");
    assert!(store.list_records("globex", "clock", None, 10).await.unwrap().is_empty(), "tenant kept apart");
}

pub async fn records_page_by_id_per_tenant_and_kind_and_delete_once(backend: &dyn Backend) {
    let store = backend.open().await;
    for id in ["b", "a", "c", "é"] {
        assert!(store.insert_record("acme", "dashboard", id, &format!("{{\"id\":\"{id}\"}}")).await.unwrap());
    }
    assert!(!store.insert_record("acme", "dashboard", "a", "{}").await.unwrap(), "an id is taken once");
    store.put_record("acme", "dashboard", "a", "{\"v\":2}").await.unwrap();
    store.insert_record("acme", "user", "z", "{}").await.unwrap();
    store.insert_record("globex", "dashboard", "a", "{}").await.unwrap();

    let first = store.list_records("acme", "dashboard", None, 2).await.unwrap();
    assert_eq!(first.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(first[0].body, "{\"v\":2}");
    let rest = store.list_records("acme", "dashboard", Some("b"), 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["c", "é"],
        "byte order, kind and tenant kept apart"
    );
    assert_eq!(store.get_record("globex", "dashboard", "b").await.unwrap(), None);

    let (one, two) =
        tokio::join!(store.delete_record("acme", "dashboard", "b"), store.delete_record("acme", "dashboard", "b"));
    assert!(one.unwrap() ^ two.unwrap(), "exactly one delete wins");
    store.close().await;
    let store = backend.open().await;
    assert_eq!(store.get_record("acme", "dashboard", "b").await.unwrap(), None);
    assert_eq!(store.get_record("acme", "dashboard", "c").await.unwrap().as_deref(), Some("{\"id\":\"c\"}"));

    store.write_batch("acme", &batch("a1", 1, "web-1", vec![load(t0(), 1.0)])).await.unwrap();
    assert!(!store.delete_agent("globex", "a1").await.unwrap(), "another tenant's agent is not deleted");
    assert!(store.delete_agent("acme", "a1").await.unwrap());
    assert!(store.list_agents("acme").await.unwrap().is_empty());
}

pub async fn alert_history_is_kept_per_tenant_by_rule_and_by_time(backend: &dyn Backend) {
    let store = backend.open().await;
    let entry =
        |rule: &str, at_ms| AlertHistoryEntry { rule: rule.into(), at_ms, record: format!("{{\"at\":{at_ms}}}") };
    let entries: Vec<AlertHistoryEntry> = (0..500).map(|i| entry(if i % 2 == 0 { "Hot" } else { "Cold" }, i)).collect();
    store.append_alert_history("acme", &entries).await.unwrap();
    store.append_alert_history("globex", &[entry("Hot", 1_000)]).await.unwrap();
    store.close().await;

    let store = backend.open().await;
    let hot = store.alert_history("acme", Some("Hot"), 3).await.unwrap();
    assert_eq!(hot.iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![498, 496, 494]);
    assert_eq!(hot[0].record, "{\"at\":498}");
    assert_eq!(store.alert_history("acme", None, 1000).await.unwrap().len(), 500);
    assert_eq!(store.alert_history("globex", None, 10).await.unwrap(), vec![entry("Hot", 1_000)]);
    assert!(store.alert_history("acme", Some("Nope"), 10).await.unwrap().is_empty());

    // By time: oldest first, both ends included, per tenant, at most `limit`.
    let between = store.alert_history_between("acme", 10, 14, 100).await.unwrap();
    assert_eq!(
        between.iter().map(|e| (e.rule.as_str(), e.at_ms)).collect::<Vec<_>>(),
        [("Hot", 10), ("Cold", 11), ("Hot", 12), ("Cold", 13), ("Hot", 14)]
    );
    assert_eq!(store.alert_history_between("acme", 10, 14, 2).await.unwrap().len(), 2);
    assert_eq!(store.alert_history_between("globex", 0, 2_000, 100).await.unwrap(), vec![entry("Hot", 1_000)]);
    assert!(store.alert_history_between("acme", 600, 900, 100).await.unwrap().is_empty());
}

pub async fn rejects_nonsense_queries(backend: &dyn Backend) {
    let store = backend.open().await;
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

pub async fn findings_open_fix_reopen_with_samples_and_events(backend: &dyn Backend) {
    use secumon_core::FindingStatus;
    use secumon_store::{FindingFilter, FindingsImport};
    let store = backend.open().await;
    let import = |findings, at_ms| FindingsImport { source: "trivy".into(), findings, full_scan: true, at_ms };

    let first = import(
        vec![
            vuln("CVE-1", "web", Severity::Critical),
            vuln("CVE-2", "web", Severity::Medium),
            vuln("CVE-2", "web", Severity::Medium),
            vuln("CVE-3", "db", Severity::High),
        ],
        t0(),
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
    let summary = store
        .import_findings("acme", &import(vec![vuln("CVE-2", "web", Severity::Medium)], t0() + 1_000))
        .await
        .unwrap();
    assert_eq!(summary.fixed.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), vec!["CVE-1"]);
    assert_eq!(summary.unchanged, 1);
    assert_eq!(open(&summary, "web", "critical"), 0.0);
    // It comes back: reopened, first seen kept.
    let summary = store
        .import_findings("acme", &import(vec![vuln("CVE-1", "web", Severity::Critical)], t0() + 2_000))
        .await
        .unwrap();
    assert_eq!(summary.reopened.len(), 1);
    assert_eq!(summary.reopened[0].first_seen_ms, t0());

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
        start_ms: t0(),
        end_ms: t0() + 10_000,
        step_ms: 1,
        aggregation: Aggregation::Last,
    };
    let points: Vec<f64> = store.query_range("acme", &query).await.unwrap()[0].points.iter().map(|p| p.value).collect();
    assert_eq!(points, vec![1.0, 0.0, 1.0]);
}

const MINUTE: i64 = 60_000;

fn gauge(name: &str, labels: &[(&str, &str)], ts: i64, value: f64) -> Sample {
    Sample::new(name, labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ts, value)
}

async fn raw_points(store: &dyn Store, name: &str, host: &str, start_ms: i64, end_ms: i64) -> Vec<(i64, f64)> {
    let query = RangeQuery {
        selector: SeriesSelector::new(name).with("host", host),
        start_ms,
        end_ms,
        step_ms: 1,
        aggregation: Aggregation::Last,
    };
    let answer = store.query_range("default", &query).await.unwrap();
    answer.first().map(|s| s.points.iter().map(|p| (p.timestamp_ms, p.value)).collect()).unwrap_or_default()
}

fn same_bits(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
}

pub async fn compaction_keeps_every_sample_and_queries_merge_chunks_and_head(backend: &dyn Backend) {
    let store = backend.open().await;
    let t0 = t0();
    let mut expected = Vec::new();
    for seq in 0..30u64 {
        let samples: Vec<Sample> = (0..10)
            .map(|i| {
                let ts = t0 + (seq as i64 * 10 + i) * 10_000;
                gauge("mem_used_bytes", &[], ts, (ts % 977) as f64 * 1.5)
            })
            .collect();
        expected.extend(samples.iter().map(|s| (s.timestamp_ms, s.value)));
        store.write_batch("default", &batch("a1", seq + 1, "web-1", samples)).await.unwrap();
        if seq % 10 == 9 {
            store.maintain(secumon_core::now_ms()).await.unwrap();
        }
    }
    // Out of order (an old gap filled late) and a duplicate timestamp whose later write wins.
    let late = vec![gauge("mem_used_bytes", &[], t0 - 5_000, 7.0), gauge("mem_used_bytes", &[], t0, 42.0)];
    store.write_batch("default", &batch("a1", 100, "web-1", late)).await.unwrap();
    expected.insert(0, (t0 - 5_000, 7.0));
    expected[1] = (t0, 42.0);
    let end = t0 + 3_600_000;
    assert_eq!(raw_points(&*store, "mem_used_bytes", "web-1", t0 - MINUTE, end).await, expected, "head + chunks");
    store.maintain(secumon_core::now_ms()).await.unwrap();
    assert_eq!(raw_points(&*store, "mem_used_bytes", "web-1", t0 - MINUTE, end).await, expected, "all compacted");
    store.close().await;
    let store = backend.open().await;
    assert_eq!(raw_points(&*store, "mem_used_bytes", "web-1", t0 - MINUTE, end).await, expected, "after reopen");
    // Aggregations over the compacted data agree with the raw values.
    let query = RangeQuery {
        selector: SeriesSelector::new("mem_used_bytes"),
        start_ms: t0 - MINUTE,
        end_ms: end,
        step_ms: 3_600_000 + MINUTE,
        aggregation: Aggregation::Sum,
    };
    let sum = store.query_range("default", &query).await.unwrap()[0].points[0].value;
    assert_eq!(sum, expected.iter().map(|p| p.1).sum::<f64>());
    let p95 = store.query_range("default", &RangeQuery { aggregation: Aggregation::P95, ..query }).await.unwrap();
    let mut sorted: Vec<f64> = expected.iter().map(|p| p.1).collect();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(p95[0].points[0].value, sorted[(sorted.len() as f64 * 0.95).ceil() as usize - 1]);
}

pub async fn special_values_come_back_bit_for_bit(backend: &dyn Backend) {
    let store = backend.open().await;
    let t0 = t0();
    let values = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, f64::MIN_POSITIVE, f64::MAX, 1e-300];
    let samples: Vec<Sample> =
        values.iter().enumerate().map(|(i, v)| gauge("odd", &[], t0 + i as i64 * 1_000, *v)).collect();
    let expected: Vec<(i64, f64)> = samples.iter().map(|s| (s.timestamp_ms, s.value)).collect();
    store.write_batch("default", &batch("a1", 1, "h", samples)).await.unwrap();
    let before = raw_points(&*store, "odd", "h", t0, t0 + MINUTE).await;
    assert!(same_bits(&before, &expected), "{before:?}");
    store.maintain(secumon_core::now_ms()).await.unwrap();
    let after = raw_points(&*store, "odd", "h", t0, t0 + MINUTE).await;
    assert!(same_bits(&after, &expected), "{after:?}");
}

pub async fn far_future_samples_are_refused_naming_the_series(backend: &dyn Backend) {
    let store = backend.open().await;
    let now = secumon_core::now_ms();
    let samples =
        vec![gauge("ok_series", &[], now, 1.0), gauge("clock_skewed", &[("disk", "sda")], now + 86_400_000, 1.0)];
    let err = store.write_batch("default", &batch("a1", 1, "h", samples)).await.unwrap_err();
    assert!(matches!(err, StoreError::FutureTimestamp { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("clock_skewed") && message.contains("sda"), "{message}");
    assert!(raw_points(&*store, "ok_series", "h", now - MINUTE, now + MINUTE).await.is_empty(), "nothing stored");
    assert!(store.list_agents("default").await.unwrap().is_empty());
}

pub async fn many_labels_and_any_utf8_are_kept(backend: &dyn Backend) {
    let store = backend.open().await;
    let t0 = t0();
    let mut labels: Vec<(String, String)> = (0..60).map(|i| (format!("label_{i:02}"), format!("value {i}"))).collect();
    labels.push(("path".into(), "C:\\Program Files\\\"x\" ✓ 日本語 🚀 \u{0}\n".into()));
    let sample = Sample::new("weird", labels.iter().cloned().collect(), t0, 3.0);
    store.write_batch("default", &batch("a1", 1, "h", vec![sample])).await.unwrap();
    store.maintain(secumon_core::now_ms()).await.unwrap();
    let query = RangeQuery {
        selector: SeriesSelector::new("weird").with("path", labels[60].1.clone()).with("label_42", "value 42"),
        start_ms: t0,
        end_ms: t0 + 1,
        step_ms: 1,
        aggregation: Aggregation::Last,
    };
    let answer = store.query_range("default", &query).await.unwrap();
    assert_eq!(answer.len(), 1);
    assert_eq!(answer[0].series.labels["path"], labels[60].1);
    assert_eq!(answer[0].series.labels.len(), 61 + 3, "own labels plus env, host and tenant");
}

pub async fn old_ranges_are_answered_from_rollups_after_raw_expires(backend: &dyn Backend) {
    let store = backend.open().await;
    let now = secumon_core::now_ms();
    let hour = 3_600_000;
    // Two hours of 10 s data 40 days ago (past raw retention, within the 5 min tier) and
    // 200 days ago (only the 1 h tier keeps it).
    for (seq, days) in [(1u64, 40), (2, 200)] {
        let start = now - now % hour - days * 86_400_000;
        let samples: Vec<Sample> = (0..720).map(|i| gauge("cpu", &[], start + i * 10_000, (i % 30) as f64)).collect();
        store.write_batch("default", &batch("a1", seq, "h", samples)).await.unwrap();
    }
    let report = store.maintain(now).await.unwrap();
    assert!(report.expired_rows > 0, "{report:?}");
    for (days, step, aggregation, expected) in [
        (40, 300_000, Aggregation::Count, 30.0),
        (40, 300_000, Aggregation::Max, 29.0),
        (40, 300_000, Aggregation::Min, 0.0),
        (40, hour, Aggregation::Avg, 14.5),
        (40, hour, Aggregation::Last, 29.0),
        (200, hour, Aggregation::Sum, 12.0 * 435.0),
        (200, hour, Aggregation::Count, 360.0),
    ] {
        let start = now - now % hour - days * 86_400_000;
        let query = RangeQuery {
            selector: SeriesSelector::new("cpu"),
            start_ms: start,
            end_ms: start + 2 * hour - 1,
            step_ms: step,
            aggregation,
        };
        let answer = store.query_range("default", &query).await.unwrap();
        assert_eq!(answer.len(), 1, "{days} days {aggregation}");
        assert_eq!(answer[0].points.len() as i64, 2 * hour / step, "{days} days {aggregation}");
        assert!(
            answer[0].points.iter().all(|p| p.value == expected),
            "{days} days {aggregation}: {:?}",
            answer[0].points
        );
    }
    // p95 needs raw data, which retention removed.
    let start = now - now % hour - 40 * 86_400_000;
    let p95 = RangeQuery {
        selector: SeriesSelector::new("cpu"),
        start_ms: start,
        end_ms: start + hour,
        step_ms: hour,
        aggregation: Aggregation::P95,
    };
    assert!(store.query_range("default", &p95).await.unwrap().is_empty());
}

pub async fn retention_expires_logs_events_and_history(backend: &dyn Backend) {
    let store = backend.open().await;
    let now = secumon_core::now_ms();
    let day = 86_400_000;
    let mut b = batch("a1", 1, "h", Vec::new());
    for (age_days, line) in [(40, "old"), (1, "new")] {
        b.logs.push(LogRecord {
            timestamp_ms: now - age_days * day,
            source: "syslog".into(),
            labels: Labels::new(),
            line: line.into(),
        });
    }
    store.write_batch("default", &b).await.unwrap();
    let history = |at_ms| AlertHistoryEntry { rule: "r".into(), at_ms, record: "{}".into() };
    store.append_alert_history("default", &[history(now - 400 * day), history(now - day)]).await.unwrap();
    store.maintain(now).await.unwrap();
    let logs = store.recent_logs("default", "h", 10).await.unwrap();
    assert_eq!(logs.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), vec!["new"]);
    assert_eq!(store.alert_history("default", None, 10).await.unwrap(), vec![history(now - day)]);
}

/// Retention fails after it has removed the expired raw samples (the deletes of old log
/// lines fail): what it did stays done, nothing inside the retention windows is touched, the
/// next passes fail the same way without doubling anything, and once the fault is lifted a
/// pass finishes the job; the same holds after a reopen.
pub async fn retention_failing_half_way_resumes_losing_and_doubling_nothing(backend: &dyn Backend) {
    let now = secumon_core::now_ms();
    let (hour, day) = (3_600_000, 86_400_000);
    let old_start = now - now % hour - 40 * day;
    let store = backend.open().await;
    // Two hours of 10 s data 40 days ago (past raw retention, within the 5 min tier)...
    let old: Vec<Sample> = (0..720).map(|i| gauge("cpu", &[], old_start + i * 10_000, (i % 30) as f64)).collect();
    let mut first = batch("a1", 1, "h", old);
    // ... and a day ago; log lines and alert history on both sides of their windows.
    // (Another series: in SQLite a chunk holds one series' samples, old and new alike.)
    let recent: Vec<Sample> = (0..720).map(|i| gauge("mem", &[], t0() + i * 10_000, 1.0)).collect();
    let mut second = batch("a1", 2, "h", recent);
    for (b, age_days, line) in [(&mut first, 40, "old"), (&mut second, 1, "new")] {
        b.logs.push(LogRecord {
            timestamp_ms: now - age_days * day,
            source: "syslog".into(),
            labels: Labels::new(),
            line: line.into(),
        });
    }
    store.write_batch("default", &first).await.unwrap();
    store.write_batch("default", &second).await.unwrap();
    let history = |at_ms| AlertHistoryEntry { rule: "r".into(), at_ms, record: "{}".into() };
    store.append_alert_history("default", &[history(now - 400 * day), history(now - day)]).await.unwrap();

    let query = |name: &str, start_ms: i64, step_ms: i64, aggregation| RangeQuery {
        selector: SeriesSelector::new(name),
        start_ms,
        end_ms: start_ms + 2 * hour - 1,
        step_ms,
        aggregation,
    };
    // Every point of `q` is `expected`, and there is one per step.
    let expect = |store: Arc<dyn Store>, q: RangeQuery, expected: f64, what: &'static str| async move {
        let answer = store.query_range("default", &q).await.unwrap();
        assert_eq!(answer.len(), 1, "{what}");
        assert_eq!(answer[0].points.len() as i64, (q.end_ms - q.start_ms + 1) / q.step_ms, "{what}");
        assert!(answer[0].points.iter().all(|p| p.value == expected), "{what}: {:?}", answer[0].points);
    };
    let raw_gone = |store: Arc<dyn Store>| async move {
        let p95 = query("cpu", old_start, hour, Aggregation::P95);
        assert!(store.query_range("default", &p95).await.unwrap().is_empty(), "raw data past retention expired");
    };
    // What must survive every pass, failed or not: recent raw data once, old rollups once.
    let window_intact = |store: Arc<dyn Store>| async move {
        expect(store.clone(), query("mem", t0(), 300_000, Aggregation::Count), 30.0, "recent raw, once").await;
        expect(store.clone(), query("mem", t0(), 10_000, Aggregation::Count), 1.0, "recent raw, each sample once")
            .await;
        expect(store.clone(), query("cpu", old_start, 300_000, Aggregation::Count), 30.0, "old 5 min rollups, once")
            .await;
        expect(store.clone(), query("cpu", old_start, hour, Aggregation::Avg), 14.5, "old 1 h rollups").await;
    };
    let lines = |store: Arc<dyn Store>| async move {
        let logs = store.recent_logs("default", "h", 10).await.unwrap();
        let mut lines: Vec<String> = logs.into_iter().map(|l| l.line).collect();
        lines.sort();
        lines
    };

    backend.fail_deletes("logs", true).await;
    for pass in 0..2 {
        let failed = store.maintain(now).await.expect_err("retention fails at the logs");
        assert!(failed.to_string().contains("injected failure"), "pass {pass}: {failed}");
        raw_gone(store.clone()).await;
        window_intact(store.clone()).await;
        assert_eq!(lines(store.clone()).await, vec!["new", "old"], "the failed delete removed nothing");
    }

    backend.fail_deletes("logs", false).await;
    let report = store.maintain(now).await.unwrap();
    assert!(report.expired_rows > 0, "{report:?}");
    raw_gone(store.clone()).await;
    window_intact(store.clone()).await;
    assert_eq!(lines(store.clone()).await, vec!["new"]);
    assert_eq!(store.alert_history("default", None, 10).await.unwrap(), vec![history(now - day)]);
    store.close().await;

    let reopened = backend.open().await;
    raw_gone(reopened.clone()).await;
    window_intact(reopened.clone()).await;
    reopened.maintain(now).await.unwrap();
    window_intact(reopened.clone()).await;
    assert_eq!(lines(reopened.clone()).await, vec!["new"]);
    assert_eq!(reopened.alert_history("default", None, 10).await.unwrap(), vec![history(now - day)]);
    let agents = reopened.list_agents("default").await.unwrap();
    assert_eq!((agents[0].last_sequence, agents[0].batches), (2, 2));
    reopened.close().await;
}

/// A report of `count` findings, one per asset `host-{i}`, every fifth critical.
fn fleet_report(count: usize, id: impl Fn(usize) -> String) -> Vec<secumon_core::Finding> {
    (0..count)
        .map(|i| {
            let severity = if i % 5 == 0 { Severity::Critical } else { Severity::High };
            vuln(&id(i), &format!("host-{i}"), severity)
        })
        .collect()
}

/// The size of the issue-17 report: every finding stored, a full scan fixes what an asset
/// no longer lists, a finding that comes back keeps its first-seen time, and the
/// `findings_open` samples and critical events add up.
pub async fn fifty_thousand_findings_on_as_many_assets_are_stored_right(backend: &dyn Backend) {
    use secumon_core::FindingStatus;
    use secumon_store::{FindingFilter, FindingsImport};
    const N: usize = 50_000;
    // Once: a test running across the top of an hour would see two hours.
    let t0 = t0();
    let store = backend.open().await;
    let import = |findings, at_ms| FindingsImport { source: "trivy".into(), findings, full_scan: true, at_ms };
    let count = |status: FindingStatus| {
        let store = &store;
        async move {
            let filter = FindingFilter { status: Some(status), limit: 200_000, ..Default::default() };
            store.list_findings("acme", &filter).await.unwrap()
        }
    };

    let summary = store.import_findings("acme", &import(fleet_report(N, |_| "CVE-A".into()), t0)).await.unwrap();
    assert_eq!((summary.new.len(), summary.reopened.len(), summary.fixed.len()), (N, 0, 0));
    assert_eq!(summary.samples.len(), N * 5, "five severities per asset");
    let critical_ones = summary.samples.iter().filter(|s| s.series.labels["severity"] == "critical");
    assert_eq!(critical_ones.map(|s| s.value).sum::<f64>(), (N / 5) as f64);
    assert_eq!(count(FindingStatus::Open).await.len(), N);

    // The next full scan lists CVE-B instead of CVE-A on the first 10 000 assets.
    let second = fleet_report(N, |i| if i < 10_000 { "CVE-B".into() } else { "CVE-A".into() });
    let summary = store.import_findings("acme", &import(second, t0 + 1_000)).await.unwrap();
    assert_eq!((summary.new.len(), summary.fixed.len(), summary.unchanged), (10_000, 10_000, 40_000));
    assert!(summary.fixed.iter().all(|f| f.id == "CVE-A" && f.status == FindingStatus::Fixed));

    // CVE-A comes back on host-0..999: reopened with its first-seen time; CVE-B fixed there.
    let third = fleet_report(1_000, |_| "CVE-A".into());
    let summary = store.import_findings("acme", &import(third, t0 + 2_000)).await.unwrap();
    assert_eq!((summary.reopened.len(), summary.fixed.len(), summary.new.len()), (1_000, 1_000, 0));
    assert!(summary.reopened.iter().all(|f| f.first_seen_ms == t0 && f.last_seen_ms == t0 + 2_000));
    let open = count(FindingStatus::Open).await;
    let fixed = count(FindingStatus::Fixed).await;
    assert_eq!((open.len(), fixed.len()), (N, 10_000));
    let host0 = store
        .list_findings("acme", &FindingFilter { asset: Some("host-0".into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(
        host0.iter().map(|f| (f.id.as_str(), f.status, f.first_seen_ms)).collect::<Vec<_>>(),
        vec![("CVE-A", FindingStatus::Open, t0), ("CVE-B", FindingStatus::Fixed, t0 + 1_000)]
    );
    // An asset the last report did not cover keeps its count.
    let query = RangeQuery {
        selector: SeriesSelector::new("findings_open").with("severity", "critical").with("host", "host-10"),
        start_ms: t0 - 1,
        end_ms: t0 + 3_000,
        step_ms: 1_000,
        aggregation: Aggregation::Last,
    };
    let series = store.query_range("acme", &query).await.unwrap();
    assert_eq!(series.len(), 1);
    let values: Vec<f64> = series[0].points.iter().map(|p| p.value).collect();
    assert!(values.len() >= 2 && values.iter().all(|v| *v == 1.0), "{values:?}");
    store.close().await;
}

/// A report over the per-report cap, or one that would take the tenant over its cap of
/// open findings, is refused with the limit named, and nothing of it is stored.
pub async fn findings_caps_refuse_a_report_whole_naming_the_limit(backend: &dyn Backend) {
    use secumon_store::{FindingFilter, FindingsImport};
    let options = StoreOptions { max_report_findings: 3_000, max_open_findings: 5_000, ..test_options() };
    let store = backend.open_with(options).await;
    let import = |findings, at_ms| FindingsImport { source: "trivy".into(), findings, full_scan: true, at_ms };
    let listed = |tenant: &'static str| {
        let store = &store;
        async move { store.list_findings(tenant, &FindingFilter { limit: 10_000, ..Default::default() }).await.unwrap() }
    };

    let error = store.import_findings("acme", &import(fleet_report(3_001, |_| "CVE-A".into()), t0())).await;
    let error = error.unwrap_err();
    assert!(matches!(error, StoreError::ReportTooLarge { findings: 3_001, limit: 3_000 }), "{error}");
    assert!(error.to_string().contains("3001 findings") && error.to_string().contains("3000"), "{error}");
    assert!(listed("acme").await.is_empty());

    store.import_findings("acme", &import(fleet_report(3_000, |_| "CVE-A".into()), t0())).await.unwrap();
    // 3 000 open + 2 500 new on other assets: over 5 000, refused whole.
    let more: Vec<_> = fleet_report(5_500, |_| "CVE-B".into()).into_iter().skip(3_000).collect();
    let error = store.import_findings("acme", &import(more.clone(), t0() + 1_000)).await.unwrap_err();
    assert!(matches!(error, StoreError::TooManyOpenFindings { open: 5_500, limit: 5_000, .. }), "{error}");
    assert!(error.to_string().contains("5500") && error.to_string().contains("5000"), "{error}");
    assert_eq!(listed("acme").await.len(), 3_000, "nothing of the refused report is stored");
    // Another tenant has its own count; a smaller report still goes in.
    store.import_findings("globex", &import(more[..2_000].to_vec(), t0() + 1_000)).await.unwrap();
    store.import_findings("acme", &import(more[..2_000].to_vec(), t0() + 2_000)).await.unwrap();
    assert_eq!(listed("acme").await.len(), 5_000);
    store.close().await;
}

fn audit_entry(tenant: &str, at_ms: i64, actor: &str, action: &str, target: &str) -> AuditEntry {
    AuditEntry {
        id: 0,
        tenant: tenant.into(),
        at_ms,
        actor: actor.into(),
        client_ip: "127.0.0.1".into(),
        action: action.into(),
        target: target.into(),
        detail: format!("{{\"target\":\"{target}\"}}"),
    }
}

pub async fn audit_log_is_per_tenant_filtered_paged_newest_first_and_expires(backend: &dyn Backend) {
    let store = backend.open().await;
    let now = secumon_core::now_ms();
    let day = 86_400_000;
    // Entries are appended as actions happen: in id order, which is time order.
    store.append_audit(&audit_entry("acme", now - 400 * day, "alice", "user.create", "ancient")).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        let (actor, action) = if i % 2 == 0 { ("alice", "user.create") } else { ("key:k1", "api_key.create") };
        let id =
            store.append_audit(&audit_entry("acme", now - (10 - i) * 1_000, actor, action, &format!("t{i}"))).await;
        ids.push(id.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    store.append_audit(&audit_entry("globex", now, "bob", "user.create", "g")).await.unwrap();
    store.close().await;

    let store = backend.open().await;
    let acme = |limit| AuditFilter { tenant: Some("acme".into()), limit, ..AuditFilter::default() };
    let all_acme = store.audit(&acme(100)).await.unwrap();
    assert_eq!(all_acme.len(), 11);
    assert!(all_acme.iter().all(|e| e.tenant == "acme"), "only acme's entries");
    assert_eq!(all_acme[0].target, "t9", "newest first");
    assert_eq!(all_acme[0].id, ids[9]);
    assert_eq!(all_acme[0].client_ip, "127.0.0.1");
    assert_eq!(all_acme[0].detail, "{\"target\":\"t9\"}");

    // Pages by id: the second page starts below the first page's last id.
    let first = store.audit(&acme(4)).await.unwrap();
    let second = store.audit(&AuditFilter { before_id: Some(first[3].id), ..acme(4) }).await.unwrap();
    let targets: Vec<&str> = first.iter().chain(&second).map(|e| e.target.as_str()).collect();
    assert_eq!(targets, vec!["t9", "t8", "t7", "t6", "t5", "t4", "t3", "t2"]);

    let by_actor = store.audit(&AuditFilter { actor: Some("key:k1".into()), ..acme(100) }).await.unwrap();
    assert_eq!(by_actor.len(), 5);
    assert!(by_actor.iter().all(|e| e.action == "api_key.create"));
    let by_action = store.audit(&AuditFilter { action: Some("user.create".into()), ..acme(100) }).await.unwrap();
    assert_eq!(by_action.len(), 6);
    let window = AuditFilter { since_ms: Some(now - 5_000), until_ms: Some(now - 2_000), ..acme(100) };
    let in_window: Vec<String> = store.audit(&window).await.unwrap().into_iter().map(|e| e.target).collect();
    assert_eq!(in_window, vec!["t7", "t6", "t5"]);

    let everyone = store.audit(&AuditFilter { limit: 100, ..AuditFilter::default() }).await.unwrap();
    assert_eq!(everyone.len(), 12, "no tenant: every tenant's entries");
    assert_eq!(everyone[0].tenant, "globex", "the last appended comes first");
    let globex = AuditFilter { tenant: Some("globex".into()), limit: 100, ..Default::default() };
    assert_eq!(store.audit(&globex).await.unwrap().iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), vec!["g"]);

    // Kept 365 days: the 400-day-old entry goes, the rest stay.
    store.maintain(now).await.unwrap();
    let kept = store.audit(&acme(100)).await.unwrap();
    assert_eq!(kept.len(), 10);
    assert!(kept.iter().all(|e| e.target != "ancient"));
}

pub async fn a_tenant_over_its_series_limit_is_refused_whole_and_others_are_not(backend: &dyn Backend) {
    let options = || StoreOptions { max_series_per_tenant: 10, ..test_options() };
    let store = backend.open_with(options()).await;
    let metric = |i: usize, ts: i64| Sample::new(format!("m{i}"), Labels::new(), ts, i as f64);
    let first: Vec<Sample> = (0..8).map(|i| metric(i, t0())).collect();
    store.write_batch("acme", &batch("a1", 1, "h", first)).await.unwrap();
    // Known series and three new ones: past 10, refused whole.
    let over: Vec<Sample> = (5..11).map(|i| metric(i, t0() + 1_000)).collect();
    let error = store.write_batch("acme", &batch("a1", 2, "h", over.clone())).await.unwrap_err();
    assert!(matches!(error, StoreError::SeriesLimit { limit: 10, new: 3, .. }), "{error:?}");
    assert!(error.to_string().contains("acme") && error.to_string().contains("10 series"), "{error}");
    let acme_points = |name: &'static str| {
        let store = Arc::clone(&store);
        async move {
            let query = RangeQuery { step_ms: 1, ..range(name, "h", 1, Aggregation::Last) };
            let answer = store.query_range("acme", &query).await.unwrap();
            answer.first().map(|s| s.points.len()).unwrap_or(0)
        }
    };
    assert_eq!(acme_points("m9").await, 0, "no new series stored");
    assert_eq!(acme_points("m5").await, 1, "nor the known series' samples");
    assert_eq!(acme_points("m0").await, 1);
    // Another tenant has a budget of its own.
    let other: Vec<Sample> = (0..10).map(|i| metric(i, t0())).collect();
    store.write_batch("globex", &batch("b1", 1, "h", other)).await.unwrap();
    // Up to the limit exactly, and known series go on.
    let fill: Vec<Sample> = (6..10).map(|i| metric(i, t0() + 2_000)).collect();
    store.write_batch("acme", &batch("a1", 3, "h", fill)).await.unwrap();
    store.write_batch("acme", &batch("a1", 4, "h", vec![metric(0, t0() + 3_000)])).await.unwrap();
    store.close().await;

    // After a restart the count comes from the store.
    let store = backend.open_with(options()).await;
    let error = store.write_batch("acme", &batch("a1", 5, "h", vec![metric(10, t0() + 4_000)])).await.unwrap_err();
    assert!(matches!(error, StoreError::SeriesLimit { .. }), "{error:?}");
    store.write_batch("acme", &batch("a1", 6, "h", vec![metric(1, t0() + 4_000)])).await.unwrap();
}

/// Log lines of host `h`: `count` lines from `first`, three per millisecond (so ties are
/// broken by row), alternating two sources, every seventh an `ERROR`.
fn log_lines(first: usize, count: usize, base_ms: i64) -> Vec<LogRecord> {
    (first..first + count)
        .map(|i| LogRecord {
            timestamp_ms: base_ms + (i / 3) as i64,
            source: if i % 2 == 0 { "/var/log/app.log".into() } else { "journald".into() },
            labels: Labels::new(),
            line: format!("{} line {i}", if i % 7 == 0 { "ERROR" } else { "info" }),
        })
        .collect()
}

/// Pages `query` forward to the end, returning every line in order.
async fn page_all(store: &dyn Store, tenant: &str, mut query: secumon_store::LogQuery) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let page = store.query_logs(tenant, &query).await.unwrap();
        lines.extend(page.entries.iter().map(|e| e.record.line.clone()));
        if !page.more {
            return lines;
        }
        query.after = page.last;
    }
}

/// The log query of issue 25: paging by cursor returns every line once and in order, even
/// with lines arriving between pages; time range, source, substring and regex filters give
/// the same answers on every backend; backward paging; bad regexes and cursors refused.
pub async fn logs_page_by_cursor_range_source_and_filter(backend: &dyn Backend) {
    use secumon_store::{LineFilter, LogCursor, LogOrder, LogQuery};
    let store = backend.open().await;
    let base = t0();
    let all = log_lines(0, 3_000, base);
    for (sequence, chunk) in all.chunks(500).enumerate() {
        let mut b = batch("a1", sequence as u64 + 1, "h", Vec::new());
        b.logs = chunk.to_vec();
        store.write_batch("default", &b).await.unwrap();
    }
    let text = |records: &[LogRecord]| records.iter().map(|r| r.line.clone()).collect::<Vec<_>>();
    let query = |limit| LogQuery { host: "h".into(), since_ms: Some(0), limit, ..Default::default() };

    // Paging while new (later) lines arrive: every old line once, in order, then the new.
    let mut seen = Vec::new();
    let mut q = query(700);
    let mut appended = false;
    loop {
        let page = store.query_logs("default", &q).await.unwrap();
        assert!(page.entries.len() <= 700);
        seen.extend(page.entries.iter().map(|e| e.record.line.clone()));
        if !appended {
            let mut b = batch("a1", 100, "h", Vec::new());
            b.logs = log_lines(3_000, 10, base);
            store.write_batch("default", &b).await.unwrap();
            appended = true;
        }
        if !page.more {
            break;
        }
        q.after = page.last;
    }
    let mut expected = text(&all);
    expected.extend(text(&log_lines(3_000, 10, base)));
    assert_eq!(seen.len(), expected.len(), "every line once");
    assert_eq!(seen, expected, "in (time, arrival) order");
    let all = log_lines(0, 3_010, base);

    // Time range: [since, until).
    let ranged =
        page_all(&*store, "default", LogQuery { since_ms: Some(base + 100), until_ms: Some(base + 200), ..query(64) })
            .await;
    let want: Vec<String> =
        all.iter().filter(|r| (base + 100..base + 200).contains(&r.timestamp_ms)).map(|r| r.line.clone()).collect();
    assert_eq!(ranged.len(), 300);
    assert_eq!(ranged, want);

    // Source, substring and regex, alone and together.
    let source = page_all(&*store, "default", LogQuery { source: Some("journald".into()), ..query(999) }).await;
    assert_eq!(source, all.iter().filter(|r| r.source == "journald").map(|r| r.line.clone()).collect::<Vec<_>>());
    let errors =
        page_all(&*store, "default", LogQuery { filter: Some(LineFilter::Contains("ERROR".into())), ..query(50) })
            .await;
    assert_eq!(errors, all.iter().filter(|r| r.line.contains("ERROR")).map(|r| r.line.clone()).collect::<Vec<_>>());
    let regex = LineFilter::regex(r"^ERROR line \d*5$").unwrap();
    let both =
        page_all(&*store, "default", LogQuery { filter: Some(regex), source: Some("journald".into()), ..query(7) })
            .await;
    let want: Vec<String> = all
        .iter()
        .filter(|r| r.source == "journald" && r.line.starts_with("ERROR") && r.line.ends_with('5'))
        .map(|r| r.line.clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(both, want);

    // Backward from the end (the newest page first, each page oldest first).
    let mut back = Vec::new();
    let mut q = LogQuery { host: "h".into(), order: LogOrder::Backward, limit: 1_000, ..Default::default() };
    let mut newest = None;
    loop {
        let page = store.query_logs("default", &q).await.unwrap();
        // The first page (the newest lines) says where following would start.
        newest = newest.or(page.last);
        let mut lines: Vec<String> = page.entries.iter().map(|e| e.record.line.clone()).collect();
        lines.extend(back);
        back = lines;
        if !page.more {
            break;
        }
        q.before = page.first;
    }
    assert_eq!(back, text(&all));
    // Nothing after the newest line, and a cursor survives its text form.
    let newest = newest.unwrap();
    let after: LogCursor = newest.to_string().parse().unwrap();
    assert_eq!(after, newest);
    let tail = store.query_logs("default", &LogQuery { after: Some(after), ..query(10) }).await.unwrap();
    assert!(tail.entries.is_empty() && !tail.more);
    assert_eq!(tail.last, Some(newest), "an empty page keeps the client's place");

    // Refused: a pattern that does not compile, one too large, a forged cursor.
    for pattern in ["(unclosed", "a{1000}{1000}"] {
        let error = LineFilter::regex(pattern).unwrap_err();
        assert!(matches!(error, StoreError::InvalidQuery(_)), "{pattern}: {error}");
    }
    assert!(matches!("not-a-cursor".parse::<LogCursor>(), Err(StoreError::InvalidQuery(_))));

    // Another tenant sees none of it.
    let other = store.query_logs("acme", &query(100)).await.unwrap();
    assert!(other.entries.is_empty() && !other.more);
}

/// Three tenants keep their samples for different times: `short` (raw 2 days, 5-minute
/// rollups 20 days), `keep` (the defaults: 30, 90, 365) and `long` (raw 60 days). One pass
/// deletes each tenant's raw samples and rollups past its own horizon only, queries pick the
/// tier by the tenant's own retention, and the policies survive a reopen.
pub async fn each_tenant_keeps_each_tier_for_its_own_retention(backend: &dyn Backend) {
    let now = secumon_core::now_ms();
    let (hour, day) = (3_600_000, 86_400_000);
    let store = backend.open().await;
    let short = TierRetention { raw_ms: 2 * day, rollup_5m_ms: 20 * day, rollup_1h_ms: 365 * day };
    let long = TierRetention { raw_ms: 60 * day, rollup_5m_ms: 90 * day, rollup_1h_ms: 365 * day };
    store.set_tier_retention("short", Some(short)).await.unwrap();
    store.set_tier_retention("long", Some(long)).await.unwrap();
    let defaults = StoreOptions::default().retention.tiers();
    assert_eq!(store.tier_retention("keep").await.unwrap(), defaults);
    assert_eq!(store.tier_retention("short").await.unwrap(), short);
    // Nonsense is refused, naming the tier, and changes nothing.
    let unordered = TierRetention { rollup_5m_ms: day, ..short };
    match store.set_tier_retention("short", Some(unordered)).await {
        Err(StoreError::InvalidRetention(e)) => assert_eq!(e.field, "rollup_5m", "{e}"),
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(store.tier_retention("short").await.unwrap(), short);

    // Two hours of 10 s data, hour-aligned, `age` days ago, in a series of its own per age
    // (a SQLite chunk holds one series' samples of every age alike).
    let start = |age: i64| now - now % hour - age * day;
    let ages = [10, 40, 70];
    for tenant in ["short", "keep", "long"] {
        for (i, age) in ages.into_iter().enumerate() {
            let samples: Vec<Sample> = (0..720)
                .map(|j| gauge(&format!("cpu_{age}d"), &[], start(age) + j * 10_000, (j % 30) as f64))
                .collect();
            store.write_batch(tenant, &batch(&format!("{tenant}-agent"), i as u64 + 1, "h", samples)).await.unwrap();
        }
    }
    let report = store.maintain(now).await.unwrap();
    assert!(report.expired_rows > 0, "{report:?}");

    let query = |age: i64, step_ms: i64, aggregation| RangeQuery {
        selector: SeriesSelector::new(format!("cpu_{age}d")),
        start_ms: start(age),
        end_ms: start(age) + 2 * hour - 1,
        step_ms,
        aggregation,
    };
    // p95 is always answered from raw samples.
    let has_raw = |store: Arc<dyn Store>, tenant: &'static str, age: i64| async move {
        !store.query_range(tenant, &query(age, hour, Aggregation::P95)).await.unwrap().is_empty()
    };
    let counts = |store: Arc<dyn Store>, tenant: &'static str, age: i64, step_ms: i64| async move {
        let answer = store.query_range(tenant, &query(age, step_ms, Aggregation::Count)).await.unwrap();
        answer.first().map(|s| s.points.iter().map(|p| p.value).collect::<Vec<_>>()).unwrap_or_default()
    };
    let kept = |store: Arc<dyn Store>| async move {
        for (tenant, age, raw) in [
            ("short", 10, false),
            ("short", 40, false),
            ("short", 70, false),
            ("keep", 10, true),
            ("keep", 40, false),
            ("keep", 70, false),
            ("long", 10, true),
            ("long", 40, true),
            ("long", 70, false),
        ] {
            assert_eq!(has_raw(store.clone(), tenant, age).await, raw, "{tenant}'s raw samples {age} days old");
        }
        // Where raw samples are gone, the rollups answer, as kept by each tenant's own horizon:
        // `short` reads 5-minute rollups at 10 days, and 1-hour ones at 40 (its 5-minute
        // retention is 20 days); the others read 5-minute rollups (or raw samples) at 40 days.
        assert_eq!(counts(store.clone(), "short", 10, 300_000).await, vec![30.0; 24], "short, 10 days, 5 min");
        assert_eq!(counts(store.clone(), "short", 40, hour).await, vec![360.0; 2], "short, 40 days, 1 h");
        assert_eq!(counts(store.clone(), "short", 40, 300_000).await.len(), 2, "short, 40 days: 1 h buckets");
        for tenant in ["keep", "long"] {
            for age in ages {
                assert_eq!(counts(store.clone(), tenant, age, 300_000).await, vec![30.0; 24], "{tenant}, {age} days");
            }
        }
    };
    kept(store.clone()).await;
    // A second pass deletes nothing more.
    assert_eq!(store.maintain(now).await.unwrap().expired_rows, 0);
    kept(store.clone()).await;
    store.close().await;

    let reopened = backend.open().await;
    assert_eq!(reopened.tier_retention("short").await.unwrap(), short, "kept durably");
    assert_eq!(reopened.tier_retention("long").await.unwrap(), long);
    kept(reopened.clone()).await;
    // Back to the defaults, `short` reads 5-minute rollups at 40 days: they were deleted.
    reopened.set_tier_retention("short", None).await.unwrap();
    assert_eq!(reopened.tier_retention("short").await.unwrap(), defaults);
    assert_eq!(counts(reopened.clone(), "short", 40, 300_000).await, Vec::<f64>::new(), "short's 5 min rollups");
    assert_eq!(counts(reopened.clone(), "keep", 40, 300_000).await, vec![30.0; 24]);
    // Passes go on deleting what ages past each horizon meanwhile (PostgreSQL goes on from
    // where its last pass stopped): 25 days on, `keep`'s samples of 10 days ago are 35 days
    // old, `long`'s 65 and 35.
    reopened.maintain(now).await.unwrap();
    assert!(reopened.maintain(now + 25 * day).await.unwrap().expired_rows > 0);
    for (tenant, age, raw) in [("keep", 10, false), ("long", 10, true), ("long", 40, false)] {
        assert_eq!(has_raw(reopened.clone(), tenant, age).await, raw, "25 days on, {tenant}'s raw of {age} days ago");
    }
    reopened.close().await;
}

/// `count` samples of `grouped` at `ts`, one series each (label `n`).
fn grouped(count: usize, ts: i64, value: f64) -> Vec<Sample> {
    (0..count).map(|n| Sample::new("grouped", Labels::from([("n".to_string(), n.to_string())]), ts, value)).collect()
}

/// Samples of `grouped` per host and series, each step's count (1 s steps over t0's hour).
async fn grouped_counts(store: &dyn Store, tenant: &str) -> std::collections::BTreeMap<String, Vec<Vec<(i64, f64)>>> {
    let query = RangeQuery {
        selector: SeriesSelector::new("grouped"),
        start_ms: t0(),
        end_ms: t0() + 3_599_999,
        step_ms: 1_000,
        aggregation: Aggregation::Count,
    };
    let mut hosts: std::collections::BTreeMap<String, Vec<Vec<(i64, f64)>>> = Default::default();
    for series in store.query_range(tenant, &query).await.unwrap() {
        let host = series.series.labels.get("host").cloned().unwrap_or_default();
        let points = series.points.iter().map(|p| ((p.timestamp_ms - t0()) / 1_000, p.value)).collect();
        hosts.entry(host).or_default().push(points);
    }
    hosts
}

/// Group commit under load: hundreds of agents writing at once each get their own answer,
/// and every batch is stored once, in its own tenant.
pub async fn hundreds_of_concurrent_writers_are_each_answered_and_stored_once(backend: &dyn Backend) {
    const AGENTS: usize = 300;
    const BATCHES: u64 = 3;
    const SERIES: usize = 5;
    let store = backend.open().await;
    let mut writers = tokio::task::JoinSet::new();
    for agent in 0..AGENTS {
        let store = Arc::clone(&store);
        writers.spawn(async move {
            let tenant = if agent.is_multiple_of(3) { "globex" } else { "acme" };
            for sequence in 1..=BATCHES {
                let samples = grouped(SERIES, t0() + sequence as i64 * 1_000, agent as f64);
                let batch = batch(&format!("agent-{agent}"), sequence, &format!("host-{agent}"), samples);
                let outcome = store.write_batch(tenant, &batch).await;
                assert_eq!(outcome.unwrap(), WriteOutcome::Committed, "agent-{agent} #{sequence}");
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    for (tenant, agents) in [("acme", AGENTS - AGENTS.div_ceil(3)), ("globex", AGENTS.div_ceil(3))] {
        let listed = store.list_agents(tenant).await.unwrap();
        assert_eq!(listed.len(), agents, "{tenant}");
        assert!(listed.iter().all(|a| a.batches == BATCHES && a.last_sequence == BATCHES), "{tenant}: {listed:?}");
        let hosts = grouped_counts(&*store, tenant).await;
        assert_eq!(hosts.len(), agents, "{tenant}");
        for (host, series) in hosts {
            let agent: usize = host.trim_start_matches("host-").parse().unwrap();
            assert_eq!(agent.is_multiple_of(3), tenant == "globex", "{host} stored under {tenant}");
            assert_eq!(series.len(), SERIES, "{host}");
            for points in series {
                assert_eq!(points, vec![(1, 1.0), (2, 1.0), (3, 1.0)], "{host}: each batch once");
            }
        }
    }
}

/// A batch and its resend racing each other (an agent that reconnected while its first
/// push was still being written): one is committed, the other is a duplicate, whether
/// they land in one group or in two.
pub async fn the_same_batch_twice_at_once_is_stored_once(backend: &dyn Backend) {
    const AGENTS: usize = 50;
    let store = backend.open().await;
    let mut writers = tokio::task::JoinSet::new();
    for agent in 0..AGENTS {
        let store = Arc::clone(&store);
        writers.spawn(async move {
            let mut outcomes = Vec::new();
            for sequence in 1..=4u64 {
                let samples = grouped(3, t0() + sequence as i64 * 1_000, sequence as f64);
                let batch = batch(&format!("agent-{agent}"), sequence, &format!("host-{agent}"), samples);
                let (first, second) =
                    tokio::join!(store.write_batch("default", &batch), store.write_batch("default", &batch));
                let mut pair = [first.unwrap(), second.unwrap()];
                pair.sort_by_key(|o| *o == WriteOutcome::Duplicate);
                outcomes.push(pair);
            }
            outcomes
        });
    }
    while let Some(done) = writers.join_next().await {
        for pair in done.unwrap() {
            assert_eq!(pair, [WriteOutcome::Committed, WriteOutcome::Duplicate]);
        }
    }
    let agents = store.list_agents("default").await.unwrap();
    assert_eq!(agents.len(), AGENTS);
    assert!(agents.iter().all(|a| a.batches == 4), "duplicates counted: {agents:?}");
    for (host, series) in grouped_counts(&*store, "default").await {
        for points in series {
            assert_eq!(points, vec![(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0)], "{host}");
        }
    }
}

/// One group holding good batches and refused ones (an agent id another tenant owns, a
/// tenant over its series limit, a batch twice): each caller gets its own answer, the good
/// batches are stored, and nothing of a refused batch stays, not even its place in the
/// ledger (the same batch is taken once the cause is gone).
pub async fn refused_batches_leave_their_group_alone_and_the_others_commit(backend: &dyn Backend) {
    let store = backend.open().await;
    // `intruder` belongs to globex; `tiny` may hold 2 series.
    let owned = batch("intruder", 1, "globex-host", grouped(1, t0(), 1.0));
    assert_eq!(store.write_batch("globex", &owned).await.unwrap(), WriteOutcome::Committed);
    store.set_series_limit("tiny", Some(2));

    let hold = backend.hold_writes().await;
    let mut writers = tokio::task::JoinSet::new();
    let spawn = |writers: &mut tokio::task::JoinSet<_>, name: String, tenant: &'static str, batch: IngestBatch| {
        let store = Arc::clone(&store);
        writers.spawn(async move { (name, store.write_batch(tenant, &batch).await) });
    };
    // First, batches that take every leader's place and wait on the held lock...
    for blocker in 0..8 {
        let samples = grouped(2, t0() + 1_000, 1.0);
        let blocking = batch(&format!("blocker-{blocker}"), 1, &format!("b{blocker}"), samples);
        spawn(&mut writers, format!("blocker-{blocker}"), "acme", blocking);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // ...then these queue behind them and go into one group.
    for good in 0..20 {
        let samples = grouped(2, t0() + 2_000, good as f64);
        spawn(
            &mut writers,
            format!("good-{good}"),
            "acme",
            batch(&format!("good-{good}"), 1, &format!("g{good}"), samples),
        );
    }
    let intruding = batch("intruder", 2, "acme-host", grouped(2, t0() + 2_000, 2.0));
    spawn(&mut writers, "intruder".into(), "acme", intruding.clone());
    let too_big = batch("tiny-1", 1, "tiny-host", grouped(3, t0() + 2_000, 3.0));
    spawn(&mut writers, "tiny".into(), "tiny", too_big.clone());
    let twice = batch("twice", 1, "twice-host", grouped(2, t0() + 2_000, 4.0));
    spawn(&mut writers, "twice-a".into(), "acme", twice.clone());
    spawn(&mut writers, "twice-b".into(), "acme", twice.clone());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(hold);

    let mut twice_outcomes = Vec::new();
    while let Some(done) = writers.join_next().await {
        let (name, outcome) = done.unwrap();
        match name.as_str() {
            "intruder" => assert!(matches!(outcome, Err(StoreError::TenantMismatch { .. })), "{outcome:?}"),
            "tiny" => assert!(matches!(outcome, Err(StoreError::SeriesLimit { limit: 2, .. })), "{outcome:?}"),
            "twice-a" | "twice-b" => twice_outcomes.push(outcome.unwrap()),
            _ => assert_eq!(outcome.unwrap(), WriteOutcome::Committed, "{name}"),
        }
    }
    twice_outcomes.sort_by_key(|o| *o == WriteOutcome::Duplicate);
    assert_eq!(twice_outcomes, [WriteOutcome::Committed, WriteOutcome::Duplicate]);
    let acme = grouped_counts(&*store, "acme").await;
    assert_eq!(acme.len(), 8 + 20 + 1, "the blockers', the good and twice's hosts: {:?}", acme.keys());
    assert!(!acme.contains_key("acme-host"), "the intruder's samples were kept");
    assert_eq!(acme["twice-host"], vec![vec![(2, 1.0)]; 2], "the batch sent twice is stored once");
    assert!(grouped_counts(&*store, "tiny").await.is_empty(), "the refused batch left series or samples");
    let agents: Vec<String> = store.list_agents("acme").await.unwrap().into_iter().map(|a| a.agent_id).collect();
    assert!(!agents.contains(&"intruder".to_string()), "{agents:?}");

    // Nothing of them stayed in the ledger: once the cause is gone, the same batches are taken.
    store.set_series_limit("tiny", Some(10));
    assert_eq!(store.write_batch("tiny", &too_big).await.unwrap(), WriteOutcome::Committed);
    assert_eq!(store.write_batch("globex", &intruding).await.unwrap(), WriteOutcome::Committed);
    assert_eq!(grouped_counts(&*store, "tiny").await["tiny-host"].len(), 3);
    assert_eq!(store.list_agents("globex").await.unwrap()[0].batches, 2);
}
