//! `GET /api/me`: the protected example resource.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::extract::Authenticated;
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/me", get(me))
}

async fn me(Authenticated(principal): Authenticated) -> Json<Value> {
    let c = principal.claims;
    Json(json!({
        "sub": c.sub,
        "username": principal.user.map(|u| u.username),
        "scope": c.scope,
        "sid": c.sid,
        "client_id": c.client_id,
    }))
}
