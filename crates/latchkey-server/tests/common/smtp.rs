//! A real SMTP server on a loopback port for the mail tests: Debian's
//! aiosmtpd running `scripts/smtp-sink.py`, which writes every message it
//! accepts, parsed by Python's `email` package, as JSON into a directory of
//! the test's. It can be stopped and started again on the same port (an
//! outage). Without python3-aiosmtpd a test skips, unless `CI` is set.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Message {
    pub to: Vec<String>,
    pub from: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub raw: String,
}

impl Message {
    /// The first link under `base` in the plain-text part.
    pub fn link(&self, base: &str) -> String {
        self.text
            .split_whitespace()
            .find(|w| w.starts_with(base) && w.contains("?token="))
            .unwrap_or_else(|| panic!("no link under {base} in {:?}", self.text))
            .to_owned()
    }

    /// The `token` of that link.
    pub fn token(&self, base: &str) -> String {
        let link = self.link(base);
        link.split("token=").nth(1).expect("a token").to_owned()
    }
}

pub struct Smtp {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/smtp-sink.py")
}

fn available() -> bool {
    std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Smtp {
    /// A server on a free port, or `None` (the test skips) when aiosmtpd is
    /// not installed and `CI` is not set.
    pub async fn start() -> Option<Self> {
        if !available() {
            assert!(
                std::env::var_os("CI").is_none(),
                "python3-aiosmtpd is missing (scripts/services.sh installs it)"
            );
            eprintln!("skipping: python3-aiosmtpd is not installed (scripts/services.sh)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut smtp = Self {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        smtp.resume().await;
        Some(smtp)
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Stops the server (mail to it now fails to connect).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on the same port.
    pub async fn resume(&mut self) {
        let mut child = Command::new("/usr/bin/python3")
            .arg(script())
            .arg(self.port.to_string())
            .arg(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the SMTP server");
        let stdout = child.stdout.take().expect("its output");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the SMTP server starts in time")
            .expect("its output");
        assert_eq!(ready.as_deref(), Some("ready"));
        self.child = Some(child);
    }

    /// Every message so far.
    pub fn messages(&self) -> Vec<Message> {
        let mut found: Vec<(std::time::SystemTime, Message)> = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).expect("the mailbox") {
            let entry = entry.expect("an entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).expect("a message");
            let v: Value = serde_json::from_str(&text).expect("JSON");
            let at = entry
                .metadata()
                .and_then(|m| m.modified())
                .expect("its time");
            found.push((
                at,
                Message {
                    to: v["to"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|t| t.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    from: v["from"].as_str().unwrap_or_default().to_owned(),
                    subject: v["subject"].as_str().unwrap_or_default().to_owned(),
                    text: v["text"].as_str().unwrap_or_default().to_owned(),
                    html: v["html"].as_str().unwrap_or_default().to_owned(),
                    raw: v["raw"].as_str().unwrap_or_default().to_owned(),
                },
            ));
        }
        found.sort_by_key(|(at, _)| *at);
        found.into_iter().map(|(_, m)| m).collect()
    }

    /// The messages to `to` whose subject contains `subject`, once there
    /// are at least `n` (waiting up to `within`).
    pub async fn wait_for(
        &self,
        to: &str,
        subject: &str,
        n: usize,
        within: Duration,
    ) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let found: Vec<Message> = self
                .messages()
                .into_iter()
                .filter(|m| m.to.iter().any(|t| t == to) && m.subject.contains(subject))
                .collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} mail(s) to {to} about {subject:?} did not arrive in {within:?}; got {:?}",
                self.messages()
                    .iter()
                    .map(|m| (&m.to, &m.subject))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
