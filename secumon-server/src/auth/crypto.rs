//! The cryptography that authentication rests on, each piece from a maintained crate:
//! argon2id password hashes, random secrets, SHA-256 digests of high-entropy tokens,
//! AES-256-GCM for secrets at rest, and Ed25519-signed access tokens (JWT).

use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AuthError;

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS random source failing is not something a server can carry on without.
    SystemRandom::new().fill(&mut bytes).expect("the operating system's random source works");
    bytes
}

/// A random token of 32 bytes, URL-safe text.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A short random id (12 bytes), URL-safe text.
pub fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<12>())
}

/// SHA-256 of a high-entropy secret (API keys, refresh tokens, recovery codes), hex. Such
/// secrets cannot be guessed, so a slow hash would only cost time on every request.
pub fn digest(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An argon2id hash of `password` in PHC format, with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| AuthError::Internal(e.to_string()))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AuthError::Internal(e.to_string()))?
        .to_string())
}

/// Whether `password` matches a PHC hash made by [`hash_password`].
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// Argon2 costs tens of milliseconds of CPU a call: it runs on blocking threads, at most one
/// per core at a time, with at most [`PasswordWork::MAX_WAITING`] calls waiting, so a flood
/// of logins neither stalls the async workers (every other request) nor queues without end.
pub struct PasswordWork {
    running: tokio::sync::Semaphore,
    admitted: tokio::sync::Semaphore,
}

impl Default for PasswordWork {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            running: tokio::sync::Semaphore::new(cores),
            admitted: tokio::sync::Semaphore::new(cores + Self::MAX_WAITING),
        }
    }
}

impl PasswordWork {
    /// Password checks waiting for a core, at most; more are refused as `Busy`.
    pub const MAX_WAITING: usize = 64;

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, AuthError> {
        let _admitted = self.admitted.try_acquire().map_err(|_| AuthError::Busy)?;
        let _running = self.running.acquire().await.map_err(|_| AuthError::Busy)?;
        tokio::task::spawn_blocking(work).await.map_err(|e| AuthError::Internal(format!("password check: {e}")))
    }

    /// Whether `password` matches the PHC hash `phc`.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, AuthError> {
        let (password, phc) = (password.to_string(), phc.to_string());
        self.run(move || verify_password(&password, &phc)).await
    }

    /// A new hash of `password`.
    pub async fn hash(&self, password: &str) -> Result<String, AuthError> {
        let password = password.to_string();
        self.run(move || hash_password(&password)).await?
    }
}

/// A hash to verify against when the user does not exist, so that the answer takes as
/// long as for a real user and does not tell which names exist.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password that nobody has").unwrap_or_default())
}

/// AES-256-GCM under the server's secret key: what must be stored but not readable from
/// the database alone (TOTP secrets, the token signing key, notification credentials).
/// Sealed text is `v1:` + base64(nonce ‖ ciphertext ‖ tag).
#[derive(Clone)]
pub struct SecretBox {
    key: std::sync::Arc<LessSafeKey>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

const SEALED_PREFIX: &str = "v1:";
/// Marks a sealed value in a configuration file.
pub const CONFIG_SEALED_PREFIX: &str = "sealed:";

impl SecretBox {
    /// A box from 32 key bytes.
    pub fn new(key: [u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte key fits AES-256");
        Self { key: std::sync::Arc::new(LessSafeKey::new(unbound)) }
    }

    /// A key written as base64 (32 bytes), as in `SECUMON_SECRET_KEY` or a key file.
    pub fn from_base64(text: &str) -> Result<Self, AuthError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| AuthError::SecretKey(format!("the secret key is not base64: {e}")))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| AuthError::SecretKey(format!("the secret key has {} bytes, not 32", b.len())))?;
        Ok(Self::new(key))
    }

    /// Reads the key file, or creates it (mode 0600) with a fresh key when it is missing.
    pub fn load_or_create(path: &Path) -> Result<Self, AuthError> {
        let failed = |e: std::io::Error| AuthError::SecretKey(format!("{}: {e}", path.display()));
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text).map_err(|e| AuthError::SecretKey(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let key = random_bytes::<32>();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(failed)?;
                }
                let mut file =
                    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(failed)?;
                writeln!(file, "{}", STANDARD.encode(key)).and_then(|()| file.sync_all()).map_err(failed)?;
                Ok(Self::new(key))
            }
            Err(e) => Err(failed(e)),
        }
    }

    /// Encrypts `plaintext` (AES-256-GCM, a fresh nonce) into text that [`SecretBox::open`]
    /// takes back.
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut in_out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::empty(), &mut in_out)
            .expect("AES-GCM seals any message under 64 GiB");
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&in_out);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed))
    }

    /// A secret sealed for a configuration file: `sealed:v1:...`.
    pub fn seal_config_value(&self, plaintext: &str) -> String {
        format!("{CONFIG_SEALED_PREFIX}{}", self.seal(plaintext.as_bytes()))
    }

    /// The plaintext of a configuration value made by [`SecretBox::seal_config_value`];
    /// `None` if the value is not sealed.
    pub fn open_config_value(&self, value: &str) -> Result<Option<String>, AuthError> {
        let Some(sealed) = value.strip_prefix(CONFIG_SEALED_PREFIX) else { return Ok(None) };
        let plain = self.open(sealed)?;
        String::from_utf8(plain).map(Some).map_err(|_| AuthError::SecretKey("a sealed value is not text".into()))
    }

    /// The plaintext of [`SecretBox::seal`]'s output; an error for another key or any change.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, AuthError> {
        let refused =
            || AuthError::SecretKey("a sealed secret does not open with this key (wrong key or altered)".into());
        let bytes = sealed.strip_prefix(SEALED_PREFIX).and_then(|b| STANDARD.decode(b).ok()).ok_or_else(refused)?;
        if bytes.len() < NONCE_LEN {
            return Err(refused());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut in_out = ciphertext.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::empty(), &mut in_out).map_err(|_| refused())?;
        Ok(plain.to_vec())
    }
}

