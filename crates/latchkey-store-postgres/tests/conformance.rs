//! The shared storage suite, on a fresh PostgreSQL schema per test.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

use std::sync::Arc;

use latchkey_core::store::Store;
use latchkey_store_postgres::PgStore;

async fn fresh_store() -> Option<Arc<dyn Store>> {
    let url = latchkey_store_tests::postgres_schema_url().await?;
    Some(Arc::new(PgStore::open(&url).await.expect("open store")))
}

latchkey_store_tests::suite!(fresh_store().await);
