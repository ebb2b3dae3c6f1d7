//! Webhooks (SPEC §14): adding, listing and removing them, and their
//! deliveries, for the admin API and the command line alike.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use latchkey_core::clock::Clock;
use latchkey_core::id::{random_bytes, random_id};
use latchkey_core::outbox::{self, DeliveryRecord, DeliveryStatus, Webhook};
use latchkey_core::seal::{self, MasterKey, Opened};
use latchkey_core::store::Store;

use super::{Actor, Events, ServiceError};
use crate::config::Config;

/// The most webhooks a server keeps: each event is fanned out to every one
/// that wants it.
pub const MAX_WEBHOOKS: u32 = 100;

/// The longest URL of a webhook or a back-channel logout.
pub const MAX_URL_LEN: usize = 2048;

/// A URL events may be posted to: absolute `http` or `https` with a host,
/// no credentials, no fragment, no white space.
pub fn check_notification_url(url: &str) -> Result<(), ServiceError> {
    let parsed = url::Url::parse(url).map_err(|_| ServiceError::InvalidUrl)?;
    let ok = matches!(parsed.scheme(), "http" | "https")
        && parsed.host().is_some()
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.fragment().is_none()
        && url.len() <= MAX_URL_LEN
        && !url.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(ServiceError::InvalidUrl)
    }
}

/// The seal label of a webhook's secret.
fn label(id: &str) -> String {
    format!("webhook:{id}")
}

/// A webhook just added: its secret is shown this once.
#[derive(Debug, Clone)]
pub struct AddedWebhook {
    /// The webhook (its stored secret sealed).
    pub webhook: Webhook,
    /// `whsec_…`.
    pub secret: String,
}

/// The webhook operations.
#[derive(Clone)]
pub struct Webhooks {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    events: Events,
    config: Arc<Config>,
    rng: SystemRandom,
}

impl Webhooks {
    /// Webhooks in `store`; secrets sealed under the configured master key
    /// when there is one.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        events: Events,
        config: Arc<Config>,
    ) -> Self {
        Self {
            store,
            clock,
            events,
            config,
            rng: SystemRandom::new(),
        }
    }

    /// Adds a webhook for `events` (each one of SPEC §14's types) at `url`.
    pub async fn add(
        &self,
        url: &str,
        events: &[String],
        actor: &Actor,
    ) -> Result<AddedWebhook, ServiceError> {
        check_notification_url(url)?;
        let mut wanted: Vec<String> = Vec::new();
        for kind in events {
            if !outbox::is_event_type(kind) {
                return Err(ServiceError::InvalidEventType(kind.clone()));
            }
            if !wanted.contains(kind) {
                wanted.push(kind.clone());
            }
        }
        if wanted.is_empty() {
            return Err(ServiceError::InvalidEventType(String::new()));
        }
        let id = random_id("wh_", &self.rng)?;
        let secret = random_bytes::<32>(&self.rng)?;
        let stored = seal::seal(
            self.config.master_key.as_ref(),
            &label(&id),
            &secret,
            &self.rng,
        )?;
        let webhook = Webhook {
            id,
            url: url.to_owned(),
            events: wanted,
            secret: stored,
            created_at: self.clock.now(),
        };
        if !self.store.insert_webhook(&webhook, MAX_WEBHOOKS).await? {
            return Err(ServiceError::TooMany);
        }
        self.events
            .audit("webhook_added", None, None, actor, &webhook.id)
            .await;
        Ok(AddedWebhook {
            webhook,
            secret: outbox::show_secret(&secret),
        })
    }

    /// Every webhook.
    pub async fn list(&self) -> Result<Vec<Webhook>, ServiceError> {
        Ok(self.store.webhooks().await?)
    }

    /// Removes a webhook and its deliveries.
    pub async fn remove(&self, id: &str, actor: &Actor) -> Result<(), ServiceError> {
        if !self.store.delete_webhook(id).await? {
            return Err(ServiceError::NotFound);
        }
        self.events
            .audit("webhook_removed", None, None, actor, id)
            .await;
        Ok(())
    }

    /// A webhook's deliveries, newest first.
    pub async fn deliveries(
        &self,
        id: &str,
        status: Option<DeliveryStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, ServiceError> {
        if self.store.webhook(id).await?.is_none() {
            return Err(ServiceError::NotFound);
        }
        Ok(self.store.deliveries(id, status, before, limit).await?)
    }
}

/// Opens a webhook's stored secret (sealed or plain).
pub fn open_secret(master: Option<&MasterKey>, webhook_id: &str, stored: &[u8]) -> Option<Vec<u8>> {
    match seal::open(master, &label(webhook_id), stored).ok()? {
        Opened::Sealed(bytes) | Opened::Plain(bytes) => Some(bytes),
    }
}
