//! [`ApiError`]: how a refusal or a failure becomes an answer, the conversions from the
//! server's own errors, and the layer that logs what was the server's fault.

use axum::Json;
use axum::response::{IntoResponse, Response};
use secumon_api::{ErrorBody, ErrorCode};
use secumon_store::StoreError;

use crate::alerting::RuleError;

/// Logs each answer that is the server's fault, with the cause the client is not shown;
/// errors are only rendered where they are made, so logging lives here, once.
pub(super) async fn log_server_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    if let Some(ServerFault(cause)) = response.extensions().get::<ServerFault>() {
        tracing::error!(%method, %path, status = response.status().as_u16(), %cause, "request failed inside the server");
    }
    response
}

/// What went wrong inside the server, carried from an [`ApiError`] to the logging layer.
#[derive(Clone)]
struct ServerFault(String);

/// An API failure, rendered as `{"error": {"code", "message"}}` with the status
/// [`ErrorCode`]'s table gives (the table clients read refusals with).
#[derive(Debug)]
pub(crate) struct ApiError {
    code: ErrorCode,
    message: String,
    /// The server-side cause, logged by [`log_server_errors`] and never sent to the client.
    cause: Option<String>,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), cause: None }
    }

    /// The server's fault: the client gets `message`, the log gets `cause`.
    pub(crate) fn internal(code: ErrorCode, message: impl Into<String>, cause: impl ToString) -> Self {
        Self { cause: Some(cause.to_string()), ..Self::new(code, message) }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// The code the answer has.
    pub(crate) fn code(&self) -> ErrorCode {
        self.code
    }

    /// What the client is told.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The same refusal with `more` said after the message.
    pub(crate) fn adding(mut self, more: &str) -> Self {
        self.message = format!("{} {more}", self.message);
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::InvalidQuery(message) => Self::bad_request(message),
            StoreError::InvalidRetention(refused) => Self::bad_request(refused.to_string()),
            refused @ StoreError::FutureTimestamp { .. } => Self::bad_request(refused.to_string()),
            refused @ StoreError::TenantMismatch { .. } => Self::new(ErrorCode::Conflict, refused.to_string()),
            refused @ StoreError::ReportTooLarge { .. } => Self::new(ErrorCode::ReportTooLarge, refused.to_string()),
            refused @ StoreError::TooManyOpenFindings { .. } => {
                Self::new(ErrorCode::FindingsLimit, refused.to_string())
            }
            refused @ StoreError::SeriesLimit { .. } => Self::new(ErrorCode::SeriesLimit, refused.to_string()),
            other if other.fault().is_some() => {
                let fault = other.fault().map(|f| f.to_string()).unwrap_or_default();
                let message = format!("storage unavailable: {fault}");
                Self::internal(ErrorCode::StoreUnavailable, message, other)
            }
            other => Self::internal(ErrorCode::Internal, "storage failure", other),
        }
    }
}

impl From<RuleError> for ApiError {
    fn from(error: RuleError) -> Self {
        match error {
            RuleError::Invalid(message) => Self::bad_request(message),
            RuleError::Exists(_) | RuleError::ReadOnly(_) => Self::new(ErrorCode::Conflict, error.to_string()),
            RuleError::NotFound(_) => Self::new(ErrorCode::NotFound, error.to_string()),
            RuleError::Store(store) => store.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), Json(ErrorBody::new(self.code, self.message))).into_response();
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(ServerFault(cause));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_fault_reaches_the_log_layer_but_not_the_client() {
        let response =
            ApiError::internal(ErrorCode::StoreUnavailable, "storage unavailable", "disk full").into_response();
        let Some(ServerFault(cause)) = response.extensions().get::<ServerFault>() else {
            panic!("the cause must travel to the logging layer");
        };
        assert_eq!(cause, "disk full");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("storage unavailable") && !body.contains("disk full"), "{body}");

        let refused = ApiError::bad_request("no").into_response();
        assert!(refused.extensions().get::<ServerFault>().is_none(), "a client's mistake is not the server's fault");
    }
}
