//! The outbox's HTTP client ([`latchkey_app::delivery::Transport`]): posts
//! webhooks and back-channel logout tokens. No redirects are followed (a
//! receiver answers where it was registered), TLS is rustls on aws-lc-rs
//! with the system's roots, and every attempt has its timeout.

use std::time::Duration;

use async_trait::async_trait;
use latchkey_app::delivery::{Post, Transport};

/// Posts over HTTP and HTTPS.
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// A client for deliveries.
    pub fn new() -> Result<Self, String> {
        // One crypto backend: rustls's provider is aws-lc-rs, set once per
        // process (a second call finds it set, which is fine).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(latchkey_core::outbox::ATTEMPT_TIMEOUT)
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(4)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn post(&self, post: Post, timeout: Duration) -> Result<u16, String> {
        let mut request = self
            .client
            .post(&post.url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, post.content_type)
            .body(post.body);
        for (name, value) in post.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "connection failed".to_owned()
            } else {
                "request failed".to_owned()
            }
        })?;
        Ok(response.status().as_u16())
    }
}
