//! The `secumon` Python module's native part: probe checks (ping, trace, ports, TLS, HTTP,
//! DNS, SNMP, or any check from its spec),
//! findings parsing and an HTTP client for the server. Every call releases the GIL while
//! Rust works. Errors are `secumon.errors`' classes (`InvalidArgument`, a `ValueError`;
//! `ParseError` with the report's file, line and column; `AuthError`, a `PermissionError`;
//! …), while a target that cannot be checked gives a result with status `unknown` and the
//! reason, as in the CLI.

use std::sync::OnceLock;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use secumon_scan::{
    Check, CheckError, CheckSpec, DnsSpec, HttpSpec, PingSpec, PortsSpec, SnmpSpec, TlsSpec, TraceSpec, run_check,
};

fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the async runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| runtime))
}

/// An instance of one of `secumon.errors`' classes, made with `args`.
fn secumon_error<A>(class: &str, args: A) -> PyErr
where
    A: for<'py> pyo3::call::PyCallArgs<'py>,
{
    Python::attach(|py| {
        let made =
            py.import("secumon.errors").and_then(|module| module.getattr(class)).and_then(|class| class.call1(args));
        match made {
            Ok(error) => PyErr::from_value(error),
            Err(error) => error,
        }
    })
}

/// `secumon.errors.InvalidArgument` (a `ValueError`).
fn invalid_argument(message: impl Into<String>) -> PyErr {
    secumon_error("InvalidArgument", (message.into(),))
}

fn invalid(error: CheckError) -> PyErr {
    invalid_argument(error.to_string())
}

fn seconds(value: f64, name: &str) -> PyResult<Duration> {
    if value.is_finite() && value > 0.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(invalid_argument(format!("{name} must be a positive number of seconds, got {value}")))
    }
}

/// The outcome of one check.
#[pyclass(module = "secumon", frozen, get_all)]
struct CheckResult {
    check_id: String,
    kind: String,
    target: String,
    /// `ok`, `warning`, `critical` or `unknown`.
    status: String,
    duration_ms: f64,
    timestamp_ms: i64,
    /// The whole result as JSON text (see `to_dict`).
    json: String,
}

#[pymethods]
impl CheckResult {
    /// True when the status is `ok`.
    #[getter]
    fn ok(&self) -> bool {
        self.status == "ok"
    }

    /// The check's kind-specific details as a dict.
    #[getter]
    fn details<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value: serde_json::Value =
            serde_json::from_str(&self.json).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        pythonize::pythonize(py, &value["details"]).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Everything: status, details and samples, as plain Python values.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value: serde_json::Value =
            serde_json::from_str(&self.json).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        pythonize::pythonize(py, &value).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// The result as `secumon scan` prints it.
    #[getter]
    fn text(&self) -> PyResult<String> {
        let result: secumon_core::CheckResult =
            serde_json::from_str(&self.json).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Ok(secumon_scan::render_text(&result))
    }

    fn __repr__(&self) -> String {
        format!(
            "CheckResult(kind={:?}, target={:?}, status={:?}, duration_ms={:.1})",
            self.kind, self.target, self.status, self.duration_ms
        )
    }
}

fn run(py: Python<'_>, check: Box<dyn Check>, deadline: Duration) -> PyResult<CheckResult> {
    let runtime = runtime()?;
    let result = py.detach(|| runtime.block_on(run_check(check.as_ref(), deadline)));
    Ok(CheckResult {
        check_id: result.check_id.clone(),
        kind: result.kind.clone(),
        target: result.target.clone(),
        status: result.status.as_str().to_string(),
        duration_ms: result.duration_us as f64 / 1000.0,
        timestamp_ms: result.timestamp_ms,
        json: serde_json::to_string(&result).map_err(|e| PyRuntimeError::new_err(e.to_string()))?,
    })
}

fn build(spec: CheckSpec, id: &str) -> PyResult<Box<dyn Check>> {
    spec.build(id).map_err(invalid)
}

