//! Verify Latchkey access tokens in your own service, offline: no call to
//! the issuer per request.
//!
//! * [`RemoteVerifier::discover`] reads the issuer's RFC 8414 metadata, fetches
//!   its JWKS and caches it for the JWKS's `max-age` (at most
//!   [`Options::max_key_age`], five minutes by default), then fetches it again
//!   and trusts exactly the keys it now lists, so a key the issuer withdrew
//!   stops verifying; a token naming an unknown `kid` triggers one refetch,
//!   at most once per interval (so invented `kid`s cannot make it hammer the
//!   issuer);
//! * each key verifies only with its own algorithm; `typ` (`at+jwt`), `iss`,
//!   `aud`, `exp`, `nbf` are checked (the checks of `latchkey-core`);
//! * [`RemoteVerifier::layer`] is a tower layer that answers RFC 6750
//!   challenges and requires scopes; the verified [`AccessClaims`] land in the
//!   request's extensions, and [`Claims`] extracts them in axum;
//! * [`RemoteVerifier::follow_revocations`] polls the issuer's revocation feed,
//!   so a revoked session's access tokens are refused within one poll
//!   interval instead of at their `exp`; [`RemoteVerifier::last_feed_poll`]
//!   tells when it last succeeded, and [`FeedOptions::fail_closed_after`]
//!   refuses every token (`503`) once that many polls in a row have failed;
//! * [`RequireToken::require_acr`] and [`RequireToken::max_age`] ask for a
//!   stronger or more recent sign-in (RFC 9470): a token whose `acr` is
//!   weaker (`pwd` < `mfa` < `phr`), or whose `auth_time` is older, is
//!   answered `401` with an `insufficient_user_authentication` challenge
//!   naming `acr_values` and `max_age`, which a client passes on to
//!   `/oauth/authorize` to have the user step up.
//!
//! A protected axum service:
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use latchkey_verify::{Claims, RemoteVerifier};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = RemoteVerifier::discover("http://127.0.0.1:8080", "latchkey").await?;
//! let app = Router::new()
//!     .route("/hello", get(|Claims(claims): Claims| async move { format!("hello {}", claims.sub) }))
//!     .layer(verifier.layer().require_scope("profile"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! Tokens are fetched over whatever URL the issuer publishes; this crate is
//! built without TLS, so put the issuer on a trusted network or in front of
//! a TLS-terminating proxy on the same host.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Request, Response, StatusCode, header};
pub use latchkey_core::jwt::AccessClaims;
use latchkey_core::jwt::{Verifier, VerifyError};
use latchkey_core::keys::PublicJwk;
pub use latchkey_core::strength::Acr;
use serde::Deserialize;

/// Why a verifier could not be set up or refreshed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The issuer could not be reached or answered an error.
    #[error("cannot fetch {url}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// Why it failed.
        #[source]
        source: reqwest::Error,
    },
    /// The metadata names another issuer than the one asked for (RFC 8414 §3.3).
    #[error("the metadata at {0} names another issuer")]
    IssuerMismatch(String),
    /// A published key could not be used.
    #[error("unusable key in the JWKS")]
    Key(#[from] latchkey_core::Error),
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// The token does not verify, or names an unknown key.
    #[error("invalid token: {0}")]
    Invalid(VerifyError),
    /// The token's session was revoked (revocation feed).
    #[error("the session has been revoked")]
    Revoked,
    /// The token lacks a required scope.
    #[error("insufficient scope")]
    InsufficientScope,
    /// Revocations could not be learnt for too long (fail-closed feed).
    #[error("revocations are unknown: the revocation feed is not reachable")]
    RevocationsUnknown,
    /// A DPoP-bound token came as a bearer token, or a bearer token with the
    /// `DPoP` scheme.
    #[error("the token's binding and the Authorization scheme disagree")]
    SchemeMismatch,
    /// The DPoP proof is missing, invalid, replayed or of another key.
    #[error("invalid DPoP proof")]
    InvalidProof,
    /// A DPoP-bound token came to a service that does not accept them: it
    /// has no [`Options::public_url`] to check a proof's `htu` against.
    #[error("this service does not accept DPoP-bound tokens")]
    DpopUnavailable,
    /// The sign-in behind the token is weaker than `acr`, or older than
    /// `max_age` seconds (RFC 9470).
    #[error("a stronger or more recent sign-in is required")]
    InsufficientUserAuthentication {
        /// The level the route needs.
        acr: Option<Acr>,
        /// The oldest sign-in it accepts, in seconds.
        max_age: Option<u64>,
    },
}

