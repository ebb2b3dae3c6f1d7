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

    /// Registers a client named `name` that may get `scope` for itself. A
    /// confidential client gets a secret, hashed with `secret_keys`, returned
    /// only this once; with `None`, a public client (no secret).
    pub async fn add(
        &self,
        name: &str,
        scope: &str,
        secret_keys: Option<&RefreshKeys>,
        actor: &Actor,
    ) -> Result<(Client, Option<String>), ServiceError> {
        let count = name.chars().count();
        if count == 0 || count > MAX_CLIENT_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(ServiceError::InvalidClientName);
        }
        let scope = Scope::parse(scope).map_err(|_| ServiceError::InvalidScope)?;
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
