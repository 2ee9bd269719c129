//! Logins and sessions (`/api/v1/auth/*`, single sign-on included), users, API keys and
//! tenants.
//!
//! Doc comments here are the descriptions of the published OpenAPI document: they are
//! written for the API's users.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::page::Page;

/// What a caller may do in its tenant; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything of the tenant.
    Viewer,
    /// Also acknowledges and silences alerts, pushes data and imports reports.
    Operator,
    /// Also changes rules, settings, agents, users and API keys.
    Admin,
}

impl Role {
    /// The name the API uses: `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

/// A role name that is none of `viewer`, `operator`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role must be viewer, operator or admin, not {0:?}")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, UnknownRole> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_string())),
        }
    }
}

/// An authenticated request's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema), schema(as = Caller))]
pub struct Identity {
    /// A user name, or `key:<id>` for an API key.
    pub subject: String,
    /// The one tenant this request reads and changes.
    pub tenant: String,
    /// The caller's role in `tenant`.
    pub role: Role,
    /// May act in any tenant and manage tenants.
    pub super_admin: bool,
}

/// Tokens handed out by a login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Session {
    /// Send as `Authorization: Bearer <token>`; good for `expires_in` seconds (15 minutes).
    pub access_token: String,
    /// Trades for a new session at `POST /auth/refresh`, once (each refresh hands out a new
    /// one); good for 30 days, or until `POST /auth/logout`.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until `access_token` expires.
    pub expires_in: i64,
    /// The tenant the session acts in.
    pub tenant: String,
    /// The user's role in that tenant.
    pub role: Role,
}

/// `POST /auth/login`: a user name (or e-mail address) and password.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The user name, or the user's e-mail address.
    pub username: Option<String>,
    /// The user's e-mail address, in place of `username`.
    pub email: Option<String>,
    /// The user's password.
    pub password: String,
    /// The tenant to act in, when the user has roles in several.
    pub tenant: Option<String>,
}

/// A login's answer: a session, or the token to finish it with a second factor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum LoginAnswer {
    /// The login is complete: the session's tokens.
    Session(Session),
    /// The user has a second factor: finish with `POST /auth/mfa/verify`.
    Mfa {
        /// Always `true`.
        mfa_required: bool,
        /// Pass to `POST /auth/mfa/verify` with a code; good for 5 minutes.
        mfa_token: String,
    },
}

/// `POST /auth/mfa/verify`: the second step of a login with a second factor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MfaVerifyRequest {
    /// The `mfa_token` of the login's answer.
    pub mfa_token: String,
    /// A 6-digit TOTP code or a recovery code.
    pub code: String,
}

/// `POST /auth/refresh` (a new session) and `POST /auth/logout` (revokes it, and every
/// access token of its user).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The session's `refresh_token`; a refresh uses it up.
    pub refresh_token: String,
}

/// `POST /auth/mfa/enroll`: starts adding a TOTP second factor to the caller's account; it is
/// on once `POST /auth/mfa/confirm` succeeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The user's password again: a stolen access token alone must not be enough to take
    /// over the second factor.
    pub password: String,
}

/// What a user needs to add the second factor to an authenticator app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct MfaEnrolment {
    /// The `otpauth://totp/...` URI an authenticator app scans as a QR code.
    pub otpauth_uri: String,
    /// The same secret in base32, to type in by hand.
    pub secret: String,
}

/// `POST /auth/mfa/confirm`: turns the second factor on with a first code from the app.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// A 6-digit TOTP code from the authenticator app.
    pub code: String,
}

/// The answer of `POST /auth/mfa/confirm`: the second factor is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct RecoveryCodes {
    /// Each works once in place of a TOTP code; shown only now.
    pub recovery_codes: Vec<String>,
}

/// `POST /auth/password`: the caller changes their own password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    pub current_password: String,
    /// The new password: at least 10 characters.
    pub new_password: String,
}

/// A user as shown to administrators: no hash, no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct UserView {
    /// The name the user logs in with.
    pub name: String,
    /// The user's e-mail address, if they have one.
    #[serde(default)]
    pub email: Option<String>,
    /// May act in any tenant and manage tenants.
    pub super_admin: bool,
    /// The user's role in each tenant, by tenant name.
    pub roles: BTreeMap<String, Role>,
    /// A second factor (TOTP) is on: logins need a code.
    pub mfa_enabled: bool,
    /// Locked after 5 failed logins in a row; it unlocks by itself after 15 minutes.
    pub locked: bool,
    /// Turned off by an administrator: the user cannot log in.
    pub disabled: bool,
    /// When the user was created (Unix ms).
    pub created_ms: i64,
}

