//! Rotations in batches: one task per store takes every rotation waiting,
//! reads their tokens in one statement, decides each with
//! [`rotation::decide`], and writes all the rotations it decided in one
//! statement, so that one round trip, one plan and one commit (one WAL
//! flush) serve many refreshes.
//!
//! Only plain rotations are made here. Anything else (an unknown token,
//! reuse, a grace replay, a refusal) and any rotation whose guard refused
//! (the token was used or its session revoked since the read) is answered
//! `None`, and the caller takes the locked path, which decides again on a
//! locked row. The write is one statement: either every rotation it made is
//! committed, or none is.
//!
//! The task has a connection of its own, on which the planner may not choose
//! hash or merge joins or sequential scans while an index serves: its
//! statements take a batch's rows by primary key, one by one. A plan cached
//! while the tables were small (a hash join over every session, say) would
//! otherwise stay in use as they grow, and a refresh would cost a scan.

use std::collections::{HashMap, HashSet};

use latchkey_core::rotation::{self, Decision, Policy, RotationRequest, RotationWrites};
use latchkey_core::store::{Outcome, Session, StoreError, StoreResult};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::sync::{mpsc, oneshot};

use crate::{SESSION_COLUMNS, TOKEN_COLUMNS, session_from, token_from};

/// Rotations taken into one batch at most.
const MAX_BATCH: usize = 256;

/// How long the batch connection may take to open (the pool's acquire
/// timeout); its statements are cancelled by the server after as long.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a caller gets back: a rotation made, or `None` for the locked path.
pub(crate) type Answer = StoreResult<Option<Outcome>>;

/// One caller's rotation, waiting for the batch task.
pub(crate) struct Job {
    pub(crate) policy: Policy,
    pub(crate) req: RotationRequest,
    pub(crate) reply: oneshot::Sender<Answer>,
}

/// Starts the batch task of a store; it ends when every sender is gone.
pub(crate) fn spawn(pool: &PgPool) -> mpsc::UnboundedSender<Job> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    let options = batch_options(&pool.connect_options());
    tokio::spawn(async move {
        let mut conn: Option<PgConnection> = None;
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
            let jobs = std::mem::take(&mut jobs);
            if conn.is_none() {
                let connecting = PgConnection::connect_with(&options);
                match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                    Ok(Ok(fresh)) => conn = Some(fresh),
                    failed => {
                        // The callers rotate one by one, on the pool.
                        let error = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timed out".to_owned(),
                        };
                        tracing::warn!(%error, "cannot connect for batched rotations");
                        for job in jobs {
                            let _ = job.reply.send(Ok(None));
                        }
                        continue;
                    }
                }
            }
            if let Some(c) = conn.as_mut()
                && !run(c, jobs).await
            {
                conn = None;
            }
        }
    });
    tx
}

/// The pool's connection options, with the planner held to index lookups.
fn batch_options(pool: &PgConnectOptions) -> PgConnectOptions {
    pool.clone().options([
        ("enable_hashjoin", "off"),
        ("enable_mergejoin", "off"),
        ("enable_seqscan", "off"),
        // Planned once per statement: with the joins above, the plan does
        // not depend on the batch, and planning the write for every batch
        // would cost more than running it.
        ("plan_cache_mode", "force_generic_plan"),
        // A statement cancelled by the server was rolled back, so its
        // rotations go the locked path instead of waiting without end.
        ("statement_timeout", "10s"),
    ])
}

/// A rotation decided in this batch, waiting for the write.
struct Decided {
    job: Job,
    /// The token's session as read.
    session: Session,
    /// The new access token's scope.
    scope: String,
    binding_mismatch: bool,
    writes: RotationWrites,
}

