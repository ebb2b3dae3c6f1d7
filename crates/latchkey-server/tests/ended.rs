//! Every session end has a reason (SPEC §14), on every backend: the refresh
//! that finds it ended says why, the listings show it, the metric counts it.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

#[macro_use]
mod common;

mod sqlite {
    const BACKEND: crate::common::Backend = crate::common::Backend::Sqlite;
    include!("cases/ended.rs");
}

mod postgres {
    const BACKEND: crate::common::Backend = crate::common::Backend::Postgres;
    include!("cases/ended.rs");
}
