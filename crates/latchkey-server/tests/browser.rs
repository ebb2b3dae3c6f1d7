//! Browser mode over HTTP (SPEC §4): the refresh token only in an HttpOnly
//! cookie, the custom header and the Origin check. The same cases run on
//! each storage backend.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;

mod sqlite {
    const BACKEND: crate::common::Backend = crate::common::Backend::Sqlite;
    include!("cases/browser.rs");
}

mod postgres {
    const BACKEND: crate::common::Backend = crate::common::Backend::Postgres;
    include!("cases/browser.rs");
}
