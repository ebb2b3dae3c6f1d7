//! What the token flows share: [`TokenService`], composed once at start-up,
//! minting and verifying access tokens, and starting a session. Each flow
//! is a file of its own beside this one (`login.rs`, `refresh.rs`,
//! `client_credentials.rs`, `access.rs`); each answers a [`Refusal`], never
//! an HTTP error.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use latchkey_core::clock::Clock;
use latchkey_core::coordination::{AttemptCounter, RevocationFeed};
use latchkey_core::id::random_id;
use latchkey_core::jwt::{self, AccessClaims, FIRST_PARTY_CLIENT_ID, Verifier, VerifyError};
use latchkey_core::password::PasswordHasher;
use latchkey_core::refresh::{RefreshKeys, RefreshToken};
use latchkey_core::rotation::RevocationReason;
use latchkey_core::scope::Scope;
use latchkey_core::session::{self, NewSession, SessionStart};
use latchkey_core::store::{Store, User};

use super::{Actor, Events, Refusal, Sessions};
use crate::config::Config;
use crate::keyring::{Keyring, LiveKeyring, load_keyring};
use crate::metrics::Counter;
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
    /// In browser mode with fingerprints on: the SHA-256 (base64url) of the
    /// browser's fingerprint cookie, which the access tokens minted for this
    /// request carry.
    pub fingerprint: Option<String>,
    /// The DPoP key the request proved it holds, if it sent a proof: the
    /// access tokens minted for it are bound to the key.
    pub dpop: Option<super::DpopKey>,
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
    /// An OpenID Connect ID token (authorization code flow, `openid` scope).
    pub id_token: Option<String>,
    /// The access token is bound to a DPoP key (`token_type: DPoP`).
    pub dpop: bool,
}

/// A session about to start: its id and when its user authenticated.
pub(super) struct Opening {
    pub(super) session_id: String,
    pub(super) auth_time: i64,
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
pub(super) struct Grant<'a> {
    pub(super) sub: &'a str,
    pub(super) client_id: Option<&'a str>,
    pub(super) scope: &'a str,
    pub(super) sid: Option<&'a str>,
    pub(super) auth_time: Option<i64>,
    pub(super) fingerprint: Option<&'a str>,
    pub(super) dpop_jkt: Option<&'a str>,
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

    /// Signs an access token for `grant`.
    pub(super) fn mint(&self, grant: Grant<'_>, jti: String, now: i64) -> Result<String, Refusal> {
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
            cnf: grant.dpop_jkt.map(|jkt| serde_json::json!({ "jkt": jkt })),
            fingerprint: grant.fingerprint.map(str::to_owned),
        };
        Ok(jwt::sign(self.keyring().signing(now), &claims)?)
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
        let opening = Opening {
            session_id: random_id("ses_", self.rng())?,
            auth_time: self.now(),
        };
        self.open_session(opening, user, client_id, scope, ctx, grant_name)
            .await
    }

    /// [`Self::start_session`] with the session's id chosen beforehand and
    /// the time the user authenticated (an authorization code records both).
    pub(super) async fn open_session(
        &self,
        opening: Opening,
        user: &User,
        client_id: Option<&str>,
        scope: &Scope,
        ctx: &RequestContext,
        grant_name: &'static str,
    ) -> Result<Option<Issued>, Refusal> {
        let now = self.now();
        let config = self.config();
        let rng = self.rng();
        let Opening {
            session_id,
            auth_time,
        } = opening;
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
                // A public client's refresh tokens are bound to its key; a
                // confidential client's are bound by its authentication.
                dpop_jkt: ctx
                    .dpop
                    .as_ref()
                    .filter(|d| d.bind_refresh)
                    .map(|d| d.jkt.clone()),
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
            .inc(Counter::TokensIssued, &[("grant", grant_name)]);
        let grant = Grant {
            sub: &user.id,
            client_id,
            scope: &session.scope,
            sid: Some(&session_id),
            auth_time: Some(auth_time),
            fingerprint: ctx.fingerprint.as_deref(),
            dpop_jkt: ctx.dpop.as_ref().map(|d| d.jkt.as_str()),
        };
        let access_token = self.mint(grant, jti, now)?;
        Ok(Some(Issued {
            access_token,
            expires_in: config.access_ttl,
            refresh_token: Some(token),
            scope: session.scope,
            session_id: Some(session_id),
            id_token: None,
            dpop: ctx.dpop.is_some(),
        }))
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
}
