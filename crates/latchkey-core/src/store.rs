//! The storage trait and its records. Each backend (SQLite, PostgreSQL) is a
//! type of its own implementing [`Store`]; the server holds a trait object.

use async_trait::async_trait;

use crate::refresh::TokenHash;
use crate::rotation::{Policy, Rejection, RevocationReason, RotationRequest};

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id (`usr_…`), the `sub` of its tokens.
    pub id: String,
    /// Unique login name.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// A disabled user cannot log in or refresh.
    pub disabled: bool,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The `client_id` (`lkc_…`).
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Keyed hash of the secret; `None` for a public client.
    pub secret_hash: Option<TokenHash>,
    /// Scopes the client may request for itself (`client_credentials`).
    pub scope: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// A session: the family of refresh tokens started by one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Session id (`ses_…`), the `sid` claim.
    pub id: String,
    /// Its user.
    pub user_id: String,
    /// The client it was issued to, if any.
    pub client_id: Option<String>,
    /// Scope granted at login.
    pub scope: String,
    /// Login time (`auth_time`), Unix seconds.
    pub created_at: i64,
    /// Absolute end, Unix seconds.
    pub expires_at: i64,
    /// Last refresh, Unix seconds.
    pub last_used_at: i64,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
    /// IP address at login.
    pub ip: String,
    /// User agent at login.
    pub user_agent: String,
}

/// One refresh token, stored only as its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// Keyed hash of the token.
    pub hash: TokenHash,
    /// Its session.
    pub session_id: String,
    /// The token it replaced.
    pub parent: Option<TokenHash>,
    /// Its scope.
    pub scope: String,
    /// Issue time, Unix seconds.
    pub issued_at: i64,
    /// Idle expiry, Unix seconds.
    pub expires_at: i64,
    /// When it was rotated; a used token is kept to detect reuse.
    pub used_at: Option<i64>,
    /// `jti` of the access token issued beside it.
    pub access_jti: String,
    /// Requesting IP address.
    pub ip: String,
    /// Requesting user agent.
    pub user_agent: String,
}

/// A signing key as stored: the private half sealed (or marked plain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// `EdDSA`, `ES256` or `RS256`.
    pub alg: String,
    /// The PKCS#8 private key, as made by [`crate::seal::seal`].
    pub private_blob: Vec<u8>,
    /// The public JWK, as JSON.
    pub public_jwk: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// When it starts signing, Unix seconds; it is published before that.
    pub activates_at: i64,
    /// When it leaves the JWKS: after every token it signed has expired.
    pub retires_at: Option<i64>,
}

/// A security event for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When, Unix seconds.
    pub at: i64,
    /// What, e.g. `login_failed`, `reuse_detected`.
    pub kind: String,
    /// Whose.
    pub user_id: Option<String>,
    /// Which session.
    pub session_id: Option<String>,
    /// Which client.
    pub client_id: Option<String>,
    /// From where.
    pub ip: Option<String>,
    /// With what.
    pub user_agent: Option<String>,
    /// Free-form detail; never a token or a password.
    pub detail: String,
}

impl AuditEvent {
    /// The `login` event of `session`, by the request that created it.
    pub fn login(session: &Session) -> AuditEvent {
        AuditEvent {
            at: session.created_at,
            kind: "login".into(),
            user_id: Some(session.user_id.clone()),
            session_id: Some(session.id.clone()),
            client_id: session.client_id.clone(),
            ip: Some(session.ip.clone()),
            user_agent: Some(session.user_agent.clone()),
            detail: String::new(),
        }
    }

    /// The event of revoking `session_id` for `reason`, by the request that
    /// `self` records, at the same time.
    pub fn session_revoked(&self, session_id: &str, reason: RevocationReason) -> AuditEvent {
        AuditEvent {
            kind: "session_revoked".into(),
            session_id: Some(session_id.to_owned()),
            detail: reason.as_str().into(),
            ..self.clone()
        }
    }
}

/// Which audit events to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this user's.
    pub user_id: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Sessions deleted, with every refresh token in them.
    pub sessions: u64,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The token was consumed and its successor stored.
    Rotated {
        /// The session, as before this refresh.
        session: Session,
        /// Scope of the successor.
        scope: String,
        /// The IP differed from the login's (policy `log`).
        binding_mismatch: bool,
    },
    /// The token had just been rotated (grace window): its successor stands.
    Replayed {
        /// The session.
        session: Session,
        /// Scope of the successor.
        scope: String,
    },
    /// The session was revoked.
    Revoked {
        /// The session, before revocation.
        session: Session,
        /// Why.
        reason: RevocationReason,
    },
    /// Refused; nothing changed.
    Rejected(Rejection),
}

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

