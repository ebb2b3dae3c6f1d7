//! Checking the access tokens this server's own resources receive: a valid
//! token of a live session (or of a client), whatever resource asks (the
//! account page, `/api/me`, userinfo, introspection, the admin API).

use std::sync::Arc;

use latchkey_core::jwt::{AccessClaims, VerifyError};
use latchkey_core::scope::Scope;
use latchkey_core::store::{ClientStore, Session, SessionStore, User};

use crate::metrics::Counter;
use crate::revocation::{ChangeLogCache, RevocationCache};
use crate::service::{Principal, Refusal, TokenIssuer};

/// Checks access tokens.
pub struct AccessTokens {
    issuer: Arc<TokenIssuer>,
    sessions: Arc<dyn SessionStore>,
    clients: Arc<dyn ClientStore>,
    revocations: Arc<RevocationCache>,
    /// Sessions looked up, kept while the backend's change log allows.
    logged: ChangeLogCache,
}

impl AccessTokens {
    /// Tokens verified by `issuer`, their sessions read from `sessions` (or
    /// the cache of a followed revocation feed, `revocations`), client
    /// tokens checked against `clients`.
    pub fn new(
        issuer: Arc<TokenIssuer>,
        sessions: Arc<dyn SessionStore>,
        clients: Arc<dyn ClientStore>,
        revocations: Arc<RevocationCache>,
    ) -> Self {
        Self {
            issuer,
            sessions,
            clients,
            revocations,
            logged: ChangeLogCache::default(),
        }
    }

    /// A valid access token of a live session (or of a client): what every
    /// protected resource of this server accepts.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, Refusal> {
        let claims = self.issuer.verify_jwt(token).await.map_err(|e| {
            tracing::debug!(reason = %e, "access token refused");
            Refusal::invalid_token(match e {
                VerifyError::Expired => "the access token expired",
                _ => "the access token is invalid",
            })
        })?;
        let Some(sid) = claims.sid.as_deref() else {
            self.check_client_token(&claims).await?;
            return Ok(Principal { claims, user: None });
        };
        let now = self.issuer.now();
        let live = |session: &Session, user: &User| {
            session.is_live_for(user, now) && user.id == claims.sub
        };
        // With a live revocation feed, announced revocations are all this
        // instance needs to know: sessions are looked up once, then cached.
        let cache = &self.revocations;
        let trusted = cache.trusted(now);
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
        // Without a feed, a backend that logs its changes lets sessions be
        // cached until the log names them.
        let mut logged = None;
        if trusted.is_none()
            && let Some(changes) = self.sessions.session_changes(self.logged.seen()).await?
        {
            let seen = self.logged.apply(changes);
            if let Some((session, user)) = self.logged.session(sid) {
                if live(&session, &user) {
                    return Ok(Principal {
                        claims,
                        user: Some(user),
                    });
                }
                return Err(Refusal::invalid_token("the session has been revoked"));
            }
            logged = Some(seen);
        }
        self.issuer.metrics().inc(Counter::SessionLookups, &[]);
        match self.sessions.session_with_user(sid).await? {
            Some((session, user)) if live(&session, &user) => {
                if let Some(generation) = trusted {
                    cache.remember(session, user.clone(), generation);
                } else if let Some(seen) = logged {
                    self.logged.remember(session, user.clone(), seen);
                }
                Ok(Principal {
                    claims,
                    user: Some(user),
                })
            }
            _ => Err(Refusal::invalid_token("the session has been revoked")),
        }
    }

    /// A client's own token (`client_credentials`) is good only while its
    /// client is registered and enabled, was issued after the client's last
    /// secret rotation or scope change, and holds no scope the client no
    /// longer has: removing, disabling or narrowing a client ends its
    /// tokens at once, here and at introspection.
    async fn check_client_token(&self, claims: &AccessClaims) -> Result<(), Refusal> {
        let client = self.clients.client_by_id(&claims.client_id).await?;
        let good = client.is_some_and(|client| {
            !client.disabled
                && claims.iat >= client.tokens_valid_after
                && Scope::parse(&claims.scope).is_ok_and(|held| {
                    Scope::parse(&client.scope).is_ok_and(|allowed| held.is_subset(&allowed))
                })
        });
        if good {
            Ok(())
        } else {
            Err(Refusal::invalid_token(
                "the client was removed, disabled or changed since this token was issued",
            ))
        }
    }
}
