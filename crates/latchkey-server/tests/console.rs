//! The operator's console (SPEC §15), on every backend: who gets the scope
//! `latchkey:admin` from a sign-in (an admin, strongly enough, first-party,
//! nobody else), the admin API's checks of such a token on every call, the
//! admin's user id in the audit trail, the overview's counts shared by every
//! instance, the search of users, `Send password reset`, and the page itself
//! in real headless Chromium.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;
mod driver;

mod sqlite {
    const BACKEND: crate::common::Backend = crate::common::Backend::Sqlite;
    include!("cases/console.rs");
}

mod postgres {
    const BACKEND: crate::common::Backend = crate::common::Backend::Postgres;
    include!("cases/console.rs");
}
