//! The `secumon` Python module's native part: probe checks (ping, trace, ports, TLS, HTTP,
//! DNS, SNMP, or any check from its spec),
//! findings parsing and clients of the server's API (`Client`, and `AsyncClient` for
//! asyncio), both through `secumon_api`'s typed client. Every call releases the GIL while
//! Rust works. Errors are `secumon.errors`' classes (`InvalidArgument`, a `ValueError`;
//! `ParseError` with the report's file, line and column; `AuthError`, a `PermissionError`;
//! …), while a target that cannot be checked gives a result with status `unknown` and the
//! reason, as in the CLI.

use std::sync::OnceLock;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use secumon_api::{
    AlertFilter, AlertList, ClientError as ApiClientError, ErrorCode, FindingList, FindingsQuery, History,
    HistoryQuery, ImportQuery, ImportResult, IngestEvent, IngestRequest, IngestSample, Ingested, Labels, Refusal,
};
use secumon_scan::{
    Check, CheckError, CheckSpec, DnsSpec, HttpSpec, PingSpec, PortsSpec, SnmpSpec, TlsSpec, TraceSpec, run_check,
};

/// The module's tokio runtime, shared by checks, the synchronous client and the awaitables.
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
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

/// The `secumon.errors` class a refusal is raised as, by the API's code: the one table
/// from `secumon_api`'s codes to Python's classes. A code this build does not know (a newer
/// server's), or a refusal without a body (a proxy's), goes by its status.
fn refusal_class(refusal: &Refusal) -> &'static str {
    use ErrorCode::*;
    match refusal.code {
        Some(Unauthenticated | InvalidIdToken | Forbidden) => "AuthError",
        Some(
            BadRequest | NotFound | Conflict | EnrollmentOff | FindingsLimit | SeriesLimit | TooLarge | ReportTooLarge
            | UnsupportedMediaType | RateLimited | Locked | IngestRateLimited,
        ) => "RequestError",
        Some(Internal | IdentityProvider | Busy | StoreUnavailable) => "ServerError",
        _ => match refusal.status.as_u16() {
            401 | 403 => "AuthError",
            400..=499 => "RequestError",
            _ => "ServerError",
        },
    }
}

/// A failed API call as the `secumon.errors` class that says why: a refusal with its
/// status and the API's code, `Unreachable`, or `InvalidArgument` for a setting.
fn api_error(error: ApiClientError) -> PyErr {
    match error {
        ApiClientError::Refused(refusal) => {
            let status = refusal.status;
            let code = Some(refusal.code_text.clone()).filter(|code| !code.is_empty());
            let message = format!("{status}: {}", refusal.message);
            secumon_error(refusal_class(&refusal), (message, status.as_u16(), code))
        }
        unreachable @ ApiClientError::Unreachable { .. } => secumon_error("Unreachable", (unreachable.to_string(),)),
        ApiClientError::Setting(setting) => invalid_argument(setting),
        other => secumon_error("SecuMonError", (other.to_string(),)),
    }
}

/// An answer as plain Python values, through JSON so it reads as the API's wire format
/// (a NaN is `None`, as in the body).
fn to_python<T: serde::Serialize>(py: Python<'_>, answer: &T) -> PyResult<Py<PyAny>> {
    let value = serde_json::to_value(answer).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok(pythonize::pythonize(py, &value).map_err(|e| PyRuntimeError::new_err(e.to_string()))?.unbind())
}

fn findings_to_python(py: Python<'_>, list: FindingList) -> PyResult<Py<PyAny>> {
    let findings: Vec<Finding> = list.findings.into_iter().map(Finding::from).collect();
    Ok(findings.into_pyobject(py)?.into_any().unbind())
}

/// Runs an API call for the synchronous client, the GIL released meanwhile.
fn blocking<T: Send>(py: Python<'_>, call: impl Future<Output = Result<T, ApiClientError>> + Send) -> PyResult<T> {
    let runtime = runtime()?;
    py.detach(|| runtime.block_on(call)).map_err(api_error)
}

/// An API call as an asyncio awaitable: the call runs on the module's tokio runtime, its
/// answer is made a Python value by `convert` when it comes.
fn awaitable<'py, T: Send + 'static>(
    py: Python<'py>,
    call: impl Future<Output = Result<T, ApiClientError>> + Send + 'static,
    convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    // The awaitables run on the runtime the synchronous calls use (one pool of threads);
    // `Err` only says it was handed over before.
    let _ = pyo3_async_runtimes::tokio::init_with_runtime(runtime()?);
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let answer = call.await.map_err(api_error)?;
        Python::attach(|py| convert(py, answer))
    })
}

/// The server calls both clients make: the arguments are read here, with the GIL; the
/// futures they give hold only Rust values, so they run without it.
#[derive(Clone)]
struct Api {
    client: secumon_api::Client,
}

