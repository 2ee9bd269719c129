//! DNS checks with hickory: one name and record type asked of chosen resolvers (the
//! system's when none is given), answers compared with what is expected; and propagation:
//! the same question to a list of resolvers, reporting which agree with the expected
//! answer (or, without one, with the majority). Answers are shown as dig shows them (TXT
//! records as their quoted strings, `"a" "b"`), and a server's response code as it is
//! (`REFUSED`, `SERVFAIL`...), never as an empty answer. In the JSON, beside the records
//! as dig shows them, a TXT record's strings are listed raw: text, not dig's escapes.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{ResolveError, TokioResolver};
use secumon_core::{CheckStatus, Labels};
use serde::{Deserialize, Serialize};

use crate::check::{Check, CheckError, Outcome};
use crate::spec::required;

/// The record types a DNS check asks for.
pub const RECORD_TYPES: &[&str] = &["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "CAA"];

/// What one resolver answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DnsAnswer {
    /// The resolver, or `system`.
    pub resolver: String,
    /// `NOERROR`, `NXDOMAIN`, `NODATA`, another response code of the server's as dig names
    /// it (`SERVFAIL`, `REFUSED`...), or `error: ...` when no answer came.
    pub rcode: String,
    /// Answers in presentation form as dig prints them, sorted (`10 mail.example.com.` for
    /// MX, `"first string" "second string"` for TXT).
    pub records: Vec<String>,
    /// For TXT: each record's strings, in the order of `records`, as they are (no quoting or
    /// escaping: `say "hi"`, `café`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub txt: Vec<Vec<TxtString>>,
    /// The smallest TTL of the records, in seconds; `None` without records.
    pub ttl: Option<u32>,
    /// How long the answer took, in milliseconds.
    pub millis: u64,
}

/// One string of a TXT record as it is. Most are text (SPF, DKIM, verification tokens) and are
/// given as text, exactly; a string whose bytes are not UTF-8 is given as its bytes in hex,
/// `{"hex": "61ff62"}`, rather than with bytes replaced or escaped (an escape could not be
/// told from text that holds a backslash). dig's `\DDD` form is in `records`.
// (Ord: answers are sorted by their dig form, and a tie compares these.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TxtString {
    /// Valid UTF-8, as it is.
    Text(String),
    /// Not UTF-8: the bytes.
    Bytes {
        /// The bytes in lowercase hex, two digits each.
        hex: String,
    },
}

impl TxtString {
    /// The string as text when it is UTF-8, else as hex.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => TxtString::Text(text.to_string()),
            Err(_) => TxtString::Bytes { hex: bytes.iter().map(|b| format!("{b:02x}")).collect() },
        }
    }
}

/// What a `dns` check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DnsDetails {
    /// The name asked for.
    pub name: String,
    /// The record type asked for (`A`, `MX`...).
    #[serde(rename = "type")]
    pub record_type: String,
    /// The records expected, in dig's form (`NXDOMAIN` for none); empty when nothing is.
    pub expected: Vec<String>,
    /// Each resolver's answer, in the configured order.
    pub answers: Vec<DnsAnswer>,
    /// The resolvers whose answer is the expected (or the most common) one.
    pub agreeing: Vec<String>,
    /// The resolvers that answered something else.
    pub disagreeing: Vec<String>,
    /// Resolvers that failed the question or never answered.
    pub problems: Vec<String>,
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
            let mut records: Vec<(String, Vec<TxtString>)> = lookup
                .record_iter()
                .filter(|r| r.record_type() == record_type)
                .map(|r| match r.data() {
                    // hickory's Display runs the strings together; dig quotes each one.
                    RData::TXT(txt) => {
                        let shown = txt.txt_data().iter().map(|s| format!("\"{}\"", txt_string(s)));
                        let strings = txt.txt_data().iter().map(|s| TxtString::from_bytes(s)).collect();
                        (shown.collect::<Vec<_>>().join(" "), strings)
                    }
                    other => (other.to_string(), Vec::new()),
                })
                .collect();
            records.sort();
            let ttl = lookup.record_iter().map(|r| r.ttl()).min();
            let rcode = if records.is_empty() { "NODATA" } else { "NOERROR" };
            let txt =
                if record_type == RecordType::TXT { records.iter().map(|r| r.1.clone()).collect() } else { vec![] };
            DnsAnswer {
                resolver: label,
                rcode: rcode.into(),
                records: records.into_iter().map(|r| r.0).collect(),
                txt,
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

/// One TXT string as dig prints it between its quotes: printable ASCII as is, `"` and `\`
/// escaped, every other byte as `\DDD`.
fn txt_string(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for &byte in bytes {
        match byte {
            b'"' | b'\\' => {
                text.push('\\');
                text.push(char::from(byte));
            }
            0x20..=0x7e => text.push(char::from(byte)),
            _ => text.push_str(&format!("\\{byte:03}")),
        }
    }
    text
}

/// A response code as dig names it (RFC 6895's mnemonics).
fn rcode_name(code: ResponseCode) -> String {
    match u16::from(code) {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        16 => "BADVERS".into(),
        other => format!("RCODE{other}"),
    }
}

/// Whether an answer's code is the server failing to answer the question (as opposed to
/// an answer: records, NXDOMAIN, NODATA) or no answer at all.
fn is_failure(rcode: &str) -> bool {
    !matches!(rcode, "NOERROR" | "NXDOMAIN" | "NODATA")
}

fn failed(resolver: String, error: ResolveError, started: Instant) -> DnsAnswer {
    // hickory reports every answer without records as "no records found", whatever the
    // server's response code: SERVFAIL and REFUSED must not read as an empty answer.
    let response_code = error.proto().and_then(|proto| match proto.kind() {
        ProtoErrorKind::NoRecordsFound { response_code, .. } => Some(*response_code),
        _ => None,
    });
    let rcode = match response_code {
        Some(ResponseCode::NoError) => "NODATA".to_string(),
        Some(code) => rcode_name(code),
        None if error.is_nx_domain() => "NXDOMAIN".to_string(),
        None => format!("error: {error}"),
    };
    DnsAnswer {
        resolver,
        rcode,
        records: Vec::new(),
        txt: Vec::new(),
        ttl: None,
        millis: started.elapsed().as_millis() as u64,
    }
}

/// A `dns` check as configured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DnsSpec {
    /// The name to look up.
    pub host: Option<String>,
    /// Record type (`A` unless set): one of [`RECORD_TYPES`].
    pub record: Option<String>,
    /// `IP` or `IP:PORT` resolvers to ask; the system's when unset. Several make a propagation check.
    pub resolvers: Option<Vec<String>>,
    /// Expected answers; `NXDOMAIN` expects the name not to exist.
    pub expect: Option<Vec<String>>,
    /// How long each resolver's answer is awaited (3 s).
    #[serde(default, with = "humantime_serde")]
    pub query_timeout: Option<Duration>,
}

