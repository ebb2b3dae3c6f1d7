//! The shared storage suite, on a fresh SQLite file per test.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

use std::sync::Arc;

use latchkey_core::store::Store;
use latchkey_store_sqlite::SqliteStore;

async fn fresh_store() -> Option<Arc<dyn Store>> {
    // The directory is leaked on purpose: it must outlive the test's store.
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let url = format!("sqlite://{}", dir.join("test.db").display());
    Some(Arc::new(SqliteStore::open(&url).await.expect("open store")))
}

latchkey_store_tests::suite!(fresh_store().await);
