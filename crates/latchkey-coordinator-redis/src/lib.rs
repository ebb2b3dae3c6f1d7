//! Redis for Latchkey: what several instances share beyond the database.
//!
//! * login attempt counters: one Lua script takes an attempt (`INCR`, the
//!   first opening the window with `EXPIRE`) or refuses it, atomically;
//! * the access-token deny-list: `SET {prefix}revoked:{sid} 1 EX ttl`, where
//!   the ttl covers the session's last access token;
//! * revocation fan-out: `PUBLISH {prefix}revocations sid`, which every
//!   instance subscribes to, so none has to ask the database about each
//!   access token.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use latchkey_core::coordination::RevocationFanout;
//! let redis = latchkey_coordinator_redis::RedisCoordinator::connect("redis://127.0.0.1", "latchkey:").await?;
//! redis.announce_revoked("ses_123", 630).await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use latchkey_core::coordination::{
    AttemptCounter, Blocked, Coordinator, OnConnected, OnRevoked, RevocationFanout, RevocationFeed,
};
use latchkey_core::store::{StoreError, StoreResult};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A [`Coordinator`] on one Redis server.
#[derive(Clone)]
pub struct RedisCoordinator {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCoordinator")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn backend(e: redis::RedisError) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// While Redis is away, every call fails within about a second instead of
/// waiting through the default reconnection back-off (six tries, over ten
/// seconds): a login waits on its throttle check, which then lets it through
/// (and logs why). One quick retry covers a blip; the next call tries again.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200))
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)))
}

impl RedisCoordinator {
    /// Connects to `url` (`redis://…`); every key and the channel start with `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> StoreResult<Self> {
        let client = redis::Client::open(url).map_err(backend)?;
        let mut conn = ConnectionManager::new_with_config(client.clone(), manager_config())
            .await
            .map_err(backend)?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
        })
    }

    fn attempt_key(&self, key: &str) -> String {
        format!("{}attempts:{key}", self.prefix)
    }

    fn revoked_key(&self, sid: &str) -> String {
        format!("{}revoked:{sid}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}revocations", self.prefix)
    }
}

#[async_trait]
impl AttemptCounter for RedisCoordinator {
    async fn take_attempt(&self, key: &str, max: u32, window: i64) -> StoreResult<Option<Blocked>> {
        // One script, so that the check and the count cannot be split by
        // another instance's attempt: over the limit, nothing is counted.
        // A refusal answers the seconds left, negated when a refusal of
        // this window was already reported (by any instance), which a
        // marker key living as long as the window records.
        const TAKE: &str = "local n = redis.call('INCR', KEYS[1]) \
            if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end \
            if n > tonumber(ARGV[2]) then \
                redis.call('DECR', KEYS[1]) \
                local left = math.max(redis.call('TTL', KEYS[1]), 1) \
                if redis.call('SET', KEYS[2], 1, 'NX', 'EX', left) then return left end \
                return -left \
            end \
            return 0";
        let attempt_key = self.attempt_key(key);
        let left: i64 = redis::cmd("EVAL")
            .arg(TAKE)
            .arg(2)
            .arg(&attempt_key)
            .arg(format!("{attempt_key}:refused"))
            .arg(window.max(1))
            .arg(max)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok((left != 0).then_some(Blocked {
            retry_after: left.abs(),
            first: left > 0,
        }))
    }

    async fn give_back_attempt(&self, key: &str) -> StoreResult<()> {
        const GIVE_BACK: &str = "if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then \
            redis.call('DECR', KEYS[1]) end return 0";
        let _: i64 = redis::cmd("EVAL")
            .arg(GIVE_BACK)
            .arg(1)
            .arg(self.attempt_key(key))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn clear_attempts(&self, key: &str) -> StoreResult<()> {
        let _: i64 = self
            .conn
            .clone()
            .del(&[
                self.attempt_key(key),
                format!("{}:refused", self.attempt_key(key)),
            ])
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl RevocationFanout for RedisCoordinator {
    async fn announce_revoked(&self, sid: &str, ttl: i64) -> StoreResult<()> {
        let ttl = u64::try_from(ttl.max(1)).unwrap_or(1);
        let _: ((), i64) = redis::pipe()
            .set_ex(self.revoked_key(sid), 1, ttl)
            .publish(self.channel(), sid)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl Coordinator for RedisCoordinator {
    async fn revoked_sessions(&self) -> StoreResult<Vec<String>> {
        let pattern = format!("{}revoked:*", self.prefix);
        let mut conn = self.conn.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut iter: redis::AsyncIter<'_, String> =
            conn.scan_match(&pattern).await.map_err(backend)?;
        while let Some(item) = iter.next_item().await {
            keys.push(item.map_err(backend)?);
        }
        let strip = format!("{}revoked:", self.prefix);
        Ok(keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&strip).map(str::to_owned))
            .collect())
    }
}

#[async_trait]
impl RevocationFeed for RedisCoordinator {
    async fn listen(&self, on_connected: &OnConnected, on_revoked: &OnRevoked) -> StoreResult<()> {
        let mut pubsub = self.client.get_async_pubsub().await.map_err(backend)?;
        pubsub.subscribe(self.channel()).await.map_err(backend)?;
        // Subscribed first, then the deny-list: a revocation announced in
        // between is in both, none is in neither.
        on_connected(self.revoked_sessions().await?);
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            if let Ok(sid) = message.get_payload::<String>() {
                on_revoked(sid);
            }
        }
        Err(StoreError::Backend("the Redis subscription ended".into()))
    }
}
