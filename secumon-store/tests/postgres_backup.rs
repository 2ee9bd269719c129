//! Backup and restore of the PostgreSQL store (issue #19): a database filled through the
//! store (samples recent and rolled up, logs, events, checks, agents, findings, records,
//! state, alert history, audit) is dumped with `pg_dump --format=custom` and restored with
//! `pg_restore` into another fresh database; the store opened on the copy gives the same
//! answers, and goes on from there (the batch ledger refuses resends, compaction picks
//! up new samples). Runs against the server of `SECUMON_TEST_PG_URL`, in databases of its
//! own that are dropped afterwards; needs `pg_dump` and `pg_restore` on the PATH.

use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;

use secumon_core::{CheckResult, CheckStatus, Event, Finding, FindingStatus, IngestBatch, Labels, LogRecord, Sample};
use secumon_core::{Severity, now_ms};
use secumon_store::{
    Aggregation, AlertHistoryEntry, AuditEntry, AuditFilter, FindingFilter, FindingsImport, PgStore, RangeQuery,
    Retention, SeriesSelector, Store, StoreOptions, WriteOutcome,
};
use sqlx::postgres::PgConnectOptions;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let (server, _) =
        base.rsplit_once('/').filter(|(s, _)| s.contains("://") && !s.ends_with('/')).unwrap_or((base, ""));
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// Two fresh databases, dropped however the test ends.
struct Databases {
    url: String,
    names: Vec<String>,
}

