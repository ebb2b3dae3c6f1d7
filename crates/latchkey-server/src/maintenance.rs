//! Background work: deleting sessions that can never be used again.

use std::time::Duration;

use crate::state::{AppState, now};

/// Starts the garbage collector; it runs every `LATCHKEY_GC_INTERVAL` until
/// the runtime stops.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let period = Duration::from_secs(u64::try_from(state.config().gc_interval).unwrap_or(600));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            collect(&state).await;
        }
    })
}

/// One collection. Revoked sessions stay as long as their access tokens
/// could live, so that "revoked" is still the answer for them (and for the
/// revocation feed); used refresh tokens stay while their session lives.
pub async fn collect(state: &AppState) {
    let now = now();
    let keep = state.config().access_ttl + jwt_leeway();
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
}

fn jwt_leeway() -> i64 {
    latchkey_core::jwt::LEEWAY_SECS
}
