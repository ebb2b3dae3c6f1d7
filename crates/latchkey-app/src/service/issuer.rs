//! What every token flow shares: [`TokenIssuer`] mints and verifies access
//! tokens, signs ID tokens, and opens a session with its first token pair.
//! The flows (`crate::flows`) each hold an `Arc` of it and only what else
//! they use.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use latchkey_core::account::{self, LinkPurpose, LinkToken, Notice, Sighting};
use latchkey_core::clock::Clock;
use latchkey_core::id::random_id;
use latchkey_core::jwt::{
    self, AccessClaims, FIRST_PARTY_CLIENT_ID, IdClaims, Verifier, VerifyError,
};
use latchkey_core::refresh::{RefreshKeys, RefreshToken};
use latchkey_core::rotation::RevocationReason;
use latchkey_core::scope::{ADMIN_SCOPE, Scope};
use latchkey_core::session::{self, NewSession, SessionStart};
use latchkey_core::store::{Client, KeyStore, SessionStore, User};
use latchkey_core::strength::AuthMethod;

use super::{Actor, DpopKey, Events, Refusal, Sessions};
use crate::config::Config;
use crate::keyring::{Keyring, LiveKeyring, load_keyring};
use crate::metrics::{Counter, Metrics};

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
    pub dpop: Option<DpopKey>,
    /// The browser's device (SPEC §13): the hash of its device cookie
    /// ([`latchkey_core::account::device_of_cookie`]), which the server sets
    /// on browser sign-ins.
    pub device: Option<latchkey_core::refresh::TokenHash>,
}

impl RequestContext {
    /// The actor of the audit trail for this request, through `client_id`.
    pub fn actor(&self, client_id: Option<&str>) -> Actor {
        Actor::request(self, client_id)
    }
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

/// A verified access token whose session is live.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Its claims.
    pub claims: AccessClaims,
    /// Its user, for user tokens.
    pub user: Option<User>,
}

/// A session about to start: its id, and when and how its user
/// authenticated.
pub struct Opening {
    /// The session's id (`ses_…`).
    pub session_id: String,
    /// When its user authenticated, Unix seconds.
    pub auth_time: i64,
    /// How.
    pub auth_method: AuthMethod,
}

/// Whom an access token is for.
pub struct Subject<'a> {
    /// The `sub`: a user's id, or a client's for its own token.
    pub sub: &'a str,
    /// The client, if not the first-party one.
    pub client_id: Option<&'a str>,
    /// The scope granted.
    pub scope: &'a str,
    /// The session, for user tokens.
    pub sid: Option<&'a str>,
    /// When the user authenticated.
    pub auth_time: Option<i64>,
    /// How, for user tokens: their `amr` and `acr`.
    pub auth_method: Option<AuthMethod>,
    /// The browser fingerprint's hash (browser mode).
    pub fingerprint: Option<&'a str>,
    /// The DPoP key the token is bound to.
    pub dpop_jkt: Option<&'a str>,
}

/// Mints and verifies tokens and opens sessions; composed once.
pub struct TokenIssuer {
    config: Arc<Config>,
    sessions_store: Arc<dyn SessionStore>,
    key_store: Arc<dyn KeyStore>,
    keyring: LiveKeyring,
    refresh_keys: RefreshKeys,
    rng: SystemRandom,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    events: Events,
    sessions: Sessions,
}

/// What a [`TokenIssuer`] is made of.
pub struct IssuerParts {
    /// The configuration.
    pub config: Arc<Config>,
    /// Where sessions start.
    pub sessions_store: Arc<dyn SessionStore>,
    /// Where the signing keys are re-read from.
    pub key_store: Arc<dyn KeyStore>,
    /// The signing keys loaded at start-up.
    pub keyring: Keyring,
    /// The refresh-token, code and client-secret keys.
    pub refresh_keys: RefreshKeys,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The events sink.
    pub events: Events,
    /// Revoking sessions (a session cap's evictions).
    pub sessions: Sessions,
}

impl TokenIssuer {
    /// An issuer of `parts`.
    pub fn new(parts: IssuerParts) -> Self {
        Self {
            config: parts.config,
            sessions_store: parts.sessions_store,
            key_store: parts.key_store,
            keyring: LiveKeyring::new(parts.keyring),
            refresh_keys: parts.refresh_keys,
            rng: SystemRandom::new(),
            clock: parts.clock,
            metrics: parts.metrics,
            events: parts.events,
            sessions: parts.sessions,
        }
    }

