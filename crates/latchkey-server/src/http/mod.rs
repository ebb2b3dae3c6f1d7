//! The router: one module per resource.

mod account;
mod admin;
mod auth;
mod authorize;
mod browser;
mod client_auth;
mod console;
mod device;
mod devices;
mod discovery;
mod dpop;
mod extract;
mod factors;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod health;
mod me;
mod oauth;
mod pages;
mod recovery;
mod sessions;

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// Request bodies larger than this get `413`.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Request targets (path and query) longer than this get `414`: no
/// parameter of ours needs more, and every parser then sees bounded input.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

/// The whole HTTP interface over `state`.
pub fn app(state: AppState) -> Router {
    // The routes that sign browsers in set their device cookie; no other
    // route (the hot ones among them) passes through that layer.
    let sign_ins = Router::new()
        .merge(auth::router())
        .merge(authorize::router())
        .merge(device::router())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            devices::device_cookie,
        ));
    Router::new()
        .merge(account::router())
        .merge(console::router())
        .merge(admin::router())
        .merge(discovery::router())
        .merge(sign_ins)
        .merge(recovery::router())
        .merge(oauth::router())
        .merge(sessions::router())
        .merge(factors::router())
        .merge(me::router())
        .merge(health::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), track_latency))
        .layer(middleware::from_fn_with_state(state.clone(), body_deadline))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Reads the whole body (at most [`MAX_BODY_BYTES`]) within the request
/// timeout before the handler runs: a client that trickles its body in is
/// answered `408` and its connection closed; a larger body gets `413`, a
/// target longer than [`MAX_TARGET_BYTES`] `414`.
async fn body_deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let target = parts.uri.path_and_query().map_or(0, |t| t.as_str().len());
    if target > MAX_TARGET_BYTES {
        return ApiError::Plain {
            status: StatusCode::URI_TOO_LONG,
            code: "invalid_request",
            description: format!("the request target is longer than {MAX_TARGET_BYTES} bytes"),
        }
        .into_response();
    }
    let limit = std::time::Duration::from_secs(state.config().request_timeout.unsigned_abs());
    // A body already here (most are, and a GET has none) needs no timer.
    let mut collect = std::pin::pin!(axum::body::to_bytes(body, MAX_BODY_BYTES));
    let arrived = tokio::select! {
        biased;
        arrived = &mut collect => Ok(arrived),
        () = std::future::ready(()) => tokio::time::timeout(limit, &mut collect).await,
    };
    let bytes = match arrived {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return ApiError::Plain {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "invalid_request",
                description: format!("the body is larger than {MAX_BODY_BYTES} bytes or broken"),
            }
            .into_response();
        }
        Err(_) => {
            let mut response = ApiError::Plain {
                status: StatusCode::REQUEST_TIMEOUT,
                code: "invalid_request",
                description: "the request body did not arrive in time".into(),
            }
            .into_response();
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return response;
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Latency by route pattern (never the raw path, which may carry ids); the
/// request counts as in flight for the hashing gate meanwhile.
async fn track_latency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let _in_flight = state.passwords.gate().request();
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    state.metrics.observe_request(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