/// `GET /users`: a page of the tenant's users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct UserList {
    /// The users on this page.
    pub users: Vec<UserView>,
    /// Where this page sits: `total`, `offset`, `limit`, `next_offset`.
    #[serde(flatten)]
    pub page: Page,
}

/// `POST /users`: a new user with a role in the caller's tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// The name to log in with; unique.
    pub name: String,
    /// At least 10 characters.
    pub password: String,
    /// The user's role in the caller's tenant.
    pub role: Role,
    /// An e-mail address the user may also log in with; unique.
    pub email: Option<String>,
}

/// Changes to a user; what is `None` stays as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// The user's role in the tenant the change is made in.
    pub role: Option<Role>,
    /// `true` turns the account off (no more logins), `false` turns it back on.
    pub disabled: Option<bool>,
    /// A new password, at least 10 characters.
    pub password: Option<String>,
    /// A new e-mail address; an empty one removes it.
    pub email: Option<String>,
}

/// An API key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ApiKeyView {
    /// Identifies the key: `DELETE /api-keys/{id}` revokes it, the audit log names it `key:<id>`.
    pub id: String,
    /// What the key is for, as its creator named it.
    pub name: String,
    /// What the key may do in its tenant.
    pub role: Role,
    /// Who created it.
    pub created_by: String,
    /// When it was created (Unix ms).
    pub created_ms: i64,
}

/// `GET /api-keys`: a page of the tenant's API keys, never their secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ApiKeyList {
    /// The keys on this page.
    pub api_keys: Vec<ApiKeyView>,
    /// Where this page sits: `total`, `offset`, `limit`, `next_offset`.
    #[serde(flatten)]
    pub page: Page,
}

/// `POST /api-keys`: a key for scripts in the caller's tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// What the key is for.
    pub name: String,
    /// What the key may do in the tenant.
    pub role: Role,
}

/// The answer of `POST /api-keys`: the key and its secret, shown only once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct CreatedApiKey {
    /// The key as `GET /api-keys` lists it.
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The key itself, shown only now: send it as `Authorization: Bearer <key>`.
    pub secret: String,
}

/// `POST /tenants` (super-admins only): a new tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// The tenant's name; unique.
    pub name: String,
}

/// `POST /auth/oidc/start`: starts a single sign-on from the CLI (authorization code flow
/// with PKCE).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SsoStartRequest {
    /// The CLI's loopback redirect, `http://127.0.0.1:PORT/...`.
    pub redirect_uri: String,
    /// The PKCE S256 challenge: base64url(SHA-256(verifier)), 43 characters.
    pub code_challenge: String,
}

/// Where the CLI sends the person's browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct SsoStart {
    /// The provider's authorization URL with every parameter set.
    pub authorization_url: String,
    /// Returned with the code on the redirect; the CLI checks it and sends it back.
    pub state: String,
    /// Seconds until the sign-in must be finished.
    pub expires_in: i64,
}

/// `POST /auth/oidc/exchange`: finishes a single sign-on; the answer is a login's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SsoExchangeRequest {
    /// The `state` of the start, as the redirect brought it back.
    pub state: String,
    /// The authorization code from the redirect.
    pub code: String,
    /// The PKCE verifier whose challenge the start sent.
    pub code_verifier: String,
    /// The same redirect URI as at the start.
    pub redirect_uri: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_answer_is_a_session_or_the_second_factor_due() {
        let session = serde_json::json!({"access_token": "a", "refresh_token": "r", "token_type": "Bearer",
            "expires_in": 900, "tenant": "acme", "role": "operator"});
        let answer: LoginAnswer = serde_json::from_value(session.clone()).unwrap();
        assert!(matches!(&answer, LoginAnswer::Session(s) if s.role == Role::Operator && s.tenant == "acme"));
        assert_eq!(serde_json::to_value(&answer).unwrap(), session, "the JSON is the session itself");
        let mfa: LoginAnswer =
            serde_json::from_value(serde_json::json!({"mfa_required": true, "mfa_token": "m"})).unwrap();
        assert_eq!(mfa, LoginAnswer::Mfa { mfa_required: true, mfa_token: "m".into() });
    }

    #[test]
    fn roles_read_their_names_and_refuse_others() {
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        let error = "root".parse::<Role>().unwrap_err();
        assert_eq!(error.to_string(), "role must be viewer, operator or admin, not \"root\"");
    }
}
