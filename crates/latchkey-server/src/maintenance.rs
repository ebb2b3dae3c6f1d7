//! Background work: deleting sessions that can never be used again, and
//! re-reading the signing keys so that a rotation reaches every instance.

use std::time::Duration;

use crate::state::AppState;

/// Starts the garbage collector (every `LATCHKEY_GC_INTERVAL`) and the key
/// reader (every `LATCHKEY_KEYS_REFRESH_INTERVAL`); they run until the
/// runtime stops.
pub fn spawn(state: AppState) {
    let every = |secs: i64| Duration::from_secs(u64::try_from(secs).unwrap_or(60).max(1));
    let gc = every(state.config().gc_interval);
    let keys = every(state.config().keys_refresh_interval);
    let gc_state = state.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(gc);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            collect(&gc_state).await;
        }
    });
    if state.tokens().revocation_feed().is_some() {
        tokio::spawn(listen(state.clone()));
    }
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(keys);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            state.tokens().reload_keys().await;
        }
    });
}

/// One collection. Revoked sessions stay as long as their access tokens
/// could live, so that "revoked" is still the answer for them (and for the
/// revocation feed); used refresh tokens stay while their session lives.
pub async fn collect(state: &AppState) {
    let now = state.now();
    let keep = state.tokens().deny_ttl();
    match state
        .store()
        .collect_garbage(now, now - keep, now - keep)
        .await
    {
        Ok(done) if done.sessions > 0 => {
            tracing::info!(sessions = done.sessions, "deleted dead sessions")
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "garbage collection failed"),
    }
    let retention = state.config().audit_retention;
    match state.store().prune_audit(now - retention).await {
        Ok(0) => {}
        Ok(events) => tracing::info!(events, "deleted audit events past their retention"),
        Err(e) => tracing::error!(error = %e, "pruning the audit trail failed"),
    }
}

/// Follows the revocation feed (Redis, or PostgreSQL's notifications),
/// resubscribing after a break. While unsubscribed, access tokens are
/// checked against the database.
async fn listen(state: AppState) {
    let Some(feed) = state.tokens().revocation_feed().cloned() else {
        return;
    };
    loop {
        let on_connected = {
            let state = state.clone();
            move |revoked: Vec<String>| {
                let until = state.now() + state.tokens().deny_ttl();
                state.tokens().revocations().connected(revoked, until);
                tracing::info!("following revocations: sessions are cached until revoked");
            }
        };
        let on_revoked: latchkey_core::coordination::OnRevoked = {
            let state = state.clone();
            Box::new(move |sid| {
                let now = state.now();
                state
                    .tokens()
                    .revocations()
                    .revoke(sid, now + state.tokens().deny_ttl(), now);
            })
        };
        let result = feed.listen(&on_connected, &on_revoked).await;
        state.tokens().revocations().disconnected();
        if let Err(e) = result {
            tracing::warn!(error = ?e, "revocation feed lost; checking sessions in the database until it is back");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
