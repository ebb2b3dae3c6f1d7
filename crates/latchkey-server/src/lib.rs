//! Latchkey's HTTP server: [`app`] builds the axum router over an
//! [`AppState`], which holds the configuration, a [`Store`] trait object and
//! the keys.
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

pub mod config;
pub mod error;
mod hashing;
mod http;
pub mod keyring;
pub mod maintenance;
pub mod metrics;
pub mod revocation;
pub mod serve;
pub mod service;
pub mod state;
pub mod throttle;

pub use config::Config;
#[cfg(feature = "fuzzing")]
pub use http::fuzzing;
pub use http::{MAX_BODY_BYTES, MAX_TARGET_BYTES, app};
pub use serve::{Limits, serve};
pub use state::AppState;
