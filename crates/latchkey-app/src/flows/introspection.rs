//! Token introspection (RFC 7662), for authenticated confidential clients:
//! a refresh token is active while it is usable and its session live; an
//! access token while [`AccessTokens`] accepts it. Anything not active, or
//! not the caller's to see, is `{"active": false}`.

use std::sync::Arc;

use latchkey_core::jwt::FIRST_PARTY_CLIENT_ID;
use latchkey_core::refresh::RefreshToken;
use latchkey_core::store::{Client, SessionStore, UserStore};
use serde_json::{Value, json};

use super::AccessTokens;
use crate::service::{Refusal, TokenIssuer};

/// The introspection flow.
pub struct Introspection {
    issuer: Arc<TokenIssuer>,
    access: Arc<AccessTokens>,
    sessions: Arc<dyn SessionStore>,
    users: Arc<dyn UserStore>,
}

impl Introspection {
    /// Refresh tokens looked up in `sessions`, access tokens checked by
    /// `access`, usernames read from `users`.
    pub fn new(
        issuer: Arc<TokenIssuer>,
        access: Arc<AccessTokens>,
        sessions: Arc<dyn SessionStore>,
        users: Arc<dyn UserStore>,
    ) -> Self {
        Self {
            issuer,
            access,
            sessions,
            users,
        }
    }

    /// The RFC 7662 answer about `token` for `caller`. A refresh token of
    /// another client's session is inactive to the caller.
    pub async fn introspect(&self, caller: &Client, token: &str) -> Result<Value, Refusal> {
        let inactive = || json!({ "active": false });
        if let Some(refresh) = RefreshToken::parse(token) {
            let now = self.issuer.now();
            let found = self
                .sessions
                .refresh_token(&self.issuer.refresh_keys().hash(&refresh))
                .await?;
            let Some((record, session)) = found.filter(|(record, session)| {
                record.is_usable(session, now)
                    && session.client_id.as_deref().is_none_or(|c| c == caller.id)
            }) else {
                return Ok(inactive());
            };
            let username = self
                .users
                .user_by_id(&session.user_id)
                .await?
                .map(|u| u.username);
            return Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": record.scope,
                "client_id": session.client_id.as_deref().unwrap_or(FIRST_PARTY_CLIENT_ID),
                "username": username,
                "sub": session.user_id,
                "sid": session.id,
                "iss": self.issuer.config().issuer,
                "iat": record.issued_at,
                "exp": record.expires_at.min(session.expires_at),
                "auth_time": session.auth_time,
                "amr": session.auth_method.amr(),
                "acr": session.auth_method.acr().as_str(),
            }));
        }
        match self.access.authenticate(token).await {
            Ok(principal) => {
                let c = principal.claims;
                // RFC 9449 §6.2: a bound token says so, and names its key.
                let token_type = if c.cnf.is_some() { "DPoP" } else { "Bearer" };
                let mut answer = json!({
                    "active": true,
                    "token_type": token_type,
                    "scope": c.scope,
                    "client_id": c.client_id,
                    "username": principal.user.map(|u| u.username),
                    "sub": c.sub,
                    "aud": c.aud,
                    "iss": c.iss,
                    "exp": c.exp,
                    "iat": c.iat,
                    "jti": c.jti,
                    "sid": c.sid,
                });
                if let Some(cnf) = c.cnf {
                    answer["cnf"] = cnf;
                }
                if let Some(auth_time) = c.auth_time {
                    answer["auth_time"] = json!(auth_time);
                }
                if let Some(amr) = c.amr {
                    answer["amr"] = json!(amr);
                }
                if let Some(acr) = c.acr {
                    answer["acr"] = json!(acr);
                }
                Ok(answer)
            }
            Err(e @ Refusal::Internal(_)) => Err(e),
            Err(_) => Ok(inactive()),
        }
    }
}
