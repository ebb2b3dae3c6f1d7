//! Faults with real processes: the server killed with SIGKILL in a refresh
//! burst, PostgreSQL and Redis stopped and started under a running server,
//! a full disk and a read-only file under SQLite.
//!
//! PostgreSQL and Redis here are private processes this test starts (a
//! cluster of its own on a free port, a `redis-server` of its own), so that
//! stopping them disturbs nothing else. The disk tests mount a small tmpfs,
//! which needs root. Without what a test needs it prints that it skips; under
//! `CI` it fails instead.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Env, PASSWORD, SESSION_LOOKUPS, Server};
use serde_json::Value;
use sqlx::Connection;

/// The grace window these tests run with. It is what makes an answer lost
/// in a crash harmless: a client that never saw the answer to a committed
/// rotation presents its token again and gets the same successor.
const GRACE: &str = "60s";

/// Skips (or, under `CI`, fails) a test that lacks `what`.
fn unavailable(what: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is required under CI");
    }
    eprintln!("skipping: {what} is not available");
    true
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn s<'a>(value: &'a Value, name: &str) -> &'a str {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {value}"))
}

async fn login(http: &reqwest::Client, server: &Server, user: &str) -> reqwest::Response {
    http.post(server.url("/auth/login"))
        .form(&[("username", user), ("password", PASSWORD)])
        .send()
        .await
        .unwrap()
}

async fn refresh(
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> reqwest::Result<reqwest::Response> {
    http.post(format!("{base}/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
}

async fn me(http: &reqwest::Client, base: &str, token: &str) -> u16 {
    common::bearer_status(http, &format!("{base}/api/me"), token).await
}

/// Asserts that a refused answer is the outage answer: `503`,
/// `temporarily_unavailable`, `Retry-After`.
async fn assert_outage(response: reqwest::Response, during: &str) {
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let body: Value = response.json().await.unwrap_or_default();
    assert_eq!(status, 503, "{during}: {body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{during}: {body}");
    assert!(retry_after, "{during}: no Retry-After");
}

/// The most live (unused) refresh tokens any session has.
async fn most_live_tokens(database_url: &str) -> i64 {
    if let Some(path) = database_url.strip_prefix("sqlite://") {
        let db = rusqlite::Connection::open(path).unwrap();
        db.query_row(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM refresh_tokens WHERE used_at IS NULL GROUP BY session_id)",
            [],
            |row| row.get(0),
        )
        .unwrap()
    } else {
        let mut db = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query_scalar(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM refresh_tokens WHERE used_at IS NULL GROUP BY session_id) c",
        )
        .fetch_one(&mut db)
        .await
        .unwrap()
    }
}

async fn revoked_sessions(database_url: &str) -> i64 {
    let sql = "SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL";
    if let Some(path) = database_url.strip_prefix("sqlite://") {
        let db = rusqlite::Connection::open(path).unwrap();
        db.query_row(sql, [], |row| row.get(0)).unwrap()
    } else {
        let mut db = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut db).await.unwrap()
    }
}

// ---------------------------------------------------------------------------
// kill -9 in a refresh burst

/// One refresh chain's history: every pair answered with a 200, in order.
type Chain = Vec<Value>;

