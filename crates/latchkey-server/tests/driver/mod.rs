//! Debian's headless Chromium, driven over WebDriver (`chromedriver`) with
//! `fantoccini`: one fresh browser (its own profile, its own cookies) per
//! `Browser`. Controls are found the way a person using a screen reader
//! finds them: by the accessible name Chromium computes.
#![allow(dead_code, unreachable_pub)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page may take to reach the state a test waits for.
const PATIENCE: Duration = Duration::from_secs(15);

/// Whether the browser is here; without it a run outside CI skips (and
/// says so), while CI fails.
pub fn available() -> bool {
    let here =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !here {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {CHROMIUM} or {CHROMEDRIVER} is missing: run scripts/services.sh"
        );
        eprintln!(
            "skipping: {CHROMIUM} or {CHROMEDRIVER} is missing (scripts/services.sh installs them)"
        );
    }
    here
}

/// One headless Chromium with its own empty profile, and the chromedriver
/// that drives it.
pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A new browser, or `None` (a skip) when Chromium is not installed.
    pub async fn launch() -> Option<Self> {
        if !available() {
            return None;
        }
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let mut command = tokio::process::Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            // Its own process group, so that the browser it starts can be
            // ended with it.
            .process_group(0);
        let driver = command.spawn().expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    // Tabs in the background keep their timers on time.
                    "--disable-background-timer-throttling",
                    "--disable-renderer-backgrounding",
                    "--disable-backgrounding-occluded-windows",
                    "--window-size=1100,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if started.elapsed() < PATIENCE => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("chromedriver did not start a browser: {e}"),
            }
        };
        Some(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Ends the browser and its driver.
    pub async fn quit(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The first displayed element matching `css` whose accessible name is
    /// `name`, waiting for it to appear.
    pub async fn named(&self, css: &str, name: &str) -> Element {
        let started = Instant::now();
        loop {
            if let Some(element) = self.find_named(css, name).await {
                return element;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "no displayed {css} named {name:?}; the page says: {}",
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every displayed element matching `css` named `name`, now.
    pub async fn all_named(&self, css: &str, name: &str) -> Vec<Element> {
        let mut found = Vec::new();
        for element in self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
        {
            if element.is_displayed().await.unwrap_or(false)
                && self.accessible_name(&element).await.as_deref() == Some(name)
            {
                found.push(element);
            }
        }
        found
    }

    async fn find_named(&self, css: &str, name: &str) -> Option<Element> {
        self.all_named(css, name).await.into_iter().next()
    }

    /// A button, by its accessible name.
    pub async fn button(&self, name: &str) -> Element {
        self.named("button", name).await
    }

    /// A text field, by its label.
    pub async fn field(&self, label: &str) -> Element {
        self.named("input", label).await
    }

    /// The name Chromium's accessibility tree gives `element`.
    pub async fn accessible_name(&self, element: &Element) -> Option<String> {
        let command = ComputedLabel(element.element_id().to_string());
        match self.client.issue_cmd(command).await {
            Ok(Value::String(label)) => Some(label),
            _ => None,
        }
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the page's visible text contains `wanted`.
    pub async fn wait_for_text(&self, wanted: &str) {
        let started = Instant::now();
        loop {
            let text = self.text().await;
            if text.contains(wanted) {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the page never said {wanted:?}; it says: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fills the login form and submits it with `Log in`.
    pub async fn log_in(&self, base: &str, username: &str, password: &str) {
        self.goto(&format!("{base}/")).await;
        self.field("Username")
            .await
            .send_keys(username)
            .await
            .unwrap();
        self.field("Password")
            .await
            .send_keys(password)
            .await
            .unwrap();
        self.button("Log in").await.click().await.unwrap();
        self.wait_for_text(&format!("Signed in as {username}"))
            .await;
    }

    /// Runs `script` until it returns `wanted` (a page that re-renders
    /// after a request shows the old rows until the answer comes).
    pub async fn wait_for_value(&self, script: &str, wanted: &Value) {
        let started = Instant::now();
        loop {
            let got = self.eval(script).await;
            if &got == wanted {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{script} never returned {wanted}; it returns {got}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `script` in the page and returns what it returns.
    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.unwrap()
    }

    /// Every cookie the browser would send to `url`, `HttpOnly` ones
    /// included: (name, value, http_only). Asked of Chromium itself (over
    /// the DevTools protocol), which sees what scripts cannot.
    pub async fn cookies_for(&self, url: &str) -> Vec<(String, String, bool)> {
        let command = Cdp(json!({"cmd": "Network.getCookies", "params": {"urls": [url]}}));
        let answer = self.client.issue_cmd(command).await.unwrap();
        answer["cookies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["value"].as_str().unwrap().to_owned(),
                    c["httpOnly"].as_bool().unwrap(),
                )
            })
            .collect()
    }
}

impl Browser {
    /// Adds a virtual platform authenticator (WebDriver's WebAuthn
    /// extension): CTAP2, discoverable credentials, user verification that
    /// always succeeds, presence given without a touch. Its id.
    pub async fn add_virtual_authenticator(&self) -> String {
        let command = Extension {
            path: "webauthn/authenticator".into(),
            body: Some(json!({
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserVerified": true,
                "isUserConsenting": true,
            })),
        };
        let answer = self.client.issue_cmd(command).await.unwrap();
        answer.as_str().expect("an authenticator id").to_owned()
    }

    /// The credentials the virtual authenticator `id` holds.
    pub async fn virtual_credentials(&self, id: &str) -> Vec<Value> {
        let command = Extension {
            path: format!("webauthn/authenticator/{id}/credentials"),
            body: None,
        };
        let answer = self.client.issue_cmd(command).await.unwrap();
        answer.as_array().cloned().unwrap_or_default()
    }
}

/// A command of a WebDriver extension, under the session: `GET` without a
/// body, `POST` with one.
#[derive(Debug)]
struct Extension {
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for Extension {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.unwrap_or_default();
        base_url.join(&format!("session/{session}/{}", self.path))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        match &self.body {
            Some(body) => (http::Method::POST, Some(body.to_string())),
            None => (http::Method::GET, None),
        }
    }
}

/// Chromium's DevTools protocol, through chromedriver.
#[derive(Debug)]
struct Cdp(Value);

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.unwrap_or_default();
        base_url.join(&format!("session/{session}/goog/cdp/execute"))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.0.to_string()))
    }
}

/// WebDriver's "Get Computed Label" command.
#[derive(Debug)]
struct ComputedLabel(String);

impl WebDriverCompatibleCommand for ComputedLabel {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.unwrap_or_default();
        base_url.join(&format!(
            "session/{session}/element/{}/computedlabel",
            self.0
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::GET, None)
    }
}
