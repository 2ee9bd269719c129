//! Scheduled scans: the server starts a scanner through its webhook once per schedule slot,
//! polls the scanner's report URL until the report is ready, and imports it through the
//! findings import path (`Store::import_findings`), so findings go through the same
//! lifecycle (new, reopened, fixed) and finding rules as a report pushed to the API.
//!
//! A slot is claimed in the store (a record `scan_run/<name>@<slot start ms>` of the
//! trigger's tenant, inserted only if absent) before the scanner is called: one run per slot
//! whatever the restarts and however many server processes share the store. A process that
//! dies while polling leaves that slot's report unimported (at most once, rather than
//! starting a scan twice); the record says how each run ended.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use secumon_alert::render_template;
use secumon_core::{Finding, now_ms};
use secumon_store::{FindingsImport, Store};
use serde::Deserialize;
use tokio::sync::watch;

use crate::tenants::AlertingByTenant;

/// The record kind a run is claimed and reported under.
pub const RUN_RECORD_KIND: &str = "scan_run";
/// Largest report accepted from a scanner (as through the API).
const MAX_REPORT_BYTES: usize = crate::api::MAX_REPORT_BYTES;

/// Why a scan triggers file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanTriggerError {
    /// Not YAML of the expected shape.
    #[error(transparent)]
    Parse(#[from] secumon_core::config::ConfigError),
    /// A value that cannot be used, named with its trigger and field.
    #[error("{file}: scan {name:?}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// The trigger.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// The scan triggers file (`secumon server --scans FILE`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanTriggerFile {
    /// The triggers.
    pub scans: Vec<ScanTrigger>,
}

/// One scheduled scan.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanTrigger {
    /// Unique within the file (letters, digits, `-`, `_`).
    pub name: String,
    /// The tenant the findings belong to (default `default`).
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The schedule: one run per slot of this length, slots aligned on the Unix epoch (`24h`
    /// runs once a UTC day); the first run is in the slot the server starts in.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// The webhook that starts a scan.
    pub start_url: String,
    /// Its method (default `POST`).
    #[serde(default = "default_method")]
    pub start_method: String,
    /// The start request's JSON body template (`{{ $labels.slot }}`, `{{ $labels.name }}`...).
    #[serde(default)]
    pub start_body: Option<String>,
    /// The report's URL template: `{{ $labels.answer.FIELD }}` is a field of the start
    /// webhook's JSON answer (`{{ $labels.answer.id }}`), URL-encoded.
    pub report_url: String,
    /// The report's format: `sarif`, `trivy`, `nuclei` or `secumon`.
    pub format: String,
    /// Whether the report covers everything the scanner watches, so findings it no longer
    /// lists are fixed (default true).
    #[serde(default = "default_true")]
    pub full_scan: bool,
    /// Headers sent with both requests.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers that are credentials (`Authorization`), sealable like channel credentials.
    #[serde(default)]
    pub secret_headers: BTreeMap<String, String>,
    /// Wait between polls of the report URL (default 30 s).
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_every: Duration,
    /// Give up on a run whose report is not ready after this long (default 2 h).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_tenant() -> String {
    secumon_core::model::DEFAULT_TENANT.to_string()
}
fn default_method() -> String {
    "POST".into()
}
fn default_true() -> bool {
    true
}
fn default_poll() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(2 * 3600)
}

impl ScanTriggerFile {
    /// Parses and checks a triggers file; errors name the file, the trigger and the field.
    pub fn parse(text: &str, file: &str) -> Result<Self, ScanTriggerError> {
        let parsed: Self = secumon_core::config::parse_yaml(text, file)?;
        let mut names = HashSet::new();
        for scan in &parsed.scans {
            let invalid =
                |message: String| ScanTriggerError::Invalid { file: file.into(), name: scan.name.clone(), message };
            if scan.name.is_empty() || !scan.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(invalid("`name` must be letters, digits, `-` or `_`".into()));
            }
            if !names.insert(scan.name.clone()) {
                return Err(invalid("`name` is used twice".into()));
            }
            crate::auth::validate_tenant_name(&scan.tenant).map_err(|e| invalid(format!("`tenant`: {e}")))?;
            if scan.every < Duration::from_secs(1) {
                return Err(invalid("`every` must be at least 1s".into()));
            }
            if scan.poll_every.is_zero() || scan.timeout.is_zero() {
                return Err(invalid("`poll_every` and `timeout` must be more than zero".into()));
            }
            if !secumon_findings::parsers().iter().any(|p| p.format() == scan.format) {
                return Err(invalid(format!("`format` {:?}: sarif, trivy, nuclei or secumon", scan.format)));
            }
            if reqwest::Method::from_bytes(scan.start_method.to_ascii_uppercase().as_bytes()).is_err() {
                return Err(invalid(format!("`start_method` {:?} is not an HTTP method", scan.start_method)));
            }
            for (field, template) in [
                ("start_url", Some(&scan.start_url)),
                ("report_url", Some(&scan.report_url)),
                ("start_body", scan.start_body.as_ref()),
            ] {
                if let Some(template) = template {
                    secumon_alert::check_template(template).map_err(|e| invalid(format!("`{field}`: {e}")))?;
                }
            }
            scan.header_map().map_err(invalid)?;
        }
        Ok(parsed)
    }
}

