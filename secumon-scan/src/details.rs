//! [`CheckDetails`]: what a check found, typed, one variant per kind of check. A
//! [`CheckResult`] carries the same thing as JSON (`details`), so that `secumon-core` needs
//! no check types; [`CheckDetails::from_result`] reads it back.

use secumon_core::CheckResult;
use serde::{Deserialize, Serialize};

#[cfg(feature = "dns")]
use crate::dns::DnsDetails;
#[cfg(feature = "http")]
use crate::http::HttpDetails;
use crate::ping::PingStats;
use crate::ports::PortsDetails;
#[cfg(feature = "http")]
use crate::prometheus::ScrapeDetails;
#[cfg(feature = "snmp")]
use crate::snmp::SnmpDetails;
#[cfg(feature = "tls")]
use crate::tls::TlsReport;
#[cfg(feature = "trace")]
use crate::trace::TraceDetails;

/// The kind-specific details of one check run. Serialized, each variant is its own JSON
/// object with no tag: the check's kind (in [`CheckResult::kind`]) says which it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum CheckDetails {
    /// `ping`: echo statistics.
    Ping(PingStats),
    /// `trace`: the path, hop by hop.
    #[cfg(feature = "trace")]
    Trace(TraceDetails),
    /// `tcp`: a TCP connect scan.
    Tcp(PortsDetails),
    /// `udp`: a UDP scan.
    Udp(PortsDetails),
    /// `http`: the final response and the redirects that led to it.
    #[cfg(feature = "http")]
    Http(HttpDetails),
    /// `prometheus`: what the exporter's page held and what was kept.
    #[cfg(feature = "http")]
    Prometheus(ScrapeDetails),
    /// `dns`: every resolver's answer and whether they agree.
    #[cfg(feature = "dns")]
    Dns(DnsDetails),
    /// `tls`: the whole TLS analysis.
    #[cfg(feature = "tls")]
    Tls(TlsReport),
    /// `snmp`: values got, or subtrees walked.
    #[cfg(feature = "snmp")]
    Snmp(SnmpDetails),
    /// Any kind: why the check could not tell (the result is `unknown`).
    Error {
        /// The reason, as one line.
        error: String,
    },
    /// A check this crate does not know (an embedder's own [`Check`](crate::Check)), or one
    /// of a family whose feature is off: its details as they are.
    Custom(serde_json::Value),
}

impl CheckDetails {
    /// Reads a result's JSON details as the typed details of its kind. `{"error": "…"}`
    /// alone is [`CheckDetails::Error`] whatever the kind; an unknown kind is
    /// [`CheckDetails::Custom`].
    pub fn from_result(result: &CheckResult) -> Result<Self, serde_json::Error> {
        let details = &result.details;
        if let Some(object) = details.as_object()
            && object.len() == 1
            && object.get("error").is_some_and(serde_json::Value::is_string)
        {
            return Ok(Self::Error { error: String::deserialize(&object["error"])? });
        }
        Ok(match result.kind.as_str() {
            "ping" => Self::Ping(PingStats::deserialize(details)?),
            #[cfg(feature = "trace")]
            "trace" => Self::Trace(TraceDetails::deserialize(details)?),
            "tcp" => Self::Tcp(PortsDetails::deserialize(details)?),
            "udp" => Self::Udp(PortsDetails::deserialize(details)?),
            #[cfg(feature = "http")]
            "http" => Self::Http(HttpDetails::deserialize(details)?),
            #[cfg(feature = "http")]
            "prometheus" => Self::Prometheus(ScrapeDetails::deserialize(details)?),
            #[cfg(feature = "dns")]
            "dns" => Self::Dns(DnsDetails::deserialize(details)?),
            #[cfg(feature = "tls")]
            "tls" => Self::Tls(TlsReport::deserialize(details)?),
            #[cfg(feature = "snmp")]
            "snmp" => Self::Snmp(SnmpDetails::deserialize(details)?),
            _ => Self::Custom(details.clone()),
        })
    }

    /// The details as the JSON object a [`CheckResult`] carries.
    pub fn to_json(&self) -> serde_json::Value {
        // Every map key is a string or a number, which JSON takes: this cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl From<PingStats> for CheckDetails {
    fn from(stats: PingStats) -> Self {
        Self::Ping(stats)
    }
}

#[cfg(feature = "trace")]
impl From<TraceDetails> for CheckDetails {
    fn from(details: TraceDetails) -> Self {
        Self::Trace(details)
    }
}

#[cfg(feature = "http")]
impl From<HttpDetails> for CheckDetails {
    fn from(details: HttpDetails) -> Self {
        Self::Http(details)
    }
}

#[cfg(feature = "http")]
impl From<ScrapeDetails> for CheckDetails {
    fn from(details: ScrapeDetails) -> Self {
        Self::Prometheus(details)
    }
}

#[cfg(feature = "dns")]
impl From<DnsDetails> for CheckDetails {
    fn from(details: DnsDetails) -> Self {
        Self::Dns(details)
    }
}

#[cfg(feature = "tls")]
impl From<TlsReport> for CheckDetails {
    fn from(report: TlsReport) -> Self {
        Self::Tls(report)
    }
}

#[cfg(feature = "snmp")]
impl From<SnmpDetails> for CheckDetails {
    fn from(details: SnmpDetails) -> Self {
        Self::Snmp(details)
    }
}

impl From<serde_json::Value> for CheckDetails {
    fn from(value: serde_json::Value) -> Self {
        Self::Custom(value)
    }
}

/// Test help for each check's details: the typed value serializes to `expected` (the JSON
/// the check wrote before its details were typed) and reads back from a result of `kind`
/// to the same typed value.
#[cfg(test)]
pub(crate) fn assert_wire(kind: &str, details: CheckDetails, expected: serde_json::Value) {
    let json = details.to_json();
    assert_eq!(json, expected, "{kind}: serialized");
    assert_eq!(serde_json::to_string(&json).unwrap(), serde_json::to_string(&expected).unwrap());
    let result = CheckResult {
        check_id: "c".into(),
        kind: kind.into(),
        target: "t".into(),
        status: secumon_core::CheckStatus::Ok,
        timestamp_ms: 0,
        duration_us: 0,
        details: json,
        samples: Vec::new(),
    };
    let read = CheckDetails::from_result(&result).unwrap_or_else(|e| panic!("{kind}: {e}"));
    assert_eq!(read, details, "{kind}: round trip");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_unknown_kinds() {
        super::assert_wire(
            "ping",
            CheckDetails::Error { error: "timed out after 1s".into() },
            serde_json::json!({"error": "timed out after 1s"}),
        );
        super::assert_wire(
            "someone-elses",
            CheckDetails::Custom(serde_json::json!({"n": 1})),
            serde_json::json!({"n": 1}),
        );
        let mut result = CheckResult {
            check_id: "c".into(),
            kind: "ping".into(),
            target: "t".into(),
            status: secumon_core::CheckStatus::Ok,
            timestamp_ms: 0,
            duration_us: 0,
            details: serde_json::json!({"sent": "three"}),
            samples: Vec::new(),
        };
        assert!(CheckDetails::from_result(&result).is_err(), "a ping's details must be a ping's");
        result.kind = "tcp".into();
        assert!(CheckDetails::from_result(&result).is_err());
    }
}
