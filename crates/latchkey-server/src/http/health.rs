//! What operators poll: `GET /healthz` (liveness) and `GET /metrics`
//! (Prometheus text format).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The counters and histogram of this instance, and the gauges read from
/// the database (the same on every instance): deliveries waiting.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    match state.store().deliveries_waiting().await {
        Ok(waiting) => {
            let name = "latchkey_deliveries_waiting";
            text.push_str(&format!(
                "# HELP {name} Outbox deliveries still to be sent (webhooks, back-channel logouts, mail), from the database.\n\
                 # TYPE {name} gauge\n{name} {waiting}\n"
            ));
        }
        Err(e) => tracing::warn!(error = %e, "counting the deliveries waiting failed"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
