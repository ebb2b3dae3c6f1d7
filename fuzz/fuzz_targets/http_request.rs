//! The server's parsers, through its real router: token-endpoint and login
//! forms, authorize parameters and forms, admin JSON bodies, cookies, DPoP
//! and Authorization headers, introspection. Any input: never a panic, never
//! a 500.
#![no_main]

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::http::Request;
use latchkey_core::store::{Client, Store, User};
use latchkey_server::{AppState, Config, app};
use latchkey_store_sqlite::SqliteStore;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct World {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    admin: String,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("latchkey-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url = format!("sqlite://{}", dir.join("fuzz.db").display());
    let (router, admin) = runtime.block_on(async {
        let vars = vec![
            ("LATCHKEY_DATABASE_URL".to_owned(), url.clone()),
            ("LATCHKEY_LOG".to_owned(), "off".to_owned()),
        ];
        let config = Config::load(None, vars).expect("config").config;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.expect("store"));
        store
            .insert_user(&User {
                id: "usr_alice".into(),
                username: "alice".into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g".into(),
                disabled: false,
                created_at: 0,
                email: None,
                email_verified: false,
                admin: false,
            })
            .await
            .ok();
        let state = AppState::new(config, store.clone(), None).await.expect("state");
        let (_, hash) = state
            .issuer.refresh_keys()
            .new_client_secret(&aws_lc_rs::rand::SystemRandom::new())
            .expect("secret");
        let client = Client {
            id: "lkc_admin".into(),
            name: "admin".into(),
            secret_hash: Some(hash),
            scope: "latchkey:admin openid profile".into(),
            created_at: 0,
            redirect_uris: vec!["https://app.example/cb".into()],
            first_party: false,
            disabled: false,
            tokens_valid_after: 0,
            backchannel_logout_uri: None,
        };
        store.insert_client(&client).await.ok();
        let admin = latchkey_app::flows::ClientCredentialsGrant::new(state.issuer.clone())
            .client_token(&client, Some("latchkey:admin"), None)
            .expect("admin token")
            .access_token;
        (app(state), admin)
    });
    World {
        runtime,
        router,
        admin,
    }
});

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    let form = "application/x-www-form-urlencoded";
    let json = "application/json";
    let admin = format!("Bearer {}", world.admin);
    let builder = Request::builder().header("origin", "http://127.0.0.1:8080");
    let request = match selector % 10 {
        0 => builder
            .method("POST")
            .uri("/oauth/token")
            .header("content-type", form)
            .body(Body::from(rest.to_vec())),
        1 => builder
            .method("POST")
            .uri("/auth/login")
            .header("content-type", json)
            .body(Body::from(rest.to_vec())),
        2 => builder
            .method("GET")
            .uri(format!("/oauth/authorize?{text}"))
            .body(Body::empty()),
        3 => builder
            .method("POST")
            .uri("/admin/users")
            .header("authorization", &admin)
            .header("content-type", json)
            .body(Body::from(rest.to_vec())),
        4 => builder
            .method("PATCH")
            .uri("/admin/users/usr_alice")
            .header("authorization", &admin)
            .header("content-type", json)
            .body(Body::from(rest.to_vec())),
        5 => builder
            .method("POST")
            .uri("/auth/refresh")
            .header("x-latchkey-browser", "1")
            .header("cookie", rest)
            .body(Body::empty()),
        6 => builder
            .method("GET")
            .uri(format!("/admin/audit?{text}"))
            .header("authorization", &admin)
            .body(Body::empty()),
        7 => builder
            .method("GET")
            .uri("/api/me")
            .header("authorization", format!("DPoP {text}"))
            .header("dpop", rest)
            .body(Body::empty()),
        8 => builder
            .method("POST")
            .uri("/oauth/authorize")
            .header("content-type", form)
            .header("cookie", "__Host-lk_csrf=x")
            .body(Body::from(rest.to_vec())),
        _ => builder
            .method("POST")
            .uri("/oauth/introspect")
            .header("authorization", rest)
            .header("content-type", form)
            .body(Body::from("token=x")),
    };
    // An input that is not even a valid HTTP request is not our parser's.
    let Ok(request) = request else {
        return;
    };
    let response = world
        .runtime
        .block_on(world.router.clone().oneshot(request))
        .expect("infallible");
    assert_ne!(response.status().as_u16(), 500, "selector {selector}");
});
