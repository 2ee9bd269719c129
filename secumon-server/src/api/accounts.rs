//! Routes for logins and sessions (`auth/*`), users, API keys and tenants. Bodies carrying
//! passwords, codes or tokens are never logged.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use secumon_api::{
    ApiKeyList, ConfirmRequest, CreatedApiKey, EnrollRequest, Identity, LoginAnswer, LoginRequest, MfaVerifyRequest,
    NewApiKey, NewTenant, NewUser, PasswordChange, RecoveryCodes, RefreshRequest, TenantList, UserList,
};

use super::access::ApiJson;
use super::{ApiError, ApiState, PageParams, Paging};
use crate::api::access::ApiQuery;
use crate::audit::AuditNote;
use crate::auth::{Caller, LoginOutcome, MfaEnrolment, Role, Session, UserChange, UserView, name_in_tenant};
use secumon_api::ErrorCode;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/mfa/verify", post(verify_mfa))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
        .route("/api/v1/auth/mfa/enroll", post(enroll_mfa))
        .route("/api/v1/auth/mfa/confirm", post(confirm_mfa))
        .route("/api/v1/users", get(list_users).post(add_user))
        .route("/api/v1/users/{name}", get(get_user).put(change_user).delete(delete_user))
        .route("/api/v1/users/{name}/revoke-sessions", post(revoke_sessions))
        .route("/api/v1/auth/password", post(change_password))
        .route("/api/v1/users/{name}/reset-mfa", post(reset_mfa))
        .route("/api/v1/api-keys", get(list_api_keys).post(create_api_key))
        .route("/api/v1/api-keys/{id}", delete(revoke_api_key))
        .route("/api/v1/tenants", get(list_tenants).post(create_tenant))
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, responses((status = 200, description = "A session, or the token to finish the login with a second factor", body = LoginAnswer)), security(()))]
pub(super) async fn login(
    State(state): State<ApiState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<LoginAnswer>, ApiError> {
    state.limits.login(client.ip()).await?;
    let name = match (&request.username, &request.email) {
        // A tenant's own user first (see auth/tenant_users.rs), else an installation-wide one.
        (Some(name), None) => match request.tenant.as_deref() {
            Some(tenant) if !name.contains('/') => match state.accounts.tenant_user(tenant, name).await? {
                own if own.contains('/') => own,
                _ => state.accounts.login_name(name, false).await?,
            },
            _ => state.accounts.login_name(name, false).await?,
        },
        (None, Some(email)) => state.accounts.login_name(email, true).await?,
        _ => return Err(ApiError::bad_request("give either `username` or `email`")),
    };
    state.limits.account_login(&name).await?;
    let outcome = state.accounts.login(&name, &request.password, request.tenant.as_deref()).await;
    match outcome {
        Ok(LoginOutcome::Session(session)) => {
            tracing::info!(user = ?name, tenant = %session.tenant, "login");
            Ok(Json(LoginAnswer::Session(session)))
        }
        Ok(LoginOutcome::MfaRequired { mfa_token }) => Ok(Json(LoginAnswer::Mfa { mfa_required: true, mfa_token })),
        Err(error) => {
            tracing::info!(user = ?name, %error, "login refused");
            Err(error.into())
        }
    }
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/verify", tag = "auth", request_body = MfaVerifyRequest, responses((status = 200, description = "OK", body = Session)), security(()))]
pub(super) async fn verify_mfa(
    State(state): State<ApiState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<MfaVerifyRequest>,
) -> Result<Json<Session>, ApiError> {
    state.limits.login(client.ip()).await?;
    Ok(Json(state.accounts.verify_mfa(&request.mfa_token, &request.code).await?))
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest, responses((status = 200, description = "OK", body = Session)), security(()))]
pub(super) async fn refresh(
    State(state): State<ApiState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<Json<Session>, ApiError> {
    state.limits.login(client.ip()).await?;
    Ok(Json(state.accounts.refresh(&request.refresh_token).await?))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest, responses((status = 204, description = "The refresh token is revoked")), security(()))]
pub(super) async fn logout(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    state.accounts.logout(&request.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", responses((status = 200, description = "OK", body = Identity)))]
pub(super) async fn me(caller: Caller) -> Json<Identity> {
    Json(Identity {
        subject: caller.subject,
        tenant: caller.tenant,
        role: caller.role,
        super_admin: caller.super_admin,
    })
}

/// The user behind an access token; API keys have no second factor to manage.
fn user_of(caller: &Caller) -> Result<&str, ApiError> {
    if caller.subject.starts_with("key:") || caller.subject == "local" {
        return Err(ApiError::new(ErrorCode::Forbidden, "only a logged-in user manages their MFA"));
    }
    Ok(&caller.subject)
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/enroll", tag = "auth", request_body = EnrollRequest, responses((status = 200, description = "OK", body = MfaEnrolment)))]
pub(super) async fn enroll_mfa(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<EnrollRequest>,
) -> Result<Json<MfaEnrolment>, ApiError> {
    Ok(Json(state.accounts.enroll_mfa(user_of(&caller)?, &request.password).await?))
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/confirm", tag = "auth", request_body = ConfirmRequest, responses((status = 200, description = "OK", body = RecoveryCodes)))]
pub(super) async fn confirm_mfa(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<ConfirmRequest>,
) -> Result<(AuditNote, Json<RecoveryCodes>), ApiError> {
    let name = user_of(&caller)?;
    let recovery_codes = state.accounts.confirm_mfa(name, &request.code).await?;
    Ok((AuditNote::by(&caller, "user.mfa_enable", name), Json(RecoveryCodes { recovery_codes })))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageParams), responses((status = 200, description = "OK", body = UserList)))]
pub(super) async fn list_users(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<UserList>, ApiError> {
    caller.require(Role::Admin)?;
    let mut users = state.accounts.users(Some(&caller.tenant)).await?;
    for user in &mut users {
        user.name = name_in_tenant(&caller.tenant, &user.name).to_string();
    }
    let (users, page) = page.apply(users)?;
    Ok(Json(UserList { users, page }))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser, responses((status = 201, description = "Created", body = UserView)))]
pub(super) async fn add_user(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<NewUser>,
) -> Result<(StatusCode, AuditNote, Json<UserView>), ApiError> {
    caller.require(Role::Admin)?;
    // Unique in the tenant only, so a taken name says nothing about other tenants.
    let user = state
        .accounts
        .add_tenant_user(&request.name, &request.password, &caller.tenant, request.role, request.email.as_deref())
        .await?;
    tracing::info!(user = %user.name, tenant = %caller.tenant, by = %caller.subject, "user added");
    let note = AuditNote::by(&caller, "user.create", &user.name)
        .detail(serde_json::json!({"role": request.role, "email": user.email}));
    Ok((StatusCode::CREATED, note, Json(user)))
}

#[utoipa::path(get, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path, description = "User name")), responses((status = 200, description = "OK", body = UserView)))]
pub(super) async fn get_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    caller.require(Role::Admin)?;
    let stored = state.accounts.tenant_user(&caller.tenant, &name).await?;
    Ok(Json(shown(&caller, state.accounts.user(&stored, Some(&caller.tenant)).await?)))
}

#[utoipa::path(put, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path, description = "User name")), request_body = UserChange, responses((status = 200, description = "OK", body = UserView)))]
pub(super) async fn change_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(change): ApiJson<UserChange>,
) -> Result<(AuditNote, Json<UserView>), ApiError> {
    caller.require(Role::Admin)?;
    // What changed, never the password itself.
    let detail = serde_json::json!({"role": change.role, "disabled": change.disabled,
        "email": change.email, "password_changed": change.password.is_some()});
    let stored = state.accounts.tenant_user(&caller.tenant, &name).await?;
    let user = state.accounts.change_user(&stored, Some(&caller.tenant), caller.super_admin, change).await?;
    let user = shown(&caller, user);
    tracing::info!(user = %name, tenant = %caller.tenant, by = %caller.subject, "user changed");
    Ok((AuditNote::by(&caller, "user.update", &name).detail(detail), Json(user)))
}

#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path, description = "User name")), responses((status = 204, description = "Removed from the tenant (and deleted once in no tenant)")))]
pub(super) async fn delete_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<(AuditNote, StatusCode), ApiError> {
    caller.require(Role::Admin)?;
    let stored = state.accounts.tenant_user(&caller.tenant, &name).await?;
    if !state.accounts.delete_user(&stored, Some(&caller.tenant), caller.super_admin).await? {
        return Err(ApiError::new(ErrorCode::NotFound, format!("no user {name:?}")));
    }
    tracing::info!(user = %name, tenant = %caller.tenant, by = %caller.subject, "user deleted");
    Ok((AuditNote::by(&caller, "user.delete", &name), StatusCode::NO_CONTENT))
}

#[utoipa::path(post, path = "/api/v1/users/{name}/revoke-sessions", tag = "users", params(("name" = String, Path, description = "User name")), responses((status = 204, description = "Every session of the user ended")))]
pub(super) async fn revoke_sessions(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<(AuditNote, StatusCode), ApiError> {
    caller.require(Role::Admin)?;
    let stored = state.accounts.tenant_user(&caller.tenant, &name).await?;
    state.accounts.revoke_sessions(&stored, Some(&caller.tenant), caller.super_admin).await?;
    tracing::info!(user = %name, by = %caller.subject, "sessions revoked");
    Ok((AuditNote::by(&caller, "user.revoke_sessions", &name), StatusCode::NO_CONTENT))
}

#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordChange, responses((status = 204, description = "Changed; every session of the user ended")))]
pub(super) async fn change_password(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<PasswordChange>,
) -> Result<(AuditNote, StatusCode), ApiError> {
    let name = user_of(&caller)?;
    state.accounts.change_own_password(name, &request.current_password, &request.new_password).await?;
    Ok((AuditNote::by(&caller, "user.password_change", name), StatusCode::NO_CONTENT))
}

#[utoipa::path(post, path = "/api/v1/users/{name}/reset-mfa", tag = "users", params(("name" = String, Path, description = "User name")), responses((status = 200, description = "OK", body = UserView)))]
pub(super) async fn reset_mfa(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<(AuditNote, Json<UserView>), ApiError> {
    caller.require(Role::Admin)?;
    let stored = state.accounts.tenant_user(&caller.tenant, &name).await?;
    let user = shown(&caller, state.accounts.reset_mfa(&stored, Some(&caller.tenant), caller.super_admin).await?);
    tracing::info!(user = %name, by = %caller.subject, "MFA reset");
    Ok((AuditNote::by(&caller, "user.reset_mfa", &name), Json(user)))
}

#[utoipa::path(get, path = "/api/v1/api-keys", tag = "users", params(PageParams), responses((status = 200, description = "OK", body = ApiKeyList)))]
pub(super) async fn list_api_keys(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ApiKeyList>, ApiError> {
    caller.require(Role::Admin)?;
    let (api_keys, page) = page.apply(state.accounts.api_keys(&caller.tenant).await?)?;
    Ok(Json(ApiKeyList { api_keys, page }))
}

#[utoipa::path(post, path = "/api/v1/api-keys", tag = "users", request_body = NewApiKey, responses((status = 201, description = "Created; the secret is shown only now", body = CreatedApiKey)))]
pub(super) async fn create_api_key(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<NewApiKey>,
) -> Result<(StatusCode, AuditNote, Json<CreatedApiKey>), ApiError> {
    caller.require(Role::Admin)?;
    let (key, secret) =
        state.accounts.create_api_key(&caller.tenant, &request.name, request.role, &caller.subject).await?;
    tracing::info!(key = %key.id, tenant = %caller.tenant, by = %caller.subject, "API key created");
    let note = AuditNote::by(&caller, "api_key.create", &key.id)
        .detail(serde_json::json!({"name": key.name, "role": key.role}));
    Ok((StatusCode::CREATED, note, Json(CreatedApiKey { key, secret })))
}

#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "users", params(("id" = String, Path, description = "API key id")), responses((status = 204, description = "Revoked")))]
pub(super) async fn revoke_api_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(AuditNote, StatusCode), ApiError> {
    caller.require(Role::Admin)?;
    if state.accounts.revoke_api_key(&caller.tenant, &id).await? {
        tracing::info!(key = %id, by = %caller.subject, "API key revoked");
        Ok((AuditNote::by(&caller, "api_key.revoke", &id), StatusCode::NO_CONTENT))
    } else {
        Err(ApiError::new(ErrorCode::NotFound, format!("no API key {id:?}")))
    }
}

#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", params(PageParams), responses((status = 200, description = "OK", body = TenantList)))]
pub(super) async fn list_tenants(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<TenantList>, ApiError> {
    caller.require_super_admin()?;
    let (tenants, page) = page.apply(state.accounts.tenants(None, u32::MAX).await?)?;
    Ok(Json(TenantList { tenants, page }))
}

#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = NewTenant, responses((status = 201, description = "Created")))]
pub(super) async fn create_tenant(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<NewTenant>,
) -> Result<(AuditNote, StatusCode), ApiError> {
    caller.require_super_admin()?;
    if state.accounts.create_tenant(&request.name).await? {
        // Recorded in the new tenant, so its admins see how it came to be.
        let mut note = AuditNote::by(&caller, "tenant.create", &request.name);
        note.tenant = request.name.clone();
        Ok((note, StatusCode::CREATED))
    } else {
        Err(ApiError::new(ErrorCode::Conflict, format!("tenant {:?} exists", request.name)))
    }
}

/// A user as the caller's tenant names them (its own users without the `<tenant>/`).
fn shown(caller: &Caller, mut user: UserView) -> UserView {
    user.name = name_in_tenant(&caller.tenant, &user.name).to_string();
    user
}
