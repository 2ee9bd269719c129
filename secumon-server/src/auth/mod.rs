//! Who is calling, and what they may do. [`Accounts`] keeps tenants, users (argon2id
//! passwords, TOTP second factor, roles per tenant, lockout after failed logins), API keys
//! and refresh tokens as records in the store, and turns a bearer credential into a
//! [`Caller`]: a subject, the one tenant it acts in, and its role there.
//!
//! Access tokens are short-lived Ed25519-signed JWTs; refresh tokens and API keys are random
//! secrets stored as digests, so they can be revoked and a database dump does not reveal them.

mod agents;
mod crypto;
mod email;
mod mfa;
mod oidc;
pub mod rekey;
mod tenant_users;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::shared_limits::{SharedLimits, SharedLock};
use secumon_core::now_ms;
use secumon_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

pub use agents::{
    AgentAuthority, AgentCaState, CaStatus, MAX_PROVISION_TTL, NewProvisioningToken, RevocationFeed, SESSION_ROTATION,
    ca_status, retire_old_ca, rotate_ca,
};
pub use crypto::SecretBox;
use crypto::{PasswordWork, TokenSigner, decoy_hash, digest, random_id, random_token, same_secret};
pub use email::normalize_email;
pub use oidc::{IdTokenError, OidcConfig, Sso, SsoError};
// The API's account types, from the crate its clients read them with.
pub use secumon_api::{ApiKeyView, MfaEnrolment, Role, Session, SsoStart, UserChange, UserView};
pub use tenant_users::{name_in_tenant, tenant_user_name};

/// Records of the whole installation (users, tenants, keys) live under this tenant id,
/// which no tenant can be named.
const SYSTEM: &str = "_system";
const KIND_USER: &str = "user";
const KIND_TENANT: &str = "tenant";
const KIND_API_KEY: &str = "api_key";
const KIND_REFRESH: &str = "refresh_token";
const KIND_SIGNING_KEY: &str = "signing_key";

/// The tenant that exists from the start.
pub const DEFAULT_TENANT: &str = secumon_store::DEFAULT_TENANT;
/// How long an access token is good for.
pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;
const REFRESH_TOKEN_MS: i64 = 30 * 24 * 3_600_000;
const MFA_TOKEN_SECONDS: i64 = 5 * 60;
/// Consecutive failed logins (password or second factor) before the account locks.
pub const LOCKOUT_AFTER: u32 = 5;
const LOCKOUT_MS: i64 = 15 * 60_000;
const MIN_PASSWORD_CHARS: usize = 10;
/// Pages of records read when one listing must see every record of a kind.
const SCAN_PAGE: u32 = 500;

/// An authenticated request's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// A user name, or `key:<id>` for an API key.
    pub subject: String,
    /// The one tenant this request reads and changes.
    pub tenant: String,
    /// The caller's role in `tenant`.
    pub role: Role,
    /// May act in any tenant and manage tenants.
    pub super_admin: bool,
}

impl Caller {
    /// `Forbidden` unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), AuthError> {
        if self.role >= role || self.super_admin {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!("this needs the {role:?} role; {} is {:?}", self.subject, self.role)))
        }
    }

    pub(crate) fn require_super_admin(&self) -> Result<(), AuthError> {
        if self.super_admin { Ok(()) } else { Err(AuthError::Forbidden("this needs a super-admin".into())) }
    }
}

/// Why an account operation or an authentication was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credential, or one that is wrong, expired or revoked. The text never says which
    /// part of a login was wrong.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller's role or tenant does not allow it; the text names what was needed.
    #[error("{0}")]
    Forbidden(String),
    #[error("too many failed logins: the account is locked for {retry_after_s} s more")]
    /// Too many failed logins in a row: the account is locked for a while.
    Locked {
        /// Seconds until it unlocks.
        retry_after_s: i64,
    },
    /// More login attempts for one account at once than it has failures left before the
    /// lock: the others wait for these to finish.
    #[error("too many login attempts for this account at once; retry in a moment")]
    TooManyAttempts,
    /// Too many password checks in progress on the server.
    #[error("the server is busy checking passwords; retry in a moment")]
    Busy,
    /// The request is invalid (a short password, a bad name); the text says why.
    #[error("{0}")]
    Invalid(String),
    /// No such user, key or tenant.
    #[error("{0}")]
    NotFound(String),
    /// It exists already (a user name, an e-mail address, a tenant).
    #[error("{0}")]
    Conflict(String),
    /// The secret key that seals stored secrets is missing, unreadable or wrong.
    #[error("secret key: {0}")]
    SecretKey(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something that should not fail did (token signing, hashing).
    #[error("{0}")]
    Internal(String),
}

impl From<secumon_api::UnknownRole> for AuthError {
    fn from(error: secumon_api::UnknownRole) -> Self {
        AuthError::Invalid(error.to_string())
    }
}