impl Rejection {
    /// The RFC 6750 response for this rejection.
    ///
    /// ```
    /// use latchkey_verify::Rejection;
    /// let response = Rejection::InsufficientScope.into_response::<String>(&["admin".into()]);
    /// assert_eq!(response.status(), 403);
    /// assert_eq!(
    ///     response.headers()["www-authenticate"],
    ///     "Bearer error=\"insufficient_scope\", scope=\"admin\""
    /// );
    /// let missing = Rejection::Missing.into_response::<String>(&[]);
    /// assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    /// ```
    pub fn into_response<B: From<String>>(self, required: &[String]) -> Response<B> {
        let (status, challenge, code) = match self {
            Self::Missing => (
                StatusCode::UNAUTHORIZED,
                "Bearer".to_owned(),
                "unauthorized",
            ),
            Self::SchemeMismatch => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "DPoP algs=\"{}\", error=\"invalid_token\", error_description=\"{self}\"",
                    latchkey_core::dpop::ALGORITHMS.join(" ")
                ),
                "invalid_token",
            ),
            Self::InvalidProof => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "DPoP algs=\"{}\", error=\"invalid_dpop_proof\", error_description=\"{self}\"",
                    latchkey_core::dpop::ALGORITHMS.join(" ")
                ),
                "invalid_dpop_proof",
            ),
            Self::Invalid(_) | Self::Revoked | Self::DpopUnavailable => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer error=\"invalid_token\", error_description=\"{self}\""),
                "invalid_token",
            ),
            Self::RevocationsUnknown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Bearer".to_owned(),
                "temporarily_unavailable",
            ),
            Self::InsufficientUserAuthentication { acr, max_age } => {
                let mut challenge = format!(
                    "Bearer error=\"insufficient_user_authentication\", error_description=\"{self}\""
                );
                if let Some(acr) = acr {
                    challenge.push_str(&format!(", acr_values=\"{acr}\""));
                }
                if let Some(max_age) = max_age {
                    challenge.push_str(&format!(", max_age={max_age}"));
                }
                (
                    StatusCode::UNAUTHORIZED,
                    challenge,
                    "insufficient_user_authentication",
                )
            }
            Self::InsufficientScope => (
                StatusCode::FORBIDDEN,
                format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                    required.join(" ")
                ),
                "insufficient_scope",
            ),
        };
        let body =
            serde_json::json!({ "error": code, "error_description": self.to_string() }).to_string();
        let mut response = Response::new(B::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: String,
    #[serde(default)]
    revocation_feed_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

struct Inner {
    issuer: String,
    audience: String,
    jwks_uri: String,
    feed_uri: Option<String>,
    http: reqwest::Client,
    keys: RwLock<Verifier>,
    /// Until when the JWKS fetched last may be trusted (its `max-age`).
    keys_fresh_until: Mutex<Instant>,
    last_fetch: Mutex<Instant>,
    options: Options,
    /// Revoked sessions from the feed, with the time after which none of
    /// their access tokens can be live.
    revoked: RwLock<HashMap<String, i64>>,
    feed: Mutex<FeedState>,
    /// DPoP proofs seen (this service's own replay cache).
    proofs: Mutex<SeenProofs>,
}

/// How a [`RemoteVerifier`] keeps its keys.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Refetches of the JWKS (for an unknown `kid`, or when it has aged)
    /// happen at most this often. Default 30 s.
    pub refetch_interval: Duration,
    /// The JWKS is trusted at most this long, whatever its `max-age` says
    /// (and for this long when it says none). Default 5 minutes.
    pub max_key_age: Duration,
    /// This service's public base URL (`https://api.example`), which a DPoP
    /// proof's `htu` must name with the request's path. Unset: DPoP-bound
    /// tokens are refused ([`Rejection::DpopUnavailable`]), since a URL
    /// taken from the request's `Host` would let a proof captured at another
    /// service that trusts the same issuer be replayed here.
    pub public_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            refetch_interval: Duration::from_secs(30),
            max_key_age: Duration::from_secs(300),
            public_url: None,
        }
    }
}

