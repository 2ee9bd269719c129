//! `secumon scan ping|trace|ports|http|dns TARGET`: one check now, as a readable table or
//! `--json`; exit code 0 when the check is ok, 1 when it is not, 2 on bad usage. It scans
//! only what the operator names.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use secumon_core::{CheckResult, CheckStatus};
use secumon_scan::{
    CheckError, CheckSpec, DnsSpec, HttpSpec, PingSpec, PortsSpec, SnmpSpec, TlsSpec, TraceSpec, host_port,
    render_text, run_check,
};

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
    let text = if args.json { format!("{}\n", serde_json::to_string_pretty(&result)?) } else { render_text(&result) };
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
