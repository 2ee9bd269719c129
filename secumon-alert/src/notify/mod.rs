//! Delivering alert transitions: the [`Notifier`] trait, the channel configurations (one
//! file per channel), and the [`Dispatcher`] that retries with backoff and records every
//! attempt, so a failed delivery is visible, never silently dropped.

mod action;
mod email;
mod pagerduty;
mod slack;
mod webhook;

pub use action::{ANSWER_EXCERPT_BYTES, ActionConfig, BodyFormat};
pub use email::{EmailAttachment, EmailNotifier, SmtpSecurity, SmtpSettings};
pub use pagerduty::PagerDutyNotifier;
pub use slack::SlackNotifier;
use webhook::WebhookNotifier;
pub use webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::group::Notification;

/// Why a notification was not delivered, or a channel could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The request failed; the text names the host but never the URL's path or query, where
    /// webhook tokens live (it is stored in the alert history tenants read, and logged).
    #[error("{0}")]
    Http(String),
    /// The receiver answered with a status other than 2xx.
    #[error("receiver answered HTTP {0}")]
    Status(u16),
    /// The email could not be built or sent, or the relay's TLS settings or CA file are unusable.
    #[error("email: {0}")]
    Email(String),
    /// The receiver refused the request (HTTP 4xx): sending it again would not help, so it
    /// is not retried.
    #[error("receiver refused the request with HTTP {0}; not retried")]
    Refused(u16),
    /// The channel's settings, or a request made from them, cannot be used; not retried.
    #[error("{0}")]
    Config(String),
}

impl NotifyError {
    /// Whether another try may succeed: not after a refusal or a settings problem.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Refused(_) | Self::Config(_))
    }
}

/// What a receiver answered, kept for channels whose answer matters (the action channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body's first [`ANSWER_EXCERPT_BYTES`] bytes, as text.
    pub body: String,
    /// From sending the request to the answer's headers, in milliseconds.
    pub latency_ms: u64,
}

/// A notification channel.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one notification; an error makes the [`Dispatcher`] try again later.
    async fn send(&self, notification: &Notification) -> Result<(), NotifyError>;

    /// Delivers one notification and says what the receiver answered, for channels whose
    /// answer is worth keeping; by default [`Notifier::send`] and no answer.
    async fn call(&self, notification: &Notification) -> (Result<(), NotifyError>, Option<Answer>) {
        (self.send(notification).await, None)
    }

    /// The channel's own waits between tries, when its settings give them; `None`: the
    /// [`Dispatcher`]'s.
    fn retry_delays(&self) -> Option<&[Duration]> {
        None
    }
}

impl From<reqwest::Error> for NotifyError {
    fn from(error: reqwest::Error) -> Self {
        let host = error.url().and_then(|url| url.host_str().map(str::to_string));
        let error = error.without_url();
        let mut text = error.to_string();
        let mut cause = std::error::Error::source(&error);
        while let Some(inner) = cause {
            text = format!("{text}: {inner}");
            cause = inner.source();
        }
        NotifyError::Http(match host {
            Some(host) => format!("{text} (host {host})"),
            None => text,
        })
    }
}

/// Which tenants' rules may name a channel. Channels of the rules file are the provider's:
/// without `tenants`, only the default tenant's own rules (and the rules file) use them; a
/// tenant admin's rule may name one only if it lists that tenant, or `"*"`.
fn open_to(tenants: &[String], tenant: &str) -> bool {
    if tenants.is_empty() {
        return tenant == secumon_core::model::DEFAULT_TENANT;
    }
    tenants.iter().any(|t| t == "*" || t == tenant)
}

