//! The delivery engine: drains the outbox (SPEC §14) for every channel.
//!
//! On every instance: fan out the events not yet dispatched into
//! deliveries (one transaction per batch), then claim the deliveries that
//! are due (each leased for [`outbox::LEASE`] seconds, so a claim is one
//! instance's), send them at once with [`outbox::ATTEMPT_TIMEOUT`] each, at
//! most [`CLAIM_BATCH`] in flight (more are claimed as attempts finish), and
//! record each outcome. A failed attempt also postpones the other
//! deliveries waiting for the same URL to its retry time, so a receiver
//! that is down costs one attempt per retry, not one per event. A delivery that fails is due again after
//! [`outbox::retry_delay`], until [`outbox::GIVE_UP_AFTER`]. Memory is
//! bounded by [`CLAIM_BATCH`] whatever the receivers do: the rest waits in
//! the database. An instance that dies holding a claim leaves it to the
//! others when its lease ends, so a delivery may go out twice then (at
//! least once); in the normal case it goes out once.
//!
//! This crate does not speak HTTP or SMTP: the server gives the engine a
//! [`Transport`] that posts and mails.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::outbox::{self, Attempt, Channel, DueDelivery};

use crate::App;
use crate::mail::Mail;
use crate::metrics::Counter;
use crate::service::open_secret;

/// Events fanned out per transaction.
pub const DISPATCH_BATCH: u32 = 500;

/// Deliveries claimed (and in flight) at once per instance.
pub const CLAIM_BATCH: u32 = 32;

/// How often an idle engine looks for work.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// A request the engine sends.
#[derive(Debug, Clone)]
pub struct Post {
    /// Where.
    pub url: String,
    /// `application/json` or `application/x-www-form-urlencoded`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: String,
}

/// Posts and mails for the engine: the server's HTTP client and SMTP
/// transport.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Sends `post` and answers its status code, or why there is none
    /// (connection refused, timeout…). Must give up after `timeout`.
    async fn post(&self, post: Post, timeout: Duration) -> Result<u16, String>;

    /// Hands `mail` to the mail server: `Ok` once it accepted it. Must give
    /// up after `timeout`. By default there is no mail server.
    async fn mail(&self, mail: Mail, timeout: Duration) -> Result<(), String> {
        let _ = (mail, timeout);
        Err("no mail server is set up".into())
    }
}

/// What one delivery sends.
enum Outgoing {
    Post(Post),
    Mail(Mail),
}

/// Starts the engine; it runs until the runtime stops.
pub fn spawn(app: Arc<App>, transport: Arc<dyn Transport>) {
    tokio::spawn(run(app, transport));
}

