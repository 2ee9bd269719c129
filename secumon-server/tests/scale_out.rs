//! Scale-out in one test process: gateway and ingest-worker servers (`ServerConfig::roles`)
//! on a NATS JetStream server the test spawns (its own port and storage directory, so it can
//! stop it) and a PostgreSQL database of their own at `SECUMON_TEST_PG_URL`. A real push
//! client pushes to the gateway; every batch it had acknowledged must be in the store exactly
//! once, across a second copy of every batch (JetStream's duplicate window), two workers
//! sharing the consumer, a batch the store refuses for good (dead letter), and NATS stopped
//! and started again under the push. Without nats-server or PostgreSQL the tests fail under
//! `SECUMON_TEST_STRICT=1` and are skipped otherwise.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secumon_core::{IngestBatch, Labels, Sample};
use secumon_server::{GrpcTls, Roles, Server, ServerConfig};
use secumon_store::{Aggregation, RangeQuery, SeriesSelector, Store};
use secumon_transport::{PushClient, PushClientConfig, SessionFile, enroll};
use serde_json::json;
use tokio::sync::watch;

mod common;
#[path = "scale/harness.rs"]
mod harness;

use harness::{Nats, PgDatabase};

const MARKER: &str = "scale_marker";

/// A server running `roles` on NATS at `nats` and PostgreSQL at `postgres`; every server of a
/// test shares `data_dir` (its secret key).
async fn server(roles: &str, data_dir: &Path, nats: &str, postgres: &str) -> Server {
    let mut config = ServerConfig::loopback(data_dir.join("secumon.db"));
    config.roles = roles.parse::<Roles>().unwrap();
    config.nats_url = Some(nats.to_string());
    config.postgres_url = Some(postgres.to_string());
    Server::start(config).await.unwrap_or_else(|e| panic!("the {roles} server starts: {e}"))
}

/// Batch `n` of an agent carries the marker sample `n`, so loss and doubling are countable.
fn batch(agent: &str, n: u64, t0: i64) -> IngestBatch {
    let ts = t0 + n as i64 * 1_000;
    IngestBatch {
        agent_id: agent.into(),
        host: format!("{agent}-host"),
        created_at_ms: ts,
        samples: vec![Sample::new(MARKER, Labels::new(), ts, n as f64)],
        ..Default::default()
    }
}

/// A real push client (spool, gRPC) running against a gateway.
struct Agent {
    client: Arc<PushClient>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _spool: tempfile::TempDir,
}

