//! The error type of the domain crate.

/// Errors of the domain: failures of the crypto backend or of stored data.
///
/// Expected outcomes (a wrong password, a used refresh token, an invalid access
/// token) are values, not errors; see [`crate::rotation::Outcome`] and
/// [`crate::jwt::VerifyError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The crypto backend failed (random source, key generation, signing).
    #[error("crypto backend failure: {0}")]
    Crypto(&'static str),
    /// A stored key or secret could not be parsed or opened.
    #[error("stored key material is invalid: {0}")]
    KeyMaterial(String),
    /// Encoding a JWT failed.
    #[error("JWT encoding failed")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// Password hashing failed.
    #[error("password hashing failed: {0}")]
    Password(String),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
