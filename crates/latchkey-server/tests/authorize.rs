//! The authorization code flow with PKCE and OpenID Connect over HTTP
//! (SPEC §10), driven the way a browser submits the forms, and stock
//! clients (`oauth2`, `openidconnect`) unmodified; on every backend.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;

mod sqlite {
    const BACKEND: crate::common::Backend = crate::common::Backend::Sqlite;
    include!("cases/authorize.rs");
}

mod postgres {
    const BACKEND: crate::common::Backend = crate::common::Backend::Postgres;
    include!("cases/authorize.rs");
}