/// Runs one batch on `conn`; false when the connection failed and must be
/// replaced.
async fn run(conn: &mut PgConnection, jobs: Vec<Job>) -> bool {
    // A caller that has gone (its request cancelled) gets no rotation: its
    // token stays usable, as if it had never asked.
    let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
    if jobs.is_empty() {
        return true;
    }
    // One rotation per presented token in a batch; the same token again goes
    // the locked path, where it meets the first one's result.
    let mut seen = HashSet::new();
    let mut repeated = Vec::new();
    let mut unique = Vec::with_capacity(jobs.len());
    for job in jobs {
        if seen.insert(job.req.presented.0) {
            unique.push(job);
        } else {
            repeated.push(job);
        }
    }
    for job in repeated {
        let _ = job.reply.send(Ok(None));
    }
    let Some(decided) = decide_all(conn, unique).await else {
        return false;
    };
    if decided.is_empty() {
        return true;
    }
    let writes: Vec<&RotationWrites> = decided.iter().map(|d| &d.writes).collect();
    match write_rotations(conn, &writes).await {
        Ok(rotated) => {
            for d in decided {
                let answer = rotated
                    .contains(&d.job.req.presented.0)
                    .then_some(Outcome::Rotated {
                        session: d.session,
                        scope: d.scope,
                        binding_mismatch: d.binding_mismatch,
                    });
                let _ = d.job.reply.send(Ok(answer));
            }
            true
        }
        // The database refused the statement: nothing of it was written, so
        // each rotation may be tried again on its own.
        Err(sqlx::Error::Database(e)) => {
            tracing::debug!(error = %e, "batched rotation refused; rotating one by one");
            for d in decided {
                let _ = d.job.reply.send(Ok(None));
            }
            true
        }
        // The connection failed: whether the statement committed is not
        // known, so no caller may act as if it had not.
        Err(e) => {
            let message = e.to_string();
            for d in decided {
                let _ = d
                    .job
                    .reply
                    .send(Err(StoreError::Backend(message.clone().into())));
            }
            false
        }
    }
}

/// Reads every presented token with its session and decides each; answers
/// at once every job that is not a plain rotation. When the read fails,
/// which changed nothing, every job goes the locked path; `None` when the
/// connection failed with it.
async fn decide_all(conn: &mut PgConnection, jobs: Vec<Job>) -> Option<Vec<Decided>> {
    let hashes: Vec<Vec<u8>> = jobs.iter().map(|j| j.req.presented.0.to_vec()).collect();
    let sql = format!(
        "SELECT {TOKEN_COLUMNS}, {SESSION_COLUMNS}, u.disabled AS u_disabled FROM refresh_tokens t \
         CROSS JOIN LATERAL (SELECT * FROM sessions s0 WHERE s0.id = t.session_id OFFSET 0) s \
         CROSS JOIN LATERAL (SELECT disabled FROM users u0 WHERE u0.id = s.user_id OFFSET 0) u \
         WHERE t.hash = ANY($1)"
    );
    let rows = match sqlx::query(&sql).bind(&hashes).fetch_all(&mut *conn).await {
        Ok(rows) => rows,
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Ok(None));
            }
            return matches!(e, sqlx::Error::Database(_)).then(Vec::new);
        }
    };
    let mut found = HashMap::with_capacity(rows.len());
    for row in &rows {
        // A row that cannot be read is left to the locked path, which
        // reports it.
        if let (Ok(token), Ok(session), Ok(disabled)) = (
            token_from(row),
            session_from(row),
            row.try_get::<bool, _>("u_disabled"),
        ) {
            found.insert(token.hash.0, (token, session, disabled));
        }
    }
    let mut decided = Vec::with_capacity(jobs.len());
    for job in jobs {
        let Some((token, session, user_disabled)) = found.remove(&job.req.presented.0) else {
            let _ = job.reply.send(Ok(None));
            continue;
        };
        match rotation::decide(&job.policy, &token, &session, user_disabled, &job.req) {
            Decision::Rotate {
                scope,
                binding_mismatch,
                writes,
            } => decided.push(Decided {
                job,
                session,
                scope,
                binding_mismatch,
                writes,
            }),
            _ => {
                let _ = job.reply.send(Ok(None));
            }
        }
    }
    Some(decided)
}

