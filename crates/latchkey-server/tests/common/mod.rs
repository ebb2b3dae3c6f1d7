//! A real server on a loopback port over a fresh database (an SQLite file or
//! a PostgreSQL schema), per test.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

pub mod agent;
pub mod authenticator;
pub mod receiver;
pub mod smtp;

use aws_lc_rs::rand::SystemRandom;
use latchkey_core::password::PasswordHasher;
use latchkey_core::store::{Client, Store, User};
use latchkey_server::{AppState, Config, app};
use latchkey_store_postgres::PgStore;
use latchkey_store_sqlite::SqliteStore;
use serde_json::Value;

pub const PASSWORD: &str = "correct horse battery staple";

/// The storage backend a case runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh app on the case's `BACKEND`, or an early return (a skip) when
/// that backend's service is unavailable outside CI.
macro_rules! start {
    ($env:expr) => {
        match crate::common::TestApp::start(BACKEND, $env).await {
            Some(app) => app,
            None => return,
        }
    };
    ($env:expr, $clock:expr) => {
        match crate::common::TestApp::start_with_clock(BACKEND, $env, $clock).await {
            Some(app) => app,
            None => return,
        }
    };
}

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub http: reqwest::Client,
    pub backend: Backend,
    pub database_url: String,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn start(backend: Backend, env: &[(&str, &str)]) -> Option<Self> {
        Self::start_with_clock(backend, env, Arc::new(latchkey_core::clock::SystemClock)).await
    }

    /// The same, on `clock` (a `ManualClock` moves time without sleeping).
    pub async fn start_with_clock(
        backend: Backend,
        env: &[(&str, &str)],
        clock: Arc<dyn latchkey_core::clock::Clock>,
    ) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("latchkey.db").display()),
            Backend::Postgres => latchkey_store_tests::postgres_schema_url().await?,
        };
        Some(Self::serve(backend, database_url, dir, env, clock).await)
    }

    /// A second server on this one's database (another instance behind the
    /// same load balancer: the same issuer, `env` added).
    pub async fn beside(&self, env: &[(&str, &str)]) -> Self {
        let mut vars = vec![("LATCHKEY_ISSUER", self.base.as_str())];
        vars.extend_from_slice(env);
        let dir = tempfile::tempdir().expect("temp dir");
        Self::serve(
            self.backend,
            self.database_url.clone(),
            dir,
            &vars,
            Arc::new(latchkey_core::clock::SystemClock),
        )
        .await
    }

    async fn serve(
        backend: Backend,
        database_url: String,
        dir: tempfile::TempDir,
        env: &[(&str, &str)],
        clock: Arc<dyn latchkey_core::clock::Clock>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // The issuer (and so the allowed browser origin) is this server's
        // own address unless the case sets one.
        // Every client of a test comes from 127.0.0.1, where one address
        // stands for many clients: the per-address cap is raised to match.
        let mut vars = vec![
            ("LATCHKEY_DATABASE_URL".to_owned(), database_url.clone()),
            ("LATCHKEY_ISSUER".to_owned(), format!("http://{addr}")),
            (
                "LATCHKEY_MAX_CONNECTIONS_PER_ADDRESS".to_owned(),
                "4096".to_owned(),
            ),
        ];
        // `{port}` in a case's value is this server's port (an issuer named
        // `http://localhost:{port}`, as passkeys need).
        let port = addr.port().to_string();
        vars.extend(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.replace("{port}", &port))),
        );
        let config = Config::load(None, vars).expect("config").config;
        let store: Arc<dyn Store> = match backend {
            Backend::Sqlite => Arc::new(SqliteStore::open(&database_url).await.expect("store")),
            Backend::Postgres => Arc::new(PgStore::open(&database_url).await.expect("store")),
        };
        let state = AppState::with_clock(config, store, None, clock)
            .await
            .expect("state");
        latchkey_app::maintenance::spawn(state.app().clone());
        latchkey_app::delivery::spawn(
            state.app().clone(),
            Arc::new(
                latchkey_server::HttpTransport::for_config(state.config())
                    .expect("delivery client"),
            ),
        );
        let limits = latchkey_server::Limits::of(state.config());
        let router = app(state.clone());
        tokio::spawn(latchkey_server::serve(
            listener,
            router,
            limits,
            std::future::pending(),
        ));
        Self {
            base: format!("http://{addr}"),
            state,
            http: reqwest::Client::new(),
            backend,
            database_url,
            _dir: dir,
        }
    }

    /// Everything the database holds, as bytes: the SQLite files, or every
    /// row of every table rendered as text.
    pub async fn stored_data(&self) -> Vec<u8> {
        match self.backend {
            Backend::Sqlite => {
                let path = self.database_url.trim_start_matches("sqlite://").to_owned();
                let mut all = Vec::new();
                for suffix in ["", "-wal", "-shm"] {
                    if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
                        all.extend(bytes);
                    }
                }
                all
            }
            Backend::Postgres => self
                .postgres_rows(&[])
                .await
                .into_iter()
                .flat_map(|(_, row)| row.into_bytes())
                .collect(),
        }
    }

    /// Every row of every table of this PostgreSQL schema, as text, with
    /// its table.
    async fn postgres_rows(&self, except: &[&str]) -> Vec<(String, String)> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.database_url)
            .await
            .unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let mut rows = Vec::new();
        for table in tables {
            let found: Vec<String> = sqlx::query_scalar(&snapshot_query(&table, "t::text", except))
                .fetch_all(&mut conn)
                .await
                .unwrap();
            rows.extend(found.into_iter().map(|row| (table.clone(), row)));
        }
        rows
    }

    /// Every row of every table but `except` (and the migrations' own), as
    /// text, sorted: equal snapshots mean nothing changed. The outbox's
    /// events count (a change writes one), not the delivery engine's
    /// bookkeeping of them, which goes on in the background, nor the
    /// console's activity counts, which each instance adds every few
    /// seconds (a refused request counts as what happened, not as a change).
    pub async fn snapshot(&self, except: &[&str]) -> Vec<String> {
        let mut rows = Vec::new();
        match self.backend {
            Backend::Sqlite => {
                let path = self.database_url.trim_start_matches("sqlite://").to_owned();
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(10))
                    .unwrap();
                let mut tables = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .unwrap();
                let tables: Vec<String> = tables
                    .query_map([], |row| row.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                for table in tables {
                    if except.contains(&table.as_str())
                        || table.starts_with("_sqlx")
                        || table == "deliveries"
                        || table == "activity"
                    {
                        continue;
                    }
                    let mut statement = conn.prepare(&snapshot_query(&table, "*", except)).unwrap();
                    let columns = statement.column_count();
                    let mut found = statement.query([]).unwrap();
                    while let Some(row) = found.next().unwrap() {
                        let values: Vec<String> = (0..columns)
                            .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                            .collect();
                        rows.push(format!("{table}: {}", values.join(", ")));
                    }
                }
            }
            Backend::Postgres => {
                rows.extend(
                    self.postgres_rows(except)
                        .await
                        .into_iter()
                        .filter(|(table, _)| {
                            !except.contains(&table.as_str())
                                && !table.starts_with("_sqlx")
                                && table != "deliveries"
                                && table != "activity"
                        })
                        .map(|(table, row)| format!("{table}: {row}")),
                );
            }
        }
        rows.sort();
        rows
    }

    /// Runs one SQL statement on the database by hand, as an operator
    /// would, bypassing the server.
    pub async fn execute_sql(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let path = self.database_url.trim_start_matches("sqlite://").to_owned();
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(10))
                    .unwrap();
                conn.execute(sql, []).unwrap();
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&self.database_url)
                    .await
                    .unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn add_user(&self, name: &str) -> User {
        let rng = SystemRandom::new();
        let user = User {
            id: format!("usr_{name}"),
            username: name.into(),
            password_hash: PasswordHasher::new(&rng)
                .unwrap()
                .hash(PASSWORD, &rng)
                .unwrap(),
            disabled: false,
            created_at: 0,
            email: None,
            email_verified: false,
            admin: false,
        };
        self.state.store().insert_user(&user).await.unwrap();
        user
    }

    /// A first-party client (one that may log users in at `/auth/login`);
    /// confidential ones get a secret.
    pub async fn add_client(
        &self,
        id: &str,
        scope: &str,
        confidential: bool,
    ) -> (String, Option<String>) {
        let (secret, hash) = if confidential {
            let (s, h) = self
                .state
                .issuer
                .refresh_keys()
                .new_client_secret(&SystemRandom::new())
                .unwrap();
            (Some(s), Some(h))
        } else {
            (None, None)
        };
        let client = Client {
            id: id.into(),
            name: id.into(),
            secret_hash: hash,
            scope: scope.into(),
            created_at: 0,
            redirect_uris: Vec::new(),
            first_party: true,
            disabled: false,
            tokens_valid_after: 0,
            backchannel_logout_uri: None,
        };
        self.state.store().insert_client(&client).await.unwrap();
        (id.into(), secret)
    }

    /// Registers the admin client `lkc_admin` (`latchkey:admin`) and
    /// returns its own access token.
    pub async fn admin_token(&self) -> String {
        let (id, secret) = self.add_client("lkc_admin", "latchkey:admin", true).await;
        let response = self
            .http
            .post(self.url("/oauth/token"))
            .basic_auth(&id, secret.as_deref())
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "latchkey:admin"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        field(&body, "access_token").to_owned()
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Logs alice in in browser mode; returns the body and the cookie pair
    /// (`name=value`) the server set.
    pub async fn browser_login(&self) -> (Value, String, String) {
        let response = self
            .http
            .post(self.url("/auth/login"))
            .header("x-latchkey-browser", "1")
            .header("origin", &self.base)
            .form(&[("username", "alice"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let set_cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        let pair = set_cookie.split(';').next().unwrap().to_owned();
        (response.json().await.unwrap(), pair, set_cookie)
    }

    /// Logs in and returns the token response, asserting success.
    pub async fn login(&self, user: &str) -> Value {
        let response = self
            .post_form("/auth/login", &[("username", user), ("password", PASSWORD)])
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// The audit events of one kind, newest first.
    pub async fn audit(&self, kind: &str) -> Vec<latchkey_core::store::AuditEvent> {
        let filter = latchkey_core::store::AuditFilter {
            kind: Some(kind.into()),
            limit: 100,
            ..Default::default()
        };
        self.state.store().audit_events(&filter).await.unwrap()
    }

    /// An HTTP client whose connections come from another loopback address.
    pub fn client_from(ip: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    }

    pub async fn me(&self, access_token: &str) -> reqwest::Response {
        self.http
            .get(self.url("/api/me"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }
}

/// The claims of a JWT, unverified (the server checked the signature).
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub fn field<'a>(value: &'a Value, name: &str) -> &'a str {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {value}"))
}

pub async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Runs futures concurrently on this task.
pub async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futures.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.unwrap()).collect()
}

/// The PKCE verifier of [`TestApp::code_for`]'s codes.
pub const CODE_VERIFIER: &str = "a-verifier-that-is-long-enough-for-pkce-0123456789";

impl TestApp {
    /// Registers the first-party public client `client_id` (scopes `openid
    /// profile`, one redirect URI) and issues a code for `user` to
    /// `redirect_uri`, as the authorization pages would; PKCE verifier
    /// [`CODE_VERIFIER`].
    pub async fn code_for(&self, user: &User, client_id: &str, redirect_uri: &str) -> String {
        let client = Client {
            id: client_id.into(),
            name: client_id.into(),
            secret_hash: None,
            scope: "openid profile".into(),
            created_at: 0,
            redirect_uris: vec![redirect_uri.into()],
            first_party: true,
            disabled: false,
            tokens_valid_after: 0,
            backchannel_logout_uri: None,
        };
        self.state.store().insert_client(&client).await.unwrap();
        self.issue_code(user, &client).await
    }

    /// A code for `user` to `client` (already registered, with one
    /// redirect URI at least), as the pages would issue once the user
    /// consented; PKCE verifier [`CODE_VERIFIER`].
    pub async fn issue_code(&self, user: &User, client: &Client) -> String {
        use base64::Engine;
        let redirect_uri = client.redirect_uris[0].as_str();
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, CODE_VERIFIER.as_bytes());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        let scope = latchkey_core::scope::Scope::parse("openid profile").unwrap();
        let grant = latchkey_app::flows::CodeGrant {
            user,
            client,
            redirect_uri,
            code_challenge: &challenge,
            scope: &scope,
            nonce: None,
            auth_time: self.state.now(),
            auth_method: latchkey_core::strength::AuthMethod::Password,
        };
        self.state.authorizations.issue_code(&grant).await.unwrap()
    }
}

/// The query a snapshot reads `table` with: `all` (every column) but for
/// the outbox, whose events count and whose dispatch (the engine's, in the
/// background) does not; and without the events that mirror audit events
/// (failed and throttled logins) when the audit trail is left out.
fn snapshot_query(table: &str, all: &str, except: &[&str]) -> String {
    if table != "outbox" {
        return format!("SELECT {all} FROM \"{table}\" t");
    }
    let row = if all == "*" {
        "id, type, at, data"
    } else {
        "concat_ws(',', t.id, t.type, t.at, t.data)"
    };
    let mirrored = if except.contains(&"audit_events") {
        " WHERE t.type NOT IN ('login.failed', 'login.throttled')"
    } else {
        ""
    };
    format!("SELECT {row} FROM outbox t{mirrored}")
}
