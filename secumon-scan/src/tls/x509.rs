//! The X.509 view: what the analysis reports of each certificate of the chain (subject,
//! issuer, SANs, validity, key, signature), read with x509-parser.

use serde::{Deserialize, Serialize};

/// One certificate of the chain, as the details show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CertificateView {
    /// The subject's distinguished name.
    pub subject: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// The serial number, hex bytes joined by colons.
    pub serial: String,
    /// The subject alternative names (`DNS:example.com`...).
    pub sans: Vec<String>,
    /// Valid from, in Unix seconds.
    pub not_before_unix: i64,
    /// Valid until, in Unix seconds.
    pub not_after_unix: i64,
    /// Days until then (negative once expired).
    pub days_to_expiry: f64,
    /// `RSA`, `EC`, `DSA`, or the key algorithm's OID.
    pub key_type: String,
    /// The key size in bits (0 when unknown).
    pub key_bits: u32,
    /// The signature algorithm (`sha256WithRSAEncryption`...).
    pub signature_algorithm: String,
    /// Whether it signs itself (issuer is subject, and the signature verifies).
    pub self_signed: bool,
}
pub(super) fn certificate_view(der: &[u8]) -> Option<CertificateView> {
    use x509_parser::public_key::PublicKey;
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let not_after = certificate.validity().not_after.timestamp();
    let now = secumon_core::now_ms() as f64 / 1000.0;
    let sans = certificate
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| ext.value.general_names.iter().map(|n| n.to_string()).collect())
        .unwrap_or_default();
    let (key_type, key_bits) = match certificate.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => ("RSA".to_string(), rsa.key_size() as u32),
        Ok(PublicKey::EC(ec)) => ("EC".to_string(), ec.key_size() as u32),
        Ok(PublicKey::DSA(_)) => ("DSA".to_string(), 0),
        Ok(_) | Err(_) => (certificate.public_key().algorithm.algorithm.to_id_string(), 0),
    };
    let subject = certificate.subject().to_string();
    let issuer = certificate.issuer().to_string();
    Some(CertificateView {
        self_signed: subject == issuer && certificate.verify_signature(None).is_ok(),
        subject,
        issuer,
        serial: certificate.raw_serial_as_string(),
        sans,
        not_before_unix: certificate.validity().not_before.timestamp(),
        not_after_unix: not_after,
        days_to_expiry: (not_after as f64 - now) / 86_400.0,
        key_type,
        key_bits,
        signature_algorithm: signature_name(&certificate.signature_algorithm.algorithm.to_id_string()),
    })
}

fn signature_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "rsassaPss",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.3.101.112" => "Ed25519",
        other => other,
    }
    .to_string()
}
