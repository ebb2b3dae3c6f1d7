//! What a storage backend can fail with. Expected outcomes (a lost race, a
//! token already used) are values, not errors.

/// Storage failures. Expected outcomes are values, not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A unique name (username) is taken.
    #[error("already exists")]
    Conflict,
    /// Stored data is not what this version expects.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Result of storage calls.
pub type StoreResult<T> = std::result::Result<T, StoreError>;