impl From<serde_json::Error> for AuthError {
    fn from(error: serde_json::Error) -> Self {
        AuthError::Internal(format!("an account record is unreadable: {error}"))
    }
}

/// A user as stored under the system tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserRecord {
    name: String,
    password_hash: String,
    #[serde(default)]
    super_admin: bool,
    #[serde(default)]
    roles: BTreeMap<String, Role>,
    #[serde(default)]
    mfa: Option<mfa::MfaRecord>,
    #[serde(default)]
    failed_logins: u32,
    #[serde(default)]
    locked_until_ms: i64,
    created_ms: i64,
    /// A disabled user cannot log in, and their tokens stop working.
    #[serde(default)]
    disabled: bool,
    /// Access and refresh tokens carry the version they were issued under; raising it (logout,
    /// password or role change, disabling) revokes them all.
    #[serde(default)]
    token_version: u32,
    /// Lowercase; unique (see `email.rs`), usable in place of the name to log in.
    #[serde(default)]
    email: Option<String>,
}

impl UserRecord {
    fn mfa_enabled(&self) -> bool {
        self.mfa.as_ref().is_some_and(|m| m.confirmed)
    }

    fn view(&self) -> UserView {
        UserView {
            name: self.name.clone(),
            email: self.email.clone(),
            super_admin: self.super_admin,
            roles: self.roles.clone(),
            mfa_enabled: self.mfa_enabled(),
            locked: self.locked_until_ms > now_ms(),
            disabled: self.disabled,
            created_ms: self.created_ms,
        }
    }

    /// Ends every session of the user.
    fn revoke_tokens(&mut self) {
        self.token_version = self.token_version.wrapping_add(1);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ApiKeyRecord {
    id: String,
    tenant: String,
    name: String,
    role: Role,
    digest: String,
    created_by: String,
    created_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefreshRecord {
    user: String,
    tenant: String,
    digest: String,
    expires_ms: i64,
    /// The user's token version when issued.
    #[serde(default)]
    ver: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct SigningKeyRecord {
    key_id: String,
    sealed_pkcs8: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    tenant: String,
    role: Role,
    #[serde(default)]
    sa: bool,
    /// `access`, or `mfa` for the half-way token between password and second factor.
    typ: String,
    /// The user's token version when issued.
    #[serde(default)]
    ver: u32,
    iat: i64,
    exp: i64,
}

/// What a correct password leads to.
#[derive(Debug)]
pub enum LoginOutcome {
    /// The login is complete.
    Session(Session),
    /// The second factor is due: present this token with a code to `verify_mfa`.
    MfaRequired {
        /// Present it with a code to [`Accounts::verify_mfa`]; good for 5 minutes.
        mfa_token: String,
    },
}

/// Tenants, users, API keys and sessions, kept in the store.
pub struct Accounts {
    store: Arc<dyn Store>,
    secrets: SecretBox,
    signer: TokenSigner,
    /// Serialises read-modify-write of user records (failed-login counts, TOTP steps), so
    /// that two logins racing with one code cannot both use it.
    user_updates: tokio::sync::Mutex<()>,
    /// Password checks in progress per user: each counts against the failures left before
    /// the lock, so concurrent guesses cannot outnumber them.
    attempts: std::sync::Mutex<HashMap<String, u32>>,
    /// With several API processes: the user lock and the attempts in progress in Redis,
    /// in place of the two above.
    shared: Option<SharedLimits>,
    passwords: PasswordWork,
}

/// The user-record lock held: this process's, or the one shared through Redis.
enum UserGuard<'a> {
    /// Held for its drop, which frees the lock.
    Local(#[allow(dead_code)] tokio::sync::MutexGuard<'a, ()>),
    Shared(Box<SharedLock>),
}

impl UserGuard<'_> {
    async fn release(self) {
        match self {
            UserGuard::Local(_) => {}
            UserGuard::Shared(lock) => (*lock).release().await,
        }
    }
}

/// A password check in progress for a user; uncounted when dropped.
struct Attempt<'a> {
    accounts: &'a Accounts,
    user: String,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(shared) = &self.accounts.shared {
            shared.end_attempt(&self.user);
            return;
        }
        let mut attempts = self.accounts.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = attempts.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                attempts.remove(&self.user);
            }
        }
    }
}

