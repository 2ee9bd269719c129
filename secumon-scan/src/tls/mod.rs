//! Deep TLS analysis of one server: which protocol versions and cipher suites it accepts
//! (crafted ClientHellos, no OpenSSL), in its order of preference, the key exchange groups
//! the handshakes show, the certificate chain (subject, issuer, SANs, validity, key,
//! signature), its validation against the system roots or a given CA file and the host
//! name, OCSP stapling; STARTTLS for SMTP, IMAP and POP3. Findings get severities and the
//! whole an overall grade. This module runs the analysis and the check; each job has its
//! file: `starttls` (connections), `chain` (recording and validation),
//! `x509` (the certificate view), `findings` and `grade`.

pub(crate) mod chain;
mod findings;
mod grade;
mod hello;
pub mod ocsp;
mod starttls;
pub mod suites;
mod x509;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secumon_core::{CheckStatus, Labels};
use serde::{Deserialize, Serialize};

pub use findings::{FindingSeverity, TlsFinding};
pub use hello::{ServerAnswer, Version, client_hello, parse_answer};
pub use starttls::StartTls;
pub use x509::CertificateView;

use crate::check::{Check, CheckError, Outcome, resolve};
use chain::{capture_chain, root_store, validate};
use findings::findings;
use grade::grade;
use starttls::connect;
use x509::certificate_view;

/// What to analyse and how to judge it.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// SNI and the name the certificate must match; the host when unset.
    pub server_name: Option<String>,
    /// A protocol to upgrade with STARTTLS before the handshake.
    pub starttls: Option<StartTls>,
    /// PEM CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Per connection.
    pub timeout: Duration,
    /// A certificate expiring within this many days is a warning (30).
    pub warn_days: i64,
    /// Within this many days, critical (7).
    pub critical_days: i64,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            server_name: None,
            starttls: None,
            ca_file: None,
            timeout: Duration::from_secs(5),
            warn_days: 30,
            critical_days: 7,
        }
    }
}
/// One accepted cipher suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SuiteView {
    /// Its IANA code, `0xC02F`.
    pub code: String,
    /// Its IANA name.
    pub name: String,
    /// Whether its key exchange is ephemeral (ECDHE/DHE, or any TLS 1.3 suite).
    pub forward_secrecy: bool,
    /// Why it is weak, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weakness: Option<String>,
}
/// Everything learnt about one server: the details of a `tls` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TlsReport {
    /// `host:port` as asked.
    pub target: String,
    /// The address connected to.
    pub address: String,
    /// The name sent as SNI and checked against the certificate.
    pub server_name: String,
    /// Each version and whether the server accepts it.
    pub protocols: BTreeMap<String, bool>,
    /// Accepted suites per version, in the order the server picked them from everything
    /// offered: its own preference when it enforces one, our (ascending) order otherwise.
    pub cipher_suites: BTreeMap<String, Vec<SuiteView>>,
    /// Per version with two or more suites: whether the server picks by its own preference.
    pub server_preference: BTreeMap<String, bool>,
    /// Key exchange groups the handshakes used (`x25519`...).
    pub groups: Vec<String>,
    /// The smallest DH group size seen, in bits, when a DHE suite was accepted.
    pub dh_bits: Option<u32>,
    /// The certificates presented, leaf first.
    pub chain: Vec<CertificateView>,
    /// `trusted`, or why the chain is not.
    pub chain_validation: String,
    /// Whether the server stapled an OCSP response.
    pub ocsp_stapled: bool,
    /// What a stapled response says about the leaf.
    pub ocsp_stapled_status: Option<ocsp::OcspStatus>,
    /// When and why, if the stapled response says revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ocsp_stapled_revocation: Option<ocsp::Revocation>,
    /// The leaf's own OCSP responder, when it names one.
    pub ocsp_responder: Option<ocsp::OcspAnswer>,
    /// What is wrong, most severe first.
    pub findings: Vec<TlsFinding>,
    /// `A+`, `A`, `B`, `C` or `F`.
    pub grade: String,
}
/// One ClientHello on a fresh connection.
async fn probe(
    address: SocketAddr,
    options: &TlsOptions,
    version: Version,
    suites: &[u16],
    name: &str,
) -> Result<ServerAnswer, CheckError> {
    let mut stream = connect(address, options.starttls, options.timeout).await?;
    hello::exchange(&mut stream, &client_hello(version, suites, Some(name)), options.timeout)
        .await
        .map_err(|e| CheckError::Other(format!("{}: {e}", version.label())))
}

