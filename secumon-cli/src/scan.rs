//! `secumon scan ping|trace|ports|http|dns TARGET`: one check now, as a readable table or
//! `--json`; exit code 0 when the check is ok, 1 when it is not, 2 on bad usage. It scans
//! only what the operator names.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use secumon_core::{CheckResult, CheckStatus};
use secumon_scan::{
    CheckError, CheckSpec, DnsSpec, HttpSpec, PingSpec, PortsSpec, SnmpSpec, TlsSpec, TraceSpec, host_port, run_check,
};
use serde_json::Value;

use crate::api_client::emit;

#[derive(clap::Args)]
pub struct ScanArgs {
    #[command(subcommand)]
    command: ScanCommand,
    /// Print the check result as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Give up on the whole check after this long.
    #[arg(long, global = true, default_value = "5m", value_parser = humantime::parse_duration)]
    deadline: Duration,
}

#[derive(clap::Subcommand)]
enum ScanCommand {
    /// ICMP echo: loss, round trips, jitter.
    ///
    /// Example: secumon scan ping 192.0.2.1 --count 10
    Ping {
        host: String,
        #[arg(long, default_value_t = 5)]
        count: u32,
        #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
        interval: Duration,
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Traceroute / MTR report (needs root or CAP_NET_RAW).
    ///
    /// Example: secumon scan trace 192.0.2.1 --mode udp --rounds 10
    Trace {
        host: String,
        #[arg(long, default_value = "icmp")]
        mode: String,
        #[arg(long, default_value_t = 10)]
        rounds: u32,
        #[arg(long, default_value_t = 30)]
        max_hops: u8,
        /// UDP: first destination port; TCP: the destination port.
        #[arg(long)]
        port: Option<u16>,
        /// Look up hop names.
        #[arg(long)]
        dns: bool,
    },
    /// TCP connect (or UDP) port scan.
    ///
    /// Example: secumon scan ports 192.0.2.1 --ports 22,80,443,8000-8100
    Ports {
        host: String,
        #[arg(long, default_value = "1-1024")]
        ports: String,
        #[arg(long)]
        udp: bool,
        #[arg(long, default_value_t = 500)]
        concurrency: usize,
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Not ok unless exactly these ports are open: `22,443`.
        #[arg(long)]
        expect_open: Option<String>,
    },
    /// An HTTP(S) request with timing breakdown and validation.
    ///
    /// Example: secumon scan http https://shop.example/health --expect-status 200 --contains ok
    Http {
        url: String,
        #[arg(long, default_value = "GET")]
        method: String,
        /// `Name: value`, repeatable.
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        #[arg(long)]
        data: Option<String>,
        /// Acceptable statuses, `200,301` (default 200-399).
        #[arg(long)]
        expect_status: Option<String>,
        #[arg(long)]
        contains: Option<String>,
        #[arg(long)]
        regex: Option<String>,
        #[arg(long, value_parser = humantime::parse_duration)]
        max_latency: Option<Duration>,
        #[arg(long, default_value_t = 5)]
        max_redirects: u32,
        /// PEM file of CAs to trust instead of the system's.
        #[arg(long)]
        ca_file: Option<std::path::PathBuf>,
    },
    /// Deep TLS analysis: protocols, cipher suites, chain, findings and a grade.
    ///
    /// Example: secumon scan tls mail.example.com:25 --starttls smtp
    Tls {
        /// HOST:PORT (port 443 when left out).
        target: String,
        /// Name for SNI and the certificate match (default: the host).
        #[arg(long)]
        sni: Option<String>,
        /// smtp, imap or pop3.
        #[arg(long)]
        starttls: Option<String>,
        /// PEM file of CAs to trust instead of the system's.
        #[arg(long)]
        ca_file: Option<std::path::PathBuf>,
        /// Warn when the certificate expires within this many days.
        #[arg(long, default_value_t = 30)]
        warn_days: i64,
    },
    /// SNMP get or walk by name (`ifHCInOctets`) or dotted OID; v1, v2c or v3.
    ///
    /// Example: secumon scan snmp 192.0.2.1 sysDescr.0 sysUpTime.0
    /// Example: secumon scan snmp 192.0.2.1:1161 ifName --walk --snmp-version 3 --user ops --auth-password ... --priv-password ...
    Snmp {
        /// HOST or HOST:PORT (port 161 when left out).
        target: String,
        /// Names or dotted OIDs; `sysDescr.0 sysName.0 sysUpTime.0` when none.
        oids: Vec<String>,
        /// Walk each OID's subtree instead of getting it.
        #[arg(long)]
        walk: bool,
        /// Per-interface counters, rates need two runs: use the probe for those.
        #[arg(long)]
        interfaces: bool,
        #[arg(long = "snmp-version", default_value = "2c")]
        version: String,
        #[arg(long, default_value = "public")]
        community: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value = "SHA")]
        auth_protocol: String,
        #[arg(long)]
        auth_password: Option<String>,
        #[arg(long, default_value = "AES")]
        priv_protocol: String,
        #[arg(long)]
        priv_password: Option<String>,
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// DNS lookup against chosen resolvers; several resolvers make a propagation check.
    ///
    /// Example: secumon scan dns example.com --type MX --resolver 192.0.2.53 --resolver 198.51.100.53
    Dns {
        name: String,
        #[arg(long = "type", default_value = "A")]
        record_type: String,
        /// `IP` or `IP:PORT`, repeatable; the system's resolvers when none.
        #[arg(long = "resolver")]
        resolvers: Vec<String>,
        /// An expected answer, repeatable; `NXDOMAIN` expects the name not to exist.
        #[arg(long)]
        expect: Vec<String>,
    },
}

