//! Latchkey's HTTP adapters: [`app`] builds the axum router over an
//! [`AppState`], the composed application of `latchkey-app`; the handlers
//! parse a request, call one flow or service, and render its answer. The
//! rules live in `latchkey-app` and `latchkey-core`, which know nothing of
//! HTTP.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn latchkey_core::store::Store>) -> Result<(), Box<dyn std::error::Error>> {
//! use latchkey_server::{AppState, Config, app};
//! let state = AppState::new(Config::defaults(), store, None).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let limits = latchkey_server::Limits::of(state.config());
//! latchkey_server::serve(listener, app(state), limits, std::future::pending()).await;
//! # Ok(()) }
//! ```
//!
//! [`Store`]: latchkey_core::store::Store

pub mod error;
mod http;
pub mod outbound;
pub mod serve;
pub mod state;

#[cfg(feature = "fuzzing")]
pub use http::fuzzing;
pub use http::{MAX_BODY_BYTES, MAX_TARGET_BYTES, app};
/// The configuration ([`latchkey_app::config`]), which the HTTP layer reads
/// too.
pub use latchkey_app::config;
pub use latchkey_app::config::Config;
pub use outbound::HttpTransport;
pub use serve::{Limits, serve};
pub use state::AppState;
