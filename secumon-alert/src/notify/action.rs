//! The automation action channel (SecuOps): calls an external API with a request rendered
//! from the alert, and keeps what the API answered (status, a bounded excerpt of the body,
//! latency) so an operator can see what the automation did, not only that it was called.
//!
//! The body is an annotation template (see [`crate::template`]) over the first alert's
//! labels and value, plus `alertname`, `status`, `severity` and `summary`. In a JSON body
//! every label value is escaped as a JSON string's content before it is put in, so a label
//! holding a quote cannot change the request's shape; the rendered body must then parse.
//! A 5xx answer, a timeout or a connection error is tried again with backoff; a 4xx is not
//! (the API refused this request and would refuse it again).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Answer, Notifier, NotifyError};
use crate::engine::AlertState;
use crate::group::Notification;
use crate::template::{check_template, render_template};

/// Bytes of the answer's body kept in the history.
pub const ANSWER_EXCERPT_BYTES: usize = 1024;

/// How the body template is filled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// Label values JSON-escaped; the result must be JSON; sent as `application/json`.
    #[default]
    Json,
    /// Values put in as they are; sent as `text/plain` unless a header says otherwise.
    Text,
}

/// The action channel's settings (the `type: action` entry of the rules file's `channels`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// `GET`, `POST` (default), `PUT`, `PATCH` or `DELETE`.
    #[serde(default = "default_method")]
    pub method: String,
    /// The API's URL.
    pub url: String,
    /// Headers sent as written.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers that are credentials (`Authorization`): sealable like other channel secrets.
    #[serde(default)]
    pub secret_headers: BTreeMap<String, String>,
    /// The body template; none: no body.
    #[serde(default)]
    pub body: Option<String>,
    /// How the template is filled (default `json`).
    #[serde(default)]
    pub body_format: BodyFormat,
    /// How long one try may take (default 10 s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Tries after the first on a 5xx, a timeout or a connection error (default 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The wait before the first retry, doubled for each next one (default 500 ms).
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Tenants whose rules may name the channel (`"*"`: all).
    #[serde(default)]
    pub tenants: Vec<String>,
}

