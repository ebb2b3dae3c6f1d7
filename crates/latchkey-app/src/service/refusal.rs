//! Why an operation said no, in its own words; the HTTP layer turns each
//! into its status, error code and headers (`crate::error::ApiError`), a
//! command line into a message.

/// An operation's refusal.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The request is malformed (`invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// The grant is invalid, expired, revoked or not the caller's
    /// (`invalid_grant`).
    #[error("{0}")]
    InvalidGrant(String),
    /// The scope asked for is not available (`invalid_scope`).
    #[error("{0}")]
    InvalidScope(String),
    /// The client is unknown, disabled or failed to authenticate
    /// (`invalid_client`).
    #[error("{0}")]
    InvalidClient(String),
    /// The client may not use this grant or endpoint (`unauthorized_client`).
    #[error("{0}")]
    UnauthorizedClient(String),
    /// The token endpoint offers no such grant (`unsupported_grant_type`).
    #[error("{0}")]
    UnsupportedGrantType(String),
    /// Device flow (RFC 8628 §3.5): the user has not answered yet
    /// (`authorization_pending`).
    #[error("the user has not answered yet")]
    AuthorizationPending,
    /// Device flow: polled faster than the interval, which is now this many
    /// seconds (`slow_down`).
    #[error("polling too fast; wait {interval} s between polls")]
    SlowDown {
        /// The interval from now on, in seconds.
        interval: i64,
    },
    /// Device flow: the user denied the request (`access_denied`).
    #[error("the user denied the request")]
    AccessDenied,
    /// Device flow: the device code expired (`expired_token`).
    #[error("the device code expired")]
    ExpiredToken,
    /// The password was right; the user's second factor is needed next
    /// (`mfa_required`, with the token that carries the sign-in on).
    #[error("a second step is needed")]
    MfaRequired {
        /// The `mfa_token`.
        mfa_token: String,
    },
    /// The action needs a more recent sign-in (`reauthentication_required`).
    #[error("{0}")]
    ReauthenticationRequired(String),
    /// The refresh token's session has ended, for this reason (SPEC §14:
    /// `invalid_grant` with `end_reason`).
    #[error("the refresh token is invalid, expired or revoked")]
    SessionEnded(latchkey_core::store::RevocationReason),
    /// Passkeys are off on this server, for this reason
    /// (`passkeys_unavailable`).
    #[error("{0}")]
    PasskeysOff(String),
    /// An access token is invalid, expired or of a revoked session
    /// (`invalid_token`).
    #[error("{0}")]
    InvalidToken(String),
    /// Too many attempts: wait this many seconds.
    #[error("too many attempts; retry after {retry_after} s")]
    TooManyRequests {
        /// Seconds to wait.
        retry_after: i64,
    },
    /// Too busy now: retry after this many seconds.
    #[error("busy; retry after {retry_after} s")]
    Busy {
        /// Seconds to wait.
        retry_after: i64,
    },
    /// A DPoP proof was missing, malformed, replayed or for another key,
    /// method or URL (`invalid_dpop_proof`).
    #[error("{0}")]
    InvalidDpopProof(String),
    /// The proof needs this server nonce (`use_dpop_nonce`).
    #[error("use the server's DPoP nonce")]
    UseDpopNonce {
        /// The nonce to put in the next proof.
        nonce: String,
    },
    /// A failure of the server, never of the caller.
    #[error("internal failure")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Refusal {
    /// `InvalidRequest`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::InvalidRequest(description.into())
    }

    /// `InvalidGrant`.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::InvalidGrant(description.into())
    }

    /// `InvalidScope`.
    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::InvalidScope(description.into())
    }

    /// `InvalidClient`.
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::InvalidClient(description.into())
    }

    /// `UnauthorizedClient`.
    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::UnauthorizedClient(description.into())
    }

    /// `InvalidToken`.
    pub fn invalid_token(description: impl Into<String>) -> Self {
        Self::InvalidToken(description.into())
    }

    /// `Internal`.
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(e.into())
    }
}

impl From<latchkey_core::store::StoreError> for Refusal {
    fn from(e: latchkey_core::store::StoreError) -> Self {
        Self::internal(e)
    }
}

impl From<latchkey_core::Error> for Refusal {
    fn from(e: latchkey_core::Error) -> Self {
        Self::internal(e)
    }
}

/// A used-up attempt counter: `429` with how long to wait.
impl From<latchkey_core::coordination::Blocked> for Refusal {
    fn from(blocked: latchkey_core::coordination::Blocked) -> Self {
        Self::TooManyRequests {
            retry_after: blocked.retry_after,
        }
    }
}
