//! The token flows: password login, refresh rotation, client credentials,
//! and checking the access tokens this server's own resources receive. One
//! implementation each, returning a [`Refusal`] rather than an HTTP error;
//! `crate::AppState` composes this with the other services, and the HTTP
//! handlers only parse, call and render.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use latchkey_core::clock::Clock;
use latchkey_core::coordination::{AttemptCounter, RevocationFeed};
use latchkey_core::id::random_id;
use latchkey_core::jwt::{self, AccessClaims, FIRST_PARTY_CLIENT_ID, Verifier, VerifyError};
use latchkey_core::password::PasswordHasher;
use latchkey_core::refresh::{RefreshKeys, RefreshToken};
use latchkey_core::rotation::{Rejection, RevocationReason, RotationRequest};
use latchkey_core::scope::Scope;
use latchkey_core::session::{self, NewSession, SessionStart};
use latchkey_core::store::{Client, Outcome, Session, Store, User};

use super::{Actor, Events, Refusal, Sessions};
use crate::config::Config;
use crate::keyring::{Keyring, LiveKeyring, load_keyring};
use crate::metrics::Metrics;
use crate::revocation::RevocationCache;

/// What the token flows need, composed once at start-up.
pub struct TokenService {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keyring: LiveKeyring,
    pub(crate) refresh_keys: RefreshKeys,
    pub(crate) passwords: Arc<PasswordHasher>,
    /// Argon2id is CPU- and memory-bound: at most one hash per core at once,
    /// and one core fewer while other requests are in flight.
    pub(crate) hash_gate: crate::hashing::HashGate,
    pub(crate) hash_pool: crate::hashing::HashPool,
    pub(crate) rng: SystemRandom,
    pub(crate) metrics: Arc<Metrics>,
    /// Audit trail, log and metrics.
    pub(crate) events: Events,
    /// Revoking sessions.
    pub(crate) sessions: Sessions,
    /// Login attempts per account and per address: Redis's, shared by every
    /// instance, when configured; else this process's.
    pub(crate) attempts: Arc<dyn AttemptCounter>,
    /// Logins waiting for a hash, at most `MAX_WAITING_HASHES`.
    pub(crate) waiting_hashes: std::sync::atomic::AtomicUsize,
    /// Where "now" comes from.
    pub(crate) clock: Arc<dyn Clock>,
    /// Where revocations are learnt as they happen: Redis when configured,
    /// else the database when it can tell (PostgreSQL).
    pub(crate) feed: Option<Arc<dyn RevocationFeed>>,
    pub(crate) revocations: Arc<RevocationCache>,
}

/// Who is asking, as far as the transport tells.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Client IP address.
    pub ip: String,
    /// `User-Agent`, truncated.
    pub user_agent: String,
}

/// A token response before serialisation.
#[derive(Debug)]
pub struct Issued {
    /// The signed JWT.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The refresh token, for user sessions.
    pub refresh_token: Option<RefreshToken>,
    /// Granted scope.
    pub scope: String,
    /// The session.
    pub session_id: Option<String>,
}

/// A verified access token whose session is live.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Its claims.
    pub claims: AccessClaims,
    /// Its user, for user tokens.
    pub user: Option<User>,
}

/// Whom an access token is for.
struct Grant<'a> {
    sub: &'a str,
    client_id: Option<&'a str>,
    scope: &'a str,
    sid: Option<&'a str>,
    auth_time: Option<i64>,
}

const INVALID_CREDENTIALS: &str = "invalid username or password";

/// What every refused refresh says, whatever the reason: a thief learns
/// nothing of the token's state (the audit trail and the log tell operators).
const INVALID_REFRESH: &str = "the refresh token is invalid, expired or revoked";

/// The longest username a login looks up (the CLI allows 256 characters of
/// up to 4 bytes); longer ones are refused before any counting.
pub const MAX_USERNAME_BYTES: usize = 1024;

/// Logins waiting for a hash or hashing, at most: beyond that a login is
/// answered `503` at once instead of queueing (about a second of work on two
/// cores).
pub const MAX_WAITING_HASHES: usize = 64;

/// The attempt counters a login takes: its account's and its address's.
struct AttemptKeys {
    account: String,
    address: String,
}

