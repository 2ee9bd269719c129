//! TLS analysis against `openssl s_server` on loopback in several configurations (modern
//! only; legacy TLS 1.0/1.1 with weak suites at @SECLEVEL=0; an expired certificate; a
//! wrong host name; an incomplete chain), protocol and suite sets compared with sslscan on
//! the same servers; STARTTLS through an SMTP front. Skipped, saying so, without openssl
//! or sslscan (`scripts/test` installs sslscan).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use secumon_scan::tls::FindingSeverity;
use secumon_scan::{StartTls, TlsOptions, TlsReport, analyse_tls};

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tools() -> bool {
    let found = ["openssl", "sslscan"].iter().all(|t| Command::new(t).arg("version").output().is_ok());
    if !found {
        secumon_core::testing::peer_missing("openssl or sslscan missing (apt-get install sslscan)");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A CA, and leaves it signs.
struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "SecuMon TLS Test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("ca.key"), ca.key().serialize_pem()).unwrap();
        Self { dir: dir.to_path_buf(), ca }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Writes `<tag>.crt` and `<tag>.key`; RSA keys come from `openssl genrsa`.
    fn leaf(&self, tag: &str, names: &[&str], rsa: bool, days: (i64, i64)) -> (PathBuf, PathBuf) {
        let key = if rsa {
            let pem = Command::new("openssl").args(["genrsa", "2048"]).stderr(Stdio::null()).output().unwrap().stdout;
            KeyPair::from_pem(&String::from_utf8(pem).unwrap()).unwrap()
        } else {
            KeyPair::generate().unwrap()
        };
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(days.0);
        params.not_after = now + time::Duration::days(days.1);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (crt, pem) = (self.dir.join(format!("{tag}.crt")), self.dir.join(format!("{tag}.key")));
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&pem, key.serialize_pem()).unwrap();
        (crt, pem)
    }
}

/// `openssl s_server` with these arguments, without Debian's system-wide policy. A port
/// another test took between our choosing and its binding makes it exit: then try another.
fn s_server(dir: &Path, cert: &(PathBuf, PathBuf), args: &[&str]) -> Server {
    for _ in 0..5 {
        if let Some(server) = try_s_server(dir, cert, args) {
            return server;
        }
    }
    panic!("openssl s_server did not start with {args:?}");
}

