//! Runs the real `latchkey` binary: the CLI, and `serve` on a loopback port.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub const PASSWORD: &str = "correct horse battery staple";

/// The metric counting the sessions a server read from its database.
pub const SESSION_LOOKUPS: &str = "latchkey_session_lookups_total";

/// A database directory and the environment every process of a test shares.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
}

impl Env {
    pub fn new(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars = vec![
            (
                "LATCHKEY_DATABASE_URL".to_owned(),
                format!("sqlite://{}", dir.path().join("latchkey.db").display()),
            ),
            ("LATCHKEY_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self { dir, vars }
    }

    /// The same, on a fresh PostgreSQL schema; `None` (skip) without a
    /// reachable server outside CI.
    pub async fn postgres(extra: &[(&str, &str)]) -> Option<Self> {
        let url = latchkey_store_tests::postgres_schema_url().await?;
        let mut env = Self::new(extra);
        env.set("LATCHKEY_DATABASE_URL", &url);
        Some(env)
    }

    /// Adds Redis under a fresh key prefix; `None` (skip) without a
    /// reachable Redis outside CI.
    pub async fn with_redis(mut self) -> Option<Self> {
        let url = std::env::var("LATCHKEY_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        if let Err(e) = latchkey_coordinator_redis::RedisCoordinator::connect(&url, "probe:").await
        {
            if std::env::var_os("CI").is_some() {
                panic!("Redis is required under CI but {url} is not reachable: {e}");
            }
            eprintln!("skipping: Redis not reachable at {url} ({e}); run scripts/services.sh");
            return None;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        self.set("LATCHKEY_REDIS_URL", &url);
        self.set("LATCHKEY_REDIS_PREFIX", &format!("test:{nanos}:"));
        Some(self)
    }

    pub fn database_url(&self) -> String {
        self.vars
            .iter()
            .find(|(k, _)| k == "LATCHKEY_DATABASE_URL")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("latchkey.db")
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.vars.retain(|(k, _)| k != name);
        self.vars.push((name.to_owned(), value.to_owned()));
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        // Nothing from the developer's shell leaks into the test.
        for (name, _) in std::env::vars() {
            if name.starts_with("LATCHKEY_") {
                command.env_remove(name);
            }
        }
        command.envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    /// Runs a CLI command to completion, feeding `stdin`.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn latchkey");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("latchkey output")
    }

    /// `cli`, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.cli(args, stdin);
        assert!(
            output.status.success(),
            "latchkey {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn add_user(&self, name: &str) {
        self.ok(
            &["user", "add", name, "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        );
    }

    /// Starts `latchkey serve` and waits for its "listening" line.
    pub fn serve(&self) -> Server {
        let mut child = self
            .command()
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn latchkey serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut all) = sink.lock() {
                    all.push_str(&line);
                    all.push('\n');
                }
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split(',').next().unwrap_or_default().to_owned();
                    let _ = tx.send((addr, line.clone()));
                }
            }
        });
        let (addr, line) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(found) => found,
            Err(_) => {
                let _ = child.kill();
                panic!("latchkey serve did not start");
            }
        };
        Server {
            child,
            base: format!("http://{addr}"),
            start_line: line,
            log,
        }
    }
}

/// A running `latchkey serve`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub start_line: String,
    /// Everything the server wrote to standard error so far.
    pub log: Arc<Mutex<String>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The value of one series of the server's `/metrics` (its name with
    /// any labels, as printed), 0 when absent.
    pub async fn metric(&self, series: &str) -> u64 {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGKILL: no shutdown, no checkpoint.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of `GET url` with `token` as its bearer.
pub async fn bearer_status(http: &reqwest::Client, url: &str, token: &str) -> u16 {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