/// Everything Latchkey keeps. Implementations make [`Store::rotate`] and
/// session creation atomic.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Adds a user; [`StoreError::Conflict`] if the name is taken.
    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    /// The user with this name.
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>>;
    /// The user with this id.
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>>;
    /// All users, by name.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Replaces a password hash; false if there is no such user.
    async fn set_password(&self, user_id: &str, password_hash: &str) -> StoreResult<bool>;
    /// Disables or enables a user; disabling revokes all their sessions,
    /// whose ids it returns. `None` if there is no such user.
    async fn set_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        now: i64,
    ) -> StoreResult<Option<Vec<String>>>;

    /// Adds a client.
    async fn insert_client(&self, client: &Client) -> StoreResult<()>;
    /// The client with this id.
    async fn client_by_id(&self, id: &str) -> StoreResult<Option<Client>>;
    /// All clients, by name.
    async fn list_clients(&self) -> StoreResult<Vec<Client>>;

    /// Stores a new session with its first refresh token and `created`, the
    /// audit event of its creation, then revokes the user's oldest other
    /// live sessions beyond `max_sessions` (never the new one), each with
    /// the audit event [`AuditEvent::session_revoked`] derives from
    /// `created`: all in one transaction. The user is read under a lock
    /// that disabling the user also takes, so a session is never created for
    /// a user disabled meanwhile. Returns the revoked sessions' ids, or
    /// `None`, having written nothing, when the user is unknown or disabled.
    /// "Oldest" is the order of creation, even within one second.
    async fn create_session(
        &self,
        session: &Session,
        token: &RefreshRecord,
        max_sessions: u32,
        created: &AuditEvent,
    ) -> StoreResult<Option<Vec<String>>>;
    /// A session and its user.
    async fn session_with_user(&self, id: &str) -> StoreResult<Option<(Session, User)>>;
    /// Revokes one session; false if it was unknown or already revoked.
    async fn revoke_session(
        &self,
        id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<bool>;
    /// The user's sessions that can still be refreshed, newest first.
    async fn live_sessions(&self, user_id: &str, now: i64) -> StoreResult<Vec<Session>>;
    /// Revokes one session if it belongs to `user_id`; false otherwise.
    async fn revoke_own_session(
        &self,
        user_id: &str,
        session_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<bool>;
    /// Revokes every live session of a user; returns their ids.
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<Vec<String>>;
    /// Sessions revoked at or after `since`: their ids and revocation
    /// times, oldest first (the revocation feed).
    async fn revoked_since(&self, since: i64) -> StoreResult<Vec<(String, i64)>>;
    /// A refresh token and its session.
    async fn refresh_token(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshRecord, Session)>>;
    /// Applies [`crate::rotation::decide`] to the presented token atomically.
    /// A rotation records its `refresh` audit event in the same transaction.
    async fn rotate(&self, policy: &Policy, req: &RotationRequest) -> StoreResult<Outcome>;

    /// Every signing key, oldest first.
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>>;
    /// Adds a signing key; when `retire_others_at` is given, every key
    /// without a retirement time that starts signing no later than the new
    /// one gets that retirement time, in the same transaction.
    async fn add_signing_key(
        &self,
        key: &StoredKey,
        retire_others_at: Option<i64>,
    ) -> StoreResult<()>;
    /// The secret stored under `name`, storing `candidate` first if there is
    /// none (so concurrent first starts agree on one value).
    async fn secret_or_insert(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>>;

    /// Replaces a signing key's private blob (to seal a plain one); false if
    /// there is no such key.
    async fn replace_key_blob(&self, kid: &str, private_blob: &[u8]) -> StoreResult<bool>;
    /// Replaces the secret stored under `name` (to seal a plain one); false
    /// if there is none.
    async fn replace_secret(&self, name: &str, value: &[u8]) -> StoreResult<bool>;

    /// Appends to the audit trail.
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Reads the audit trail, newest first.
    async fn audit_events(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEvent>>;

    /// Deletes sessions that can never be used again, with their tokens:
    /// past their absolute end, revoked before `revoked_before`, or whose
    /// newest token passed its idle expiry and last refresh was before
    /// `idle_before`. Used tokens of a live session are kept, so that their
    /// reuse is still detected.
    async fn collect_garbage(
        &self,
        now: i64,
        revoked_before: i64,
        idle_before: i64,
    ) -> StoreResult<Collected>;

    /// The database's own feed of revoked sessions, when it can tell of
    /// them as they commit, whoever made them (another instance, the
    /// command line, or SQL by hand). `None` by default.
    fn revocation_feed(&self) -> Option<std::sync::Arc<dyn crate::coordination::RevocationFeed>> {
        None
    }
}
