//! RFC 8414 discovery and the JWKS.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use latchkey_core::strength::Acr;
use serde_json::json;

use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/.well-known/jwks.json", get(jwks))
}

async fn metadata(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(document(&state)),
    )
}

/// OpenID Connect Discovery 1.0: RFC 8414's document and the members
/// OpenID Connect requires.
async fn openid_configuration(State(state): State<AppState>) -> impl IntoResponse {
    let mut doc = document(&state);
    doc["subject_types_supported"] = json!(["public"]);
    doc["id_token_signing_alg_values_supported"] = json!([state.config().signing_alg.as_str()]);
    doc["claims_supported"] = json!([
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "amr",
        "acr",
        "nonce",
        "sid",
        "at_hash",
        "preferred_username",
        "email",
        "email_verified"
    ]);
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(doc))
}

fn document(state: &AppState) -> serde_json::Value {
    let config = state.config();
    let issuer = &config.issuer;
    // The grants registered in the composition root, in order.
    let grants = state.grants.grant_types();
    let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    let mut doc = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "device_authorization_endpoint": format!("{issuer}/oauth/device_authorization"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": grants,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "userinfo_endpoint": format!("{issuer}/oauth/userinfo"),
        "end_session_endpoint": format!("{issuer}/oauth/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "dpop_signing_alg_values_supported": latchkey_core::dpop::ALGORITHMS,
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "login_endpoint": format!("{issuer}/auth/login"),
        "revocation_feed_endpoint": format!("{issuer}/oauth/revocations"),
        // OpenID Connect Back-Channel Logout 1.0 (SPEC §14): logout tokens
        // carry `sid`.
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    });
    doc["scopes_supported"] = json!(config.scopes.to_string().split(' ').collect::<Vec<_>>());
    doc["acr_values_supported"] = json!(Acr::ALL.map(Acr::as_str));
    doc
}

async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let keyring = state.issuer.keyring();
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(json!({ "keys": keyring.published })),
    )
}
