//! The database's own revocation feed: `LISTEN` on the channel the
//! triggers of migration `0003_revocation_feed` announce on.

use super::*;

/// How often the feed's connection is shown to be alive, and how long the
/// proof may take.
pub(crate) const FEED_HEARTBEAT: Duration = Duration::from_secs(5);

/// The channel migration `0003_revocation_feed` announces sessions on.
pub const REVOCATION_CHANNEL: &str = "latchkey_revocations";

/// The database's revocation feed: `LISTEN latchkey_revocations` on a
/// connection of its own. A session revoked, disabled with its user,
/// shortened or deleted is announced by triggers when the change commits.
#[derive(Clone, Debug)]
pub struct PgRevocationFeed {
    pub(crate) pool: PgPool,
}

#[async_trait]
impl RevocationFeed for PgRevocationFeed {
    async fn listen(&self, on_connected: &OnConnected, on_revoked: &OnRevoked) -> StoreResult<()> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(backend)?;
        // A lost connection ends this subscription (the caller starts a new
        // one), rather than being replaced behind the caller's back.
        listener.eager_reconnect(false);
        listener.listen(REVOCATION_CHANNEL).await.map_err(backend)?;
        // The database holds every revocation made before this point.
        on_connected(Vec::new());
        let mut heartbeat = tokio::time::interval(FEED_HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        loop {
            // `try_recv` is cancel-safe: a heartbeat drops it between messages.
            tokio::select! {
                received = listener.try_recv() => match received.map_err(backend)? {
                    Some(notification) => on_revoked(notification.payload().to_owned()),
                    None => return Err(StoreError::Backend("the feed's connection was lost".into())),
                },
                _ = heartbeat.tick() => {
                    // A connection that cannot answer may be missing
                    // announcements: end the subscription rather than trust it.
                    let alive = tokio::time::timeout(
                        FEED_HEARTBEAT,
                        sqlx::query("SELECT 1").execute(&mut listener),
                    )
                    .await;
                    match alive {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(backend(e)),
                        Err(_) => {
                            return Err(StoreError::Backend(
                                "the feed's connection did not answer".into(),
                            ));
                        }
                    }
                }
            }
        }
    }
}