/// Any check from its spec, as written in `probe.yaml` (`{"type": "snmp", "host": …}`):
/// ping, trace, tcp, udp, http, dns, tls or snmp. Durations are strings such as "2s".
#[pyfunction]
#[pyo3(signature = (spec, name=None, deadline=120.0))]
fn check(py: Python<'_>, spec: &Bound<'_, PyAny>, name: Option<String>, deadline: f64) -> PyResult<CheckResult> {
    let spec: CheckSpec = pythonize::depythonize(spec).map_err(|e| invalid_argument(format!("check spec: {e}")))?;
    let name = name.unwrap_or_else(|| spec.kind().to_string());
    run(py, build(spec, &name)?, seconds(deadline, "deadline")?)
}

/// ICMP echo: loss, round trips and jitter.
#[pyfunction]
#[pyo3(signature = (host, count=5, interval=0.2, timeout=1.0))]
fn ping(py: Python<'_>, host: String, count: u32, interval: f64, timeout: f64) -> PyResult<CheckResult> {
    if count == 0 {
        return Err(invalid_argument("count must be at least 1"));
    }
    let mut spec = PingSpec::default();
    let (interval, timeout) = (seconds(interval, "interval")?, seconds(timeout, "timeout")?);
    (spec.host, spec.count, spec.echo_interval, spec.echo_timeout) =
        (Some(host), Some(count), Some(interval), Some(timeout));
    run(py, build(CheckSpec::Ping(spec), "ping")?, interval * count + timeout * 2)
}

/// Traceroute / MTR (needs root or CAP_NET_RAW); `mode` is icmp, udp or tcp.
#[pyfunction]
#[pyo3(signature = (host, mode="icmp", rounds=10, max_hops=30, port=None, reverse_dns=false))]
fn trace(
    py: Python<'_>,
    host: String,
    mode: &str,
    rounds: u32,
    max_hops: u8,
    port: Option<u16>,
    reverse_dns: bool,
) -> PyResult<CheckResult> {
    let mut spec = TraceSpec::default();
    (spec.host, spec.mode, spec.rounds, spec.max_hops, spec.port, spec.reverse_dns) =
        (Some(host), Some(mode.to_string()), Some(rounds), Some(max_hops), port, Some(reverse_dns));
    run(py, build(CheckSpec::Trace(spec), "trace")?, Duration::from_secs(300))
}

/// TCP connect scan; `ports` like "22,80,8000-8100"; `expect_open` makes it a check.
#[pyfunction]
#[pyo3(signature = (host, ports="1-1024", concurrency=500, timeout=1.0, expect_open=None))]
fn scan_ports(
    py: Python<'_>,
    host: String,
    ports: &str,
    concurrency: usize,
    timeout: f64,
    expect_open: Option<Vec<u16>>,
) -> PyResult<CheckResult> {
    let mut spec = PortsSpec::default();
    (spec.host, spec.ports, spec.concurrency, spec.port_timeout, spec.expect_open) = (
        Some(host),
        Some(ports.to_string()),
        Some(concurrency.max(1)),
        Some(seconds(timeout, "timeout")?),
        expect_open,
    );
    run(py, build(CheckSpec::Tcp(spec), "ports")?, Duration::from_secs(600))
}

/// Deep TLS analysis: protocols, suites, chain, findings, grade.
#[pyfunction]
#[pyo3(signature = (host, port=443, server_name=None, starttls=None, ca_file=None))]
fn tls(
    py: Python<'_>,
    host: String,
    port: u16,
    server_name: Option<String>,
    starttls: Option<String>,
    ca_file: Option<std::path::PathBuf>,
) -> PyResult<CheckResult> {
    let mut spec = TlsSpec::default();
    (spec.host, spec.port, spec.server_name, spec.starttls, spec.ca_file) =
        (Some(host), Some(port), server_name, starttls, ca_file);
    run(py, build(CheckSpec::Tls(spec), "tls")?, Duration::from_secs(120))
}

