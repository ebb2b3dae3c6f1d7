//! RFC 8414 discovery and the JWKS.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/jwks.json", get(jwks))
}

async fn metadata(State(state): State<AppState>) -> impl IntoResponse {
    let config = state.config();
    let issuer = &config.issuer;
    let mut grants = vec!["refresh_token", "client_credentials"];
    if config.password_grant {
        grants.push("password");
    }
    let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    let mut doc = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": grants,
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "login_endpoint": format!("{issuer}/auth/login"),
        "revocation_feed_endpoint": format!("{issuer}/oauth/revocations"),
    });
    doc["scopes_supported"] = json!(config.scopes.to_string().split(' ').collect::<Vec<_>>());
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(doc))
}

async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let keyring = state.keyring();
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(json!({ "keys": keyring.published })),
    )
}
