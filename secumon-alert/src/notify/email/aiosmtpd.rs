//! Tests of the e-mail channel against a real SMTP server: aiosmtpd (from PyPI, installed into
//! `target/pyvenv` by `scripts/test`) on loopback, with a certificate from a test CA.
//! STARTTLS and implicit TLS, AUTH PLAIN and LOGIN, a wrong password, a refused recipient
//! and an untrusted certificate; the message the server received is read by Python's own
//! e-mail parser (headers decoded, both parts) and its raw bytes are checked too.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{EmailNotifier, SmtpSecurity, SmtpSettings};
use crate::engine::{AlertState, Transition};
use crate::group::Notification;
use crate::notify::Notifier;
use crate::rule::AlertSeverity;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// Non-ASCII in the rule's summary: the subject must travel as an RFC 2047 encoded word.
const SUMMARY: &str = "/ sur web-1 à 97 % — plein <vite>";

struct SmtpServer {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    let python = std::env::var_os("SECUMON_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyvenv/bin/python"));
    let found = Command::new(&python).args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success());
    assert!(found, "{} with aiosmtpd is needed: run scripts/test, which installs it", python.display());
    python
}

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
}

/// A test CA and a server certificate for 127.0.0.1 signed by it.
fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "SecuMon Test Mail CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    Pki { ca_pem: ca.pem(), dir }
}

fn start(pki: &Pki, mode: &str, login_only: bool) -> SmtpServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = pki.dir.path().join(format!("{mode}-{port}"));
    std::fs::create_dir(&out).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aiosmtpd_server.py");
    let mut command = Command::new(python());
    command.arg(script).arg(port.to_string()).arg(mode);
    command.arg(pki.dir.path().join("cert.pem")).arg(pki.dir.path().join("key.pem")).arg(&out);
    if login_only {
        command.arg("login-only");
    }
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let server = SmtpServer { child, port, out };
    assert_eq!(line.trim(), "READY", "aiosmtpd did not start");
    server
}

fn notifier(
    server: &SmtpServer,
    security: SmtpSecurity,
    password: &str,
    to: &[&str],
    ca: Option<&str>,
) -> EmailNotifier {
    let smtp = SmtpSettings {
        host: "127.0.0.1",
        port: server.port,
        security,
        username: Some("alerts"),
        password: Some(password),
    };
    let to = to.iter().map(|t| t.parse().unwrap()).collect();
    EmailNotifier::trusting(smtp, "SecuMon Alerts <alerts@example.com>".parse().unwrap(), to, ca.map(str::as_bytes))
        .unwrap()
}

fn notification() -> Notification {
    Notification::single(Transition {
        rule: "DiskFull".into(),
        labels: BTreeMap::from([("host".to_string(), "web-1".to_string())]),
        from: AlertState::Pending,
        to: AlertState::Firing,
        at_ms: 1,
        value: 0.97,
        severity: AlertSeverity::Critical,
        annotations: BTreeMap::from([("summary".to_string(), SUMMARY.to_string())]),
        channels: vec!["mail".into()],
        silenced: false,
        escalation_level: 0,
    })
}

/// The messages the server accepted, as Python read them, and their raw bytes.
fn received(server: &SmtpServer) -> Vec<(serde_json::Value, Vec<u8>)> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(&server.out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|json| {
            let parsed = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
            (parsed, std::fs::read(json.with_extension("eml")).unwrap())
        })
        .collect()
}

fn auth_log(server: &SmtpServer) -> String {
    std::fs::read_to_string(server.out.join("auth.log")).unwrap_or_default()
}

