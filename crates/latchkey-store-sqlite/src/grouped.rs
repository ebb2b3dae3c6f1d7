//! Rotations committed in groups: the jobs waiting for the writer, and the
//! read-decide-write of each under its own savepoint.

use super::*;

/// A rotation waiting for the writer, and where its outcome goes.
#[derive(Debug)]
pub(crate) struct RotationJob {
    pub(crate) policy: Policy,
    pub(crate) request: RotationRequest,
    pub(crate) reply: tokio::sync::oneshot::Sender<StoreResult<Outcome>>,
}

/// The read-decide-write of one rotation, inside the caller's `IMMEDIATE`
/// transaction.
pub(crate) fn rotate_in(
    conn: &Connection,
    policy: &Policy,
    req: &RotationRequest,
) -> StoreResult<Outcome> {
    let Some((token, session, user_disabled)) =
        token_with_session_and_user(conn, &req.presented).map_err(backend)?
    else {
        return Ok(Outcome::Rejected(Rejection::Unknown));
    };
    Ok(
        match rotation::decide(policy, &token, &session, user_disabled, req) {
            Decision::Reject(why) => Outcome::Rejected(why),
            Decision::Replay { scope } => {
                let successor: Option<i64> = conn
                    .prepare_cached("SELECT 1 FROM refresh_tokens WHERE hash = ?")
                    .and_then(|mut s| s.query_row([&req.successor.0[..]], |r| r.get(0)).optional())
                    .map_err(backend)?;
                match successor {
                    Some(_) => Outcome::Replayed { session, scope },
                    None => Outcome::Rejected(Rejection::Unknown),
                }
            }
            Decision::Revoke(reason) => {
                revoke(conn, &session.id, reason, req.now).map_err(backend)?;
                Outcome::Revoked { session, reason }
            }
            Decision::Rotate {
                scope,
                binding_mismatch,
                writes,
            } => {
                // Read and written under one write lock: the token is unused.
                let consumed = conn
                    .prepare_cached(
                        "UPDATE refresh_tokens SET used_at = ? WHERE hash = ? AND used_at IS NULL",
                    )
                    .and_then(|mut s| s.execute(params![writes.at, &writes.consumed.0[..]]))
                    .map_err(backend)?;
                if consumed != 1 {
                    return Err(StoreError::Corrupt("rotation lost its write lock".into()));
                }
                insert_token(conn, &writes.successor).map_err(backend)?;
                // Unix seconds: a session refreshed again within the same second
                // already says so, and its row is not written again.
                conn.prepare_cached(
                    "UPDATE sessions SET last_used_at = ?1 WHERE id = ?2 AND last_used_at < ?1",
                )
                .and_then(|mut s| s.execute(params![writes.at, session.id]))
                .map_err(backend)?;
                if let Some(audit) = &writes.audit {
                    insert_audit(conn, audit).map_err(backend)?;
                }
                Outcome::Rotated {
                    session,
                    scope,
                    binding_mismatch,
                }
            }
        },
    )
}

pub(crate) fn group_lost() -> StoreError {
    StoreError::Backend("the rotation's group ended without an answer".into())
}

/// Runs `jobs` in one `IMMEDIATE` transaction, each under a savepoint so a
/// failed or refused rotation leaves no trace, and answers them after the
/// commit (or with its error).
pub(crate) fn rotate_group(conn: &mut Connection, jobs: Vec<RotationJob>) {
    if jobs.is_empty() {
        return;
    }
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let e = e.to_string();
            for job in jobs {
                let _ = job.reply.send(Err(StoreError::Backend(e.clone().into())));
            }
            return;
        }
    };
    let mut answers = Vec::with_capacity(jobs.len());
    for job in jobs {
        // A caller that has gone (its request was cancelled while it queued)
        // gets no rotation: its token must stay usable, as it would have if
        // its own transaction had been cancelled.
        if job.reply.is_closed() {
            continue;
        }
        let outcome = match tx.savepoint() {
            Ok(sp) => match rotate_in(&sp, &job.policy, &job.request) {
                Ok(outcome @ Outcome::Rejected(_)) => Ok(outcome), // dropped: rolled back
                Ok(outcome) => sp.commit().map(|()| outcome).map_err(backend),
                Err(e) => Err(e),
            },
            Err(e) => Err(backend(e)),
        };
        answers.push((job.reply, outcome));
    }
    match tx.commit() {
        Ok(()) => {
            for (reply, outcome) in answers {
                // A caller that went away (client disconnected) needs no answer.
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            let e = e.to_string();
            for (reply, _) in answers {
                let _ = reply.send(Err(StoreError::Backend(e.clone().into())));
            }
        }
    }
}
