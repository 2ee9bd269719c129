//! Logins and sessions (`/api/v1/auth/*`, single sign-on included), users, API keys and
//! tenants.
//!
//! Types without a doc comment here had none in the published document: one would add a
//! description to their schema.

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
    pub role: Role,
    /// May act in any tenant and manage tenants.
    pub super_admin: bool,
}

/// Tokens handed out by a login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub tenant: String,
    pub role: Role,
}

// `POST /auth/login`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The user name, or the user's e-mail address.
    pub username: Option<String>,
    /// The user's e-mail address, in place of `username`.
    pub email: Option<String>,
    pub password: String,
    /// The tenant to act in, when the user has roles in several.
    pub tenant: Option<String>,
}

/// A login's answer: a session, or the token to finish it with a second factor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum LoginAnswer {
    Session(Session),
    Mfa { mfa_required: bool, mfa_token: String },
}

// `POST /auth/mfa/verify`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MfaVerifyRequest {
    pub mfa_token: String,
    /// A 6-digit TOTP code or a recovery code.
    pub code: String,
}

// `POST /auth/refresh` and `/auth/logout`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

// `POST /auth/mfa/enroll`.
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
    pub otpauth_uri: String,
    pub secret: String,
}

// `POST /auth/mfa/confirm`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    pub code: String,
}

// The answer of `POST /auth/mfa/confirm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct RecoveryCodes {
    /// Each works once in place of a TOTP code; shown only now.
    pub recovery_codes: Vec<String>,
}

// `POST /auth/password`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// A user as shown to administrators: no hash, no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct UserView {
    pub name: String,
    /// The user's e-mail address, if they have one.
    #[serde(default)]
    pub email: Option<String>,
    pub super_admin: bool,
    pub roles: BTreeMap<String, Role>,
    pub mfa_enabled: bool,
    pub locked: bool,
    pub disabled: bool,
    pub created_ms: i64,
}

// `GET /users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct UserList {
    pub users: Vec<UserView>,
    #[serde(flatten)]
    pub page: Page,
}

// `POST /users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub password: String,
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
    pub disabled: Option<bool>,
    pub password: Option<String>,
    /// A new e-mail address; an empty one removes it.
    pub email: Option<String>,
}

/// An API key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_by: String,
    pub created_ms: i64,
}

// `GET /api-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyView>,
    #[serde(flatten)]
    pub page: Page,
}

// `POST /api-keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub name: String,
    pub role: Role,
}

// The answer of `POST /api-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The key itself, shown only now: send it as `Authorization: Bearer <key>`.
    pub secret: String,
}

// `POST /tenants`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub name: String,
}

// `POST /auth/oidc/start`.
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

// `POST /auth/oidc/exchange`.
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
