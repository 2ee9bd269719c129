//! Email over SMTP (lettre): STARTTLS or implicit TLS with authentication, or plain SMTP for
//! a relay on the local network; a plain-text and an HTML part, the HTML coloured by
//! severity (critical red, warning orange, info blue; green once resolved).

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Deserializer};

use super::{Notifier, NotifyError};
use crate::engine::AlertState;
use crate::group::Notification;
use crate::rule::AlertSeverity;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on a trusted network.
    None,
}

/// An email address, checked when the configuration is read.
pub(crate) fn mailbox<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Mailbox, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|e| serde::de::Error::custom(format!("invalid email address {text:?}: {e}")))
}

pub(crate) fn mailboxes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Mailbox>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    if texts.is_empty() {
        return Err(serde::de::Error::custom("at least one recipient is needed"));
    }
    texts
        .iter()
        .map(|t| t.parse().map_err(|e| serde::de::Error::custom(format!("invalid email address {t:?}: {e}"))))
        .collect()
}

pub(crate) fn default_port() -> u16 {
    587
}

/// An email channel: alerts as HTML and plain-text messages, and files (scheduled reports)
/// as attachments, through one SMTP relay.
pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

/// SMTP settings of an email channel.
pub struct SmtpSettings<'a> {
    pub host: &'a str,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
}

impl EmailNotifier {
    /// A notifier sending through the relay `smtp` describes, from `from` to `to`.
    pub fn new(smtp: SmtpSettings<'_>, from: Mailbox, to: Vec<Mailbox>) -> Result<Self, NotifyError> {
        Self::trusting(smtp, from, to, None)
    }

    /// [`EmailNotifier::new`], also trusting the CA certificate in `ca_pem` (PEM) for the
    /// relay's certificate, beside the system's roots: a relay inside a client's network
    /// often has a certificate from a private CA.
    pub fn trusting(
        smtp: SmtpSettings<'_>,
        from: Mailbox,
        to: Vec<Mailbox>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, NotifyError> {
        let error = |e: lettre::transport::smtp::Error| NotifyError::Email(e.to_string());
        let tls = || -> Result<TlsParameters, NotifyError> {
            let mut parameters = TlsParameters::builder(smtp.host.to_string());
            if let Some(pem) = ca_pem {
                parameters = parameters.add_root_certificate(Certificate::from_pem(pem).map_err(error)?);
            }
            parameters.build_rustls().map_err(error)
        };
        // What `starttls_relay` and `relay` set up, with our own TLS parameters.
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host);
        let builder = match smtp.security {
            SmtpSecurity::Starttls => builder.tls(Tls::Required(tls()?)),
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls()?)),
            SmtpSecurity::None => builder,
        };
        let mut builder = builder.port(smtp.port).timeout(Some(std::time::Duration::from_secs(10)));
        if let (Some(user), Some(password)) = (smtp.username, smtp.password) {
            builder = builder.credentials(Credentials::new(user.to_string(), password.to_string()));
        }
        Ok(Self { transport: builder.build(), from, to })
    }
}

