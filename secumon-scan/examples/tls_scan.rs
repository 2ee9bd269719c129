//! Deep TLS analysis of one server from Rust: protocols, cipher suites, chain, findings and a
//! grade, printed as `secumon scan tls` prints them.
//!
//! ```text
//! cargo run -p secumon-scan --example tls_scan -- 127.0.0.1:8443 [--json]
//! ```
//!
//! It connects only to the target named on the command line.

use std::time::Duration;

use secumon_scan::{CheckSpec, TlsSpec, host_port, render_text, run_check};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(target) = args.next() else {
        eprintln!("usage: tls_scan HOST[:PORT] [--json]");
        std::process::exit(2);
    };
    let json = args.any(|a| a == "--json");

    let (host, port) = host_port(&target, 443)?;
    let mut spec = TlsSpec::default();
    (spec.host, spec.port) = (Some(host), Some(port));
    let check = CheckSpec::Tls(spec).build("tls")?;

    let result = run_check(check.as_ref(), Duration::from_secs(120)).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", render_text(&result));
    }
    Ok(())
}
