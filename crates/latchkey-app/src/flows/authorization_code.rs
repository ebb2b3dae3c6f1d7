//! Redeeming an authorization code at the token endpoint (SPEC §10): the
//! store marks the code used atomically, `latchkey_core::code::check_redemption`
//! decides whether it may start a session, and a code used twice revokes
//! the session its first use started.

use std::sync::Arc;

use async_trait::async_trait;
use latchkey_core::code::{CodeRequest, check_redemption};
use latchkey_core::id::random_id;
use latchkey_core::jwt::IdClaims;
use latchkey_core::rotation::RevocationReason;
use latchkey_core::scope::Scope;
use latchkey_core::store::{Client, CodeStore, Redemption, SessionStore, UserStore};

use super::{Grant, TokenRequest};
use crate::service::{Issued, Opening, Refusal, RequestContext, TokenIssuer};

/// `grant_type=authorization_code`.
pub struct AuthorizationCodeGrant {
    issuer: Arc<TokenIssuer>,
    codes: Arc<dyn CodeStore>,
    sessions: Arc<dyn SessionStore>,
    users: Arc<dyn UserStore>,
}

impl AuthorizationCodeGrant {
    /// Codes redeemed in `codes`; a reused code's session found in
    /// `sessions`; its user in `users`.
    pub fn new(
        issuer: Arc<TokenIssuer>,
        codes: Arc<dyn CodeStore>,
        sessions: Arc<dyn SessionStore>,
        users: Arc<dyn UserStore>,
    ) -> Self {
        Self {
            issuer,
            codes,
            sessions,
            users,
        }
    }

    /// `grant_type=authorization_code`: redeems `code` for `client` (already
    /// authenticated, if confidential). A code used before revokes the
    /// session its first use started. Every refusal is `invalid_grant`.
    pub async fn exchange_code(
        &self,
        code: &str,
        client: &Client,
        redirect_uri: &str,
        verifier: &str,
        ctx: &RequestContext,
    ) -> Result<Issued, Refusal> {
        const REFUSED: &str = "the authorization code is invalid, expired or used";
        let issuer = &self.issuer;
        let now = issuer.now();
        let session_id = random_id("ses_", issuer.rng())?;
        let hash = issuer.refresh_keys().code_hash(code);
        let found = match self.codes.redeem_code(&hash, &session_id, now).await? {
            Redemption::Fresh(found) => found,
            Redemption::Unknown => return Err(Refusal::invalid_grant(REFUSED)),
            Redemption::Used { session_id } => {
                // A code replayed: whoever has it, the session it started is
                // no longer to be trusted (RFC 6749 §4.1.2).
                if let Some(sid) = session_id
                    && let Some((session, _)) = self.sessions.session_with_user(&sid).await?
                {
                    issuer
                        .revoke_session(
                            &sid,
                            &session.user_id,
                            RevocationReason::CodeReplayed,
                            Some(&client.id),
                            ctx,
                        )
                        .await?;
                }
                issuer
                    .audit("code_reused", None, None, Some(&client.id), ctx, "")
                    .await;
                return Err(Refusal::invalid_grant(REFUSED));
            }
        };
        let request = CodeRequest {
            client_id: &client.id,
            redirect_uri,
            verifier,
            now,
        };
        if let Err(why) = check_redemption(&found, &request) {
            issuer
                .audit(
                    "code_refused",
                    Some(&found.user_id),
                    None,
                    Some(&client.id),
                    ctx,
                    why.as_str(),
                )
                .await;
            return Err(Refusal::invalid_grant(REFUSED));
        }
        let user = self.users.user_by_id(&found.user_id).await?;
        let Some(user) = user.filter(|u| !u.disabled) else {
            return Err(Refusal::invalid_grant(REFUSED));
        };
        let scope = Scope::parse(&found.scope).map_err(|_| Refusal::invalid_grant(REFUSED))?;
        let opening = Opening {
            session_id,
            auth_time: found.auth_time,
            auth_method: found.auth_method,
        };
        let Some(mut issued) = issuer
            .open_session(
                opening,
                &user,
                Some(&client.id),
                &scope,
                ctx,
                "authorization_code",
            )
            .await?
        else {
            return Err(Refusal::invalid_grant(REFUSED));
        };
        if scope.contains("openid")
            && let Some(sid) = issued.session_id.clone()
        {
            let claims = IdClaims {
                iss: issuer.config().issuer.clone(),
                sub: user.id.clone(),
                aud: client.id.clone(),
                exp: now + issuer.config().access_ttl,
                iat: now,
                auth_time: found.auth_time,
                amr: Some(found.auth_method.amr_claim()),
                acr: Some(found.auth_method.acr().as_str().to_owned()),
                nonce: found.nonce,
                sid,
                at_hash: None,
                email: scope
                    .contains("email")
                    .then(|| user.email.clone())
                    .flatten(),
                email_verified: (scope.contains("email") && user.email.is_some())
                    .then_some(user.email_verified),
            };
            issued.id_token = Some(issuer.sign_id_token(claims, &issued.access_token)?);
        }
        Ok(issued)
    }
}

#[async_trait]
impl Grant for AuthorizationCodeGrant {
    fn grant_type(&self) -> &'static str {
        "authorization_code"
    }

    async fn grant(&self, request: &TokenRequest<'_>) -> Result<Issued, Refusal> {
        let Some(client) = request.client else {
            return Err(Refusal::invalid_client(
                "authorization_code needs the client's client_id (and its authentication, if confidential)",
            ));
        };
        let params = request.params;
        self.exchange_code(
            params.require("code")?,
            client,
            params.require("redirect_uri")?,
            params.require("code_verifier")?,
            request.ctx,
        )
        .await
    }
}
