//! Time from start to the console's full overview: what `secumon console` does before its
//! first complete screen (every page of `GET /api/v1/overview`, then alerts, findings and
//! checks, handed to the app state and drawn once at 160×45), with the console library's
//! own client, state and render. Prints one line per run and this process's peak RSS.
//!
//! `benches/scripts/console_fleet.sh` seeds the hosts, starts the server and runs this.

use std::time::Instant;

use clap::Parser;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use secumon_console::app::{App, Event};
use secumon_console::client::ApiClient;

#[derive(Parser)]
struct Args {
    /// The server, e.g. `http://127.0.0.1:18480`.
    #[arg(long)]
    server: String,
    /// An API key or access token.
    #[arg(long, env = "SECUMON_TOKEN")]
    token: String,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Hosts the overview must hold (the run fails otherwise).
    #[arg(long)]
    expect: Option<usize>,
}

/// A line of `/proc/self/status` in kB, e.g. `VmHWM`.
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for run in 1..=args.runs {
        let started = Instant::now();
        let client = ApiClient::new(&args.server, Some(args.token.clone()))?;
        let (hosts, pages) = client.overview().await?;
        let snapshot = secumon_console::app::Snapshot { hosts, ..client.activity().await? };
        let fetched = started.elapsed();
        let count = snapshot.hosts.len();
        let mut app = App::new(&args.server);
        app.page_rows = 40;
        app.update(Event::Data(snapshot));
        let mut terminal = Terminal::new(TestBackend::new(160, 45))?;
        terminal.draw(|frame| {
            secumon_console::render::render(&app, frame);
        })?;
        let elapsed = started.elapsed();
        if let Some(expected) = args.expect {
            anyhow::ensure!(count == expected, "the overview holds {count} hosts, not {expected}");
        }
        println!(
            "console_load: run {run}: {count} hosts in {pages} page(s), fetched in {:.0} ms, on screen in {:.0} ms",
            fetched.as_secs_f64() * 1000.0,
            elapsed.as_secs_f64() * 1000.0
        );
    }
    println!("console_load: peak RSS {} kB", status_kb("VmHWM:").unwrap_or(0));
    Ok(())
}
