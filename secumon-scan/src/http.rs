//! HTTP(S) checks: one request (and its redirects, if allowed) made step by step so each
//! phase is timed (DNS, connect, TLS, time to first byte, total), then validated: status
//! in the expected set, body substring or regex, latency bound; on HTTPS the certificate's
//! days to expiry.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use regex::Regex;
use rustls::pki_types::ServerName;
use secumon_core::{CheckStatus, Labels};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use crate::check::{Check, CheckError, Outcome, resolve};
use crate::spec::required;

/// Bodies longer than this are cut (and the check says so).
const MAX_BODY: usize = 10 * 1024 * 1024;

/// The `User-Agent` sent unless a check sets its own: servers and their operators see what
/// is probing them, as with every monitoring probe.
pub const DEFAULT_USER_AGENT: &str = concat!("SecuMon/", env!("CARGO_PKG_VERSION"));

/// What to request and what to expect.
#[derive(Debug, Clone)]
pub struct HttpCheck {
    /// The check's name in the configuration.
    pub id: String,
    /// The URL requested (`http://` or `https://`).
    pub url: String,
    /// The request method (`GET`).
    pub method: String,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// The request body, if any.
    pub body: Option<String>,
    /// Acceptable status codes; empty means 200-399.
    pub expect_status: Vec<u16>,
    /// Text the body must contain.
    pub body_contains: Option<String>,
    /// A regular expression the body must match.
    pub body_regex: Option<Regex>,
    /// Slower than this is a warning.
    pub max_latency: Option<Duration>,
    /// Redirects to follow (0: report the redirect itself).
    pub max_redirects: u32,
    /// A PEM file of CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Warn when the certificate expires within this many days.
    pub cert_warning_days: i64,
    /// The `User-Agent` header; a `User-Agent` in `headers` takes its place.
    pub user_agent: String,
}

impl HttpCheck {
    /// A `GET` of `url`: 200-399 expected, 5 redirects followed, certificate warning at 14 days.
    pub fn get(id: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            url: url.into(),
            method: "GET".into(),
            headers: Vec::new(),
            body: None,
            expect_status: Vec::new(),
            body_contains: None,
            body_regex: None,
            max_latency: None,
            max_redirects: 5,
            ca_file: None,
            cert_warning_days: 14,
            user_agent: DEFAULT_USER_AGENT.to_string(),
        }
    }
}

/// An `http` check as configured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpSpec {
    /// The URL to request.
    pub url: Option<String>,
    /// `GET` unless set.
    pub method: Option<String>,
    /// Request headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// Request body.
    pub body: Option<String>,
    /// Acceptable statuses; 200-399 when unset.
    pub expect_status: Option<Vec<u16>>,
    /// Text the body must contain.
    pub body_contains: Option<String>,
    /// A regular expression the body must match.
    pub body_regex: Option<String>,
    /// Slower than this is a warning.
    #[serde(default, with = "humantime_serde")]
    pub max_latency: Option<Duration>,
    /// Redirects to follow (5).
    pub max_redirects: Option<u32>,
    /// A PEM file of CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Warn when the certificate expires within this many days (14).
    pub cert_warning_days: Option<i64>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

impl HttpSpec {
    pub(crate) fn build(self, id: String, kind: &str) -> Result<Box<dyn Check>, CheckError> {
        let defaults = HttpCheck::get(id, required(self.url, kind, "url")?);
        let body_regex = self
            .body_regex
            .map(|r| Regex::new(&r).map_err(|e| CheckError::Invalid(format!("`body_regex`: {e}"))))
            .transpose()?;
        Ok(Box::new(HttpCheck {
            method: self.method.unwrap_or(defaults.method.clone()),
            headers: self.headers.unwrap_or_default().into_iter().collect(),
            body: self.body,
            expect_status: self.expect_status.unwrap_or_default(),
            body_contains: self.body_contains,
            body_regex,
            max_latency: self.max_latency,
            max_redirects: self.max_redirects.unwrap_or(defaults.max_redirects),
            ca_file: self.ca_file,
            cert_warning_days: self.cert_warning_days.unwrap_or(defaults.cert_warning_days),
            user_agent: self.user_agent.unwrap_or(defaults.user_agent.clone()),
            ..defaults
        }))
    }
}

/// How long each phase of one request took, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Timings {
    /// Resolving the host name.
    pub dns: f64,
    /// The TCP connect.
    pub connect: f64,
    /// The TLS handshake (0 for plain HTTP).
    pub tls: f64,
    /// From the request sent to the first byte of the answer.
    pub first_byte: f64,
    /// From start to the whole body read.
    pub total: f64,
}

