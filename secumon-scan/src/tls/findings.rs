//! Findings: what is wrong with a server's TLS (expiry, trust, weak keys, signatures,
//! protocols and suites, DH parameters, OCSP), each with a severity.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{SuiteView, TlsOptions, TlsReport, ocsp};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingSeverity {
    /// Worth knowing; does not change the status.
    Info,
    /// Makes the check a warning.
    Warning,
    /// Makes the check critical.
    Critical,
}

impl FindingSeverity {
    /// `info`, `warning` or `critical`, as the details write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// One thing found wrong (or worth noting) in a server's TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TlsFinding {
    /// How bad it is.
    pub severity: FindingSeverity,
    /// What it is, as one line.
    pub title: String,
}
pub(super) fn findings(report: &TlsReport, options: &TlsOptions) -> Vec<TlsFinding> {
    use FindingSeverity::{Critical, Info, Warning};
    let mut out = Vec::new();
    let mut add = |severity, title: String| out.push(TlsFinding { severity, title });
    if let Some(leaf) = report.chain.first() {
        if leaf.days_to_expiry < 0.0 {
            add(Critical, format!("certificate expired {:.0} days ago", -leaf.days_to_expiry));
        } else if leaf.days_to_expiry < options.critical_days as f64 {
            add(Critical, format!("certificate expires in {:.1} days", leaf.days_to_expiry));
        } else if leaf.days_to_expiry < options.warn_days as f64 {
            add(Warning, format!("certificate expires in {:.0} days", leaf.days_to_expiry));
        }
        if leaf.self_signed {
            add(Critical, "self-signed certificate".into());
        }
        match (leaf.key_type.as_str(), leaf.key_bits) {
            ("RSA", bits) if bits < 2048 => add(Critical, format!("weak RSA key: {bits} bits")),
            ("EC", bits) if bits < 256 => add(Warning, format!("weak EC key: {bits} bits")),
            _ => {}
        }
    } else {
        add(Critical, "no certificate received".into());
    }
    let validation = report.chain_validation.to_lowercase();
    if validation.contains("notvalidforname") || validation.contains("not valid for name") {
        add(Critical, format!("certificate does not match {}", report.server_name));
    } else if report.chain_validation != "trusted" && !report.chain.first().is_some_and(|c| c.self_signed) {
        add(Critical, format!("untrusted chain: {}", report.chain_validation));
    }
    // A root's own signature does not matter; every certificate a client checks does.
    for certificate in report.chain.iter().filter(|c| !c.self_signed) {
        let algorithm = certificate.signature_algorithm.to_lowercase();
        if algorithm.contains("md5") {
            add(Critical, format!("MD5 signature on {}", certificate.subject));
        } else if algorithm.contains("sha1") {
            add(Warning, format!("SHA-1 signature on {}", certificate.subject));
        }
    }
    for (version, severity) in [("SSLv3", Critical), ("TLSv1.0", Warning), ("TLSv1.1", Warning)] {
        if report.protocols.get(version) == Some(&true) {
            add(severity, format!("{version} enabled"));
        }
    }
    if report.protocols.get("TLSv1.2") != Some(&true) && report.protocols.get("TLSv1.3") != Some(&true) {
        add(Critical, "neither TLS 1.2 nor TLS 1.3 is accepted".into());
    }
    let accepted: Vec<&SuiteView> = report.cipher_suites.values().flatten().collect();
    let mut weak: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for suite in &accepted {
        if let Some(why) = suite.weakness.as_deref() {
            weak.entry(why).or_default().push(&suite.name);
        }
    }
    for (why, names) in weak {
        let severity = if why.contains("3DES") || why.contains("MD5") { Warning } else { Critical };
        let mut names = names;
        names.sort();
        names.dedup();
        add(severity, format!("weak suites ({why}): {}", names.join(", ")));
    }
    if !accepted.is_empty() && !accepted.iter().any(|s| s.forward_secrecy) {
        add(Warning, "no forward secrecy: no ECDHE/DHE suite accepted".into());
    }
    if let Some(bits) = report.dh_bits {
        if bits < 1024 {
            add(Critical, format!("DH parameters of {bits} bits"));
        } else if bits < 2048 {
            add(Warning, format!("DH parameters of {bits} bits"));
        }
    }
    if !report.ocsp_stapled {
        add(Info, "no OCSP response stapled".into());
    }
    let responder = report.ocsp_responder.as_ref();
    if report.ocsp_stapled_status == Some(ocsp::OcspStatus::Revoked)
        || responder.and_then(|r| r.status.as_ref()) == Some(&ocsp::OcspStatus::Revoked)
    {
        let revocation = responder.and_then(|r| r.revocation.as_ref()).or(report.ocsp_stapled_revocation.as_ref());
        match revocation {
            Some(revocation) => add(Critical, format!("certificate revoked (OCSP): {revocation}")),
            None => add(Critical, "certificate revoked (OCSP)".into()),
        }
    }
    if let Some(error) = responder.and_then(|r| r.error.as_ref()) {
        add(Info, format!("OCSP responder not answering: {error}"));
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}
