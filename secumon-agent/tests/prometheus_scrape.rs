//! Exporters scraped by a probe (`type: prometheus` checks in `probe.yaml`): a real
//! node_exporter (Debian's `prometheus-node-exporter`, loopback only) with an allow-list, and
//! the SecuMon server's own `/metrics` with a prefix, both pushed to that server. The stored
//! series are the exporter's own (every CPU and mode of `node_cpu_seconds_total`, as many as
//! a direct scrape shows, nothing the allow-list leaves out) under the check's labels.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secumon_server::{Server, ServerConfig};
use secumon_store::DEFAULT_TENANT;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_scrapes_node_exporter_and_secumons_own_metrics_into_the_store() {
    if !Command::new("prometheus-node-exporter").arg("--version").output().is_ok_and(|o| o.status.success()) {
        secumon_core::testing::peer_missing("prometheus-node-exporter is not installed (scripts/test installs it)");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _exporter = Killed(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let probe_yaml = format!(
        "probe: {{name: scraper}}\ncollector: {{endpoint: \"{grpc}\"}}\nspool: {{dir: \"{spool}\"}}\nchecks:\n  \
         - {{name: node, type: prometheus, url: \"http://127.0.0.1:{port}/metrics\", allow: [node_load1, \
         \"node_cpu_seconds_total\"], interval: 500ms}}\n  \
         - {{name: secumon, type: prometheus, url: \"http://{api}/metrics\", prefix: scraped_, interval: 500ms}}\n",
        grpc = server.grpc_addr(),
        api = server.api_addr(),
        spool = dir.path().join("spool").display(),
    );
    let probe =
        secumon_agent::Probe::open(&secumon_scan::ProbeConfig::parse(&probe_yaml, "probe.yaml").unwrap()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let probing = tokio::spawn(probe.run(async move {
        let _ = stopped.await;
    }));

    let store = server.store();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (cpu, own) = loop {
        let cpu = store.list_series(DEFAULT_TENANT, Some("node_cpu_seconds_total")).await.unwrap();
        let own = store.list_series(DEFAULT_TENANT, Some("scraped_secumon_ingest_batches_total")).await.unwrap();
        let load = store.list_series(DEFAULT_TENANT, Some("node_load1")).await.unwrap();
        if !cpu.is_empty() && !own.is_empty() && !load.is_empty() {
            break (cpu, own);
        }
        assert!(Instant::now() < deadline, "scraped series never arrived: cpu {cpu:?}, own {own:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // As many CPU series as the exporter shows, each with its own labels and the check's.
    let page = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    let direct = secumon_core::exposition::parse(&page).unwrap();
    let cpu_lines = direct.iter().filter(|s| s.name == "node_cpu_seconds_total").count();
    assert_eq!(cpu.len(), cpu_lines, "{cpu:?}");
    for key in &cpu {
        let labels = &key.labels;
        assert!(labels.contains_key("cpu") && labels.contains_key("mode"), "{key}");
        assert_eq!((labels["check"].as_str(), labels["kind"].as_str()), ("node", "prometheus"), "{key}");
        assert_eq!(labels["host"], "scraper");
    }
    // The allow-list kept nothing else of node_exporter's.
    for left_out in ["node_memory_MemTotal_bytes", "node_filesystem_avail_bytes", "go_goroutines"] {
        assert!(store.list_series(DEFAULT_TENANT, Some(left_out)).await.unwrap().is_empty(), "{left_out}");
    }
    assert!(own.iter().all(|k| k.labels["check"] == "secumon"), "{own:?}");
    // Both scrapes succeeded (check_status 0 = ok).
    let statuses = store.list_series(DEFAULT_TENANT, Some("check_status")).await.unwrap();
    let checks: std::collections::BTreeSet<&str> =
        statuses.iter().filter(|k| k.labels["kind"] == "prometheus").map(|k| k.labels["check"].as_str()).collect();
    assert_eq!(checks.into_iter().collect::<Vec<_>>(), ["node", "secumon"]);

    let _ = stop.send(());
    probing.await.unwrap();
    server.shutdown().await;
}