impl Accounts {
    /// Loads the token signing key (creating it on first start) and makes sure the default
    /// tenant exists.
    pub async fn open(store: Arc<dyn Store>, secrets: SecretBox) -> Result<Self, AuthError> {
        let fresh =
            SigningKeyRecord { key_id: random_id(), sealed_pkcs8: secrets.seal(&TokenSigner::generate_pkcs8()) };
        // Insert-once, then read: servers starting together agree on one key.
        store.insert_record(SYSTEM, KIND_SIGNING_KEY, "current", &serde_json::to_string(&fresh)?).await?;
        let stored: SigningKeyRecord = match store.get_record(SYSTEM, KIND_SIGNING_KEY, "current").await? {
            Some(body) => serde_json::from_str(&body)?,
            None => return Err(AuthError::Internal("the token signing key was not saved".into())),
        };
        let signer = TokenSigner::from_pkcs8(&secrets.open(&stored.sealed_pkcs8)?, stored.key_id)?;
        store.insert_record(SYSTEM, KIND_TENANT, DEFAULT_TENANT, "{}").await?;
        Ok(Self {
            store,
            secrets,
            signer,
            user_updates: tokio::sync::Mutex::new(()),
            attempts: std::sync::Mutex::default(),
            shared: None,
            passwords: PasswordWork::default(),
        })
    }

