//! What several server instances share beyond the database, when they have
//! Redis: failed-login counters, the access-token deny-list, and revocation
//! fan-out; and the revocation feed, which Redis or the database itself
//! (PostgreSQL's `LISTEN`/`NOTIFY`) can provide. Without a feed, each instance
//! asks the database about every access token.

use async_trait::async_trait;

use crate::store_error::StoreResult;

/// A callback for announced revocations: the revoked session id.
pub type OnRevoked = Box<dyn Fn(String) + Send + Sync>;

/// A callback for a (re)established subscription: the sessions known to be
/// revoked at that moment, beyond what the database says.
pub type OnConnected = dyn Fn(Vec<String>) + Send + Sync;

/// Tells a server instance of every session revoked anywhere, so that it
/// may keep sessions it has looked up in memory.
#[async_trait]
pub trait RevocationFeed: Send + Sync + 'static {
    /// Subscribes to revocations: calls `on_connected` once subscribed (and
    /// again after each reconnection, when revocations may have been
    /// missed), then `on_revoked` for each. Returns only when the
    /// subscription breaks, or cannot be shown to be alive.
    async fn listen(&self, on_connected: &OnConnected, on_revoked: &OnRevoked) -> StoreResult<()>;
}

/// Login attempts counted per key (an account, a client's address) in
/// fixed windows: in this process's memory, or shared by every instance.
#[async_trait]
pub trait AttemptCounter: Send + Sync + 'static {
    /// Takes one of `max` attempts that `key` has per window of `window`
    /// seconds (the first attempt opens the window), atomically: however
    /// many callers ask at once, at most `max` are admitted per window.
    /// `None` when admitted; else the refusal, with the seconds left in
    /// the window and whether it is the window's first (so that a blocked
    /// key is reported once per window, not once per attempt).
    async fn take_attempt(&self, key: &str, max: u32, window: i64) -> StoreResult<Option<Blocked>>;
    /// Gives back an attempt taken for `key` that turned out not to count.
    async fn give_back_attempt(&self, key: &str) -> StoreResult<()>;
    /// Forgets `key`'s attempts.
    async fn clear_attempts(&self, key: &str) -> StoreResult<()>;
}

/// An attempt refused because its key used up its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// Seconds until the window ends (at least 1).
    pub retry_after: i64,
    /// The first refusal of this window: the key has just become blocked.
    pub first: bool,
}

/// Tells the other instances that a session was revoked, beyond the
/// database (which already says so).
#[async_trait]
pub trait RevocationFanout: Send + Sync + 'static {
    /// Deny-lists session `sid` for `ttl` seconds and announces it to every
    /// listening instance.
    async fn announce_revoked(&self, sid: &str, ttl: i64) -> StoreResult<()>;
}

/// The fan-out without Redis: nothing to add to the database, which is the
/// only truth (PostgreSQL announces each revocation as it commits; SQLite
/// serves one machine).
#[derive(Debug, Clone, Copy, Default)]
pub struct DatabaseOnly;

#[async_trait]
impl RevocationFanout for DatabaseOnly {
    async fn announce_revoked(&self, _sid: &str, _ttl: i64) -> StoreResult<()> {
        Ok(())
    }
}

/// State shared between instances.
#[async_trait]
pub trait Coordinator: RevocationFeed + AttemptCounter + RevocationFanout {
    /// Every session on the deny-list now.
    async fn revoked_sessions(&self) -> StoreResult<Vec<String>>;
}