impl DnsSpec {
    pub(crate) fn build(self, id: String, kind: &str) -> Result<Box<dyn Check>, CheckError> {
        let record = record_type(self.record.as_deref().unwrap_or("A"))?;
        let defaults = DnsCheck::new(id, required(self.host, kind, "host")?, record);
        Ok(Box::new(DnsCheck {
            resolvers: self
                .resolvers
                .unwrap_or_default()
                .iter()
                .map(|r| resolver_address(r))
                .collect::<Result<_, _>>()?,
            expect: self.expect.unwrap_or_default(),
            timeout: self.query_timeout.unwrap_or(defaults.timeout),
            ..defaults
        }))
    }
}

/// A DNS check: `name`'s `record_type` records, asked of each resolver (the system's
/// when the list is empty). With several resolvers it is a propagation check.
#[derive(Debug, Clone)]
pub struct DnsCheck {
    /// The check's name in the configuration.
    pub id: String,
    /// The name asked for.
    pub name: String,
    /// The record type asked for.
    pub record_type: RecordType,
    /// The resolvers to ask; the system's when empty.
    pub resolvers: Vec<SocketAddr>,
    /// Expected answers in presentation form (order does not matter; `NXDOMAIN` expects
    /// the name not to exist). Empty: any answer will do, or, for propagation, the majority's.
    pub expect: Vec<String>,
    /// How long each resolver is given (3 s).
    pub timeout: Duration,
}

impl DnsCheck {
    /// Asks the system's resolvers, expecting any answer, 3 s timeout.
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

