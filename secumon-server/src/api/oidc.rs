//! Routes for single sign-on (`auth/oidc/*`): the CLI starts a sign-in and gets the
//! provider's authorization URL, then exchanges the code its loopback redirect received for
//! a SecuMon session. Codes, verifiers and tokens are never logged.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::routing::post;
use axum::{Json, Router};
use secumon_api::{ErrorCode, SsoExchangeRequest, SsoStartRequest};

use super::access::ApiJson;
use super::{ApiError, ApiState};
use crate::auth::{Session, SsoError, SsoStart};

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/auth/oidc/start", post(start)).route("/api/v1/auth/oidc/exchange", post(exchange))
}

/// Starts a sign-in at the identity provider; answers the URL to open in a browser.
#[utoipa::path(post, path = "/api/v1/auth/oidc/start", tag = "auth", request_body = SsoStartRequest, responses((status = 200, description = "The authorization URL and the sign-in's state", body = SsoStart)), security(()))]
pub(super) async fn start(
    State(state): State<ApiState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<SsoStartRequest>,
) -> Result<Json<SsoStart>, ApiError> {
    state.limits.login(client.ip()).await?;
    let sso = state.sso.as_ref().ok_or(SsoError::NotConfigured)?;
    Ok(Json(sso.start(&request.redirect_uri, &request.code_challenge).await?))
}

/// Exchanges the authorization code for a SecuMon session, once the ID token is valid and
/// its claim maps to a user.
#[utoipa::path(post, path = "/api/v1/auth/oidc/exchange", tag = "auth", request_body = SsoExchangeRequest, responses((status = 200, description = "A session", body = Session)), security(()))]
pub(super) async fn exchange(
    State(state): State<ApiState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<SsoExchangeRequest>,
) -> Result<Json<Session>, ApiError> {
    state.limits.login(client.ip()).await?;
    let sso = state.sso.as_ref().ok_or(SsoError::NotConfigured)?;
    let outcome = sso
        .exchange(&state.accounts, &request.state, &request.code, &request.code_verifier, &request.redirect_uri)
        .await;
    match outcome {
        Ok((session, user)) => {
            tracing::info!(%user, tenant = %session.tenant, "single sign-on");
            Ok(Json(session))
        }
        Err(error) => {
            tracing::warn!(%error, "single sign-on refused");
            Err(error.into())
        }
    }
}

impl From<SsoError> for ApiError {
    fn from(error: SsoError) -> Self {
        let message = error.to_string();
        match error {
            SsoError::Auth(auth) => auth.into(),
            // The server's fault: the log layer records why, the client is not told.
            SsoError::Config(_) => ApiError::internal(
                ErrorCode::Internal,
                "internal error",
                format!("single sign-on is misconfigured: {message}"),
            ),
            // The code's table gives the status: 404, 400, 401, 403 or 502.
            other => ApiError::new(other.error_code().unwrap_or(ErrorCode::Internal), message),
        }
    }
}