/// Channels as configured, by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChannelConfig {
    /// POSTs each notification as JSON.
    Webhook {
        /// Where to POST.
        url: String,
        /// Signs the body with HMAC-SHA256 so the receiver can check it came from us.
        secret: Option<String>,
        /// Tenants whose rules may name the channel (`"*"`: all; see [`ChannelConfig::open_to`]).
        #[serde(default)]
        tenants: Vec<String>,
    },
    /// A Slack incoming webhook; the message uses blocks, coloured by severity.
    Slack {
        /// The incoming webhook's URL (a credential).
        webhook_url: String,
        /// Tenants whose rules may name the channel (`"*"`: all).
        #[serde(default)]
        tenants: Vec<String>,
    },
    /// PagerDuty Events API v2: trigger on firing, resolve on resolved, one incident per alert.
    PagerDuty {
        /// The service integration's routing key (a credential).
        routing_key: String,
        /// The Events API URL (default `https://events.pagerduty.com/v2/enqueue`).
        #[serde(default = "pagerduty::default_url")]
        url: String,
        /// Tenants whose rules may name the channel (`"*"`: all).
        #[serde(default)]
        tenants: Vec<String>,
    },
    /// Email over SMTP, plain text and HTML.
    Email {
        /// The SMTP relay's host.
        smtp_host: String,
        /// The relay's port (default 587).
        #[serde(default = "email::default_port")]
        smtp_port: u16,
        /// How the connection is protected (default STARTTLS).
        #[serde(default)]
        security: SmtpSecurity,
        /// SMTP login; used only with `password`.
        username: Option<String>,
        /// SMTP password (a credential); used only with `username`.
        password: Option<String>,
        /// The sender address.
        #[serde(deserialize_with = "email::mailbox")]
        from: lettre::message::Mailbox,
        /// The recipients.
        #[serde(deserialize_with = "email::mailboxes")]
        to: Vec<lettre::message::Mailbox>,
        /// A PEM file of CA certificates to trust for the relay, beside the system's roots
        /// (a relay inside a client's network often has a certificate from a private CA).
        #[serde(default)]
        ca_file: Option<std::path::PathBuf>,
        /// Tenants whose rules may name the channel (`"*"`: all).
        #[serde(default)]
        tenants: Vec<String>,
    },
    /// An automation action (SecuOps): a templated request to an external API, its answer
    /// recorded in the alert history.
    Action(ActionConfig),
}

impl ChannelConfig {
    /// Whether rules that `tenant`'s admins write may name this channel: without `tenants`,
    /// only the default tenant's; with them, a tenant listed, or any when `"*"` is.
    pub fn open_to(&self, tenant: &str) -> bool {
        match self {
            Self::Webhook { tenants, .. }
            | Self::Slack { tenants, .. }
            | Self::PagerDuty { tenants, .. }
            | Self::Email { tenants, .. }
            | Self::Action(ActionConfig { tenants, .. }) => open_to(tenants, tenant),
        }
    }

    /// The fields that are credentials (webhook secret, Slack webhook URL, PagerDuty routing
    /// key, SMTP password), by name: the server opens sealed ones before building.
    pub fn credentials_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        match self {
            Self::Webhook { secret, .. } => secret.iter_mut().map(|s| ("secret", s)).collect(),
            Self::Slack { webhook_url, .. } => vec![("webhook_url", webhook_url)],
            Self::PagerDuty { routing_key, .. } => vec![("routing_key", routing_key)],
            Self::Email { password, .. } => password.iter_mut().map(|p| ("password", p)).collect(),
            Self::Action(action) => action.secret_headers.values_mut().map(|v| ("secret_headers", v)).collect(),
        }
    }

    /// The notifier this configuration describes (HTTP requests time out after 10 s).
    /// Errors when an email relay's TLS settings or its `ca_file` cannot be used.
    pub fn build(&self) -> Result<Arc<dyn Notifier>, NotifyError> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        Ok(match self {
            Self::Webhook { url, secret, .. } => Arc::new(WebhookNotifier::new(client, url.clone(), secret.clone())),
            Self::Slack { webhook_url, .. } => Arc::new(SlackNotifier::new(client, webhook_url.clone())),
            Self::PagerDuty { routing_key, url, .. } => {
                Arc::new(PagerDutyNotifier::new(client, url.clone(), routing_key.clone()))
            }
            Self::Action(action) => Arc::new(action.build()?),
            Self::Email { .. } => {
                Arc::new(self.email()?.ok_or_else(|| NotifyError::Email("not an email channel".into()))?)
            }
        })
    }

    /// The e-mail notifier of an email channel (`None` for other kinds), which can also send
    /// files ([`EmailNotifier::send_file`]). Errors when the relay's TLS settings or its
    /// `ca_file` cannot be used.
    pub fn email(&self) -> Result<Option<EmailNotifier>, NotifyError> {
        let Self::Email { smtp_host, smtp_port, security, username, password, from, to, ca_file, .. } = self else {
            return Ok(None);
        };
        // Read now, so a missing or unreadable file stops the server's start with its name
        // rather than failing the first alert.
        let ca_pem = ca_file
            .as_ref()
            .map(|path| {
                std::fs::read(path)
                    .map_err(|e| NotifyError::Email(format!("cannot read ca_file {}: {e}", path.display())))
            })
            .transpose()?;
        let smtp = SmtpSettings {
            host: smtp_host,
            port: *smtp_port,
            security: *security,
            username: username.as_deref(),
            password: password.as_deref(),
        };
        let built = match ca_pem {
            Some(pem) => EmailNotifier::trusting(smtp, from.clone(), to.clone(), Some(&pem)),
            None => EmailNotifier::new(smtp, from.clone(), to.clone()),
        };
        built.map(Some).map_err(|e| match ca_file {
            Some(path) => NotifyError::Email(format!("ca_file {}: {e}", path.display())),
            None => e,
        })
    }
}

