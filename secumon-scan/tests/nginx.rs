//! HTTP(S) checks against a real nginx on loopback, plain and with TLS from a test CA:
//! status sets, redirects, body checks, methods and headers, latency bounds, the
//! certificate's days to expiry and an untrusted chain. Skipped, saying so, without nginx.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use secumon_core::CheckStatus;
use secumon_scan::{HttpCheck, run_check};

const NGINX: &str = "/usr/sbin/nginx";

struct Nginx {
    child: Child,
    plain: u16,
    tls: u16,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// nginx with a plain and a TLS server; the TLS certificate expires in `days` days.
fn start_nginx(days: i64) -> Option<Nginx> {
    if !Path::new(NGINX).exists() {
        secumon_core::testing::peer_missing("nginx is not installed (apt-get install nginx)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let path = path.as_path();
    std::fs::create_dir_all(path.join("www")).unwrap();
    std::fs::write(path.join("www/index.html"), "<h1>hello secumon</h1>\n").unwrap();

    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "SecuMon Test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    leaf.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    leaf.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    std::fs::write(path.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(path.join("key.pem"), key.serialize_pem()).unwrap();

    // A port another test takes between our choosing and nginx binding makes nginx exit:
    // then try other ports.
    for _ in 0..5 {
        let (plain, tls) = (free_port(), free_port());
        let p = path.display();
        let config = format!(
            r#"daemon off;
master_process off;
user root;
pid {p}/nginx.pid;
error_log {p}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fastcgi;
  uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;
  server {{
    listen 127.0.0.1:{plain};
    root {p}/www;
    location = /redirect {{ return 301 /; }}
    location = /loop {{ return 302 /loop; }}
    location = /echo {{ return 200 "$request_method $http_x_probe\n"; }}
  }}
  server {{
    listen 127.0.0.1:{tls} ssl;
    server_name localhost;
    ssl_certificate {p}/cert.pem;
    ssl_certificate_key {p}/key.pem;
    root {p}/www;
  }}
}}
"#
        );
        std::fs::write(path.join("nginx.conf"), config).unwrap();
        let child = Command::new(NGINX)
            .args(["-p", &p.to_string(), "-c", &format!("{p}/nginx.conf"), "-e", &format!("{p}/error.log")])
            .spawn()
            .unwrap();
        let mut child = child;
        for _ in 0..200 {
            if child.try_wait().ok().flatten().is_some() {
                break; // ours exited: a listener on those ports would be another test's
            }
            if [plain, tls].iter().all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok()) {
                return Some(Nginx { child, plain, tls, ca_file: path.join("ca.pem"), _dir: dir });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("nginx did not start: {}", std::fs::read_to_string(path.join("error.log")).unwrap_or_default());
}

async fn run(check: HttpCheck) -> secumon_core::CheckResult {
    run_check(&check, Duration::from_secs(10)).await
}

#[tokio::test]
async fn plain_http_checks_against_nginx() {
    let Some(nginx) = start_nginx(90) else { return };
    let base = format!("http://127.0.0.1:{}", nginx.plain);

    let ok =
        run(HttpCheck { body_contains: Some("hello secumon".into()), ..HttpCheck::get("home", format!("{base}/")) })
            .await;
    assert_eq!(ok.status, CheckStatus::Ok, "{}", ok.details);
    let response = &ok.details["response"];
    assert_eq!(response["status"], 200);
    let timings = &response["timings"];
    assert!(timings["total"].as_f64().unwrap() > 0.0);
    assert!(timings["total"].as_f64().unwrap() >= timings["first_byte"].as_f64().unwrap());
    assert!(ok.samples.iter().any(|s| s.series.name == "http_total_seconds"));

    // Redirects: followed by default, or reported as they are.
    let followed = run(HttpCheck::get("r", format!("{base}/redirect"))).await;
    assert_eq!(followed.details["response"]["status"], 200);
    assert_eq!(followed.details["redirects"][0]["status"], 301);
    let strict =
        HttpCheck { max_redirects: 0, expect_status: vec![200], ..HttpCheck::get("r", format!("{base}/redirect")) };
    let unfollowed = run(strict).await;
    assert_eq!(unfollowed.status, CheckStatus::Critical);
    assert!(unfollowed.details["problems"][0].as_str().unwrap().contains("status 301"));
    let looping = run(HttpCheck { max_redirects: 3, ..HttpCheck::get("l", format!("{base}/loop")) }).await;
    assert_eq!(looping.details["redirects"].as_array().unwrap().len(), 3, "stops after max_redirects");

    let missing = run(HttpCheck::get("m", format!("{base}/missing"))).await;
    assert_eq!(missing.status, CheckStatus::Critical);
    let expected_404 =
        run(HttpCheck { expect_status: vec![404], ..HttpCheck::get("m", format!("{base}/missing")) }).await;
    assert_eq!(expected_404.status, CheckStatus::Ok);

    let regex = regex::Regex::new(r"^\w+ probe-42$").unwrap();
    let echo = HttpCheck {
        method: "POST".into(),
        headers: vec![("X-Probe".into(), "probe-42".into())],
        body: Some("{}".into()),
        body_regex: Some(regex::Regex::new(r"(?m)^POST probe-42$").unwrap()),
        ..HttpCheck::get("e", format!("{base}/echo"))
    };
    let echoed = run(echo).await;
    assert_eq!(echoed.status, CheckStatus::Ok, "{}", echoed.details);
    let mismatch = run(HttpCheck { body_regex: Some(regex), ..HttpCheck::get("e", format!("{base}/echo")) }).await;
    assert_eq!(mismatch.status, CheckStatus::Critical, "GET with no header does not match");

    let slow =
        run(HttpCheck { max_latency: Some(Duration::from_nanos(1)), ..HttpCheck::get("s", format!("{base}/")) }).await;
    assert_eq!(slow.status, CheckStatus::Warning);
    assert!(slow.details["warnings"][0].as_str().unwrap().contains("more than"));
}

#[tokio::test]
async fn https_checks_against_nginx_with_a_test_ca() {
    let Some(nginx) = start_nginx(10) else { return };
    let url = format!("https://localhost:{}/", nginx.tls);

    let trusted = HttpCheck { ca_file: Some(nginx.ca_file.clone()), ..HttpCheck::get("tls", url.clone()) };
    let result = run(trusted.clone()).await;
    assert_eq!(result.status, CheckStatus::Warning, "expires in 10 days, under the 14-day default: {}", result.details);
    let tls = &result.details["response"]["tls"];
    let days = tls["days_to_expiry"].as_f64().unwrap();
    assert!((9.9..=10.0).contains(&days), "{days}");
    assert!(tls["issuer"].as_str().unwrap().contains("SecuMon Test CA"));
    assert!(result.samples.iter().any(|s| s.series.name == "tls_cert_days_to_expiry"));
    assert!(result.details["response"]["timings"]["tls"].as_f64().unwrap() > 0.0);

    let relaxed = run(HttpCheck { cert_warning_days: 5, ..trusted }).await;
    assert_eq!(relaxed.status, CheckStatus::Ok);

    // Without the test CA the chain is untrusted: the check cannot vouch for the site.
    let untrusted = run(HttpCheck::get("tls", url)).await;
    assert_eq!(untrusted.status, CheckStatus::Unknown);
    assert!(untrusted.details["error"].as_str().unwrap().contains("TLS"), "{}", untrusted.details);
}