/// The engine: fans out, then keeps at most [`CLAIM_BATCH`] attempts in
/// flight, claiming more as attempts finish, so that a receiver that hangs
/// until its timeout holds its own attempts and nobody else's.
pub async fn run(app: Arc<App>, transport: Arc<dyn Transport>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CLAIM_BATCH as usize));
    loop {
        let dispatched = dispatch(&app).await;
        // Wait for at least one free slot, then claim as many as are free.
        let first = match slots.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => return,
        };
        let free = slots.available_permits() + 1;
        let due = claim(&app, u32::try_from(free).unwrap_or(CLAIM_BATCH)).await;
        let claimed = due.len();
        let mut first = Some(first);
        for d in due {
            let permit = match first.take() {
                Some(permit) => permit,
                None => match slots.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let (app, transport) = (app.clone(), transport.clone());
            tokio::spawn(async move {
                deliver(&app, transport.as_ref(), d).await;
                drop(permit);
            });
        }
        drop(first);
        if claimed < free && !dispatched {
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// Fans out one batch of events; true when there may be more at once.
async fn dispatch(app: &App) -> bool {
    let mail = app.config.smtp_url.is_some();
    match app
        .store()
        .dispatch_events(app.now(), DISPATCH_BATCH, mail)
        .await
    {
        Ok(n) => n == DISPATCH_BATCH,
        Err(e) => {
            tracing::error!(error = %e, "fanning out events failed");
            false
        }
    }
}

/// Claims at most `limit` due deliveries.
async fn claim(app: &App, limit: u32) -> Vec<DueDelivery> {
    match app
        .store()
        .claim_deliveries(app.now(), outbox::LEASE, limit)
        .await
    {
        Ok(due) => due,
        Err(e) => {
            tracing::error!(error = %e, "claiming deliveries failed");
            Vec::new()
        }
    }
}

/// One attempt, counted and recorded.
async fn deliver(app: &App, transport: &dyn Transport, due: DueDelivery) {
    let (id, outcome) = attempt(app, transport, due).await;
    let label = match &outcome {
        Attempt::Delivered => "delivered",
        Attempt::Failed { .. } => "failed",
    };
    app.metrics.inc(Counter::Deliveries, &[("outcome", label)]);
    if let Err(e) = app.store().finish_delivery(id, app.now(), &outcome).await {
        tracing::error!(error = %e, delivery = id, "recording a delivery failed");
    }
}

/// One round, waiting for every attempt it starts: fans out, then sends one
/// batch. True when there may be more work at once (a full batch). For
/// measurements; the server runs [`run`].
pub async fn round(app: &Arc<App>, transport: &Arc<dyn Transport>) -> bool {
    let mut busy = dispatch(app).await;
    let due = claim(app, CLAIM_BATCH).await;
    busy |= due.len() == CLAIM_BATCH as usize;
    let mut attempts = tokio::task::JoinSet::new();
    for d in due {
        let (app, transport) = (app.clone(), transport.clone());
        attempts.spawn(async move { deliver(&app, transport.as_ref(), d).await });
    }
    while attempts.join_next().await.is_some() {}
    busy
}

/// One attempt of one delivery.
async fn attempt(app: &App, transport: &dyn Transport, due: DueDelivery) -> (i64, Attempt) {
    let id = due.id;
    let outgoing = match request(app, &due) {
        Ok(outgoing) => outgoing,
        Err(why) => {
            tracing::error!(delivery = id, error = %why, "a delivery could not be made");
            let failed = outbox::failed_attempt(why, due.attempts, due.created_at, app.now());
            return (id, failed);
        }
    };
    let sent = match outgoing {
        Outgoing::Post(post) => transport.post(post, outbox::ATTEMPT_TIMEOUT).await,
        Outgoing::Mail(mail) => transport
            .mail(mail, outbox::ATTEMPT_TIMEOUT)
            .await
            .map(|()| 200),
    };
    let outcome = match sent {
        Ok(status) if (200..300).contains(&status) => Attempt::Delivered,
        Ok(status) => outbox::failed_attempt(
            format!("HTTP {status}"),
            due.attempts,
            due.created_at,
            app.now(),
        ),
        Err(why) => outbox::failed_attempt(why, due.attempts, due.created_at, app.now()),
    };
    if let Attempt::Failed { error, retry_at } = &outcome {
        tracing::warn!(
            delivery = id,
            event = %due.event.id,
            url = %due.url,
            error = %error,
            retry_at = ?retry_at,
            "a delivery failed"
        );
    }
    (id, outcome)
}

/// What a delivery sends: a signed webhook post, a logout token, or a mail.
fn request(app: &App, due: &DueDelivery) -> Result<Outgoing, String> {
    match due.channel {
        Channel::Mail => {
            let data: serde_json::Value =
                serde_json::from_str(&due.event.data).map_err(|e| e.to_string())?;
            crate::mail::compose(&due.event.kind, &data, &app.config.issuer).map(Outgoing::Mail)
        }
        Channel::Webhook => {
            let stored = due.secret.as_deref().ok_or("the webhook is gone")?;
            let webhook_id = due.webhook_id.as_deref().ok_or("no webhook")?;
            let secret = open_secret(app.config.master_key.as_ref(), webhook_id, stored)
                .ok_or("the webhook's secret cannot be opened")?;
            let body = due.event.webhook_body();
            let timestamp = app.now();
            let signature = outbox::sign(&secret, &due.event.id, timestamp, &body);
            Ok(Outgoing::Post(Post {
                url: due.url.clone(),
                content_type: "application/json",
                headers: vec![
                    ("webhook-id", due.event.id.clone()),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signature),
                ],
                body,
            }))
        }
        Channel::Backchannel => {
            let data: serde_json::Value =
                serde_json::from_str(&due.event.data).map_err(|e| e.to_string())?;
            let field = |name: &str| {
                data.get(name)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| format!("the event has no {name}"))
            };
            let client_id = due.client_id.clone().ok_or("no client")?;
            let token = app
                .issuer
                .logout_token(&field("user_id")?, &field("session_id")?, &client_id)
                .map_err(|e| e.to_string())?;
            let body: String = form_urlencoded_pair("logout_token", &token);
            Ok(Outgoing::Post(Post {
                url: due.url.clone(),
                content_type: "application/x-www-form-urlencoded",
                headers: Vec::new(),
                body,
            }))
        }
    }
}

/// `name=value`, form-encoded.
fn form_urlencoded_pair(name: &str, value: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    format!(
        "{}={}",
        utf8_percent_encode(name, NON_ALPHANUMERIC),
        utf8_percent_encode(value, NON_ALPHANUMERIC)
    )
}