fn offered(version: Version) -> Vec<u16> {
    if version == Version::Tls13 { suites::TLS13_SUITES.to_vec() } else { suites::legacy_suites() }
}

/// Analyses the TLS server at `host:port`.
pub async fn analyse(host: &str, port: u16, options: &TlsOptions) -> Result<TlsReport, CheckError> {
    let ip: IpAddr = resolve(host).await?[0];
    let address = SocketAddr::new(ip, port);
    let name = options.server_name.clone().unwrap_or_else(|| host.trim_matches(['[', ']']).to_string());

    let mut protocols = BTreeMap::new();
    let mut cipher_suites = BTreeMap::new();
    let mut server_preference = BTreeMap::new();
    let mut groups = BTreeSet::new();
    let mut dh_bits = None;
    let mut clear_chain: Vec<Vec<u8>> = Vec::new();
    let mut stapled_response: Option<Vec<u8>> = None;
    let mut answered = false;
    for version in Version::ALL {
        let mut remaining = offered(version);
        let mut accepted = Vec::new();
        while !remaining.is_empty() {
            let answer = probe(address, options, version, &remaining, &name).await?;
            answered |= answer.accepted.is_some() || answer.alert.is_some();
            let Some((chosen_version, suite)) = answer.accepted.filter(|(v, s)| *v == version && remaining.contains(s))
            else {
                break;
            };
            groups.extend(answer.group);
            dh_bits = answer.dh_bits.map(|bits| dh_bits.map_or(bits, |known: u32| known.min(bits))).or(dh_bits);
            if clear_chain.is_empty() && !answer.certificates.is_empty() && chosen_version != Version::Tls13 {
                clear_chain = answer.certificates.clone();
            }
            if stapled_response.is_none() {
                stapled_response = answer.ocsp_response.clone();
            }
            accepted.push(suite);
            remaining.retain(|s| *s != suite);
        }
        protocols.insert(version.label().to_string(), !accepted.is_empty());
        if let [first, second, ..] = accepted[..] {
            // Offered in both orders: a server with its own preference picks the same one.
            let forward = probe(address, options, version, &[first, second], &name).await?;
            let reverse = probe(address, options, version, &[second, first], &name).await?;
            let picked = |a: &ServerAnswer| a.accepted.map(|(_, s)| s);
            server_preference.insert(
                version.label().to_string(),
                picked(&forward).is_some() && picked(&forward) == picked(&reverse),
            );
        }
        if !accepted.is_empty() {
            let views = accepted
                .iter()
                .map(|code| SuiteView {
                    code: format!("0x{code:04X}"),
                    name: suites::name(*code),
                    forward_secrecy: suites::forward_secret(*code),
                    weakness: suites::weakness(*code).map(str::to_string),
                })
                .collect();
            cipher_suites.insert(version.label().to_string(), views);
        }
    }
    if !answered {
        return Err(CheckError::Other(format!(
            "{address} does not speak TLS (no ServerHello or alert to any ClientHello)"
        )));
    }

    // The chain: from rustls (which also sees TLS 1.3 and staples), else from the clear
    // TLS ≤ 1.2 handshake.
    let roots = root_store(options.ca_file.as_ref())?;
    let captured = capture_chain(address, options, &name, Arc::clone(&roots)).await;
    let (chain_der, stapled) = match captured {
        Some((chain, ocsp)) if !chain.is_empty() => (chain, ocsp),
        _ => (clear_chain, None),
    };
    let stapled_response = stapled.or(stapled_response);
    let ocsp_responder = match chain_der.first() {
        Some(leaf) if ocsp::responder_url(leaf).is_some() => {
            Some(ocsp::ask(leaf, chain_der.get(1).map(Vec::as_slice), options.timeout).await)
        }
        _ => None,
    };
    let stapled_single = stapled_response.as_deref().and_then(|r| ocsp::parse_single_response(r).ok());
    let chain_validation = validate(&chain_der, &name, roots);
    let chain: Vec<CertificateView> = chain_der.iter().filter_map(|der| certificate_view(der)).collect();

    let mut report = TlsReport {
        target: format!("{host}:{port}"),
        address: address.to_string(),
        server_name: name,
        protocols,
        cipher_suites,
        server_preference,
        groups: groups.into_iter().map(hello::group_name).collect(),
        dh_bits,
        chain,
        chain_validation,
        ocsp_stapled: stapled_response.is_some(),
        ocsp_stapled_status: stapled_single.as_ref().map(|single| single.status.clone()),
        ocsp_stapled_revocation: stapled_single.and_then(|single| single.revocation),
        ocsp_responder,
        findings: Vec::new(),
        grade: String::new(),
    };
    report.findings = findings(&report, options);
    report.grade = grade(&report);
    Ok(report)
}
/// A TLS analysis as a scheduled check: critical on a critical finding, warning on a warning.
#[derive(Debug, Clone)]
pub struct TlsCheck {
    /// The check's name in the configuration.
    pub id: String,
    /// The server's host name or address.
    pub host: String,
    /// Its TCP port.
    pub port: u16,
    /// What to analyse and how to judge it.
    pub options: TlsOptions,
}

