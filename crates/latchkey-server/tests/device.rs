//! The device authorization grant (RFC 8628, SPEC §16) over HTTP: a device
//! asks for codes and polls; a person types the code on `/device`, signs in
//! and answers; on every backend. The page in a real browser is in
//! `chromium.rs`.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;

mod sqlite {
    const BACKEND: crate::common::Backend = crate::common::Backend::Sqlite;
    include!("cases/device.rs");
}

mod postgres {
    const BACKEND: crate::common::Backend = crate::common::Backend::Postgres;
    include!("cases/device.rs");
}
