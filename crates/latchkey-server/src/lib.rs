//! Latchkey's HTTP server: [`app`] builds the axum router over an
//! [`AppState`], which holds the configuration, a [`Store`] trait object and
//! the keys.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn latchkey_core::store::Store>) -> Result<(), Box<dyn std::error::Error>> {
//! use latchkey_server::{AppState, Config, app};
//! let state = AppState::new(Config::defaults(), store, None).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
//! axum::serve(listener, service).await?;
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
pub mod state;
pub mod throttle;

pub use config::Config;
pub use http::{MAX_BODY_BYTES, app};
pub use state::AppState;
