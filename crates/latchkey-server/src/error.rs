//! The one HTTP error type: RFC 6749 §5.2 errors for the OAuth endpoints,
//! RFC 6750 `WWW-Authenticate` challenges for protected resources, and a
//! generic 500 whose detail goes to the log under an id the client also sees.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer.
#[derive(Debug)]
pub enum ApiError {
    /// An RFC 6749 §5.2 error.
    OAuth {
        /// HTTP status.
        status: StatusCode,
        /// The `error` code.
        code: &'static str,
        /// Human-readable `error_description`.
        description: String,
    },
    /// An RFC 6750 challenge from a protected resource.
    Bearer {
        /// 401 or 403.
        status: StatusCode,
        /// `invalid_token`, `insufficient_scope`, `invalid_request`, or none
        /// when no credentials were sent.
        code: Option<&'static str>,
        /// Human-readable description.
        description: Option<String>,
    },
    /// Any other status with a short JSON body (404, 413, 429…).
    Plain {
        /// HTTP status.
        status: StatusCode,
        /// The `error` code.
        code: &'static str,
        /// Human-readable description.
        description: String,
    },
    /// 429 with `Retry-After`.
    TooManyRequests {
        /// Seconds to wait.
        retry_after: i64,
    },
    /// 503 with `Retry-After`: the server is too busy for this now.
    Busy {
        /// Seconds to wait.
        retry_after: i64,
    },
    /// RFC 9449: a DPoP error at the token endpoint (`400`) or at a
    /// protected resource (`401` with a `DPoP` challenge), with a fresh
    /// server nonce when the client needs one.
    Dpop {
        /// At a protected resource (else at a token endpoint).
        resource: bool,
        /// `invalid_dpop_proof`, `use_dpop_nonce` or `invalid_token`.
        code: &'static str,
        /// Human-readable description.
        description: String,
        /// A nonce for the next proof.
        nonce: Option<String>,
    },
    /// `401 mfa_required` (SPEC §12): the password was right, a second step
    /// is needed, carried on by `mfa_token`.
    MfaRequired {
        /// The token of the sign-in waiting for its second step.
        mfa_token: String,
    },
    /// `400 invalid_grant` for a refresh token whose session has ended,
    /// with the `end_reason` (SPEC §14).
    SessionEnded {
        /// The session's end reason.
        reason: &'static str,
    },
    /// A failure of the server; never shown in detail.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'a str>,
}

#[derive(Serialize)]
struct EndedBody<'a> {
    error: &'a str,
    error_description: &'a str,
    end_reason: &'a str,
}

