//! The API's error codes and the one table that gives each its HTTP status, and the
//! `{"error": {"code", "message"}}` body every refusal carries.
//!
//! The server builds its refusals from an [`ErrorCode`] (the status comes from the table,
//! never from the handler), and the client reads the code back from the body, so a code
//! and its status cannot disagree between the two.

use http::StatusCode;
use serde::{Deserialize, Serialize};

/// Declares [`ErrorCode`] from rows of `variant => "wire code", status`: the one place a
/// code and its status are written.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $code:literal, $status:ident;)+) => {
        /// A machine-readable reason for a refusal, as the body's `error.code` names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)+
        }

        impl ErrorCode {
            /// Every code, in the table's order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code as the body names it: `not_found`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// The HTTP status every answer with this code has.
            pub const fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)+
                }
            }

            /// The code a body names; `None` for a code this build does not know (a newer
            /// server's).
            pub fn parse(code: &str) -> Option<Self> {
                match code {
                    $($code => Some(ErrorCode::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    /// The request is malformed or asks for something invalid.
    BadRequest => "bad_request", BAD_REQUEST;
    /// No valid token or session.
    Unauthenticated => "unauthenticated", UNAUTHORIZED;
    /// Single sign-on: the identity provider's ID token does not verify.
    InvalidIdToken => "invalid_id_token", UNAUTHORIZED;
    /// The caller's role or tenant does not allow this.
    Forbidden => "forbidden", FORBIDDEN;
    /// No such endpoint or object.
    NotFound => "not_found", NOT_FOUND;
    /// The object exists already, or its state does not allow the change.
    Conflict => "conflict", CONFLICT;
    /// Agent enrollment is off (no gRPC ingest under the managed CA).
    EnrollmentOff => "enrollment_off", CONFLICT;
    /// The tenant holds as many open findings as it may.
    FindingsLimit => "findings_limit", CONFLICT;
    /// The tenant holds as many series as it may.
    SeriesLimit => "series_limit", CONFLICT;
    /// A request body larger than the server takes.
    TooLarge => "too_large", PAYLOAD_TOO_LARGE;
    /// A scanner report larger than the server takes.
    ReportTooLarge => "report_too_large", PAYLOAD_TOO_LARGE;
    /// The body is not JSON (`Content-Type`).
    UnsupportedMediaType => "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    /// Too many attempts (logins) from one place: wait.
    RateLimited => "rate_limited", TOO_MANY_REQUESTS;
    /// The account is locked after failed logins, for a while.
    Locked => "locked", TOO_MANY_REQUESTS;
    /// The tenant's sample budget is spent for now.
    IngestRateLimited => "ingest_rate_limited", TOO_MANY_REQUESTS;
    /// The server failed; its log says why.
    Internal => "internal", INTERNAL_SERVER_ERROR;
    /// Single sign-on: the identity provider failed or could not be reached.
    IdentityProvider => "identity_provider", BAD_GATEWAY;
    /// The server is too busy for this now (password hashing): try again.
    Busy => "busy", SERVICE_UNAVAILABLE;
    /// The store cannot be written or read now (a full disk, a lost database).
    StoreUnavailable => "store_unavailable", SERVICE_UNAVAILABLE;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What a refusal says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable and machine-readable: `bad_request`, `unauthenticated`, `forbidden`,
    /// `not_found`, `conflict`, `rate_limited`, ...
    pub code: String,
    /// What went wrong, for people; do not parse it (read `code`).
    pub message: String,
}

impl ErrorBody {
    /// The body of a refusal with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { error: ErrorDetail { code: code.as_str().to_string(), message: message.into() } }
    }
}

/// A refusal as a client reads it: the status, the code (when this build knows it) and
/// the server's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// `None`: a code this build does not know (`code_text` has it), or no body at all.
    pub code: Option<ErrorCode>,
    /// The code as the body named it; empty when the body had none.
    pub code_text: String,
    /// The server's message, for people; one naming the status when the body had none.
    pub message: String,
}

impl Refusal {
    /// Reads a refusal from its status and body; a body that is not the error shape (a
    /// proxy's page) keeps the status and says so.
    pub fn from_body(status: StatusCode, body: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody { error }) => {
                Self { status, code: ErrorCode::parse(&error.code), code_text: error.code, message: error.message }
            }
            Err(_) => Self {
                status,
                code: None,
                code_text: String::new(),
                message: format!("request refused ({status}) without an error body"),
            },
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_and_is_an_error_status() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
            assert!(code.status().is_client_error() || code.status().is_server_error(), "{code}");
        }
        assert_eq!(ErrorCode::NotFound.status(), StatusCode::NOT_FOUND);
        assert_eq!(ErrorCode::parse("made_up"), None);
    }

    #[test]
    fn a_refusal_is_read_from_the_error_body() {
        let body = serde_json::to_vec(&ErrorBody::new(ErrorCode::Conflict, "tenant \"acme\" exists")).unwrap();
        assert_eq!(body, br#"{"error":{"code":"conflict","message":"tenant \"acme\" exists"}}"#);
        let refusal = Refusal::from_body(StatusCode::CONFLICT, &body);
        assert_eq!(refusal.code, Some(ErrorCode::Conflict));
        assert_eq!(refusal.to_string(), "tenant \"acme\" exists");

        let newer = Refusal::from_body(StatusCode::IM_A_TEAPOT, br#"{"error":{"code":"teapot","message":"no"}}"#);
        assert_eq!((newer.code, newer.code_text.as_str()), (None, "teapot"));
        let proxy = Refusal::from_body(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert_eq!(proxy.code, None);
        assert!(proxy.message.contains("502"), "{}", proxy.message);
    }
}