impl Options {
    /// Sets [`Options::refetch_interval`].
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// Sets [`Options::max_key_age`].
    pub fn max_key_age(mut self, age: Duration) -> Self {
        self.max_key_age = age;
        self
    }

    /// Sets [`Options::public_url`] (without a trailing `/`).
    pub fn public_url(mut self, url: &str) -> Self {
        self.public_url = Some(url.trim_end_matches('/').to_owned());
        self
    }
}

/// DPoP proofs seen at most, in all (a full cache refuses proofs: fail
/// closed)...
const MAX_SEEN_PROOFS: usize = 100_000;

/// ...and per key, so that one holder of a DPoP-bound token cannot fill the
/// cache for everyone: a key past this refuses its own proofs only. A proof
/// is kept about two minutes (its `iat` window), so this allows a key about
/// 16 requests a second; filling the whole cache takes 50 keys, each a
/// token of its own.
const MAX_SEEN_PROOFS_PER_KEY: usize = 2_000;

/// DPoP proofs seen, by key thumbprint and `jti`, each until it could no
/// longer be accepted.
#[derive(Debug, Default)]
struct SeenProofs {
    by_key: HashMap<String, HashMap<String, i64>>,
    total: usize,
}

impl SeenProofs {
    /// Records a proof; false when it was seen already, or its key (or the
    /// whole cache) is full of proofs that are still fresh.
    fn insert(&mut self, jkt: &str, jti: &str, until: i64, now: i64) -> bool {
        let key_full = self
            .by_key
            .get(jkt)
            .is_some_and(|seen| seen.len() >= MAX_SEEN_PROOFS_PER_KEY);
        if key_full {
            self.prune_key(jkt, now);
        }
        if self.total >= MAX_SEEN_PROOFS {
            self.prune(now);
        }
        let seen = self.by_key.entry(jkt.to_owned()).or_default();
        if seen.contains_key(jti) {
            return false;
        }
        if seen.len() >= MAX_SEEN_PROOFS_PER_KEY || self.total >= MAX_SEEN_PROOFS {
            return false;
        }
        seen.insert(jti.to_owned(), until);
        self.total += 1;
        true
    }

    fn prune_key(&mut self, jkt: &str, now: i64) {
        if let Some(seen) = self.by_key.get_mut(jkt) {
            let before = seen.len();
            seen.retain(|_, until| *until >= now);
            self.total -= before - seen.len();
            if seen.is_empty() {
                self.by_key.remove(jkt);
            }
        }
    }

    fn prune(&mut self, now: i64) {
        let mut total = 0;
        self.by_key.retain(|_, seen| {
            seen.retain(|_, until| *until >= now);
            total += seen.len();
            !seen.is_empty()
        });
        self.total = total;
    }
}

/// How [`RemoteVerifier::follow_revocations_with`] follows the feed.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct FeedOptions {
    /// Time between polls.
    pub interval: Duration,
    /// `None` (the default): fail open, keep verifying tokens whatever
    /// happens to the feed (a failed poll is logged). `Some(n)`: once `n`
    /// intervals have passed without a successful poll, refuse every token
    /// with `503` until a poll succeeds again.
    pub fail_closed_after: Option<u32>,
}

