//! Bad input at every endpoint (issue 19): wrong content types, repeated,
//! missing and empty parameters, invalid UTF-8, NUL bytes, huge bodies,
//! headers and queries, on every backend. Each gets a clear `4xx`, nothing
//! in the database changes, and the server stays up.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;

mod sqlite {
    const BACKEND: crate::common::Backend = crate::common::Backend::Sqlite;
    include!("cases/hostile.rs");
}

mod postgres {
    const BACKEND: crate::common::Backend = crate::common::Backend::Postgres;
    include!("cases/hostile.rs");
}
