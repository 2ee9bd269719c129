//! Single sign-on for super-admins: OpenID Connect's authorization code flow with PKCE.
//!
//! The `secumon` CLI asks [`Sso::start`] for the provider's authorization URL (the server
//! knows the provider, picks the `state` and `nonce` and keeps them with the CLI's loopback
//! redirect and PKCE challenge), the person signs in in a browser, and the CLI hands the
//! code and its PKCE verifier to [`Sso::exchange`]. The server trades the code at the
//! provider's token endpoint, validates the ID token in full (signature against the
//! provider's JWKS, `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`), maps one configured claim to
//! a SecuMon user, and issues SecuMon's own access and refresh tokens.
//!
//! The provider is discovered at `{issuer}/.well-known/openid-configuration` on first use
//! (so a server starts while its provider is down) and again after an hour; its keys are
//! cached and fetched again when an ID token names a key id not yet seen (key rotation).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use secumon_core::now_ms;
use secumon_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::crypto::{digest, random_token};
use super::{
    Accounts, AuthError, DEFAULT_TENANT, Role, SYSTEM, SecretBox, Session, SsoStart, tenant_of, validate_user_name,
};

const KIND_PENDING: &str = "oidc_login";
const KIND_SUBJECT: &str = "oidc_subject";
/// How long a person has between `start` and `exchange`.
const LOGIN_WINDOW_MS: i64 = 10 * 60_000;
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Unknown key ids fetch the JWKS again at most this often, so a stream of bad tokens
/// does not become a stream of requests to the provider.
const JWKS_REFETCH_MIN: Duration = Duration::from_secs(5);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers from the provider larger than this are refused.
const MAX_PROVIDER_ANSWER: usize = 1 << 20;

/// The `oidc:` section of the server's SSO file (`secumon server --oidc FILE`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL, exactly as its ID tokens' `iss` (https, or http on loopback).
    pub issuer: String,
    /// SecuMon's client id at the provider; ID tokens must name it in `aud`.
    pub client_id: String,
    /// The client secret, plain or sealed (`sealed:v1:...` from `secumon secrets seal`);
    /// none for a public client.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Scopes asked for; `openid` is always among them.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim that maps a person to SecuMon (a string or a list of strings),
    /// e.g. `groups` or `email`.
    pub claim: String,
    /// Values of `claim` that make a super-admin, signed in as the user named by
    /// `username_claim` (created on first sign-in).
    #[serde(default)]
    pub super_admins: Vec<String>,
    /// Values of `claim` that sign in as an existing SecuMon user, with that user's rights.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// The claim whose value names a super-admin's SecuMon user.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Clock difference allowed with the provider, in seconds, for `exp` and `iat`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

fn default_username_claim() -> String {
    "email".into()
}

fn default_leeway() -> u64 {
    60
}

/// The whole SSO file: one `oidc:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OidcFile {
    oidc: OidcConfig,
}

impl OidcConfig {
    /// Reads a YAML file with an `oidc:` section; errors name the file, line and key.
    pub fn load(path: &Path) -> Result<Self, secumon_core::ConfigError> {
        let file: OidcFile = secumon_core::config::load_yaml(path)?;
        Ok(file.oidc)
    }

    /// Parses YAML text with an `oidc:` section; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, secumon_core::ConfigError> {
        let file: OidcFile = secumon_core::config::parse_yaml(text, origin)?;
        Ok(file.oidc)
    }

    /// What the file's types cannot say: an https issuer (http on loopback only), names that
    /// are not empty, and at least one mapped claim value.
    pub fn check(&self) -> Result<(), SsoError> {
        let url = reqwest::Url::parse(&self.issuer)
            .map_err(|e| SsoError::Config(format!("issuer {:?} is not a URL: {e}", self.issuer)))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
            return Err(SsoError::Config(format!("issuer {:?} must be https (http only on loopback)", self.issuer)));
        }
        if self.client_id.is_empty() || self.claim.is_empty() || self.username_claim.is_empty() {
            return Err(SsoError::Config("client_id, claim and username_claim must not be empty".into()));
        }
        if self.super_admins.is_empty() && self.users.is_empty() {
            return Err(SsoError::Config("map at least one claim value in super_admins or users".into()));
        }
        Ok(())
    }
}

