//! DNS checks with hickory: one name and record type asked of chosen resolvers (the
//! system's when none is given), answers compared with what is expected; and propagation:
//! the same question to a list of resolvers, reporting which agree with the expected
//! answer (or, without one, with the majority).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::{ResolveError, TokioResolver};
use secumon_core::{CheckStatus, Labels};
use serde::Serialize;

use crate::check::{Check, CheckError, Outcome};

/// The record types a DNS check asks for.
pub const RECORD_TYPES: &[&str] = &["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "CAA"];

/// What one resolver answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsAnswer {
    /// The resolver, or `system`.
    pub resolver: String,
    /// `NOERROR`, `NXDOMAIN`, `NODATA` or the failure.
    pub rcode: String,
    /// Answers in presentation form, sorted (`10 mail.example.com.` for MX).
    pub records: Vec<String>,
    pub ttl: Option<u32>,
    pub millis: u64,
}

/// Parses `A`, `mx`... into a record type the checks support.
pub fn record_type(text: &str) -> Result<RecordType, CheckError> {
    let upper = text.to_ascii_uppercase();
    if !RECORD_TYPES.contains(&upper.as_str()) {
        return Err(CheckError::Invalid(format!("record type {text:?} is not one of {}", RECORD_TYPES.join(", "))));
    }
    RecordType::from_str(&upper).map_err(|e| CheckError::Invalid(e.to_string()))
}

/// Parses `192.0.2.53`, `192.0.2.53:5353` or `[2001:db8::53]:53` into a resolver address.
pub fn resolver_address(text: &str) -> Result<SocketAddr, CheckError> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    text.trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| CheckError::Invalid(format!("resolver {text:?} is not an IP address with an optional port")))
}

/// Asks `resolver` (or the system's resolvers) for `name`'s `record_type` records.
pub async fn query(resolver: Option<SocketAddr>, name: &str, record_type: RecordType, timeout: Duration) -> DnsAnswer {
    let started = Instant::now();
    let label = resolver.map(|r| r.to_string()).unwrap_or_else(|| "system".into());
    let client = match build(resolver, timeout) {
        Ok(client) => client,
        Err(error) => return failed(label, error, started),
    };
    // A trailing dot: the name as given, never a search domain.
    let fqdn = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
    match client.lookup(fqdn.as_str(), record_type).await {
        Ok(lookup) => {
            let mut records: Vec<String> =
                lookup.record_iter().filter(|r| r.record_type() == record_type).map(|r| r.data().to_string()).collect();
            records.sort();
            let ttl = lookup.record_iter().map(|r| r.ttl()).min();
            let rcode = if records.is_empty() { "NODATA" } else { "NOERROR" };
            DnsAnswer {
                resolver: label,
                rcode: rcode.into(),
                records,
                ttl,
                millis: started.elapsed().as_millis() as u64,
            }
        }
        Err(error) => failed(label, error, started),
    }
}

fn build(resolver: Option<SocketAddr>, timeout: Duration) -> Result<TokioResolver, ResolveError> {
    let builder = match resolver {
        Some(address) => {
            let servers = NameServerConfigGroup::from_ips_clear(&[address.ip()], address.port(), true);
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], servers),
                TokioConnectionProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio()?,
    };
    let mut options = ResolverOpts::default();
    // A monitoring probe wants the server's answer now, not a cached or hosts-file one.
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    options.timeout = timeout;
    options.attempts = 2;
    options.ndots = 0;
    Ok(builder.with_options(options).build())
}

fn failed(resolver: String, error: ResolveError, started: Instant) -> DnsAnswer {
    let rcode = if error.is_nx_domain() {
        "NXDOMAIN".to_string()
    } else if error.is_no_records_found() {
        "NODATA".to_string()
    } else {
        format!("error: {error}")
    };
    DnsAnswer { resolver, rcode, records: Vec::new(), ttl: None, millis: started.elapsed().as_millis() as u64 }
}

/// A DNS check: `name`'s `record_type` records, asked of each resolver (the system's
/// when the list is empty). With several resolvers it is a propagation check.
#[derive(Debug, Clone)]
pub struct DnsCheck {
    pub id: String,
    pub name: String,
    pub record_type: RecordType,
    pub resolvers: Vec<SocketAddr>,
    /// Expected answers in presentation form (order does not matter; `NXDOMAIN` expects
    /// the name not to exist). Empty: any answer will do, or, for propagation, the majority's.
    pub expect: Vec<String>,
    pub timeout: Duration,
}

