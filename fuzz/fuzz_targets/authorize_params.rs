//! The authorize parameters: any query, checked as `GET /oauth/authorize`
//! checks it against a registered client (SQLite store). Never a panic;
//! whatever is accepted has a registered redirect URI (or its loopback form
//! with another port) and an S256 challenge.
#![no_main]

use std::sync::{Arc, LazyLock};

use latchkey_core::code::is_s256_challenge;
use latchkey_core::store::{Client, Store};
use latchkey_app::flows::redirect_uri_allowed;
use latchkey_server::{AppState, Config, fuzzing};
use latchkey_store_sqlite::SqliteStore;
use libfuzzer_sys::fuzz_target;

struct World {
    runtime: tokio::runtime::Runtime,
    state: AppState,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("latchkey-fuzz-authorize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url = format!("sqlite://{}", dir.join("fuzz.db").display());
    let state = runtime.block_on(async {
        let vars = vec![
            ("LATCHKEY_DATABASE_URL".to_owned(), url.clone()),
            ("LATCHKEY_LOG".to_owned(), "off".to_owned()),
        ];
        let config = Config::load(None, vars).expect("config").config;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.expect("store"));
        for (id, uris) in [
            ("app", vec!["https://app.example/cb".to_owned()]),
            (
                "native",
                vec![
                    "http://127.0.0.1/cb".to_owned(),
                    "com.example.app:/cb".to_owned(),
                ],
            ),
        ] {
            let client = Client {
                id: id.into(),
                name: id.into(),
                secret_hash: None,
                scope: "openid profile read".into(),
                created_at: 0,
                redirect_uris: uris,
                first_party: false,
                disabled: false,
                tokens_valid_after: 0,
                backchannel_logout_uri: None,
            };
            store.insert_client(&client).await.ok();
        }
        AppState::new(config, store, None).await.expect("state")
    });
    World { runtime, state }
});

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let accepted = world
        .runtime
        .block_on(fuzzing::authorize_query(&world.state, data));
    if let Some((client, redirect_uri, challenge)) = accepted {
        assert!(redirect_uri_allowed(&client.redirect_uris, &redirect_uri));
        assert!(is_s256_challenge(&challenge));
    }
});