/// A mistake in the command line: exit code 2.
struct Usage(String);

impl From<CheckError> for Usage {
    fn from(error: CheckError) -> Self {
        Usage(error.to_string())
    }
}

fn numbers(text: &str, what: &str) -> Result<Vec<u16>, Usage> {
    text.split(',').map(|n| n.trim().parse().map_err(|_| Usage(format!("{what}: {n:?} is not a number")))).collect()
}

pub async fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let result = match check_result(args.command, args.deadline, args.json).await {
        Ok(result) => result,
        Err(Usage(message)) => {
            eprintln!("secumon: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let text = if args.json { format!("{}\n", serde_json::to_string_pretty(&result)?) } else { render(&result) };
    emit(&text)?;
    Ok(if result.status == CheckStatus::Ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn check_result(command: ScanCommand, deadline: Duration, quiet: bool) -> Result<CheckResult, Usage> {
    let (id, spec) = spec_of(command)?;
    let bar = progress_bar(quiet);
    let ticks = bar.clone();
    let check = spec.build_with_progress(id, Arc::new(move |done, total| ticks.update(done, total)))?;
    let result = run_check(check.as_ref(), deadline).await;
    bar.finish();
    Ok(result)
}

/// The command line as the check's spec, the same the probe's file and Python build from.
fn spec_of(command: ScanCommand) -> Result<(&'static str, CheckSpec), Usage> {
    Ok(match command {
        ScanCommand::Ping { host, count, interval, timeout } => {
            let mut spec = PingSpec::default();
            (spec.host, spec.count, spec.echo_interval, spec.echo_timeout) =
                (Some(host), Some(count), Some(interval), Some(timeout));
            ("ping", CheckSpec::Ping(spec))
        }
        ScanCommand::Trace { host, mode, rounds, max_hops, port, dns } => {
            let mut spec = TraceSpec::default();
            (spec.host, spec.mode, spec.rounds, spec.max_hops, spec.port, spec.reverse_dns) =
                (Some(host), Some(mode), Some(rounds), Some(max_hops), port, Some(dns));
            ("trace", CheckSpec::Trace(spec))
        }
        ScanCommand::Ports { host, ports, udp, concurrency, timeout, expect_open } => {
            let mut spec = PortsSpec::default();
            spec.expect_open = expect_open.as_deref().map(|e| numbers(e, "--expect-open")).transpose()?;
            (spec.host, spec.ports, spec.concurrency, spec.port_timeout) =
                (Some(host), Some(ports), Some(concurrency), Some(timeout));
            ("ports", if udp { CheckSpec::Udp(spec) } else { CheckSpec::Tcp(spec) })
        }
        ScanCommand::Http {
            url,
            method,
            headers,
            data,
            expect_status,
            contains,
            regex,
            max_latency,
            max_redirects,
            ca_file,
        } => {
            let mut spec = HttpSpec::default();
            spec.headers = Some(
                headers
                    .iter()
                    .map(|h| {
                        h.split_once(':')
                            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                            .ok_or_else(|| Usage(format!("header {h:?} must look like `Name: value`")))
                    })
                    .collect::<Result<_, _>>()?,
            );
            spec.expect_status = expect_status.as_deref().map(|s| numbers(s, "--expect-status")).transpose()?;
            (spec.url, spec.method, spec.body, spec.body_contains, spec.body_regex) =
                (Some(url), Some(method), data, contains, regex);
            (spec.max_latency, spec.max_redirects, spec.ca_file) = (max_latency, Some(max_redirects), ca_file);
            ("http", CheckSpec::Http(spec))
        }
        ScanCommand::Tls { target, sni, starttls, ca_file, warn_days } => {
            let (host, port) = host_port(&target, 443)?;
            let mut spec = TlsSpec::default();
            (spec.host, spec.port, spec.server_name, spec.starttls, spec.ca_file, spec.cert_warning_days) =
                (Some(host), Some(port), sni, starttls, ca_file, Some(warn_days));
            ("tls", CheckSpec::Tls(spec))
        }
        ScanCommand::Snmp {
            target,
            oids,
            walk,
            interfaces,
            version,
            community,
            user,
            auth_protocol,
            auth_password,
            priv_protocol,
            priv_password,
            timeout,
        } => {
            let (host, port) = host_port(&target, 161)?;
            let oids = if oids.is_empty() {
                vec!["sysDescr.0".into(), "sysName.0".into(), "sysUpTime.0".into()]
            } else {
                oids
            };
            let mut spec = SnmpSpec::default();
            (spec.host, spec.port, spec.version, spec.community, spec.user) =
                (Some(host), Some(port), Some(version), Some(community), user);
            (spec.auth_protocol, spec.auth_password, spec.priv_protocol, spec.priv_password) =
                (Some(auth_protocol), auth_password, Some(priv_protocol), priv_password);
            (spec.oids, spec.walk, spec.interfaces, spec.request_timeout) =
                (Some(oids), Some(walk), Some(interfaces), Some(timeout));
            ("snmp", CheckSpec::Snmp(spec))
        }
        ScanCommand::Dns { name, record_type, resolvers, expect } => {
            let mut spec = DnsSpec::default();
            (spec.host, spec.record, spec.resolvers, spec.expect) =
                (Some(name), Some(record_type), Some(resolvers), Some(expect));
            ("dns", CheckSpec::Dns(spec))
        }
    })
}

/// A progress bar on stderr for scans long enough to want one (1 000 ports or more), when
/// stderr is a terminal and the output is not JSON; drawn from the first report on.
#[derive(Clone)]
struct ProgressBar {
    bar: Arc<std::sync::OnceLock<indicatif::ProgressBar>>,
    shown: bool,
}

impl ProgressBar {
    fn update(&self, done: u64, total: u64) {
        if !self.shown || total < 1_000 {
            return;
        }
        let bar = self.bar.get_or_init(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} ports  {elapsed} (eta {eta})")
            {
                bar.set_style(style);
            }
            bar
        });
        bar.set_position(done);
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

fn progress_bar(quiet: bool) -> ProgressBar {
    use std::io::IsTerminal;
    ProgressBar { bar: Arc::default(), shown: !quiet && std::io::stderr().is_terminal() }
}

fn ms(value: &Value) -> String {
    value.as_f64().map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

/// A readable report of a check result.
fn render(result: &CheckResult) -> String {
    let d = &result.details;
    let mut out = String::new();
    if let Some(error) = d["error"].as_str() {
        let _ = writeln!(out, "{} {}: {error}", result.kind, result.target);
    } else {
        match result.kind.as_str() {
            "ping" => {
                let _ = writeln!(
                    out,
                    "PING {} ({}): {} sent, {} received, {:.1}% loss",
                    result.target,
                    d["address"].as_str().unwrap_or(""),
                    d["sent"],
                    d["received"],
                    d["loss_ratio"].as_f64().unwrap_or(0.0) * 100.0
                );
                let _ = writeln!(
                    out,
                    "rtt min/avg/max/stddev = {}/{}/{}/{} ms, jitter {} ms",
                    ms(&d["min_ms"]),
                    ms(&d["avg_ms"]),
                    ms(&d["max_ms"]),
                    ms(&d["stddev_ms"]),
                    ms(&d["jitter_ms"])
                );
            }
            "trace" => {
                let _ = writeln!(
                    out,
                    "{:>3}  {:<40}  {:>6}  {:>4}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}",
                    "HOP", "ADDRESS", "LOSS%", "SNT", "LAST", "AVG", "BEST", "WRST", "STDEV"
                );
                for hop in d["hops"].as_array().into_iter().flatten() {
                    let addresses: Vec<String> = hop["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str().map(str::to_string))
                        .collect();
                    let names: Vec<&str> =
                        hop["names"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    let mut shown = if addresses.is_empty() { "???".to_string() } else { addresses.join(" ") };
                    if !names.is_empty() {
                        shown = format!("{} ({shown})", names.join(" "));
                    }
                    let _ = writeln!(
                        out,
                        "{:>3}  {:<40}  {:>6.1}  {:>4}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}",
                        hop["ttl"].as_u64().unwrap_or(0),
                        shown,
                        hop["loss_ratio"].as_f64().unwrap_or(0.0) * 100.0,
                        hop["sent"].as_u64().unwrap_or(0),
                        ms(&hop["last_ms"]),
                        ms(&hop["avg_ms"]),
                        ms(&hop["best_ms"]),
                        ms(&hop["worst_ms"]),
                        ms(&hop["stddev_ms"])
                    );
                }
                if d["reached"] == false {
                    let _ = writeln!(out, "destination not reached");
                }
            }
            "tcp" | "udp" => {
                let _ = writeln!(
                    out,
                    "{} scan of {} ({}): {} ports",
                    result.kind,
                    result.target,
                    d["address"].as_str().unwrap_or(""),
                    d["scanned"]
                );
                let _ = writeln!(out, "{:<8}  STATE", "PORT");
                if let Some(ports) = d["ports"].as_object() {
                    let mut listed: Vec<(u16, &str)> =
                        ports.iter().filter_map(|(p, s)| Some((p.parse().ok()?, s.as_str()?))).collect();
                    listed.sort();
                    for (port, state) in listed {
                        let _ = writeln!(out, "{:<8}  {state}", format!("{port}/{}", result.kind));
                    }
                }
                let counts: Vec<String> =
                    d["counts"].as_object().into_iter().flatten().map(|(state, n)| format!("{n} {state}")).collect();
                let _ = writeln!(out, "{}", counts.join(", "));
            }
            "http" => {
                let r = &d["response"];
                let _ = writeln!(
                    out,
                    "HTTP {} → {} from {}",
                    r["url"].as_str().unwrap_or(""),
                    r["status"],
                    r["address"].as_str().unwrap_or("")
                );
                for hop in d["redirects"].as_array().into_iter().flatten() {
                    let _ = writeln!(out, "  redirected: {} ({})", hop["url"].as_str().unwrap_or(""), hop["status"]);
                }
                let t = &r["timings"];
                let seconds = |v: &Value| v.as_f64().map(|s| format!("{:.1} ms", s * 1000.0)).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "dns {}  connect {}  tls {}  first byte {}  total {}  ({} bytes)",
                    seconds(&t["dns"]),
                    seconds(&t["connect"]),
                    seconds(&t["tls"]),
                    seconds(&t["first_byte"]),
                    seconds(&t["total"]),
                    r["body_bytes"]
                );
                if r["tls"].is_object() {
                    let tls = &r["tls"];
                    let _ = writeln!(
                        out,
                        "tls {} {}; certificate {} from {}, expires in {:.0} days",
                        tls["version"].as_str().unwrap_or(""),
                        tls["cipher_suite"].as_str().unwrap_or(""),
                        tls["subject"].as_str().unwrap_or(""),
                        tls["issuer"].as_str().unwrap_or(""),
                        tls["days_to_expiry"].as_f64().unwrap_or(0.0)
                    );
                }
            }
            "tls" => render_tls(d, &mut out),
            "snmp" => {
                let mut rows: Vec<(String, String)> = Vec::new();
                for variable in d["variables"].as_array().into_iter().flatten() {
                    rows.push((variable["name"].as_str().unwrap_or("").to_string(), snmp_text(&variable["value"])));
                }
                for (name, value) in d.as_object().into_iter().flatten() {
                    if value.get("type").is_some() {
                        rows.push((name.clone(), snmp_text(value)));
                    }
                }
                for (name, value) in rows {
                    let _ = writeln!(out, "{name:<36}  {value}");
                }
                for interface in d["interfaces"].as_array().into_iter().flatten() {
                    let state = if interface["up"] == true { "up" } else { "down" };
                    let _ = writeln!(
                        out,
                        "interface {:<8} {:<16} {state}",
                        interface["index"].as_str().unwrap_or(""),
                        interface["name"].as_str().unwrap_or("")
                    );
                }
            }
            "dns" => {
                let _ = writeln!(out, "{:<24}  {:<9}  {:>6}  ANSWERS", "RESOLVER", "RCODE", "TTL");
                for answer in d["answers"].as_array().into_iter().flatten() {
                    let records: Vec<&str> =
                        answer["records"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    let _ = writeln!(
                        out,
                        "{:<24}  {:<9}  {:>6}  {}",
                        answer["resolver"].as_str().unwrap_or(""),
                        answer["rcode"].as_str().unwrap_or(""),
                        answer["ttl"].as_u64().map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                        records.join(", ")
                    );
                }
            }
            _ => {}
        }
        for finding in d["findings"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "{:<8}  {}",
                finding["severity"].as_str().unwrap_or(""),
                finding["title"].as_str().unwrap_or("")
            );
        }
        for key in ["problems", "warnings"] {
            for line in d[key].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let _ = writeln!(out, "{}: {line}", key.trim_end_matches('s'));
            }
        }
        if let Some(disagreeing) = d["disagreeing"].as_array().filter(|a| !a.is_empty()) {
            let list: Vec<&str> = disagreeing.iter().filter_map(Value::as_str).collect();
            let _ = writeln!(out, "disagree: {}", list.join(", "));
        }
    }
    let _ = writeln!(out, "status: {} ({:.1} ms)", result.status.as_str(), result.duration_us as f64 / 1000.0);
    out
}

/// `Counter64: 42`, `STRING: "lo"`.
fn snmp_text(value: &Value) -> String {
    let kind = value["type"].as_str().unwrap_or("");
    match &value["value"] {
        Value::String(text) => format!("{kind}: {text:?}"),
        Value::Null => kind.to_string(),
        other => format!("{kind}: {other}"),
    }
}

fn render_tls(d: &Value, out: &mut String) {
    let _ = writeln!(
        out,
        "TLS {} ({}), SNI {}",
        d["target"].as_str().unwrap_or(""),
        d["address"].as_str().unwrap_or(""),
        d["server_name"].as_str().unwrap_or("")
    );
    let protocols: Vec<String> = d["protocols"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(version, on)| format!("{version} {}", if on == true { "yes" } else { "no" }))
        .collect();
    let _ = writeln!(out, "protocols: {}", protocols.join(", "));
    for (version, suites) in d["cipher_suites"].as_object().into_iter().flatten() {
        let order = match d["server_preference"][version].as_bool() {
            Some(true) => "server's preference",
            Some(false) => "the server follows the client's order",
            None => "one suite",
        };
        let _ = writeln!(out, "{version} suites ({order}):");
        for suite in suites.as_array().into_iter().flatten() {
            let mut notes = Vec::new();
            if suite["forward_secrecy"] == false {
                notes.push("no forward secrecy".to_string());
            }
            if let Some(weakness) = suite["weakness"].as_str() {
                notes.push(weakness.to_string());
            }
            let notes = if notes.is_empty() { String::new() } else { format!("  ({})", notes.join(", ")) };
            let _ = writeln!(
                out,
                "  {}  {}{notes}",
                suite["code"].as_str().unwrap_or(""),
                suite["name"].as_str().unwrap_or("")
            );
        }
    }
    let groups: Vec<&str> = d["groups"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if !groups.is_empty() {
        let _ = writeln!(out, "key exchange groups seen: {}", groups.join(", "));
    }
    for (depth, certificate) in d["chain"].as_array().into_iter().flatten().enumerate() {
        let _ = writeln!(
            out,
            "certificate {depth}: {}  issued by {}  {} {} bits, {}, expires in {:.0} days",
            certificate["subject"].as_str().unwrap_or(""),
            certificate["issuer"].as_str().unwrap_or(""),
            certificate["key_type"].as_str().unwrap_or(""),
            certificate["key_bits"],
            certificate["signature_algorithm"].as_str().unwrap_or(""),
            certificate["days_to_expiry"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(responder) = d["ocsp_responder"].as_object() {
        let answer = responder
            .get("status")
            .and_then(Value::as_str)
            .or_else(|| responder.get("error").and_then(Value::as_str))
            .unwrap_or("no answer");
        let _ = writeln!(
            out,
            "OCSP responder {}: {answer}",
            responder.get("responder").and_then(Value::as_str).unwrap_or("")
        );
    }
    let _ = writeln!(
        out,
        "chain: {}; OCSP stapled: {}; grade {}",
        d["chain_validation"].as_str().unwrap_or(""),
        if d["ocsp_stapled"] == true { "yes" } else { "no" },
        d["grade"].as_str().unwrap_or("")
    );
}

#[cfg(test)]
mod tests {
    use secumon_core::{Labels, Sample};

    use super::*;

    fn result(kind: &str, status: CheckStatus, details: Value) -> CheckResult {
        CheckResult {
            check_id: "c".into(),
            kind: kind.into(),
            target: "t".into(),
            status,
            timestamp_ms: 0,
            duration_us: 1_500,
            details,
            samples: vec![Sample::new("x", Labels::new(), 0, 1.0)],
        }
    }

    #[test]
    fn renders_ports_and_errors() {
        let ports = result(
            "tcp",
            CheckStatus::Critical,
            serde_json::json!({"address": "127.0.0.1", "scanned": 3, "ports": {"443": "open", "22": "open"},
                "counts": {"closed": 1, "open": 2}, "problems": ["8080/tcp expected open, is closed"]}),
        );
        assert_eq!(
            render(&ports),
            "tcp scan of t (127.0.0.1): 3 ports\nPORT      STATE\n22/tcp    open\n443/tcp   open\n1 closed, 2 open\n\
             problem: 8080/tcp expected open, is closed\nstatus: critical (1.5 ms)\n"
        );
        let failed = result("ping", CheckStatus::Unknown, serde_json::json!({"error": "cannot resolve t"}));
        assert_eq!(render(&failed), "ping t: cannot resolve t\nstatus: unknown (1.5 ms)\n");
    }
}