    /// Shares the user lock and the login attempts in progress with every API process
    /// using the same Redis and prefix (the lockout itself is in the store already).
    #[must_use]
    pub fn with_shared_limits(mut self, shared: SharedLimits) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The lock under which a user record is read, changed and written. Shared, it fails
    /// closed (see `shared_limits`): `Busy` while Redis cannot be reached.
    async fn lock_user(&self, name: &str) -> Result<UserGuard<'_>, AuthError> {
        match &self.shared {
            None => Ok(UserGuard::Local(self.user_updates.lock().await)),
            Some(shared) => match shared.lock(&format!("user:{name}")).await {
                Ok(lock) => Ok(UserGuard::Shared(Box::new(lock))),
                Err(error) => {
                    tracing::error!(%error, user = name, "cannot take the shared user lock; refusing");
                    Err(AuthError::Busy)
                }
            },
        }
    }

    // ----- tenants -----

    /// Creates tenant `name`; `false` when it exists already.
    pub async fn create_tenant(&self, name: &str) -> Result<bool, AuthError> {
        validate_tenant_name(name)?;
        Ok(self.store.insert_record(SYSTEM, KIND_TENANT, name, "{}").await?)
    }

    /// Whether tenant `name` exists.
    pub async fn tenant_exists(&self, name: &str) -> Result<bool, AuthError> {
        Ok(self.store.get_record(SYSTEM, KIND_TENANT, name).await?.is_some())
    }

    /// Tenant names in id order, those after `after`, at most `limit`.
    pub async fn tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<String>, AuthError> {
        Ok(self.store.list_records(SYSTEM, KIND_TENANT, after, limit).await?.into_iter().map(|r| r.id).collect())
    }

    // ----- users -----

    /// Whether any user exists (else `secumon up` bootstraps the first admin).
    pub async fn has_users(&self) -> Result<bool, AuthError> {
        Ok(!self.store.list_records(SYSTEM, KIND_USER, None, 1).await?.is_empty())
    }

    /// Adds a user with `role` in `tenant` (created if new); `Conflict` if the name is taken.
    pub async fn add_user(
        &self,
        name: &str,
        password: &str,
        tenant: &str,
        role: Role,
        super_admin: bool,
    ) -> Result<UserView, AuthError> {
        tenant_users::validate_stored_user_name(name)?;
        validate_password(password)?;
        validate_tenant_name(tenant)?;
        self.store.insert_record(SYSTEM, KIND_TENANT, tenant, "{}").await?;
        let user = UserRecord {
            name: name.to_string(),
            password_hash: self.passwords.hash(password).await?,
            super_admin,
            roles: BTreeMap::from([(tenant.to_string(), role)]),
            mfa: None,
            failed_logins: 0,
            locked_until_ms: 0,
            created_ms: now_ms(),
            disabled: false,
            token_version: 0,
            email: None,
        };
        if !self.store.insert_record(SYSTEM, KIND_USER, name, &serde_json::to_string(&user)?).await? {
            return Err(AuthError::Conflict(format!("user {name:?} exists")));
        }
        Ok(user.view())
    }

    /// Users with a role in `tenant`, or every user for `None`.
    pub async fn users(&self, tenant: Option<&str>) -> Result<Vec<UserView>, AuthError> {
        let users: Vec<UserRecord> = self.all_records(KIND_USER).await?;
        Ok(users.iter().filter(|u| tenant.is_none_or(|t| u.roles.contains_key(t))).map(UserRecord::view).collect())
    }

    /// The user, if `tenant` is one of theirs (or `None`).
    pub async fn user(&self, name: &str, tenant: Option<&str>) -> Result<UserView, AuthError> {
        match self.load_user(name).await? {
            Some(user) if tenant.is_none_or(|t| user.roles.contains_key(t)) => Ok(user.view()),
            _ => Err(AuthError::NotFound(format!("no user {name:?}"))),
        }
    }

    /// Removes the second factor (the user enrols again) and unlocks the account. With a
    /// `tenant`, only as `Accounts::manageable` allows.
    pub async fn reset_mfa(
        &self,
        name: &str,
        tenant: Option<&str>,
        by_super_admin: bool,
    ) -> Result<UserView, AuthError> {
        self.manageable(name, tenant, by_super_admin).await?;
        self.update_user(name, |user| {
            user.mfa = None;
            user.failed_logins = 0;
            user.locked_until_ms = 0;
            Ok(())
        })
        .await
        .map(|u| u.view())
    }

    /// The user, if whoever manages users of `tenant` may change them: a tenant's admin must
    /// not take over a super-admin or someone who also works for other tenants. `None`: the
    /// server's operator, on its machine.
    async fn manageable(&self, name: &str, tenant: Option<&str>, by_super_admin: bool) -> Result<UserView, AuthError> {
        let user = self.user(name, tenant).await?;
        if let Some(tenant) = tenant.filter(|_| !by_super_admin)
            && (user.super_admin || user.roles.keys().any(|t| t != tenant))
        {
            return Err(AuthError::Forbidden(format!(
                "{name} is a super-admin or has roles in other tenants: only a super-admin may change them"
            )));
        }
        Ok(user)
    }

    /// Sets the user's password; their sessions end.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), AuthError> {
        validate_password(password)?;
        let hash = self.passwords.hash(password).await?;
        self.update_user(name, move |user| {
            user.password_hash = hash;
            user.failed_logins = 0;
            user.locked_until_ms = 0;
            user.revoke_tokens();
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// A user changes their own password, proving the current one.
    pub async fn change_own_password(&self, name: &str, current: &str, new: &str) -> Result<(), AuthError> {
        validate_password(new)?;
        self.confirm_password(name, current).await?;
        self.set_password(name, new).await
    }

    /// Applies `change` to a user of `tenant` (see `Accounts::manageable`); a new role,
    /// password or disabling ends the user's sessions.
    pub async fn change_user(
        &self,
        name: &str,
        tenant: Option<&str>,
        by_super_admin: bool,
        change: UserChange,
    ) -> Result<UserView, AuthError> {
        self.manageable(name, tenant, by_super_admin).await?;
        // First, so that an address taken by someone else changes nothing.
        if let Some(email) = &change.email {
            self.set_email(name, email).await?;
        }
        if let Some(password) = &change.password {
            self.set_password(name, password).await?;
        }
        if change.role.is_some() && tenant.is_none() {
            return Err(AuthError::Invalid("a role is set in a tenant".into()));
        }
        self.update_user(name, |user| {
            if let (Some(role), Some(tenant)) = (change.role, tenant) {
                user.roles.insert(tenant.to_string(), role);
                user.revoke_tokens();
            }
            if let Some(disabled) = change.disabled {
                user.disabled = disabled;
                if disabled {
                    user.revoke_tokens();
                }
            }
            Ok(())
        })
        .await
        .map(|u| u.view())
    }

    /// Removes the user from `tenant`, and altogether once they have no tenant left (or for
    /// `None`, the server's operator); their sessions end. `false` if there was no such user.
    pub async fn delete_user(&self, name: &str, tenant: Option<&str>, by_super_admin: bool) -> Result<bool, AuthError> {
        let user = self.manageable(name, tenant, by_super_admin).await?;
        let keeps_other_tenants = tenant.is_some_and(|t| user.roles.keys().any(|other| other != t));
        if keeps_other_tenants {
            let tenant = tenant.unwrap_or_default().to_string();
            self.update_user(name, |user| {
                user.roles.remove(&tenant);
                user.revoke_tokens();
                Ok(())
            })
            .await?;
            return Ok(true);
        }
        if let Some(email) = &user.email {
            self.release_email(email, name).await;
        }
        let guard = self.lock_user(name).await?;
        let deleted = self.store.delete_record(SYSTEM, KIND_USER, name).await?;
        guard.release().await;
        Ok(deleted)
    }

    /// Ends every session of the user (access and refresh tokens).
    pub async fn revoke_sessions(
        &self,
        name: &str,
        tenant: Option<&str>,
        by_super_admin: bool,
    ) -> Result<(), AuthError> {
        self.manageable(name, tenant, by_super_admin).await?;
        self.update_user(name, |user| {
            user.revoke_tokens();
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Every system record of `kind`, read page by page.
    async fn all_records<T: serde::de::DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>, AuthError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list_records(SYSTEM, kind, after.as_deref(), SCAN_PAGE).await?;
            let Some(last) = page.last() else { return Ok(all) };
            after = Some(last.id.clone());
            for record in &page {
                all.push(serde_json::from_str(&record.body)?);
            }
        }
    }

    async fn load_user(&self, name: &str) -> Result<Option<UserRecord>, AuthError> {
        match self.store.get_record(SYSTEM, KIND_USER, name).await? {
            Some(body) => Ok(Some(serde_json::from_str(&body)?)),
            None => Ok(None),
        }
    }

    /// Applies `change` to the stored user under the update lock and saves it, even when
    /// `change` fails (a failed login is recorded as such).
    async fn update_user<T>(
        &self,
        name: &str,
        change: impl FnOnce(&mut UserRecord) -> Result<T, AuthError>,
    ) -> Result<UserRecord, AuthError> {
        let guard = self.lock_user(name).await?;
        let Some(mut user) = self.load_user(name).await? else {
            return Err(AuthError::NotFound(format!("no user {name:?}")));
        };
        let outcome = change(&mut user);
        self.store.put_record(SYSTEM, KIND_USER, name, &serde_json::to_string(&user)?).await?;
        guard.release().await;
        outcome.map(|_| user)
    }

    // ----- logins -----

    /// Checks a password. With MFA on, the answer is a token for [`Accounts::verify_mfa`].
    /// `LOCKOUT_AFTER` failures in a row lock the account for 15 minutes. Each attempt is
    /// counted before its password is checked, under the update lock, so however many race
    /// no more guesses are checked than failures are left, and none succeeds on an account
    /// that the others locked meanwhile.
    pub async fn login(&self, name: &str, password: &str, tenant: Option<&str>) -> Result<LoginOutcome, AuthError> {
        let (stored, attempt) = match self.begin_attempt(name).await {
            Ok(Some(started)) => started,
            // The same work and the same answer for a locked account as for a name that does
            // not exist, so neither timing nor text tells which names exist.
            Ok(None) | Err(AuthError::Locked { .. } | AuthError::TooManyAttempts) => {
                self.passwords.verify(password, decoy_hash()).await?;
                return Err(LOGIN_REFUSED);
            }
            Err(other) => return Err(other),
        };
        if let Some(wanted) = tenant.filter(|_| stored.super_admin) {
            // A super-admin may act in any tenant, but only one that exists.
            if validate_tenant_name(wanted).is_err() || !self.tenant_exists(wanted).await? {
                return Err(AuthError::Forbidden(format!("no tenant {wanted:?}")));
            }
        }
        let matches = self.passwords.verify(password, &stored.password_hash).await?;
        let checked = self
            .update_user(name, |user| {
                if !matches {
                    return Err(match record_failure(user) {
                        AuthError::Locked { .. } => LOGIN_REFUSED,
                        other => other,
                    });
                }
                refuse_if_locked(user)?;
                if user.disabled {
                    return Err(AuthError::Forbidden(format!("{} is disabled", user.name)));
                }
                if !user.mfa_enabled() {
                    user.failed_logins = 0;
                }
                Ok(())
            })
            .await;
        drop(attempt);
        let stored = checked?;
        let (tenant, role) = tenant_of(&stored, tenant)?;
        if stored.mfa_enabled() {
            let now = now_ms() / 1000;
            let claims = Claims {
                sub: name.to_string(),
                tenant,
                role,
                sa: stored.super_admin,
                typ: "mfa".into(),
                ver: stored.token_version,
                iat: now,
                exp: now + MFA_TOKEN_SECONDS,
            };
            return Ok(LoginOutcome::MfaRequired { mfa_token: self.signer.sign(&claims)? });
        }
        Ok(LoginOutcome::Session(self.new_session(&stored, &tenant, role).await?))
    }

    /// Counts a password check for `name` if the account is not locked and has failures left
    /// for it beside those in progress; `None` if there is no such user.
    async fn begin_attempt(&self, name: &str) -> Result<Option<(UserRecord, Attempt<'_>)>, AuthError> {
        let guard = self.lock_user(name).await?;
        let Some(user) = self.load_user(name).await? else { return Ok(None) };
        refuse_if_locked(&user)?;
        if let Some(shared) = &self.shared {
            let allowed = LOCKOUT_AFTER.saturating_sub(user.failed_logins);
            let begun = shared.begin_attempt(name, allowed).await.map_err(|error| {
                tracing::error!(%error, "cannot count a login attempt in Redis; refusing");
                AuthError::Busy
            })?;
            guard.release().await;
            return match begun {
                true => Ok(Some((user, Attempt { accounts: self, user: name.to_string() }))),
                false => Err(AuthError::TooManyAttempts),
            };
        }
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let in_progress = attempts.entry(name.to_string()).or_default();
        if user.failed_logins + *in_progress >= LOCKOUT_AFTER {
            return Err(AuthError::TooManyAttempts);
        }
        *in_progress += 1;
        Ok(Some((user, Attempt { accounts: self, user: name.to_string() })))
    }

    /// Checks `password` against `name`'s, counting a failure like a failed login: what
    /// changes to the second factor need beside a token that may have been stolen.
    async fn confirm_password(&self, name: &str, password: &str) -> Result<(), AuthError> {
        let Some((stored, attempt)) = self.begin_attempt(name).await? else {
            return Err(AuthError::NotFound(format!("no user {name:?}")));
        };
        let matches = self.passwords.verify(password, &stored.password_hash).await?;
        let checked = self.update_user(name, |user| if matches { Ok(()) } else { Err(record_failure(user)) }).await;
        drop(attempt);
        checked.map(|_| ())
    }

    /// Completes a login with a TOTP code (each accepted once) or a recovery code (each
    /// usable once).
    pub async fn verify_mfa(&self, mfa_token: &str, code: &str) -> Result<Session, AuthError> {
        let claims: Claims = self.signer.verify(mfa_token)?;
        if claims.typ != "mfa" {
            return Err(AuthError::Unauthenticated("not an MFA token"));
        }
        let secrets = &self.secrets;
        let user = self
            .update_user(&claims.sub, |user| {
                refuse_if_locked(user)?;
                let account = user.name.clone();
                let Some(mfa) = user.mfa.as_mut().filter(|m| m.confirmed) else {
                    return Err(AuthError::Unauthenticated("MFA is not enabled for this user"));
                };
                let secret = secrets.open(&mfa.sealed_secret)?;
                let accepted = match mfa::accept_code(&secret, &account, code.trim(), unix_seconds(), mfa.last_step) {
                    Some(step) => {
                        mfa.last_step = step;
                        true
                    }
                    None => mfa::redeem_recovery_code(&mut mfa.recovery_digests, code),
                };
                if accepted {
                    user.failed_logins = 0;
                    Ok(())
                } else {
                    Err(record_failure(user))
                }
            })
            .await
            .map_err(|e| match e {
                AuthError::NotFound(_) => AuthError::Unauthenticated("the MFA token is not valid"),
                other => other,
            })?;
        if user.disabled || user.token_version != claims.ver {
            return Err(AuthError::Unauthenticated("the MFA token is not valid"));
        }
        let role = tenant_of(&user, Some(&claims.tenant))?.1;
        self.new_session(&user, &claims.tenant, role).await
    }

    /// Starts TOTP enrolment for `name`, whose password must be given again; MFA is on once
    /// [`Accounts::confirm_mfa`] succeeds.
    pub async fn enroll_mfa(&self, name: &str, password: &str) -> Result<MfaEnrolment, AuthError> {
        self.confirm_password(name, password).await?;
        let secret = mfa::new_secret();
        let (otpauth_uri, base32) = mfa::enrolment(&secret, name)?;
        let sealed_secret = self.secrets.seal(&secret);
        self.update_user(name, move |user| {
            if user.mfa_enabled() {
                return Err(AuthError::Conflict("MFA is already enabled; an admin can reset it".into()));
            }
            user.mfa =
                Some(mfa::MfaRecord { sealed_secret, confirmed: false, last_step: 0, recovery_digests: Vec::new() });
            Ok(())
        })
        .await?;
        Ok(MfaEnrolment { otpauth_uri, secret: base32 })
    }

    /// Turns MFA on with a first valid code; returns the recovery codes, shown only now.
    pub async fn confirm_mfa(&self, name: &str, code: &str) -> Result<Vec<String>, AuthError> {
        let (codes, digests) = mfa::recovery_codes();
        let secrets = &self.secrets;
        self.update_user(name, move |user| {
            let account = user.name.clone();
            let Some(mfa) = user.mfa.as_mut().filter(|m| !m.confirmed) else {
                return Err(AuthError::Conflict("no MFA enrolment is pending".into()));
            };
            let secret = secrets.open(&mfa.sealed_secret)?;
            let step = mfa::accept_code(&secret, &account, code.trim(), unix_seconds(), mfa.last_step)
                .ok_or(AuthError::Invalid("the code does not match: check the authenticator app's clock".into()))?;
            mfa.last_step = step;
            mfa.confirmed = true;
            mfa.recovery_digests = digests;
            Ok(())
        })
        .await?;
        Ok(codes)
    }

    /// Trades a refresh token for a new session; the old refresh token is used up.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session, AuthError> {
        const REFUSED: AuthError = AuthError::Unauthenticated("the refresh token is not valid");
        let (id, secret) = split_credential(refresh_token, "smr_").ok_or(REFUSED)?;
        let Some(body) = self.store.get_record(SYSTEM, KIND_REFRESH, id).await? else { return Err(REFUSED) };
        let record: RefreshRecord = serde_json::from_str(&body)?;
        if !same_secret(&record.digest, &digest(secret)) {
            return Err(REFUSED);
        }
        // Deleting is the use: of two racing refreshes, one wins.
        if !self.store.delete_record(SYSTEM, KIND_REFRESH, id).await? || record.expires_ms < now_ms() {
            return Err(REFUSED);
        }
        let user = self.load_user(&record.user).await?.ok_or(REFUSED)?;
        if user.disabled || record.ver != user.token_version {
            return Err(REFUSED);
        }
        let (tenant, role) = tenant_of(&user, Some(&record.tenant)).map_err(|_| REFUSED)?;
        self.new_session(&user, &tenant, role).await
    }

    /// Revokes a refresh token and every access token of its user; `false` when it was not
    /// valid.
    pub async fn logout(&self, refresh_token: &str) -> Result<bool, AuthError> {
        let Some((id, secret)) = split_credential(refresh_token, "smr_") else { return Ok(false) };
        let Some(body) = self.store.get_record(SYSTEM, KIND_REFRESH, id).await? else { return Ok(false) };
        let record: RefreshRecord = serde_json::from_str(&body)?;
        if !(same_secret(&record.digest, &digest(secret)) && self.store.delete_record(SYSTEM, KIND_REFRESH, id).await?)
        {
            return Ok(false);
        }
        // Access tokens are stateless: the version they carry is what revokes them.
        let revoke = |user: &mut UserRecord| {
            user.revoke_tokens();
            Ok(())
        };
        match self.update_user(&record.user, revoke).await {
            Ok(_) | Err(AuthError::NotFound(_)) => Ok(true),
            Err(error) => Err(error),
        }
    }

    async fn new_session(&self, user: &UserRecord, tenant: &str, role: Role) -> Result<Session, AuthError> {
        let now = now_ms();
        let claims = Claims {
            sub: user.name.clone(),
            tenant: tenant.to_string(),
            role,
            sa: user.super_admin,
            typ: "access".into(),
            ver: user.token_version,
            iat: now / 1000,
            exp: now / 1000 + ACCESS_TOKEN_SECONDS,
        };
        let (id, secret) = (random_id(), random_token());
        let record = RefreshRecord {
            user: user.name.clone(),
            tenant: tenant.to_string(),
            digest: digest(&secret),
            expires_ms: now + REFRESH_TOKEN_MS,
            ver: user.token_version,
        };
        self.store.insert_record(SYSTEM, KIND_REFRESH, &id, &serde_json::to_string(&record)?).await?;
        Ok(Session {
            access_token: self.signer.sign(&claims)?,
            refresh_token: format!("smr_{id}.{secret}"),
            token_type: "Bearer".into(),
            expires_in: ACCESS_TOKEN_SECONDS,
            tenant: tenant.to_string(),
            role,
        })
    }

    // ----- API keys -----

    /// A new key for scripts; the returned secret (`smk_<id>.<secret>`) is shown only now.
    pub async fn create_api_key(
        &self,
        tenant: &str,
        name: &str,
        role: Role,
        created_by: &str,
    ) -> Result<(ApiKeyView, String), AuthError> {
        if name.trim().is_empty() || name.len() > 100 {
            return Err(AuthError::Invalid("an API key needs a name of 1 to 100 characters".into()));
        }
        let (id, secret) = (random_id(), random_token());
        let record = ApiKeyRecord {
            id: id.clone(),
            tenant: tenant.to_string(),
            name: name.to_string(),
            role,
            digest: digest(&secret),
            created_by: created_by.to_string(),
            created_ms: now_ms(),
        };
        self.store.insert_record(SYSTEM, KIND_API_KEY, &id, &serde_json::to_string(&record)?).await?;
        Ok((api_key_view(&record), format!("smk_{id}.{secret}")))
    }

    /// The API keys of `tenant`.
    pub async fn api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyView>, AuthError> {
        let keys: Vec<ApiKeyRecord> = self.all_records(KIND_API_KEY).await?;
        Ok(keys.iter().filter(|k| k.tenant == tenant).map(api_key_view).collect())
    }

    /// Revokes a key of `tenant`; `false` when `tenant` has no such key.
    pub async fn revoke_api_key(&self, tenant: &str, id: &str) -> Result<bool, AuthError> {
        match self.store.get_record(SYSTEM, KIND_API_KEY, id).await? {
            Some(body) if serde_json::from_str::<ApiKeyRecord>(&body)?.tenant == tenant => {
                Ok(self.store.delete_record(SYSTEM, KIND_API_KEY, id).await?)
            }
            _ => Ok(false),
        }
    }

    // ----- requests -----

    /// The caller behind a bearer credential: an access token or an API key.
    pub async fn authenticate(&self, bearer: &str) -> Result<Caller, AuthError> {
        if let Some((id, secret)) = split_credential(bearer, "smk_") {
            const REFUSED: AuthError = AuthError::Unauthenticated("the API key is not valid or was revoked");
            let Some(body) = self.store.get_record(SYSTEM, KIND_API_KEY, id).await? else { return Err(REFUSED) };
            let key: ApiKeyRecord = serde_json::from_str(&body)?;
            if !same_secret(&key.digest, &digest(secret)) {
                return Err(REFUSED);
            }
            return Ok(Caller {
                subject: format!("key:{}", key.id),
                tenant: key.tenant,
                role: key.role,
                super_admin: false,
            });
        }
        let claims: Claims = self.signer.verify(bearer)?;
        if claims.typ != "access" {
            return Err(AuthError::Unauthenticated("not an access token"));
        }
        // Signed tokens cannot be taken back; the user's token version can move past them.
        match self.load_user(&claims.sub).await? {
            Some(user) if !user.disabled && user.token_version == claims.ver => {}
            _ => {
                return Err(AuthError::Unauthenticated(
                    "the session was ended (logout, a change to the user, or deletion)",
                ));
            }
        }
        Ok(Caller { subject: claims.sub, tenant: claims.tenant, role: claims.role, super_admin: claims.sa })
    }

    /// The secret box, for other secrets at rest.
    pub fn secrets(&self) -> &SecretBox {
        &self.secrets
    }
}

/// A password to hand out (first admin, new users): 120 random bits, 20 characters.
pub fn generate_password() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crypto::random_bytes::<15>())
}