/// POSTs a JSON body; any non-2xx answer is an error.
async fn post_json(request: reqwest::RequestBuilder, body: Vec<u8>) -> Result<(), NotifyError> {
    let response = request.header("content-type", "application/json").body(body).send().await?;
    if response.status().is_success() { Ok(()) } else { Err(NotifyError::Status(response.status().as_u16())) }
}

/// One delivery attempt, kept for operators to see.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DeliveryAttempt {
    /// The channel's name.
    pub channel: String,
    /// The rule of the notification.
    pub rule: String,
    /// The notification's group labels.
    pub labels: BTreeMap<String, String>,
    /// 1 for the first try, 2 for the first retry, and so on.
    pub attempt: u32,
    /// `None` on success.
    pub error: Option<String>,
    /// True when this was the last try and it failed.
    pub gave_up: bool,
    /// What the receiver answered, for channels that keep it (the action channel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
}

/// Delivery attempts a [`Dispatcher`] remembers.
pub const ATTEMPTS_KEPT: usize = 10_000;

/// Sends transitions to their rules' channels, retrying failures with backoff.
pub struct Dispatcher {
    channels: HashMap<String, Arc<dyn Notifier>>,
    retry_delays: Vec<Duration>,
    /// The latest attempts, at most [`ATTEMPTS_KEPT`].
    attempts: Mutex<VecDeque<DeliveryAttempt>>,
}