impl AttemptKeys {
    fn new(username: &str, ip: &str) -> Self {
        let address = match ip.parse::<std::net::IpAddr>() {
            Ok(ip) => crate::throttle::address_key(ip),
            Err(_) => ip.to_owned(),
        };
        Self {
            account: format!("acct:{}", username.to_lowercase()),
            address: format!("ip:{address}"),
        }
    }
}

/// A place in a bounded queue, given back when dropped.
struct Queued<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicUsize, max: usize) -> Option<Self> {
        use std::sync::atomic::Ordering;
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl TokenService {
    /// Now, in Unix seconds, by this server's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The keys in use now.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.get()
    }

    /// The refresh-token and client-secret keys.
    pub fn refresh_keys(&self) -> &RefreshKeys {
        &self.refresh_keys
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The random source.
    pub fn rng(&self) -> &SystemRandom {
        &self.rng
    }

    /// Writes an audit event and a structured log line. An audit failure is
    /// logged, never shown to the client.
    pub async fn audit(
        &self,
        kind: &str,
        user_id: Option<&str>,
        session_id: Option<&str>,
        client_id: Option<&str>,
        ctx: &RequestContext,
        detail: &str,
    ) {
        let actor = Actor::request(ctx, client_id);
        self.events
            .audit(kind, user_id, session_id, &actor, detail)
            .await;
    }

    /// The revocation operations.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Runs Argon2id off the async runtime, one per core at most, for at
    /// most [`MAX_WAITING_HASHES`] logins waiting or hashing at once; past
    /// that, `503` with `Retry-After`.
    async fn verify_password(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, Refusal> {
        let _queued = Queued::enter(&self.waiting_hashes, MAX_WAITING_HASHES)
            .ok_or(Refusal::Busy { retry_after: 1 })?;
        let _turn = self.hash_gate.admit().await.map_err(Refusal::internal)?;
        let passwords = self.passwords.clone();
        self.hash_pool
            .run(move || passwords.verify(&password, stored.as_deref()))
            .await
            .ok_or_else(|| Refusal::internal("the hashing pool stopped"))
    }

    /// Hashes a new password off the async runtime.
    pub async fn hash_password(&self, password: String) -> Result<String, Refusal> {
        let _turn = self.hash_gate.admit().await.map_err(Refusal::internal)?;
        let (passwords, rng) = (self.passwords.clone(), self.rng.clone());
        self.hash_pool
            .run(move || passwords.hash(&password, &rng))
            .await
            .ok_or_else(|| Refusal::internal("the hashing pool stopped"))?
            .map_err(Refusal::internal)
    }

    /// The scope a login gets (§3.3): the requested one, or the default,
    /// within `LATCHKEY_SCOPES` and, through a client, within the client's
    /// registered scopes.
    fn login_scope(
        &self,
        requested: Option<&str>,
        client: Option<&Client>,
    ) -> Result<Scope, Refusal> {
        let config = self.config();
        let allowed = match client {
            Some(client) => config
                .scopes
                .intersection(&Scope::parse(&client.scope).unwrap_or_default()),
            None => config.scopes.clone(),
        };
        match requested {
            Some(text) if !text.trim().is_empty() => {
                let scope =
                    Scope::parse(text).map_err(|_| Refusal::invalid_scope("malformed scope"))?;
                if !scope.is_subset(&allowed) {
                    return Err(Refusal::invalid_scope(
                        "the requested scope is not available",
                    ));
                }
                Ok(scope)
            }
            _ => Ok(config.default_scope.intersection(&allowed)),
        }
    }

    /// Signs an access token for `grant`.
    fn mint(&self, grant: Grant<'_>, jti: String, now: i64) -> Result<String, Refusal> {
        let config = self.config();
        let claims = AccessClaims {
            iss: config.issuer.clone(),
            sub: grant.sub.to_owned(),
            aud: config.audience.clone(),
            exp: now + config.access_ttl,
            iat: now,
            nbf: None,
            jti,
            client_id: grant.client_id.unwrap_or(FIRST_PARTY_CLIENT_ID).to_owned(),
            scope: grant.scope.to_owned(),
            sid: grant.sid.map(str::to_owned),
            auth_time: grant.auth_time,
            cnf: None,
        };
        Ok(jwt::sign(self.keyring().signing(now), &claims)?)
    }

    /// Takes a login attempt of the account and of the client's address
    /// before any password is checked; `Err(seconds)` when either has used
    /// up its attempts (and nothing is taken). With Redis the counts are
    /// shared by every instance; if Redis fails, logins are let through (and
    /// the failure logged) rather than refused.
    async fn take_attempts(&self, keys: &AttemptKeys) -> Result<(), i64> {
        let config = self.config();
        let account = self
            .counted(self.attempts.take_attempt(
                &keys.account,
                config.throttle_account.max,
                config.throttle_account.window,
            ))
            .await;
        if let Some(Some(wait)) = account {
            return Err(wait);
        }
        let address = self
            .counted(self.attempts.take_attempt(
                &keys.address,
                config.throttle_ip.max,
                config.throttle_ip.window,
            ))
            .await;
        if let Some(Some(wait)) = address {
            self.give_back_attempt(&keys.account).await;
            return Err(wait);
        }
        Ok(())
    }

    /// Gives back an attempt that was not checked.
    async fn give_back_attempt(&self, key: &str) {
        self.counted(self.attempts.give_back_attempt(key)).await;
    }

    /// A successful login: the account starts afresh, and the address gets
    /// its attempt back.
    async fn login_succeeded(&self, keys: &AttemptKeys) {
        self.counted(self.attempts.clear_attempts(&keys.account))
            .await;
        self.give_back_attempt(&keys.address).await;
    }

    async fn counted<T>(
        &self,
        call: impl std::future::Future<Output = latchkey_core::store::StoreResult<T>>,
    ) -> Option<T> {
        match call.await {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::error!(error = %e, "login attempt counters unavailable");
                None
            }
        }
    }

    /// How long a revoked session stays on the deny-list: until its last
    /// access token has expired.
    pub fn deny_ttl(&self) -> i64 {
        self.config().access_ttl + jwt::LEEWAY_SECS
    }

    /// Tells every instance (through Redis, when configured) that these
    /// sessions were revoked; the database already says so. This instance
    /// knows at once; through PostgreSQL's feed, the others learn it from
    /// the database when the revocation commits.
    pub async fn announce_revoked(&self, sids: &[String]) {
        self.sessions.announce(sids).await;
    }

    /// The revocation feed this instance follows, if any.
    pub fn revocation_feed(&self) -> Option<&Arc<dyn RevocationFeed>> {
        self.feed.as_ref()
    }

    /// The local view of announced revocations.
    pub fn revocations(&self) -> &RevocationCache {
        self.revocations.as_ref()
    }

    /// Counts a revoked session by reason.
    pub fn count_revocation(&self, reason: RevocationReason) {
        self.events.count_revocation(reason);
    }

    /// Revokes a session and records why; false if it was already revoked.
    pub async fn revoke_session(
        &self,
        sid: &str,
        user_id: &str,
        reason: RevocationReason,
        client_id: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<bool, Refusal> {
        let actor = Actor::request(ctx, client_id);
        Ok(self.sessions.revoke(sid, user_id, reason, &actor).await?)
    }

    /// Username and password to a new session (`/auth/login`, password grant).
    /// Unknown user, wrong password and disabled user give the same answer
    /// after the same work.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        scope: Option<&str>,
        client: Option<&Client>,
        ctx: &RequestContext,
    ) -> Result<Issued, Refusal> {
        // A login does not keep the last core from hashing other logins.
        let _credential = self.hash_gate.credential();
        if username.len() > MAX_USERNAME_BYTES {
            return Err(Refusal::invalid_request("username is too long"));
        }
        let scope = self.login_scope(scope, client)?;
        let client_id = client.map(|c| c.id.as_str());
        // The attempt counts before any hashing: however many arrive at
        // once, at most the limit are checked, and a flood costs no Argon2id.
        let keys = AttemptKeys::new(username, &ctx.ip);
        if let Err(retry_after) = self.take_attempts(&keys).await {
            self.metrics().inc("latchkey_throttled_total", &[]);
            let detail = "failed-login limit reached";
            self.audit("throttled", None, None, client_id, ctx, detail)
                .await;
            return Err(Refusal::TooManyRequests { retry_after });
        }
        let user = match self.store().user_by_name(username).await {
            Ok(user) => user,
            Err(e) => {
                self.give_back_attempt(&keys.account).await;
                self.give_back_attempt(&keys.address).await;
                return Err(e.into());
            }
        };
        let checked = self
            .verify_password(
                password.to_owned(),
                user.as_ref().map(|u| u.password_hash.clone()),
            )
            .await;
        let ok = match checked {
            Ok(ok) => ok,
            // Not checked (the queue was full): the attempt does not count.
            Err(e) => {
                self.give_back_attempt(&keys.account).await;
                self.give_back_attempt(&keys.address).await;
                return Err(e);
            }
        };
        let user = match user {
            Some(user) if ok && !user.disabled => user,
            other => {
                let id = other.as_ref().map(|u| u.id.as_str());
                let why = match &other {
                    None => "unknown user",
                    Some(u) if u.disabled && ok => "user disabled",
                    Some(_) => "wrong password",
                };
                self.metrics().inc("latchkey_login_failures_total", &[]);
                self.audit("login_failed", id, None, client_id, ctx, why)
                    .await;
                return Err(Refusal::invalid_grant(INVALID_CREDENTIALS));
            }
        };
        self.login_succeeded(&keys).await;
        match self
            .start_session(&user, client_id, &scope, ctx, "login")
            .await?
        {
            Some(issued) => Ok(issued),
            None => {
                // Disabled (or deleted) while the password was being checked.
                self.metrics().inc("latchkey_login_failures_total", &[]);
                self.audit(
                    "login_failed",
                    Some(&user.id),
                    None,
                    client_id,
                    ctx,
                    "user disabled",
                )
                .await;
                Err(Refusal::invalid_grant(INVALID_CREDENTIALS))
            }
        }
    }

    /// Starts a session of `user` (through `client_id`, with `scope`, which
    /// the caller has checked) and issues its first token pair: what a login
    /// does once the password is right, and what an application that
    /// authenticated the user itself asks for. The session's `login` event
    /// and the cap's revocations commit with it. `None`, having written
    /// nothing, when the user is disabled or gone by then.
    pub async fn start_session(
        &self,
        user: &User,
        client_id: Option<&str>,
        scope: &Scope,
        ctx: &RequestContext,
        grant_name: &'static str,
    ) -> Result<Option<Issued>, Refusal> {
        let now = self.now();
        let config = self.config();
        let rng = self.rng();
        let session_id = random_id("ses_", rng)?;
        let jti = random_id("", rng)?;
        let token = RefreshToken::generate(rng)?;
        let start = session::start(
            &config.policy,
            NewSession {
                id: session_id.clone(),
                user_id: &user.id,
                client_id,
                scope: scope.to_string(),
                first_token: self.refresh_keys().hash(&token),
                access_jti: jti.clone(),
                ip: &ctx.ip,
                user_agent: &ctx.user_agent,
                now,
            },
        );
        // The login's audit event, and those of the sessions the cap
        // revokes, are written in the session's own transaction.
        let Some(evicted) = self
            .store()
            .create_session(&start, config.max_sessions_per_user)
            .await?
        else {
            return Ok(None);
        };
        let SessionStart {
            session,
            audit: created,
            ..
        } = start;
        Events::log(&created);
        self.announce_revoked(&evicted).await;
        for old in &evicted {
            self.count_revocation(RevocationReason::SessionCap);
            Events::log(&created.session_revoked(old, RevocationReason::SessionCap));
        }
        self.metrics()
            .inc("latchkey_tokens_issued_total", &[("grant", grant_name)]);
        let grant = Grant {
            sub: &user.id,
            client_id,
            scope: &session.scope,
            sid: Some(&session_id),
            auth_time: Some(now),
        };
        let access_token = self.mint(grant, jti, now)?;
        Ok(Some(Issued {
            access_token,
            expires_in: config.access_ttl,
            refresh_token: Some(token),
            scope: session.scope,
            session_id: Some(session_id),
        }))
    }

    /// A refresh grant: rotate the presented token (§3.3–§3.5).
    pub async fn refresh(
        &self,
        presented: &str,
        client_id: Option<&str>,
        expected_session: Option<String>,
        scope: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Issued, Refusal> {
        let Some(token) = RefreshToken::parse(presented) else {
            return Err(Refusal::invalid_grant(INVALID_REFRESH));
        };
        let scope = match scope {
            Some(text) => {
                Some(Scope::parse(text).map_err(|_| Refusal::invalid_scope("malformed scope"))?)
            }
            None => None,
        };
        let keys = self.refresh_keys();
        // Derived from its parent only where a retry must get the same one
        // (the grace window); else drawn at random, so that not even the
        // hashing key can tell a token's successors from the token.
        let successor = if self.config().policy.reuse_grace > 0 {
            keys.successor(&token)
        } else {
            RefreshToken::generate(self.rng())?
        };
        let now = self.now();
        let jti = random_id("", self.rng())?;
        let request = RotationRequest {
            presented: keys.hash(&token),
            successor: keys.hash(&successor),
            client_id: client_id.map(str::to_owned),
            expected_session,
            scope,
            access_jti: jti.clone(),
            ip: ctx.ip.clone(),
            user_agent: ctx.user_agent.clone(),
            now,
        };
        let outcome = self.store().rotate(&self.config().policy, &request).await?;
        let (session, scope) = match outcome {
            Outcome::Rotated {
                session,
                scope,
                binding_mismatch,
            } => {
                if binding_mismatch {
                    let detail = format!("login from {}, refresh from {}", session.ip, ctx.ip);
                    self.audit(
                        "binding_mismatch",
                        Some(&session.user_id),
                        Some(&session.id),
                        client_id,
                        ctx,
                        &detail,
                    )
                    .await;
                }
                self.metrics()
                    .inc("latchkey_refreshes_total", &[("outcome", "rotated")]);
                // The store wrote the audit row inside the rotation; log it too.
                tracing::info!(target: "latchkey::audit", kind = "refresh", user_id = %session.user_id,
                    session_id = %session.id, client_id, ip = %ctx.ip, "audit");
                (session, scope)
            }
            Outcome::Replayed { session, scope } => {
                self.metrics()
                    .inc("latchkey_refreshes_total", &[("outcome", "replayed")]);
                self.audit(
                    "refresh_replayed",
                    Some(&session.user_id),
                    Some(&session.id),
                    client_id,
                    ctx,
                    "within grace window",
                )
                .await;
                (session, scope)
            }
            Outcome::Revoked { session, reason } => {
                self.announce_revoked(std::slice::from_ref(&session.id))
                    .await;
                let kind = match reason {
                    RevocationReason::Reuse => "reuse_detected",
                    _ => "session_revoked",
                };
                tracing::warn!(session_id = %session.id, user_id = %session.user_id, reason = reason.as_str(), "session revoked on refresh");
                self.metrics()
                    .inc("latchkey_refreshes_total", &[("outcome", "revoked")]);
                if reason == RevocationReason::Reuse {
                    self.metrics().inc("latchkey_reuse_detected_total", &[]);
                }
                self.count_revocation(reason);
                self.audit(
                    kind,
                    Some(&session.user_id),
                    Some(&session.id),
                    client_id,
                    ctx,
                    reason.as_str(),
                )
                .await;
                return Err(Refusal::invalid_grant(INVALID_REFRESH));
            }
            Outcome::Rejected(why) => {
                self.metrics()
                    .inc("latchkey_refreshes_total", &[("outcome", "rejected")]);
                if why == Rejection::ScopeWidened {
                    return Err(Refusal::invalid_scope(
                        "a refresh may narrow the scope, never widen it",
                    ));
                }
                // Presenting a token with the wrong client, or with an
                // access token of another session, is what a thief does.
                let refused = match why {
                    Rejection::ClientMismatch => Some("refresh token of another client"),
                    Rejection::SessionMismatch => {
                        Some("access token sent along belongs to another session")
                    }
                    Rejection::UserDisabled => Some("user disabled"),
                    _ => None,
                };
                if let Some(detail) = refused
                    && let Ok(Some((_, session))) =
                        self.store().refresh_token(&request.presented).await
                {
                    self.audit(
                        "refresh_refused",
                        Some(&session.user_id),
                        Some(&session.id),
                        client_id,
                        ctx,
                        detail,
                    )
                    .await;
                }
                tracing::debug!(reason = ?why, "refresh refused");
                return Err(Refusal::invalid_grant(INVALID_REFRESH));
            }
        };
        self.metrics().inc(
            "latchkey_tokens_issued_total",
            &[("grant", "refresh_token")],
        );
        let grant = Grant {
            sub: &session.user_id,
            client_id: session.client_id.as_deref(),
            scope: &scope,
            sid: Some(&session.id),
            auth_time: Some(session.created_at),
        };
        let access_token = self.mint(grant, jti, now)?;
        Ok(Issued {
            access_token,
            expires_in: self.config().access_ttl,
            refresh_token: Some(successor),
            scope,
            session_id: Some(session.id),
        })
    }

    /// A `client_credentials` grant: an access token for the client itself,
    /// with no session and no refresh token.
    pub fn client_token(&self, client: &Client, scope: Option<&str>) -> Result<Issued, Refusal> {
        let allowed = Scope::parse(&client.scope).unwrap_or_default();
        let scope = match scope {
            Some(text) if !text.trim().is_empty() => {
                let asked =
                    Scope::parse(text).map_err(|_| Refusal::invalid_scope("malformed scope"))?;
                if !asked.is_subset(&allowed) {
                    return Err(Refusal::invalid_scope(
                        "the client may not request this scope",
                    ));
                }
                asked
            }
            _ => allowed,
        };
        let now = self.now();
        let jti = random_id("", self.rng())?;
        let scope = scope.to_string();
        self.metrics().inc(
            "latchkey_tokens_issued_total",
            &[("grant", "client_credentials")],
        );
        let grant = Grant {
            sub: &client.id,
            client_id: Some(&client.id),
            scope: &scope,
            sid: None,
            auth_time: None,
        };
        let access_token = self.mint(grant, jti, now)?;
        Ok(Issued {
            access_token,
            expires_in: self.config().access_ttl,
            refresh_token: None,
            scope,
            session_id: None,
        })
    }

    /// Re-reads the signing keys from the database.
    pub async fn reload_keys(&self) {
        match load_keyring(self.store(), self.config(), self.rng(), self.now()).await {
            Ok(fresh) => self.keyring.replace(fresh),
            Err(e) => tracing::error!(error = %e, "reloading signing keys failed"),
        }
    }

    /// Verifies a token's signature and claims, reloading keys from the
    /// database (rate-limited) when its `kid` is new to this process.
    pub async fn verify_jwt(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        self.verify_jwt_by(token, Verifier::verify).await
    }

    /// The same, but an expired token still verifies: only to find the
    /// session an access token names (refresh grant, revocation), never to
    /// grant access.
    pub async fn verify_jwt_ignoring_expiry(
        &self,
        token: &str,
    ) -> Result<AccessClaims, VerifyError> {
        self.verify_jwt_by(token, jwt::dangerous::verify_ignoring_expiry)
            .await
    }

    async fn verify_jwt_by(
        &self,
        token: &str,
        verify: fn(&Verifier, &str, i64) -> Result<AccessClaims, VerifyError>,
    ) -> Result<AccessClaims, VerifyError> {
        let now = self.now();
        match verify(&self.keyring().verifier, token, now) {
            Err(VerifyError::UnknownKey) if self.keyring.may_reload() => {
                self.reload_keys().await;
                verify(&self.keyring().verifier, token, now)
            }
            other => other,
        }
    }

    /// A valid access token of a live session (or of a client): what every
    /// protected resource of this server accepts.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, Refusal> {
        let claims = self.verify_jwt(token).await.map_err(|e| {
            tracing::debug!(reason = %e, "access token refused");
            Refusal::invalid_token(match e {
                VerifyError::Expired => "the access token expired",
                _ => "the access token is invalid",
            })
        })?;
        let Some(sid) = claims.sid.as_deref() else {
            return Ok(Principal { claims, user: None });
        };
        let now = self.now();
        let live = |session: &Session, user: &User| {
            session.revoked_at.is_none()
                && session.user_id == claims.sub
                && !latchkey_core::rotation::has_expired(session.expires_at, now)
                && !user.disabled
        };
        // With a live revocation feed, announced revocations are all this
        // instance needs to know: sessions are looked up once, then cached.
        let cache = &self.revocations;
        let trusted = cache.trusted();
        if trusted.is_some() {
            if cache.is_revoked(sid) {
                return Err(Refusal::invalid_token("the session has been revoked"));
            }
            if let Some((session, user)) = cache.session(sid) {
                if live(&session, &user) {
                    return Ok(Principal {
                        claims,
                        user: Some(user),
                    });
                }
                return Err(Refusal::invalid_token("the session has been revoked"));
            }
        }
        self.metrics().inc("latchkey_session_lookups_total", &[]);
        match self.store().session_with_user(sid).await? {
            Some((session, user)) if live(&session, &user) => {
                if let Some(generation) = trusted {
                    cache.remember(session, user.clone(), generation);
                }
                Ok(Principal {
                    claims,
                    user: Some(user),
                })
            }
            _ => Err(Refusal::invalid_token("the session has been revoked")),
        }
    }
}
