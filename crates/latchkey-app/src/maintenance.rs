//! Background work: deleting sessions and device authorizations that can
//! never be used again, pruning the audit trail, following the revocation
//! feed, and re-reading the signing keys so that a rotation reaches every
//! instance.

use std::sync::Arc;
use std::time::Duration;

use latchkey_core::store::RevocationReason;

use crate::App;

/// Starts the garbage collector (every `LATCHKEY_GC_INTERVAL`), the
/// revocation feed's follower (when there is a feed) and the key reader
/// (every `LATCHKEY_KEYS_REFRESH_INTERVAL`); they run until the runtime
/// stops.
pub fn spawn(app: Arc<App>) {
    let every = |secs: i64| Duration::from_secs(u64::try_from(secs).unwrap_or(60).max(1));
    let gc = every(app.config.gc_interval);
    let keys = every(app.config.keys_refresh_interval);
    let gc_app = app.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(gc);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            collect(&gc_app).await;
        }
    });
    if app.feed.is_some() {
        tokio::spawn(listen(app.clone()));
    }
    let activity = app.activity.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(ACTIVITY_FLUSH);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = activity.flush().await {
                tracing::warn!(error = %e, "activity counts could not be stored; the next flush adds them");
            }
        }
    });
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(keys);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            app.issuer.reload_keys().await;
        }
    });
}

/// How often this instance adds its counts to the console's overview.
pub const ACTIVITY_FLUSH: Duration = Duration::from_secs(10);

/// How long an ended session is kept, so that its end is told (SPEC §14:
/// the last 30 days), in seconds.
pub const ENDED_SESSIONS_KEPT: i64 = 30 * 86_400;

/// One collection. Revoked sessions stay as long as their access tokens
/// could live, so that "revoked" is still the answer for them (and for the
/// revocation feed); used refresh tokens stay while their session lives.
/// Device authorizations, sign-ins waiting for a second step and passkey
/// ceremonies go once
/// they have ended.
pub async fn collect(app: &App) {
    let now = app.now();
    // Ended sessions stay while their access tokens could live, and for the
    // days their end is listed (SPEC §14).
    let keep = app.issuer.deny_ttl().max(ENDED_SESSIONS_KEPT);
    let store = app.store();
    // A session last used before now less the idle lifetime may have gone
    // idle; one used since has a token that has not.
    let idle_before = now - app.config.policy.idle_ttl;
    match store.collect_garbage(now, now - keep, idle_before).await {
        Ok(done) => {
            for (reason, count) in [
                (RevocationReason::IdleExpired, done.idle_expired),
                (RevocationReason::AbsoluteExpired, done.absolute_expired),
            ] {
                app.issuer.events().count_ends(reason, count);
            }
            if done.sessions + done.idle_expired + done.absolute_expired > 0 {
                tracing::info!(
                    deleted = done.sessions,
                    idle_expired = done.idle_expired,
                    absolute_expired = done.absolute_expired,
                    "sessions collected"
                );
            }
        }
        Err(e) => tracing::error!(error = %e, "garbage collection failed"),
    }
    match store.prune_device_grants(now).await {
        Ok(0) => {}
        Ok(grants) => tracing::info!(grants, "deleted ended device authorizations"),
        Err(e) => tracing::error!(error = %e, "deleting ended device authorizations failed"),
    }
    match store.prune_mfa_challenges(now).await {
        Ok(0) => {}
        Ok(challenges) => tracing::info!(challenges, "deleted ended second-step sign-ins"),
        Err(e) => tracing::error!(error = %e, "deleting ended second-step sign-ins failed"),
    }
    match store.prune_ceremonies(now).await {
        Ok(0) => {}
        Ok(ceremonies) => tracing::info!(ceremonies, "deleted ended passkey ceremonies"),
        Err(e) => tracing::error!(error = %e, "deleting ended passkey ceremonies failed"),
    }
    match store
        .prune_accounts(now, now - latchkey_core::account::DEVICE_MEMORY)
        .await
    {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, "deleted ended links and devices not seen for 90 days"),
        Err(e) => tracing::error!(error = %e, "deleting ended links and old devices failed"),
    }
    let retention = app.config.audit_retention;
    match store.prune_audit(now - retention).await {
        Ok(0) => {}
        Ok(events) => tracing::info!(events, "deleted audit events past their retention"),
        Err(e) => tracing::error!(error = %e, "pruning the audit trail failed"),
    }
    match store.prune_outbox(now - OUTBOX_KEPT).await {
        Ok(0) => {}
        Ok(events) => tracing::info!(events, "deleted outbox events long delivered"),
        Err(e) => tracing::error!(error = %e, "pruning the outbox failed"),
    }
    if let Err(e) = app.activity.prune().await {
        tracing::error!(error = %e, "pruning the activity counts failed");
    }
}

/// How long an event stays in the outbox after it was fanned out, once
/// every delivery of it is delivered or given up (the deliveries view
/// shows them meanwhile), in seconds: a week.
pub const OUTBOX_KEPT: i64 = 7 * 86_400;

/// Follows the revocation feed (Redis, or PostgreSQL's notifications),
/// resubscribing after a break. While unsubscribed, access tokens are
/// checked against the database.
async fn listen(app: Arc<App>) {
    let Some(feed) = app.feed.clone() else {
        return;
    };
    loop {
        let on_connected = {
            let app = app.clone();
            move |revoked: Vec<String>| {
                let now = app.now();
                app.revocations
                    .connected(revoked, now + app.issuer.deny_ttl(), now);
                tracing::info!("following revocations: sessions are cached until revoked");
            }
        };
        let on_revoked: latchkey_core::coordination::OnRevoked = {
            let app = app.clone();
            Box::new(move |sid| {
                let now = app.now();
                app.revocations
                    .revoke(sid, now + app.issuer.deny_ttl(), now);
            })
        };
        let result = feed.listen(&on_connected, &on_revoked).await;
        app.revocations.disconnected();
        if let Err(e) = result {
            tracing::warn!(error = ?e, "revocation feed lost; checking sessions in the database until it is back");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
