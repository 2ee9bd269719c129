//! The probe's configuration file (`probe.yaml`): where to push, and the checks to run,
//! each validated when the file is read, so a bad port range, regex or record type is
//! reported with the file, line and check instead of failing at run time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secumon_core::config::{CollectorSection, ConfigError, SpoolSection, load_yaml, parse_yaml};
use serde::Deserialize;

use crate::check::{Check, CheckError};
use crate::dns::{DnsCheck, record_type, resolver_address};
use crate::http::HttpCheck;
use crate::ping::PingCheck;
use crate::ports::{PortList, TcpScan, UdpScan};
use crate::scheduler::ScheduledCheck;
use crate::snmp::{Credentials, SnmpCheck, oid_for};
use crate::tls::{TlsCheck, TlsOptions};
use crate::trace::{TraceCheck, TraceOptions};

/// `probe.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    #[serde(default)]
    pub probe: ProbeSection,
    pub collector: CollectorSection,
    #[serde(default)]
    pub spool: SpoolSection,
    pub checks: Vec<CheckConfig>,
}

impl ProbeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        load_yaml(path)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        parse_yaml(text, origin)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    /// Reported as the `host` of every result; the machine's name when unset.
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Checks running at once, at most.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

impl Default for ProbeSection {
    fn default() -> Self {
        Self { name: None, labels: BTreeMap::new(), concurrency: default_concurrency() }
    }
}

fn default_concurrency() -> usize {
    32
}

/// One check as written: every key any check type takes; which apply depends on `type`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckFields {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    host: Option<String>,
    url: Option<String>,
    ports: Option<String>,
    port: Option<u16>,
    expect_open: Option<Vec<u16>>,
    concurrency: Option<usize>,
    count: Option<u32>,
    warn_loss: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    warn_rtt: Option<Duration>,
    mode: Option<String>,
    max_hops: Option<u8>,
    rounds: Option<u32>,
    reverse_dns: Option<bool>,
    method: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    body: Option<String>,
    expect_status: Option<Vec<u16>>,
    body_contains: Option<String>,
    body_regex: Option<String>,
    #[serde(default, with = "humantime_serde")]
    max_latency: Option<Duration>,
    max_redirects: Option<u32>,
    ca_file: Option<PathBuf>,
    cert_warning_days: Option<i64>,
    user_agent: Option<String>,
    record: Option<String>,
    resolvers: Option<Vec<String>>,
    expect: Option<Vec<String>>,
    server_name: Option<String>,
    starttls: Option<String>,
    version: Option<String>,
    community: Option<String>,
    user: Option<String>,
    auth_protocol: Option<String>,
    auth_password: Option<String>,
    priv_protocol: Option<String>,
    priv_password: Option<String>,
    oids: Option<Vec<String>>,
    interfaces: Option<bool>,
}

/// A validated check from the file, ready to schedule.
#[derive(Clone, Deserialize)]
#[serde(try_from = "CheckFields")]
pub struct CheckConfig {
    pub check: Arc<dyn Check>,
    pub interval: Duration,
    pub timeout: Duration,
}

impl std::fmt::Debug for CheckConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.scheduled().fmt(f)
    }
}

impl CheckConfig {
    pub fn scheduled(&self) -> ScheduledCheck {
        ScheduledCheck { check: Arc::clone(&self.check), interval: self.interval, timeout: self.timeout }
    }
}

impl TryFrom<CheckFields> for CheckConfig {
    type Error = String;

    fn try_from(fields: CheckFields) -> Result<Self, String> {
        let name = fields.name.clone();
        let interval = fields.interval.unwrap_or(Duration::from_secs(60));
        let timeout = fields.timeout.unwrap_or(Duration::from_secs(10));
        if interval.is_zero() || timeout.is_zero() {
            return Err(format!("check {name:?}: interval and timeout must be greater than zero"));
        }
        let check = build(fields).map_err(|e| format!("check {name:?}: {e}"))?;
        Ok(Self { check, interval, timeout })
    }
}

