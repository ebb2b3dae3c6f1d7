//! The `client_credentials` grant: an access token for a confidential
//! client itself, with no session and no refresh token.

use latchkey_core::id::random_id;
use latchkey_core::scope::Scope;
use latchkey_core::store::Client;

use super::Refusal;
use super::tokens::{Grant, Issued, TokenService};
use crate::metrics::Counter;

impl TokenService {
    /// A `client_credentials` grant: an access token for the client itself,
    /// with no session and no refresh token.
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
        let now = self.now();
        let jti = random_id("", self.rng())?;
        let scope = scope.to_string();
        self.metrics()
            .inc(Counter::TokensIssued, &[("grant", "client_credentials")]);
        let grant = Grant {
            sub: &client.id,
            client_id: Some(&client.id),
            scope: &scope,
            sid: None,
            auth_time: None,
            fingerprint: None,
            dpop_jkt,
        };
        let access_token = self.mint(grant, jti, now)?;
        Ok(Issued {
            access_token,
            expires_in: self.config().access_ttl,
            refresh_token: None,
            scope,
            session_id: None,
            id_token: None,
            dpop: dpop_jkt.is_some(),
        })
    }
}