impl ScanTrigger {
    /// The credentials (secret header values), by field, for the server to open sealed ones.
    pub fn credentials_mut(&mut self) -> impl Iterator<Item = &mut String> {
        self.secret_headers.values_mut()
    }

    fn header_map(&self) -> Result<reqwest::header::HeaderMap, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (field, map) in [("headers", &self.headers), ("secret_headers", &self.secret_headers)] {
            for (name, value) in map {
                let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("`{field}`: {name:?} is not a header name"))?;
                let mut value = reqwest::header::HeaderValue::from_str(value)
                    .map_err(|_| format!("`{field}`: the value of {name} is not a header value"))?;
                value.set_sensitive(field == "secret_headers");
                headers.insert(name, value);
            }
        }
        Ok(headers)
    }

    /// The start of the slot `at_ms` falls in.
    fn slot(&self, at_ms: i64) -> i64 {
        let every = self.every.as_millis().clamp(1, i64::MAX as u128) as i64;
        at_ms.div_euclid(every) * every
    }
}

/// How one run ended, kept in its record.
#[derive(Debug, serde::Serialize)]
struct RunRecord {
    scan: String,
    slot_ms: i64,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    findings: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reopened: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fixed: Option<usize>,
    at_ms: i64,
}

/// Runs the triggers until `stopped`: checks every second whether a trigger's slot is due.
pub(crate) async fn run(
    triggers: Vec<ScanTrigger>,
    store: Arc<dyn Store>,
    alerting: Arc<AlertingByTenant>,
    mut stopped: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(60)).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "scheduled scans: cannot build an HTTP client; none will run");
            return;
        }
    };
    let triggers: Vec<Arc<ScanTrigger>> = triggers.into_iter().map(Arc::new).collect();
    // The latest slot each trigger is known to have run (or to have been claimed) in.
    let mut done: HashMap<String, i64> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut running = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            _ = ticker.tick() => {}
        }
        while running.try_join_next().is_some() {}
        let now = now_ms();
        for trigger in &triggers {
            let slot = trigger.slot(now);
            if done.get(&trigger.name).is_some_and(|last| *last >= slot) {
                continue;
            }
            let id = format!("{}@{slot}", trigger.name);
            let claim = RunRecord::state(trigger, slot, "started");
            match store.insert_record(&trigger.tenant, RUN_RECORD_KIND, &id, &claim).await {
                Ok(true) => {
                    tracing::info!(scan = %trigger.name, tenant = %trigger.tenant, slot, "scheduled scan starting");
                    done.insert(trigger.name.clone(), slot);
                    let (run, store, alerting, client) =
                        (Arc::clone(trigger), Arc::clone(&store), Arc::clone(&alerting), client.clone());
                    let stop = stopped.clone();
                    running.spawn(async move { run_once(&run, slot, &client, &*store, &alerting, stop).await });
                }
                // Claimed before: by this process before a restart, or by another.
                Ok(false) => {
                    done.insert(trigger.name.clone(), slot);
                }
                Err(error) => tracing::error!(%error, scan = %trigger.name, "cannot claim a scheduled scan's slot"),
            }
        }
    }
    running.abort_all();
}

impl RunRecord {
    /// A run of `trigger`'s slot in `state`, nothing counted yet, as of now.
    fn new(trigger: &ScanTrigger, slot_ms: i64, state: &'static str) -> Self {
        RunRecord {
            scan: trigger.name.clone(),
            slot_ms,
            state,
            error: None,
            findings: None,
            new: None,
            reopened: None,
            fixed: None,
            at_ms: now_ms(),
        }
    }

    fn state(trigger: &ScanTrigger, slot_ms: i64, state: &'static str) -> String {
        serde_json::to_string(&Self::new(trigger, slot_ms, state)).unwrap_or_default()
    }
}