/// An HTTP(S) request with timing breakdown and validation.
#[pyfunction]
#[pyo3(signature = (url, method="GET", headers=None, body=None, expect_status=None, contains=None, regex=None, max_latency=None, max_redirects=5, ca_file=None))]
#[allow(clippy::too_many_arguments)]
fn http_check(
    py: Python<'_>,
    url: String,
    method: &str,
    headers: Option<Vec<(String, String)>>,
    body: Option<String>,
    expect_status: Option<Vec<u16>>,
    contains: Option<String>,
    regex: Option<String>,
    max_latency: Option<f64>,
    max_redirects: u32,
    ca_file: Option<std::path::PathBuf>,
) -> PyResult<CheckResult> {
    let mut spec = HttpSpec::default();
    (spec.url, spec.method, spec.body, spec.expect_status, spec.body_contains, spec.body_regex) =
        (Some(url), Some(method.to_string()), body, expect_status, contains, regex);
    spec.headers = headers.map(|h| h.into_iter().collect());
    spec.max_latency = max_latency.map(|s| seconds(s, "max_latency")).transpose()?;
    (spec.max_redirects, spec.ca_file) = (Some(max_redirects), ca_file);
    run(py, build(CheckSpec::Http(spec), "http")?, Duration::from_secs(60))
}

/// DNS lookup; several resolvers make a propagation check.
#[pyfunction]
#[pyo3(signature = (name, record_type="A", resolvers=None, expect=None, timeout=3.0))]
fn dns(
    py: Python<'_>,
    name: String,
    record_type: &str,
    resolvers: Option<Vec<String>>,
    expect: Option<Vec<String>>,
    timeout: f64,
) -> PyResult<CheckResult> {
    let mut spec = DnsSpec::default();
    (spec.host, spec.record, spec.resolvers, spec.expect, spec.query_timeout) =
        (Some(name), Some(record_type.to_string()), resolvers, expect, Some(seconds(timeout, "timeout")?));
    run(py, build(CheckSpec::Dns(spec), "dns")?, Duration::from_secs(60))
}

/// SNMP get (or, with `walk`, subtree walk) by name (`sysDescr.0`) or dotted OID; v1, v2c or v3.
#[pyfunction]
#[pyo3(signature = (host, oids=None, port=161, version="2c", community="public", user=None, auth_protocol="SHA", auth_password=None, priv_protocol="AES", priv_password=None, walk=false, timeout=2.0))]
#[allow(clippy::too_many_arguments)]
fn snmp(
    py: Python<'_>,
    host: String,
    oids: Option<Vec<String>>,
    port: u16,
    version: &str,
    community: &str,
    user: Option<String>,
    auth_protocol: &str,
    auth_password: Option<String>,
    priv_protocol: &str,
    priv_password: Option<String>,
    walk: bool,
    timeout: f64,
) -> PyResult<CheckResult> {
    let mut spec = SnmpSpec::default();
    (spec.host, spec.port, spec.version, spec.community, spec.user) =
        (Some(host), Some(port), Some(version.to_string()), Some(community.to_string()), user);
    (spec.auth_protocol, spec.auth_password, spec.priv_protocol, spec.priv_password) =
        (Some(auth_protocol.to_string()), auth_password, Some(priv_protocol.to_string()), priv_password);
    (spec.oids, spec.walk, spec.request_timeout) = (oids, Some(walk), Some(seconds(timeout, "timeout")?));
    run(py, build(CheckSpec::Snmp(spec), "snmp")?, Duration::from_secs(120))
}

/// One vulnerability finding.
#[pyclass(module = "secumon", frozen, get_all)]
#[derive(Clone)]
struct Finding {
    id: String,
    severity: String,
    asset: String,
    title: String,
    description: String,
    status: String,
    first_seen_ms: i64,
    last_seen_ms: i64,
}

impl From<secumon_core::Finding> for Finding {
    fn from(f: secumon_core::Finding) -> Self {
        Self {
            id: f.id,
            severity: f.severity.as_str().to_string(),
            asset: f.asset,
            title: f.title,
            description: f.description,
            status: if f.status == secumon_core::FindingStatus::Open { "open" } else { "fixed" }.to_string(),
            first_seen_ms: f.first_seen_ms,
            last_seen_ms: f.last_seen_ms,
        }
    }
}

#[pymethods]
impl Finding {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value = serde_json::json!({"id": self.id, "severity": self.severity, "asset": self.asset, "title": self.title,
            "description": self.description, "status": self.status, "first_seen_ms": self.first_seen_ms,
            "last_seen_ms": self.last_seen_ms});
        pythonize::pythonize(py, &value).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> String {
        format!("Finding(id={:?}, severity={:?}, asset={:?})", self.id, self.severity, self.asset)
    }
}

