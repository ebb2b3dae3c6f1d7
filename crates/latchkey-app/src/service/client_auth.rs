//! Client authentication (RFC 6749 §2.3): which registered client a request
//! is from, and whether it proved it. The transport reads the credentials
//! (HTTP Basic or the body); the rules are here, once.

use std::sync::Arc;

use latchkey_core::jwt::FIRST_PARTY_CLIENT_ID;
use latchkey_core::refresh::RefreshKeys;
use latchkey_core::store::{Client, ClientStore};

use super::Refusal;

/// The longest client id looked up.
const MAX_CLIENT_ID_BYTES: usize = 128;

/// What a request presented as its client's credentials.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// The `client_id`.
    pub id: String,
    /// The secret, if one was sent.
    pub secret: Option<String>,
}

/// Checks client credentials against the registered clients.
pub struct ClientAuthentication {
    clients: Arc<dyn ClientStore>,
    keys: RefreshKeys,
}

impl ClientAuthentication {
    /// Clients of `clients`, their secrets hashed with `keys`.
    pub fn new(clients: Arc<dyn ClientStore>, keys: RefreshKeys) -> Self {
        Self { clients, keys }
    }

    /// The client `credentials` name, if they prove it: a confidential
    /// client must send its secret (compared in constant time, by its keyed
    /// hash); a public client must send none. The `client_id` of
    /// first-party tokens names no client at all (`Ok(None)`). A disabled
    /// client is refused like an unknown one, after the same work.
    pub async fn authenticate(
        &self,
        credentials: ClientCredentials,
    ) -> Result<Option<Client>, Refusal> {
        let ClientCredentials { id, secret } = credentials;
        if id == FIRST_PARTY_CLIENT_ID {
            if secret.is_some_and(|s| !s.is_empty()) {
                return Err(Refusal::invalid_client("a public client has no secret"));
            }
            return Ok(None);
        }
        let found = if id.len() > MAX_CLIENT_ID_BYTES {
            None
        } else {
            self.clients.client_by_id(&id).await?
        };
        let Some(client) = found.filter(|c| !c.disabled) else {
            return Err(Refusal::invalid_client("client authentication failed"));
        };
        match (&client.secret_hash, secret) {
            (Some(stored), Some(secret)) => {
                let presented = self.keys.client_secret_hash(&secret);
                if !stored.ct_eq(&presented) {
                    return Err(Refusal::invalid_client("client authentication failed"));
                }
            }
            (Some(_), None) => {
                return Err(Refusal::invalid_client("client authentication required"));
            }
            (None, Some(_)) => {
                return Err(Refusal::invalid_client("a public client has no secret"));
            }
            (None, None) => {}
        }
        Ok(Some(client))
    }

    /// [`Self::authenticate`], and the client must be confidential (it
    /// proved itself with a secret): introspection, the revocation feed,
    /// `client_credentials`.
    pub async fn confidential(
        &self,
        credentials: Option<ClientCredentials>,
        what: &str,
    ) -> Result<Client, Refusal> {
        let client = match credentials {
            Some(credentials) => self.authenticate(credentials).await?,
            None => None,
        };
        client
            .filter(|c| c.secret_hash.is_some())
            .ok_or_else(|| Refusal::invalid_client(format!("{what} needs client authentication")))
    }
}
