//! Sessions, lifetimes, IP binding, throttling, audit, metrics and garbage
//! collection, through the real router on a real SQLite file.
//! The same cases run on each storage backend.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;

mod sqlite {
    const BACKEND: crate::common::Backend = crate::common::Backend::Sqlite;
    include!("cases/sessions.rs");
}

mod postgres {
    const BACKEND: crate::common::Backend = crate::common::Backend::Postgres;
    include!("cases/sessions.rs");
}
