//! The agent binary against a real server with enrollment: `setup` takes `--config` after
//! the subcommand, and an agent the server revokes says so and exits with code 3 instead of
//! spooling forever under "server unreachable". Its log, read through a pipe, carries no
//! ANSI colour codes.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use secumon_server::{GrpcTls, Server, ServerConfig};

fn agent_binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_secumon-agent"))
}

#[test]
fn setup_help_shows_config() {
    let output = agent_binary().args(["setup", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--config"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_says_so_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        grpc_tls: GrpcTls::Managed { names: Vec::new() },
        ..ServerConfig::loopback(dir.path().join("secumon.db"))
    };
    let server = Server::start(config).await.expect("server starts");
    let authority = server.agent_authority().expect("managed TLS");
    let token = authority.provision("default", "test", Duration::from_secs(600)).await.unwrap().token;

    let config_path = dir.path().join("etc/agent.yaml");
    let state_dir = dir.path().join("agent");
    let collector = format!("localhost:{}", server.grpc_addr().port());
    // `--config` after `setup`, as a person types it.
    let setup = {
        let mut command = agent_binary();
        command.args(["setup", "--collector", &collector, "--token", &token, "--name", "revoked-host"]);
        command.arg("--state-dir").arg(&state_dir).arg("--config").arg(&config_path);
        tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
    };
    let printed = String::from_utf8_lossy(&setup.stdout).to_string();
    assert_eq!(setup.status.code(), Some(0), "{printed}{}", String::from_utf8_lossy(&setup.stderr));
    assert!(config_path.exists(), "setup wrote the file --config named: {printed}");
    let agent_id = printed
        .split_whitespace()
        .skip_while(|word| *word != "agent")
        .nth(1)
        .expect("setup names the agent id")
        .to_string();

    let mut child = agent_binary()
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.store().list_agents("default").await.unwrap().iter().any(|a| a.agent_id == agent_id) {
        assert!(Instant::now() < deadline, "the agent's data never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(authority.revoke("default", &agent_id).await.unwrap());

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the revoked agent kept running");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (mut log, mut errors) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut log).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut errors).unwrap();
    assert_eq!(status.code(), Some(3), "{log}{errors}");
    assert!(errors.contains("revoked by the server") && errors.contains(&agent_id), "{errors}");
    assert!(log.contains("this agent was revoked"), "{log}");
    assert!(!log.contains("server unreachable"), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour codes in a piped log: {log:?}");
    server.shutdown().await;
}
