//! The generic webhook channel: each transition POSTed as JSON, signed with HMAC-SHA256
//! when the channel has a secret.

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Notifier, NotifyError, post_json};
use crate::group::Notification;

/// Header carrying `sha256=<hex HMAC of the body>` when the channel has a secret.
pub const SIGNATURE_HEADER: &str = "X-SecuMon-Signature";

pub struct WebhookNotifier {
    client: reqwest::Client,
    url: String,
    secret: Option<String>,
}

impl WebhookNotifier {
    pub fn new(client: reqwest::Client, url: String, secret: Option<String>) -> Self {
        Self { client, url, secret }
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(notification).unwrap_or_default();
        let mut request = self.client.post(&self.url);
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, signature(secret, &body));
        }
        post_json(request, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