/// Report text from a path (str/PathBuf) or the report's bytes, and its name for errors.
fn report_text(source: &Bound<'_, PyAny>) -> PyResult<(String, String)> {
    if let Ok(bytes) = source.cast::<PyBytes>() {
        let text = String::from_utf8(bytes.as_bytes().to_vec())
            .map_err(|e| invalid_argument(format!("report is not UTF-8: {e}")))?;
        return Ok((text, "<bytes>".into()));
    }
    let path: std::path::PathBuf =
        source.extract().map_err(|_| invalid_argument("give a path or the report's bytes"))?;
    let text = std::fs::read_to_string(&path).map_err(|e| invalid_argument(format!("{}: {e}", path.display())))?;
    Ok((text, path.display().to_string()))
}

/// Parses a scanner report (SARIF 2.1.0, Trivy JSON, Nuclei JSONL, SecuMon JSON).
#[pyfunction]
#[pyo3(signature = (source, format="auto"))]
fn parse_findings(source: &Bound<'_, PyAny>, format: &str) -> PyResult<Vec<Finding>> {
    let (text, origin) = report_text(source)?;
    let report = secumon_findings::parse(&text, &origin, Some(format))
        .map_err(|e| secumon_error("ParseError", (e.to_string(), e.origin, e.line, e.column)))?;
    Ok(report.findings.into_iter().map(Finding::from).collect())
}