fn api_key_view(key: &ApiKeyRecord) -> ApiKeyView {
    ApiKeyView {
        id: key.id.clone(),
        name: key.name.clone(),
        role: key.role,
        created_by: key.created_by.clone(),
        created_ms: key.created_ms,
    }
}

/// A refused login, whatever the reason: a wrong name or password, or a locked account.
const LOGIN_REFUSED: AuthError =
    AuthError::Unauthenticated("wrong user name, password or code, or the account is locked after too many failures");

/// Counts a failed login and locks the account at the limit; the error to answer with.
fn record_failure(user: &mut UserRecord) -> AuthError {
    user.failed_logins += 1;
    if user.failed_logins >= LOCKOUT_AFTER {
        user.failed_logins = 0;
        user.locked_until_ms = now_ms() + LOCKOUT_MS;
        tracing::warn!(user = %user.name, "account locked after {LOCKOUT_AFTER} failed logins");
        return AuthError::Locked { retry_after_s: LOCKOUT_MS / 1000 };
    }
    LOGIN_REFUSED
}

fn refuse_if_locked(user: &UserRecord) -> Result<(), AuthError> {
    let left = user.locked_until_ms - now_ms();
    if left > 0 { Err(AuthError::Locked { retry_after_s: (left + 999) / 1000 }) } else { Ok(()) }
}