/// Why a sign-in failed. Nothing is issued on any of them.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// The server has no single sign-on configuration.
    #[error("single sign-on is not configured on this server")]
    NotConfigured,
    /// The single sign-on configuration is wrong; the text says where.
    #[error("single sign-on configuration: {0}")]
    Config(String),
    /// The request itself is wrong (not a loopback redirect, a malformed challenge, ...).
    #[error("{0}")]
    Invalid(String),
    /// The sign-in's `state` is unknown, used or expired, or the PKCE verifier or redirect
    /// does not match the start.
    #[error("{0}")]
    Session(&'static str),
    /// The identity provider failed, or could not be reached.
    #[error("the identity provider: {0}")]
    Provider(String),
    /// The identity provider's ID token was refused.
    #[error("the ID token was refused: {0}")]
    IdToken(#[from] IdTokenError),
    /// A valid identity that SecuMon does not let in.
    #[error("{0}")]
    Unmapped(String),
    /// Making the session failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// What is wrong with an ID token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    /// Its signature does not verify against the provider's keys.
    #[error("its signature does not verify against the provider's keys")]
    BadSignature,
    /// It was not issued for this server's client id.
    #[error("it was not issued for this server (audience or authorized party is not the client id)")]
    WrongAudience,
    /// It has expired.
    #[error("it has expired")]
    Expired,
    /// It is not valid yet, or was issued in the future.
    #[error("it is not valid yet, or was issued in the future")]
    NotYetValid,
    /// Its issuer is not the configured provider.
    #[error("its issuer is not the configured provider")]
    WrongIssuer,
    /// Its nonce is not the one the sign-in sent.
    #[error("its nonce is not the one this sign-in sent")]
    WrongNonce,
    /// It is signed with an algorithm that is not accepted.
    #[error("it is signed with algorithm {0:?}, which is not accepted")]
    Algorithm(String),
    /// The provider has no key with its key id.
    #[error("the provider has no key with its key id")]
    UnknownKey,
    /// It lacks a claim the server needs.
    #[error("it lacks the claim {0:?}")]
    MissingClaim(String),
    /// It does not parse.
    #[error("it is malformed: {0}")]
    Malformed(String),
}

impl SsoError {
    /// The stable error code the API answers with.
    pub fn code(&self) -> &'static str {
        self.error_code().map_or("auth", secumon_api::ErrorCode::as_str)
    }

    /// The API's error code for this failure (its HTTP status comes from the code's table);
    /// `None` for an account failure, which has its own codes.
    pub fn error_code(&self) -> Option<secumon_api::ErrorCode> {
        use secumon_api::ErrorCode;
        Some(match self {
            SsoError::NotConfigured => ErrorCode::NotFound,
            SsoError::Config(_) => ErrorCode::Internal,
            SsoError::Invalid(_) => ErrorCode::BadRequest,
            SsoError::Session(_) => ErrorCode::Unauthenticated,
            SsoError::Provider(_) => ErrorCode::IdentityProvider,
            SsoError::IdToken(_) => ErrorCode::InvalidIdToken,
            SsoError::Unmapped(_) => ErrorCode::Forbidden,
            SsoError::Auth(_) => return None,
        })
    }
}

/// The provider's endpoints, from its discovery document.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

struct Discovered {
    endpoints: Discovery,
    at: Instant,
}

/// A JWKS as published, before each key is read.
#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<Value>,
}

#[derive(Default)]
struct KeyCache {
    keys: Vec<Jwk>,
    fetched: Option<Instant>,
}

/// A sign-in between start and exchange, kept in the store (so any server of a scaled-out
/// installation can finish it) under its `state`.
#[derive(Debug, Serialize, Deserialize)]
struct PendingLogin {
    nonce: String,
    redirect_uri: String,
    code_challenge: String,
    expires_ms: i64,
}

/// A person's link to the SecuMon user created for them: the provider's `sub` is stable,
/// an e-mail address may be reused.
#[derive(Debug, Serialize, Deserialize)]
struct SubjectLink {
    user: String,
}

/// Single sign-on through one OpenID provider.
pub struct Sso {
    config: OidcConfig,
    client_secret: Option<String>,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    discovered: tokio::sync::Mutex<Option<Discovered>>,
    keys: tokio::sync::Mutex<KeyCache>,
}