/// The SecuMon server's REST API.
#[pyclass(module = "secumon")]
struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    fn call(&self, py: Python<'_>, request: reqwest::RequestBuilder) -> PyResult<serde_json::Value> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let runtime = runtime()?;
        let base = self.base.clone();
        let answer = py.detach(|| {
            runtime.block_on(async move {
                let response = request
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .map_err(|e| Err(format!("cannot reach {base}: {e}")))?;
                let status = response.status();
                let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
                if status.is_success() { Ok(body) } else { Err(Ok((status, body))) }
            })
        });
        answer.map_err(|failure| match failure {
            Err(unreachable) => secumon_error("Unreachable", (unreachable,)),
            Ok((status, body)) => {
                let message = body["error"]["message"].as_str().unwrap_or("no message");
                let code = body["error"]["code"].as_str().map(str::to_string);
                let class = match status.as_u16() {
                    401 | 403 => "AuthError",
                    400..=499 => "RequestError",
                    _ => "ServerError",
                };
                secumon_error(class, (format!("{status}: {message}"), status.as_u16(), code))
            }
        })
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (url="http://127.0.0.1:8080", token=None))]
    fn new(url: &str, token: Option<String>) -> Self {
        Self { base: format!("{}/api/v1", url.trim_end_matches('/')), token, http: reqwest::Client::new() }
    }

    /// Sends a scanner report; returns counts of new, reopened, fixed and unchanged findings.
    #[pyo3(signature = (source, format="auto", full_scan=true))]
    fn import_findings<'py>(
        &self,
        py: Python<'py>,
        source: &Bound<'py, PyAny>,
        format: &str,
        full_scan: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (text, origin) = report_text(source)?;
        let request = self.http.post(format!("{}/findings", self.base)).query(&[
            ("format", format),
            ("full_scan", if full_scan { "true" } else { "false" }),
            ("origin", origin.as_str()),
        ]);
        let body = self.call(py, request.body(text))?;
        pythonize::pythonize(py, &body).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Findings, most severe first.
    #[pyo3(signature = (asset=None, severity=None, status=None, limit=100))]
    fn findings(
        &self,
        py: Python<'_>,
        asset: Option<String>,
        severity: Option<String>,
        status: Option<String>,
        limit: u32,
    ) -> PyResult<Vec<Finding>> {
        let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
        query.extend(asset.map(|a| ("asset", a)));
        query.extend(severity.map(|s| ("severity", s)));
        query.extend(status.map(|s| ("status", s)));
        let body = self.call(py, self.http.get(format!("{}/findings", self.base)).query(&query))?;
        let findings: Vec<secumon_core::Finding> =
            serde_json::from_value(body["findings"].clone()).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Ok(findings.into_iter().map(Finding::from).collect())
    }

    /// Pushes samples and events for `host` as one batch (validated like an agent's).
    /// A sample is `(name, value)`, `(name, value, labels)` or a dict with `name`, `value`,
    /// optional `labels` and `timestamp_ms`; an event a dict with `kind`, `severity`,
    /// optional `labels`, `message`, `timestamp_ms`. The request says when it was sent, so
    /// the server corrects the timestamps if this machine's clock is off.
    #[pyo3(signature = (host, samples=None, events=None, source="python"))]
    fn push<'py>(
        &self,
        py: Python<'py>,
        host: &str,
        samples: Option<Vec<Bound<'py, PyAny>>>,
        events: Option<Vec<Bound<'py, PyAny>>>,
        source: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut sample_values = Vec::new();
        for sample in samples.unwrap_or_default() {
            let value: serde_json::Value = if let Ok((name, value)) = sample.extract::<(String, f64)>() {
                serde_json::json!({"name": name, "value": value})
            } else if let Ok((name, value, labels)) =
                sample.extract::<(String, f64, std::collections::BTreeMap<String, String>)>()
            {
                serde_json::json!({"name": name, "value": value, "labels": labels})
            } else {
                pythonize::depythonize(&sample).map_err(|e| invalid_argument(format!("sample {sample}: {e}")))?
            };
            sample_values.push(value);
        }
        let mut event_values: Vec<serde_json::Value> = Vec::new();
        for event in events.unwrap_or_default() {
            event_values
                .push(pythonize::depythonize(&event).map_err(|e| invalid_argument(format!("event {event}: {e}")))?);
        }
        // This machine's clock as the request leaves: the server measures the offset from it
        // and re-stamps the batch when this clock is off (untimed values are taken as of now).
        let body = serde_json::json!({"source": source, "host": host, "samples": sample_values,
            "events": event_values, "sent_at_ms": secumon_core::now_ms()});
        let answer = self.call(py, self.http.post(format!("{}/ingest", self.base)).json(&body))?;
        pythonize::pythonize(py, &answer).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Alerts pending or firing now, as dicts.
    #[pyo3(signature = (status=None, severity=None))]
    fn alerts<'py>(
        &self,
        py: Python<'py>,
        status: Option<String>,
        severity: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut query: Vec<(&str, String)> = Vec::new();
        query.extend(status.map(|s| ("status", s)));
        query.extend(severity.map(|s| ("severity", s)));
        let body = self.call(py, self.http.get(format!("{}/alerts", self.base)).query(&query))?;
        pythonize::pythonize(py, &body["alerts"]).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// A host's metric over a period: `{"series": [{"labels": ..., "points": [...]}], ...}`.
    #[pyo3(signature = (host, metric, period="1h", step=None, agg="avg"))]
    fn query<'py>(
        &self,
        py: Python<'py>,
        host: &str,
        metric: &str,
        period: &str,
        step: Option<&str>,
        agg: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut query = vec![("metric", metric), ("period", period), ("agg", agg)];
        query.extend(step.map(|s| ("step", s)));
        // The host is one path segment, escaped: a name with `/`, `?` or `#` must not change the route.
        let mut url = reqwest::Url::parse(&self.base).map_err(|e| invalid_argument(e.to_string()))?;
        url.path_segments_mut()
            .map_err(|()| invalid_argument("the server URL cannot take a path"))?
            .extend(["metrics", "hosts", host, "history"]);
        let body = self.call(py, self.http.get(url).query(&query))?;
        pythonize::pythonize(py, &body).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> String {
        format!("Client({:?})", self.base.trim_end_matches("/api/v1"))
    }
}

#[pymodule]
fn _secumon(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<CheckResult>()?;
    module.add_class::<Finding>()?;
    module.add_class::<Client>()?;
    module.add_function(wrap_pyfunction!(ping, module)?)?;
    module.add_function(wrap_pyfunction!(scan_ports, module)?)?;
    module.add_function(wrap_pyfunction!(tls, module)?)?;
    module.add_function(wrap_pyfunction!(http_check, module)?)?;
    module.add_function(wrap_pyfunction!(dns, module)?)?;
    module.add_function(wrap_pyfunction!(snmp, module)?)?;
    module.add_function(wrap_pyfunction!(trace, module)?)?;
    module.add_function(wrap_pyfunction!(check, module)?)?;
    module.add_function(wrap_pyfunction!(parse_findings, module)?)?;
    Ok(())
}
