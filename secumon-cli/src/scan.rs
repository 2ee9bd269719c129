//! `secumon scan ping|trace|ports|http|dns TARGET`: one check now, as a readable table or
//! `--json`; exit code 0 when the check is ok, 1 when it is not, 2 on bad usage. It scans
//! only what the operator names.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use secumon_core::{CheckResult, CheckStatus};
use secumon_scan::snmp::{name_for, oid_for};
use secumon_scan::{
    Check, CheckError, Credentials, DnsCheck, HttpCheck, Outcome, PingCheck, PortList, SnmpCheck, SnmpClient, TlsCheck,
    TlsOptions, TraceCheck, TraceMode, TraceOptions, port_outcome, record_type, resolver_address, run_check,
    scan_tcp_with_progress, scan_udp,
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
    let check: Box<dyn Check> = match command {
        ScanCommand::Ping { host, count, interval, timeout } => {
            Box::new(PingCheck { count: count.max(1), interval, timeout, ..PingCheck::new("ping", host) })
        }
        ScanCommand::Trace { host, mode, rounds, max_hops, port, dns } => {
            let mode: TraceMode = mode.parse()?;
            let default_port = if mode == TraceMode::Tcp { 80 } else { 33434 };
            let options = TraceOptions {
                mode,
                rounds,
                max_hops,
                port: port.unwrap_or(default_port),
                reverse_dns: dns,
                ..TraceOptions::default()
            };
            Box::new(TraceCheck { id: "trace".into(), host, options, warn_loss: 0.1 })
        }
        ScanCommand::Ports { host, ports, udp, concurrency, timeout, expect_open } => {
            let ports = PortList::parse(&ports)?;
            let expect_open = expect_open.as_deref().map(|e| numbers(e, "--expect-open")).transpose()?;
            Box::new(PortScan { host, ports, udp, concurrency, timeout, expect_open, quiet })
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
            let headers = headers
                .iter()
                .map(|h| {
                    h.split_once(':')
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        .ok_or_else(|| Usage(format!("header {h:?} must look like `Name: value`")))
                })
                .collect::<Result<_, _>>()?;
            let body_regex =
                regex.map(|r| regex::Regex::new(&r).map_err(|e| Usage(format!("--regex: {e}")))).transpose()?;
            let expect_status = expect_status.as_deref().map(|s| numbers(s, "--expect-status")).transpose()?;
            Box::new(HttpCheck {
                method,
                headers,
                body: data,
                expect_status: expect_status.unwrap_or_default(),
                body_contains: contains,
                body_regex,
                max_latency,
                max_redirects,
                ca_file,
                ..HttpCheck::get("http", url)
            })
        }
        ScanCommand::Tls { target, sni, starttls, ca_file, warn_days } => {
            let (host, port) = host_port(&target, 443)?;
            let options = TlsOptions {
                server_name: sni,
                starttls: starttls.as_deref().map(str::parse).transpose()?,
                ca_file,
                warn_days,
                ..TlsOptions::default()
            };
            Box::new(TlsCheck { id: "tls".into(), host, port, options })
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
            let credentials = Credentials::from_settings(
                &version,
                Some(&community),
                user.as_deref(),
                (Some(&auth_protocol), auth_password.as_deref()),
                (Some(&priv_protocol), priv_password.as_deref()),
            )?;
            let oids = if oids.is_empty() {
                vec!["sysDescr.0".into(), "sysName.0".into(), "sysUpTime.0".into()]
            } else {
                oids
            };
            for oid in &oids {
                oid_for(oid)?;
            }
            if walk {
                return Ok(run_check(&SnmpWalk { host, port, credentials, roots: oids, timeout }, deadline).await);
            }
            let mut check = SnmpCheck::new("snmp", host, credentials);
            check.port = port;
            check.oids = oids;
            check.interfaces = interfaces;
            check.timeout = timeout;
            Box::new(check)
        }
        ScanCommand::Dns { name, record_type: kind, resolvers, expect } => {
            let resolvers = resolvers.iter().map(|r| resolver_address(r)).collect::<Result<_, _>>()?;
            Box::new(DnsCheck { resolvers, expect, ..DnsCheck::new("dns", name, record_type(&kind)?) })
        }
    };
    Ok(run_check(check.as_ref(), deadline).await)
}

/// `host:port`, `[v6]:port` or a bare host with `default` as the port.
fn host_port(target: &str, default: u16) -> Result<(String, u16), Usage> {
    if let Ok(address) = target.parse::<std::net::SocketAddr>() {
        return Ok((address.ip().to_string(), address.port()));
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = port.parse().map_err(|_| Usage(format!("{port:?} in {target:?} is not a port")))?;
            Ok((host.to_string(), port))
        }
        _ => Ok((target.trim_matches(['[', ']']).to_string(), default)),
    }
}

/// The first address of a host name, as a check error when there is none.
async fn address_of(host: &str, port: u16) -> Result<std::net::SocketAddr, CheckError> {
    let unresolved = |reason: String| CheckError::Resolve { name: host.to_string(), reason };
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| unresolved(e.to_string()))?
        .next()
        .ok_or_else(|| unresolved("no address".into()))
}

/// A walk of one or more subtrees: the variables go straight into the result.
struct SnmpWalk {
    host: String,
    port: u16,
    credentials: Credentials,
    roots: Vec<String>,
    timeout: Duration,
}

#[async_trait::async_trait]
impl Check for SnmpWalk {
    fn id(&self) -> &str {
        "snmp"
    }

    fn kind(&self) -> &'static str {
        "snmp"
    }

    fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    async fn execute(&self) -> Result<Outcome, CheckError> {
        let address = address_of(&self.host, self.port).await?;
        let mut client = SnmpClient::connect(address, &self.credentials, self.timeout).await?;
        let mut variables = Vec::new();
        for root in &self.roots {
            for (oid, value) in client.walk(&oid_for(root)?, true).await? {
                variables.push(serde_json::json!({"oid": oid, "name": name_for(&oid), "value": value}));
            }
        }
        Ok(Outcome::new(CheckStatus::Ok, serde_json::json!({"variables": variables})))
    }
}

/// A port scan that drives a progress bar (the library's checks have none).
struct PortScan {
    host: String,
    ports: PortList,
    udp: bool,
    concurrency: usize,
    timeout: Duration,
    expect_open: Option<Vec<u16>>,
    quiet: bool,
}

#[async_trait::async_trait]
impl Check for PortScan {
    fn id(&self) -> &str {
        "ports"
    }

    fn kind(&self) -> &'static str {
        if self.udp { "udp" } else { "tcp" }
    }

    fn target(&self) -> String {
        self.host.clone()
    }

    async fn execute(&self) -> Result<Outcome, CheckError> {
        let address = address_of(&self.host, 0).await?.ip();
        let report = if self.udp {
            scan_udp(address, &self.ports, self.concurrency, self.timeout).await
        } else {
            let bar = progress_bar(self.ports.ports().len() as u64, self.quiet);
            let report =
                scan_tcp_with_progress(address, &self.ports, self.concurrency, self.timeout, |_| bar.inc(1)).await;
            bar.finish_and_clear();
            report
        };
        Ok(port_outcome(self.kind(), &report, self.expect_open.as_deref()))
    }
}

/// A progress bar on stderr for scans long enough to want one, when stderr is a terminal.
fn progress_bar(total: u64, quiet: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if quiet || total < 1_000 || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} ports  {elapsed} (eta {eta})") {
        bar.set_style(style);
    }
    bar
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
