//! What several server instances share beyond the database, when they have
//! Redis: failed-login counters, the access-token deny-list, and revocation
//! fan-out. Without it, each instance counts for itself and asks the
//! database about every access token.

use async_trait::async_trait;

use crate::store::StoreResult;

/// A callback for announced revocations: the revoked session id.
pub type OnRevoked = Box<dyn Fn(String) + Send + Sync>;

/// State shared between instances.
#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
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
    /// Subscribes to announcements: calls `on_connected` once subscribed (and
    /// again after each reconnection, when announcements may have been
    /// missed), then `on_revoked` for each. Returns only when the
    /// subscription breaks.
    async fn listen(
        &self,
        on_connected: &(dyn Fn() + Send + Sync),
        on_revoked: &OnRevoked,
    ) -> StoreResult<()>;
}