impl Api {
    fn new(url: &str, token: Option<String>) -> PyResult<Self> {
        // A report import may take a while on a large report.
        let client = secumon_api::Client::builder(url)
            .token_opt(token)
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(api_error)?;
        Ok(Self { client })
    }

    fn import_findings(
        &self,
        source: &Bound<'_, PyAny>,
        format: &str,
        full_scan: bool,
    ) -> PyResult<impl Future<Output = Result<ImportResult, ApiClientError>> + Send + 'static> {
        let (text, origin) = report_text(source)?;
        let query = ImportQuery { format: Some(format.to_string()), full_scan: Some(full_scan), origin: Some(origin) };
        let client = self.client.clone();
        Ok(async move { client.import_findings(&query, text.into_bytes()).await })
    }

    fn findings(
        &self,
        asset: Option<String>,
        severity: Option<String>,
        status: Option<String>,
        limit: u32,
    ) -> impl Future<Output = Result<FindingList, ApiClientError>> + Send + 'static {
        let query = FindingsQuery { asset, severity, status, limit: Some(limit), offset: None };
        let client = self.client.clone();
        async move { client.findings(&query).await }
    }

    fn push(
        &self,
        host: &str,
        samples: Option<Vec<Bound<'_, PyAny>>>,
        events: Option<Vec<Bound<'_, PyAny>>>,
        source: &str,
    ) -> PyResult<impl Future<Output = Result<Ingested, ApiClientError>> + Send + 'static> {
        let mut sample_values = Vec::new();
        for sample in samples.unwrap_or_default() {
            let value = if let Ok((name, value)) = sample.extract::<(String, f64)>() {
                IngestSample { name, labels: Labels::new(), value, timestamp_ms: None }
            } else if let Ok((name, value, labels)) = sample.extract::<(String, f64, Labels)>() {
                IngestSample { name, labels, value, timestamp_ms: None }
            } else {
                pythonize::depythonize(&sample).map_err(|e| invalid_argument(format!("sample {sample}: {e}")))?
            };
            sample_values.push(value);
        }
        let mut event_values: Vec<IngestEvent> = Vec::new();
        for event in events.unwrap_or_default() {
            event_values
                .push(pythonize::depythonize(&event).map_err(|e| invalid_argument(format!("event {event}: {e}")))?);
        }
        // This machine's clock as the request leaves: the server measures the offset from it
        // and re-stamps the batch when this clock is off (untimed values are taken as of now).
        let request = IngestRequest {
            source: source.to_string(),
            host: host.to_string(),
            labels: Labels::new(),
            samples: sample_values,
            events: event_values,
            sent_at_ms: Some(secumon_core::now_ms()),
        };
        let client = self.client.clone();
        Ok(async move { client.ingest(&request).await })
    }

    fn alerts(
        &self,
        status: Option<String>,
        severity: Option<String>,
    ) -> impl Future<Output = Result<AlertList, ApiClientError>> + Send + 'static {
        let filter = AlertFilter { status, severity };
        let client = self.client.clone();
        async move { client.alerts(&filter).await }
    }

    fn query(
        &self,
        host: &str,
        metric: &str,
        period: &str,
        step: Option<&str>,
        agg: &str,
    ) -> impl Future<Output = Result<History, ApiClientError>> + Send + 'static {
        let query = HistoryQuery {
            metric: Some(metric.to_string()),
            period: Some(period.to_string()),
            step: step.map(str::to_string),
            agg: Some(agg.to_string()),
        };
        let (client, host) = (self.client.clone(), host.to_string());
        // The client escapes the host as one path segment: `/`, `?` or `#` cannot change the route.
        async move { client.host_history(&host, &query).await }
    }
}

fn alerts_to_python(py: Python<'_>, list: AlertList) -> PyResult<Py<PyAny>> {
    to_python(py, &list.alerts)
}

fn answer_to_python<T: serde::Serialize>(py: Python<'_>, answer: T) -> PyResult<Py<PyAny>> {
    to_python(py, &answer)
}

