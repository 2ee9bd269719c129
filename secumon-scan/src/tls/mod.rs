//! Deep TLS analysis of one server: which protocol versions and cipher suites it accepts
//! (crafted ClientHellos, no OpenSSL), in its order of preference, the key exchange groups
//! the handshakes show, the certificate chain (subject, issuer, SANs, validity, key,
//! signature), its validation against the system roots or a given CA file and the host
//! name, OCSP stapling; STARTTLS for SMTP, IMAP and POP3. Findings get severities and the
//! whole an overall grade.

mod hello;
pub mod ocsp;
pub mod suites;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use secumon_core::{CheckStatus, Labels};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub use hello::{ServerAnswer, Version, client_hello, parse_answer};

use crate::check::{Check, CheckError, Outcome, resolve};

/// A plaintext protocol upgraded to TLS before the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTls {
    Smtp,
    Imap,
    Pop3,
}

impl std::str::FromStr for StartTls {
    type Err = CheckError;

    fn from_str(text: &str) -> Result<Self, CheckError> {
        match text.to_ascii_lowercase().as_str() {
            "smtp" => Ok(Self::Smtp),
            "imap" => Ok(Self::Imap),
            "pop3" => Ok(Self::Pop3),
            _ => Err(CheckError::Invalid(format!("STARTTLS protocol {text:?} is not smtp, imap or pop3"))),
        }
    }
}

/// What to analyse and how to judge it.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// SNI and the name the certificate must match; the host when unset.
    pub server_name: Option<String>,
    pub starttls: Option<StartTls>,
    /// PEM CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Per connection.
    pub timeout: Duration,
    pub warn_days: i64,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SuiteView {
    pub code: String,
    pub name: String,
    pub forward_secrecy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weakness: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CertificateView {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub sans: Vec<String>,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    pub days_to_expiry: f64,
    pub key_type: String,
    pub key_bits: u32,
    pub signature_algorithm: String,
    pub self_signed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingSeverity {
    Info,
    Warning,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TlsFinding {
    pub severity: FindingSeverity,
    pub title: String,
}

/// Everything learnt about one server: the details of a `tls` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TlsReport {
    pub target: String,
    pub address: String,
    pub server_name: String,
    /// Each version and whether the server accepts it.
    pub protocols: BTreeMap<String, bool>,
    /// Accepted suites per version, in the order the server picked them from everything
    /// offered: its own preference when it enforces one, our (ascending) order otherwise.
    pub cipher_suites: BTreeMap<String, Vec<SuiteView>>,
    /// Per version with two or more suites: whether the server picks by its own preference.
    pub server_preference: BTreeMap<String, bool>,
    pub groups: Vec<String>,
    pub dh_bits: Option<u32>,
    pub chain: Vec<CertificateView>,
    /// `trusted`, or why the chain is not.
    pub chain_validation: String,
    pub ocsp_stapled: bool,
    /// What a stapled response says about the leaf.
    pub ocsp_stapled_status: Option<ocsp::OcspStatus>,
    /// When and why, if the stapled response says revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ocsp_stapled_revocation: Option<ocsp::Revocation>,
    /// The leaf's own OCSP responder, when it names one.
    pub ocsp_responder: Option<ocsp::OcspAnswer>,
    pub findings: Vec<TlsFinding>,
    pub grade: String,
}

/// Opens a connection, upgraded with STARTTLS when asked.
async fn connect(address: SocketAddr, starttls: Option<StartTls>, timeout: Duration) -> Result<TcpStream, CheckError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| CheckError::Other(format!("connecting to {address} timed out")))?
        .map_err(|e| CheckError::Other(format!("cannot connect to {address}: {e}")))?;
    match starttls {
        None => Ok(stream),
        Some(protocol) => tokio::time::timeout(timeout, upgrade(stream, protocol))
            .await
            .map_err(|_| CheckError::Other(format!("{protocol:?} STARTTLS dialogue timed out")))?,
    }
}