impl FeedOptions {
    /// Polls every `interval`, failing open.
    pub fn every(interval: Duration) -> Self {
        Self {
            interval,
            fail_closed_after: None,
        }
    }

    /// Refuses every token once `polls` intervals pass without a successful poll.
    pub fn fail_closed_after(mut self, polls: u32) -> Self {
        self.fail_closed_after = Some(polls.max(1));
        self
    }
}

/// What the feed follower knows.
#[derive(Debug, Default)]
struct FeedState {
    /// When a poll last succeeded, on the wall clock and the monotonic one.
    last_success: Option<(SystemTime, Instant)>,
    /// When following started, and how strictly.
    following: Option<(Instant, FeedOptions)>,
}

/// Verifies access tokens against the issuer's published keys. Cheap to clone.
#[derive(Clone)]
pub struct RemoteVerifier {
    inner: Arc<Inner>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, Error> {
    let fail = |source| Error::Fetch {
        url: url.to_owned(),
        source,
    };
    http.get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(fail)?
        .json()
        .await
        .map_err(fail)
}

impl RemoteVerifier {
    /// Reads `{issuer}/.well-known/oauth-authorization-server`, checks that it
    /// names `issuer`, and fetches the JWKS. Tokens must carry `aud: audience`.
    /// An unknown `kid` refetches the JWKS at most every 30 s.
    pub async fn discover(issuer: &str, audience: &str) -> Result<Self, Error> {
        Self::discover_with(issuer, audience, Duration::from_secs(30)).await
    }

    /// [`discover`](Self::discover), refetching at most every `refetch_interval`.
    pub async fn discover_with(
        issuer: &str,
        audience: &str,
        refetch_interval: Duration,
    ) -> Result<Self, Error> {
        Self::discover_with_options(
            issuer,
            audience,
            Options::default().refetch_interval(refetch_interval),
        )
        .await
    }

    /// Like [`RemoteVerifier::discover`], with the given [`Options`].
    pub async fn discover_with_options(
        issuer: &str,
        audience: &str,
        options: Options,
    ) -> Result<Self, Error> {
        let issuer = issuer.trim_end_matches('/');
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| Error::Fetch {
                url: issuer.to_owned(),
                source,
            })?;
        let url = format!("{issuer}/.well-known/oauth-authorization-server");
        let metadata: Metadata = get_json(&http, &url).await?;
        if metadata.issuer.trim_end_matches('/') != issuer {
            return Err(Error::IssuerMismatch(url));
        }
        let verifier = Self {
            inner: Arc::new(Inner {
                issuer: issuer.to_owned(),
                audience: audience.to_owned(),
                jwks_uri: metadata.jwks_uri,
                feed_uri: metadata.revocation_feed_endpoint,
                http,
                keys: RwLock::new(Verifier::new(issuer, audience)),
                keys_fresh_until: Mutex::new(Instant::now()),
                last_fetch: Mutex::new(Instant::now()),
                options,
                revoked: RwLock::new(HashMap::new()),
                feed: Mutex::new(FeedState::default()),
                proofs: Mutex::new(SeenProofs::default()),
            }),
        };
        verifier.fetch_keys().await?;
        Ok(verifier)
    }

