//! Webhooks and deliveries ([`latchkey_core::store::OutboxStore`]). The
//! events themselves are written by triggers (migration 0014). One writer
//! at a time (SQLite's lock), so a claim is taken by one caller only,
//! whichever process it is in.

use latchkey_core::outbox::{
    Attempt, Channel, DeliveryRecord, DeliveryStatus, DueDelivery, OutboxEvent, Webhook,
};

use super::*;

fn webhook_from(row: &Row<'_>) -> rusqlite::Result<Webhook> {
    let events: String = row.get("events")?;
    Ok(Webhook {
        id: row.get("id")?,
        url: row.get("url")?,
        events: events.split(' ').map(str::to_owned).collect(),
        secret: row.get("secret")?,
        created_at: row.get("created_at")?,
    })
}

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn delivery_from(row: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let status: String = row.get("status")?;
    Ok(DeliveryRecord {
        id: row.get("id")?,
        event_id: row.get("event_id")?,
        event_type: row.get("type")?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("delivery status {status}")))?,
        attempts: count(row.get("attempts")?),
        created_at: row.get("created_at")?,
        last_attempt_at: row.get("last_attempt_at")?,
        next_attempt_at: row.get("next_attempt_at")?,
        last_error: row.get("last_error")?,
        delivered_at: row.get("delivered_at")?,
    })
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn insert_webhook(&self, webhook: &Webhook, max: u32) -> StoreResult<bool> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let held: i64 = tx
                .query_row("SELECT COUNT(*) FROM webhooks", [], |r| r.get(0))
                .map_err(backend)?;
            if held >= i64::from(max) {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO webhooks (id, url, events, secret, created_at) VALUES (?, ?, ?, ?, ?)",
                params![
                    webhook.id,
                    webhook.url,
                    webhook.events.join(" "),
                    webhook.secret,
                    webhook.created_at
                ],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn webhooks(&self) -> StoreResult<Vec<Webhook>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT id, url, events, secret, created_at FROM webhooks ORDER BY created_at, id",
            )?
            .query_map([], webhook_from)?
            .collect()
        })
    }

    async fn webhook(&self, id: &str) -> StoreResult<Option<Webhook>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT id, url, events, secret, created_at FROM webhooks WHERE id = ?",
            )?
            .query_row([id], webhook_from)
            .optional()
        })
    }

    async fn delete_webhook(&self, id: &str) -> StoreResult<bool> {
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            tx.execute("DELETE FROM deliveries WHERE webhook_id = ?", [id])
                .map_err(backend)?;
            let gone = tx
                .execute("DELETE FROM webhooks WHERE id = ?", [id])
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(gone == 1)
        })
        .await
    }

    async fn deliveries(
        &self,
        webhook_id: &str,
        status: Option<DeliveryStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        let status = status.map(DeliveryStatus::as_str);
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT d.id, o.id AS event_id, o.type, d.status, d.attempts, d.created_at, \
                 d.last_attempt_at, d.next_attempt_at, d.last_error, d.delivered_at \
                 FROM deliveries d JOIN outbox o ON o.seq = d.event_seq \
                 WHERE d.webhook_id = ?1 AND (?2 IS NULL OR d.status = ?2) \
                 AND (?3 IS NULL OR d.id < ?3) ORDER BY d.id DESC LIMIT ?4",
            )?
            .query_map(
                params![webhook_id, status, before, i64::from(limit)],
                delivery_from,
            )?
            .collect()
        })
    }

    async fn dispatch_events(&self, now: i64, limit: u32, mail: bool) -> StoreResult<u32> {
        // A cheap look first: most calls find nothing and take no lock.
        let waiting: bool = self.read(|conn| {
            conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox WHERE dispatched_at IS NULL)")?
                .query_row([], |r| r.get(0))
        })?;
        if !waiting {
            return Ok(0);
        }
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let (first, last, taken): (Option<i64>, Option<i64>, i64) = tx
                .prepare_cached(
                    "SELECT MIN(seq), MAX(seq), COUNT(*) FROM (SELECT seq FROM outbox \
                     WHERE dispatched_at IS NULL ORDER BY seq LIMIT ?)",
                )
                .and_then(|mut s| {
                    s.query_row([i64::from(limit)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                })
                .map_err(backend)?;
            let (Some(first), Some(last)) = (first, last) else {
                return Ok(0);
            };
            tx.prepare_cached(
                "INSERT INTO deliveries (event_seq, channel, webhook_id, url, next_attempt_at, created_at) \
                 SELECT o.seq, 'webhook', w.id, w.url, ?3, ?3 FROM outbox o JOIN webhooks w \
                 ON instr(' ' || w.events || ' ', ' ' || o.type || ' ') > 0 \
                 WHERE o.seq BETWEEN ?1 AND ?2 AND o.dispatched_at IS NULL ORDER BY o.seq",
            )
            .and_then(|mut s| s.execute(params![first, last, now]))
            .map_err(backend)?;
            tx.prepare_cached(
                "INSERT INTO deliveries (event_seq, channel, client_id, url, next_attempt_at, created_at) \
                 SELECT o.seq, 'backchannel', c.id, c.backchannel_logout_uri, ?3, ?3 \
                 FROM outbox o JOIN clients c ON c.id = json_extract(o.data, '$.client_id') \
                 WHERE o.seq BETWEEN ?1 AND ?2 AND o.dispatched_at IS NULL \
                 AND o.type = 'session.ended' AND c.backchannel_logout_uri IS NOT NULL ORDER BY o.seq",
            )
            .and_then(|mut s| s.execute(params![first, last, now]))
            .map_err(backend)?;
            if mail {
                tx.prepare_cached(
                    "INSERT INTO deliveries (event_seq, channel, url, next_attempt_at, created_at) \
                     SELECT o.seq, 'mail', 'mailto:' || json_extract(o.data, '$.email'), ?3, ?3 \
                     FROM outbox o WHERE o.seq BETWEEN ?1 AND ?2 AND o.dispatched_at IS NULL \
                     AND o.type IN ('email.verification_requested', 'password.reset_requested', \
                     'mail.new_device', 'mail.email_changed') \
                     AND json_extract(o.data, '$.email') IS NOT NULL ORDER BY o.seq",
                )
                .and_then(|mut s| s.execute(params![first, last, now]))
                .map_err(backend)?;
            }
            tx.prepare_cached(
                "UPDATE outbox SET dispatched_at = ?3 WHERE seq BETWEEN ?1 AND ?2 AND dispatched_at IS NULL",
            )
            .and_then(|mut s| s.execute(params![first, last, now]))
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(count(taken))
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now: i64,
        lease: i64,
        limit: u32,
    ) -> StoreResult<Vec<DueDelivery>> {
        let due: bool = self.read(|conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM deliveries WHERE next_attempt_at <= ?)",
            )?
            .query_row([now], |r| r.get(0))
        })?;
        if !due {
            return Ok(Vec::new());
        }
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let claimed: Vec<i64> = tx
                .prepare_cached(
                    "UPDATE deliveries SET next_attempt_at = ?1 + ?2, attempts = attempts + 1, \
                     last_attempt_at = ?1 WHERE id IN (SELECT id FROM deliveries \
                     WHERE next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?3) RETURNING id",
                )
                .and_then(|mut s| {
                    s.query_map(params![now, lease, i64::from(limit)], |r| r.get(0))?
                        .collect()
                })
                .map_err(backend)?;
            // The claimed deliveries with their events and secrets, in one read.
            let ids = format!("{claimed:?}");
            let due = tx
                .prepare_cached(
                    "SELECT d.id, d.channel, d.webhook_id, d.client_id, d.url, d.attempts, \
                     d.created_at, o.id, o.type, o.at, o.data, w.secret FROM deliveries d \
                     JOIN outbox o ON o.seq = d.event_seq LEFT JOIN webhooks w ON w.id = d.webhook_id \
                     WHERE d.id IN (SELECT value FROM json_each(?1)) ORDER BY d.id",
                )
                .and_then(|mut s| {
                    s.query_map([ids], |r| {
                        let channel: String = r.get(1)?;
                        Ok(DueDelivery {
                            id: r.get(0)?,
                            channel: Channel::parse(&channel)
                                .ok_or_else(|| corrupt(format!("channel {channel}")))?,
                            webhook_id: r.get(2)?,
                            client_id: r.get(3)?,
                            url: r.get(4)?,
                            attempts: count(r.get(5)?),
                            created_at: r.get(6)?,
                            event: OutboxEvent {
                                id: r.get(7)?,
                                kind: r.get(8)?,
                                at: r.get(9)?,
                                data: r.get(10)?,
                            },
                            secret: r.get(11)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(due)
        })
        .await
    }

    async fn finish_delivery(&self, id: i64, now: i64, attempt: &Attempt) -> StoreResult<()> {
        self.write(|conn| {
            match attempt {
                Attempt::Delivered => conn
                    .prepare_cached(
                        "UPDATE deliveries SET status = 'delivered', next_attempt_at = NULL, \
                         delivered_at = ?2, last_error = NULL WHERE id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![id, now])),
                Attempt::Failed { error, retry_at } => {
                    let tx = conn
                        .transaction_with_behavior(TransactionBehavior::Immediate)
                        .map_err(backend)?;
                    tx.prepare_cached(
                        "UPDATE deliveries SET status = 'failed', next_attempt_at = ?2, \
                         last_error = ?3 WHERE id = ?1 AND status <> 'delivered'",
                    )
                    .and_then(|mut s| s.execute(params![id, retry_at, error]))
                    .map_err(backend)?;
                    // The receiver is failing: the others waiting for it
                    // wait until its retry too.
                    if retry_at.is_some() {
                        tx.prepare_cached(
                            "UPDATE deliveries SET next_attempt_at = ?2 WHERE url = \
                             (SELECT url FROM deliveries WHERE id = ?1) AND id <> ?1 \
                             AND next_attempt_at IS NOT NULL AND next_attempt_at < ?2",
                        )
                        .and_then(|mut s| s.execute(params![id, retry_at]))
                        .map_err(backend)?;
                    }
                    tx.commit().map(|_| 0)
                }
            }
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn deliveries_waiting(&self) -> StoreResult<u64> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT COUNT(*) FROM deliveries WHERE next_attempt_at IS NOT NULL",
            )?
            .query_row([], |r| r.get::<_, i64>(0))
        })
        .map(|n| u64::try_from(n).unwrap_or(0))
    }

    async fn prune_outbox(&self, before: i64) -> StoreResult<u64> {
        let mut pruned = 0;
        loop {
            let deleted = self
                .write(|conn| {
                    conn.prepare_cached(
                        "DELETE FROM outbox WHERE seq IN (SELECT o.seq FROM outbox o \
                         WHERE o.dispatched_at IS NOT NULL AND o.dispatched_at < ?1 AND NOT EXISTS \
                         (SELECT 1 FROM deliveries d WHERE d.event_seq = o.seq \
                         AND d.next_attempt_at IS NOT NULL) LIMIT ?2)",
                    )
                    .and_then(|mut s| s.execute(params![before, GC_BATCH]))
                    .map_err(backend)
                })
                .await?;
            pruned += deleted as u64;
            if (deleted as i64) < GC_BATCH {
                return Ok(pruned);
            }
            tokio::task::yield_now().await;
        }
    }
}