/// One request's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HttpResponse {
    /// The URL that answered.
    pub url: String,
    /// The address and port connected to.
    pub address: String,
    /// The HTTP status code.
    pub status: u16,
    /// How long each phase took.
    pub timings: Timings,
    /// The body's length in bytes (0 when cut).
    pub body_bytes: usize,
    /// Whether the body was longer than 10 MiB and so not read.
    pub body_truncated: bool,
    /// The `Location` header of a redirect.
    pub location: Option<String>,
    /// The TLS handshake's summary, on HTTPS.
    pub tls: Option<TlsSummary>,
    /// The body itself (not in the details).
    #[serde(skip)]
    pub body: Bytes,
}

/// What the TLS handshake showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TlsSummary {
    /// The negotiated protocol version, as rustls names it (`TLSv1_3`).
    pub version: String,
    /// The negotiated cipher suite, as rustls names it.
    pub cipher_suite: String,
    /// The leaf certificate's subject.
    pub subject: String,
    /// The leaf certificate's issuer.
    pub issuer: String,
    /// When the leaf certificate expires, in Unix seconds.
    pub not_after_unix: i64,
    /// Days until then (negative once expired).
    pub days_to_expiry: f64,
}

/// What an `http` check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HttpDetails {
    /// The last response: the final one, or the redirect not followed.
    pub response: HttpResponse,
    /// Each redirect followed, in order.
    pub redirects: Vec<Redirect>,
    /// What makes the check critical.
    pub problems: Vec<String>,
    /// What makes it a warning.
    pub warnings: Vec<String>,
}

/// A redirect that was followed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Redirect {
    /// The URL that answered with the redirect.
    pub url: String,
    /// Its status (301, 302...).
    pub status: u16,
}

/// Sends one request to `url` with `check`'s method, headers and body; no redirect.
pub async fn request(check: &HttpCheck, url: &str) -> Result<HttpResponse, CheckError> {
    // A fragment names a part of the document for the client; it is never sent.
    let without_fragment = url.split_once('#').map_or(url, |(before, _)| before);
    let uri: Uri = without_fragment.parse().map_err(|e| CheckError::Invalid(format!("{url:?} is not a URL: {e}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(CheckError::Invalid(format!("{url:?} must start with http:// or https://"))),
    };
    let host = uri.host().ok_or_else(|| CheckError::Invalid(format!("{url:?} has no host")))?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let method = Method::from_bytes(check.method.as_bytes())
        .map_err(|_| CheckError::Invalid(format!("{:?} is not an HTTP method", check.method)))?;

    let started = Instant::now();
    let mut timings = Timings::default();
    let address = resolve(&host).await?[0];
    timings.dns = started.elapsed().as_secs_f64();
    let stream = TcpStream::connect((address, port))
        .await
        .map_err(|e| CheckError::Other(format!("cannot connect to {address}:{port}: {e}")))?;
    let _ = stream.set_nodelay(true);
    timings.connect = started.elapsed().as_secs_f64() - timings.dns;

    let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or(host.clone());
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut builder = Request::builder().method(method).uri(path).header(hyper::header::HOST, authority);
    if !check.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("user-agent")) {
        builder = builder.header(hyper::header::USER_AGENT, check.user_agent.as_str());
    }
    for (name, value) in &check.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let body = Full::new(Bytes::from(check.body.clone().unwrap_or_default()));
    let request = builder.body(body).map_err(|e| CheckError::Invalid(format!("bad request header: {e}")))?;

    let (response, tls) = if https {
        let before_tls = started.elapsed().as_secs_f64();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(check.ca_file.as_ref())?));
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
            .map_err(|e| CheckError::Invalid(format!("{host:?} cannot be a TLS server name: {e}")))?;
        let stream =
            connector.connect(name, stream).await.map_err(|e| CheckError::Other(format!("TLS handshake: {e}")))?;
        timings.tls = started.elapsed().as_secs_f64() - before_tls;
        let tls = tls_summary(stream.get_ref().1);
        (send(TokioIo::new(stream), request).await?, tls)
    } else {
        (send(TokioIo::new(stream), request).await?, None)
    };
    timings.first_byte = started.elapsed().as_secs_f64() - timings.dns - timings.connect - timings.tls;
    let status = response.status().as_u16();
    let location = response.headers().get(hyper::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (body, body_truncated) = match Limited::new(response.into_body(), MAX_BODY).collect().await {
        Ok(collected) => (collected.to_bytes(), false),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => (Bytes::new(), true),
        Err(error) => return Err(CheckError::Other(format!("reading the body: {error}"))),
    };
    timings.total = started.elapsed().as_secs_f64();
    Ok(HttpResponse {
        url: url.to_string(),
        address: format!("{address}:{port}"),
        status,
        timings,
        body_bytes: body.len(),
        body_truncated,
        location,
        tls,
        body,
    })
}