    /// Fetches the JWKS now and trusts exactly its keys.
    pub async fn fetch_keys(&self) -> Result<(), Error> {
        let url = &self.inner.jwks_uri;
        let fail = |source| Error::Fetch {
            url: url.clone(),
            source,
        };
        let response = self
            .inner
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(fail)?;
        let max_age = response
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age_of)
            .map_or(self.inner.options.max_key_age, |age| {
                age.min(self.inner.options.max_key_age)
            });
        let jwks: Jwks = response.json().await.map_err(fail)?;
        let mut fresh = Verifier::new(self.inner.issuer.clone(), self.inner.audience.clone());
        for key in jwks.keys {
            // Keys of other kinds or algorithms are skipped, not trusted.
            if let Ok(jwk) = serde_json::from_value::<PublicJwk>(key) {
                fresh.insert(&jwk)?;
            }
        }
        *write(&self.inner.keys) = fresh;
        *lock(&self.inner.keys_fresh_until) = Instant::now() + max_age;
        Ok(())
    }

    /// Whether the cached JWKS has outlived its `max-age`.
    fn keys_stale(&self) -> bool {
        Instant::now() >= *lock(&self.inner.keys_fresh_until)
    }

    fn may_refetch(&self) -> bool {
        let mut last = lock(&self.inner.last_fetch);
        if last.elapsed() >= self.inner.options.refetch_interval {
            *last = Instant::now();
            true
        } else {
            false
        }
    }

    /// Verifies a token: signature and claims, then the revocation feed.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, Rejection> {
        let now = now();
        if self.feed_failed_closed() {
            return Err(Rejection::RevocationsUnknown);
        }
        // Aged keys are fetched again before they verify anything more; if
        // the issuer cannot be reached, the last set stays in use (logged),
        // and a request after the refetch interval tries again.
        if self.keys_stale()
            && self.may_refetch()
            && let Err(e) = self.fetch_keys().await
        {
            tracing::warn!(error = %e, "JWKS refetch after its max-age failed");
        }
        let first = read(&self.inner.keys).verify(token, now);
        let claims = match first {
            Err(VerifyError::UnknownKey) if self.may_refetch() => {
                if let Err(e) = self.fetch_keys().await {
                    tracing::warn!(error = %e, "JWKS refetch failed");
                }
                read(&self.inner.keys).verify(token, now)
            }
            other => other,
        }
        .map_err(Rejection::Invalid)?;
        if let Some(sid) = &claims.sid
            && read(&self.inner.revoked)
                .get(sid)
                .is_some_and(|until| *until >= now)
        {
            return Err(Rejection::Revoked);
        }
        Ok(claims)
    }

    /// Polls the issuer's revocation feed every `interval` with the given
    /// confidential client's credentials, until the runtime stops.
    pub fn follow_revocations(
        &self,
        client_id: &str,
        client_secret: &str,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        self.follow_revocations_with(client_id, client_secret, FeedOptions::every(interval))
    }

    /// Like [`RemoteVerifier::follow_revocations`], with [`FeedOptions`]
    /// (to fail closed after missed polls).
    pub fn follow_revocations_with(
        &self,
        client_id: &str,
        client_secret: &str,
        options: FeedOptions,
    ) -> tokio::task::JoinHandle<()> {
        lock(&self.inner.feed).following = Some((Instant::now(), options));
        let verifier = self.clone();
        let (client_id, client_secret) = (client_id.to_owned(), client_secret.to_owned());
        tokio::spawn(async move {
            let Some(feed) = verifier.inner.feed_uri.clone() else {
                tracing::error!("the issuer publishes no revocation feed");
                return;
            };
            let mut since: Option<i64> = None;
            let mut ticker = tokio::time::interval(options.interval);
            loop {
                ticker.tick().await;
                match verifier
                    .poll_feed(&feed, &client_id, &client_secret, since)
                    .await
                {
                    Ok(next) => {
                        since = Some(next);
                        lock(&verifier.inner.feed).last_success =
                            Some((SystemTime::now(), Instant::now()));
                    }
                    Err(e) => tracing::warn!(error = %e, "revocation feed poll failed"),
                }
            }
        })
    }

    /// When a poll of the revocation feed last succeeded; `None` before the
    /// first success (or when the feed is not followed).
    pub fn last_feed_poll(&self) -> Option<SystemTime> {
        lock(&self.inner.feed).last_success.map(|(at, _)| at)
    }

    /// Whether the feed is followed fail-closed and has gone unpolled for
    /// longer than allowed.
    fn feed_failed_closed(&self) -> bool {
        let state = lock(&self.inner.feed);
        let Some((started, options)) = state.following else {
            return false;
        };
        let Some(polls) = options.fail_closed_after else {
            return false;
        };
        let since = state.last_success.map_or(started, |(_, at)| at);
        since.elapsed() > options.interval * polls
    }

    async fn poll_feed(
        &self,
        feed: &str,
        id: &str,
        secret: &str,
        since: Option<i64>,
    ) -> Result<i64, Error> {
        #[derive(Deserialize)]
        struct Item {
            sid: String,
            exp: i64,
        }
        #[derive(Deserialize)]
        struct Page {
            revoked: Vec<Item>,
            next_since: i64,
        }
        let url = match since {
            Some(s) => format!("{feed}?since={s}"),
            None => feed.to_owned(),
        };
        let fail = |source| Error::Fetch {
            url: url.clone(),
            source,
        };
        let page: Page = self
            .inner
            .http
            .get(&url)
            .basic_auth(id, Some(secret))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(fail)?
            .json()
            .await
            .map_err(fail)?;
        let now = now();
        let mut revoked = write(&self.inner.revoked);
        revoked.retain(|_, until| *until >= now);
        for item in page.revoked {
            revoked.insert(item.sid, item.exp);
        }
        Ok(page.next_since)
    }

    /// Verifies a request's access token (`Authorization: Bearer`, or
    /// `DPoP` with a proof for a token bound to a key, RFC 9449 §7): a
    /// DPoP-bound token needs a fresh proof of its key for this request's
    /// method and URL, seen by this service only once.
    pub async fn verify_request(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Result<AccessClaims, Rejection> {
        let (token, dpop_scheme) = authorization(headers).ok_or(Rejection::Missing)?;
        let claims = self.verify(token).await?;
        let bound = claims
            .cnf
            .as_ref()
            .and_then(|c| c.get("jkt"))
            .and_then(|j| j.as_str())
            .map(str::to_owned);
        match (bound, dpop_scheme) {
            (None, false) => Ok(claims),
            (None, true) | (Some(_), false) => Err(Rejection::SchemeMismatch),
            (Some(jkt), true) => {
                self.check_proof(method, uri, headers, token, &jkt)?;
                Ok(claims)
            }
        }
    }

    fn check_proof(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        token: &str,
        jkt: &str,
    ) -> Result<(), Rejection> {
        let mut all = headers.get_all("dpop").iter();
        let (Some(value), None) = (all.next(), all.next()) else {
            return Err(Rejection::InvalidProof);
        };
        let proof = value.to_str().map_err(|_| Rejection::InvalidProof)?;
        let Some(base) = &self.inner.options.public_url else {
            return Err(Rejection::DpopUnavailable);
        };
        let url = format!("{base}{}", uri.path());
        let now = now();
        let expected = latchkey_core::dpop::Expected {
            method: method.as_str(),
            url: &url,
            now,
            access_token: Some(token),
        };
        let proof =
            latchkey_core::dpop::verify(proof, &expected).map_err(|_| Rejection::InvalidProof)?;
        if proof.jkt != jkt {
            return Err(Rejection::InvalidProof);
        }
        let until = proof.iat.max(now) + latchkey_core::dpop::IAT_WINDOW + 1;
        if !lock(&self.inner.proofs).insert(&proof.jkt, &proof.jti, until, now) {
            return Err(Rejection::InvalidProof);
        }
        Ok(())
    }

    /// A tower layer that lets through only requests with a valid token.
    pub fn layer(&self) -> RequireToken {
        RequireToken {
            verifier: self.clone(),
            scopes: Arc::new(Vec::new()),
            acr: None,
            max_age: None,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The `max-age` of a `Cache-Control` value.
fn max_age_of(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        value
            .trim()
            .trim_matches('"')
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    })
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    match lock.read() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    match lock.write() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The layer from [`RemoteVerifier::layer`].
#[derive(Clone)]
pub struct RequireToken {
    verifier: RemoteVerifier,
    scopes: Arc<Vec<String>>,
    acr: Option<Acr>,
    max_age: Option<u64>,
}

impl RequireToken {
    /// Also requires `scope` in the token's `scope` claim (403 otherwise).
    pub fn require_scope(mut self, scope: &str) -> Self {
        Arc::make_mut(&mut self.scopes).push(scope.to_owned());
        self
    }

    /// Also requires a sign-in at least as strong as `acr` (`Acr::Mfa`: two
    /// factors; `Acr::Phr`: a passkey). A weaker token, or one with no `acr`
    /// (a client's own), gets `401` with an `insufficient_user_authentication`
    /// challenge naming `acr_values` (RFC 9470).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use latchkey_verify::{Acr, RemoteVerifier};
    /// let verifier = RemoteVerifier::discover("http://127.0.0.1:8080", "latchkey").await?;
    /// let payments = verifier.layer().require_acr(Acr::Mfa).max_age(std::time::Duration::from_secs(300));
    /// # Ok(()) }
    /// ```
    pub fn require_acr(mut self, acr: Acr) -> Self {
        self.acr = Some(acr);
        self
    }

    /// Also requires a sign-in (`auth_time`) at most `age` old; an older one
    /// gets the same challenge, naming `max_age`.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age.as_secs());
        self
    }

    /// The challenge for `claims`, if their sign-in is too weak or too old.
    fn check_sign_in(&self, claims: &AccessClaims) -> Result<(), Rejection> {
        sign_in_check(self.acr, self.max_age, claims, now())
    }
}

/// Whether `claims`' sign-in reaches `acr` and is at most `max_age` seconds
/// old at `now`; a token without `acr` or `auth_time` (a client's own)
/// reaches nothing.
fn sign_in_check(
    acr: Option<Acr>,
    max_age: Option<u64>,
    claims: &AccessClaims,
    now: i64,
) -> Result<(), Rejection> {
    let reached = claims.acr.as_deref().and_then(Acr::parse);
    let weak = acr.is_some_and(|wanted| reached.is_none_or(|r| r < wanted));
    let old = max_age.is_some_and(|max| {
        claims
            .auth_time
            .is_none_or(|at| now.saturating_sub(at) > i64::try_from(max).unwrap_or(i64::MAX))
    });
    if weak || old {
        return Err(Rejection::InsufficientUserAuthentication { acr, max_age });
    }
    Ok(())
}

impl<S> tower::Layer<S> for RequireToken {
    type Service = RequireTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireTokenService {
            inner,
            config: self.clone(),
        }
    }
}

