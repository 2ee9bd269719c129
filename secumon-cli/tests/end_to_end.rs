//! The whole path, for real: agent collects → gRPC push → server → SQLite → REST API.
//! Everything listens on loopback ephemeral ports and lives in a temporary directory.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secumon_agent::{Agent, AgentSettings, SetupOptions};
use secumon_core::config::{LogsSection, MetricFamily, MetricsSection};
use secumon_server::{AgentList, GrpcTls, History, Server, ServerConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

fn settings(state_dir: &Path, endpoint: SocketAddr, interval: Duration, families: Vec<MetricFamily>) -> AgentSettings {
    AgentSettings {
        host: "e2e-host".into(),
        labels: [("role".to_string(), "test".to_string())].into(),
        metrics: MetricsSection { interval, enabled: families, ..Default::default() },
        state_dir: state_dir.to_path_buf(),
        endpoint: endpoint.to_string(),
        failover_endpoints: Vec::new(),
        spool_max_bytes: 64 * 1024 * 1024,
        tls: None,
        tls_files: None,
        session: None,
        logs: Default::default(),
        probe_checks: Vec::new(),
        managed: None,
    }
}

/// A running agent and the switch that stops it.
struct RunningAgent {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    client: secumon_transport::PushClient,
}

fn start_agent(settings: AgentSettings) -> RunningAgent {
    let agent = Agent::open(settings).expect("agent opens");
    let client = agent.push_client();
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(agent.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    RunningAgent { stop, task, client }
}

impl RunningAgent {
    async fn stop(self) -> secumon_transport::PushClient {
        self.stop.send_replace(true);
        self.task.await.expect("agent task");
        self.client
    }

    /// Waits until the server has acknowledged everything spooled so far.
    async fn wait_drained(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let stats = self.client.stats();
            if stats.spool.pending_batches == 0 && stats.spool.acked_through + 1 == stats.spool.next_sequence {
                return;
            }
            assert!(Instant::now() < deadline, "spool not drained in {within:?}: {stats:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> T {
    get_json_as(url, None).await
}

/// GET with a bearer token (a server started by `secumon server` requires one).
async fn get_json_as<T: serde::de::DeserializeOwned>(url: &str, token: Option<&str>) -> T {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(response.status().is_success(), "GET {url}: {}", response.status());
    response.json().await.unwrap_or_else(|e| panic!("GET {url}: bad JSON: {e}"))
}

fn mem_total_bytes() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemTotal");
    kib * 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_metrics_reach_the_rest_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("db/secumon.db"))).await.expect("server starts");
    let families = vec![MetricFamily::Cpu, MetricFamily::Memory, MetricFamily::Disk, MetricFamily::Network];
    let mut agent_settings = settings(&dir.path().join("agent"), server.grpc_addr(), Duration::from_secs(1), families);
    let log = dir.path().join("app.log");
    std::fs::write(&log, "before the agent started\n").unwrap();
    agent_settings.logs =
        LogsSection { enabled: true, sources: vec![log.display().to_string()], journald: false, ..Default::default() };
    let agent = start_agent(agent_settings);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    std::fs::write(&log, "before the agent started\nGET /index.html 200\nGET /missing 404\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    agent.wait_drained(Duration::from_secs(10)).await;
    let client = agent.stop().await;
    let stats = client.stats();
    assert!(stats.committed >= 3, "{stats:?}");
    assert_eq!(stats.rejected, 0);

    let api = format!("http://{}/api/v1", server.api_addr());
    let agents: AgentList = get_json(&format!("{api}/agents")).await;
    assert_eq!(agents.agents.len(), 1);
    assert_eq!(agents.agents[0].host, "e2e-host");
    assert_eq!(agents.agents[0].status, "online");
    assert_eq!(agents.agents[0].batches, stats.committed);

    let logs = server.store().recent_logs("default", "e2e-host", 10).await.unwrap();
    let lines: Vec<&str> = logs.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(lines, vec!["GET /index.html 200", "GET /missing 404"], "new lines shipped once, history not");
    assert_eq!(logs[0].source, log.display().to_string());

    let history = |metric: &str| format!("{api}/metrics/hosts/e2e-host/history?metric={metric}&period=5m&step=1s");
    let cpu: History = get_json(&history("cpu_usage_ratio")).await;
    assert_eq!(cpu.series.len(), 1);
    assert_eq!(cpu.series[0].labels["host"], "e2e-host");
    assert_eq!(cpu.series[0].labels["role"], "test");
    assert!(cpu.series[0].points.len() >= 2, "{:?}", cpu.series[0].points);
    for (_, value) in &cpu.series[0].points {
        let value = value.expect("a number");
        assert!((0.0..=1.0).contains(&value), "cpu_usage_ratio {value}");
    }
    let cores: History = get_json(&history("cpu_core_usage_ratio")).await;
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let proc_cores = stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count();
    assert_eq!(cores.series.len(), proc_cores, "one series per core of /proc/stat");

    let total: History = get_json(&history("memory_total_bytes")).await;
    assert_eq!(total.series[0].points[0].1, Some(mem_total_bytes()));
    let used: History = get_json(&history("memory_used_bytes")).await;
    let used = used.series[0].points[0].1.unwrap();
    assert!(used > 0.0 && used < mem_total_bytes(), "memory_used_bytes {used}");

    let root: History =
        get_json(&format!("{api}/metrics/hosts/e2e-host/history?metric=filesystem_size_bytes&period=5m&agg=max")).await;
    assert!(root.series.iter().any(|s| s.labels["mountpoint"] == "/"), "{:?}", root.series);

    // Errors are JSON with a code, and the right status.
    let response = reqwest::get(format!("{api}/metrics/hosts/e2e-host/history?period=1h")).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    let response = reqwest::get(format!("{api}/metrics/hosts/nobody/history?metric=load1")).await.unwrap();
    assert_eq!(response.status(), 404);
    server.shutdown().await;
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed when dropped, so a failing test leaves nothing running.
struct ChildGuard(Child);

impl ChildGuard {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A viewer API key in the data directory a `secumon server` will open, made before it starts.
async fn viewer_key(data_dir: &Path) -> String {
    use secumon_server::auth::{Accounts, Role, SecretBox};
    let store = secumon_store::SqliteStore::open(&data_dir.join("secumon.db")).await.unwrap();
    let store: std::sync::Arc<dyn secumon_store::Store> = std::sync::Arc::new(store);
    let secrets = SecretBox::load_or_create(&data_dir.join("secret.key")).unwrap();
    let accounts = Accounts::open(store.clone(), secrets).await.unwrap();
    let (_, key) = accounts.create_api_key("default", "e2e", Role::Viewer, "test").await.unwrap();
    store.close().await;
    key
}

/// `secumon server` as a child process, so it can be killed like a crashing server.
fn spawn_server(data_dir: &Path, grpc: u16, api: u16) -> ChildGuard {
    spawn_server_with(data_dir, grpc, api, &[])
}

fn spawn_server_with(data_dir: &Path, grpc: u16, api: u16, extra: &[&str]) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_secumon"))
        .args(["server", "--data-dir"])
        .arg(data_dir)
        .args(["--grpc", &format!("127.0.0.1:{grpc}"), "--api", &format!("127.0.0.1:{api}")])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("secumon server starts");
    ChildGuard(child)
}

async fn wait_for_api(api: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("http://127.0.0.1:{api}/api/v1/agents")).await.is_err() {
        assert!(Instant::now() < deadline, "server API did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_batch_lost_or_doubled_across_server_kill_and_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, api) = (free_port(), free_port());
    let endpoint = SocketAddr::from(([127, 0, 0, 1], grpc));
    let agent_settings =
        settings(&dir.path().join("agent"), endpoint, Duration::from_millis(200), vec![MetricFamily::Cpu]);

    let token = viewer_key(&dir.path().join("server")).await;
    let mut server = spawn_server(&dir.path().join("server"), grpc, api);
    wait_for_api(api).await;
    let agent = start_agent(agent_settings.clone());
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // The server dies without warning while the agent keeps collecting.
    server.kill();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(agent.client.stats().spool.pending_batches >= 3, "batches piled up in the spool during the outage");

    // Server back on the same data; then the agent itself restarts on the same state.
    let mut server = spawn_server(&dir.path().join("server"), grpc, api);
    wait_for_api(api).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    agent.stop().await;
    let agent = start_agent(agent_settings);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    agent.wait_drained(Duration::from_secs(20)).await;
    agent.stop().await;
    // A cycle may have run between the drain and the stop: that batch waits in the spool.
    // A bare push client on the same spool delivers it, as the agent's next start would.
    let client = secumon_transport::PushClient::open(secumon_transport::PushClientConfig::new(
        endpoint.to_string(),
        dir.path().join("agent/spool"),
    ))
    .unwrap();
    let (stop, mut stopped) = watch::channel(false);
    let runner = client.clone();
    let delivery = tokio::spawn(async move {
        runner
            .run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    let drained = RunningAgent { stop, task: delivery, client };
    drained.wait_drained(Duration::from_secs(20)).await;
    let client = drained.stop().await;
    let produced = client.stats().spool.next_sequence - 1;
    assert!(produced >= 15, "produced {produced}");

    let url = format!("http://127.0.0.1:{api}/api/v1/agents");
    let refused = reqwest::get(&url).await.unwrap();
    assert_eq!(refused.status(), 401, "`secumon server` answers nobody without a token");
    let agents: AgentList = get_json_as(&url, Some(&token)).await;
    // The agent, and the server's own health series (host secumon-server).
    let (server_self, agents): (Vec<_>, Vec<_>) =
        agents.agents.into_iter().partition(|a| a.host == secumon_server::self_series::SERVER_HOST);
    assert_eq!(server_self.len(), 1, "the server lists its own series' host");
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].batches, produced, "every sequence stored exactly once");
    assert_eq!(agents[0].last_sequence, produced);
    // One load1 sample per batch: as many samples as batches, each at its own instant.
    let load: History = get_json_as(
        &format!(
            "http://127.0.0.1:{api}/api/v1/metrics/hosts/e2e-host/history?metric=load1&period=1m&step=10ms&agg=count"
        ),
        Some(&token),
    )
    .await;
    let points = &load.series[0].points;
    assert_eq!(points.len() as u64, produced, "one sample per batch");
    assert!(points.iter().all(|&(_, count)| count == Some(1.0)), "no sample stored twice: {points:?}");
    // Only the cpu family was enabled: nothing else was collected.
    let memory: History = get_json_as(
        &format!("http://127.0.0.1:{api}/api/v1/metrics/hosts/e2e-host/history?metric=memory_total_bytes&period=1m"),
        Some(&token),
    )
    .await;
    assert!(memory.series.is_empty(), "a disabled collector stays off");

    server.kill();
}

/// `secumon-agent setup` against a server under its own CA: the written configuration
/// loads, and the agent it describes pushes over mutual TLS for the token's tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_enrolls_an_agent_that_pushes_for_its_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        grpc_tls: GrpcTls::Managed { names: vec![] },
        ..ServerConfig::loopback(dir.path().join("secumon.db"))
    };
    let server = Server::start(config).await.expect("server starts");
    server.accounts().create_tenant("acme").await.unwrap();
    let authority = server.agent_authority().expect("managed TLS");
    let token = authority.provision("acme", "test", Duration::from_secs(600)).await.unwrap().token;

    let options = SetupOptions {
        collector: format!("localhost:{}", server.grpc_addr().port()),
        token: token.parse().unwrap(),
        config_path: dir.path().join("etc/agent.yaml"),
        state_dir: dir.path().join("agent"),
        name: Some("enrolled-host".into()),
        force: false,
    };
    let report = secumon_agent::setup(&options).await.expect("setup enrolls");
    let written = secumon_core::AgentConfig::load(&options.config_path).expect("the written config loads");
    assert!(written.collector.tls.enabled);
    let mut settings = AgentSettings::from_config(&written).expect("and validates");
    settings.metrics = MetricsSection {
        interval: Duration::from_millis(200),
        enabled: vec![MetricFamily::Memory],
        ..Default::default()
    };
    let agent = start_agent(settings);
    agent.wait_drained(Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let agents = server.store().list_agents("acme").await.unwrap();
        if agents.iter().any(|a| a.agent_id == report.agent_id && a.host == "enrolled-host") {
            break;
        }
        assert!(Instant::now() < deadline, "the enrolled agent's data never reached tenant acme: {agents:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.store().list_agents("default").await.unwrap().is_empty());

    let error = secumon_agent::setup(&options).await.expect_err("an existing config is not overwritten");
    assert!(error.to_string().contains("--force"), "{error}");
    agent.stop().await;
    server.shutdown().await;
}

/// `secumon backup|restore ARGS`, as an operator runs it: exit status and what it printed.
async fn secumon(args: Vec<std::ffi::OsString>) -> (bool, String) {
    let output = tokio::task::spawn_blocking(move || Command::new(env!("CARGO_BIN_EXE_secumon")).args(args).output())
        .await
        .unwrap()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), printed)
}

/// Moving the server as README's "Disaster recovery" says: `secumon backup` while it runs and
/// an enrolled agent pushes, `secumon restore` into a new data directory, the server started
/// there. The agent keeps pushing with the certificate the old server's CA signed (the CA
/// key is sealed in the store and opens with the restored secret key), every batch
/// acknowledged before the backup is there once, the CLI token still works, and a tampered
/// backup or a non-empty target is refused.
/// The arguments of the servers agents enroll into (no self-monitoring series, so every
/// stored batch is the agent's).
const MTLS_SERVER_ARGS: [&str; 3] = ["--mtls", "--self-series-interval", "0s"];

/// A `secumon server --mtls` on `data`, and an agent enrolled into it as `host` through
/// `POST /agents/provision` and setup (files under `dir`), set to push memory every 200 ms.
struct Enrolled {
    server: ChildGuard,
    grpc: u16,
    api: u16,
    cli_token: String,
    options: SetupOptions,
    settings: AgentSettings,
}

async fn mtls_server_and_enrolled_agent(data: &Path, dir: &Path, host: &str) -> Enrolled {
    let (grpc, api) = (free_port(), free_port());
    let server = spawn_server_with(data, grpc, api, &MTLS_SERVER_ARGS);
    wait_for_api(api).await;
    // Written on the first start, beside the listeners coming up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !data.join("cli.token").exists() {
        assert!(Instant::now() < deadline, "the first start wrote no cli.token");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cli_token = std::fs::read_to_string(data.join("cli.token")).unwrap().trim().to_string();
    let provisioned: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{api}/api/v1/agents/provision"))
        .bearer_auth(&cli_token)
        .json(&serde_json::json!({"ttl": "1h"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let options = SetupOptions {
        collector: format!("localhost:{grpc}"),
        token: provisioned["token"].as_str().expect("a provisioning token").parse().unwrap(),
        config_path: dir.join("etc/agent.yaml"),
        state_dir: dir.join("agent"),
        name: Some(host.into()),
        force: false,
    };
    secumon_agent::setup(&options).await.expect("setup enrolls");
    let mut settings = AgentSettings::from_config(&secumon_core::AgentConfig::load(&options.config_path).unwrap())
        .expect("the written config validates");
    settings.metrics = MetricsSection {
        interval: Duration::from_millis(200),
        enabled: vec![MetricFamily::Memory],
        ..Default::default()
    };
    Enrolled { server, grpc, api, cli_token, options, settings }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_running_and_restore_elsewhere_keeps_data_keys_and_agents() {
    let dir = tempfile::tempdir().unwrap();
    let (old_dir, new_dir, backup_dir) = (dir.path().join("old"), dir.path().join("new"), dir.path().join("backup"));
    let Enrolled { mut server, grpc, api, cli_token, settings, .. } =
        mtls_server_and_enrolled_agent(&old_dir, dir.path(), "moved-host").await;
    let agent = start_agent(settings);
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let acked_before_backup = agent.client.stats().spool.acked_through;
    assert!(acked_before_backup >= 3, "{:?}", agent.client.stats());
    let (ok, printed) = secumon(vec![
        "backup".into(),
        "--data-dir".into(),
        old_dir.clone().into(),
        "--to".into(),
        backup_dir.clone().into(),
    ])
    .await;
    assert!(ok, "{printed}");
    assert!(printed.contains("secumon.db, secret.key, cli.token"), "{printed}");
    // The old machine goes away while the agent keeps collecting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();
    let acked_by_the_old_server = agent.client.stats().spool.acked_through;

    // A damaged backup is refused, and so is a data directory that holds a database.
    let tampered = dir.path().join("tampered");
    std::fs::create_dir(&tampered).unwrap();
    for entry in std::fs::read_dir(&backup_dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tampered.join(entry.file_name())).unwrap();
    }
    let key = tampered.join("secret.key");
    let mut bytes = std::fs::read(&key).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&key, bytes).unwrap();
    let restore = |from: &Path, to: &Path| {
        vec![
            "restore".into(),
            "--from".into(),
            from.as_os_str().to_owned(),
            "--data-dir".into(),
            to.as_os_str().to_owned(),
        ]
    };
    let (ok, printed) = secumon(restore(&tampered, &new_dir)).await;
    assert!(!ok && printed.contains("secret.key") && printed.contains("does not match"), "{printed}");
    assert!(!new_dir.join("secumon.db").exists(), "nothing put in place from a damaged backup");
    let (ok, printed) = secumon(restore(&backup_dir, &old_dir)).await;
    assert!(!ok && printed.contains("exists"), "{printed}");

    let (ok, printed) = secumon(restore(&backup_dir, &new_dir)).await;
    assert!(ok, "{printed}");
    let _server = spawn_server_with(&new_dir, grpc, api, &MTLS_SERVER_ARGS);
    wait_for_api(api).await;
    // The agent, never told anything, delivers to the restored server what it made since.
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.client.stats().spool.acked_through <= acked_by_the_old_server {
        assert!(Instant::now() < deadline, "nothing acknowledged by the restored server: {:?}", agent.client.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.wait_drained(Duration::from_secs(30)).await;
    let final_sequence = agent.stop().await.stats().spool.acked_through;

    let agents: AgentList = get_json_as(&format!("http://127.0.0.1:{api}/api/v1/agents"), Some(&cli_token)).await;
    let moved = agents.agents.iter().find(|a| a.host == "moved-host").expect("the agent on the restored server");
    assert_eq!(moved.last_sequence, final_sequence, "it pushed to the restored server with its old certificate");
    // What the old server acknowledged between the backup and its end is gone with it; what
    // came before is there, and nothing twice (one memory sample per batch).
    assert!(moved.batches >= acked_before_backup, "{} < {acked_before_backup}", moved.batches);
    let history: History = get_json_as(
        &format!(
            "http://127.0.0.1:{api}/api/v1/metrics/hosts/moved-host/history?metric=memory_total_bytes&period=1m&step=10ms&agg=count"
        ),
        Some(&cli_token),
    )
    .await;
    let points = &history.series[0].points;
    assert_eq!(points.len() as u64, moved.batches, "one sample per stored batch");
    assert!(points.iter().all(|&(_, count)| count == Some(1.0)), "nothing stored twice: {points:?}");
}

/// `secumon ARGS --data-dir DIR`.
async fn secumon_on(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let mut all: Vec<std::ffi::OsString> = args.iter().map(|a| (*a).into()).collect();
    all.extend(["--data-dir".into(), data_dir.as_os_str().to_owned()]);
    secumon(all).await
}

/// Waits until the agent's acknowledged sequence passes `beyond`; returns it.
async fn acked_beyond(agent: &RunningAgent, beyond: u64, what: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let acked = agent.client.stats().spool.acked_through;
        if acked > beyond {
            return acked;
        }
        assert!(Instant::now() < deadline, "{what}: nothing acknowledged past {beyond}: {:?}", agent.client.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn totp(secret: &str) -> totp_rs::TOTP {
    let secret = totp_rs::Secret::Encoded(secret.into()).to_bytes().unwrap();
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret, None, "ada".into()).unwrap()
}

/// What a renewal over gRPC with `tls` answers (no session token: a gate that sees the
/// certificate says so; a refused certificate never reaches it).
async fn renew_with(grpc: u16, tls: &secumon_transport::TlsMaterial) -> tonic::Status {
    use secumon_transport::grpc::enrollment_client::EnrollmentClient;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://localhost:{grpc}")).unwrap();
    let channel = match endpoint.tls_config(tls.client_config()).unwrap().connect().await {
        Ok(channel) => channel,
        Err(error) => return tonic::Status::unavailable(format!("connect: {error:?}")),
    };
    let request = secumon_core::proto::RenewRequest {};
    EnrollmentClient::new(channel).renew(request).await.expect_err("no session token, no renewal")
}

/// README's "Rotating the secret key" and "Rotating the agents' CA", command by command,
/// against a `secumon server --mtls` with an enrolled agent pushing all along: each command
/// refuses while the server runs; after the key rotation the old key opens nothing in the
/// store, the CA key and a user's second factor open with the new one (login with MFA over
/// HTTP), and the agent keeps pushing; after the CA rotation the agent renews once onto a
/// certificate of the new CA (its files rewritten), `secumon ca status` says so, and once the
/// old CA is retired its certificate is refused while the new one is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_key_and_agent_ca_rotate_as_the_readme_says_while_an_agent_pushes() {
    use secumon_server::auth::rekey::opens_store;
    use secumon_server::auth::{Accounts, AgentAuthority, Role, SecretBox};
    const PASSWORD: &str = "correct horse battery staple";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let Enrolled { mut server, grpc, api, options, settings, .. } =
        mtls_server_and_enrolled_agent(&data, dir.path(), "rotated-host").await;
    let tls_dir = options.state_dir.join("tls");
    let (agent_ca, agent_cert, agent_key) =
        (tls_dir.join("ca.pem"), tls_dir.join("agent.crt"), tls_dir.join("agent.key"));
    let agent = start_agent(settings);
    let mut acked = acked_beyond(&agent, 2, "first server").await;

    // --- Rotating the secret key ---
    let (ok, printed) = secumon_on(&data, &["secret-key", "rotate"]).await;
    assert!(!ok && printed.contains("server is running"), "{printed}");
    server.kill();
    // A user with a second factor, to log in with after the rotation.
    let old_key_text = std::fs::read_to_string(data.join("secret.key")).unwrap();
    let old_key = SecretBox::from_base64(&old_key_text).unwrap();
    let store: std::sync::Arc<dyn secumon_store::Store> =
        std::sync::Arc::new(secumon_store::SqliteStore::open(&data.join("secumon.db")).await.unwrap());
    let accounts = Accounts::open(store.clone(), old_key.clone()).await.unwrap();
    accounts.add_user("ada", PASSWORD, "default", Role::Viewer, false).await.unwrap();
    let app = totp(&accounts.enroll_mfa("ada", PASSWORD).await.unwrap().secret);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    accounts.confirm_mfa("ada", &app.generate(now - 30)).await.unwrap();
    store.close().await;

    let (ok, printed) = secumon_on(&data, &["secret-key", "rotate"]).await;
    assert!(ok && printed.contains("sealed again"), "{printed}");
    assert_eq!(std::fs::read_to_string(data.join("secret.key.old")).unwrap(), old_key_text);
    let new_key = SecretBox::load_or_create(&data.join("secret.key")).unwrap();
    assert!(new_key.open(&old_key.seal(b"x")).is_err(), "a new key");
    let store: std::sync::Arc<dyn secumon_store::Store> =
        std::sync::Arc::new(secumon_store::SqliteStore::open(&data.join("secumon.db")).await.unwrap());
    assert_eq!(opens_store(&*store, &old_key).await.unwrap(), Some(false), "the old key opens nothing any more");
    assert_eq!(opens_store(&*store, &new_key).await.unwrap(), Some(true));
    AgentAuthority::open(store.clone(), &new_key).await.expect("the CA key opens with the new key");
    assert!(AgentAuthority::open(store.clone(), &old_key).await.is_err());
    store.close().await;

    let mut server = spawn_server_with(&data, grpc, api, &MTLS_SERVER_ARGS);
    wait_for_api(api).await;
    acked = acked_beyond(&agent, acked, "after the key rotation").await;
    let http = reqwest::Client::new();
    let half: serde_json::Value = http
        .post(format!("http://127.0.0.1:{api}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "ada", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(half["mfa_required"], true, "{half}");
    let session: serde_json::Value = http
        .post(format!("http://127.0.0.1:{api}/api/v1/auth/mfa/verify"))
        .json(&serde_json::json!({"mfa_token": half["mfa_token"], "code": app.generate(now)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(session["access_token"].is_string(), "the second factor opens with the new key: {session}");

    // --- Rotating the agents' CA ---
    let (ok, printed) = secumon_on(&data, &["ca", "rotate"]).await;
    assert!(!ok && printed.contains("server is running"), "{printed}");
    server.kill();
    let old_cert = std::fs::read(&agent_cert).unwrap();
    let (ok, printed) = secumon_on(&data, &["ca", "rotate"]).await;
    assert!(ok && printed.contains("new agent CA"), "{printed}");
    let (_, printed) = secumon_on(&data, &["ca", "status"]).await;
    assert!(printed.contains("rotation under way") && printed.contains("old CA"), "{printed}");
    let mut server = spawn_server_with(&data, grpc, api, &MTLS_SERVER_ARGS);
    wait_for_api(api).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (_, printed) = secumon_on(&data, &["ca", "status"]).await;
        if printed.contains("every agent is on the new CA") {
            assert!(printed.contains("rotated-host") && printed.contains("current CA"), "{printed}");
            break;
        }
        assert!(Instant::now() < deadline, "the agent did not move to the new CA: {printed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_ne!(std::fs::read(&agent_cert).unwrap(), old_cert, "the agent wrote its new certificate");
    let bundle = std::fs::read_to_string(&agent_ca).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "the new CA and the old one: {bundle}");
    acked = acked_beyond(&agent, acked, "with the new certificate").await;

    let (ok, printed) = secumon_on(&data, &["ca", "retire-old"]).await;
    assert!(!ok && printed.contains("server is running"), "{printed}");
    server.kill();
    let (ok, printed) = secumon_on(&data, &["ca", "retire-old"]).await;
    assert!(ok && printed.contains("no longer trusted"), "{printed}");
    let (_, printed) = secumon_on(&data, &["ca", "status"]).await;
    assert!(printed.contains("no rotation under way"), "{printed}");
    let _server = spawn_server_with(&data, grpc, api, &MTLS_SERVER_ARGS);
    wait_for_api(api).await;
    acked_beyond(&agent, acked, "after the old CA was retired").await;

    let key = std::fs::read(&agent_key).unwrap();
    let moved = secumon_transport::TlsMaterial {
        ca_pem: bundle.clone().into_bytes(),
        cert_pem: std::fs::read(&agent_cert).unwrap(),
        key_pem: key.clone(),
    };
    let admitted = renew_with(grpc, &moved).await;
    assert!(
        admitted.code() == tonic::Code::Unauthenticated && admitted.message().contains("does not belong to this agent"),
        "the gate saw the new certificate and asked for a session token: {admitted:?}"
    );
    let old = secumon_transport::TlsMaterial { cert_pem: old_cert, ..moved };
    let refused = renew_with(grpc, &old).await;
    assert_ne!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(!refused.message().contains("agent"), "refused before the gate, by TLS: {refused:?}");
    agent.stop().await;
}