async fn send<T>(
    io: TokioIo<T>,
    request: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, CheckError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| CheckError::Other(format!("HTTP: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await.map_err(|e| CheckError::Other(format!("HTTP: {e}")))
}

fn tls_config(ca_file: Option<&PathBuf>) -> Result<rustls::ClientConfig, CheckError> {
    Ok(rustls::ClientConfig::builder_with_provider(crate::tls::chain::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CheckError::Other(e.to_string()))?
        .with_root_certificates(crate::tls::chain::root_store(ca_file)?)
        .with_no_client_auth())
}

fn tls_summary(connection: &rustls::ClientConnection) -> Option<TlsSummary> {
    let leaf = connection.peer_certificates()?.first()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let not_after = certificate.validity().not_after.timestamp();
    let now = secumon_core::now_ms() as f64 / 1000.0;
    Some(TlsSummary {
        version: connection.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
        cipher_suite: connection.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default(),
        subject: certificate.subject().to_string(),
        issuer: certificate.issuer().to_string(),
        not_after_unix: not_after,
        days_to_expiry: (not_after as f64 - now) / 86_400.0,
    })
}

/// Resolves a redirect's `Location` against the URL that answered with it, as RFC 3986 §5
/// says (what `url::Url::join` implements): dot segments removed, a query-only reference
/// keeps the path, a network-path reference (`//host/p`) keeps the scheme. The fragment is
/// kept in the result (it is reported) and dropped from the request.
fn follow(base: &str, location: &str) -> Result<String, CheckError> {
    let base = url::Url::parse(base).map_err(|e| CheckError::Invalid(format!("{base:?} is not a URL: {e}")))?;
    let next = base
        .join(location.trim())
        .map_err(|e| CheckError::Other(format!("redirect to {location:?} from {base} is not a URL: {e}")))?;
    Ok(next.to_string())
}

#[async_trait]
impl Check for HttpCheck {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    fn target(&self) -> String {
        self.url.clone()
    }

    async fn execute(&self) -> Result<Outcome, CheckError> {
        let mut url = self.url.clone();
        let mut chain = Vec::new();
        let response = loop {
            let response = request(self, &url).await?;
            let redirect = (300..400).contains(&response.status) && response.location.is_some();
            if !redirect || chain.len() as u32 >= self.max_redirects {
                break response;
            }
            let next = follow(&url, response.location.as_deref().unwrap_or_default())?;
            chain.push(Redirect { url, status: response.status });
            url = next;
        };

        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let status_ok = if self.expect_status.is_empty() {
            (200..400).contains(&response.status)
        } else {
            self.expect_status.contains(&response.status)
        };
        if !status_ok {
            problems.push(format!("status {} is not expected", response.status));
        }
        let text = String::from_utf8_lossy(&response.body);
        if let Some(needle) = &self.body_contains
            && !text.contains(needle.as_str())
        {
            problems.push(format!("body does not contain {needle:?}"));
        }
        if let Some(pattern) = &self.body_regex
            && !pattern.is_match(&text)
        {
            problems.push(format!("body does not match /{pattern}/"));
        }
        if response.body_truncated {
            warnings.push(format!("body longer than {MAX_BODY} bytes; content checks saw none of it"));
        }
        let total = response.timings.total;
        if let Some(limit) = self.max_latency
            && total > limit.as_secs_f64()
        {
            warnings.push(format!("took {:.0} ms, more than {} ms", total * 1000.0, limit.as_millis()));
        }
        if let Some(tls) = &response.tls {
            if tls.days_to_expiry < 0.0 {
                problems.push(format!("certificate expired {:.0} days ago", -tls.days_to_expiry));
            } else if tls.days_to_expiry < self.cert_warning_days as f64 {
                warnings.push(format!("certificate expires in {:.0} days", tls.days_to_expiry));
            }
        }
        let status = if !problems.is_empty() {
            CheckStatus::Critical
        } else if !warnings.is_empty() {
            CheckStatus::Warning
        } else {
            CheckStatus::Ok
        };
        let t = &response.timings;
        let mut samples = vec![
            ("http_status_code", f64::from(response.status)),
            ("http_dns_seconds", t.dns),
            ("http_connect_seconds", t.connect),
            ("http_first_byte_seconds", t.first_byte),
            ("http_total_seconds", t.total),
            ("http_content_length_bytes", response.body_bytes as f64),
        ];
        if let Some(tls) = &response.tls {
            samples.extend([("http_tls_seconds", t.tls), ("tls_cert_days_to_expiry", tls.days_to_expiry)]);
        }
        let details = HttpDetails { response, redirects: chain, problems, warnings };
        let mut outcome = Outcome::new(status, details);
        for (name, value) in samples {
            outcome = outcome.sample(name, Labels::new(), value);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_keep_their_json() {
        let response = HttpResponse {
            url: "https://127.0.0.1:8443/b#top".into(),
            address: "127.0.0.1:8443".into(),
            status: 200,
            timings: Timings { dns: 0.0, connect: 0.25, tls: 0.5, first_byte: 0.125, total: 1.0 },
            body_bytes: 12,
            body_truncated: false,
            location: None,
            tls: Some(TlsSummary {
                version: "TLSv1_3".into(),
                cipher_suite: "TLS13_AES_256_GCM_SHA384".into(),
                subject: "CN=localhost".into(),
                issuer: "CN=SecuMon test CA".into(),
                not_after_unix: 1_900_000_000,
                days_to_expiry: 89.5,
            }),
            body: Bytes::new(),
        };
        let details = HttpDetails {
            response,
            redirects: vec![Redirect { url: "https://127.0.0.1:8443/a".into(), status: 301 }],
            problems: Vec::new(),
            warnings: vec!["certificate expires in 90 days".into()],
        };
        crate::details::assert_wire(
            "http",
            details.clone().into(),
            serde_json::json!({
                "response": {
                    "url": "https://127.0.0.1:8443/b#top", "address": "127.0.0.1:8443", "status": 200,
                    "timings": {"dns": 0.0, "connect": 0.25, "tls": 0.5, "first_byte": 0.125, "total": 1.0},
                    "body_bytes": 12, "body_truncated": false, "location": null,
                    "tls": {"version": "TLSv1_3", "cipher_suite": "TLS13_AES_256_GCM_SHA384", "subject": "CN=localhost",
                            "issuer": "CN=SecuMon test CA", "not_after_unix": 1_900_000_000, "days_to_expiry": 89.5},
                },
                "redirects": [{"url": "https://127.0.0.1:8443/a", "status": 301}],
                "problems": [], "warnings": ["certificate expires in 90 days"],
            }),
        );
        let plain = HttpResponse { tls: None, location: Some("/next".into()), status: 302, ..details.response };
        crate::details::assert_wire(
            "http",
            HttpDetails {
                response: plain,
                redirects: Vec::new(),
                problems: vec!["status 302 is not expected".into()],
                warnings: Vec::new(),
            }
            .into(),
            serde_json::json!({
                "response": {
                    "url": "https://127.0.0.1:8443/b#top", "address": "127.0.0.1:8443", "status": 302,
                    "timings": {"dns": 0.0, "connect": 0.25, "tls": 0.5, "first_byte": 0.125, "total": 1.0},
                    "body_bytes": 12, "body_truncated": false, "location": "/next", "tls": null,
                },
                "redirects": [], "problems": ["status 302 is not expected"], "warnings": [],
            }),
        );
    }

    #[test]
    fn redirects_resolve_as_rfc_3986_says() {
        // RFC 3986 §5.4's examples that a Location can carry, from its base.
        let base = "http://a/b/c/d;p?q";
        for (reference, expected) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q#s"),
            ("g?y#s", "http://a/b/c/g?y#s"),
            (";x", "http://a/b/c/;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("g/../h", "http://a/b/c/h"),
            ("https://b:8443/x", "https://b:8443/x"),
        ] {
            assert_eq!(follow(base, reference).unwrap(), expected, "{reference:?}");
        }
        assert!(follow(base, "http://[::1").is_err());
    }

    #[tokio::test]
    async fn bad_urls_and_methods_are_invalid_checks() {
        let check = HttpCheck::get("x", "ftp://example.com/");
        assert!(request(&check, &check.url).await.unwrap_err().to_string().contains("http://"));
        let check = HttpCheck { method: "GE T".into(), ..HttpCheck::get("x", "http://127.0.0.1:1/") };
        assert!(request(&check, &check.url).await.unwrap_err().to_string().contains("method"));
        let check = HttpCheck::get("x", "http://127.0.0.1:1/");
        assert!(request(&check, &check.url).await.unwrap_err().to_string().contains("cannot connect"));
    }
}