impl Sso {
    /// Checks the configuration and opens a sealed client secret; contacts nobody yet.
    pub fn new(config: OidcConfig, store: Arc<dyn Store>, secrets: &SecretBox) -> Result<Self, SsoError> {
        config.check()?;
        let client_secret = match &config.client_secret {
            Some(value) => Some(secrets.open_config_value(value)?.unwrap_or_else(|| value.clone())),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            // The token endpoint gets the code and secret: never to somewhere it redirects.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SsoError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            config,
            client_secret,
            http,
            store,
            discovered: tokio::sync::Mutex::default(),
            keys: tokio::sync::Mutex::default(),
        })
    }

    /// Begins a sign-in for a CLI listening on the loopback `redirect_uri`, with its PKCE
    /// S256 `code_challenge`.
    pub async fn start(&self, redirect_uri: &str, code_challenge: &str) -> Result<SsoStart, SsoError> {
        check_loopback_redirect(redirect_uri)?;
        let challenge_ok = code_challenge.len() == 43
            && code_challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !challenge_ok {
            return Err(SsoError::Invalid(
                "code_challenge must be the S256 PKCE challenge (43 base64url characters)".into(),
            ));
        }
        let endpoints = self.discovery().await?;
        let (state, nonce) = (random_token(), random_token());
        let pending = PendingLogin {
            nonce: nonce.clone(),
            redirect_uri: redirect_uri.to_string(),
            code_challenge: code_challenge.to_string(),
            expires_ms: now_ms() + LOGIN_WINDOW_MS,
        };
        self.sweep_expired().await;
        let body = serde_json::to_string(&pending).map_err(AuthError::from)?;
        self.store.insert_record(SYSTEM, KIND_PENDING, &state, &body).await.map_err(AuthError::from)?;
        let mut scopes = self.config.scopes.clone();
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        let mut url = reqwest::Url::parse(&endpoints.authorization_endpoint)
            .map_err(|e| SsoError::Provider(format!("authorization_endpoint is not a URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(SsoStart { authorization_url: url.into(), state, expires_in: LOGIN_WINDOW_MS / 1000 })
    }

    /// Finishes a sign-in: trades `code` at the provider, validates the ID token, maps the
    /// person to a SecuMon user and opens a session for them.
    pub async fn exchange(
        &self,
        accounts: &Accounts,
        state: &str,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
    ) -> Result<(Session, String), SsoError> {
        const UNKNOWN: SsoError =
            SsoError::Session("this sign-in is unknown, was used already or expired: start again");
        if state.is_empty() || state.len() > 100 || code.is_empty() || code.len() > 2048 {
            return Err(UNKNOWN);
        }
        let Some(body) = self.store.get_record(SYSTEM, KIND_PENDING, state).await.map_err(AuthError::from)? else {
            return Err(UNKNOWN);
        };
        // Deleting is the use: a code cannot be replayed through the same start.
        if !self.store.delete_record(SYSTEM, KIND_PENDING, state).await.map_err(AuthError::from)? {
            return Err(UNKNOWN);
        }
        let pending: PendingLogin = serde_json::from_str(&body).map_err(AuthError::from)?;
        if pending.expires_ms < now_ms() {
            return Err(UNKNOWN);
        }
        if pending.redirect_uri != redirect_uri {
            return Err(SsoError::Session("the redirect URI is not the one the sign-in started with"));
        }
        if URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, code_verifier.as_bytes()))
            != pending.code_challenge
        {
            return Err(SsoError::Session("the PKCE code verifier does not match the sign-in's challenge"));
        }
        let endpoints = self.discovery().await?;
        let id_token = self.redeem_code(&endpoints, code, code_verifier, redirect_uri).await?;
        let claims = self.validate_id_token(&id_token, &pending.nonce).await?;
        self.sign_in(accounts, &claims).await
    }

    /// The provider's endpoints, discovered once an hour.
    async fn discovery(&self) -> Result<Discovery, SsoError> {
        let mut discovered = self.discovered.lock().await;
        if let Some(known) = discovered.as_ref().filter(|d| d.at.elapsed() < DISCOVERY_TTL) {
            return Ok(known.endpoints.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
        let endpoints: Discovery = self.get_json(&url).await?;
        // OpenID Connect Discovery 1.0, 4.3: the document must be the issuer's own.
        if endpoints.issuer != self.config.issuer {
            return Err(SsoError::Provider(format!(
                "discovery names issuer {:?}, not the configured {:?}",
                endpoints.issuer, self.config.issuer
            )));
        }
        *discovered = Some(Discovered { endpoints: endpoints.clone(), at: Instant::now() });
        Ok(endpoints)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, SsoError> {
        let response =
            self.http.get(url).send().await.map_err(|e| SsoError::Provider(format!("cannot reach {url}: {e}")))?;
        let status = response.status();
        let bytes = limited_body(response).await?;
        if !status.is_success() {
            return Err(SsoError::Provider(format!("{url} answered {status}")));
        }
        serde_json::from_slice(&bytes).map_err(|e| SsoError::Provider(format!("{url}: unreadable answer: {e}")))
    }

    /// The ID token the token endpoint gives for `code`.
    async fn redeem_code(
        &self,
        endpoints: &Discovery,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, SsoError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ];
        let mut request = self.http.post(&endpoints.token_endpoint);
        match &self.client_secret {
            // client_secret_basic, the method every provider supports.
            Some(secret) => {
                request = request.basic_auth(form_encode(&self.config.client_id), Some(form_encode(secret)));
            }
            None => form.push(("client_id", &self.config.client_id)),
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| SsoError::Provider(format!("cannot reach the token endpoint: {e}")))?;
        let status = response.status();
        let answer: Value = serde_json::from_slice(&limited_body(response).await?).unwrap_or(Value::Null);
        if !status.is_success() {
            let error = answer["error"].as_str().unwrap_or("no error code");
            let detail = answer["error_description"].as_str().unwrap_or("");
            // invalid_grant: the code was wrong, used or expired, or PKCE did not match.
            return Err(SsoError::Provider(format!(
                "the token endpoint refused the code ({status}): {error} {detail}"
            )));
        }
        answer["id_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| SsoError::Provider("the token endpoint's answer has no id_token".into()))
    }

    /// The ID token's claims, once its signature, issuer, audience, times and nonce hold.
    async fn validate_id_token(&self, token: &str, nonce: &str) -> Result<Map<String, Value>, IdTokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| IdTokenError::Malformed(e.to_string()))?;
        // Asymmetric algorithms only: never `none`, nor HMAC keyed by a secret others know.
        let accepted = [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ];
        if !accepted.contains(&header.alg) {
            return Err(IdTokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let jwk = self.key_for(header.kid.as_deref(), header.alg).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| IdTokenError::Malformed(format!("provider key: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.client_id]);
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => IdTokenError::BadSignature,
                ErrorKind::ExpiredSignature => IdTokenError::Expired,
                ErrorKind::ImmatureSignature => IdTokenError::NotYetValid,
                ErrorKind::InvalidAudience => IdTokenError::WrongAudience,
                ErrorKind::InvalidIssuer => IdTokenError::WrongIssuer,
                ErrorKind::MissingRequiredClaim(claim) => IdTokenError::MissingClaim(claim.clone()),
                _ => IdTokenError::Malformed(e.to_string()),
            })?
            .claims;
        let now = now_ms() / 1000;
        let iat = claims.get("iat").and_then(Value::as_i64).ok_or(IdTokenError::MissingClaim("iat".into()))?;
        if iat > now + self.config.leeway_seconds as i64 {
            return Err(IdTokenError::NotYetValid);
        }
        // OpenID Connect Core 3.1.3.7: with several audiences the token must name us as
        // its authorized party; when `azp` is present it must be us.
        let several = claims.get("aud").and_then(Value::as_array).is_some_and(|a| a.len() > 1);
        match claims.get("azp").and_then(Value::as_str) {
            Some(azp) if azp != self.config.client_id => return Err(IdTokenError::WrongAudience),
            None if several => return Err(IdTokenError::WrongAudience),
            _ => {}
        }
        match claims.get("nonce").and_then(Value::as_str) {
            Some(sent) if super::crypto::same_secret(sent, nonce) => Ok(claims),
            Some(_) => Err(IdTokenError::WrongNonce),
            None => Err(IdTokenError::MissingClaim("nonce".into())),
        }
    }

    /// The provider's key for `kid`; the JWKS is fetched again when the id is not known.
    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Jwk, IdTokenError> {
        let mut cache = self.keys.lock().await;
        if let Some(key) = pick_key(&cache.keys, kid, alg) {
            return Ok(key);
        }
        if cache.fetched.is_some_and(|at| at.elapsed() < JWKS_REFETCH_MIN) {
            return Err(IdTokenError::UnknownKey);
        }
        let endpoints = self.discovery().await.map_err(|e| IdTokenError::Malformed(e.to_string()))?;
        let set: RawKeySet =
            self.get_json(&endpoints.jwks_uri).await.map_err(|e| IdTokenError::Malformed(e.to_string()))?;
        // Keys of kinds this server cannot use (another algorithm family, encryption keys)
        // are left out one by one rather than failing the whole set.
        cache.keys = set.keys.into_iter().filter_map(|key| serde_json::from_value::<Jwk>(key).ok()).collect();
        cache.fetched = Some(Instant::now());
        pick_key(&cache.keys, kid, alg).ok_or(IdTokenError::UnknownKey)
    }

    /// The SecuMon user the claims map to, and a session for them.
    async fn sign_in(&self, accounts: &Accounts, claims: &Map<String, Value>) -> Result<(Session, String), SsoError> {
        let values = claim_values(claims.get(&self.config.claim));
        let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        // An address the provider says it has not verified names nobody: whoever typed it.
        let by_email = self.config.claim == "email" || self.config.username_claim == "email";
        if by_email && claims.get("email_verified").and_then(Value::as_bool) == Some(false) {
            return Err(SsoError::Unmapped(format!("{subject:?}: the provider has not verified the e-mail address")));
        }
        let name = if let Some(user) = values.iter().find_map(|v| self.config.users.get(v)) {
            user.clone()
        } else if values.iter().any(|v| self.config.super_admins.contains(v)) {
            self.super_admin_user(accounts, subject, claims).await?
        } else {
            return Err(SsoError::Unmapped(format!(
                "{subject:?} signed in at the provider, but no value of its `{}` claim is mapped to SecuMon",
                self.config.claim
            )));
        };
        let Some(user) = accounts.load_user(&name).await? else {
            return Err(SsoError::Unmapped(format!("the mapped SecuMon user {name:?} does not exist")));
        };
        if user.disabled {
            return Err(SsoError::Unmapped(format!("{name} is disabled")));
        }
        let (tenant, role) = tenant_of(&user, None)?;
        Ok((accounts.new_session(&user, &tenant, role).await?, name))
    }

    /// The super-admin user linked to the provider's `subject`, created on first sign-in
    /// under the name in `username_claim`.
    async fn super_admin_user(
        &self,
        accounts: &Accounts,
        subject: &str,
        claims: &Map<String, Value>,
    ) -> Result<String, SsoError> {
        let link_id = digest(&format!("{}\n{subject}", self.config.issuer));
        let name = match self.store.get_record(SYSTEM, KIND_SUBJECT, &link_id).await.map_err(AuthError::from)? {
            Some(body) => serde_json::from_str::<SubjectLink>(&body).map_err(AuthError::from)?.user,
            None => {
                let claim = &self.config.username_claim;
                let Some(name) = claims.get(claim).and_then(Value::as_str) else {
                    return Err(IdTokenError::MissingClaim(claim.clone()).into());
                };
                validate_user_name(name)?;
                // No password: this user signs in through the provider only.
                let password = format!("sso-only-{}", random_token());
                match accounts.add_user(name, &password, DEFAULT_TENANT, Role::Admin, true).await {
                    Ok(_) => {}
                    Err(AuthError::Conflict(_)) => {
                        return Err(SsoError::Unmapped(format!(
                            "a SecuMon user named {name:?} exists already: map it under `users:` to sign in as it"
                        )));
                    }
                    Err(other) => return Err(other.into()),
                }
                let link = serde_json::to_string(&SubjectLink { user: name.to_string() }).map_err(AuthError::from)?;
                self.store.insert_record(SYSTEM, KIND_SUBJECT, &link_id, &link).await.map_err(AuthError::from)?;
                tracing::info!(user = %name, "super-admin created on first single sign-on");
                name.to_string()
            }
        };
        // The provider's group is what makes a super-admin: it holds on every sign-in.
        accounts
            .update_user(&name, |user| {
                user.super_admin = true;
                Ok(())
            })
            .await?;
        Ok(name)
    }

    /// Forgets sign-ins that were started and never finished.
    async fn sweep_expired(&self) {
        let Ok(page) = self.store.list_records(SYSTEM, KIND_PENDING, None, 100).await else { return };
        let now = now_ms();
        for record in page {
            let expired =
                serde_json::from_str::<PendingLogin>(&record.body).map_or(true, |pending| pending.expires_ms < now);
            if expired {
                let _ = self.store.delete_record(SYSTEM, KIND_PENDING, &record.id).await;
            }
        }
    }
}

/// The CLI's redirect must come back to the machine the person sits at.
fn check_loopback_redirect(redirect_uri: &str) -> Result<(), SsoError> {
    let refused = || SsoError::Invalid(format!("redirect_uri {redirect_uri:?} must be http://127.0.0.1:PORT/..."));
    let url = reqwest::Url::parse(redirect_uri).map_err(|_| refused())?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    if url.scheme() != "http" || !loopback || url.port().is_none() || url.fragment().is_some() {
        return Err(refused());
    }
    Ok(())
}

/// A claim's values: a string, or the strings of a list.
fn claim_values(claim: Option<&Value>) -> Vec<String> {
    match claim {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// The key with id `kid` for `alg` (or the only signing key when the token names none).
fn pick_key(keys: &[Jwk], kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
    let fits = |key: &&Jwk| {
        let for_signing = !matches!(key.common.public_key_use, Some(jsonwebtoken::jwk::PublicKeyUse::Encryption));
        let same_alg = key.common.key_algorithm.is_none_or(|a| format!("{a:?}") == format!("{alg:?}"));
        for_signing && same_alg
    };
    match kid {
        Some(kid) => keys.iter().filter(fits).find(|k| k.common.key_id.as_deref() == Some(kid)).cloned(),
        None => {
            let candidates: Vec<&Jwk> = keys.iter().filter(fits).collect();
            if candidates.len() == 1 { Some(candidates[0].clone()) } else { None }
        }
    }
}

/// RFC 6749 2.3.1: client id and secret are form-encoded before Basic authentication.
fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn limited_body(response: reqwest::Response) -> Result<Vec<u8>, SsoError> {
    if response.content_length().is_some_and(|n| n > MAX_PROVIDER_ANSWER as u64) {
        return Err(SsoError::Provider("the answer is too large".into()));
    }
    let bytes = response.bytes().await.map_err(|e| SsoError::Provider(format!("the answer was cut off: {e}")))?;
    if bytes.len() > MAX_PROVIDER_ANSWER {
        return Err(SsoError::Provider("the answer is too large".into()));
    }
    Ok(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_redirects_are_taken() {
        assert!(check_loopback_redirect("http://127.0.0.1:43123/callback").is_ok());
        assert!(check_loopback_redirect("http://[::1]:43123/callback").is_ok());
        for bad in [
            "https://evil.example/callback",
            "http://10.0.0.1:80/callback",
            "http://127.0.0.1/callback",
            "http://localhost.evil.example:80/",
            "http://127.0.0.1:80/#x",
            "not a url",
        ] {
            assert!(check_loopback_redirect(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn claim_values_read_strings_and_lists() {
        assert_eq!(claim_values(Some(&Value::from("a@b"))), vec!["a@b"]);
        assert_eq!(claim_values(Some(&serde_json::json!(["x", 1, "y"]))), vec!["x", "y"]);
        assert!(claim_values(Some(&serde_json::json!({"x": 1}))).is_empty());
        assert!(claim_values(None).is_empty());
    }

    #[test]
    fn the_sso_file_is_checked() {
        let text = "oidc:\n  issuer: https://idp.example.com\n  client_id: secumon\n  claim: groups\n  super_admins: [admins]\n";
        let config = OidcConfig::parse(text, "sso.yaml").unwrap();
        assert_eq!((config.username_claim.as_str(), config.leeway_seconds), ("email", 60));
        config.check().unwrap();
        let unknown = OidcConfig::parse(&format!("{text}  secret: x\n"), "sso.yaml").unwrap_err().to_string();
        assert!(unknown.contains("sso.yaml:6") && unknown.contains("secret"), "{unknown}");
        let plain_http = OidcConfig { issuer: "http://idp.example.com".into(), ..config.clone() };
        assert!(plain_http.check().is_err());
        let nothing_mapped = OidcConfig { super_admins: vec![], ..config };
        assert!(nothing_mapped.check().is_err());
    }
}