    /// Now, in Unix seconds, by this server's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The keys in use now.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.get()
    }

    /// The refresh-token, code and client-secret keys.
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

    /// The events sink.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Revoking sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Writes an audit event for a request and a structured log line. An
    /// audit failure is logged, never shown to the client.
    pub async fn audit(
        &self,
        kind: &str,
        user_id: Option<&str>,
        session_id: Option<&str>,
        client_id: Option<&str>,
        ctx: &RequestContext,
        detail: &str,
    ) {
        self.events
            .audit(kind, user_id, session_id, &ctx.actor(client_id), detail)
            .await;
    }

    /// Revokes a session for a request and records why; false if it was
    /// already revoked.
    pub async fn revoke_session(
        &self,
        sid: &str,
        user_id: &str,
        reason: RevocationReason,
        client_id: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<bool, Refusal> {
        Ok(self
            .sessions
            .revoke(sid, user_id, reason, &ctx.actor(client_id))
            .await?)
    }

    /// How long a revoked session stays on the deny-list: until its last
    /// access token has expired.
    pub fn deny_ttl(&self) -> i64 {
        self.config.access_ttl + jwt::LEEWAY_SECS
    }

    /// The scope a user's session gets (§3.3): the requested one, or the
    /// default, within `LATCHKEY_SCOPES` and, through a client, within the
    /// client's registered scopes.
    pub fn user_scope(
        &self,
        requested: Option<&str>,
        client: Option<&Client>,
    ) -> Result<Scope, Refusal> {
        let config = self.config();
        let allowed = match client {
            Some(client) => config
                .scopes
                .intersection(&Scope::parse(&client.scope).unwrap_or_default()),
            // A first-party sign-in may ask for the console's scope; whether
            // it gets it is decided when the session opens.
            None => config
                .scopes
                .union(&Scope::parse(ADMIN_SCOPE).unwrap_or_default()),
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

    /// `scope` as a new session of `user` may hold it: `latchkey:admin`
    /// (SPEC §15) stays only for an admin's own sign-in to the console (a
    /// password login, its second step, or a passkey; no client, no
    /// application acting for the user) that reached `LATCHKEY_CONSOLE_ACR`.
    /// Anything else gets the rest of what it asked for, as RFC 6749 §3.3
    /// allows, and the token response says which.
    fn session_scope(
        &self,
        scope: &Scope,
        user: &User,
        client_id: Option<&str>,
        auth_method: AuthMethod,
        grant_name: &str,
    ) -> Scope {
        let console = user.admin
            && client_id.is_none()
            && matches!(grant_name, "login" | "passkey")
            && auth_method.acr() >= self.config.console_acr;
        if console || !scope.contains(ADMIN_SCOPE) {
            scope.clone()
        } else {
            scope.without(ADMIN_SCOPE)
        }
    }

    /// Signs an access token for `subject`.
    pub fn mint(&self, subject: Subject<'_>, jti: String, now: i64) -> Result<String, Refusal> {
        let config = self.config();
        let claims = AccessClaims {
            iss: config.issuer.clone(),
            sub: subject.sub.to_owned(),
            aud: config.audience.clone(),
            exp: now + config.access_ttl,
            iat: now,
            nbf: None,
            jti,
            client_id: subject
                .client_id
                .unwrap_or(FIRST_PARTY_CLIENT_ID)
                .to_owned(),
            scope: subject.scope.to_owned(),
            sid: subject.sid.map(str::to_owned),
            auth_time: subject.auth_time,
            amr: subject.auth_method.map(AuthMethod::amr_claim),
            acr: subject.auth_method.map(|m| m.acr().as_str().to_owned()),
            cnf: subject
                .dpop_jkt
                .map(|jkt| serde_json::json!({ "jkt": jkt })),
            fingerprint: subject.fingerprint.map(str::to_owned),
        };
        Ok(jwt::sign(self.keyring().signing(now), &claims)?)
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
        auth_method: AuthMethod,
    ) -> Result<Option<Issued>, Refusal> {
        let opening = Opening {
            session_id: random_id("ses_", self.rng())?,
            auth_time: self.now(),
            auth_method,
        };
        self.open_session(opening, user, client_id, scope, ctx, grant_name)
            .await
    }

    /// The device a new session comes from, and the new-device notice's
    /// link (when mail is set up) should it be new to the user.
    fn sighting(
        &self,
        client_id: Option<&str>,
        ctx: &RequestContext,
        now: i64,
    ) -> Result<Sighting, Refusal> {
        let device = ctx
            .device
            .unwrap_or_else(|| account::device_of_client(client_id, &ctx.user_agent));
        let notice = match self.config.smtp_url {
            Some(_) => {
                let token = LinkToken::generate(self.rng())?;
                Some(Notice {
                    link_hash: token.hash(),
                    link: token.url(&self.config.issuer, LinkPurpose::NotMe),
                    link_expires_at: now + LinkPurpose::NotMe.ttl(),
                })
            }
            None => None,
        };
        Ok(Sighting { device, notice })
    }

    /// [`Self::start_session`] with the session's id chosen beforehand and
    /// the time the user authenticated (an authorization code records both).
    pub async fn open_session(
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
            auth_method,
        } = opening;
        let scope = &self.session_scope(scope, user, client_id, auth_method, grant_name);
        let jti = random_id("", rng)?;
        let token = RefreshToken::generate(rng)?;
        let mut start = session::start(
            &config.policy,
            NewSession {
                id: session_id.clone(),
                user_id: &user.id,
                client_id,
                scope: scope.to_string(),
                first_token: self.refresh_keys.hash(&token),
                access_jti: jti.clone(),
                ip: &ctx.ip,
                user_agent: &ctx.user_agent,
                now,
                auth_time,
                auth_method,
                // A public client's refresh tokens are bound to its key; a
                // confidential client's are bound by its authentication.
                dpop_jkt: ctx
                    .dpop
                    .as_ref()
                    .filter(|d| d.bind_refresh)
                    .map(|d| d.jkt.clone()),
            },
        );
        start.device = Some(self.sighting(client_id, ctx, now)?);
        // The login's audit event, and those of the sessions the cap
        // revokes, are written in the session's own transaction.
        let Some(evicted) = self
            .sessions_store
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
        self.sessions.announce(&evicted).await;
        for old in &evicted {
            self.events.count_revocation(RevocationReason::SessionCap);
            Events::log(&created.session_revoked(old, RevocationReason::SessionCap));
        }
        self.metrics
            .inc(Counter::TokensIssued, &[("grant", grant_name)]);
        let subject = Subject {
            sub: &user.id,
            client_id,
            scope: &session.scope,
            sid: Some(&session_id),
            auth_time: Some(auth_time),
            auth_method: Some(auth_method),
            fingerprint: ctx.fingerprint.as_deref(),
            dpop_jkt: ctx.dpop.as_ref().map(|d| d.jkt.as_str()),
        };
        let access_token = self.mint(subject, jti, now)?;
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

    /// Signs an ID token, with the `at_hash` of `access_token`, by the key
    /// that signs access tokens now.
    pub fn sign_id_token(
        &self,
        mut claims: IdClaims,
        access_token: &str,
    ) -> Result<String, Refusal> {
        let keyring = self.keyring();
        let key = keyring.signing(self.now());
        claims.at_hash = Some(jwt::at_hash(key.alg(), access_token));
        Ok(jwt::sign_id_token(key, &claims)?)
    }

    /// A back-channel logout token telling `client_id` that the session
    /// `sid` of `sub` ended, signed by the key that signs access tokens now,
    /// valid for two minutes.
    pub fn logout_token(
        &self,
        sub: &str,
        sid: &str,
        client_id: &str,
    ) -> Result<String, latchkey_core::Error> {
        let now = self.now();
        let claims = jwt::LogoutClaims {
            iss: self.config().issuer.clone(),
            aud: client_id.to_owned(),
            iat: now,
            exp: now + 120,
            jti: random_id("lt_", self.rng())?,
            sub: sub.to_owned(),
            sid: sid.to_owned(),
            events: jwt::LogoutClaims::logout_event(),
        };
        jwt::sign_logout_token(self.keyring().signing(now), &claims)
    }

    /// The claims of an ID token this server issued (`id_token_hint`),
    /// expired or not; `None` for anything else.
    pub fn id_token_hint(&self, token: &str) -> Option<IdClaims> {
        self.keyring().verifier.verify_id_token_hint(token).ok()
    }

    /// Re-reads the signing keys from the database.
    pub async fn reload_keys(&self) {
        let fresh = load_keyring(
            self.key_store.as_ref(),
            self.config(),
            self.rng(),
            self.now(),
        )
        .await;
        match fresh {
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
