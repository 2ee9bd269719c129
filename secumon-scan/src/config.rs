//! The probe's configuration file (`probe.yaml`): where to push, and the checks to run,
//! each validated when the file is read, so a bad port range, regex or record type is
//! reported with the file, line and check instead of failing at run time.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secumon_core::config::{CollectorSection, ConfigError, SpoolSection, load_yaml, parse_yaml};
use serde::Deserialize;

use crate::check::Check;
use crate::scheduler::ScheduledCheck;
use crate::spec::{CheckSpec, check_types};

/// `probe.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// The probe's name, labels and concurrency.
    #[serde(default)]
    pub probe: ProbeSection,
    /// Where results are pushed.
    pub collector: CollectorSection,
    /// The disk spool that keeps results while the collector is unreachable.
    #[serde(default)]
    pub spool: SpoolSection,
    /// The checks to run.
    pub checks: Vec<CheckConfig>,
}

impl ProbeConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        load_yaml(path)
    }

    /// Parses `text`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        parse_yaml(text, origin)
    }
}

/// The `probe` section of `probe.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    /// Reported as the `host` of every result; the machine's name when unset.
    pub name: Option<String>,
    /// Labels added to every result's samples.
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

/// A validated check from the file, ready to schedule.
#[derive(Clone)]
pub struct CheckConfig {
    /// The check itself.
    pub check: Arc<dyn Check>,
    /// How often it runs.
    pub interval: Duration,
    /// How long one run may take before it is `unknown`.
    pub timeout: Duration,
}

impl std::fmt::Debug for CheckConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.scheduled().fmt(f)
    }
}

impl CheckConfig {
    /// The check as the [`Scheduler`](crate::Scheduler) takes it.
    pub fn scheduled(&self) -> ScheduledCheck {
        ScheduledCheck { check: Arc::clone(&self.check), interval: self.interval, timeout: self.timeout }
    }
}

/// Reads a check entry key by key, so a key no check type takes is reported at its own
/// line; the rest is judged once the whole entry is read.
impl<'de> Deserialize<'de> for CheckConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entry;

        impl<'de> serde::de::Visitor<'de> for Entry {
            type Value = CheckConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a check: a mapping with `name`, `type` and the type's keys")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<CheckConfig, A::Error> {
                let mut entry = serde_json::Map::new();
                while let Some(key) = map.next_key_seed(KnownKey)? {
                    entry.insert(key, map.next_value()?);
                }
                CheckConfig::try_from(entry).map_err(serde::de::Error::custom)
            }
        }

        deserializer.deserialize_map(Entry)
    }
}

/// A check's key, refused while it is read (so the error carries its line) unless some check
/// type takes it.
struct KnownKey;

impl<'de> serde::de::DeserializeSeed<'de> for KnownKey {
    type Value = String;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for KnownKey {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a check's key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<String, E> {
        let known = ["name", "type", "interval", "timeout"].contains(&key)
            || check_types().iter().any(|kind| CheckSpec::keys(kind).is_some_and(|keys| keys.contains(&key)));
        if !known {
            return Err(E::custom(format!("unknown key `{key}`: no check type takes it")));
        }
        Ok(key.to_string())
    }
}

/// The keys every check takes beside its type's own.
#[derive(Deserialize)]
struct Schedule {
    name: String,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

impl TryFrom<serde_json::Map<String, serde_json::Value>> for CheckConfig {
    type Error = String;

    /// Splits the entry into its schedule and its type's spec, naming a key the type does not
    /// take (serde would only list the expected ones).
    fn try_from(mut entry: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let mut schedule = serde_json::Map::new();
        for key in ["name", "interval", "timeout"] {
            if let Some(value) = entry.remove(key) {
                schedule.insert(key.into(), value);
            }
        }
        let schedule: Schedule = serde_json::from_value(schedule.into()).map_err(|e| e.to_string())?;
        let name = schedule.name;
        let invalid = |e: String| format!("check {name:?}: {e}");
        let kind = entry.get("type").and_then(|t| t.as_str()).ok_or_else(|| invalid("`type` is missing".into()))?;
        let keys = CheckSpec::keys(kind)
            .ok_or_else(|| invalid(format!("type {kind:?} is not {}", check_types().join(", "))))?;
        if let Some(key) = entry.keys().find(|k| *k != "type" && !keys.contains(&k.as_str())) {
            return Err(invalid(format!("`{key}` does not apply to {kind} checks")));
        }
        let spec: CheckSpec = serde_json::from_value(entry.into()).map_err(|e| invalid(e.to_string()))?;
        let interval = schedule.interval.unwrap_or(Duration::from_secs(60));
        let timeout = schedule.timeout.unwrap_or(Duration::from_secs(10));
        if interval.is_zero() || timeout.is_zero() {
            return Err(invalid("interval and timeout must be greater than zero".into()));
        }
        let check = spec.build(name.clone()).map_err(|e| invalid(e.to_string()))?;
        Ok(Self { check: Arc::from(check), interval, timeout })
    }
}

// The example and the error cases use every check family.
#[cfg(all(test, feature = "dns", feature = "http", feature = "snmp", feature = "tls", feature = "trace"))]
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