/// Signs and verifies the server's tokens with an Ed25519 key: anyone holding the public
/// key can check a token, only the server can make one.
pub struct TokenSigner {
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
    key_id: String,
}

impl TokenSigner {
    /// A fresh key, as PKCS#8 DER.
    pub fn generate_pkcs8() -> Vec<u8> {
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("Ed25519 key generation works").as_ref().to_vec()
    }

    pub fn from_pkcs8(pkcs8: &[u8], key_id: String) -> Result<Self, AuthError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| AuthError::Internal(format!("the token signing key is unreadable: {e}")))?;
        Ok(Self {
            encoding: jsonwebtoken::EncodingKey::from_ed_der(pkcs8),
            decoding: jsonwebtoken::DecodingKey::from_ed_der(pair.public_key().as_ref()),
            key_id,
        })
    }

    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, AuthError> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| AuthError::Internal(e.to_string()))
    }

    /// The claims of a token this server signed that has not expired.
    pub fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, AuthError> {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<C>(token, &self.decoding, &validation).map(|data| data.claims).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    AuthError::Unauthenticated("the token has expired")
                }
                _ => AuthError::Unauthenticated("the token is not valid"),
            }
        })
    }
}

#[cfg(test)]
mod tests {

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_checks_queue_within_a_bound_and_refuse_beyond_it() {
        let work = std::sync::Arc::new(PasswordWork::default());
        let phc = hash_password("correct horse battery").unwrap();
        let checks: Vec<_> = (0..PasswordWork::MAX_WAITING + 40)
            .map(|_| {
                let (work, phc) = (std::sync::Arc::clone(&work), phc.clone());
                tokio::spawn(async move { work.verify("correct horse battery", &phc).await })
            })
            .collect();
        let (mut done, mut busy) = (0, 0);
        for check in checks {
            match check.await.unwrap() {
                Ok(true) => done += 1,
                Err(AuthError::Busy) => busy += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(busy > 0 && done >= PasswordWork::MAX_WAITING, "{done} checked, {busy} refused");
    }
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterz", &hash));
        assert!(!verify_password("anything", "not a hash"));
        assert_ne!(hash, hash_password("correct horse battery").unwrap(), "a fresh salt each time");
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_unaltered() {
        let key = SecretBox::new(random_bytes());
        let sealed = key.seal(b"smtp password");
        assert!(!sealed.contains("smtp"));
        assert_eq!(key.open(&sealed).unwrap(), b"smtp password");
        assert!(SecretBox::new(random_bytes()).open(&sealed).is_err());
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(key.open(&String::from_utf8(altered).unwrap()).is_err());
        assert!(key.open("plain text").is_err());
    }

    #[test]
    fn key_files_are_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/secret.key");
        let sealed = SecretBox::load_or_create(&path).unwrap().seal(b"x");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(SecretBox::load_or_create(&path).unwrap().open(&sealed).unwrap(), b"x");
        std::fs::write(&path, "short").unwrap();
        let err = SecretBox::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("secret.key"), "{err}");
    }

    #[test]
    fn tokens_verify_with_their_key_only_and_expire() {
        #[derive(Serialize, serde::Deserialize)]
        struct Claims {
            sub: String,
            exp: i64,
        }
        let signer = TokenSigner::from_pkcs8(&TokenSigner::generate_pkcs8(), "k1".into()).unwrap();
        let now = secumon_core::now_ms() / 1000;
        let token = signer.sign(&Claims { sub: "ada".into(), exp: now + 60 }).unwrap();
        assert_eq!(signer.verify::<Claims>(&token).unwrap().sub, "ada");
        let other = TokenSigner::from_pkcs8(&TokenSigner::generate_pkcs8(), "k2".into()).unwrap();
        assert!(other.verify::<Claims>(&token).is_err());
        let expired = signer.sign(&Claims { sub: "ada".into(), exp: now - 60 }).unwrap();
        assert!(matches!(signer.verify::<Claims>(&expired), Err(AuthError::Unauthenticated("the token has expired"))));
        assert!(signer.verify::<Claims>(&format!("{token}x")).is_err());
    }
}
