//! The generic webhook channel: each transition POSTed as JSON, signed with HMAC-SHA256
//! when the channel has a secret. The signature covers a timestamp sent beside it (as Slack
//! and Stripe do), so a receiver can refuse a notification replayed later: a captured
//! request stays validly signed, but its timestamp ages.

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Notifier, NotifyError, post_json};
use crate::group::Notification;

/// Header carrying `sha256=<hex HMAC of "<timestamp>.<body>">` when the channel has a secret.
pub const SIGNATURE_HEADER: &str = "X-SecuMon-Signature";
/// Header carrying the Unix time (seconds) at which the request was signed; the signature
/// covers it.
pub const TIMESTAMP_HEADER: &str = "X-SecuMon-Timestamp";

/// POSTs notifications as JSON, signed when the channel has a secret.
pub(crate) struct WebhookNotifier {
    client: reqwest::Client,
    url: String,
    secret: Option<String>,
}

impl WebhookNotifier {
    pub(crate) fn new(client: reqwest::Client, url: String, secret: Option<String>) -> Self {
        Self { client, url, secret }
    }
}

/// `sha256=` and the hex HMAC-SHA256, under `secret`, of `<timestamp>.<body>`: what
/// [`SIGNATURE_HEADER`] carries beside [`TIMESTAMP_HEADER`].
pub fn signature(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(notification).unwrap_or_default();
        let mut request = self.client.post(&self.url);
        if let Some(secret) = &self.secret {
            // Signed per attempt: a retry goes out with the time it was really sent.
            let timestamp_s = secumon_core::now_ms().div_euclid(1_000);
            request = request
                .header(TIMESTAMP_HEADER, timestamp_s.to_string())
                .header(SIGNATURE_HEADER, signature(secret, timestamp_s, &body));
        }
        post_json(request, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex_of_timestamp_dot_body() {
        // Computed with Python's hmac module: hmac.new(b"Jefe", b"1700000000.{\"a\":1}", sha256).
        assert_eq!(
            signature("Jefe", 1_700_000_000, br#"{"a":1}"#),
            "sha256=fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a"
        );
        assert_ne!(signature("Jefe", 1_700_000_001, br#"{"a":1}"#), signature("Jefe", 1_700_000_000, br#"{"a":1}"#));
    }
}
