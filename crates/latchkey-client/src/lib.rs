//! A client for APIs protected by Latchkey access tokens.
//!
//! [`TokenClient`] holds a token pair in a [`TokenStore`] (memory by default),
//! refreshes it shortly before the access token expires, lets exactly one
//! refresh run when many requests need one at the same moment
//! (single-flight), and retries a request once after a 401.
//!
//! Every exchange has a timeout (30 s, 10 s to connect; see
//! [`TokenClient::with_timeouts`]). A refresh runs on a task of its own and
//! saves its result whatever happens to the caller: a caller that gives up
//! (a cancelled future, a timeout around it) cannot lose a pair the server
//! has already rotated, which would make the next refresh look like reuse
//! and end the session. A refresh whose own HTTP exchange times out cannot
//! know whether the server rotated; a server with a grace window
//! (`LATCHKEY_REUSE_GRACE`) answers its retry with the same successor.
//!
//! With [`TokenClient::login_with_dpop`] the client generates a P-256 key,
//! keeps it in the [`TokenStore`] beside the pair, and proves it (RFC 9449)
//! at the token endpoint and with every API request: the tokens the server
//! issues are bound to it, so a copied token is useless without the key.
//! Server nonces (`DPoP-Nonce`, `use_dpop_nonce`) are kept and used.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use latchkey_client::TokenClient;
//! let client = TokenClient::login("http://127.0.0.1:8080", "alice", "correct horse battery staple").await?;
//! let me = client.send(|http| http.get("http://127.0.0.1:8080/api/me")).await?;
//! println!("{}", me.text().await?);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Deserialize;

/// Client failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The HTTP exchange failed.
    #[error("HTTP request failed")]
    Http(#[from] reqwest::Error),
    /// The server refused a login or refresh (`error` code of RFC 6749).
    #[error("the token endpoint answered {status}: {code}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The `error` field.
        code: String,
        /// Why the session ended, when a refresh found it ended (SPEC §14:
        /// `logout`, `reuse_detected`, `idle_expired`, …): what to tell the
        /// person who must now log in again.
        end_reason: Option<String>,
    },
    /// There is no token pair to use.
    #[error("not logged in")]
    NoTokens,
    /// The refresh task was stopped (its runtime is shutting down).
    #[error("the refresh was cancelled")]
    Cancelled,
    /// The DPoP key could not be made or used.
    #[error("the DPoP key is unusable")]
    Key,
}

/// An access token and the refresh token issued beside it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    /// The access token.
    pub access_token: String,
    /// The refresh token (`lk_rt_…`).
    pub refresh_token: String,
    /// When the access token expires, Unix seconds.
    pub expires_at: i64,
    /// The DPoP key both tokens are bound to, if any (kept with them).
    pub dpop_key: Option<DpopKey>,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_at", &self.expires_at)
            .field("dpop", &self.dpop_key.is_some())
            .finish_non_exhaustive()
    }
}

/// A DPoP key: an ECDSA P-256 private key (PKCS#8), which proofs are
/// signed with. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct DpopKey {
    /// The PKCS#8 document, to persist.
    pub pkcs8: Vec<u8>,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DpopKey(…)")
    }
}

impl DpopKey {
    /// A new key from the OS's random source.
    pub fn generate() -> Result<Self, Error> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng)
            .map_err(|_| Error::Key)?;
        Ok(Self {
            pkcs8: pkcs8.as_ref().to_vec(),
        })
    }

    /// A proof for `method` on `url` (its query and fragment dropped), with
    /// the server's `nonce` and the `access_token` it goes with, if any.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<String, Error> {
        use aws_lc_rs::signature::KeyPair;
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, &self.pkcs8)
            .map_err(|_| Error::Key)?;
        let point = pair.public_key().as_ref();
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some(latchkey_core::dpop::PROOF_TYP.into());
        header.jwk = Some(serde_json::from_value(jwk).map_err(|_| Error::Key)?);
        let htu = url.split(['?', '#']).next().unwrap_or(url);
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut jti)
            .map_err(|_| Error::Key)?;
        let mut claims = serde_json::json!({
            "jti": URL_SAFE_NO_PAD.encode(jti), "htm": method, "htu": htu, "iat": now(),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = serde_json::json!(nonce);
        }
        if let Some(token) = access_token {
            claims["ath"] = serde_json::json!(latchkey_core::dpop::ath(token));
        }
        let encoding = jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8);
        jsonwebtoken::encode(&header, &claims, &encoding).map_err(|_| Error::Key)
    }
}