    /// Normalises expected answers like the answers: sorted, names fully qualified, a TXT
    /// value written without quotes taken as one string.
    fn expected(&self) -> Vec<String> {
        let mut expected: Vec<String> = self
            .expect
            .iter()
            .map(|e| {
                let fqdn_types = [RecordType::CNAME, RecordType::NS, RecordType::MX];
                if fqdn_types.contains(&self.record_type) && !e.ends_with('.') {
                    format!("{e}.")
                } else if self.record_type == RecordType::TXT && !e.starts_with('"') && e != "NXDOMAIN" {
                    format!("\"{}\"", txt_string(e.as_bytes()))
                } else {
                    e.clone()
                }
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
            for answer in answers.iter().filter(|a| !is_failure(&a.rcode)) {
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
        // A server that fails the question (SERVFAIL, REFUSED...) or never answers is not
        // one that holds other data: it is named with its code, not as disagreeing.
        let disagreeing: Vec<&str> =
            answers.iter().filter(|a| !agrees(a) && !is_failure(&a.rcode)).map(|a| a.resolver.as_str()).collect();
        let failing: Vec<&DnsAnswer> = answers.iter().filter(|a| is_failure(&a.rcode)).collect();
        let silent = answers.iter().filter(|a| a.rcode.starts_with("error")).count();
        let status = if silent == answers.len() {
            // No resolver answered at all: we cannot tell.
            return Err(CheckError::Other(
                answers.iter().map(|a| format!("{}: {}", a.resolver, a.rcode)).collect::<Vec<_>>().join("; "),
            ));
        } else if disagreeing.is_empty() && failing.is_empty() {
            CheckStatus::Ok
        } else if agreeing.is_empty() {
            CheckStatus::Critical
        } else {
            CheckStatus::Warning
        };
        let problems: Vec<String> = failing
            .iter()
            .map(|a| match a.rcode.strip_prefix("error: ") {
                Some(error) => format!("{}: {error}", a.resolver),
                None => format!("{} answered {}", a.resolver, a.rcode),
            })
            .collect();
        let mut samples = vec![(
            "dns_resolvers_agreeing_ratio".to_string(),
            Labels::new(),
            agreeing.len() as f64 / answers.len() as f64,
        )];
        for answer in &answers {
            let labels = Labels::from([("resolver".to_string(), answer.resolver.clone())]);
            samples.push(("dns_lookup_seconds".to_string(), labels, answer.millis as f64 / 1000.0));
        }
        let owned = |names: Vec<&str>| names.into_iter().map(str::to_string).collect();
        let details = DnsDetails {
            name: self.name.clone(),
            record_type: self.record_type.to_string(),
            expected,
            agreeing: owned(agreeing),
            disagreeing: owned(disagreeing),
            answers,
            problems,
        };
        let outcome = Outcome { status, details: details.into(), samples };
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_keep_their_json() {
        let answer = |resolver: &str, rcode: &str, records: &[&str], txt: Vec<Vec<TxtString>>| DnsAnswer {
            resolver: resolver.into(),
            rcode: rcode.into(),
            records: records.iter().map(|r| r.to_string()).collect(),
            txt,
            ttl: (rcode == "NOERROR").then_some(300),
            millis: 4,
        };
        let details = DnsDetails {
            name: "example.test".into(),
            record_type: "TXT".into(),
            expected: Vec::new(),
            answers: vec![
                answer(
                    "127.0.0.1:5353",
                    "NOERROR",
                    &["\"v=spf1 -all\" \"a\\255b\""],
                    vec![vec![TxtString::from_bytes(b"v=spf1 -all"), TxtString::from_bytes(b"a\xffb")]],
                ),
                answer("127.0.0.2:5353", "NOERROR", &["\"other\""], vec![vec![TxtString::from_bytes(b"other")]]),
                answer("127.0.0.3:5353", "REFUSED", &[], Vec::new()),
            ],
            agreeing: vec!["127.0.0.1:5353".into()],
            disagreeing: vec!["127.0.0.2:5353".into()],
            problems: vec!["127.0.0.3:5353 answered REFUSED".into()],
        };
        crate::details::assert_wire(
            "dns",
            details.into(),
            serde_json::json!({
                "name": "example.test", "type": "TXT", "expected": [],
                "answers": [
                    {"resolver": "127.0.0.1:5353", "rcode": "NOERROR", "records": ["\"v=spf1 -all\" \"a\\255b\""],
                     "txt": [["v=spf1 -all", {"hex": "61ff62"}]], "ttl": 300, "millis": 4},
                    {"resolver": "127.0.0.2:5353", "rcode": "NOERROR", "records": ["\"other\""], "txt": [["other"]],
                     "ttl": 300, "millis": 4},
                    {"resolver": "127.0.0.3:5353", "rcode": "REFUSED", "records": [], "ttl": null, "millis": 4},
                ],
                "agreeing": ["127.0.0.1:5353"], "disagreeing": ["127.0.0.2:5353"],
                "problems": ["127.0.0.3:5353 answered REFUSED"],
            }),
        );
    }

    #[test]
    fn record_types_and_resolver_addresses_are_checked() {
        assert_eq!(record_type("mx").unwrap(), RecordType::MX);
        assert!(record_type("SRV").unwrap_err().to_string().contains("A, AAAA"));
        assert_eq!(resolver_address("192.0.2.53").unwrap(), "192.0.2.53:53".parse().unwrap());
        assert_eq!(resolver_address("[::1]:5353").unwrap(), "[::1]:5353".parse().unwrap());
        assert!(resolver_address("dns.example").is_err());
    }

    #[test]
    fn txt_strings_are_escaped_as_dig_does() {
        assert_eq!(txt_string(b"v=spf1 -all"), "v=spf1 -all");
        assert_eq!(txt_string(b"say \"hi\" \\ \x01\xff"), "say \\\"hi\\\" \\\\ \\001\\255");
        assert_eq!(txt_string("né".as_bytes()), "n\\195\\169");
        assert_eq!(rcode_name(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_name(ResponseCode::ServFail), "SERVFAIL");
        assert!(is_failure("REFUSED") && is_failure("error: timed out") && !is_failure("NODATA"));
    }

    #[test]
    fn txt_strings_in_json_are_raw_text_or_hex_bytes() {
        let strings: Vec<TxtString> =
            [&b"say \"hi\" \\ here"[..], "né".as_bytes(), b"a\xffb", b""].map(TxtString::from_bytes).to_vec();
        assert_eq!(
            serde_json::to_value(&strings).unwrap(),
            serde_json::json!(["say \"hi\" \\ here", "né", {"hex": "61ff62"}, ""])
        );
    }
}