fn default_method() -> String {
    "POST".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> Duration {
    Duration::from_millis(500)
}

/// Retries are bounded so one alert cannot hold its delivery lane for long.
const MAX_RETRIES: u32 = 10;

impl ActionConfig {
    /// The notifier, once the method, URL, headers and template are checked.
    pub(crate) fn build(&self) -> Result<ActionNotifier, NotifyError> {
        let invalid = |what: String| NotifyError::Config(format!("action channel: {what}"));
        let method = reqwest::Method::from_bytes(self.method.to_ascii_uppercase().as_bytes())
            .ok()
            .filter(|m| ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str()))
            .ok_or_else(|| invalid(format!("`method` {:?} is not GET, POST, PUT, PATCH or DELETE", self.method)))?;
        let url = reqwest::Url::parse(&self.url).map_err(|e| invalid(format!("`url`: {e}")))?;
        if !["http", "https"].contains(&url.scheme()) {
            return Err(invalid("`url` must be http or https".into()));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (field, map) in [("headers", &self.headers), ("secret_headers", &self.secret_headers)] {
            for (name, value) in map {
                let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| invalid(format!("`{field}`: {name:?} is not a header name")))?;
                let mut value = reqwest::header::HeaderValue::from_str(value)
                    .map_err(|_| invalid(format!("`{field}`: the value of {name} is not a header value")))?;
                value.set_sensitive(field == "secret_headers");
                headers.insert(name, value);
            }
        }
        if let Some(body) = &self.body {
            check_template(body).map_err(|e| invalid(format!("`body`: {e}")))?;
        }
        if self.retries > MAX_RETRIES {
            return Err(invalid(format!("`retries` is at most {MAX_RETRIES}")));
        }
        if self.timeout.is_zero() {
            return Err(invalid("`timeout` must be more than zero".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| invalid(format!("HTTP client: {e}")))?;
        Ok(ActionNotifier {
            client,
            method,
            url,
            headers,
            body: self.body.clone(),
            format: self.body_format,
            retry_delays: (0..self.retries).map(|n| self.backoff.saturating_mul(1 << n.min(16))).collect(),
        })
    }
}

/// Calls the API once per try; the [`super::Dispatcher`] retries with this channel's own delays.
pub(crate) struct ActionNotifier {
    client: reqwest::Client,
    method: reqwest::Method,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    body: Option<String>,
    format: BodyFormat,
    retry_delays: Vec<Duration>,
}

/// A JSON string's content for `text` (what goes between its quotes).
fn json_escaped(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// The labels a body template sees: the first alert's, then `alertname`, `status`,
/// `severity` and `summary` unless the alert has labels of those names.
fn template_labels(n: &Notification) -> BTreeMap<String, String> {
    let first = &n.alerts[0];
    let mut labels = first.labels.clone();
    let status = match n.status {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
        AlertState::Pending => "pending",
        AlertState::Inactive => "inactive",
        AlertState::Stale => "stale",
    };
    let severity = format!("{:?}", n.severity).to_lowercase();
    for (name, value) in
        [("alertname", n.rule.clone()), ("status", status.into()), ("severity", severity), ("summary", n.summary())]
    {
        labels.entry(name.to_string()).or_insert(value);
    }
    labels
}

impl ActionNotifier {
    /// The request body for a notification, or why it cannot be sent.
    pub(crate) fn render(&self, n: &Notification) -> Result<Option<String>, NotifyError> {
        let Some(template) = &self.body else { return Ok(None) };
        let mut labels = template_labels(n);
        if self.format == BodyFormat::Json {
            labels.values_mut().for_each(|v| *v = json_escaped(v));
        }
        let body = render_template(template, &labels, n.alerts[0].value);
        if self.format == BodyFormat::Json
            && let Err(error) = serde_json::from_str::<serde_json::Value>(&body)
        {
            return Err(NotifyError::Config(format!("action channel: the body template did not make JSON: {error}")));
        }
        Ok(Some(body))
    }
}

/// The first bytes of a body, cut at a character boundary.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(ANSWER_EXCERPT_BYTES)]).into_owned();
    // A multibyte character cut in two becomes U+FFFD at the end; drop it.
    if body.len() > ANSWER_EXCERPT_BYTES { text.trim_end_matches('\u{FFFD}').to_string() } else { text }
}

#[async_trait]
impl Notifier for ActionNotifier {
    async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        self.call(notification).await.0
    }

    async fn call(&self, notification: &Notification) -> (Result<(), NotifyError>, Option<Answer>) {
        let body = match self.render(notification) {
            Ok(body) => body,
            Err(error) => return (Err(error), None),
        };
        let mut request = self.client.request(self.method.clone(), self.url.clone());
        if let Some(body) = body {
            if !self.headers.contains_key(reqwest::header::CONTENT_TYPE) {
                let kind = match self.format {
                    BodyFormat::Json => "application/json",
                    BodyFormat::Text => "text/plain; charset=utf-8",
                };
                request = request.header(reqwest::header::CONTENT_TYPE, kind);
            }
            request = request.body(body);
        }
        request = request.headers(self.headers.clone());
        let started = Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return (Err(error.into()), None),
        };
        let status = response.status();
        // A body that breaks off still leaves the status: keep what arrived.
        let bytes = response.bytes().await.unwrap_or_default();
        let answer = Answer {
            status: status.as_u16(),
            body: excerpt(&bytes),
            latency_ms: started.elapsed().as_millis().min(u64::MAX as u128) as u64,
        };
        let result = if status.is_success() {
            Ok(())
        } else if status.is_client_error() {
            Err(NotifyError::Refused(status.as_u16()))
        } else {
            Err(NotifyError::Status(status.as_u16()))
        };
        (result, Some(answer))
    }

    fn retry_delays(&self) -> Option<&[Duration]> {
        Some(&self.retry_delays)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_bounded_and_cut_between_characters() {
        assert_eq!(excerpt(b"ok"), "ok");
        let long = "é".repeat(ANSWER_EXCERPT_BYTES);
        let cut = excerpt(long.as_bytes());
        assert!(cut.len() <= ANSWER_EXCERPT_BYTES && cut.chars().all(|c| c == 'é'), "{cut}");
    }

    #[test]
    fn bad_settings_are_refused_with_the_field() {
        let parse = |yaml: &str| -> ActionConfig { secumon_core::config::parse_yaml(yaml, "channel").unwrap() };
        let error = |yaml: &str| parse(yaml).build().err().unwrap().to_string();
        assert!(error("url: http://a\nmethod: TRACE\n").contains("`method`"));
        assert!(error("url: ftp://a\n").contains("`url`"));
        assert!(error("url: http://a\nbody: '{{ nope }}'\n").contains("`body`"));
        assert!(error("url: http://a\nheaders: {\"bad name\": x}\n").contains("`headers`"));
        assert!(error("url: http://a\nretries: 99\n").contains("`retries`"));
        let built = parse("url: http://a\nretries: 3\nbackoff: 100ms\n").build().unwrap();
        assert_eq!(built.retry_delays, [100, 200, 400].map(Duration::from_millis));
    }
}
