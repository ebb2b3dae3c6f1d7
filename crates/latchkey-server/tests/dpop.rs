//! DPoP (RFC 9449) over HTTP: proofs at the token endpoints, tokens bound to
//! the key, protected resources that need a fresh proof, replay refused,
//! also across two instances on one database; on every backend.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;

mod sqlite {
    const BACKEND: crate::common::Backend = crate::common::Backend::Sqlite;
    include!("cases/dpop.rs");
}

mod postgres {
    const BACKEND: crate::common::Backend = crate::common::Backend::Postgres;
    include!("cases/dpop.rs");
}