/// Where the pair lives between uses (a keychain, a file…).
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The current pair.
    async fn load(&self) -> Option<TokenPair>;
    /// Replaces the pair.
    async fn save(&self, pair: TokenPair);
}

/// Keeps the pair in memory (the default).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use latchkey_client::{MemoryStore, TokenPair, TokenStore};
/// let store = MemoryStore::default();
/// assert!(store.load().await.is_none());
/// let pair = TokenPair { access_token: "eyJ…".into(), refresh_token: "lk_rt_…".into(), expires_at: 0, dpop_key: None };
/// store.save(pair.clone()).await;
/// assert_eq!(store.load().await, Some(pair));
/// # });
/// ```
#[derive(Default)]
pub struct MemoryStore(tokio::sync::RwLock<Option<TokenPair>>);

#[async_trait]
impl TokenStore for MemoryStore {
    async fn load(&self) -> Option<TokenPair> {
        self.0.read().await.clone()
    }

    async fn save(&self, pair: TokenPair) {
        *self.0.write().await = Some(pair);
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: i64,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    end_reason: Option<String>,
}

impl Error {
    /// Why the session ended, if the server said (a refresh of an ended
    /// session): `logout`, `revoked`, `reuse_detected`, `idle_expired`, …
    pub fn end_reason(&self) -> Option<&str> {
        match self {
            Self::Refused { end_reason, .. } => end_reason.as_deref(),
            _ => None,
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The pair in a token response, or the refusal it states.
async fn pair_from(
    response: reqwest::Response,
    previous_refresh: Option<&str>,
    dpop_key: Option<DpopKey>,
) -> Result<TokenPair, Error> {
    let status = response.status();
    if !status.is_success() {
        let (code, end_reason) = response
            .json::<ErrorResponse>()
            .await
            .map(|e| (e.error, e.end_reason))
            .unwrap_or_else(|_| ("unknown".into(), None));
        return Err(Error::Refused {
            status: status.as_u16(),
            code,
            end_reason,
        });
    }
    let body: TokenResponse = response.json().await?;
    let refresh_token = match (body.refresh_token, previous_refresh) {
        (Some(token), _) => token,
        (None, Some(previous)) => previous.to_owned(),
        (None, None) => return Err(Error::NoTokens),
    };
    Ok(TokenPair {
        access_token: body.access_token,
        refresh_token,
        expires_at: now() + body.expires_in,
        dpop_key,
    })
}

/// The server's nonce in a response, if it sent one.
fn nonce_of(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Posts `form` to `url` with a proof of `key`, if any; asked for the
/// server's nonce, sends once more with it. Keeps the latest nonce.
async fn post_token_request(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
    key: Option<&DpopKey>,
    nonce: &std::sync::Mutex<Option<String>>,
) -> Result<reqwest::Response, Error> {
    let mut retried = false;
    loop {
        let mut request = http.post(url).form(form);
        if let Some(key) = key {
            let current = lock(nonce).clone();
            request = request.header("dpop", key.proof("POST", url, current.as_deref(), None)?);
        }
        let response = request.send().await?;
        let fresh = nonce_of(&response);
        if let Some(fresh) = &fresh {
            *lock(nonce) = Some(fresh.clone());
        }
        // RFC 9449 §8: `use_dpop_nonce` with a nonce means "again, with it".
        if key.is_some()
            && !retried
            && fresh.is_some()
            && response.status() == reqwest::StatusCode::BAD_REQUEST
        {
            retried = true;
            continue;
        }
        return Ok(response);
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A token pair and the endpoint that refreshes it.
pub struct TokenClient {
    http: reqwest::Client,
    shared: Arc<Shared>,
    refresh_before: Duration,
}

/// What a refresh task needs, beyond the caller's lifetime.
struct Shared {
    http: reqwest::Client,
    token_endpoint: String,
    client_id: Option<String>,
    store: Arc<dyn TokenStore>,
    /// Held by the one task that refreshes; the others wait, then reuse its result.
    refreshing: tokio::sync::Mutex<()>,
    refreshes: AtomicU64,
    /// The token endpoint's latest DPoP nonce.
    nonce: std::sync::Mutex<Option<String>>,
}

/// Time allowed for a whole exchange, by default.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed to connect, by default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn http_client(timeout: Duration, connect_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .build()
        .unwrap_or_default()
}

impl Shared {
    async fn refresh(&self, stale: &str) -> Result<String, Error> {
        let _turn = self.refreshing.lock().await;
        let pair = self.store.load().await.ok_or(Error::NoTokens)?;
        if pair.access_token != stale {
            return Ok(pair.access_token);
        }
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", pair.refresh_token.as_str()),
        ];
        if let Some(id) = &self.client_id {
            form.push(("client_id", id));
        }
        let response = post_token_request(
            &self.http,
            &self.token_endpoint,
            &form,
            pair.dpop_key.as_ref(),
            &self.nonce,
        )
        .await?;
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let fresh = pair_from(response, Some(&pair.refresh_token), pair.dpop_key.clone()).await?;
        let token = fresh.access_token.clone();
        self.store.save(fresh).await;
        Ok(token)
    }
}

impl TokenClient {
    /// A client for the server at `base` (`http://host:port`) whose pair is in `store`.
    pub fn new(base: &str, store: Arc<dyn TokenStore>) -> Self {
        let http = http_client(TIMEOUT, CONNECT_TIMEOUT);
        Self {
            http: http.clone(),
            shared: Arc::new(Shared {
                http,
                token_endpoint: format!("{}/oauth/token", base.trim_end_matches('/')),
                client_id: None,
                store,
                refreshing: tokio::sync::Mutex::new(()),
                refreshes: AtomicU64::new(0),
                nonce: std::sync::Mutex::new(None),
            }),
            refresh_before: Duration::from_secs(30),
        }
    }

    /// Sends this public client's `client_id` on refresh (needed when the
    /// pair was issued to a client).
    pub fn with_client_id(mut self, client_id: &str) -> Self {
        self.shared_mut().client_id = Some(client_id.to_owned());
        self
    }

    /// Bounds every exchange (token endpoint and API requests) to `timeout`,
    /// and connecting to `connect_timeout` (defaults: 30 s and 10 s).
    pub fn with_timeouts(mut self, timeout: Duration, connect_timeout: Duration) -> Self {
        let http = http_client(timeout, connect_timeout);
        self.http = http.clone();
        self.shared_mut().http = http;
        self
    }

    /// The shared part, while this client is still being built (before any
    /// refresh task holds it).
    fn shared_mut(&mut self) -> &mut Shared {
        if Arc::get_mut(&mut self.shared).is_none() {
            let old = &self.shared;
            self.shared = Arc::new(Shared {
                http: old.http.clone(),
                token_endpoint: old.token_endpoint.clone(),
                client_id: old.client_id.clone(),
                store: old.store.clone(),
                refreshing: tokio::sync::Mutex::new(()),
                refreshes: AtomicU64::new(old.refreshes.load(Ordering::Relaxed)),
                nonce: std::sync::Mutex::new(None),
            });
        }
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared,
            None => unreachable!("a fresh Arc has one owner"),
        }
    }

    /// Refreshes when the access token has less than this left (default 30 s).
    pub fn with_refresh_before(mut self, margin: Duration) -> Self {
        self.refresh_before = margin;
        self
    }

    /// Logs in at `{base}/auth/login` and keeps the pair in memory.
    pub async fn login(base: &str, username: &str, password: &str) -> Result<Self, Error> {
        let client = Self::new(base, Arc::new(MemoryStore::default()));
        let url = format!("{}/auth/login", base.trim_end_matches('/'));
        let response = client
            .http
            .post(url)
            .form(&[("username", username), ("password", password)])
            .send()
            .await?;
        let pair = pair_from(response, None, None).await?;
        client.shared.store.save(pair).await;
        Ok(client)
    }

    /// Logs in at `{base}/auth/login` with a new DPoP key: the pair is bound
    /// to it and kept with it in memory.
    pub async fn login_with_dpop(
        base: &str,
        username: &str,
        password: &str,
    ) -> Result<Self, Error> {
        let client = Self::new(base, Arc::new(MemoryStore::default()));
        let key = DpopKey::generate()?;
        let url = format!("{}/auth/login", base.trim_end_matches('/'));
        let response = post_token_request(
            &client.http,
            &url,
            &[("username", username), ("password", password)],
            Some(&key),
            &client.shared.nonce,
        )
        .await?;
        let pair = pair_from(response, None, Some(key)).await?;
        client.shared.store.save(pair).await;
        Ok(client)
    }

    /// How many refreshes this client has made.
    pub fn refresh_count(&self) -> u64 {
        self.shared.refreshes.load(Ordering::Relaxed)
    }

    /// A usable access token, refreshed first if it expires soon.
    pub async fn access_token(&self) -> Result<String, Error> {
        let pair = self.shared.store.load().await.ok_or(Error::NoTokens)?;
        let margin = i64::try_from(self.refresh_before.as_secs()).unwrap_or(30);
        if pair.expires_at - margin > now() {
            return Ok(pair.access_token);
        }
        self.refresh(&pair.access_token).await
    }

    /// Refreshes unless another task already replaced `stale`; exactly one
    /// refresh runs at a time, and the tasks that waited for it use its
    /// result. The refresh runs on a task of its own: if this future is
    /// dropped, the refresh still completes and its pair is saved.
    pub async fn refresh(&self, stale: &str) -> Result<String, Error> {
        let shared = self.shared.clone();
        let stale = stale.to_owned();
        match tokio::spawn(async move { shared.refresh(&stale).await }).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(Error::Cancelled),
        }
    }

    /// Sends the request `build` makes, with the access token (and a DPoP
    /// proof for this request when the pair is bound to a key); after a
    /// 401, refreshes and sends it once more.
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let token = self.access_token().await?;
        let response = self.authorized(&build, &token).await?;
        if response.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let token = self.refresh(&token).await?;
        self.authorized(&build, &token).await
    }

    async fn authorized(
        &self,
        build: &impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        token: &str,
    ) -> Result<reqwest::Response, Error> {
        let key = self.shared.store.load().await.and_then(|p| p.dpop_key);
        let Some(key) = key else {
            return Ok(build(&self.http).bearer_auth(token).send().await?);
        };
        let mut request = build(&self.http).build()?;
        let proof = key.proof(
            request.method().as_str(),
            request.url().as_str(),
            None,
            Some(token),
        )?;
        let headers = request.headers_mut();
        let value =
            |text: String| reqwest::header::HeaderValue::from_str(&text).map_err(|_| Error::Key);
        headers.insert(
            reqwest::header::AUTHORIZATION,
            value(format!("DPoP {token}"))?,
        );
        headers.insert("dpop", value(proof)?);
        Ok(self.http.execute(request).await?)
    }
}
