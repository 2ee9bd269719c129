//! What every request goes through before its handler: the caller (bearer access token or
//! API key, and the tenant it acts in), and JSON bodies and query strings whose rejections
//! answer in the API's error shape rather than axum's plain text.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use secumon_api::ErrorCode;
use serde::de::DeserializeOwned;

use super::{ApiError, ApiState};
use crate::auth::{AuthError, Caller, DEFAULT_TENANT, Role, validate_tenant_name};

/// Header with which a super-admin acts in another tenant than their token's.
pub const TENANT_HEADER: &str = "x-secumon-tenant";

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).map(|v| v.to_str().unwrap_or_default());
        let mut caller = match header {
            Some(value) => {
                let token = value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                    .ok_or(AuthError::Unauthenticated("the Authorization header must be `Bearer <token>`"))?;
                state.accounts.authenticate(token.trim()).await?
            }
            None if state.open_access => {
                Caller { subject: "local".into(), tenant: DEFAULT_TENANT.into(), role: Role::Admin, super_admin: true }
            }
            None => {
                return Err(AuthError::Unauthenticated(
                    "this needs `Authorization: Bearer <token>`: an access token from /api/v1/auth/login or an API key",
                )
                .into());
            }
        };
        if let Some(value) = parts.headers.get(TENANT_HEADER) {
            let tenant = value.to_str().map_err(|_| ApiError::bad_request("x-secumon-tenant is not text"))?;
            if tenant != caller.tenant {
                caller.require_super_admin()?;
                validate_tenant_name(tenant)?;
                if !state.accounts.tenant_exists(tenant).await? {
                    return Err(ApiError::new(ErrorCode::NotFound, format!("no tenant {tenant:?}")));
                }
                caller.tenant = tenant.to_string();
            }
        }
        let endpoint = parts.extensions.get::<MatchedPath>().map_or(parts.uri.path(), |path| path.as_str());
        state.limits.request(&caller.tenant, endpoint).await?;
        Ok(caller)
    }
}

/// A JSON body; a malformed one is a 400 that says where.
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    // 422 (valid JSON, wrong shape) is a bad request like any other here; the code's
    // table gives the status.
    let code = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        _ => ErrorCode::BadRequest,
    };
    ApiError::new(code, rejection.body_text())
}

/// A query string; a malformed one is a 400 that names the parameter.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request(rejection.body_text())
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let message = error.to_string();
        match error {
            AuthError::Unauthenticated(_) => ApiError::new(ErrorCode::Unauthenticated, message),
            AuthError::Forbidden(_) => ApiError::new(ErrorCode::Forbidden, message),
            AuthError::Locked { .. } => ApiError::new(ErrorCode::Locked, message),
            AuthError::TooManyAttempts => ApiError::new(ErrorCode::RateLimited, message),
            AuthError::Busy => ApiError::new(ErrorCode::Busy, message),
            AuthError::Invalid(_) => ApiError::bad_request(message),
            AuthError::NotFound(_) => ApiError::new(ErrorCode::NotFound, message),
            AuthError::Conflict(_) => ApiError::new(ErrorCode::Conflict, message),
            AuthError::Store(store) => store.into(),
            AuthError::SecretKey(_) | AuthError::Internal(_) => {
                ApiError::internal(ErrorCode::Internal, "internal error", message)
            }
        }
    }
}
