//! The one sink of what happened: every audit event is stored and logged
//! here, and the metrics that count events are counted here.

use std::sync::Arc;

use latchkey_core::clock::Clock;
use latchkey_core::store::{AuditEvent, RevocationReason, Store};

use super::Actor;
use crate::metrics::Counter;
use crate::metrics::Metrics;

/// Stores and logs audit events, counts what the metrics count.
#[derive(Clone)]
pub struct Events {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl Events {
    /// Events into `store`, stamped by `clock`, counted in `metrics`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            clock,
            metrics,
        }
    }

    /// The metrics counted here.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Records an event now: stored and logged. A failure to store it is
    /// logged, never shown to whoever caused it.
    pub async fn audit(
        &self,
        kind: &str,
        user_id: Option<&str>,
        session_id: Option<&str>,
        actor: &Actor,
        detail: &str,
    ) {
        let event = AuditEvent {
            at: self.clock.now(),
            kind: kind.to_owned(),
            user_id: user_id.map(str::to_owned),
            session_id: session_id.map(str::to_owned),
            client_id: actor.client_id.clone(),
            ip: Some(actor.ip.clone()),
            user_agent: (!actor.user_agent.is_empty()).then(|| actor.user_agent.clone()),
            detail: detail.to_owned(),
            actor_id: actor.admin_id.clone(),
        };
        Self::log(&event);
        if let Err(e) = self.store.append_audit(&event).await {
            tracing::error!(error = %e, kind, "audit event could not be stored");
        }
    }

    /// Logs an event that was stored in another transaction (a login's, a
    /// rotation's).
    pub fn log(event: &AuditEvent) {
        tracing::info!(
            target: "latchkey::audit",
            kind = %event.kind,
            user_id = event.user_id.as_deref(),
            session_id = event.session_id.as_deref(),
            client_id = event.client_id.as_deref(),
            ip = event.ip.as_deref().unwrap_or_default(),
            actor_id = event.actor_id.as_deref(),
            detail = %event.detail,
            "audit"
        );
    }

    /// Counts a revoked session by reason (an ended one too).
    pub fn count_revocation(&self, reason: RevocationReason) {
        self.metrics
            .inc(Counter::SessionsRevoked, &[("reason", reason.as_str())]);
        self.count_end(reason);
    }

    /// Counts an ended session by reason.
    pub fn count_end(&self, reason: RevocationReason) {
        self.count_ends(reason, 1);
    }

    /// Counts `n` sessions ended for `reason`.
    pub fn count_ends(&self, reason: RevocationReason, n: u64) {
        self.metrics
            .add(Counter::SessionsEnded, &[("reason", reason.as_str())], n);
    }
}