impl DnsCheck {
    pub fn new(id: impl Into<String>, name: impl Into<String>, record_type: RecordType) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            record_type,
            resolvers: Vec::new(),
            expect: Vec::new(),
            timeout: Duration::from_secs(3),
        }
    }

    /// Normalises expected answers like the answers: sorted, names fully qualified.
    fn expected(&self) -> Vec<String> {
        let mut expected: Vec<String> = self
            .expect
            .iter()
            .map(|e| {
                let fqdn_types = [RecordType::CNAME, RecordType::NS, RecordType::MX];
                if fqdn_types.contains(&self.record_type) && !e.ends_with('.') { format!("{e}.") } else { e.clone() }
            })
            .collect();
        expected.sort();
        expected
    }
}

#[async_trait]
impl Check for DnsCheck {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "dns"
    }

    fn target(&self) -> String {
        format!("{} {}", self.name, self.record_type)
    }

    async fn execute(&self) -> Result<Outcome, CheckError> {
        let resolvers: Vec<Option<SocketAddr>> =
            if self.resolvers.is_empty() { vec![None] } else { self.resolvers.iter().copied().map(Some).collect() };
        let answers: Vec<DnsAnswer> = futures::future::join_all(
            resolvers.iter().map(|resolver| query(*resolver, &self.name, self.record_type, self.timeout)),
        )
        .await;

        let expected = self.expected();
        let reference: Option<(String, Vec<String>)> = if expected == ["NXDOMAIN"] {
            Some(("NXDOMAIN".into(), Vec::new()))
        } else if !expected.is_empty() {
            Some(("NOERROR".into(), expected.clone()))
        } else if answers.len() > 1 {
            // Propagation without an expectation: the most common answer is the reference.
            let mut votes: BTreeMap<(String, Vec<String>), usize> = BTreeMap::new();
            for answer in answers.iter().filter(|a| !a.rcode.starts_with("error")) {
                *votes.entry((answer.rcode.clone(), answer.records.clone())).or_default() += 1;
            }
            votes.into_iter().max_by_key(|(_, count)| *count).map(|(answer, _)| answer)
        } else {
            None
        };
        let agrees = |a: &DnsAnswer| match &reference {
            Some((rcode, records)) => &a.rcode == rcode && &a.records == records,
            None => a.rcode == "NOERROR",
        };
        let agreeing: Vec<&str> = answers.iter().filter(|a| agrees(a)).map(|a| a.resolver.as_str()).collect();
        let disagreeing: Vec<&str> = answers.iter().filter(|a| !agrees(a)).map(|a| a.resolver.as_str()).collect();
        let failures = answers.iter().filter(|a| a.rcode.starts_with("error")).count();
        let status = if failures == answers.len() {
            // No resolver answered at all: we cannot tell.
            return Err(CheckError::Other(
                answers.iter().map(|a| format!("{}: {}", a.resolver, a.rcode)).collect::<Vec<_>>().join("; "),
            ));
        } else if disagreeing.is_empty() {
            CheckStatus::Ok
        } else if agreeing.is_empty() {
            CheckStatus::Critical
        } else {
            CheckStatus::Warning
        };
        let details = serde_json::json!({
            "name": self.name, "type": self.record_type.to_string(), "expected": expected,
            "answers": answers, "agreeing": agreeing, "disagreeing": disagreeing,
        });
        let mut outcome = Outcome::new(status, details).sample(
            "dns_resolvers_agreeing_ratio",
            Labels::new(),
            agreeing.len() as f64 / answers.len() as f64,
        );
        for answer in &answers {
            let labels = Labels::from([("resolver".to_string(), answer.resolver.clone())]);
            outcome = outcome.sample("dns_lookup_seconds", labels, answer.millis as f64 / 1000.0);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_types_and_resolver_addresses_are_checked() {
        assert_eq!(record_type("mx").unwrap(), RecordType::MX);
        assert!(record_type("SRV").unwrap_err().to_string().contains("A, AAAA"));
        assert_eq!(resolver_address("192.0.2.53").unwrap(), "192.0.2.53:53".parse().unwrap());
        assert_eq!(resolver_address("[::1]:5353").unwrap(), "[::1]:5353".parse().unwrap());
        assert!(resolver_address("dns.example").is_err());
    }
}