impl Dispatcher {
    /// A dispatcher over `channels` (by name), retrying after 200 ms, 1 s and 5 s.
    pub fn new(channels: HashMap<String, Arc<dyn Notifier>>) -> Self {
        Self {
            channels,
            retry_delays: vec![Duration::from_millis(200), Duration::from_secs(1), Duration::from_secs(5)],
            attempts: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits between tries (the first try is immediate); one try per entry plus one.
    pub fn with_retry_delays(mut self, delays: Vec<Duration>) -> Self {
        self.retry_delays = delays;
        self
    }

    /// Delivers to every channel of the notification. Returns once each channel succeeded
    /// or ran out of tries, with the last attempt of each channel that never succeeded.
    pub async fn deliver(&self, notification: &Notification) -> Vec<DeliveryAttempt> {
        self.deliver_all(notification).await.into_iter().filter(|a| a.error.is_some()).collect()
    }

    /// Delivers to every channel of the notification, and returns the last attempt of each
    /// channel, succeeded or not (with the receiver's answer where the channel keeps it).
    pub async fn deliver_all(&self, notification: &Notification) -> Vec<DeliveryAttempt> {
        let mut last = Vec::new();
        for name in &notification.channels {
            let Some(channel) = self.channels.get(name) else {
                last.push(self.record(name, notification, 1, Some(format!("no channel named {name:?}")), true, None));
                tracing::error!(channel = %name, rule = %notification.rule, "alert names an unknown channel");
                continue;
            };
            let delays = channel.retry_delays().unwrap_or(&self.retry_delays[..]);
            let tries = delays.len() as u32 + 1;
            for attempt in 1..=tries {
                let (result, answer) = channel.call(notification).await;
                match result {
                    Ok(()) => {
                        last.push(self.record(name, notification, attempt, None, false, answer));
                        break;
                    }
                    Err(error) => {
                        let gave_up = attempt == tries || !error.is_retryable();
                        let record = self.record(name, notification, attempt, Some(error.to_string()), gave_up, answer);
                        if gave_up {
                            last.push(record);
                            tracing::error!(channel = %name, rule = %notification.rule, %error, "alert notification failed for good");
                            break;
                        }
                        tracing::warn!(channel = %name, attempt, %error, "alert notification failed; retrying");
                        tokio::time::sleep(delays[attempt as usize - 1]).await;
                    }
                }
            }
        }
        last
    }

    /// Every attempt so far, oldest first.
    pub fn attempts(&self) -> Vec<DeliveryAttempt> {
        self.attempts.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    fn record(
        &self,
        channel: &str,
        n: &Notification,
        attempt: u32,
        error: Option<String>,
        gave_up: bool,
        answer: Option<Answer>,
    ) -> DeliveryAttempt {
        let entry = DeliveryAttempt {
            channel: channel.to_string(),
            rule: n.rule.clone(),
            labels: n.group_labels.clone(),
            attempt,
            error,
            gave_up,
            answer,
        };
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if attempts.len() == ATTEMPTS_KEPT {
            attempts.pop_front();
        }
        attempts.push_back(entry.clone());
        entry
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;
    use crate::engine::{AlertState, Transition};
    use crate::rule::AlertSeverity;

    /// A failed delivery's error is stored in the alert history that viewers read and is
    /// logged: it must name the receiver's host but never the token in its URL.
    #[tokio::test]
    async fn delivery_errors_never_carry_the_url_path_or_query() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = dead.local_addr().unwrap().port();
        drop(dead);
        let url = format!("http://127.0.0.1:{port}/services/T0SECRET/B0SECRET/tokenSECRET?key=SECRET");
        let channels = [
            ChannelConfig::Slack { webhook_url: url.clone(), tenants: Vec::new() },
            ChannelConfig::Webhook { url: url.clone(), secret: Some("SECRET".into()), tenants: Vec::new() },
            ChannelConfig::PagerDuty { routing_key: "SECRET".into(), url, tenants: Vec::new() },
        ];
        for channel in channels {
            let error = channel.build().unwrap().send(&notification(&["x"])).await.unwrap_err().to_string();
            assert!(!error.contains("SECRET"), "{error}");
            assert!(error.contains("127.0.0.1") && error.contains("error sending request"), "{error}");
        }
    }

    #[test]
    fn channels_are_the_providers_unless_opened_to_a_tenant() {
        let file = crate::RuleFile::parse(
            "rules: []\nchannels:\n  own: {type: webhook, url: \"http://a\"}\n  \
             shared: {type: webhook, url: \"http://b\", tenants: [acme]}\n  \
             everyone: {type: slack, webhook_url: \"http://c\", tenants: [\"*\"]}\n",
            "channels.yaml",
        )
        .unwrap();
        let open = |tenant: &str| -> Vec<&str> {
            file.channels.iter().filter(|(_, c)| c.open_to(tenant)).map(|(n, _)| n.as_str()).collect()
        };
        assert_eq!(open("default"), ["everyone", "own"]);
        assert_eq!(open("acme"), ["everyone", "shared"]);
        assert_eq!(open("globex"), ["everyone"]);
    }

    fn notification(channels: &[&str]) -> Notification {
        Notification::single(Transition {
            rule: "Hot".into(),
            labels: BTreeMap::from([("host".to_string(), "web-1".to_string())]),
            from: AlertState::Pending,
            to: AlertState::Firing,
            at_ms: 1,
            value: 71.0,
            severity: AlertSeverity::Critical,
            annotations: BTreeMap::new(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            silenced: false,
            escalation_level: 0,
        })
    }

    /// A request the receiver accepted: its signature header and body.
    type Received = (Option<String>, Bytes);

    #[derive(Clone, Default)]
    struct Receiver {
        calls: Arc<AtomicU32>,
        fail_first: u32,
        received: Arc<Mutex<Vec<Received>>>,
    }

    async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let call = r.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call <= r.fail_first {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        // Kept as `<timestamp> <signature>`: the signature is only checkable with its timestamp.
        let header = |name| headers.get(name).and_then(|v: &axum::http::HeaderValue| v.to_str().ok());
        let signed = header(TIMESTAMP_HEADER).zip(header(SIGNATURE_HEADER)).map(|(t, s)| format!("{t} {s}"));
        r.received.lock().unwrap().push((signed, body));
        StatusCode::NO_CONTENT
    }

    /// A local HTTP receiver on loopback; returns its URL.
    async fn start_receiver(receiver: Receiver) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hook", post(receive)).with_state(receiver);
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn signed_json_arrives_once_after_two_failures() {
        let receiver = Receiver { fail_first: 2, ..Default::default() };
        let url = start_receiver(receiver.clone()).await;
        let channel =
            ChannelConfig::Webhook { url, secret: Some("s3cret".into()), tenants: Vec::new() }.build().unwrap();
        let dispatcher = Dispatcher::new(HashMap::from([("ops".to_string(), channel)])).with_retry_delays(vec![
            Duration::from_millis(10),
            Duration::from_millis(10),
            Duration::from_millis(10),
        ]);
        dispatcher.deliver(&notification(&["ops"])).await;

        assert_eq!(receiver.calls.load(Ordering::SeqCst), 3);
        let received = receiver.received.lock().unwrap().clone();
        assert_eq!(received.len(), 1, "exactly one successful delivery");
        let (signed, body) = &received[0];
        let (timestamp, signature_header) = signed.as_deref().and_then(|s| s.split_once(' ')).expect("signed");
        let timestamp: i64 = timestamp.parse().unwrap();
        assert!((secumon_core::now_ms() / 1_000 - timestamp).abs() <= 5, "the time of the attempt: {timestamp}");
        assert_eq!(signature_header, signature_of(timestamp, body));
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json["rule"], "Hot");
        assert_eq!(json["status"], "firing");
        assert_eq!(json["alerts"][0]["labels"]["host"], "web-1");
        assert_eq!(json["severity"], "critical");
        let attempts = dispatcher.attempts();
        let outcomes: Vec<(u32, bool)> = attempts.iter().map(|a| (a.attempt, a.error.is_none())).collect();
        assert_eq!(outcomes, vec![(1, false), (2, false), (3, true)]);
    }

    fn signature_of(timestamp_s: i64, body: &[u8]) -> String {
        signature("s3cret", timestamp_s, body)
    }

    /// Delivers `t` through the channel configured by `yaml` (with `URL` replaced by a local
    /// receiver) and returns the JSON the receiver got.
    async fn delivered_json(yaml: &str, n: &Notification) -> Vec<serde_json::Value> {
        let receiver = Receiver::default();
        let url = start_receiver(receiver.clone()).await;
        let config: ChannelConfig = secumon_core::config::parse_yaml(&yaml.replace("URL", &url), "channel").unwrap();
        let dispatcher = Dispatcher::new(HashMap::from([("ops".to_string(), config.build().unwrap())]));
        dispatcher.deliver(n).await;
        let received = receiver.received.lock().unwrap().clone();
        received.iter().map(|(_, body)| serde_json::from_slice(body).unwrap()).collect()
    }

    #[tokio::test]
    async fn slack_message_has_blocks_and_severity_colour() {
        let mut n = notification(&["ops"]);
        n.alerts[0].annotations.insert("summary".into(), "web-1 is hot".into());
        let sent = delivered_json("type: slack\nwebhook_url: URL\n", &n).await;
        assert_eq!(sent.len(), 1);
        let attachment = &sent[0]["attachments"][0];
        assert_eq!(attachment["color"], "#d00000", "critical is red");
        assert_eq!(attachment["blocks"][0]["type"], "header");
        assert_eq!(attachment["blocks"][0]["text"]["text"], "[FIRING] Hot (Critical)");
        assert_eq!(attachment["blocks"][1]["text"]["text"], "web-1 is hot");
        assert_eq!(attachment["blocks"][2]["fields"][0]["text"], "*host*\nweb-1");
        assert!(sent[0]["text"].as_str().unwrap().contains("web-1 is hot"));
    }

    #[tokio::test]
    async fn pagerduty_triggers_then_resolves_the_same_incident() {
        let yaml = "type: pagerduty\nrouting_key: R0UT1NG\nurl: URL\n";
        let firing = notification(&["ops"]);
        let sent = delivered_json(yaml, &firing).await;
        assert_eq!(sent[0]["routing_key"], "R0UT1NG");
        assert_eq!(sent[0]["event_action"], "trigger");
        assert_eq!(sent[0]["payload"]["severity"], "critical");
        assert_eq!(sent[0]["payload"]["source"], "web-1");
        let mut resolved = firing.clone();
        resolved.status = AlertState::Resolved;
        let sent_resolve = delivered_json(yaml, &resolved).await;
        assert_eq!(sent_resolve[0]["event_action"], "resolve");
        assert_eq!(sent_resolve[0]["dedup_key"], sent[0]["dedup_key"]);
        let mut pending = firing.clone();
        pending.status = AlertState::Pending;
        assert!(delivered_json(yaml, &pending).await.is_empty(), "pending is not paged");
    }

    #[tokio::test]
    async fn failures_are_recorded() {
        let receiver = Receiver { fail_first: u32::MAX, ..Default::default() };
        let url = start_receiver(receiver.clone()).await;
        let channel = ChannelConfig::Webhook { url, secret: None, tenants: Vec::new() }.build().unwrap();
        let dispatcher = Dispatcher::new(HashMap::from([("ops".to_string(), channel)]))
            .with_retry_delays(vec![Duration::from_millis(5)]);
        dispatcher.deliver(&notification(&["ops", "nowhere"])).await;
        let attempts = dispatcher.attempts();
        assert_eq!(attempts.len(), 3);
        assert!(attempts[1].gave_up && attempts[1].error.as_deref() == Some("receiver answered HTTP 500"));
        assert!(attempts[2].gave_up && attempts[2].channel == "nowhere");
    }
}