impl Agent {
    fn start(grpc: SocketAddr) -> Self {
        let spool = tempfile::tempdir().unwrap();
        let mut config = PushClientConfig::new(format!("http://{grpc}"), spool.path());
        config.backoff_max = Duration::from_millis(500);
        let client = Arc::new(PushClient::open(config).unwrap());
        let (stop, mut stopped) = watch::channel(false);
        let runner = Arc::clone(&client);
        let task = tokio::spawn(async move {
            runner
                .run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
        Self { client, stop, task, _spool: spool }
    }

    /// Waits until the gateway acknowledged every sequence up to `through` (this client's
    /// spool starts at 1) and the client counted each acknowledgement (it counts just after
    /// the spool lets go of the batch).
    async fn acked(&self, through: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let stats = self.client.stats();
            if stats.spool.acked_through >= through && stats.committed + stats.duplicates + stats.rejected >= through {
                assert_eq!(stats.rejected, 0, "no batch may be rejected");
                return;
            }
            assert!(Instant::now() < deadline, "not all batches acknowledged: {stats:?}, made {through}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// The marker values stored for `host`, sorted, and the batches the store counted for it.
async fn stored(store: &dyn Store, host: &str, t0: i64) -> (Vec<u64>, u64) {
    let query = RangeQuery {
        selector: SeriesSelector::new(MARKER).with("host", host),
        start_ms: t0,
        end_ms: secumon_core::now_ms() + 3_600_000,
        step_ms: 1_000,
        aggregation: Aggregation::Count,
    };
    let series = store.query_range("default", &query).await.expect("query");
    // With `Count`, a doubled sample shows as a count of 2 in its second.
    let mut values = Vec::new();
    for point in series.iter().flat_map(|s| s.points.iter()) {
        let n = ((point.timestamp_ms - t0) / 1_000) as u64;
        values.extend(std::iter::repeat_n(n, point.value as usize));
    }
    values.sort_unstable();
    let (agents, _) = store.agents("default", &Default::default()).await.expect("agents");
    let batches = agents.iter().filter(|a| a.host == host).map(|a| a.batches).sum();
    (values, batches)
}

/// Waits until `host`'s batches 1..=made are stored, each once.
async fn all_stored_once(store: &dyn Store, host: &str, t0: i64, made: u64, within: Duration) {
    let expected: Vec<u64> = (1..=made).collect();
    let deadline = Instant::now() + within;
    loop {
        let (values, batches) = stored(store, host, t0).await;
        if values == expected && batches == made {
            return;
        }
        let doubled = values.windows(2).any(|w| w[0] == w[1]);
        assert!(!doubled && batches <= made, "a batch was stored twice: {batches} batches, values {values:?}");
        assert!(
            Instant::now() < deadline,
            "after {within:?}: {} of {made} batches stored ({batches} counted)",
            values.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn t0() -> i64 {
    // Whole seconds, so each marker falls in its own one-second bucket.
    (secumon_core::now_ms() - 600_000) / 1_000 * 1_000
}

async fn metric(server: &Server, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", server.api_addr())).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_two_workers_store_every_acknowledged_batch_once() {
    let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
    let Some(nats) = Nats::spawn() else { return };
    let Some(database) = PgDatabase::create().await else { return };
    let data = tempfile::tempdir().unwrap();
    let (nats_url, pg) = (nats.url(), database.url());
    let gateway = server("gateway", data.path(), &nats_url, &pg).await;
    let workers =
        [server("ingest", data.path(), &nats_url, &pg).await, server("ingest,api", data.path(), &nats_url, &pg).await];
    let store = workers[1].store();
    let t0 = t0();
    const MADE: u64 = 300;

    let agent = Agent::start(gateway.grpc_addr());
    for n in 1..=MADE {
        agent.client.enqueue(batch("scale-agent", n, t0)).await.unwrap();
    }
    agent.acked(MADE, Duration::from_secs(30)).await;
    assert_eq!(agent.client.stats().committed, MADE, "{:?}", agent.client.stats());
    all_stored_once(&*store, "scale-agent-host", t0, MADE, Duration::from_secs(30)).await;
    agent.stop().await;

    // The same batches again from another spool (an agent restored from a backup): JetStream
    // drops every copy as a duplicate, acknowledged as such.
    let copy = Agent::start(gateway.grpc_addr());
    for n in 1..=MADE {
        copy.client.enqueue(batch("scale-agent", n, t0)).await.unwrap();
    }
    copy.acked(MADE, Duration::from_secs(30)).await;
    assert_eq!(copy.client.stats().duplicates, MADE, "{:?}", copy.client.stats());

    // A batch the store refuses for good (a sample a month ahead): the gateway acknowledged
    // it (JetStream has it), a worker dead-letters it, once, and counts it.
    let refused = IngestBatch {
        agent_id: "scale-agent".into(),
        host: "scale-agent-host".into(),
        samples: vec![Sample::new(MARKER, Labels::new(), secumon_core::now_ms() + 30 * 86_400_000, 0.0)],
        ..Default::default()
    };
    copy.client.enqueue(refused).await.unwrap();
    copy.acked(MADE + 1, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let dead = loop {
        let dead = metric(&workers[0], "secumon_ingest_dead_letters_total").await
            + metric(&workers[1], "secumon_ingest_dead_letters_total").await;
        if dead > 0.0 || Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(dead, 1.0, "the refused batch is dead-lettered once");
    let client = async_nats::connect(&nats_url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let mut dead_letters = jetstream.get_stream("SECUMON_DEADLETTER").await.unwrap();
    let info = dead_letters.info().await.unwrap();
    assert_eq!(info.state.messages, 1, "{info:?}");
    let kept = dead_letters.get_last_raw_message_by_subject("secumon.deadletter.default").await.unwrap();
    let reason = kept.headers.get("Secumon-Refused").map(|v| v.as_str().to_string()).unwrap_or_default();
    assert!(reason.contains("in the future"), "{reason}");
    // Nothing left for the workers: the work-queue stream is empty once all are acked.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut ingest = jetstream.get_stream("SECUMON_INGEST").await.unwrap();
        let info = ingest.info().await.unwrap();
        if info.state.messages == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "batches left on the stream: {:?}", info.state);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    all_stored_once(&*store, "scale-agent-host", t0, MADE, Duration::from_secs(5)).await;
    copy.stop().await;

    gateway.shutdown().await;
    for worker in workers {
        worker.shutdown().await;
    }
    database.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopped_under_the_push_delays_batches_and_loses_none() {
    let Some(mut nats) = Nats::spawn() else { return };
    let Some(database) = PgDatabase::create().await else { return };
    let data = tempfile::tempdir().unwrap();
    let (nats_url, pg) = (nats.url(), database.url());
    let gateway = server("gateway", data.path(), &nats_url, &pg).await;
    let worker = server("ingest", data.path(), &nats_url, &pg).await;
    let store = worker.store();
    let t0 = t0();

    let agent = Agent::start(gateway.grpc_addr());
    let mut made = 0;
    for _ in 0..50 {
        made += 1;
        agent.client.enqueue(batch("outage-agent", made, t0)).await.unwrap();
    }
    agent.acked(made, Duration::from_secs(20)).await;

    nats.stop();
    // While NATS is away the agent keeps making batches; the gateway acknowledges none.
    let acked_before = agent.client.stats().spool.acked_through;
    for _ in 0..40 {
        made += 1;
        agent.client.enqueue(batch("outage-agent", made, t0)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = agent.client.stats();
    assert_eq!(stats.spool.acked_through, acked_before, "nothing is acknowledged without NATS: {stats:?}");
    assert!(stats.spool.pending_batches >= 40, "the agent keeps them: {stats:?}");

    nats.start();
    for _ in 0..10 {
        made += 1;
        agent.client.enqueue(batch("outage-agent", made, t0)).await.unwrap();
    }
    agent.acked(made, Duration::from_secs(30)).await;
    all_stored_once(&*store, "outage-agent-host", t0, made, Duration::from_secs(30)).await;
    agent.stop().await;
    gateway.shutdown().await;
    worker.shutdown().await;
    database.drop().await;
}

#[tokio::test]
async fn a_server_names_the_nats_it_cannot_reach() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let nats_url = format!("nats://127.0.0.1:{port}");
    let mut config = ServerConfig::loopback(data.path().join("secumon.db"));
    config.roles = "gateway".parse().unwrap();
    config.nats_url = Some(nats_url.clone());
    config.postgres_url = Some("postgres://postgres@127.0.0.1:5432/unused".into());
    let started = Instant::now();
    let error = Server::start(config).await.err().expect("no NATS there");
    assert!(error.to_string().contains(&nats_url), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());

    // Some roles without NATS, or on the embedded store: refused, saying what is missing.
    let mut config = ServerConfig::loopback(data.path().join("secumon.db"));
    config.roles = "ingest".parse().unwrap();
    let error = Server::start(config.clone()).await.err().expect("no NATS given");
    assert!(error.to_string().contains("--nats"), "{error}");
    config.nats_url = Some(nats_url);
    let error = Server::start(config).await.err().expect("no PostgreSQL given");
    assert!(error.to_string().contains("--store postgres://"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_enrolled_through_a_gateway_is_stored_for_its_tenant() {
    let Some(nats) = Nats::spawn() else { return };
    let Some(database) = PgDatabase::create().await else { return };
    let data = tempfile::tempdir().unwrap();
    let managed = |roles: &str| {
        let mut config = ServerConfig::loopback(data.path().join("secumon.db"));
        config.roles = roles.parse::<Roles>().unwrap();
        config.nats_url = Some(nats.url());
        config.postgres_url = Some(database.url());
        config.grpc_tls = GrpcTls::Managed { names: vec![] };
        config.open_access = false;
        config
    };
    // The API provisions, the gateway (another process in real life) enrolls and admits,
    // under the one agent CA both read from PostgreSQL.
    let api = Server::start(managed("api")).await.expect("the api server starts");
    let gateway = Server::start(managed("gateway")).await.expect("the gateway starts");
    let worker = Server::start(managed("ingest")).await.expect("the worker starts");
    api.accounts().create_tenant("acme").await.unwrap();
    let (_, key) =
        api.accounts().create_api_key("acme", "test", secumon_server::auth::Role::Admin, "test").await.unwrap();
    let raw = common::Raw::new(&api).with_token(&key);
    let (status, body) = raw.call(reqwest::Method::POST, "/agents/provision", Some(json!({"ttl": "10m"}))).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().parse().unwrap();
    let collector = format!("localhost:{}", gateway.grpc_addr().port());
    let enrolled = enroll(&collector, &token, "acme-agent", "acme-host").await.expect("enrolls through the gateway");

    let spool = tempfile::tempdir().unwrap();
    let session = SessionFile::new(spool.path().join("session"));
    session.store(&enrolled.session).unwrap();
    let mut config = PushClientConfig::new(collector, spool.path().join("spool"));
    config.tls = Some(enrolled.tls.clone());
    config.session = Some(session);
    let client = Arc::new(PushClient::open(config).unwrap());
    let runner = Arc::clone(&client);
    let run = tokio::spawn(async move { runner.run(std::future::pending()).await });
    let t0 = t0();
    for n in 1..=5 {
        client.enqueue(batch("acme-agent", n, t0)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let store = worker.store();
    loop {
        let acme = store.list_agents("acme").await.unwrap();
        if acme.first().is_some_and(|agent| agent.batches == 5) {
            break;
        }
        assert!(Instant::now() < deadline, "not stored for acme: {acme:?}, client {:?}", client.stats());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(store.list_agents("default").await.unwrap().is_empty(), "nothing for the default tenant");
    run.abort();
    for server in [gateway, worker, api] {
        server.shutdown().await;
    }
    database.drop().await;
}

/// An API process runs no alert engine: what it shows and changes of a tenant's alerts is
/// the alert process's (the lease owner's), reached over NATS. A rule made through the API
/// process fires in the alert process on data the API process took in; the API process
/// lists it, acknowledges it and silences with the owner's engine, as one process would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_process_reads_and_changes_the_alert_owners_alerts() {
    let Some(nats) = Nats::spawn() else { return };
    let Some(database) = PgDatabase::create().await else { return };
    let data = tempfile::tempdir().unwrap();
    let config = |roles: &str| {
        let mut config = ServerConfig::loopback(data.path().join("secumon.db"));
        config.roles = roles.parse::<Roles>().unwrap();
        config.nats_url = Some(nats.url());
        config.postgres_url = Some(database.url());
        config
    };
    let mut alert_config = config("alert");
    alert_config.alert_lease = Some(secumon_server::alert_lease::LeaseOptions {
        bucket: format!("leases_{}", std::process::id()),
        ..Default::default()
    });
    let alert = Server::start(alert_config).await.expect("the alert server starts");
    let api = Server::start(config("api")).await.expect("the api server starts");
    let raw = common::Raw::new(&api);

    let rule = json!({"name": "MarkerHigh", "expr": "scale_marker > 5", "severity": "critical"});
    let deadline = Instant::now() + Duration::from_secs(20);
    // The owner takes the tenant's lease within a second or two; until then: 503, try again.
    loop {
        let (status, body) = raw.call(reqwest::Method::POST, "/alert-rules", Some(rule.clone())).await;
        if status == reqwest::StatusCode::CREATED {
            break;
        }
        assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(Instant::now() < deadline, "no alert process took the rule: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, rules) = raw.call(reqwest::Method::GET, "/alert-rules", None).await;
    assert!(
        rules["rules"].as_array().unwrap().iter().any(|r| r["id"] == "MarkerHigh" && r["origin"] == "api"),
        "{rules}"
    );

    let push = json!({"source": "script", "host": "web-1", "samples": [{"name": MARKER, "value": 10.0}]});
    let firing = loop {
        let (status, body) = raw.call(reqwest::Method::POST, "/ingest", Some(push.clone())).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        let (_, alerts) = raw.call(reqwest::Method::GET, "/alerts?status=firing", None).await;
        if let Some(alert) =
            alerts["alerts"].as_array().unwrap().iter().find(|a| a["labels"]["alertname"] == "MarkerHigh")
        {
            break alert.clone();
        }
        assert!(Instant::now() < deadline, "the alert never fired in the owner: {alerts}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let id = firing["id"].as_str().unwrap();

    let ack = json!({"comment": "on it"});
    let (status, body) = raw.call(reqwest::Method::POST, &format!("/alerts/{id}/acknowledge"), Some(ack)).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let (_, alerts) = raw.call(reqwest::Method::GET, "/alerts", None).await;
    let acked = alerts["alerts"].as_array().unwrap().iter().find(|a| a["id"] == id).cloned().unwrap_or_default();
    assert_eq!(acked["acknowledged"]["comment"], "on it", "{alerts}");
    let (_, history) = raw.call(reqwest::Method::GET, "/alerts/history?rule=MarkerHigh", None).await;
    assert!(history.to_string().contains("on it"), "the owner's history has the acknowledgement: {history}");
    let (status, _) = raw.call(reqwest::Method::POST, "/alerts/no-such-alert/acknowledge", Some(json!({}))).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "the owner's refusal comes back as it is");

    let silence = json!({"matchers": {"host": "web-1"}, "duration": "1h", "comment": "maintenance"});
    let (status, made) = raw.call(reqwest::Method::POST, "/silences", Some(silence)).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{made}");
    let (_, silences) = raw.call(reqwest::Method::GET, "/silences", None).await;
    assert_eq!(silences["silences"][0]["id"], made["id"], "{silences}");
    let (status, _) =
        raw.call(reqwest::Method::DELETE, &format!("/silences/{}", made["id"].as_str().unwrap()), None).await;
    assert_eq!(status, reqwest::StatusCode::OK);

    for server in [api, alert] {
        server.shutdown().await;
    }
    database.drop().await;
}