fn colour(n: &Notification) -> &'static str {
    match (n.status, n.severity) {
        (AlertState::Resolved, _) => "#2eb67d",
        (_, AlertSeverity::Critical) => "#d00000",
        (_, AlertSeverity::Warning) => "#ff8c00",
        (_, AlertSeverity::Info) => "#1e6fd9",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Subject, plain text and HTML of the message for a notification.
pub(crate) fn render(n: &Notification) -> (String, String, String) {
    let status = format!("{:?}", n.status).to_uppercase();
    let subject = format!("[{status}] {} ({:?}): {}", n.rule, n.severity, n.summary());
    let mut text = format!("{subject}\n\n");
    let mut rows = String::new();
    for alert in &n.alerts {
        let labels: Vec<String> = alert.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        text.push_str(&format!("- {} (value {})\n", labels.join(", "), alert.value));
        rows.push_str(&format!(
            "<tr><td style=\"padding:4px 8px\">{}</td><td style=\"padding:4px 8px\">{}</td></tr>",
            escape(&labels.join(", ")),
            alert.value
        ));
    }
    let html = format!(
        "<html><body style=\"font-family:sans-serif\">\
         <div style=\"background:{colour};color:#ffffff;padding:12px;font-weight:bold\">{title}</div>\
         <p>{summary}</p><table>{rows}</table>\
         <p style=\"color:#666666;font-size:small\">SecuMon</p></body></html>",
        colour = colour(n),
        title = escape(&format!("[{status}] {} ({:?})", n.rule, n.severity)),
        summary = escape(&n.summary()),
    );
    (subject, text, html)
}

/// A file sent with a message (a scheduled report).
pub struct EmailAttachment<'a> {
    /// The file's name as the recipient sees it.
    pub file_name: String,
    /// Its MIME type (`application/pdf`).
    pub content_type: &'a str,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl EmailNotifier {
    /// Sends one message with a plain-text body and `attachment` to `to`, or (empty) to the
    /// channel's own recipients: how scheduled reports travel through an e-mail channel.
    pub async fn send_file(
        &self,
        to: &[String],
        subject: &str,
        text: &str,
        attachment: EmailAttachment<'_>,
    ) -> Result<(), NotifyError> {
        let invalid = |e: String| NotifyError::Email(e);
        let recipients: Vec<Mailbox> = if to.is_empty() {
            self.to.clone()
        } else {
            to.iter()
                .map(|t| t.parse::<Mailbox>().map_err(|e| invalid(format!("invalid email address {t:?}: {e}"))))
                .collect::<Result<_, _>>()?
        };
        let content_type = ContentType::parse(attachment.content_type)
            .map_err(|e| invalid(format!("content type {:?}: {e}", attachment.content_type)))?;
        let mut message = Message::builder().from(self.from.clone()).subject(subject);
        for to in recipients {
            message = message.to(to);
        }
        let message = message
            .multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(text.to_string()))
                    .singlepart(Attachment::new(attachment.file_name).body(attachment.bytes, content_type)),
            )
            .map_err(|e| invalid(e.to_string()))?;
        self.transport.send(message).await.map_err(|e| invalid(e.to_string()))?;
        Ok(())
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        let (subject, text, html) = render(notification);
        let mut message = Message::builder().from(self.from.clone()).subject(subject);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| NotifyError::Email(e.to_string()))?;
        self.transport.send(message).await.map_err(|e| NotifyError::Email(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod aiosmtpd;

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;
    use crate::engine::Transition;
    use crate::notify::{ChannelConfig, Dispatcher};

    /// What the sink saw: every command line, and each message's data.
    #[derive(Default)]
    struct Seen {
        commands: Vec<String>,
        messages: Vec<String>,
    }

    /// A small SMTP server on loopback: enough of RFC 5321 (with AUTH PLAIN) to accept mail.
    async fn smtp_sink() -> (u16, Arc<Mutex<Seen>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    record.lock().unwrap().commands.push(line.clone());
                    let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 AUTH PLAIN\r\n",
                        "AUTH" => b"235 2.7.0 Authentication successful\r\n",
                        "DATA" => {
                            let _ = write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await;
                            let mut data = String::new();
                            while let Ok(Some(line)) = lines.next_line().await {
                                if line == "." {
                                    break;
                                }
                                data.push_str(&line);
                                data.push('\n');
                            }
                            record.lock().unwrap().messages.push(data);
                            b"250 2.0.0 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"250 OK\r\n",
                    };
                    let _ = write.write_all(reply).await;
                }
            }
        });
        (port, seen)
    }

    /// The (content type, decoded body) of each part of a multipart message.
    fn mime_parts(message: &str) -> Vec<(String, String)> {
        let boundary = message.split("boundary=\"").nth(1).and_then(|r| r.split('"').next()).expect("multipart");
        message
            .split(&format!("--{boundary}"))
            .skip(1)
            .filter_map(|part| {
                let (head, body) = part.split_once("\n\n")?;
                let content_type = head.lines().find_map(|l| l.strip_prefix("Content-Type: "))?.to_string();
                let body = if head.contains("Content-Transfer-Encoding: base64") {
                    let joined: String = body.split_whitespace().collect();
                    String::from_utf8(base64_decode(&joined)).ok()?
                } else if head.contains("Content-Transfer-Encoding: quoted-printable") {
                    quoted_printable_decode(body)
                } else {
                    body.to_string()
                };
                Some((content_type, body))
            })
            .collect()
    }

    fn base64_decode(text: &str) -> Vec<u8> {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut buffer, mut bits) = (0u32, 0);
        for c in text.bytes().filter(|&c| c != b'=') {
            let Some(value) = alphabet.iter().position(|&a| a == c) else { continue };
            buffer = (buffer << 6) | value as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
            }
        }
        out
    }

    fn quoted_printable_decode(text: &str) -> String {
        let joined = text.replace("=\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match (
                bytes[i],
                bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()),
            ) {
                (b'=', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn notification() -> Notification {
        let labels = BTreeMap::from([("host".to_string(), "web-1".to_string())]);
        Notification::single(Transition {
            rule: "DiskFull".into(),
            labels,
            from: AlertState::Pending,
            to: AlertState::Firing,
            at_ms: 1,
            value: 0.97,
            severity: AlertSeverity::Critical,
            annotations: BTreeMap::from([("summary".to_string(), "/ on web-1 is 97% <full>".to_string())]),
            channels: vec!["mail".into()],
            silenced: false,
            escalation_level: 0,
        })
    }

    #[tokio::test]
    async fn a_real_smtp_exchange_delivers_text_and_coloured_html() {
        let (port, seen) = smtp_sink().await;
        let yaml = format!(
            "type: email\nsmtp_host: 127.0.0.1\nsmtp_port: {port}\nsecurity: none\nusername: alerts\npassword: pw\n\
             from: \"SecuMon <alerts@example.com>\"\nto: [ops@example.com, oncall@example.com]\n"
        );
        let config: ChannelConfig = secumon_core::config::parse_yaml(&yaml, "channel").unwrap();
        let dispatcher = Dispatcher::new(HashMap::from([("mail".to_string(), config.build().unwrap())]));
        dispatcher.deliver(&notification()).await;
        assert!(dispatcher.attempts()[0].error.is_none(), "{:?}", dispatcher.attempts());

        let seen = seen.lock().unwrap();
        let auth = seen.commands.iter().find(|c| c.starts_with("AUTH PLAIN")).expect("authenticated");
        assert!(auth.ends_with("AGFsZXJ0cwBwdw=="), "user alerts, password pw: {auth}");
        let recipients: Vec<&String> = seen.commands.iter().filter(|c| c.starts_with("RCPT TO")).collect();
        assert_eq!(recipients.len(), 2);
        let message = &seen.messages[0];
        assert!(message.contains("Subject: [FIRING] DiskFull (Critical): / on web-1 is 97% <full>"), "{message}");
        assert!(message.contains("multipart/alternative"), "{message}");
        let parts = mime_parts(message);
        let plain = parts.iter().find(|(t, _)| t.starts_with("text/plain")).map(|(_, b)| b).expect("a text part");
        let html = parts.iter().find(|(t, _)| t.starts_with("text/html")).map(|(_, b)| b).expect("an HTML part");
        assert!(plain.contains("- host=web-1 (value 0.97)"), "{plain}");
        assert!(html.contains("background:#d00000"), "critical is red: {html}");
        assert!(html.contains("97% &lt;full&gt;"), "HTML is escaped: {html}");
    }

    #[test]
    fn bad_addresses_are_configuration_errors() {
        let yaml = "type: email\nsmtp_host: h\nfrom: not-an-address\nto: [ops@example.com]\n";
        let err = secumon_core::config::parse_yaml::<ChannelConfig>(yaml, "channel").unwrap_err().to_string();
        assert!(err.contains("not-an-address"), "{err}");
        let yaml = "type: email\nsmtp_host: h\nfrom: a@example.com\nto: []\n";
        let err = secumon_core::config::parse_yaml::<ChannelConfig>(yaml, "channel").unwrap_err().to_string();
        assert!(err.contains("recipient"), "{err}");
    }

    #[test]
    fn colours_follow_severity() {
        let mut n = notification();
        assert!(render(&n).2.contains("#d00000"));
        n.severity = AlertSeverity::Warning;
        assert!(render(&n).2.contains("#ff8c00"));
        n.severity = AlertSeverity::Info;
        assert!(render(&n).2.contains("#1e6fd9"));
        n.status = AlertState::Resolved;
        assert!(render(&n).0.starts_with("[RESOLVED]"));
    }
}