fn try_s_server(dir: &Path, cert: &(PathBuf, PathBuf), args: &[&str]) -> Option<Server> {
    let port = free_port();
    let empty = dir.join("openssl.cnf");
    std::fs::write(&empty, "").unwrap();
    let child = Command::new("openssl")
        .env("OPENSSL_CONF", &empty)
        .args(["s_server", "-quiet", "-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(&cert.0)
        .arg("-key")
        .arg(&cert.1)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server(child, port);
    for _ in 0..200 {
        // Ours must still run: a listener on the port could be another test's.
        if server.0.try_wait().ok().flatten().is_some() {
            return None;
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
            return server.0.try_wait().ok().flatten().is_none().then_some(server);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Accepted suite codes per version, as sslscan reports them.
fn sslscan(port: u16) -> BTreeMap<String, BTreeSet<String>> {
    let output = Command::new("sslscan")
        .args(["--no-colour", "--xml=-", "--no-heartbleed", "--no-compression", "--no-fallback", "--no-renegotiation"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    let xml = String::from_utf8_lossy(&output.stdout);
    let protocol = regex::Regex::new(r#"<protocol type="tls" version="([0-9.]+)" enabled="1""#).unwrap();
    let cipher =
        regex::Regex::new(r#"<cipher status="\w+" sslversion="(TLSv[0-9.]+)"[^>]*id="(0x[0-9A-Fa-f]+)""#).unwrap();
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in protocol.captures_iter(&xml) {
        map.entry(format!("TLSv{}", &c[1])).or_default();
    }
    for c in cipher.captures_iter(&xml) {
        map.entry(c[1].to_string()).or_default().insert(c[2].to_uppercase().replace("0X", "0x"));
    }
    map
}

fn ours(report: &TlsReport) -> BTreeMap<String, BTreeSet<String>> {
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (version, enabled) in &report.protocols {
        if *enabled {
            map.entry(version.to_string()).or_default();
        }
    }
    for (version, suites) in &report.cipher_suites {
        map.entry(version.to_string()).or_default().extend(suites.iter().map(|s| s.code.clone()));
    }
    map
}

/// sslscan names TLS 1.0 `TLSv1.0` in ciphers and `1.0` in protocols; both become `TLSv1.0`.
fn normalise(map: BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    map.into_iter().map(|(k, v)| (if k == "TLSv1" { "TLSv1.0".to_string() } else { k }, v)).collect()
}

async fn analyse(port: u16, options: TlsOptions) -> TlsReport {
    analyse_tls("127.0.0.1", port, &TlsOptions { server_name: Some("localhost".into()), ..options }).await.unwrap()
}

fn titles(report: &TlsReport, severity: FindingSeverity) -> Vec<String> {
    report.findings.iter().filter(|f| f.severity == severity).map(|f| f.title.clone()).collect()
}

#[tokio::test]
async fn modern_and_legacy_servers_match_sslscan() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let trusted = TlsOptions { ca_file: Some(pki.ca_file()), ..TlsOptions::default() };

    let ecdsa = pki.leaf("modern", &["localhost"], false, (-1, 90));
    let modern = s_server(dir.path(), &ecdsa, &["-no_tls1", "-no_tls1_1", "-cipher", "ECDHE+AESGCM:ECDHE+CHACHA20"]);
    let report = analyse(modern.1, trusted.clone()).await;
    assert_eq!(normalise(ours(&report)), normalise(sslscan(modern.1)), "modern: {report:#?}");
    assert!(report.protocols["TLSv1.3"]);
    assert!(!report.protocols["TLSv1.1"]);
    assert_eq!(report.chain_validation, "trusted");
    assert!(titles(&report, FindingSeverity::Critical).is_empty(), "{:?}", report.findings);
    assert!(report.grade.starts_with('A'), "{}", report.grade);
    assert!(report.groups.contains(&"x25519".to_string()), "{:?}", report.groups);
    assert_eq!(report.chain[0].key_type, "EC");

    let rsa = pki.leaf("legacy", &["localhost"], true, (-1, 90));
    let legacy = s_server(dir.path(), &rsa, &["-no_tls1_3", "-cipher", "ALL:@SECLEVEL=0"]);
    let report = analyse(legacy.1, trusted).await;
    let reference = normalise(sslscan(legacy.1));
    eprintln!(
        "legacy server, per version, suites accepted by both: {:?}",
        reference.iter().map(|(v, s)| (v, s.len())).collect::<Vec<_>>()
    );
    assert_eq!(normalise(ours(&report)), reference, "legacy: {report:#?}");
    assert_eq!((report.protocols["TLSv1.0"], report.protocols["TLSv1.1"]), (true, true));
    let warnings = titles(&report, FindingSeverity::Warning).join("; ");
    assert!(warnings.contains("TLSv1.0 enabled") && warnings.contains("TLSv1.1 enabled"), "{warnings}");
    let critical = titles(&report, FindingSeverity::Critical).join("; ");
    assert!(critical.contains("anonymous") || warnings.contains("3DES"), "weak suites found: {critical} / {warnings}");
    assert_eq!(report.chain[0].key_type, "RSA");
    assert_eq!(report.chain[0].key_bits, 2048);
    assert!(!report.grade.starts_with('A'));
}

#[tokio::test]
async fn certificate_problems_are_findings() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let trusted = TlsOptions { ca_file: Some(pki.ca_file()), ..TlsOptions::default() };

    let expired = s_server(dir.path(), &pki.leaf("expired", &["localhost"], false, (-30, -2)), &[]);
    let report = analyse(expired.1, trusted.clone()).await;
    let critical = titles(&report, FindingSeverity::Critical).join("; ");
    assert!(critical.contains("expired 2 days ago") || critical.contains("expired 1 days ago"), "{critical}");
    assert_eq!(report.grade, "F");

    let soon = s_server(dir.path(), &pki.leaf("soon", &["localhost"], false, (-1, 10)), &[]);
    let report = analyse(soon.1, trusted.clone()).await;
    assert!(titles(&report, FindingSeverity::Warning).join(";").contains("expires in"), "{:?}", report.findings);

    let wrong = s_server(dir.path(), &pki.leaf("wrong", &["other.example"], false, (-1, 90)), &[]);
    let report = analyse(wrong.1, trusted.clone()).await;
    assert!(
        titles(&report, FindingSeverity::Critical).join(";").contains("does not match localhost"),
        "{:?}",
        report.findings
    );

    // Without the CA the chain is untrusted.
    let fine = s_server(dir.path(), &pki.leaf("fine", &["localhost"], false, (-1, 90)), &[]);
    let report = analyse(fine.1, TlsOptions::default()).await;
    assert!(titles(&report, FindingSeverity::Critical).join(";").contains("untrusted chain"), "{:?}", report.findings);
    assert_eq!(report.chain[0].issuer, "CN=SecuMon TLS Test CA");
}

#[tokio::test]
async fn starttls_smtp_in_front_of_a_tls_server() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let backend = s_server(dir.path(), &pki.leaf("mail", &["localhost"], false, (-1, 90)), &["-no_tls1", "-no_tls1_1"]);
    // A minimal SMTP front: greeting, EHLO, STARTTLS, then bytes to the TLS server.
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_port = front.local_addr().unwrap().port();
    let backend_port = backend.1;
    tokio::spawn(async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        while let Ok((client, _)) = front.accept().await {
            tokio::spawn(async move {
                let mut client = BufReader::new(client);
                client.get_mut().write_all(b"220 mail.test ESMTP\r\n").await?;
                let mut line = String::new();
                client.read_line(&mut line).await?;
                client.get_mut().write_all(b"250-mail.test\r\n250 STARTTLS\r\n").await?;
                line.clear();
                client.read_line(&mut line).await?;
                client.get_mut().write_all(b"220 ready\r\n").await?;
                let mut server = tokio::net::TcpStream::connect(("127.0.0.1", backend_port)).await?;
                tokio::io::copy_bidirectional(client.get_mut(), &mut server).await?;
                Ok::<_, std::io::Error>(())
            });
        }
    });
    let options = TlsOptions { starttls: Some(StartTls::Smtp), ca_file: Some(pki.ca_file()), ..TlsOptions::default() };
    let report = analyse(front_port, options).await;
    assert_eq!(report.chain_validation, "trusted");
    assert!(report.protocols["TLSv1.2"]);
    assert!(!report.protocols["TLSv1.0"]);
    // Plain TLS on the SMTP front fails cleanly.
    let error = analyse_tls(
        "127.0.0.1",
        front_port,
        &TlsOptions { timeout: Duration::from_millis(500), ..TlsOptions::default() },
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("TLS") || error.to_string().contains("answer"), "{error}");
}

#[tokio::test]
async fn an_incomplete_chain_is_untrusted_until_the_intermediate_is_sent() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    // Root → intermediate → leaf.
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "SecuMon Intermediate CA");
    let intermediate = CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &pki.ca).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    let leaf = leaf.signed_by(&key, &intermediate).unwrap();
    let cert = (dir.path().join("chain-leaf.crt"), dir.path().join("chain-leaf.key"));
    std::fs::write(&cert.0, leaf.pem()).unwrap();
    std::fs::write(&cert.1, key.serialize_pem()).unwrap();
    let chain_file = dir.path().join("intermediate.crt");
    std::fs::write(&chain_file, intermediate.pem()).unwrap();
    let trusted = TlsOptions { ca_file: Some(pki.ca_file()), ..TlsOptions::default() };

    let leaf_only = s_server(dir.path(), &cert, &[]);
    let report = analyse(leaf_only.1, trusted.clone()).await;
    assert_eq!(report.chain.len(), 1);
    let critical = titles(&report, FindingSeverity::Critical).join("; ");
    assert!(critical.contains("untrusted chain") && critical.contains("UnknownIssuer"), "{critical}");

    let complete = s_server(dir.path(), &cert, &["-cert_chain", chain_file.to_str().unwrap()]);
    let report = analyse(complete.1, trusted).await;
    assert_eq!(report.chain.len(), 2);
    assert_eq!(report.chain[1].subject, "CN=SecuMon Intermediate CA");
    assert_eq!(report.chain_validation, "trusted");
}

#[tokio::test]
async fn ocsp_responder_says_good_or_revoked_with_reason_and_time() {
    assert!(Command::new("openssl").arg("version").output().is_ok(), "openssl must be installed");
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let responder_port = free_port();
    // Leaves naming our responder (Authority Information Access, OCSP), serials 0x1001 and 0x1002.
    let leaf = |tag: &str, serial: u64| {
        let uri = format!("http://127.0.0.1:{responder_port}/");
        let location = [&[0x86, uri.len() as u8][..], uri.as_bytes()].concat();
        let method = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
        let description = [&[0x30, (method.len() + location.len()) as u8][..], &method, &location].concat();
        let aia = [&[0x30, description.len() as u8][..], &description].concat();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.custom_extensions.push(rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], aia));
        let cert = params.signed_by(&key, &pki.ca).unwrap();
        let files = (dir.path().join(format!("{tag}.crt")), dir.path().join(format!("{tag}.key")));
        std::fs::write(&files.0, cert.pem()).unwrap();
        std::fs::write(&files.1, key.serialize_pem()).unwrap();
        files
    };
    let (good, revoked) = (leaf("good", 0x1001), leaf("revoked", 0x1002));
    std::fs::write(
        dir.path().join("index.txt"),
        "V\t301231000000Z\t\t1001\tunknown\t/CN=localhost\nR\t301231000000Z\t240101120000Z,keyCompromise\t1002\tunknown\t/CN=localhost\n",
    )
    .unwrap();
    // openssl's responder listens on every interface; only loopback talks to it here.
    let responder = Command::new("openssl")
        .current_dir(dir.path())
        .args(["ocsp", "-index", "index.txt", "-CA", "ca.pem", "-rsigner", "ca.pem", "-rkey", "ca.key"])
        .args(["-port", &responder_port.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("ocsp.log")).unwrap())
        .spawn()
        .unwrap();
    let _responder = Server(responder, responder_port);
    // Ready once it says so: a connection to probe it would hold its single-threaded loop.
    for _ in 0..250 {
        if std::fs::read_to_string(dir.path().join("ocsp.log")).unwrap_or_default().contains("waiting for OCSP client")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let trusted = TlsOptions { ca_file: Some(pki.ca_file()), ..TlsOptions::default() };
    // The issuer must be in the chain the server sends for the request's CertID.
    let ca_file = pki.ca_file();
    let chain = ["-cert_chain", ca_file.to_str().unwrap()];

    let server = s_server(dir.path(), &good, &chain);
    let report = analyse(server.1, trusted.clone()).await;
    let answer = report.ocsp_responder.clone().expect("the leaf names a responder");
    assert_eq!(answer.status, Some(secumon_scan::tls::ocsp::OcspStatus::Good), "{answer:?}");
    assert!(!report.findings.iter().any(|f| f.title.contains("revoked")));

    let server = s_server(dir.path(), &revoked, &chain);
    let report = analyse(server.1, trusted.clone()).await;
    let answer = report.ocsp_responder.clone().unwrap();
    assert_eq!(answer.status, Some(secumon_scan::tls::ocsp::OcspStatus::Revoked));
    let revocation = answer.revocation.expect("a revoked answer says when and why");
    assert_eq!(revocation.reason.as_deref(), Some("keyCompromise"));
    assert_eq!((revocation.time.as_str(), revocation.time_unix), ("2024-01-01T12:00:00Z", 1_704_110_400));
    let title = "certificate revoked (OCSP): keyCompromise, revoked at 2024-01-01T12:00:00Z".to_string();
    assert!(titles(&report, FindingSeverity::Critical).contains(&title), "{:?}", report.findings);

    // openssl's own client reads the same reason and time from the responder, and saves
    // the response for a server to staple.
    let staple = dir.path().join("staple.der");
    let client = Command::new("openssl")
        .current_dir(dir.path())
        .args(["ocsp", "-issuer", "ca.pem", "-cert", "revoked.crt", "-CAfile", "ca.pem", "-no_nonce"])
        .args(["-url", &format!("http://127.0.0.1:{responder_port}/"), "-respout", staple.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&client.stdout);
    assert!(said.contains("revoked.crt: revoked"), "{said}");
    assert!(said.contains("Reason: keyCompromise"), "{said}");
    assert!(said.contains("Revocation Time: Jan  1 12:00:00 2024 GMT"), "{said}");

    let stapling = [&chain[..], &["-status_file", staple.to_str().unwrap()]].concat();
    let server = s_server(dir.path(), &revoked, &stapling);
    let report = analyse(server.1, trusted).await;
    assert!(report.ocsp_stapled);
    assert_eq!(report.ocsp_stapled_status, Some(secumon_scan::tls::ocsp::OcspStatus::Revoked));
    assert_eq!(report.ocsp_stapled_revocation.as_ref(), Some(&revocation), "the stapled answer says the same");
}
