//! The outbox's channels (SPEC §14), on every backend: webhooks of every
//! event type, signed per Standard Webhooks and checked with its reference
//! verifier; a receiver that fails then recovers; back-channel logout
//! tokens checked against the JWKS; the admin API's refusals and cap.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;

mod sqlite {
    const BACKEND: crate::common::Backend = crate::common::Backend::Sqlite;
    include!("cases/webhooks.rs");
}

mod postgres {
    const BACKEND: crate::common::Backend = crate::common::Backend::Postgres;
    include!("cases/webhooks.rs");
}
