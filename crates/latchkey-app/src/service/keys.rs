//! Signing keys: rotating and sealing them, audited (the command line
//! today; the admin API may follow).

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use latchkey_core::clock::Clock;
use latchkey_core::store::{Store, StoredKey};

use super::{Actor, Events};
use crate::config::Config;
use crate::keyring::{self, KeyError};

/// The key operations.
#[derive(Clone)]
pub struct Keys {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    events: Events,
}

impl Keys {
    /// Keys in `store`, of the algorithm and master key of `config`.
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
        events: Events,
    ) -> Self {
        Self {
            store,
            config,
            clock,
            events,
        }
    }

    /// Publishes a new key now that signs from `activate_in` seconds on; the
    /// current keys retire once every token they signed has expired.
    pub async fn rotate(&self, activate_in: i64, actor: &Actor) -> Result<StoredKey, KeyError> {
        let now = self.clock.now();
        let key = keyring::add_key(
            self.store.as_ref(),
            &self.config,
            &SystemRandom::new(),
            now,
            now + activate_in,
        )
        .await?;
        let detail = format!("next key {} signs from {}", key.kid, key.activates_at);
        self.events
            .audit("key_rotated", None, None, actor, &detail)
            .await;
        Ok(key)
    }

    /// Seals every key stored unsealed under the master key; returns what it
    /// sealed.
    pub async fn seal(&self, actor: &Actor) -> Result<Vec<String>, KeyError> {
        let sealed =
            keyring::seal_stored(self.store.as_ref(), &self.config, &SystemRandom::new()).await?;
        if !sealed.is_empty() {
            self.events
                .audit("keys_sealed", None, None, actor, &sealed.join(", "))
                .await;
        }
        Ok(sealed)
    }
}
