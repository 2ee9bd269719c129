//! What the scale-out tests share (secumon-server's and secumon-cli's, which includes this
//! file by path): a nats-server of the test's own, which the test may stop and start again,
//! and a PostgreSQL database of its own at `SECUMON_TEST_PG_URL`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A nats-server with JetStream of the test's own, on a free loopback port.
pub struct Nats {
    port: u16,
    storage: tempfile::TempDir,
    child: Option<Child>,
}

impl Nats {
    /// `None` (after reporting the missing peer) when nats-server is not installed.
    pub fn spawn() -> Option<Self> {
        if !Path::new(NATS_SERVER).exists() {
            secumon_core::testing::peer_missing("nats-server is not installed (Debian package nats-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut nats = Self { port, storage: tempfile::tempdir().unwrap(), child: None };
        nats.start();
        Some(nats)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port and storage) and waits until it answers.
    pub fn start(&mut self) {
        let child = Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.storage.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it as an operator would (SIGTERM), and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A database of its own on the PostgreSQL at `SECUMON_TEST_PG_URL`.
pub struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    pub async fn create() -> Option<Self> {
        let admin_url =
            std::env::var("SECUMON_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("secumon_scale_{}_{}_{n}", env!("CARGO_CRATE_NAME"), std::process::id());
        let database = Self { admin_url, name };
        if let Err(error) = database.admin(&format!("CREATE DATABASE {}", database.name)).await {
            secumon_core::testing::peer_missing(&format!("PostgreSQL at {}: {error}", database.admin_url));
            return None;
        }
        Some(database)
    }

    pub fn url(&self) -> String {
        let base = self.admin_url.rsplit_once('/').map_or(self.admin_url.as_str(), |(base, _)| base);
        format!("{base}/{}", self.name)
    }

    async fn admin(&self, statement: &str) -> Result<(), sqlx::Error> {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::query(statement).execute(&mut connection).await.map(|_| ())
    }

    pub async fn drop(self) {
        self.admin(&format!("DROP DATABASE {} WITH (FORCE)", self.name)).await.expect("drop the test database");
    }
}
