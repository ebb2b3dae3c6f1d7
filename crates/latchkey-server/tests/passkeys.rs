//! Passkeys (SPEC §12) over HTTP, on every backend, answered by a software
//! authenticator that speaks WebAuthn as a browser would.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;

mod sqlite {
    const BACKEND: crate::common::Backend = crate::common::Backend::Sqlite;
    include!("cases/passkeys.rs");
}

mod postgres {
    const BACKEND: crate::common::Backend = crate::common::Backend::Postgres;
    include!("cases/passkeys.rs");
}
