//! Sessions and their refresh tokens ([`latchkey_core::store::SessionStore`]).

use super::*;

/// Sessions marked ended or deleted per statement by garbage collection.
const GC_BATCH: i64 = 100;

/// Sessions read per transaction of the collection's walk for idle ones.
const GC_SCAN: i64 = 100;

/// Revokes every live session of `user_id` inside `tx`; their ids.
pub(crate) async fn revoke_all_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user_id: &str,
    reason: RevocationReason,
    now: i64,
) -> StoreResult<Vec<String>> {
    sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL RETURNING id",
    )
    .bind(now)
    .bind(reason.as_str())
    .bind(user_id)
    .fetch_all(&mut **tx)
    .await
    .map_err(backend)
}

pub(crate) async fn revoke(
    conn: &mut PgConnection,
    id: &str,
    reason: RevocationReason,
    now: i64,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(reason.as_str())
    .bind(id)
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(
        &self,
        start: &SessionStart,
        max_sessions: u32,
    ) -> StoreResult<Option<Vec<String>>> {
        let (session, token, created) = (&start.session, &start.first_token, &start.audit);
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Concurrent logins of one user apply the cap one after another; and
        // disabling the user (an UPDATE of this row) waits for this session
        // to commit, then revokes it, or commits first and is seen here.
        let disabled: Option<bool> =
            sqlx::query_scalar("SELECT disabled FROM users WHERE id = $1 FOR UPDATE")
                .bind(&session.user_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        if disabled != Some(false) {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO sessions (id, user_id, client_id, scope, created_at, expires_at, last_used_at, \
             revoked_at, revoked_reason, ip, user_agent, dpop_jkt, auth_time, auth_method) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $9, $10, $11, $12)",
        )
        .bind(&session.id)
        .bind(&session.user_id)
        .bind(&session.client_id)
        .bind(&session.scope)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(session.last_used_at)
        .bind(&session.ip)
        .bind(&session.user_agent)
        .bind(&session.dpop_jkt)
        .bind(session.auth_time)
        .bind(session.auth_method.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        insert_token(&mut tx, token).await?;
        insert_audit(&mut tx, created).await?;
        if let Some(sighting) = &start.device {
            super::accounts::sight_device(&mut tx, session, sighting).await?;
        }
        // The other live sessions beyond the cap (the new one counts first),
        // newest first: by time, then by `created_seq`, which the logins of
        // one user (serialised by the lock above) take in order.
        let others: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at >= $2 \
             AND id <> $3 AND client_id IS NOT DISTINCT FROM $4 \
             ORDER BY created_at DESC, created_seq DESC",
        )
        .bind(&session.user_id)
        .bind(session.created_at)
        .bind(&session.id)
        .bind(&session.client_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let evictions = latchkey_core::session::evictions(start, others, max_sessions);
        for eviction in &evictions {
            revoke(
                &mut tx,
                &eviction.session_id,
                RevocationReason::SessionCap,
                session.created_at,
            )
            .await?;
            insert_audit(&mut tx, &eviction.audit).await?;
        }
        let evicted: Vec<String> = evictions.into_iter().map(|e| e.session_id).collect();
        tx.commit().await.map_err(backend)?;
        Ok(Some(evicted))
    }
    async fn session_with_user(&self, id: &str) -> StoreResult<Option<(Session, User)>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS}, {USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| Ok((session_from(&r)?, user_from(&r)?)))
            .transpose()
    }
    async fn revoke_session(
        &self,
        id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<bool> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        revoke(&mut conn, id, reason, now).await
    }
    async fn live_sessions(&self, user_id: &str, now: i64) -> StoreResult<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.user_id = $1 AND s.revoked_at IS NULL \
             AND s.expires_at >= $2 AND EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id \
             AND t.used_at IS NULL AND t.expires_at >= $3) ORDER BY s.created_at DESC, s.created_seq DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(now)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(session_from).collect()
    }
    async fn ended_sessions(
        &self,
        user_id: &str,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.user_id = $1 AND s.revoked_at >= $2 \
             ORDER BY s.revoked_at DESC, s.created_seq DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(since)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(session_from).collect()
    }
    async fn revoke_own_session(
        &self,
        user_id: &str,
        session_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
             WHERE id = $3 AND user_id = $4 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason.as_str())
        .bind(session_id)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL RETURNING id",
        )
        .bind(now)
        .bind(reason.as_str())
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }
    async fn revoke_client_sessions(
        &self,
        client_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<Vec<(String, String)>> {
        sqlx::query_as(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
             WHERE client_id = $3 AND revoked_at IS NULL RETURNING id, user_id",
        )
        .bind(now)
        .bind(reason.as_str())
        .bind(client_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }
    async fn revoked_since(&self, since: i64) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT id, revoked_at FROM sessions WHERE revoked_at >= $1 ORDER BY revoked_at, id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id").map_err(backend)?,
                    r.try_get("revoked_at").map_err(backend)?,
                ))
            })
            .collect()
    }
    async fn refresh_token(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshRecord, Session)>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS}, {SESSION_COLUMNS} FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE t.hash = $1"
        );
        let row = sqlx::query(&sql)
            .bind(&hash.0[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| Ok((token_from(&r)?, session_from(&r)?)))
            .transpose()
    }
    async fn rotate(&self, policy: &Policy, req: &RotationRequest) -> StoreResult<Outcome> {
        // The common case: a plain rotation, made in a batch with others.
        let (reply, answer) = oneshot::channel();
        let job = batch::Job {
            policy: *policy,
            req: req.clone(),
            reply,
        };
        if self.rotations.send(job).is_ok() {
            match answer.await {
                Ok(Ok(Some(rotated))) => return Ok(rotated),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(StoreError::Backend("the rotation task stopped".into())),
            }
        }
        // FOR UPDATE locks the presented token: a concurrent rotation of it
        // waits, then sees it used. The decision below is made on data no
        // other instance can change before this commits.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let sql = format!(
            "SELECT {TOKEN_COLUMNS}, {SESSION_COLUMNS}, u.disabled AS u_disabled FROM refresh_tokens t \
             JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id WHERE t.hash = $1 \
             FOR UPDATE OF t"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(&req.presented.0[..])
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
        else {
            return Ok(Outcome::Rejected(Rejection::Unknown));
        };
        let (token, session) = (token_from(&row)?, session_from(&row)?);
        let user_disabled: bool = row.try_get("u_disabled").map_err(backend)?;
        let outcome = match rotation::decide(policy, &token, &session, user_disabled, req) {
            Decision::Reject(why) => return Ok(Outcome::Rejected(why)),
            Decision::Replay { scope } => {
                let successor: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM refresh_tokens WHERE hash = $1")
                        .bind(&req.successor.0[..])
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(backend)?;
                match successor {
                    Some(_) => Outcome::Replayed { session, scope },
                    None => return Ok(Outcome::Rejected(Rejection::Unknown)),
                }
            }
            Decision::Revoke(reason) => {
                revoke(&mut tx, &session.id, reason, req.now).await?;
                Outcome::Revoked { session, reason }
            }
            Decision::Rotate {
                scope,
                binding_mismatch,
                writes,
            } => {
                let rotated = batch::write_rotations(&mut tx, &[&writes])
                    .await
                    .map_err(backend)?;
                if !rotated.contains(&req.presented.0) {
                    // The token is locked, so only its session can have
                    // changed: revoked since the read. Nothing was written.
                    return Ok(Outcome::Rejected(Rejection::SessionRevoked));
                }
                Outcome::Rotated {
                    session,
                    scope,
                    binding_mismatch,
                }
            }
        };
        tx.commit().await.map_err(backend)?;
        Ok(outcome)
    }
    async fn collect_garbage(
        &self,
        now: i64,
        revoked_before: i64,
        idle_before: i64,
    ) -> StoreResult<Collected> {
        let mut collected = Collected::default();
        // Idle first: a session whose newest token expired before its
        // absolute end ended then, whenever that is noticed. The candidates
        // (live, last used before `idle_before`) are read in the order of the
        // index of last uses, GC_SCAN at a time, and each page is marked by
        // its ids: each transaction touches a bounded page, a collection
        // reads each candidate once, and the planner sees a list of keys
        // rather than a range it cannot estimate. No new token can appear
        // in a session whose tokens have all expired, so a page read before
        // its update is still true when updated; `revoked_at IS NULL`,
        // checked again on the row's newest version, leaves a session ended
        // meanwhile (by a concurrent collection too) to whoever ended it.
        const IDLE: &str = "UPDATE sessions SET revoked_reason = 'idle_expired', revoked_at = \
             (SELECT MAX(t.expires_at) FROM refresh_tokens t WHERE t.session_id = sessions.id) \
             WHERE id = ANY($2) AND revoked_at IS NULL \
               AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = sessions.id \
                   AND t.used_at IS NULL AND t.expires_at >= $1) \
               AND (SELECT MAX(t.expires_at) FROM refresh_tokens t WHERE t.session_id = sessions.id) \
                   < sessions.expires_at \
             RETURNING id, user_id, revoked_at";
        let mut after: (i64, String) = (i64::MIN, String::new());
        loop {
            let mut tx = self.pool.begin().await.map_err(backend)?;
            let page: Vec<(i64, String)> = sqlx::query_as(
                "SELECT last_used_at, id FROM sessions WHERE revoked_at IS NULL \
                 AND last_used_at < $1 AND (last_used_at, id) > ($2, $3) \
                 ORDER BY last_used_at, id LIMIT $4",
            )
            .bind(idle_before)
            .bind(after.0)
            .bind(&after.1)
            .bind(GC_SCAN)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            let full = page.len() as i64 >= GC_SCAN;
            let Some(last) = page.last().cloned() else {
                tx.commit().await.map_err(backend)?;
                break;
            };
            let ids: Vec<String> = page.into_iter().map(|(_, id)| id).collect();
            let ended: Vec<(String, String, i64)> = sqlx::query_as(IDLE)
                .bind(now)
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
            collected.idle_expired +=
                record_ends(&mut tx, &ended, RevocationReason::IdleExpired).await?;
            tx.commit().await.map_err(backend)?;
            if !full {
                break;
            }
            after = last;
        }
        // Then the sessions past their absolute end, found by the index of
        // live sessions' ends.
        loop {
            let mut tx = self.pool.begin().await.map_err(backend)?;
            let ended: Vec<(String, String, i64)> = sqlx::query_as(
                "UPDATE sessions SET revoked_reason = 'absolute_expired', revoked_at = expires_at \
                 WHERE id IN (SELECT id FROM sessions WHERE revoked_at IS NULL AND expires_at < $1 \
                   LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 AND revoked_at IS NULL \
                 RETURNING id, user_id, revoked_at",
            )
            .bind(now)
            .bind(GC_BATCH)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            let marked = record_ends(&mut tx, &ended, RevocationReason::AbsoluteExpired).await?;
            tx.commit().await.map_err(backend)?;
            collected.absolute_expired += marked;
            if (marked as i64) < GC_BATCH {
                break;
            }
        }
        // Refresh tokens go with their session (ON DELETE CASCADE), a batch
        // per statement.
        loop {
            let done = sqlx::query(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
                 WHERE revoked_at IS NOT NULL AND revoked_at <= $1 LIMIT $2)",
            )
            .bind(revoked_before)
            .bind(GC_BATCH)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            collected.sessions += done.rows_affected();
            if (done.rows_affected() as i64) < GC_BATCH {
                break;
            }
        }
        sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
            .bind(revoked_before)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM dpop_proofs WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        // Hours gone by are never read again.
        sqlx::query("DELETE FROM session_expiries WHERE hour < $1 / 3600")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        let users = sqlx::query(
            "DELETE FROM users WHERE deleted_at IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = users.id)",
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        collected.users = users.rows_affected();
        Ok(collected)
    }
    fn revocation_feed(&self) -> Option<std::sync::Arc<dyn RevocationFeed>> {
        Some(std::sync::Arc::new(PgRevocationFeed {
            pool: self.pool.clone(),
        }))
    }
}

/// Writes the `session_ended` event of each session a collection marked;
/// returns how many.
async fn record_ends(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ended: &[(String, String, i64)],
    reason: RevocationReason,
) -> StoreResult<u64> {
    for (session_id, user_id, at) in ended {
        let event = AuditEvent::session_expired(session_id.clone(), user_id.clone(), reason, *at);
        insert_audit(tx, &event).await?;
    }
    Ok(ended.len() as u64)
}
