//! Accounts people can recover (SPEC §13), on every backend, with a real
//! SMTP server on loopback: verification, forgotten passwords and resets
//! (with the second factor), password changes, new-device notices and
//! `This wasn't me`, an SMTP outage, the events without SMTP, the timing and
//! throttling of `forgot`, and recognised browsers' own login budgets.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;

mod sqlite {
    const BACKEND: crate::common::Backend = crate::common::Backend::Sqlite;
    include!("cases/recovery.rs");
}

mod postgres {
    const BACKEND: crate::common::Backend = crate::common::Backend::Postgres;
    include!("cases/recovery.rs");
}