async fn upgrade(stream: TcpStream, protocol: StartTls) -> Result<TcpStream, CheckError> {
    let mut reader = BufReader::new(stream);
    let fail = |what: String| CheckError::Other(format!("STARTTLS ({protocol:?}): {what}"));
    // A reply's last line: SMTP continues with `250-`, ends with `250 `.
    async fn line(reader: &mut BufReader<TcpStream>) -> Result<String, CheckError> {
        let mut text = String::new();
        let read = reader.read_line(&mut text).await?;
        if read == 0 {
            return Err(CheckError::Other("the server closed the connection during STARTTLS".into()));
        }
        Ok(text.trim_end().to_string())
    }
    async fn reply(reader: &mut BufReader<TcpStream>) -> Result<String, CheckError> {
        loop {
            let text = line(reader).await?;
            if text.len() < 4 || text.as_bytes()[3] != b'-' {
                return Ok(text);
            }
        }
    }
    match protocol {
        StartTls::Smtp => {
            let greeting = reply(&mut reader).await?;
            if !greeting.starts_with("220") {
                return Err(fail(format!("greeting {greeting:?}")));
            }
            reader.get_mut().write_all(b"EHLO secumon.probe\r\n").await?;
            let ehlo = reply(&mut reader).await?;
            if !ehlo.starts_with("250") {
                return Err(fail(format!("EHLO answered {ehlo:?}")));
            }
            reader.get_mut().write_all(b"STARTTLS\r\n").await?;
            let ready = reply(&mut reader).await?;
            if !ready.starts_with("220") {
                return Err(fail(format!("STARTTLS answered {ready:?}")));
            }
        }
        StartTls::Imap => {
            let greeting = line(&mut reader).await?;
            if !greeting.starts_with("* OK") {
                return Err(fail(format!("greeting {greeting:?}")));
            }
            reader.get_mut().write_all(b"a1 STARTTLS\r\n").await?;
            loop {
                let answer = line(&mut reader).await?;
                if answer.starts_with("a1 OK") {
                    break;
                }
                if answer.starts_with("a1 ") {
                    return Err(fail(format!("STARTTLS answered {answer:?}")));
                }
            }
        }
        StartTls::Pop3 => {
            let greeting = line(&mut reader).await?;
            if !greeting.starts_with("+OK") {
                return Err(fail(format!("greeting {greeting:?}")));
            }
            reader.get_mut().write_all(b"STLS\r\n").await?;
            let answer = line(&mut reader).await?;
            if !answer.starts_with("+OK") {
                return Err(fail(format!("STLS answered {answer:?}")));
            }
        }
    }
    if !reader.buffer().is_empty() {
        return Err(fail("the server sent data before the TLS handshake".into()));
    }
    Ok(reader.into_inner())
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

/// The CAs of `ca_file`, or the system's when none is given.
pub(crate) fn root_store(ca_file: Option<&PathBuf>) -> Result<Arc<rustls::RootCertStore>, CheckError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let invalid = |e: String| CheckError::Invalid(format!("CA file {}: {e}", path.display()));
            for certificate in CertificateDer::pem_file_iter(path).map_err(|e| invalid(e.to_string()))? {
                roots.add(certificate.map_err(|e| invalid(e.to_string()))?).map_err(|e| invalid(e.to_string()))?;
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
        }
    }
    Ok(Arc::new(roots))
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why the chain is not trusted for `name`, or `trusted`.
fn validate(chain: &[Vec<u8>], name: &str, roots: Arc<rustls::RootCertStore>) -> String {
    let Some((leaf, intermediates)) = chain.split_first() else { return "no certificate received".into() };
    let verifier = match rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider()).build() {
        Ok(verifier) => verifier,
        Err(error) => return format!("cannot validate: {error}"),
    };
    let Ok(server_name) = ServerName::try_from(name.to_string()) else {
        return format!("{name:?} is not a server name");
    };
    let intermediates: Vec<CertificateDer<'_>> =
        intermediates.iter().map(|c| CertificateDer::from(c.as_slice())).collect();
    match verifier.verify_server_cert(
        &CertificateDer::from(leaf.as_slice()),
        &intermediates,
        &server_name,
        &[],
        UnixTime::now(),
    ) {
        Ok(_) => "trusted".into(),
        Err(error) => error.to_string(),
    }
}

/// A chain, leaf first, and the stapled OCSP response if there was one.
type Presented = (Vec<Vec<u8>>, Option<Vec<u8>>);

/// Records what the server presented and lets the handshake go on whatever it is.
#[derive(Debug)]
struct Recorder {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: Mutex<Option<Presented>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity).chain(intermediates).map(|c| c.as_ref().to_vec()).collect();
        let stapled = (!ocsp_response.is_empty()).then(|| ocsp_response.to_vec());
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some((chain, stapled));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The chain and the stapled OCSP response, if any, through a real rustls handshake.
async fn capture_chain(
    address: SocketAddr,
    options: &TlsOptions,
    name: &str,
    roots: Arc<rustls::RootCertStore>,
) -> Option<Presented> {
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider()).build().ok()?;
    let recorder = Arc::new(Recorder { inner, seen: Mutex::new(None) });
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let stream = connect(address, options.starttls, options.timeout).await.ok()?;
    let server_name = ServerName::try_from(name.to_string()).ok()?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let _ = tokio::time::timeout(options.timeout, connector.connect(server_name, stream)).await;
    recorder.seen.lock().unwrap_or_else(|p| p.into_inner()).take()
}

fn certificate_view(der: &[u8]) -> Option<CertificateView> {
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

fn findings(report: &TlsReport, options: &TlsOptions) -> Vec<TlsFinding> {
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

/// A: no warning; A+: and TLS 1.3 with forward secrecy only; B: one or two warnings;
/// C: more; F: anything critical.
fn grade(report: &TlsReport) -> String {
    let count = |severity| report.findings.iter().filter(|f| f.severity == severity).count();
    let all_forward_secret = report.cipher_suites.values().flatten().all(|s| s.forward_secrecy);
    match (count(FindingSeverity::Critical), count(FindingSeverity::Warning)) {
        (1.., _) => "F",
        (0, 3..) => "C",
        (0, 1..=2) => "B",
        (0, 0) if report.protocols.get("TLSv1.3") == Some(&true) && all_forward_secret => "A+",
        (0, 0) => "A",
    }
    .to_string()
}

/// A TLS analysis as a scheduled check: critical on a critical finding, warning on a warning.
#[derive(Debug, Clone)]
pub struct TlsCheck {
    pub id: String,
    pub host: String,
    pub port: u16,
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
