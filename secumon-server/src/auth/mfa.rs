//! TOTP second factor (RFC 6238, 30 s steps, 6 digits, SHA-1 as authenticator apps expect)
//! and one-time recovery codes. A code is accepted once: its time step must be later than
//! the last one accepted, so a code seen over a shoulder cannot be replayed.

use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, TOTP};

use super::AuthError;
use super::crypto::{digest, random_bytes, same_secret};

const STEP_SECONDS: u64 = 30;
const ISSUER: &str = "SecuMon";
/// Recovery codes handed out when MFA is confirmed.
pub const RECOVERY_CODES: usize = 10;

/// A user's second factor as stored: the secret sealed, recovery codes as digests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MfaRecord {
    pub sealed_secret: String,
    /// Enrolment finishes when the user proves their app has the secret.
    pub confirmed: bool,
    /// The latest time step a code was accepted for.
    pub last_step: u64,
    pub recovery_digests: Vec<String>,
}

fn totp(secret: Vec<u8>, account: &str) -> Result<TOTP, AuthError> {
    TOTP::new(Algorithm::SHA1, 6, 1, STEP_SECONDS, secret, Some(ISSUER.into()), account.into())
        .map_err(|e| AuthError::Internal(format!("TOTP: {e}")))
}

/// A fresh 160-bit secret.
pub fn new_secret() -> Vec<u8> {
    random_bytes::<20>().to_vec()
}

/// The `otpauth://` URI an authenticator app scans (as a QR code) or takes typed in, and the
/// secret in base32 for typing.
pub fn enrolment(secret: &[u8], account: &str) -> Result<(String, String), AuthError> {
    let totp = totp(secret.to_vec(), account)?;
    Ok((totp.get_url(), totp.get_secret_base32()))
}

/// The time step `code` is valid for at `now_s` (one step of clock drift either way), if
/// it is valid and later than `last_step`.
pub fn accept_code(secret: &[u8], account: &str, code: &str, now_s: u64, last_step: u64) -> Option<u64> {
    let totp = totp(secret.to_vec(), account).ok()?;
    let current = now_s / STEP_SECONDS;
    (current.saturating_sub(1)..=current + 1)
        .filter(|step| *step > last_step)
        .find(|step| same_secret(&totp.generate(step * STEP_SECONDS), code))
}

/// Fresh recovery codes (`xxxxx-xxxxx`, 50 bits each) and their digests to store.
pub fn recovery_codes() -> (Vec<String>, Vec<String>) {
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            // 32 symbols without the look-alikes l, o, 0 and 1: 5 bits a character.
            const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
            let text: String = random_bytes::<10>().iter().map(|b| ALPHABET[usize::from(b & 31)] as char).collect();
            format!("{}-{}", &text[..5], &text[5..])
        })
        .collect();
    let digests = codes.iter().map(|c| digest(c)).collect();
    (codes, digests)
}

/// Uses up a recovery code: its digest is removed from `digests`. `false` when unknown.
pub fn redeem_recovery_code(digests: &mut Vec<String>, code: &str) -> bool {
    let wanted = digest(code.trim().to_lowercase().as_str());
    let before = digests.len();
    digests.retain(|d| !same_secret(d, &wanted));
    digests.len() < before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_accepted_once_within_a_step_of_drift() {
        let secret = new_secret();
        let app = totp(secret.clone(), "ada").unwrap();
        let now = 1_800_000_000;
        let code = app.generate(now);
        let step = accept_code(&secret, "ada", &code, now, 0).expect("the current code");
        assert_eq!(step, now / 30);
        assert_eq!(accept_code(&secret, "ada", &code, now, step), None, "replayed");
        let previous = app.generate(now - 30);
        assert_eq!(accept_code(&secret, "ada", &previous, now, 0), Some(step - 1), "one step of drift");
        assert_eq!(accept_code(&secret, "ada", &app.generate(now - 90), now, 0), None, "too old");
        assert_eq!(accept_code(&secret, "ada", "000000x", now, 0), None);
    }

    #[test]
    fn enrolment_uri_names_issuer_and_account() {
        let (uri, base32) = enrolment(&new_secret(), "ada@msp").unwrap();
        assert!(uri.starts_with("otpauth://totp/SecuMon:ada%40msp?"), "{uri}");
        assert!(uri.contains(&format!("secret={base32}")), "{uri}");
    }

    #[test]
    fn recovery_codes_work_once_each() {
        let (codes, mut digests) = recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert!(codes.iter().all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'), "{codes:?}");
        assert!(redeem_recovery_code(&mut digests, &codes[3].to_uppercase()));
        assert!(!redeem_recovery_code(&mut digests, &codes[3]));
        assert_eq!(digests.len(), RECOVERY_CODES - 1);
    }
}