fn check_message(parsed: &serde_json::Value, raw: &[u8], to: &[&str]) {
    assert_eq!(parsed["tls"], true, "{parsed}");
    assert_eq!(parsed["mail_from"], "alerts@example.com");
    assert_eq!(parsed["rcpt_tos"], serde_json::json!(to));
    assert_eq!(parsed["subject"], format!("[FIRING] DiskFull (Critical): {SUMMARY}"), "decoded as sent");
    assert_eq!(parsed["from"], "SecuMon Alerts <alerts@example.com>");
    assert_eq!(parsed["to"], to.join(", "));
    assert_eq!(parsed["content_type"], "multipart/alternative");
    let text = parsed["text"].as_str().expect("a text/plain part");
    assert!(text.contains(SUMMARY) && text.contains("- host=web-1 (value 0.97)"), "{text}");
    let html = parsed["html"].as_str().expect("a text/html part");
    assert!(html.contains("background:#d00000"), "critical is red: {html}");
    assert!(html.contains("97 % — plein &lt;vite&gt;"), "HTML escaped, UTF-8 kept: {html}");
    // Headers travel as 7-bit ASCII: the subject as an encoded word.
    let head = &raw[..raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len())];
    assert!(head.is_ascii(), "{}", String::from_utf8_lossy(head));
    let head = String::from_utf8_lossy(head);
    let subject = head.split("\r\nSubject: ").nth(1).and_then(|s| s.split("\r\n").next()).unwrap_or_default();
    assert!(subject.to_ascii_lowercase().contains("=?utf-8?b?"), "the non-ASCII words encoded: {head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_auth_plain_delivers_both_parts() {
    let pki = pki();
    let server = start(&pki, "starttls", false);
    let to = ["ops@example.com", "oncall@example.com"];
    notifier(&server, SmtpSecurity::Starttls, "s3cret", &to, Some(&pki.ca_pem)).send(&notification()).await.unwrap();
    assert_eq!(auth_log(&server), "PLAIN accepted\n");
    let messages = received(&server);
    assert_eq!(messages.len(), 1);
    check_message(&messages[0].0, &messages[0].1, &to);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_auth_login_when_the_server_offers_only_login() {
    let pki = pki();
    let server = start(&pki, "starttls", true);
    let to = ["ops@example.com"];
    notifier(&server, SmtpSecurity::Starttls, "s3cret", &to, Some(&pki.ca_pem)).send(&notification()).await.unwrap();
    assert_eq!(auth_log(&server), "LOGIN accepted\n");
    let messages = received(&server);
    assert_eq!(messages.len(), 1);
    check_message(&messages[0].0, &messages[0].1, &to);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_delivers() {
    let pki = pki();
    let server = start(&pki, "tls", false);
    let to = ["ops@example.com"];
    notifier(&server, SmtpSecurity::Tls, "s3cret", &to, Some(&pki.ca_pem)).send(&notification()).await.unwrap();
    assert_eq!(auth_log(&server), "PLAIN accepted\n");
    let messages = received(&server);
    assert_eq!(messages.len(), 1);
    check_message(&messages[0].0, &messages[0].1, &to);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_error_and_nothing_is_sent() {
    let pki = pki();
    let server = start(&pki, "starttls", false);
    let notifier = notifier(&server, SmtpSecurity::Starttls, "wrong", &["ops@example.com"], Some(&pki.ca_pem));
    let error = notifier.send(&notification()).await.unwrap_err().to_string();
    assert!(error.contains("535"), "the server's refusal is reported: {error}");
    assert_eq!(auth_log(&server), "PLAIN refused\n");
    assert!(received(&server).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_recipient_is_an_error() {
    let pki = pki();
    let server = start(&pki, "starttls", false);
    let to = ["ops@example.com", "nobody@example.com"];
    let error = notifier(&server, SmtpSecurity::Starttls, "s3cret", &to, Some(&pki.ca_pem))
        .send(&notification())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("550") && error.contains("recipient refused"), "{error}");
    assert!(received(&server).is_empty(), "a message is not half-delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_untrusted_ca_is_refused_before_auth() {
    let pki = pki();
    let server = start(&pki, "starttls", false);
    let notifier = notifier(&server, SmtpSecurity::Starttls, "s3cret", &["ops@example.com"], None);
    let error = notifier.send(&notification()).await.unwrap_err().to_string();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert_eq!(auth_log(&server), "", "no credentials sent over an untrusted connection");
    assert!(received(&server).is_empty());
}

/// The channel as configured in YAML: `ca_file` names the test CA, and the relay's
/// certificate is trusted through it; an unreadable or bogus file is refused at build
/// time, naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_trusts_the_ca_file_its_yaml_names() {
    let pki = pki();
    let server = start(&pki, "starttls", false);
    let ca_file = pki.dir.path().join("relay-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let yaml = |ca_file: &Path| {
        format!(
            "type: email\nsmtp_host: 127.0.0.1\nsmtp_port: {}\nsecurity: starttls\nusername: alerts\n\
             password: s3cret\nfrom: SecuMon Alerts <alerts@example.com>\nto: [ops@example.com]\nca_file: {}\n",
            server.port,
            ca_file.display()
        )
    };
    let config: crate::notify::ChannelConfig = secumon_core::config::parse_yaml(&yaml(&ca_file), "rules.yaml").unwrap();
    config.build().unwrap().send(&notification()).await.unwrap();
    assert_eq!(auth_log(&server), "PLAIN accepted\n");
    let messages = received(&server);
    assert_eq!(messages.len(), 1);
    check_message(&messages[0].0, &messages[0].1, &["ops@example.com"]);

    let missing = pki.dir.path().join("no-such-ca.pem");
    let config: crate::notify::ChannelConfig = secumon_core::config::parse_yaml(&yaml(&missing), "rules.yaml").unwrap();
    let error = config.build().err().expect("a missing ca_file is refused").to_string();
    assert!(error.contains("cannot read ca_file") && error.contains("no-such-ca.pem"), "{error}");
    let bogus = pki.dir.path().join("bogus.pem");
    std::fs::write(&bogus, "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n").unwrap();
    let config: crate::notify::ChannelConfig = secumon_core::config::parse_yaml(&yaml(&bogus), "rules.yaml").unwrap();
    let error = config.build().err().expect("a file with no certificate is refused").to_string();
    assert!(error.contains("bogus.pem"), "{error}");
}