/// The service of [`RequireToken`].
#[derive(Clone)]
pub struct RequireTokenService<S> {
    inner: S,
    config: RequireToken,
}

/// The access token of a request and whether it came with the `DPoP`
/// scheme; tokens in query strings are never read.
fn authorization(headers: &http::HeaderMap) -> Option<(&str, bool)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    if token.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Some((token, false))
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Some((token, true))
    } else {
        None
    }
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for RequireTokenService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone that was readied serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        Box::pin(async move {
            let verdict = config
                .verifier
                .verify_request(request.method(), request.uri(), request.headers())
                .await;
            let verdict = verdict.and_then(|claims| {
                config.check_sign_in(&claims)?;
                let granted: Vec<&str> = claims.scope.split(' ').collect();
                if config.scopes.iter().all(|s| granted.contains(&s.as_str())) {
                    Ok(claims)
                } else {
                    Err(Rejection::InsufficientScope)
                }
            });
            match verdict {
                Ok(claims) => {
                    request.extensions_mut().insert(claims);
                    inner.call(request).await
                }
                Err(rejection) => Ok(rejection.into_response(&config.scopes)),
            }
        })
    }
}

/// The verified claims, in an axum handler behind [`RequireToken`].
#[cfg(feature = "axum")]
#[derive(Debug, Clone)]
pub struct Claims(pub AccessClaims);

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum_core::extract::FromRequestParts<S> for Claims {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AccessClaims>()
            .cloned()
            .map(Claims)
            .ok_or((
                StatusCode::UNAUTHORIZED,
                "no verified token: add RemoteVerifier::layer()",
            ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_in(acr: Option<&str>, auth_time: Option<i64>) -> AccessClaims {
        AccessClaims {
            iss: "https://issuer.test".into(),
            sub: "usr_1".into(),
            aud: "api".into(),
            exp: 2_000,
            iat: 1_000,
            nbf: None,
            jti: "j".into(),
            client_id: "first-party".into(),
            scope: "profile".into(),
            sid: Some("ses_1".into()),
            auth_time,
            amr: None,
            acr: acr.map(str::to_owned),
            cnf: None,
            fingerprint: None,
        }
    }

    #[test]
    fn a_weaker_or_older_sign_in_is_asked_to_step_up() {
        let now = 1_000;
        let phr = signed_in(Some("phr"), Some(990));
        assert!(sign_in_check(Some(Acr::Mfa), None, &phr, now).is_ok());
        assert!(sign_in_check(Some(Acr::Phr), Some(10), &phr, now).is_ok());
        let pwd = signed_in(Some("pwd"), Some(990));
        let weak = sign_in_check(Some(Acr::Mfa), None, &pwd, now).unwrap_err();
        assert_eq!(
            weak,
            Rejection::InsufficientUserAuthentication {
                acr: Some(Acr::Mfa),
                max_age: None
            }
        );
        assert!(sign_in_check(Some(Acr::Pwd), None, &pwd, now).is_ok());
        assert!(sign_in_check(None, Some(9), &pwd, now).is_err(), "too old");
        let client = signed_in(None, None);
        assert!(sign_in_check(Some(Acr::Pwd), None, &client, now).is_err());
        assert!(sign_in_check(None, Some(60), &client, now).is_err());
        assert!(sign_in_check(None, None, &client, now).is_ok());
        assert!(
            sign_in_check(
                Some(Acr::Mfa),
                None,
                &signed_in(Some("gold"), Some(990)),
                now
            )
            .is_err()
        );

        let response = Rejection::InsufficientUserAuthentication {
            acr: Some(Acr::Phr),
            max_age: Some(300),
        }
        .into_response::<String>(&[]);
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer error=\"insufficient_user_authentication\", \
             error_description=\"a stronger or more recent sign-in is required\", \
             acr_values=\"phr\", max_age=300"
        );
    }

    #[test]
    fn one_key_cannot_fill_the_replay_cache_for_the_others() {
        let mut seen = SeenProofs::default();
        let now = 1_800_000_000;
        for i in 0..MAX_SEEN_PROOFS_PER_KEY {
            assert!(seen.insert("greedy", &i.to_string(), now + 120, now));
        }
        // The greedy key is refused, and only it.
        assert!(!seen.insert("greedy", "one more", now + 120, now));
        assert!(seen.insert("honest", "a", now + 120, now));
        // A replay is refused.
        assert!(!seen.insert("honest", "a", now + 120, now));
        // Once its proofs are stale, the greedy key gets in again.
        assert!(seen.insert("greedy", "later", now + 300, now + 121));
        assert_eq!(seen.total, 2);
    }

    #[test]
    fn the_whole_cache_is_bounded() {
        let mut seen = SeenProofs::default();
        let now = 1_800_000_000;
        let keys = MAX_SEEN_PROOFS / MAX_SEEN_PROOFS_PER_KEY;
        for key in 0..keys {
            for i in 0..MAX_SEEN_PROOFS_PER_KEY {
                assert!(seen.insert(&key.to_string(), &i.to_string(), now + 120, now));
            }
        }
        assert_eq!(seen.total, MAX_SEEN_PROOFS);
        assert!(!seen.insert("another", "a", now + 120, now), "fail closed");
        assert!(seen.insert("another", "a", now + 200, now + 121));
        assert_eq!(seen.total, 1);
    }
}
