//! Latchkey's application layer: every operation on tokens, sessions,
//! accounts and clients once, for the HTTP adapters (`latchkey-server`) and
//! the command line alike, which only parse, call and render.
//!
//! * [`flows`]: one type per flow (login, refresh, client credentials, the
//!   authorization code, the device code, sign-up, sessions made by the
//!   admin API, introspection, revocation, checking access tokens), each
//!   holding only what it uses; the grants of the token endpoint implement
//!   [`flows::Grant`] and are registered once in a [`flows::GrantRegistry`].
//! * [`service`]: what the flows share (the [`service::TokenIssuer`], the
//!   password hashing service, client authentication, DPoP proofs, the
//!   attempt counters, the events sink, revoking sessions) and the account
//!   services of the admin API and the command line (users, clients, keys).
//! * [`compose`]: [`App::build`] composes all of it from a configuration,
//!   once, for `serve` and for every command.
//!
//! This crate depends on the domain (`latchkey-core`) and its traits, never
//! on axum, hyper or tower: a rule of layers broken is a build error.

pub mod activity;
pub mod compose;
pub mod config;
pub mod delivery;
pub mod flows;
pub mod hashing;
pub mod keyring;
pub mod mail;
pub mod maintenance;
pub mod metrics;
pub mod revocation;
pub mod service;
pub mod throttle;

pub use compose::App;
pub use config::Config;
