//! Sessions and their refresh tokens ([`latchkey_core::store::SessionStore`]).

use super::*;

pub(crate) fn revoke(
    conn: &Connection,
    id: &str,
    reason: RevocationReason,
    now: i64,
) -> rusqlite::Result<bool> {
    let done = conn
        .prepare_cached(
            "UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL",
        )?
        .execute(params![now, reason.as_str(), id])?;
    Ok(done == 1)
}

/// Revokes every live session of `user_id`; returns their ids.
pub(crate) fn revoke_all(
    conn: &Connection,
    user_id: &str,
    reason: RevocationReason,
    now: i64,
) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached(
        "UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE user_id = ? AND revoked_at IS NULL RETURNING id",
    )?
    .query_map(params![now, reason.as_str(), user_id], |r| r.get(0))?
    .collect()
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(
        &self,
        start: &SessionStart,
        max_sessions: u32,
    ) -> StoreResult<Option<Vec<String>>> {
        let (session, token, created) = (&start.session, &start.first_token, &start.audit);
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            // Under the write lock: a user disabled before this commits was
            // disabled before this read.
            let disabled: Option<bool> = tx
                .prepare_cached("SELECT disabled FROM users WHERE id = ?")
                .and_then(|mut s| s.query_row([&session.user_id], |r| r.get(0)).optional())
                .map_err(backend)?;
            if disabled != Some(false) {
                return Ok(None);
            }
            tx.prepare_cached(
                "INSERT INTO sessions (id, user_id, client_id, scope, created_at, expires_at, last_used_at, \
                 revoked_at, revoked_reason, ip, user_agent, dpop_jkt, auth_time, auth_method) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    session.id,
                    session.user_id,
                    session.client_id,
                    session.scope,
                    session.created_at,
                    session.expires_at,
                    session.last_used_at,
                    session.ip,
                    session.user_agent,
                    session.dpop_jkt,
                    session.auth_time,
                    session.auth_method.as_str(),
                ])
            })
            .map_err(backend)?;
            insert_token(&tx, token).map_err(backend)?;
            insert_audit(&tx, created).map_err(backend)?;
            if let Some(sighting) = &start.device {
                super::accounts::sight_device(&tx, session, sighting).map_err(backend)?;
            }
            // The user's other live sessions through the same client (the
            // cap is per user and client, so that one application's sessions
            // never evict another's), newest first: by time, then by rowid,
            // which grows with every insert, so logins of one second keep
            // their order.
            let others: Vec<String> = tx
                .prepare_cached(
                    "SELECT id FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at >= ? \
                     AND id <> ? AND client_id IS ? ORDER BY created_at DESC, rowid DESC",
                )
                .and_then(|mut s| {
                    s.query_map(
                        params![
                            session.user_id,
                            session.created_at,
                            session.id,
                            session.client_id
                        ],
                        |r| r.get(0),
                    )?
                    .collect()
                })
                .map_err(backend)?;
            let evictions = latchkey_core::session::evictions(start, others, max_sessions);
            for eviction in &evictions {
                revoke(
                    &tx,
                    &eviction.session_id,
                    RevocationReason::SessionCap,
                    session.created_at,
                )
                .map_err(backend)?;
                insert_audit(&tx, &eviction.audit).map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(Some(evictions.into_iter().map(|e| e.session_id).collect()))
        })
        .await
    }
    async fn session_with_user(&self, id: &str) -> StoreResult<Option<(Session, User)>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS}, {USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?"
        );
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_row([id], |r| Ok((session_from(r, 0)?, user_from(r)?)))
                .optional()
        })
    }
    async fn revoke_session(
        &self,
        id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<bool> {
        self.write(|conn| revoke(conn, id, reason, now).map_err(backend))
            .await
    }
    async fn live_sessions(&self, user_id: &str, now: i64) -> StoreResult<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.user_id = ?1 AND s.revoked_at IS NULL \
             AND s.expires_at >= ?2 AND EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id \
             AND t.used_at IS NULL AND t.expires_at >= ?2) ORDER BY s.created_at DESC, s.rowid DESC"
        );
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_map(params![user_id, now], |r| session_from(r, 0))?
                .collect()
        })
    }
    async fn ended_sessions(
        &self,
        user_id: &str,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.user_id = ?1 AND s.revoked_at >= ?2 \
             ORDER BY s.revoked_at DESC, s.rowid DESC LIMIT ?3"
        );
        self.read(|conn| {
            conn.prepare_cached(&sql)?
                .query_map(params![user_id, since, limit], |r| session_from(r, 0))?
                .collect()
        })
    }
    async fn revoke_own_session(
        &self,
        user_id: &str,
        session_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<bool> {
        self.write(|conn| {
            let done = conn
                .execute(
                    "UPDATE sessions SET revoked_at = ?, revoked_reason = ? \
                     WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
                    params![now, reason.as_str(), session_id, user_id],
                )
                .map_err(backend)?;
            Ok(done == 1)
        })
        .await
    }
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<Vec<String>> {
        self.write(|conn| revoke_all(conn, user_id, reason, now).map_err(backend))
            .await
    }
    async fn revoke_client_sessions(
        &self,
        client_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<Vec<(String, String)>> {
        self.write(|conn| {
            let revoke = || -> rusqlite::Result<Vec<(String, String)>> {
                conn.prepare_cached(
                    "UPDATE sessions SET revoked_at = ?, revoked_reason = ? \
                     WHERE client_id = ? AND revoked_at IS NULL RETURNING id, user_id",
                )?
                .query_map(params![now, reason.as_str(), client_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect()
            };
            revoke().map_err(backend)
        })
        .await
    }
    async fn revoked_since(&self, since: i64) -> StoreResult<Vec<(String, i64)>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT id, revoked_at FROM sessions WHERE revoked_at >= ? ORDER BY revoked_at, id",
            )?
            .query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
    }
    async fn session_changes(&self, after: u64) -> StoreResult<Option<SessionChanges>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.read(|conn| {
            let rows: Vec<(i64, Option<String>, Option<String>)> = conn
                .prepare_cached(
                    "SELECT seq, session_id, user_id FROM session_changes \
                     WHERE seq > ? ORDER BY seq LIMIT ?",
                )?
                .query_map(params![after, SessionChanges::MAX as i64 + 1], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let Some(&(first, ..)) = rows.first() else {
                return Ok(Some(SessionChanges {
                    upto: after as u64,
                    complete: true,
                    ..SessionChanges::default()
                }));
            };
            // Numbers follow each other unless changes were pruned unread.
            // The newest number, read after the rows, may be newer still:
            // the caller forgets everything it holds either way.
            if rows.len() > SessionChanges::MAX || first != after.saturating_add(1) {
                let upto: i64 = conn
                    .prepare_cached("SELECT coalesce(max(seq), 0) FROM session_changes")?
                    .query_row([], |r| r.get(0))?;
                return Ok(Some(SessionChanges {
                    upto: upto as u64,
                    complete: false,
                    ..SessionChanges::default()
                }));
            }
            let mut changes = SessionChanges {
                complete: true,
                ..SessionChanges::default()
            };
            for (seq, session, user) in rows {
                changes.upto = seq as u64;
                changes.sessions.extend(session);
                changes.users.extend(user);
            }
            Ok(Some(changes))
        })
    }
    async fn refresh_token(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshRecord, Session)>> {
        self.read(|conn| token_with_session(conn, hash))
    }
    async fn rotate(&self, policy: &Policy, req: &RotationRequest) -> StoreResult<Outcome> {
        let (reply, mut outcome) = tokio::sync::oneshot::channel();
        self.inner
            .rotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(RotationJob {
                policy: *policy,
                request: req.clone(),
                reply,
            });
        tokio::select! {
            // An earlier holder of the writer ran this rotation in its group.
            done = &mut outcome => done.unwrap_or_else(|_| Err(group_lost())),
            mut conn = self.inner.writer.lock() => {
                let jobs = std::mem::take(
                    &mut *self.inner.rotations.lock().unwrap_or_else(PoisonError::into_inner),
                );
                rotate_group(&mut conn, jobs);
                drop(conn);
                outcome.await.unwrap_or_else(|_| Err(group_lost()))
            }
        }
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
        // (live, last used before `idle_before`) are walked in the order of
        // the index of last uses, GC_SCAN at a time: each transaction reads a
        // bounded range, and a collection reads each candidate once.
        let mut after: (i64, String) = (i64::MIN, String::new());
        loop {
            let (marked, next) = self
                .write(|conn| {
                    let tx = conn
                        .transaction_with_behavior(TransactionBehavior::Immediate)
                        .map_err(backend)?;
                    // The last candidate of this range, or none: the range
                    // runs to the last candidate.
                    let upto: Option<(i64, String)> = tx
                        .prepare_cached(
                            "SELECT last_used_at, id FROM sessions WHERE revoked_at IS NULL \
                             AND last_used_at < ?1 AND (last_used_at, id) > (?2, ?3) \
                             ORDER BY last_used_at, id LIMIT 1 OFFSET ?4",
                        )
                        .and_then(|mut s| {
                            s.query_row(
                                params![idle_before, after.0, after.1, GC_SCAN - 1],
                                |r| Ok((r.get(0)?, r.get(1)?)),
                            )
                            .optional()
                        })
                        .map_err(backend)?;
                    let last: Option<(i64, String)> = match &upto {
                        Some(key) => Some(key.clone()),
                        None => tx
                            .prepare_cached(
                                "SELECT last_used_at, id FROM sessions WHERE revoked_at IS NULL \
                                 AND last_used_at < ? ORDER BY last_used_at DESC, id DESC LIMIT 1",
                            )
                            .and_then(|mut s| {
                                s.query_row([idle_before], |r| Ok((r.get(0)?, r.get(1)?)))
                                    .optional()
                            })
                            .map_err(backend)?,
                    };
                    let Some((last_t, last_id)) = last else {
                        return Ok((0, None));
                    };
                    // Bounded by two keys, so that the index range is this page.
                    let ended = mark_ended(
                        &tx,
                        RevocationReason::IdleExpired,
                        "UPDATE sessions SET revoked_reason = 'idle_expired', revoked_at = \
                         (SELECT MAX(t.expires_at) FROM refresh_tokens t WHERE t.session_id = sessions.id) \
                         WHERE id IN (SELECT s.id FROM sessions s WHERE s.revoked_at IS NULL \
                           AND (s.last_used_at, s.id) > (?2, ?3) \
                           AND (s.last_used_at, s.id) <= (?4, ?5) \
                           AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id \
                               AND t.used_at IS NULL AND t.expires_at >= ?1) \
                           AND (SELECT MAX(t.expires_at) FROM refresh_tokens t WHERE t.session_id = s.id) \
                               < s.expires_at) \
                         RETURNING id, user_id, revoked_at",
                        params![now, after.0, after.1, last_t, last_id],
                    )?;
                    tx.commit().map_err(backend)?;
                    Ok((ended, upto))
                })
                .await?;
            collected.idle_expired += marked;
            match next {
                Some(key) => after = key,
                None => break,
            }
            tokio::task::yield_now().await;
        }
        // Then the sessions past their absolute end, found by the index of
        // live sessions' ends.
        loop {
            let marked = self
                .write(|conn| {
                    let tx = conn
                        .transaction_with_behavior(TransactionBehavior::Immediate)
                        .map_err(backend)?;
                    let ended = mark_ended(
                        &tx,
                        RevocationReason::AbsoluteExpired,
                        "UPDATE sessions SET revoked_reason = 'absolute_expired', revoked_at = expires_at \
                         WHERE id IN (SELECT id FROM sessions WHERE revoked_at IS NULL AND expires_at < ?1 \
                           LIMIT ?2) \
                         RETURNING id, user_id, revoked_at",
                        params![now, GC_BATCH],
                    )?;
                    tx.commit().map_err(backend)?;
                    Ok(ended)
                })
                .await?;
            collected.absolute_expired += marked;
            if (marked as i64) < GC_BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
        loop {
            // Refresh tokens go with their session (ON DELETE CASCADE).
            let deleted = self
                .write(|conn| {
                    conn.prepare_cached(
                        "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
                         WHERE revoked_at IS NOT NULL AND revoked_at <= ?1 LIMIT ?2)",
                    )
                    .and_then(|mut s| s.execute(params![revoked_before, GC_BATCH]))
                    .map_err(backend)
                })
                .await?;
            collected.sessions += deleted as u64;
            if (deleted as i64) < GC_BATCH {
                break;
            }
            // Let this process's other writers in between batches.
            tokio::task::yield_now().await;
        }
        self.write(|conn| {
            conn.prepare_cached("DELETE FROM authorization_codes WHERE expires_at < ?")
                .and_then(|mut s| s.execute([revoked_before]))
                .and_then(|_| {
                    conn.prepare_cached("DELETE FROM dpop_proofs WHERE expires_at < ?")?
                        .execute([now])
                })
                // Hours gone by are never read again.
                .and_then(|_| {
                    conn.prepare_cached("DELETE FROM session_expiries WHERE hour < ? / 3600")?
                        .execute([now])
                })
                .and_then(|_| {
                    conn.prepare_cached(
                        "DELETE FROM session_changes \
                         WHERE seq <= (SELECT max(seq) FROM session_changes) - ?",
                    )?
                    .execute([SESSION_CHANGES_KEPT])
                })
                .map_err(backend)
        })
        .await?;
        collected.users = self
            .write(|conn| {
                conn.prepare_cached(
                    "DELETE FROM users WHERE deleted_at IS NOT NULL \
                     AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = users.id)",
                )
                .and_then(|mut s| s.execute([]))
                .map_err(backend)
            })
            .await? as u64;
        Ok(collected)
    }
}

/// Runs a statement that marks sessions as ended for `reason` and returns
/// (id, user id, end) of each, and writes each one's `session_ended` event.
fn mark_ended(
    tx: &rusqlite::Transaction<'_>,
    reason: RevocationReason,
    statement: &str,
    params: impl rusqlite::Params,
) -> StoreResult<u64> {
    let ended: Vec<(String, String, i64)> = tx
        .prepare_cached(statement)
        .and_then(|mut s| {
            s.query_map(params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(backend)?;
    for (session_id, user_id, at) in &ended {
        let event = AuditEvent::session_expired(session_id.clone(), user_id.clone(), reason, *at);
        insert_audit(tx, &event).map_err(backend)?;
    }
    Ok(ended.len() as u64)
}