/// One run: start, poll, import; its outcome written to its record.
async fn run_once(
    trigger: &ScanTrigger,
    slot: i64,
    client: &reqwest::Client,
    store: &dyn Store,
    alerting: &AlertingByTenant,
    stopped: watch::Receiver<bool>,
) {
    let outcome = scan(trigger, slot, client, stopped).await;
    let mut record = RunRecord::new(trigger, slot, "failed");
    match outcome {
        Ok(text) => match import(trigger, &text, store, alerting).await {
            Ok((findings, summary)) => {
                tracing::info!(scan = %trigger.name, findings, new = summary.new.len(), fixed = summary.fixed.len(),
                    "scheduled scan imported");
                record.state = "imported";
                record.findings = Some(findings);
                record.new = Some(summary.new.len());
                record.reopened = Some(summary.reopened.len());
                record.fixed = Some(summary.fixed.len());
            }
            Err(error) => record.error = Some(error),
        },
        Err(error) => record.error = Some(error),
    }
    if let Some(error) = &record.error {
        tracing::error!(scan = %trigger.name, tenant = %trigger.tenant, %error, "scheduled scan failed");
    }
    let id = format!("{}@{slot}", trigger.name);
    let body = serde_json::to_string(&record).unwrap_or_default();
    if let Err(error) = store.put_record(&trigger.tenant, RUN_RECORD_KIND, &id, &body).await {
        tracing::error!(%error, scan = %trigger.name, "cannot record a scheduled scan's outcome");
    }
}

/// A JSON string's content for `text` (what goes between its quotes).
fn json_escaped(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// `text` percent-encoded but for RFC 3986's unreserved characters, for a URL's path or query.
fn url_escaped(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn render_url(template: &str, labels: &BTreeMap<String, String>) -> Result<reqwest::Url, String> {
    let escaped: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.clone(), url_escaped(v))).collect();
    let url = render_template(template, &escaped, 0.0);
    reqwest::Url::parse(&url).map_err(|e| format!("the URL made from the template is not a URL: {e}"))
}

/// Starts the scan and polls until the report is ready; returns the report's text.
async fn scan(
    trigger: &ScanTrigger,
    slot: i64,
    client: &reqwest::Client,
    mut stopped: watch::Receiver<bool>,
) -> Result<String, String> {
    let headers = trigger.header_map()?;
    let mut labels = BTreeMap::from([
        ("name".to_string(), trigger.name.clone()),
        ("tenant".to_string(), trigger.tenant.clone()),
        ("slot_ms".to_string(), slot.to_string()),
        (
            "slot".to_string(),
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(slot.max(0) as u64))
                .to_string(),
        ),
    ]);
    let method = reqwest::Method::from_bytes(trigger.start_method.to_ascii_uppercase().as_bytes())
        .map_err(|_| "bad start_method".to_string())?;
    let mut start = client.request(method, render_url(&trigger.start_url, &labels)?).headers(headers.clone());
    if let Some(template) = &trigger.start_body {
        let escaped: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.clone(), json_escaped(v))).collect();
        let body = render_template(template, &escaped, 0.0);
        serde_json::from_str::<serde_json::Value>(&body)
            .map_err(|e| format!("the start body template did not make JSON: {e}"))?;
        if !headers.contains_key(reqwest::header::CONTENT_TYPE) {
            start = start.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        start = start.body(body);
    }
    let answer = start.send().await.map_err(|e| format!("start webhook: {}", e.without_url()))?;
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("start webhook answered HTTP {}", status.as_u16()));
    }
    // The answer's fields, for the report URL (`{{ $labels.answer.id }}`).
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(&text) {
        for (key, value) in fields {
            let value = match value {
                serde_json::Value::String(text) => text,
                serde_json::Value::Number(number) => number.to_string(),
                serde_json::Value::Bool(flag) => flag.to_string(),
                _ => continue,
            };
            labels.insert(format!("answer.{key}"), value);
        }
    }
    let report_url = render_url(&trigger.report_url, &labels)?;
    let deadline = tokio::time::Instant::now() + trigger.timeout;
    loop {
        let answer = client.get(report_url.clone()).headers(headers.clone()).send().await;
        match answer {
            Ok(answer) if answer.status() == reqwest::StatusCode::OK => {
                if answer.content_length().is_some_and(|length| length > MAX_REPORT_BYTES as u64) {
                    return Err(format!("the report is larger than {MAX_REPORT_BYTES} bytes"));
                }
                let bytes = answer.bytes().await.map_err(|e| format!("report: {}", e.without_url()))?;
                if bytes.len() > MAX_REPORT_BYTES {
                    return Err(format!("the report is larger than {MAX_REPORT_BYTES} bytes"));
                }
                return String::from_utf8(bytes.to_vec()).map_err(|_| "the report is not UTF-8 text".to_string());
            }
            // Not ready yet.
            Ok(answer) if [202, 404].contains(&answer.status().as_u16()) => {}
            // The scanner's trouble may pass; keep polling until the deadline.
            Ok(answer) if answer.status().is_server_error() => {
                tracing::warn!(scan = %trigger.name, status = answer.status().as_u16(), "report URL failed; polling on");
            }
            Ok(answer) => return Err(format!("report URL answered HTTP {}", answer.status().as_u16())),
            Err(error) => {
                tracing::warn!(scan = %trigger.name, error = %error.without_url(), "report URL unreachable; polling on")
            }
        }
        if tokio::time::Instant::now() + trigger.poll_every > deadline {
            return Err(format!("the report was not ready within {}", humantime::format_duration(trigger.timeout)));
        }
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return Err("the server stopped while waiting for the report".into()),
            _ = tokio::time::sleep(trigger.poll_every) => {}
        }
    }
}