/// The four writes of every rotation in one statement (a batch's, or the
/// locked path's one): consume each
/// token if its session is unrevoked and the token still unused (checked
/// again under the token's row lock), store its successor, touch its
/// session (when its second of last use changes), and append its `refresh`
/// audit event. Returns the presented hashes of the rotations made.
pub(crate) async fn write_rotations(
    conn: &mut PgConnection,
    writes: &[&RotationWrites],
) -> Result<HashSet<[u8; 32]>, sqlx::Error> {
    let n = writes.len();
    let mut now = Vec::with_capacity(n);
    let mut presented = Vec::with_capacity(n);
    let mut successor = Vec::with_capacity(n);
    let mut scope = Vec::with_capacity(n);
    let mut expires_at = Vec::with_capacity(n);
    let mut access_jti = Vec::with_capacity(n);
    let mut ip = Vec::with_capacity(n);
    let mut user_agent = Vec::with_capacity(n);
    let mut client_id: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut session_id = Vec::with_capacity(n);
    let mut user_id: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut audit_kind: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut audit_detail = Vec::with_capacity(n);
    let mut audit_ip: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut audit_user_agent: Vec<Option<&str>> = Vec::with_capacity(n);
    for w in writes {
        let t = &w.successor;
        now.push(w.at);
        presented.push(w.consumed.0.to_vec());
        successor.push(t.hash.0.to_vec());
        scope.push(t.scope.as_str());
        expires_at.push(t.expires_at);
        access_jti.push(t.access_jti.as_str());
        ip.push(t.ip.as_str());
        user_agent.push(t.user_agent.as_str());
        session_id.push(t.session_id.as_str());
        // A rotation without an audit event (routine refreshes, unless the
        // policy keeps them) has a NULL kind, and no audit row is written.
        let audit = w.audit.as_ref();
        client_id.push(audit.and_then(|a| a.client_id.as_deref()));
        user_id.push(audit.and_then(|a| a.user_id.as_deref()));
        audit_kind.push(audit.map(|a| a.kind.as_str()));
        audit_detail.push(audit.map_or("", |a| a.detail.as_str()));
        audit_ip.push(audit.and_then(|a| a.ip.as_deref()));
        audit_user_agent.push(audit.and_then(|a| a.user_agent.as_deref()));
    }
    // The statement fixes its join order (`OFFSET 0` keeps a subquery from
    // being merged into a join the planner may reorder): a plan driven from
    // `sessions`, or finding tokens through their session's index, would
    // read every token of a session. `live` (materialised) keeps the
    // rotations whose session is unrevoked, each session found by its key;
    // each token is then found by its primary key, and consumed only if
    // still unused, which is checked again under its row lock, so two
    // rotations of one token cannot both pass.
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "WITH input AS MATERIALIZED ( \
             SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::text[], \
                 $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
                 $11::text[], $12::text[], $13::text[], $14::text[], $15::text[]) \
             AS i(now, presented, successor, scope, expires_at, access_jti, ip, user_agent, \
                 client_id, session_id, user_id, audit_kind, audit_detail, audit_ip, \
                 audit_user_agent)), \
         live AS MATERIALIZED ( \
             SELECT i.* FROM input i WHERE EXISTS ( \
                 SELECT 1 FROM sessions s WHERE s.id = i.session_id AND s.revoked_at IS NULL \
                 OFFSET 0)), \
         consumed AS ( \
             UPDATE refresh_tokens t SET used_at = l.now FROM live l \
             WHERE t.hash = l.presented AND t.used_at IS NULL \
             RETURNING t.hash), \
         successor AS ( \
             INSERT INTO refresh_tokens (hash, session_id, parent_hash, scope, issued_at, \
                 expires_at, access_jti, ip, user_agent) \
             SELECT l.successor, l.session_id, l.presented, l.scope, l.now, l.expires_at, \
                 l.access_jti, l.ip, l.user_agent \
             FROM consumed c JOIN live l ON l.presented = c.hash \
             RETURNING session_id, parent_hash, issued_at), \
         touched AS ( \
             UPDATE sessions s SET last_used_at = x.issued_at FROM successor x \
             WHERE s.id = x.session_id AND s.last_used_at < x.issued_at), \
         audit AS ( \
             INSERT INTO audit_events (at, kind, user_id, session_id, client_id, ip, user_agent, detail) \
             SELECT l.now, l.audit_kind, l.user_id, l.session_id, l.client_id, l.audit_ip, \
                 l.audit_user_agent, l.audit_detail \
             FROM successor x JOIN live l ON l.presented = x.parent_hash \
             WHERE l.audit_kind IS NOT NULL) \
         SELECT parent_hash FROM successor",
    )
    .bind(&now)
    .bind(&presented)
    .bind(&successor)
    .bind(&scope)
    .bind(&expires_at)
    .bind(&access_jti)
    .bind(&ip)
    .bind(&user_agent)
    .bind(&client_id)
    .bind(&session_id)
    .bind(&user_id)
    .bind(&audit_kind)
    .bind(&audit_detail)
    .bind(&audit_ip)
    .bind(&audit_user_agent)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|hash| <[u8; 32]>::try_from(hash.as_slice()).ok())
        .collect())
}
