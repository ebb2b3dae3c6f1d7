//! Delivery throughput of the outbox: `EVENTS` `user.created` events (users
//! inserted, each writing its event by trigger) drained by one instance's
//! delivery engine to a webhook on a real HTTP receiver on loopback, signed
//! and posted over hyper's client, each outcome recorded. Prints events per
//! second per run.
//!
//! ```text
//! cargo bench -p latchkey-server --bench delivery
//! ```

#![allow(clippy::unwrap_used)] // A benchmark that cannot unwrap has failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use latchkey_app::service::Actor;
use latchkey_core::store::{Store, User};
use latchkey_server::{AppState, Config, HttpTransport};

const EVENTS: usize = 5_000;
const RUNS: usize = 3;

async fn run(received: Arc<AtomicUsize>, receiver: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let vars = vec![
        ("LATCHKEY_DATABASE_URL".to_owned(), url.clone()),
        ("LATCHKEY_LOG".to_owned(), "warn".to_owned()),
    ];
    let config = Config::load(None, vars).unwrap().config;
    let store: Arc<dyn Store> = Arc::new(
        latchkey_store_sqlite::SqliteStore::open(&url)
            .await
            .unwrap(),
    );
    let state = AppState::new(config, store.clone(), None).await.unwrap();
    let app = state.app().clone();
    app.webhooks
        .add(receiver, &["user.created".to_owned()], &Actor::cli())
        .await
        .unwrap();
    for i in 0..EVENTS {
        store
            .insert_user(&User {
                id: format!("usr_{i}"),
                username: format!("u{i}"),
                password_hash: "$argon2id$placeholder".into(),
                disabled: false,
                created_at: 0,
                email: None,
                email_verified: false,
                admin: false,
            })
            .await
            .unwrap();
    }
    received.store(0, Ordering::SeqCst);
    let transport: Arc<dyn latchkey_app::delivery::Transport> =
        Arc::new(HttpTransport::new().unwrap());
    let started = Instant::now();
    while received.load(Ordering::SeqCst) < EVENTS {
        latchkey_app::delivery::round(&app, &transport).await;
    }
    EVENTS as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let received = Arc::new(AtomicUsize::new(0));
        let count = received.clone();
        let router = axum::Router::new().fallback(move || {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::NO_CONTENT
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        for _ in 0..RUNS {
            let rate = run(received.clone(), &receiver).await;
            println!("delivery/sqlite: {EVENTS} webhook events in {rate:.0} events/s");
        }
    });
}