/// Imports a report through the findings import path, and hands what changed to the
/// tenant's finding rules.
async fn import(
    trigger: &ScanTrigger,
    text: &str,
    store: &dyn Store,
    alerting: &AlertingByTenant,
) -> Result<(usize, secumon_store::ImportSummary), String> {
    let origin = format!("scan {}", trigger.name);
    let (text, format) = (text.to_string(), trigger.format.clone());
    let report = tokio::task::spawn_blocking(move || secumon_findings::parse(&text, &origin, Some(format.as_str())))
        .await
        .map_err(|e| format!("report parsing stopped: {e}"))?
        .map_err(|e| e.to_string())?;
    let import = FindingsImport {
        source: report.format.to_string(),
        findings: report.findings,
        full_scan: trigger.full_scan,
        at_ms: now_ms(),
    };
    let summary = store.import_findings(&trigger.tenant, &import).await.map_err(|e| e.to_string())?;
    let changed: Vec<Finding> = summary.new.iter().chain(&summary.reopened).chain(&summary.fixed).cloned().collect();
    match alerting.get(&trigger.tenant).await {
        Ok(engine) => engine.observe_findings(&changed, &summary.samples),
        Err(error) => tracing::warn!(%error, scan = %trigger.name, "imported findings not evaluated for alerts"),
    }
    Ok((import.findings.len(), summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "scans:\n  - name: nightly\n    tenant: acme\n    every: 24h\n    \
        start_url: http://127.0.0.1:1/scans\n    report_url: 'http://127.0.0.1:1/scans/{{ $labels.answer.id }}'\n    \
        format: sarif\n";

    #[test]
    fn a_file_parses_and_bad_values_name_the_trigger_and_field() {
        let file = ScanTriggerFile::parse(GOOD, "scans.yaml").unwrap();
        assert_eq!(
            (file.scans[0].every, file.scans[0].poll_every),
            (Duration::from_secs(86_400), Duration::from_secs(30))
        );
        for (from, to, field) in [
            ("format: sarif", "format: pdf", "`format`"),
            ("every: 24h", "every: 10ms", "`every`"),
            ("name: nightly", "name: 'a b'", "`name`"),
            ("tenant: acme", "tenant: 'no such/tenant'", "`tenant`"),
            ("answer.id }}", "answer.id ", "`report_url`"),
        ] {
            let error = ScanTriggerFile::parse(&GOOD.replace(from, to), "scans.yaml").err().unwrap().to_string();
            assert!(error.contains(field) && error.starts_with("scans.yaml"), "{error}");
        }
        assert!(ScanTriggerFile::parse(&GOOD.replace("format: sarif", "format: sarif\n    colour: red"), "f").is_err());
    }

    #[test]
    fn the_example_file_parses() {
        let file = ScanTriggerFile::parse(include_str!("../../examples/scans.yaml"), "examples/scans.yaml").unwrap();
        assert_eq!(file.scans.len(), 2);
    }

    #[test]
    fn slots_align_on_the_epoch_and_values_are_escaped_for_urls() {
        let trigger = ScanTriggerFile::parse(GOOD, "s").unwrap().scans.remove(0);
        assert_eq!(trigger.slot(86_400_000 + 5), 86_400_000);
        assert_eq!(trigger.slot(86_400_000 - 1), 0);
        let labels = BTreeMap::from([("answer.id".to_string(), "a/b c?".to_string())]);
        let url = render_url("http://h/scans/{{ $labels.answer.id }}/report", &labels).unwrap();
        assert_eq!(url.as_str(), "http://h/scans/a%2Fb%20c%3F/report");
    }
}
