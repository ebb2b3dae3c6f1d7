//! Revoking sessions: the store's write, the announcement to every instance,
//! the metric and the audit event, in that order, whoever asks.

use std::sync::Arc;

use async_trait::async_trait;
use latchkey_core::clock::Clock;
use latchkey_core::coordination::RevocationFanout;
use latchkey_core::store::{RevocationReason, Store, StoreResult};

use super::{Actor, Events};
use crate::revocation::RevocationCache;

/// The revocation operations.
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    fanout: Arc<dyn RevocationFanout>,
    events: Events,
    /// How long a revoked session stays on deny-lists: until its last access
    /// token has expired.
    deny_ttl: i64,
}

impl Sessions {
    /// Revocations written to `store` and announced through `fanout`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        fanout: Arc<dyn RevocationFanout>,
        events: Events,
        deny_ttl: i64,
    ) -> Self {
        Self {
            store,
            clock,
            fanout,
            events,
            deny_ttl,
        }
    }

    /// Tells every instance that these sessions were revoked (the database
    /// already says so). A failed announcement is logged: the database
    /// stays the truth, which instances fall back to.
    pub async fn announce(&self, sids: &[String]) {
        for sid in sids {
            if let Err(e) = self.fanout.announce_revoked(sid, self.deny_ttl).await {
                tracing::error!(error = %e, session_id = %sid, "revocation could not be announced");
            }
        }
    }

    /// Revokes one session of `user_id`; false if it was unknown or already
    /// revoked.
    pub async fn revoke(
        &self,
        sid: &str,
        user_id: &str,
        reason: RevocationReason,
        actor: &Actor,
    ) -> StoreResult<bool> {
        let revoked = self
            .store
            .revoke_session(sid, reason, self.clock.now())
            .await?;
        if revoked {
            self.revoked(&[sid.to_owned()], user_id, reason, actor)
                .await;
        }
        Ok(revoked)
    }

    /// Revokes one session if it is `user_id`'s; false otherwise (another
    /// user's session is left alone, and looks unknown).
    pub async fn revoke_own(
        &self,
        user_id: &str,
        sid: &str,
        reason: RevocationReason,
        actor: &Actor,
    ) -> StoreResult<bool> {
        let revoked = self
            .store
            .revoke_own_session(user_id, sid, reason, self.clock.now())
            .await?;
        if revoked {
            self.revoked(&[sid.to_owned()], user_id, reason, actor)
                .await;
        }
        Ok(revoked)
    }

    /// Revokes every live session of `user_id`; returns their ids.
    pub async fn revoke_all(
        &self,
        user_id: &str,
        reason: RevocationReason,
        actor: &Actor,
    ) -> StoreResult<Vec<String>> {
        let revoked = self
            .store
            .revoke_user_sessions(user_id, reason, self.clock.now())
            .await?;
        self.revoked(&revoked, user_id, reason, actor).await;
        Ok(revoked)
    }

    /// What follows sessions revoked elsewhere (disabling a user, a new
    /// password): announced, counted, audited one by one.
    pub async fn revoked(
        &self,
        sids: &[String],
        user_id: &str,
        reason: RevocationReason,
        actor: &Actor,
    ) {
        self.announce(sids).await;
        for sid in sids {
            self.events.count_revocation(reason);
            self.events
                .audit(
                    "session_revoked",
                    Some(user_id),
                    Some(sid),
                    actor,
                    reason.as_str(),
                )
                .await;
        }
    }
}

/// A server's fan-out: its own cache of announced revocations learns of a
/// revocation at once (when it follows a revocation feed, the only time it
/// caches sessions), then the other instances through `remote`.
pub struct LocalFanout {
    cache: Arc<RevocationCache>,
    follows_feed: bool,
    remote: Arc<dyn RevocationFanout>,
    clock: Arc<dyn Clock>,
}

impl LocalFanout {
    /// Announces into `cache` (if `follows_feed`), then through `remote`.
    pub fn new(
        cache: Arc<RevocationCache>,
        follows_feed: bool,
        remote: Arc<dyn RevocationFanout>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            cache,
            follows_feed,
            remote,
            clock,
        }
    }
}

#[async_trait]
impl RevocationFanout for LocalFanout {
    async fn announce_revoked(&self, sid: &str, ttl: i64) -> StoreResult<()> {
        if !self.follows_feed {
            return Ok(());
        }
        let now = self.clock.now();
        self.cache.revoke(sid.to_owned(), now + ttl, now);
        self.remote.announce_revoked(sid, ttl).await
    }
}
