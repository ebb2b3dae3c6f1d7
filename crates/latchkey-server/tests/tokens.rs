//! The token server over HTTP: login, rotation, reuse detection, grace window,
//! revocation and the access-token profile.
//! The same cases run on each storage backend.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;

mod sqlite {
    const BACKEND: crate::common::Backend = crate::common::Backend::Sqlite;
    include!("cases/tokens.rs");
}

mod postgres {
    const BACKEND: crate::common::Backend = crate::common::Backend::Postgres;
    include!("cases/tokens.rs");
}