/// The tenant a login acts in (the one asked for, else the user's first) and the role there.
fn tenant_of(user: &UserRecord, wanted: Option<&str>) -> Result<(String, Role), AuthError> {
    match wanted {
        Some(tenant) if user.super_admin => Ok((tenant.to_string(), Role::Admin)),
        Some(tenant) => user
            .roles
            .get(tenant)
            .map(|role| (tenant.to_string(), *role))
            .ok_or_else(|| AuthError::Forbidden(format!("{} has no role in tenant {tenant:?}", user.name))),
        None => match user.roles.iter().next() {
            Some((tenant, role)) => Ok((tenant.clone(), if user.super_admin { Role::Admin } else { *role })),
            None if user.super_admin => Ok((DEFAULT_TENANT.to_string(), Role::Admin)),
            None => Err(AuthError::Forbidden(format!("{} has no role in any tenant", user.name))),
        },
    }
}

/// `<prefix><id>.<secret>` split in two.
fn split_credential<'a>(text: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    text.strip_prefix(prefix)?.split_once('.').filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
}

fn unix_seconds() -> u64 {
    (now_ms() / 1000).max(0) as u64
}

/// A fresh random id for a stored record (URL-safe, 16 characters).
pub fn new_record_id() -> String {
    random_id()
}

/// Tenant names: lowercase letters, digits, `-` and `_`, starting with a letter or digit.
pub fn validate_tenant_name(name: &str) -> Result<(), AuthError> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(AuthError::Invalid(format!(
            "tenant {name:?}: 1 to 63 of a-z, 0-9, '-' and '_', starting with a letter or digit"
        )))
    }
}

fn validate_user_name(name: &str) -> Result<(), AuthError> {
    let ok = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok { Ok(()) } else { Err(AuthError::Invalid(format!("user name {name:?}: 1 to 64 of A-Z, a-z, 0-9, . _ - @"))) }
}

fn validate_password(password: &str) -> Result<(), AuthError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AuthError::Invalid(format!("a password needs at least {MIN_PASSWORD_CHARS} characters")));
    }
    if password.len() > 1024 {
        return Err(AuthError::Invalid("a password is at most 1024 bytes".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