/// A `tls` check as configured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsSpec {
    /// The server's name or address.
    pub host: Option<String>,
    /// TCP port (443).
    pub port: Option<u16>,
    /// SNI and the name the certificate must match; the host when unset.
    pub server_name: Option<String>,
    /// `smtp`, `imap` or `pop3` to upgrade a plain connection first.
    pub starttls: Option<String>,
    /// A PEM file of CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Warn when the certificate expires within this many days (30).
    pub cert_warning_days: Option<i64>,
}

impl TlsSpec {
    pub(crate) fn build(self, id: String, kind: &str) -> Result<Box<dyn Check>, CheckError> {
        let defaults = TlsOptions::default();
        let options = TlsOptions {
            server_name: self.server_name,
            starttls: self.starttls.as_deref().map(str::parse).transpose()?,
            ca_file: self.ca_file,
            warn_days: self.cert_warning_days.unwrap_or(defaults.warn_days),
            ..defaults
        };
        let host = crate::spec::required(self.host, kind, "host")?;
        Ok(Box::new(TlsCheck { id, host, port: self.port.unwrap_or(443), options }))
    }
}

#[async_trait]
impl Check for TlsCheck {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "tls"
    }

    fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    async fn execute(&self) -> Result<Outcome, CheckError> {
        let report = analyse(&self.host, self.port, &self.options).await?;
        let worst = report.findings.iter().map(|f| f.severity).max();
        let status = match worst {
            Some(FindingSeverity::Critical) => CheckStatus::Critical,
            Some(FindingSeverity::Warning) => CheckStatus::Warning,
            _ => CheckStatus::Ok,
        };
        let score = match report.grade.as_str() {
            "A+" => 5.0,
            "A" => 4.0,
            "B" => 3.0,
            "C" => 2.0,
            _ => 0.0,
        };
        let weak = report.cipher_suites.values().flatten().filter(|s| s.weakness.is_some()).count();
        let mut samples = vec![
            ("tls_grade_score".to_string(), Labels::new(), score),
            ("tls_weak_cipher_suites".to_string(), Labels::new(), weak as f64),
            ("tls_chain_trusted".to_string(), Labels::new(), f64::from(u8::from(report.chain_validation == "trusted"))),
        ];
        if let Some(leaf) = report.chain.first() {
            samples.push(("tls_cert_days_to_expiry".to_string(), Labels::new(), leaf.days_to_expiry));
        }
        for (version, enabled) in &report.protocols {
            let labels = Labels::from([("version".to_string(), version.to_string())]);
            samples.push(("tls_protocol_enabled".to_string(), labels, f64::from(u8::from(*enabled))));
        }
        Ok(Outcome { status, details: report.into(), samples })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_keep_their_json() {
        let suite = |code: &str, name: &str, forward_secrecy: bool, weakness: Option<&str>| SuiteView {
            code: code.into(),
            name: name.into(),
            forward_secrecy,
            weakness: weakness.map(str::to_string),
        };
        let report = TlsReport {
            target: "localhost:8443".into(),
            address: "127.0.0.1:8443".into(),
            server_name: "localhost".into(),
            protocols: BTreeMap::from([("TLSv1.2".to_string(), true), ("TLSv1.3".to_string(), false)]),
            cipher_suites: BTreeMap::from([(
                "TLSv1.2".to_string(),
                vec![
                    suite("0xC02F", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", true, None),
                    suite("0x000A", "TLS_RSA_WITH_3DES_EDE_CBC_SHA", false, Some("3DES (Sweet32)")),
                ],
            )]),
            server_preference: BTreeMap::from([("TLSv1.2".to_string(), true)]),
            groups: vec!["x25519".into()],
            dh_bits: None,
            chain: vec![CertificateView {
                subject: "CN=localhost".into(),
                issuer: "CN=Test CA".into(),
                serial: "01:02".into(),
                sans: vec!["DNS:localhost".into()],
                not_before_unix: 1_700_000_000,
                not_after_unix: 1_800_000_000,
                days_to_expiry: 30.5,
                key_type: "EC".into(),
                key_bits: 256,
                signature_algorithm: "ecdsa-with-SHA256".into(),
                self_signed: false,
            }],
            chain_validation: "trusted".into(),
            ocsp_stapled: true,
            ocsp_stapled_status: Some(ocsp::OcspStatus::Revoked),
            ocsp_stapled_revocation: Some(ocsp::Revocation {
                time: "2024-01-01T00:00:00Z".into(),
                time_unix: 1_704_067_200,
                reason: None,
            }),
            ocsp_responder: Some(ocsp::OcspAnswer {
                responder: Some("http://127.0.0.1:8888".into()),
                status: None,
                revocation: None,
                error: Some("connection refused".into()),
            }),
            findings: vec![TlsFinding { severity: FindingSeverity::Warning, title: "weak suites".into() }],
            grade: "B".into(),
        };
        crate::details::assert_wire(
            "tls",
            report.clone().into(),
            serde_json::json!({
                "target": "localhost:8443", "address": "127.0.0.1:8443", "server_name": "localhost",
                "protocols": {"TLSv1.2": true, "TLSv1.3": false},
                "cipher_suites": {"TLSv1.2": [
                    {"code": "0xC02F", "name": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "forward_secrecy": true},
                    {"code": "0x000A", "name": "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "forward_secrecy": false,
                     "weakness": "3DES (Sweet32)"},
                ]},
                "server_preference": {"TLSv1.2": true},
                "groups": ["x25519"], "dh_bits": null,
                "chain": [{
                    "subject": "CN=localhost", "issuer": "CN=Test CA", "serial": "01:02", "sans": ["DNS:localhost"],
                    "not_before_unix": 1_700_000_000, "not_after_unix": 1_800_000_000, "days_to_expiry": 30.5,
                    "key_type": "EC", "key_bits": 256, "signature_algorithm": "ecdsa-with-SHA256", "self_signed": false,
                }],
                "chain_validation": "trusted", "ocsp_stapled": true, "ocsp_stapled_status": "revoked",
                "ocsp_stapled_revocation": {"time": "2024-01-01T00:00:00Z", "time_unix": 1_704_067_200},
                "ocsp_responder": {"responder": "http://127.0.0.1:8888", "status": null, "error": "connection refused"},
                "findings": [{"severity": "warning", "title": "weak suites"}],
                "grade": "B",
            }),
        );
        let quiet = TlsReport {
            dh_bits: Some(2048),
            ocsp_stapled: false,
            ocsp_stapled_status: None,
            ocsp_stapled_revocation: None,
            ocsp_responder: None,
            chain: Vec::new(),
            findings: Vec::new(),
            ..report
        };
        let json = crate::details::CheckDetails::from(quiet).to_json();
        assert_eq!(json["dh_bits"], 2048);
        assert!(json["ocsp_responder"].is_null() && json["ocsp_stapled_status"].is_null());
        assert!(json.get("ocsp_stapled_revocation").is_none(), "omitted when there is none");
    }
}