fn build(f: CheckFields) -> Result<Arc<dyn Check>, CheckError> {
    let allowed: &[&str] = match f.kind.as_str() {
        "ping" => &["host", "count", "warn_loss", "warn_rtt"],
        "trace" => &["host", "mode", "max_hops", "rounds", "port", "reverse_dns", "warn_loss"],
        "tcp" | "udp" => &["host", "ports", "port", "expect_open", "concurrency"],
        "http" => &[
            "url",
            "method",
            "headers",
            "body",
            "expect_status",
            "body_contains",
            "body_regex",
            "max_latency",
            "max_redirects",
            "ca_file",
            "cert_warning_days",
            "user_agent",
        ],
        "dns" => &["host", "record", "resolvers", "expect"],
        "tls" => &["host", "port", "server_name", "starttls", "ca_file", "cert_warning_days"],
        "snmp" => &[
            "host",
            "port",
            "version",
            "community",
            "user",
            "auth_protocol",
            "auth_password",
            "priv_protocol",
            "priv_password",
            "oids",
            "interfaces",
        ],
        other => {
            return Err(CheckError::Invalid(format!(
                "type {other:?} is not ping, trace, tcp, udp, http, dns, tls or snmp"
            )));
        }
    };
    let given = [
        ("host", f.host.is_some()),
        ("url", f.url.is_some()),
        ("ports", f.ports.is_some()),
        ("port", f.port.is_some()),
        ("expect_open", f.expect_open.is_some()),
        ("concurrency", f.concurrency.is_some()),
        ("count", f.count.is_some()),
        ("warn_loss", f.warn_loss.is_some()),
        ("warn_rtt", f.warn_rtt.is_some()),
        ("mode", f.mode.is_some()),
        ("max_hops", f.max_hops.is_some()),
        ("rounds", f.rounds.is_some()),
        ("reverse_dns", f.reverse_dns.is_some()),
        ("method", f.method.is_some()),
        ("headers", f.headers.is_some()),
        ("body", f.body.is_some()),
        ("expect_status", f.expect_status.is_some()),
        ("body_contains", f.body_contains.is_some()),
        ("body_regex", f.body_regex.is_some()),
        ("max_latency", f.max_latency.is_some()),
        ("max_redirects", f.max_redirects.is_some()),
        ("ca_file", f.ca_file.is_some()),
        ("cert_warning_days", f.cert_warning_days.is_some()),
        ("user_agent", f.user_agent.is_some()),
        ("record", f.record.is_some()),
        ("resolvers", f.resolvers.is_some()),
        ("expect", f.expect.is_some()),
        ("server_name", f.server_name.is_some()),
        ("starttls", f.starttls.is_some()),
        ("version", f.version.is_some()),
        ("community", f.community.is_some()),
        ("user", f.user.is_some()),
        ("auth_protocol", f.auth_protocol.is_some()),
        ("auth_password", f.auth_password.is_some()),
        ("priv_protocol", f.priv_protocol.is_some()),
        ("priv_password", f.priv_password.is_some()),
        ("oids", f.oids.is_some()),
        ("interfaces", f.interfaces.is_some()),
    ];
    if let Some((key, _)) = given.iter().find(|(key, set)| *set && !allowed.contains(key)) {
        return Err(CheckError::Invalid(format!("`{key}` does not apply to {} checks", f.kind)));
    }
    let needs = |key: &str| CheckError::Invalid(format!("{} checks need `{key}`", f.kind));
    let host = || f.host.clone().ok_or_else(|| needs("host"));
    Ok(match f.kind.as_str() {
        "ping" => {
            let mut check = PingCheck::new(f.name, host()?);
            check.count = f.count.unwrap_or(check.count).max(1);
            check.warn_loss = f.warn_loss.unwrap_or(check.warn_loss);
            check.warn_rtt = f.warn_rtt;
            Arc::new(check)
        }
        "trace" => {
            let defaults = TraceOptions::default();
            let options = TraceOptions {
                mode: f.mode.as_deref().unwrap_or("icmp").parse()?,
                max_hops: f.max_hops.unwrap_or(defaults.max_hops),
                rounds: f.rounds.unwrap_or(defaults.rounds),
                port: f.port.unwrap_or(defaults.port),
                reverse_dns: f.reverse_dns.unwrap_or(false),
                ..defaults
            };
            Arc::new(TraceCheck { id: f.name, host: host()?, options, warn_loss: f.warn_loss.unwrap_or(0.1) })
        }
        "tcp" | "udp" => {
            let ports = match (&f.ports, f.port) {
                (Some(ports), None) => PortList::parse(ports)?,
                (None, Some(port)) => PortList::parse(&port.to_string())?,
                _ => return Err(CheckError::Invalid(format!("{} checks need one of `ports` or `port`", f.kind))),
            };
            // A single-port check expects that port open unless told otherwise.
            let expect_open = f.expect_open.clone().or_else(|| f.port.map(|p| vec![p]));
            let concurrency = f.concurrency.unwrap_or(200);
            if f.kind == "tcp" {
                let mut check = TcpScan::new(f.name, host()?, ports).concurrency(concurrency);
                if let Some(expected) = expect_open {
                    check = check.expect_open(expected);
                }
                Arc::new(check)
            } else {
                let mut check = UdpScan::new(f.name, host()?, ports).concurrency(concurrency);
                if let Some(expected) = expect_open {
                    check = check.expect_open(expected);
                }
                Arc::new(check)
            }
        }
        "http" => {
            let url = f.url.clone().ok_or_else(|| needs("url"))?;
            let mut check = HttpCheck::get(f.name, url);
            check.method = f.method.unwrap_or(check.method);
            check.headers = f.headers.unwrap_or_default().into_iter().collect();
            check.body = f.body;
            check.expect_status = f.expect_status.unwrap_or_default();
            check.body_contains = f.body_contains;
            check.body_regex = f
                .body_regex
                .map(|r| regex::Regex::new(&r).map_err(|e| CheckError::Invalid(format!("`body_regex`: {e}"))))
                .transpose()?;
            check.max_latency = f.max_latency;
            check.max_redirects = f.max_redirects.unwrap_or(check.max_redirects);
            check.ca_file = f.ca_file;
            check.cert_warning_days = f.cert_warning_days.unwrap_or(check.cert_warning_days);
            check.user_agent = f.user_agent.unwrap_or(check.user_agent);
            Arc::new(check)
        }
        "tls" => {
            let defaults = TlsOptions::default();
            let options = TlsOptions {
                server_name: f.server_name,
                starttls: f.starttls.as_deref().map(str::parse).transpose()?,
                ca_file: f.ca_file,
                warn_days: f.cert_warning_days.unwrap_or(defaults.warn_days),
                ..defaults
            };
            Arc::new(TlsCheck { id: f.name, host: host()?, port: f.port.unwrap_or(443), options })
        }
        "snmp" => {
            let credentials = Credentials::from_settings(
                f.version.as_deref().unwrap_or("2c"),
                f.community.as_deref(),
                f.user.as_deref(),
                (f.auth_protocol.as_deref(), f.auth_password.as_deref()),
                (f.priv_protocol.as_deref(), f.priv_password.as_deref()),
            )?;
            let mut check = SnmpCheck::new(f.name, host()?, credentials);
            check.port = f.port.unwrap_or(161);
            if let Some(oids) = f.oids {
                // Checked now, so a typo is a configuration error rather than a run-time one.
                for oid in &oids {
                    oid_for(oid)?;
                }
                check.oids = oids;
            }
            check.interfaces = f.interfaces.unwrap_or(false);
            Arc::new(check)
        }
        _ => {
            let mut check = DnsCheck::new(f.name, host()?, record_type(f.record.as_deref().unwrap_or("A"))?);
            check.resolvers =
                f.resolvers.unwrap_or_default().iter().map(|r| resolver_address(r)).collect::<Result<_, _>>()?;
            check.expect = f.expect.unwrap_or_default();
            Arc::new(check)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/probe.yaml");

    #[test]
    fn the_example_parses() {
        let config = ProbeConfig::parse(EXAMPLE, "examples/probe.yaml").unwrap();
        let kinds: Vec<&str> = config.checks.iter().map(|c| c.check.kind()).collect();
        assert_eq!(kinds, vec!["http", "tcp", "ping", "dns", "dns", "udp", "trace", "tls", "snmp"]);
        assert_eq!(config.checks[0].interval, Duration::from_secs(30));
    }

    #[test]
    fn bad_checks_name_the_file_line_and_check() {
        let cases = [
            ("{name: a, type: tcp, host: h, ports: '22,9-3'}", "backwards"),
            ("{name: a, type: http, url: 'http://h/', body_regex: '('}", "body_regex"),
            ("{name: a, type: dns, host: h, record: SRV}", "SRV"),
            ("{name: a, type: ping, host: h, url: x}", "`url` does not apply to ping"),
            ("{name: a, type: smtp, host: h}", "smtp"),
            ("{name: a, type: http}", "http checks need `url`"),
            ("{name: a, type: trace, host: h, mode: sctp}", "sctp"),
            ("{name: a, type: dns, host: h, resolvers: [dns.example]}", "dns.example"),
            ("{name: a, type: tcp, host: h, port: 1, colour: red}", "colour"),
            ("{name: a, type: snmp, host: h, oids: [ifBogus.1]}", "ifBogus"),
            ("{name: a, type: snmp, host: h, version: '3', user: u}", "authentication password"),
        ];
        for (check, needle) in cases {
            let text = format!("collector: {{endpoint: '127.0.0.1:9090'}}\nchecks:\n  - {check}\n");
            let error = ProbeConfig::parse(&text, "probe.yaml").unwrap_err().to_string();
            assert!(error.starts_with("probe.yaml:3:"), "{check}: {error}");
            assert!(error.contains(needle), "{check}: {error}");
        }
    }
}
