//! Faults of the database under a running server (issue 19, part): a
//! failing database answers `503` with `Retry-After` and a clear message,
//! changes nothing, and the server recovers by itself when the database
//! does. On every backend.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;

mod sqlite {
    const BACKEND: crate::common::Backend = crate::common::Backend::Sqlite;
    include!("cases/faults.rs");
}

mod postgres {
    const BACKEND: crate::common::Backend = crate::common::Backend::Postgres;
    include!("cases/faults.rs");
}
