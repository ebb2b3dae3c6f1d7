//! Registering the applications Latchkey serves (the command line today;
//! the admin API next).

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use latchkey_core::clock::Clock;
use latchkey_core::id::random_id;
use latchkey_core::refresh::RefreshKeys;
use latchkey_core::scope::Scope;
use latchkey_core::store::{Client, Store};

use super::{Actor, Events, ServiceError};

/// The longest client name, in characters.
pub const MAX_CLIENT_NAME_CHARS: usize = 256;

/// What registering a client asks for.
#[derive(Debug, Clone, Copy)]
pub struct NewClient<'a> {
    /// A name for people.
    pub name: &'a str,
    /// The scopes it may get (for itself, and at most for its users).
    pub scope: &'a str,
    /// Redirect URIs for the authorization code flow.
    pub redirect_uris: &'a [String],
    /// Trusted to skip the consent page.
    pub first_party: bool,
}

/// A redirect URI a client may register (RFC 9700 §2.1, RFC 8252): absolute,
/// without a fragment; `https`, `http` only on a loopback address, or a
/// private-use scheme of a native app (`com.example.app:/callback`).
pub fn check_redirect_uri(uri: &str) -> Result<(), ServiceError> {
    let parsed = url::Url::parse(uri).map_err(|_| ServiceError::InvalidRedirectUri)?;
    let loopback = matches!(
        parsed.host(),
        Some(url::Host::Ipv4(ip)) if ip.is_loopback()
    ) || matches!(parsed.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    let allowed = match parsed.scheme() {
        "https" => parsed.host().is_some(),
        "http" => loopback,
        scheme => scheme.contains('.'),
    };
    if !allowed
        || parsed.fragment().is_some()
        || uri.len() > 2048
        || uri.contains(char::is_whitespace)
    {
        return Err(ServiceError::InvalidRedirectUri);
    }
    Ok(())
}

/// The client operations.
#[derive(Clone)]
pub struct Clients {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    events: Events,
}

impl Clients {
    /// Clients in `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, events: Events) -> Self {
        Self {
            store,
            clock,
            events,
        }
    }

    /// Registers a client. A confidential client gets a secret, hashed with
    /// `secret_keys`, returned only this once; with `None`, a public client
    /// (no secret).
    pub async fn add(
        &self,
        new: &NewClient<'_>,
        secret_keys: Option<&RefreshKeys>,
        actor: &Actor,
    ) -> Result<(Client, Option<String>), ServiceError> {
        let name = new.name;
        let count = name.chars().count();
        if count == 0 || count > MAX_CLIENT_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(ServiceError::InvalidClientName);
        }
        let scope = Scope::parse(new.scope).map_err(|_| ServiceError::InvalidScope)?;
        for uri in new.redirect_uris {
            check_redirect_uri(uri)?;
        }
        let rng = SystemRandom::new();
        let (secret, secret_hash) = match secret_keys {
            Some(keys) => {
                let (secret, hash) = keys.new_client_secret(&rng)?;
                (Some(secret), Some(hash))
            }
            None => (None, None),
        };
        let client = Client {
            id: random_id("lkc_", &rng)?,
            name: name.to_owned(),
            secret_hash,
            scope: scope.to_string(),
            created_at: self.clock.now(),
            redirect_uris: new.redirect_uris.to_vec(),
            first_party: new.first_party,
        };
        self.store.insert_client(&client).await?;
        let kind = if secret.is_some() {
            "confidential"
        } else {
            "public"
        };
        let mut who = actor.clone();
        who.client_id = Some(client.id.clone());
        self.events
            .audit("client_added", None, None, &who, kind)
            .await;
        Ok((client, secret))
    }

    /// Every client, by name.
    pub async fn list(&self) -> Result<Vec<Client>, ServiceError> {
        Ok(self.store.list_clients().await?)
    }
}