impl Drop for Databases {
    fn drop(&mut self) {
        let (url, names) = (self.url.clone(), self.names.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    for name in names {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&pool)
                            .await;
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

fn options() -> StoreOptions {
    // Raw samples kept 30 days: the batch from 40 days ago is only in the 5-minute rollups.
    StoreOptions { background: false, retention: Retention::default(), ..StoreOptions::default() }
}

async fn open(url: &str) -> Arc<PgStore> {
    PgStore::connect_with(PgConnectOptions::from_str(url).unwrap(), options()).await.unwrap()
}

fn batch(agent: &str, sequence: u64, host: &str, samples: Vec<Sample>) -> IngestBatch {
    IngestBatch {
        agent_id: agent.into(),
        sequence,
        host: host.into(),
        agent_labels: Labels::from([("env".to_string(), "prod".to_string())]),
        created_at_ms: now_ms(),
        samples,
        ..Default::default()
    }
}

fn cpu(core: &str, ts: i64, value: f64) -> Sample {
    Sample::new("cpu", Labels::from([("core".to_string(), core.to_string())]), ts, value)
}

fn finding(id: &str, asset: &str, severity: Severity) -> Finding {
    Finding {
        id: id.into(),
        severity,
        asset: asset.into(),
        title: format!("{id} title"),
        description: format!("{id} description"),
        first_seen_ms: 0,
        last_seen_ms: 0,
        status: FindingStatus::Open,
    }
}

/// Everything the store answers about the fixture, as one text to compare.
async fn answers(store: &dyn Store, day: i64) -> String {
    let mut out = String::new();
    let mut add = |what: &str, answer: String| out.push_str(&format!("{what}: {answer}\n"));
    for tenant in ["acme", "globex"] {
        add("series", format!("{:?}", store.list_series(tenant, None).await.unwrap()));
        add("agents", format!("{:?}", store.list_agents(tenant).await.unwrap()));
        for (start, step, aggregation) in [
            (day - DAY_MS, 60_000, Aggregation::Avg),
            (day - DAY_MS, 300_000, Aggregation::Max),
            (day - DAY_MS, HOUR_MS, Aggregation::P95),
            (day - 40 * DAY_MS, 300_000, Aggregation::Count),
            (day - 40 * DAY_MS, HOUR_MS, Aggregation::Avg),
            (day - 40 * DAY_MS, HOUR_MS, Aggregation::Last),
        ] {
            let query = RangeQuery {
                selector: SeriesSelector::new("cpu"),
                start_ms: start,
                end_ms: start + 2 * HOUR_MS - 1,
                step_ms: step,
                aggregation,
            };
            add(
                &format!("cpu {start} {step} {aggregation}"),
                format!("{:?}", store.query_range(tenant, &query).await.unwrap()),
            );
        }
        let findings = FindingFilter { limit: 100, ..Default::default() };
        add("findings", format!("{:?}", store.list_findings(tenant, &findings).await.unwrap()));
        add("records", format!("{:?}", store.list_records(tenant, "dashboard", None, 100).await.unwrap()));
        add("state", format!("{:?}", store.get_state(tenant, "alert-engine").await.unwrap()));
        add("alerts", format!("{:?}", store.alert_history(tenant, None, 100).await.unwrap()));
        add("checks", format!("{:?}", store.latest_checks(tenant).await.unwrap()));
        add("logs", format!("{:?}", store.recent_logs(tenant, "web-1", 100).await.unwrap()));
        let audit = AuditFilter { tenant: Some(tenant.into()), limit: 100, ..Default::default() };
        add("audit", format!("{:?}", store.audit(&audit).await.unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_dump_restored_into_a_fresh_database_gives_the_same_answers() {
    let Ok(url) = std::env::var("SECUMON_TEST_PG_URL") else {
        secumon_core::testing::peer_missing("SECUMON_TEST_PG_URL is not set");
        return;
    };
    let admin = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| panic!("SECUMON_TEST_PG_URL={url}: {e}"));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let stem = format!("secumon_backup_{}_{nanos}", std::process::id());
    let databases = Databases { url: url.clone(), names: vec![format!("{stem}_src"), format!("{stem}_dst")] };
    for name in &databases.names {
        // From template0: template1 may have sessions of other tests, which CREATE DATABASE refuses.
        sqlx::query(&format!("CREATE DATABASE \"{name}\" TEMPLATE template0")).execute(&admin).await.unwrap();
    }
    admin.close().await;
    let (source_url, copy_url) = (with_database(&url, &databases.names[0]), with_database(&url, &databases.names[1]));

    // The fixture, written through the store.
    let now = now_ms();
    let day = now - now % DAY_MS;
    let store = open(&source_url).await;
    for (tenant, agent, host) in [("acme", "a1", "web-1"), ("acme", "a2", "db-1"), ("globex", "g1", "web-1")] {
        for (sequence, start) in [(1u64, day - 40 * DAY_MS), (2, day - DAY_MS)] {
            let samples: Vec<Sample> = (0..720)
                .flat_map(|i| {
                    let ts = start + i * 10_000;
                    [cpu("0", ts, (i % 30) as f64), cpu("1", ts, (i % 7) as f64 * 0.5)]
                })
                .collect();
            let mut batch = batch(agent, sequence, host, samples);
            batch.logs.push(LogRecord {
                timestamp_ms: now - 1_000,
                source: "/var/log/syslog".into(),
                labels: Labels::new(),
                line: format!("{agent} says hello #{sequence}"),
            });
            batch.events.push(Event {
                timestamp_ms: now - 1_000,
                kind: "restart".into(),
                severity: Severity::Medium,
                labels: Labels::new(),
                message: format!("{agent} restarted"),
            });
            batch.check_results.push(CheckResult {
                check_id: "http".into(),
                kind: "http".into(),
                target: "http://127.0.0.1/".into(),
                status: if sequence == 1 { CheckStatus::Ok } else { CheckStatus::Critical },
                timestamp_ms: now - 1_000 + sequence as i64,
                duration_us: 1_500,
                details: serde_json::json!({"code": 200 + sequence}),
                samples: Vec::new(),
            });
            assert_eq!(store.write_batch(tenant, &batch).await.unwrap(), WriteOutcome::Committed);
        }
    }
    // Compacts and expires: the 40-day-old raw blocks go, their rollups stay.
    let report = store.maintain(now).await.unwrap();
    assert!(report.compacted_samples > 0 && report.expired_rows > 0, "{report:?}");
    let import = |findings, at_ms| FindingsImport { source: "trivy".into(), findings, full_scan: true, at_ms };
    let first = vec![finding("CVE-1", "web-1", Severity::Critical), finding("CVE-2", "web-1", Severity::Low)];
    store.import_findings("acme", &import(first, now - 2_000)).await.unwrap();
    store.import_findings("acme", &import(vec![finding("CVE-2", "web-1", Severity::Low)], now - 1_000)).await.unwrap();
    store.import_findings("globex", &import(vec![finding("CVE-9", "web-1", Severity::High)], now)).await.unwrap();
    for tenant in ["acme", "globex"] {
        store.put_record(tenant, "dashboard", "main", &format!("{{\"title\":\"{tenant}\"}}")).await.unwrap();
        store.put_record(tenant, "dashboard", "other", "{}").await.unwrap();
        store.put_state(tenant, "alert-engine", &format!("{{\"firing\":[\"{tenant}-cpu\"]}}")).await.unwrap();
        let entry =
            AlertHistoryEntry { rule: "cpu-high".into(), at_ms: now, record: format!("{{\"t\":\"{tenant}\"}}") };
        store.append_alert_history(tenant, &[entry]).await.unwrap();
        let audit = AuditEntry {
            id: 0,
            tenant: tenant.into(),
            at_ms: now,
            actor: "admin".into(),
            client_ip: "127.0.0.1".into(),
            action: "rule.create".into(),
            target: "cpu-high".into(),
            detail: "{}".into(),
        };
        store.append_audit(&audit).await.unwrap();
    }
    // The findings' open-count samples rolled up too: the dump holds nothing left to fold.
    store.maintain(now).await.unwrap();
    let before = answers(&*store, day).await;
    let old = RangeQuery {
        selector: SeriesSelector::new("cpu"),
        start_ms: day - 40 * DAY_MS,
        end_ms: day - 40 * DAY_MS + HOUR_MS - 1,
        step_ms: 300_000,
        aggregation: Aggregation::Count,
    };
    let rolled_up = store.query_range("acme", &old).await.unwrap();
    assert_eq!(rolled_up.len(), 4, "two hosts' two cores, from the rollups: {rolled_up:?}");
    assert!(rolled_up.iter().all(|s| s.points.len() == 12 && s.points.iter().all(|p| p.value == 30.0)));
    assert!(before.contains("CVE-1") && before.contains("a1 says hello #2") && before.contains("Critical"), "{before}");
    store.close().await;

    // pg_dump (custom format) and pg_restore into the fresh database.
    let dump = tempfile::tempdir().unwrap();
    let file = dump.path().join("secumon.dump");
    let dumped = Command::new("pg_dump")
        .args(["--format=custom", "--file"])
        .arg(&file)
        .arg(&source_url)
        .status()
        .expect("pg_dump on the PATH");
    assert!(dumped.success(), "pg_dump: {dumped}");
    let restored = Command::new("pg_restore")
        .args(["--exit-on-error", "--dbname", &copy_url])
        .arg(&file)
        .status()
        .expect("pg_restore on the PATH");
    assert!(restored.success(), "pg_restore: {restored}");

    let copy = open(&copy_url).await;
    let after = answers(&*copy, day).await;
    assert_eq!(after, before, "the restored database answers otherwise");
    // It goes on from where the dump was: resends are still refused, new batches taken and
    // compacted (the write sequence came along).
    let resend = batch("a1", 2, "web-1", vec![cpu("0", day - DAY_MS, 99.0)]);
    assert_eq!(copy.write_batch("acme", &resend).await.unwrap(), WriteOutcome::Duplicate);
    let next = batch("a1", 3, "web-1", vec![cpu("0", day - DAY_MS + 2 * HOUR_MS, 5.0)]);
    assert_eq!(copy.write_batch("acme", &next).await.unwrap(), WriteOutcome::Committed);
    let report = copy.maintain(now_ms()).await.unwrap();
    assert_eq!(report.compacted_samples, 1, "{report:?}");
    copy.close().await;
}
