//! The router: one module per resource.

mod api;
mod auth;
mod discovery;
mod extract;
mod oauth;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

/// Request bodies larger than this get `413`.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The whole HTTP interface over `state`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(discovery::router())
        .merge(auth::router())
        .merge(oauth::router())
        .merge(api::router())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
