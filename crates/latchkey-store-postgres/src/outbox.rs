//! Webhooks and deliveries ([`latchkey_core::store::OutboxStore`]). The
//! events themselves are written by triggers (migration 0014). Instances
//! share the queue: fan-out and claims take rows with `FOR UPDATE SKIP
//! LOCKED`, so each row goes to one caller and none waits for another.

use latchkey_core::outbox::{
    Attempt, Channel, DeliveryRecord, DeliveryStatus, DueDelivery, OutboxEvent, Webhook,
};

use super::*;

/// The advisory lock that orders webhook inserts, so that their cap holds.
const WEBHOOK_LOCK: i64 = 0x6c6b_7765_6268_6f6f;

/// Outbox events deleted per statement when pruning.
const PRUNE_BATCH: i64 = 500;

fn webhook_from(row: &PgRow) -> StoreResult<Webhook> {
    let events: String = row.try_get("events").map_err(backend)?;
    Ok(Webhook {
        id: row.try_get("id").map_err(backend)?,
        url: row.try_get("url").map_err(backend)?,
        events: events.split(' ').map(str::to_owned).collect(),
        secret: row.try_get("secret").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
    })
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn delivery_from(row: &PgRow) -> StoreResult<DeliveryRecord> {
    let status: String = row.try_get("status").map_err(backend)?;
    Ok(DeliveryRecord {
        id: row.try_get("id").map_err(backend)?,
        event_id: row.try_get("event_id").map_err(backend)?,
        event_type: row.try_get("type").map_err(backend)?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status}")))?,
        attempts: count(row.try_get("attempts").map_err(backend)?),
        created_at: row.try_get("created_at").map_err(backend)?,
        last_attempt_at: row.try_get("last_attempt_at").map_err(backend)?,
        next_attempt_at: row.try_get("next_attempt_at").map_err(backend)?,
        last_error: row.try_get("last_error").map_err(backend)?,
        delivered_at: row.try_get("delivered_at").map_err(backend)?,
    })
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn insert_webhook(&self, webhook: &Webhook, max: u32) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WEBHOOK_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhooks")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        if held >= i64::from(max) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO webhooks (id, url, events, secret, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&webhook.id)
        .bind(&webhook.url)
        .bind(webhook.events.join(" "))
        .bind(&webhook.secret)
        .bind(webhook.created_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn webhooks(&self) -> StoreResult<Vec<Webhook>> {
        let rows = sqlx::query(
            "SELECT id, url, events, secret, created_at FROM webhooks ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(webhook_from).collect()
    }

    async fn webhook(&self, id: &str) -> StoreResult<Option<Webhook>> {
        let row =
            sqlx::query("SELECT id, url, events, secret, created_at FROM webhooks WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        row.as_ref().map(webhook_from).transpose()
    }

    async fn delete_webhook(&self, id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn deliveries(
        &self,
        webhook_id: &str,
        status: Option<DeliveryStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        let rows = sqlx::query(
            "SELECT d.id, o.id AS event_id, o.type, d.status, d.attempts, d.created_at, \
             d.last_attempt_at, d.next_attempt_at, d.last_error, d.delivered_at \
             FROM deliveries d JOIN outbox o ON o.seq = d.event_seq \
             WHERE d.webhook_id = $1 AND ($2::TEXT IS NULL OR d.status = $2) \
             AND ($3::BIGINT IS NULL OR d.id < $3) ORDER BY d.id DESC LIMIT $4",
        )
        .bind(webhook_id)
        .bind(status.map(DeliveryStatus::as_str))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(delivery_from).collect()
    }

    async fn dispatch_events(&self, now: i64, limit: u32, mail: bool) -> StoreResult<u32> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM outbox WHERE dispatched_at IS NULL ORDER BY seq LIMIT $1 \
             FOR UPDATE SKIP LOCKED",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        if seqs.is_empty() {
            return Ok(0);
        }
        sqlx::query(
            "INSERT INTO deliveries (event_seq, channel, webhook_id, url, next_attempt_at, created_at) \
             SELECT o.seq, 'webhook', w.id, w.url, $2, $2 FROM outbox o JOIN webhooks w \
             ON strpos(' ' || w.events || ' ', ' ' || o.type || ' ') > 0 \
             WHERE o.seq = ANY($1) ORDER BY o.seq",
        )
        .bind(&seqs)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO deliveries (event_seq, channel, client_id, url, next_attempt_at, created_at) \
             SELECT o.seq, 'backchannel', c.id, c.backchannel_logout_uri, $2, $2 \
             FROM outbox o JOIN clients c ON c.id = (o.data::jsonb ->> 'client_id') \
             WHERE o.seq = ANY($1) AND o.type = 'session.ended' \
             AND c.backchannel_logout_uri IS NOT NULL ORDER BY o.seq",
        )
        .bind(&seqs)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if mail {
            sqlx::query(
                "INSERT INTO deliveries (event_seq, channel, url, next_attempt_at, created_at) \
                 SELECT o.seq, 'mail', 'mailto:' || (o.data::jsonb ->> 'email'), $2, $2 FROM outbox o \
                 WHERE o.seq = ANY($1) AND o.type IN ('email.verification_requested', \
                 'password.reset_requested', 'mail.new_device', 'mail.email_changed') \
                 AND (o.data::jsonb ->> 'email') IS NOT NULL ORDER BY o.seq",
            )
            .bind(&seqs)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        sqlx::query("UPDATE outbox SET dispatched_at = $2 WHERE seq = ANY($1)")
            .bind(&seqs)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(u32::try_from(seqs.len()).unwrap_or(u32::MAX))
    }

    async fn claim_deliveries(
        &self,
        now: i64,
        lease: i64,
        limit: u32,
    ) -> StoreResult<Vec<DueDelivery>> {
        let rows = sqlx::query(
            "WITH due AS (SELECT id FROM deliveries WHERE next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED), \
             claimed AS (UPDATE deliveries d SET next_attempt_at = $1 + $2, attempts = d.attempts + 1, \
             last_attempt_at = $1 FROM due WHERE d.id = due.id \
             RETURNING d.id, d.event_seq, d.channel, d.webhook_id, d.client_id, d.url, d.attempts, d.created_at) \
             SELECT c.*, o.id AS event_id, o.type, o.at, o.data, w.secret FROM claimed c \
             JOIN outbox o ON o.seq = c.event_seq LEFT JOIN webhooks w ON w.id = c.webhook_id",
        )
        .bind(now)
        .bind(lease)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let channel: String = r.try_get("channel").map_err(backend)?;
                Ok(DueDelivery {
                    id: r.try_get("id").map_err(backend)?,
                    channel: Channel::parse(&channel)
                        .ok_or_else(|| StoreError::Corrupt(format!("channel {channel}")))?,
                    url: r.try_get("url").map_err(backend)?,
                    attempts: count(r.try_get("attempts").map_err(backend)?),
                    created_at: r.try_get("created_at").map_err(backend)?,
                    event: OutboxEvent {
                        id: r.try_get("event_id").map_err(backend)?,
                        kind: r.try_get("type").map_err(backend)?,
                        at: r.try_get("at").map_err(backend)?,
                        data: r.try_get("data").map_err(backend)?,
                    },
                    webhook_id: r.try_get("webhook_id").map_err(backend)?,
                    secret: r.try_get("secret").map_err(backend)?,
                    client_id: r.try_get("client_id").map_err(backend)?,
                })
            })
            .collect()
    }

    async fn finish_delivery(&self, id: i64, now: i64, attempt: &Attempt) -> StoreResult<()> {
        if let Attempt::Failed {
            error,
            retry_at: Some(retry_at),
        } = attempt
        {
            // The receiver is failing: the others waiting for it wait until
            // its retry too.
            sqlx::query(
                "WITH failed AS (UPDATE deliveries SET status = 'failed', next_attempt_at = $2, \
                 last_error = $3 WHERE id = $1 AND status <> 'delivered' RETURNING url) \
                 UPDATE deliveries d SET next_attempt_at = $2 FROM failed \
                 WHERE d.url = failed.url AND d.id <> $1 AND d.next_attempt_at IS NOT NULL \
                 AND d.next_attempt_at < $2",
            )
            .bind(id)
            .bind(*retry_at)
            .bind(error.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            return Ok(());
        }
        match attempt {
            Attempt::Delivered => sqlx::query(
                "UPDATE deliveries SET status = 'delivered', next_attempt_at = NULL, \
                 delivered_at = $2, last_error = NULL WHERE id = $1",
            )
            .bind(id)
            .bind(now),
            Attempt::Failed { error, retry_at } => sqlx::query(
                "UPDATE deliveries SET status = 'failed', next_attempt_at = $2, last_error = $3 \
                 WHERE id = $1 AND status <> 'delivered'",
            )
            .bind(id)
            .bind(*retry_at)
            .bind(error.as_str()),
        }
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn deliveries_waiting(&self) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE next_attempt_at IS NOT NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn prune_outbox(&self, before: i64) -> StoreResult<u64> {
        let mut pruned = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM outbox WHERE seq IN (SELECT o.seq FROM outbox o \
                 WHERE o.dispatched_at IS NOT NULL AND o.dispatched_at < $1 AND NOT EXISTS \
                 (SELECT 1 FROM deliveries d WHERE d.event_seq = o.seq \
                 AND d.next_attempt_at IS NOT NULL) LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(before)
            .bind(PRUNE_BATCH)
            .execute(&self.pool)
            .await
            .map_err(backend)?
            .rows_affected();
            pruned += deleted;
            if deleted < PRUNE_BATCH as u64 {
                return Ok(pruned);
            }
            tokio::task::yield_now().await;
        }
    }
}