/// The SecuMon server's REST API; every call blocks (with the GIL released) until it answers.
#[pyclass(module = "secumon")]
struct Client {
    api: Api,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (url="http://127.0.0.1:8080", token=None))]
    fn new(url: &str, token: Option<String>) -> PyResult<Self> {
        Ok(Self { api: Api::new(url, token)? })
    }

    /// Sends a scanner report; returns counts of new, reopened, fixed and unchanged findings.
    #[pyo3(signature = (source, format="auto", full_scan=true))]
    fn import_findings(
        &self,
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        format: &str,
        full_scan: bool,
    ) -> PyResult<Py<PyAny>> {
        let answer = blocking(py, self.api.import_findings(source, format, full_scan)?)?;
        to_python(py, &answer)
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
        let list = blocking(py, self.api.findings(asset, severity, status, limit))?;
        Ok(list.findings.into_iter().map(Finding::from).collect())
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
    ) -> PyResult<Py<PyAny>> {
        let answer = blocking(py, self.api.push(host, samples, events, source)?)?;
        to_python(py, &answer)
    }

    /// Alerts pending or firing now, as dicts.
    #[pyo3(signature = (status=None, severity=None))]
    fn alerts(&self, py: Python<'_>, status: Option<String>, severity: Option<String>) -> PyResult<Py<PyAny>> {
        let list = blocking(py, self.api.alerts(status, severity))?;
        alerts_to_python(py, list)
    }

    /// A host's metric over a period: `{"series": [{"labels": ..., "points": [...]}], ...}`.
    #[pyo3(signature = (host, metric, period="1h", step=None, agg="avg"))]
    fn query(
        &self,
        py: Python<'_>,
        host: &str,
        metric: &str,
        period: &str,
        step: Option<&str>,
        agg: &str,
    ) -> PyResult<Py<PyAny>> {
        let history = blocking(py, self.api.query(host, metric, period, step, agg))?;
        to_python(py, &history)
    }

    fn __repr__(&self) -> String {
        format!("Client({:?})", self.api.client.server())
    }
}

/// The same calls as [`Client`] for asyncio: each method returns an awaitable, and the
/// call runs on the module's tokio runtime while the event loop goes on.
#[pyclass(module = "secumon")]
struct AsyncClient {
    api: Api,
}

#[pymethods]
impl AsyncClient {
    #[new]
    #[pyo3(signature = (url="http://127.0.0.1:8080", token=None))]
    fn new(url: &str, token: Option<String>) -> PyResult<Self> {
        Ok(Self { api: Api::new(url, token)? })
    }

    /// Sends a scanner report; the awaitable gives counts of new, reopened, fixed and
    /// unchanged findings.
    #[pyo3(signature = (source, format="auto", full_scan=true))]
    fn import_findings<'py>(
        &self,
        py: Python<'py>,
        source: &Bound<'py, PyAny>,
        format: &str,
        full_scan: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.api.import_findings(source, format, full_scan)?, answer_to_python)
    }

    /// Findings, most severe first.
    #[pyo3(signature = (asset=None, severity=None, status=None, limit=100))]
    fn findings<'py>(
        &self,
        py: Python<'py>,
        asset: Option<String>,
        severity: Option<String>,
        status: Option<String>,
        limit: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.api.findings(asset, severity, status, limit), findings_to_python)
    }

    /// Pushes samples and events for `host` as one batch, as `Client.push` does.
    #[pyo3(signature = (host, samples=None, events=None, source="python"))]
    fn push<'py>(
        &self,
        py: Python<'py>,
        host: &str,
        samples: Option<Vec<Bound<'py, PyAny>>>,
        events: Option<Vec<Bound<'py, PyAny>>>,
        source: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.api.push(host, samples, events, source)?, answer_to_python)
    }

    /// Alerts pending or firing now, as dicts.
    #[pyo3(signature = (status=None, severity=None))]
    fn alerts<'py>(
        &self,
        py: Python<'py>,
        status: Option<String>,
        severity: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.api.alerts(status, severity), alerts_to_python)
    }

    /// A host's metric over a period, as `Client.query` gives it.
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
        awaitable(py, self.api.query(host, metric, period, step, agg), answer_to_python)
    }

    fn __repr__(&self) -> String {
        format!("AsyncClient({:?})", self.api.client.server())
    }
}

#[pymodule]
fn _secumon(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<CheckResult>()?;
    module.add_class::<Finding>()?;
    module.add_class::<Client>()?;
    module.add_class::<AsyncClient>()?;
    module.add_function(wrap_pyfunction!(ping, module)?)?;
    module.add_function(wrap_pyfunction!(scan_ports, module)?)?;
    module.add_function(wrap_pyfunction!(tls, module)?)?;
    module.add_function(wrap_pyfunction!(http_check, module)?)?;
    module.add_function(wrap_pyfunction!(dns, module)?)?;
    module.add_function(wrap_pyfunction!(snmp, module)?)?;
    module.add_function(wrap_pyfunction!(trace, module)?)?;
    module.add_function(wrap_pyfunction!(check, module)?)?;
    module.add_function(wrap_pyfunction!(parse_findings, module)?)?;
    // Not a module attribute: only `atexit` holds it.
    let drain = wrap_pyfunction!(drain_runtime, module)?;
    module.py().import("atexit")?.call_method1("register", (drain,))?;
    Ok(())
}

/// Run by `atexit`, before the interpreter finalizes: lets the runtime's tasks end (an
/// awaitable's task drops its Python objects, with the GIL, just after giving its answer;
/// doing that while the interpreter finalizes aborts the process), the GIL released
/// meanwhile. At most a second: idle HTTP connections are tasks that never end on their own.
#[pyfunction]
fn drain_runtime(py: Python<'_>) {
    let Some(runtime) = RUNTIME.get() else { return };
    py.detach(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while runtime.metrics().num_alive_tasks() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
}