impl ApiError {
    fn oauth(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self::OAuth {
            status,
            code,
            description: description.into(),
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::oauth(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 401 `invalid_client`, with a `Basic` challenge.
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::oauth(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    /// 400 `invalid_grant`.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::oauth(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// 400 `unauthorized_client`.
    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::oauth(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    /// 400 `unsupported_grant_type`.
    pub fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::oauth(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            description,
        )
    }

    /// 400 `invalid_scope`.
    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::oauth(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    /// 401 with a bare `Bearer` challenge: no credentials were sent.
    pub fn no_credentials() -> Self {
        Self::Bearer {
            status: StatusCode::UNAUTHORIZED,
            code: None,
            description: None,
        }
    }

    /// 401 `invalid_token`.
    pub fn invalid_token(description: impl Into<String>) -> Self {
        Self::Bearer {
            status: StatusCode::UNAUTHORIZED,
            code: Some("invalid_token"),
            description: Some(description.into()),
        }
    }

    /// 404 `not_found`.
    pub fn not_found(description: impl Into<String>) -> Self {
        Self::Plain {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            description: description.into(),
        }
    }

    /// 403 for a valid token that may not be used here.
    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::Bearer {
            status: StatusCode::FORBIDDEN,
            code: Some("insufficient_scope"),
            description: Some(description.into()),
        }
    }

    /// 500, logged with a reference id.
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(e.into())
    }

    /// The HTTP status of this error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::OAuth { status, .. }
            | Self::Bearer { status, .. }
            | Self::Plain { status, .. } => *status,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Dpop { resource: true, .. } => StatusCode::UNAUTHORIZED,
            Self::Dpop { .. } => StatusCode::BAD_REQUEST,
            Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::MfaRequired { .. } => StatusCode::UNAUTHORIZED,
            Self::SessionEnded { .. } => StatusCode::BAD_REQUEST,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<latchkey_app::service::Refusal> for ApiError {
    fn from(refusal: latchkey_app::service::Refusal) -> Self {
        use latchkey_app::service::Refusal;
        match refusal {
            Refusal::InvalidRequest(d) => Self::invalid_request(d),
            Refusal::InvalidGrant(d) => Self::invalid_grant(d),
            Refusal::InvalidScope(d) => Self::invalid_scope(d),
            Refusal::InvalidToken(d) => Self::invalid_token(d),
            Refusal::InvalidClient(d) => Self::invalid_client(d),
            Refusal::UnauthorizedClient(d) => Self::unauthorized_client(d),
            Refusal::UnsupportedGrantType(d) => Self::unsupported_grant_type(d),
            e @ Refusal::AuthorizationPending => Self::oauth(
                StatusCode::BAD_REQUEST,
                "authorization_pending",
                e.to_string(),
            ),
            e @ Refusal::SlowDown { .. } => {
                Self::oauth(StatusCode::BAD_REQUEST, "slow_down", e.to_string())
            }
            e @ Refusal::AccessDenied => {
                Self::oauth(StatusCode::BAD_REQUEST, "access_denied", e.to_string())
            }
            e @ Refusal::ExpiredToken => {
                Self::oauth(StatusCode::BAD_REQUEST, "expired_token", e.to_string())
            }
            Refusal::TooManyRequests { retry_after } => Self::TooManyRequests { retry_after },
            Refusal::Busy { retry_after } => Self::Busy { retry_after },
            Refusal::InvalidDpopProof(d) => Self::Dpop {
                resource: false,
                code: "invalid_dpop_proof",
                description: d,
                nonce: None,
            },
            Refusal::UseDpopNonce { nonce } => Self::Dpop {
                resource: false,
                code: "use_dpop_nonce",
                description: "use the server's DPoP nonce".into(),
                nonce: Some(nonce),
            },
            Refusal::MfaRequired { mfa_token } => Self::MfaRequired { mfa_token },
            Refusal::ReauthenticationRequired(d) => Self::Plain {
                status: StatusCode::FORBIDDEN,
                code: "reauthentication_required",
                description: d,
            },
            Refusal::SessionEnded(reason) => Self::SessionEnded {
                reason: reason.as_str(),
            },
            Refusal::PasskeysOff(d) => Self::Plain {
                status: StatusCode::NOT_FOUND,
                code: "passkeys_unavailable",
                description: d,
            },
            Refusal::Internal(e) => Self::Internal(e),
        }
    }
}

impl From<latchkey_app::service::ServiceError> for ApiError {
    fn from(e: latchkey_app::service::ServiceError) -> Self {
        use latchkey_app::service::ServiceError;
        match e {
            ServiceError::InvalidClientName
            | ServiceError::PublicClient
            | ServiceError::InvalidScope
            | ServiceError::InvalidRedirectUri
            | ServiceError::InvalidUrl
            | ServiceError::InvalidEventType(_)
            | ServiceError::InvalidUsername(_)
            | ServiceError::InvalidEmail(_)
            | ServiceError::WeakPassword(_) => Self::invalid_request(e.to_string()),
            ServiceError::EmailTaken => Self::Plain {
                status: StatusCode::CONFLICT,
                code: "conflict",
                description: e.to_string(),
            },
            ServiceError::Taken => Self::Plain {
                status: StatusCode::CONFLICT,
                code: "conflict",
                description: e.to_string(),
            },
            ServiceError::NotFound => Self::not_found(e.to_string()),
            ServiceError::TooMany => Self::Plain {
                status: StatusCode::CONFLICT,
                code: "too_many",
                description: e.to_string(),
            },
            ServiceError::Busy { retry_after } => Self::Busy { retry_after },
            ServiceError::Crypto(e) => Self::internal(e),
            ServiceError::Store(e) => Self::internal(e),
            ServiceError::Internal(e) => Self::Internal(e),
        }
    }
}

impl From<latchkey_app::flows::SignUpRefusal> for ApiError {
    fn from(e: latchkey_app::flows::SignUpRefusal) -> Self {
        match e {
            latchkey_app::flows::SignUpRefusal::Account(e) => e.into(),
            latchkey_app::flows::SignUpRefusal::Token(e) => e.into(),
        }
    }
}

impl From<latchkey_core::store::StoreError> for ApiError {
    fn from(e: latchkey_core::store::StoreError) -> Self {
        Self::internal(e)
    }
}

impl From<latchkey_core::Error> for ApiError {
    fn from(e: latchkey_core::Error) -> Self {
        Self::internal(e)
    }
}

/// Quotes a value for an auth-param, dropping what may not appear in it.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let no_store = [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ];
        match self {
            Self::OAuth {
                code, description, ..
            } => {
                let body = axum::Json(Body {
                    error: code,
                    error_description: Some(&description),
                });
                let mut response = (status, no_store, body).into_response();
                if status == StatusCode::UNAUTHORIZED {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"latchkey\""),
                    );
                }
                response
            }
            Self::Bearer {
                code, description, ..
            } => {
                let mut challenge = String::from("Bearer realm=\"latchkey\"");
                if let Some(code) = code {
                    challenge.push_str(&format!(", error=\"{code}\""));
                }
                if let Some(d) = &description {
                    challenge.push_str(&format!(", error_description=\"{}\"", quoted(d)));
                }
                let value = HeaderValue::from_str(&challenge)
                    .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"latchkey\""));
                let body = axum::Json(Body {
                    error: code.unwrap_or("unauthorized"),
                    error_description: description.as_deref(),
                });
                (status, [(header::WWW_AUTHENTICATE, value)], body).into_response()
            }
            Self::Plain {
                code, description, ..
            } => {
                let body = axum::Json(Body {
                    error: code,
                    error_description: Some(&description),
                });
                (status, body).into_response()
            }
            Self::Dpop {
                resource,
                code,
                description,
                nonce,
            } => {
                let body = axum::Json(Body {
                    error: code,
                    error_description: Some(&description),
                });
                let mut response = (status, no_store, body).into_response();
                let headers = response.headers_mut();
                if resource {
                    let challenge = format!(
                        "DPoP realm=\"latchkey\", algs=\"{}\", error=\"{code}\", error_description=\"{}\"",
                        latchkey_core::dpop::ALGORITHMS.join(" "),
                        quoted(&description)
                    );
                    if let Ok(value) = HeaderValue::from_str(&challenge) {
                        headers.insert(header::WWW_AUTHENTICATE, value);
                    }
                }
                if let Some(value) = nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
                    headers.insert("dpop-nonce", value);
                }
                response
            }
            Self::TooManyRequests { retry_after } => {
                let body = axum::Json(Body {
                    error: "too_many_requests",
                    error_description: Some("too many failed attempts; try again later"),
                });
                let retry = HeaderValue::from(retry_after.max(1));
                (status, [(header::RETRY_AFTER, retry)], body).into_response()
            }
            Self::Busy { retry_after } => {
                let body = axum::Json(Body {
                    error: "temporarily_unavailable",
                    error_description: Some("too many logins waiting; try again shortly"),
                });
                let retry = HeaderValue::from(retry_after.max(1));
                (status, [(header::RETRY_AFTER, retry)], body).into_response()
            }
            Self::SessionEnded { reason } => {
                let body = axum::Json(EndedBody {
                    error: "invalid_grant",
                    error_description: "the refresh token is invalid, expired or revoked",
                    end_reason: reason,
                });
                (status, no_store, body).into_response()
            }
            Self::MfaRequired { mfa_token } => {
                let body = axum::Json(serde_json::json!({
                    "error": "mfa_required",
                    "error_description": "the password is right; a second step is needed",
                    "mfa_token": mfa_token,
                    "mfa_methods": ["otp", "recovery_code"],
                }));
                (status, no_store, body).into_response()
            }
            Self::Internal(e) => {
                let reference = error_reference();
                tracing::error!(reference = %reference, error = %e, source = ?e.source(), "internal error");
                // The database unreachable, read-only or full: a fault that
                // passes, said as one (the request changed nothing).
                if matches!(
                    e.downcast_ref::<latchkey_core::store::StoreError>(),
                    Some(latchkey_core::store::StoreError::Backend(_))
                ) {
                    let description = format!(
                        "the database is unavailable; try again shortly (reference {reference})"
                    );
                    let body = axum::Json(Body {
                        error: "temporarily_unavailable",
                        error_description: Some(&description),
                    });
                    let retry = (header::RETRY_AFTER, HeaderValue::from_static("1"));
                    return (StatusCode::SERVICE_UNAVAILABLE, no_store, [retry], body)
                        .into_response();
                }
                let description = format!("internal error (reference {reference})");
                let body = axum::Json(Body {
                    error: "server_error",
                    error_description: Some(&description),
                });
                (status, no_store, body).into_response()
            }
        }
    }
}

fn error_reference() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 6];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::store::StoreError;

    #[test]
    fn an_unavailable_database_is_a_503_and_a_corrupt_one_a_500() {
        let down = StoreError::Backend("connection refused".into());
        let response = ApiError::from(latchkey_app::service::Refusal::from(down)).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let direct = ApiError::from(StoreError::Backend("disk full".into())).into_response();
        assert_eq!(direct.status(), StatusCode::SERVICE_UNAVAILABLE);
        let corrupt = ApiError::from(StoreError::Corrupt("bad row".into())).into_response();
        assert_eq!(corrupt.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
