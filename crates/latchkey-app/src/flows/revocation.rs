//! Token revocation (RFC 7009): revoking either kind of token revokes its
//! session, if the caller owns it; a token of another client (or none at
//! all) is left alone, and the answer is the same.

use std::sync::Arc;

use latchkey_core::jwt::FIRST_PARTY_CLIENT_ID;
use latchkey_core::refresh::RefreshToken;
use latchkey_core::rotation::RevocationReason;
use latchkey_core::store::SessionStore;

use crate::service::{Refusal, RequestContext, TokenIssuer};

/// The revocation flow.
pub struct TokenRevocation {
    issuer: Arc<TokenIssuer>,
    sessions: Arc<dyn SessionStore>,
}

impl TokenRevocation {
    /// Refresh tokens looked up in `sessions`; access tokens verified by
    /// `issuer`.
    pub fn new(issuer: Arc<TokenIssuer>, sessions: Arc<dyn SessionStore>) -> Self {
        Self { issuer, sessions }
    }

    /// Revokes the session of `token` if it belongs to `client_id` (none:
    /// the first-party client). Whether anything was revoked is not told.
    pub async fn revoke(
        &self,
        token: &str,
        client_id: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<(), Refusal> {
        let owner = |session_client: Option<&str>| session_client == client_id;
        let target = if let Some(refresh) = RefreshToken::parse(token) {
            match self
                .sessions
                .refresh_token(&self.issuer.refresh_keys().hash(&refresh))
                .await?
            {
                Some((_, session)) if owner(session.client_id.as_deref()) => {
                    Some((session.id, session.user_id))
                }
                _ => None,
            }
        } else {
            match self.issuer.verify_jwt_ignoring_expiry(token).await {
                Ok(claims) => {
                    let token_client =
                        Some(claims.client_id.as_str()).filter(|c| *c != FIRST_PARTY_CLIENT_ID);
                    match claims.sid {
                        Some(sid) if owner(token_client) => Some((sid, claims.sub)),
                        _ => None,
                    }
                }
                Err(_) => None,
            }
        };
        if let Some((sid, user_id)) = target {
            self.issuer
                .revoke_session(&sid, &user_id, RevocationReason::Logout, client_id, ctx)
                .await?;
        }
        Ok(())
    }
}