/// Chains refresh as fast as they can until the server disappears; then the
/// server is killed with SIGKILL, started again on the same database, and
/// every token answered with a 200 is checked: each access token still
/// works, each chain's last refresh token refreshes, no session has two
/// live tokens, none was revoked.
async fn kill_9_in_a_refresh_burst(env: Env) {
    const CHAINS: usize = 16;
    for i in 0..CHAINS {
        env.add_user(&format!("u{i}"));
    }
    let http = http();
    let server = env.serve();
    let mut firsts = Vec::new();
    for i in 0..CHAINS {
        let response = login(&http, &server, &format!("u{i}")).await;
        assert_eq!(response.status(), 200);
        firsts.push(response.json::<Value>().await.unwrap());
    }
    let mut tasks = Vec::new();
    for first in firsts {
        let (http, base) = (http.clone(), server.base.clone());
        tasks.push(tokio::spawn(async move {
            let mut chain: Chain = vec![first];
            loop {
                let token = s(chain.last().unwrap(), "refresh_token").to_owned();
                match refresh(&http, &base, &token).await {
                    Ok(response) if response.status() == 200 => match response.json().await {
                        Ok(pair) => chain.push(pair),
                        // The body was cut off by the kill: never seen.
                        Err(_) => return chain,
                    },
                    Ok(response) => panic!("refresh answered {}", response.status()),
                    Err(_) => return chain,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.kill9();
    let mut chains = Vec::new();
    for task in tasks {
        chains.push(task.await.unwrap());
    }
    let answered: usize = chains.iter().map(|c| c.len() - 1).sum();
    assert!(
        answered > CHAINS,
        "the burst never got going ({answered} refreshes)"
    );

    let server = env.serve();
    let url = env.database_url();
    assert!(
        most_live_tokens(&url).await <= 1,
        "a session has two live tokens"
    );
    for chain in &chains {
        for pair in chain {
            assert_eq!(
                me(&http, &server.base, s(pair, "access_token")).await,
                200,
                "an access token answered with a 200 before the crash is refused"
            );
        }
        let last = s(chain.last().unwrap(), "refresh_token");
        let response = refresh(&http, &server.base, last).await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "the last refresh token answered with a 200 is refused: {}",
            response.text().await.unwrap_or_default()
        );
    }
    assert!(
        most_live_tokens(&url).await <= 1,
        "a session has two live tokens"
    );
    assert_eq!(revoked_sessions(&url).await, 0, "a session was revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_in_a_refresh_burst_loses_nothing_on_sqlite() {
    kill_9_in_a_refresh_burst(Env::new(&[("LATCHKEY_REUSE_GRACE", GRACE)])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_in_a_refresh_burst_loses_nothing_on_postgres() {
    let Some(env) = Env::postgres(&[("LATCHKEY_REUSE_GRACE", GRACE)]).await else {
        return;
    };
    kill_9_in_a_refresh_burst(env).await;
}

// ---------------------------------------------------------------------------
// PostgreSQL stopped and started

/// A PostgreSQL cluster of this test's own, run by the `postgres` user when
/// the test runs as root (PostgreSQL refuses to run as root).
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn find_bin() -> Option<PathBuf> {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .collect();
        versions.sort();
        versions.pop()
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn run(&self, mut command: Command, what: &str) {
        let output = command
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            output.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start() -> Option<Self> {
        let bin = Self::find_bin()?;
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .ok()?;
            if !status.success() {
                return None;
            }
        }
        let cluster = Self {
            dir,
            bin,
            port: free_port(),
        };
        let mut initdb = cluster.command("initdb");
        initdb
            .args([
                "-U",
                "latchkey",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(cluster.data());
        cluster.run(initdb, "initdb");
        cluster.pg_ctl_start();
        Some(cluster)
    }

    fn pg_ctl_start(&self) {
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.dir.path().display()
            ))
            .args(["-w", "start"]);
        self.run(start, "pg_ctl start");
    }

    /// Immediate shutdown: the processes quit without a checkpoint, as in a
    /// crash; the next start recovers from the WAL.
    fn crash(&self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"]);
        self.run(stop, "pg_ctl stop");
    }

    fn url(&self) -> String {
        format!("postgres://latchkey@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
    }
}

/// What the load saw.
#[derive(Default)]
struct Seen {
    ok: u64,
    unavailable: u64,
}

/// A client that refreshes and calls the API until told to stop: on a `503`
/// it waits and presents the same token again, as RFC 6749 clients retry.
/// Anything but `200` or the outage answer fails the test.
async fn steady_client(
    http: reqwest::Client,
    base: String,
    mut pair: Value,
    stop: Arc<AtomicBool>,
) -> (Value, Seen) {
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        let response = refresh(&http, &base, s(&pair, "refresh_token"))
            .await
            .unwrap();
        if response.status() == 200 {
            pair = response.json().await.unwrap();
            seen.ok += 1;
        } else {
            assert_outage(response, "refresh").await;
            seen.unavailable += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let response = http
            .get(format!("{base}/api/me"))
            .bearer_auth(s(&pair, "access_token"))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            seen.ok += 1;
        } else {
            assert_outage(response, "/api/me").await;
            seen.unavailable += 1;
        }
    }
    (pair, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_stopped_under_load_answers_503_and_the_server_recovers_by_itself() {
    let Some(postgres) = PrivatePostgres::start() else {
        unavailable("a PostgreSQL installation (initdb, pg_ctl) to run a private cluster");
        return;
    };
    let mut env = Env::new(&[("LATCHKEY_REUSE_GRACE", GRACE)]);
    env.set("LATCHKEY_DATABASE_URL", &postgres.url());
    for i in 0..8 {
        env.add_user(&format!("u{i}"));
    }
    let http = http();
    let server = env.serve();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..8 {
        let response = login(&http, &server, &format!("u{i}")).await;
        assert_eq!(response.status(), 200);
        let pair: Value = response.json().await.unwrap();
        clients.push(tokio::spawn(steady_client(
            http.clone(),
            server.base.clone(),
            pair,
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    postgres.crash();

    // While it is down: the outage answer, for logins too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_outage(login(&http, &server, "u0").await, "login").await;
    let health = http.get(server.url("/healthz")).send().await.unwrap();
    assert!(health.status().is_success() || health.status() == 503);

    postgres.pg_ctl_start();
    // Back: within seconds every client is served again, without a restart.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = login(&http, &server, "u0").await;
        if response.status() == 200 {
            break;
        }
        assert_outage(response, "login after the restart").await;
        assert!(Instant::now() < deadline, "no recovery within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut unavailable = 0;
    for client in clients {
        let (pair, seen) = client.await.unwrap();
        assert!(seen.ok > 0);
        unavailable += seen.unavailable;
        // Each chain goes on where it was: nothing lost, nothing revoked.
        let response = refresh(&http, &server.base, s(&pair, "refresh_token"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert!(unavailable > 0, "the outage was never seen");
    assert!(most_live_tokens(&postgres.url()).await <= 1);
    assert_eq!(revoked_sessions(&postgres.url()).await, 0);
}

// ---------------------------------------------------------------------------
// Redis stopped and started

/// A `redis-server` of this test's own, without persistence: a restart
/// loses everything it held, as the security model assumes it may.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    fn start(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(redis)
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn until_refused(http: &reqwest::Client, base: &str, token: &str) {
    for _ in 0..150 {
        if me(http, base, token).await == 401 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("a revoked token is still accepted");
}

async fn logout(http: &reqwest::Client, server: &Server, access_token: &str) {
    let response = http
        .post(server.url("/auth/logout"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopped_and_started_falls_back_to_the_database_and_loses_nothing() {
    let Some(mut env) = Env::postgres(&[]).await else {
        return;
    };
    let port = free_port();
    let Some(redis) = PrivateRedis::start(port) else {
        unavailable("redis-server");
        return;
    };
    env.set("LATCHKEY_REDIS_URL", &redis.url());
    env.add_user("alice");
    let http = http();
    let a = env.serve();
    let b = env.serve();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before: Value = login(&http, &a, "alice").await.json().await.unwrap();
    assert_eq!(me(&http, &b.base, s(&before, "access_token")).await, 200);

    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Logins go on (the throttle lets them through and logs why) without
    // waiting for Redis, wrong passwords are still wrong, tokens still
    // verify and refresh.
    let started = Instant::now();
    let during: Value = login(&http, &a, "alice").await.json().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a login waited {:?} for the missing Redis",
        started.elapsed()
    );
    let wrong = http
        .post(a.url("/auth/login"))
        .form(&[("username", "alice"), ("password", "not the password")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(me(&http, &b.base, s(&during, "access_token")).await, 200);
    let response = refresh(&http, &b.base, s(&before, "refresh_token"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let before: Value = response.json().await.unwrap();
    // A revocation on A reaches B through the database: B reads every
    // session while its subscription is down.
    logout(&http, &a, s(&during, "access_token")).await;
    until_refused(&http, &b.base, s(&during, "access_token")).await;
    until_refused(&http, &a.base, s(&during, "access_token")).await;

    assert!(
        a.log_text().contains("attempt counters unavailable"),
        "the throttle's fallback was not logged"
    );

    // Redis back, empty: both instances subscribe again by themselves, the
    // revocation made while it was away still holds, and announcements
    // flow again (B refuses a token revoked on A without reading it).
    let _redis = PrivateRedis::start(port).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let subscribed = |server: &Server| server.log_text().matches("following revocations").count();
    while subscribed(&a) < 2 || subscribed(&b) < 2 {
        assert!(Instant::now() < deadline, "no resubscription within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after: Value = login(&http, &a, "alice").await.json().await.unwrap();
    for _ in 0..20 {
        assert_eq!(me(&http, &b.base, s(&after, "access_token")).await, 200);
    }
    let looked_up = b.metric(SESSION_LOOKUPS).await;
    logout(&http, &a, s(&after, "access_token")).await;
    until_refused(&http, &b.base, s(&after, "access_token")).await;
    assert_eq!(
        b.metric(SESSION_LOOKUPS).await,
        looked_up,
        "B read the revoked session"
    );

    assert_eq!(me(&http, &b.base, s(&during, "access_token")).await, 401);
    assert_eq!(me(&http, &a.base, s(&during, "access_token")).await, 401);
    assert_eq!(me(&http, &b.base, s(&before, "access_token")).await, 200);
    let response = refresh(&http, &a.base, s(&before, "refresh_token"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

// ---------------------------------------------------------------------------
// A full disk and a read-only file (SQLite)

/// A tmpfs of `size` mounted on a fresh directory; unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        if !is_root() {
            return None;
        }
        let dir = tempfile::tempdir().ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) -> bool {
        Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Fills the disk to the last byte.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        while file.write_all(&[0]).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn integrity_check(path: &Path) -> String {
    let db = rusqlite::Connection::open(path).unwrap();
    db.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_answers_503_changes_nothing_and_recovers_when_space_returns() {
    let Some(disk) = SmallDisk::mount("8m") else {
        unavailable("root, to mount a small tmpfs");
        return;
    };
    let db = disk.path().join("latchkey.db");
    let mut env = Env::new(&[("LATCHKEY_REUSE_GRACE", GRACE)]);
    env.set(
        "LATCHKEY_DATABASE_URL",
        &format!("sqlite://{}", db.display()),
    );
    env.add_user("alice");
    let http = http();
    let server = env.serve();
    let mut pair: Value = login(&http, &server, "alice").await.json().await.unwrap();

    let filler = disk.fill();
    // Writes fail once SQLite needs a page it does not have; until then
    // they may still fit in space it holds. Every answer is a 200 or the
    // outage answer, and a refused refresh uses nothing up.
    let mut refused = 0;
    for _ in 0..2000 {
        let token = s(&pair, "refresh_token").to_owned();
        let response = refresh(&http, &server.base, &token).await.unwrap();
        if response.status() == 200 {
            pair = response.json().await.unwrap();
        } else {
            assert_outage(response, "refresh on a full disk").await;
            refused += 1;
            if refused == 3 {
                break;
            }
        }
    }
    assert!(refused > 0, "no write failed on a full disk");
    let response = login(&http, &server, "alice").await;
    if response.status() != 200 {
        assert_outage(response, "login on a full disk").await;
    }
    assert_eq!(me(&http, &server.base, s(&pair, "access_token")).await, 200);

    std::fs::remove_file(filler).unwrap();
    // Space again: the same token refreshes, without a restart.
    let response = refresh(&http, &server.base, s(&pair, "refresh_token"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(login(&http, &server, "alice").await.status(), 200);
    drop(server);
    assert_eq!(integrity_check(&db), "ok");
    assert!(most_live_tokens(&env.database_url()).await <= 1);
    assert_eq!(revoked_sessions(&env.database_url()).await, 0);
}

#[tokio::test]
async fn a_read_only_database_stops_start_up_with_a_clear_message_and_stays_as_it_was() {
    let Some(disk) = SmallDisk::mount("8m") else {
        unavailable("root, to mount a small tmpfs");
        return;
    };
    let db = disk.path().join("latchkey.db");
    let mut env = Env::new(&[]);
    env.set(
        "LATCHKEY_DATABASE_URL",
        &format!("sqlite://{}", db.display()),
    );
    env.add_user("alice");
    let before = std::fs::read(&db).unwrap();
    assert!(disk.remount("ro"));

    let output = env.cli(&["serve"], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("LATCHKEY_DATABASE_URL"), "{stderr}");
    let output = env.cli(
        &["user", "add", "bob", "--password-stdin"],
        Some("a long password\n"),
    );
    assert!(!output.status.success());
    assert_eq!(std::fs::read(&db).unwrap(), before);

    assert!(disk.remount("rw"));
    let http = http();
    let server = env.serve();
    assert_eq!(login(&http, &server, "alice").await.status(), 200);
    drop(server);
    assert_eq!(integrity_check(&db), "ok");
}

// ---------------------------------------------------------------------------
// Memory under hostile input

/// The process's resident memory in KiB.
fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends `head`, then streams zeros (at most `limit` bytes) until the
/// server answers or closes; returns what it answered.
async fn flood(address: String, head: Vec<u8>, limit: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let _ = stream.write_all(&head).await;
    let chunk = vec![b'0'; 64 * 1024];
    let mut sent = 0;
    while sent < limit && stream.write_all(&chunk).await.is_ok() {
        sent += chunk.len();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).chars().take(12).collect()
}

/// A real server under 64 endless bodies (declared and chunked), 64 huge
/// header blocks and 64 trickling clients at once keeps its memory: each
/// body is refused past 16 KiB, headers past hyper's limit, and the server
/// answers normally afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endless_bodies_huge_headers_and_slow_clients_keep_memory_bounded() {
    // 256 connections from one address at once: the per-address cap is
    // raised so that every one of them is served.
    let env = Env::new(&[
        ("LATCHKEY_REQUEST_TIMEOUT", "2s"),
        ("LATCHKEY_MAX_CONNECTIONS_PER_ADDRESS", "1024"),
    ]);
    env.add_user("alice");
    let http = http();
    let server = env.serve();
    let pid = server.child.id();
    for _ in 0..20 {
        assert_eq!(login(&http, &server, "alice").await.status(), 200);
    }
    let address = server.base.trim_start_matches("http://").to_owned();
    let before = resident_kib(pid);

    // Twice: the first round may grow the allocator's pools, the second
    // must find them big enough.
    let mut after_rounds = Vec::new();
    for _round in 0..2 {
        let mut floods = Vec::new();
        for i in 0..64 {
            let declared = format!(
                "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1073741824\r\n\r\nusername={i}&password="
            );
            floods.push(tokio::spawn(flood(
                address.clone(),
                declared.into_bytes(),
                8 << 20,
            )));
            let chunked = "POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n";
            floods.push(tokio::spawn(flood(
                address.clone(),
                chunked.as_bytes().to_vec(),
                8 << 20,
            )));
            let mut huge_headers = b"GET /api/me HTTP/1.1\r\nHost: x\r\n".to_vec();
            for n in 0..2000 {
                huge_headers
                    .extend_from_slice(format!("X-Pad-{n}: {}\r\n", "a".repeat(200)).as_bytes());
            }
            floods.push(tokio::spawn(flood(address.clone(), huge_headers, 0)));
            let slow = format!(
                "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername={i}"
            );
            floods.push(tokio::spawn(flood(address.clone(), slow.into_bytes(), 0)));
        }
        let mut answers = Vec::new();
        for task in floods {
            answers.push(task.await.unwrap());
        }
        for answer in &answers {
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
                "answered {answer:?}"
            );
        }
        assert!(answers.iter().any(|a| a.starts_with("HTTP/1.1 413")));
        assert!(answers.iter().any(|a| a.starts_with("HTTP/1.1 408")));

        after_rounds.push(resident_kib(pid));
    }
    let (first, second) = (after_rounds[0], after_rounds[1]);
    eprintln!(
        "resident memory: {before} KiB before, {first} KiB after one round, {second} KiB after two"
    );
    assert!(
        first < before + 64 * 1024,
        "grew from {before} KiB to {first} KiB"
    );
    assert!(
        second < first + 16 * 1024,
        "grew again from {first} KiB to {second} KiB"
    );
    assert_eq!(login(&http, &server, "alice").await.status(), 200);
}
