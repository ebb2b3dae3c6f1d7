//! What several server instances share beyond the database, when they have
//! Redis: failed-login counters, the access-token deny-list, and revocation
//! fan-out; and the revocation feed, which Redis or the database itself
//! (PostgreSQL's `LISTEN`/`NOTIFY`) can provide. Without a feed, each instance
//! asks the database about every access token.

use async_trait::async_trait;

use crate::store::StoreResult;

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

/// State shared between instances.
#[async_trait]
pub trait Coordinator: RevocationFeed {
    /// Failures counted for `key` in its current window, and the seconds
    /// left in that window; `None` when there is no window.
    async fn failures(&self, key: &str) -> StoreResult<Option<(u32, i64)>>;
    /// Counts a failure for `key`; the first one opens a window of `window` seconds.
    async fn count_failure(&self, key: &str, window: i64) -> StoreResult<()>;
    /// Forgets `key`'s failures.
    async fn clear_failures(&self, key: &str) -> StoreResult<()>;
    /// Deny-lists session `sid` for `ttl` seconds and announces it to every
    /// listening instance.
    async fn announce_revoked(&self, sid: &str, ttl: i64) -> StoreResult<()>;
    /// Every session on the deny-list now.
    async fn revoked_sessions(&self) -> StoreResult<Vec<String>>;
}
