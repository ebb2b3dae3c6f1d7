//! The `client_credentials` grant: an access token for a confidential
//! client itself, with no session and no refresh token.

use std::sync::Arc;

use async_trait::async_trait;
use latchkey_core::id::random_id;
use latchkey_core::scope::Scope;
use latchkey_core::store::Client;

use super::{Grant, TokenRequest};
use crate::metrics::Counter;
use crate::service::{Issued, Refusal, Subject, TokenIssuer};

/// The client credentials flow.
pub struct ClientCredentialsGrant {
    issuer: Arc<TokenIssuer>,
}

impl ClientCredentialsGrant {
    /// Tokens minted by `issuer`.
    pub fn new(issuer: Arc<TokenIssuer>) -> Self {
        Self { issuer }
    }

    /// An access token for `client` itself, within its registered scope,
    /// bound to `dpop_jkt` if a proof came.
    pub fn client_token(
        &self,
        client: &Client,
        scope: Option<&str>,
        dpop_jkt: Option<&str>,
    ) -> Result<Issued, Refusal> {
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
        let issuer = &self.issuer;
        let now = issuer.now();
        let jti = random_id("", issuer.rng())?;
        let scope = scope.to_string();
        issuer
            .metrics()
            .inc(Counter::TokensIssued, &[("grant", "client_credentials")]);
        let subject = Subject {
            sub: &client.id,
            client_id: Some(&client.id),
            scope: &scope,
            sid: None,
            auth_time: None,
            auth_method: None,
            fingerprint: None,
            dpop_jkt,
        };
        let access_token = issuer.mint(subject, jti, now)?;
        Ok(Issued {
            access_token,
            expires_in: issuer.config().access_ttl,
            refresh_token: None,
            scope,
            session_id: None,
            id_token: None,
            dpop: dpop_jkt.is_some(),
        })
    }
}

#[async_trait]
impl Grant for ClientCredentialsGrant {
    fn grant_type(&self) -> &'static str {
        "client_credentials"
    }

    async fn grant(&self, request: &TokenRequest<'_>) -> Result<Issued, Refusal> {
        let Some(client) = request.client.filter(|c| c.secret_hash.is_some()) else {
            return Err(Refusal::invalid_client(
                "client_credentials needs a confidential client's authentication",
            ));
        };
        let jkt = request.ctx.dpop.as_ref().map(|d| d.jkt.as_str());
        self.client_token(client, request.params.get("scope"), jkt)
    }
}
