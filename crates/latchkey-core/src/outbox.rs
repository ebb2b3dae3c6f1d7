//! The durable outbox (SPEC §14): the events that leave the machine, the
//! webhooks that want them, and their deliveries.
//!
//! Events are written by the database itself, in the transaction of the
//! change they report (triggers in each backend's migrations), so no code
//! path can make a change without its event. The delivery engine
//! (`latchkey_app::delivery`) fans each event out into deliveries and sends
//! them: at least once, retried on [`retry_delay`]'s schedule until
//! [`GIVE_UP_AFTER`], each attempt under a lease so that several instances
//! share the queue and send each delivery once in the normal case.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The event types of SPEC §14, as webhooks name them.
pub const EVENT_TYPES: &[&str] = &[
    "user.created",
    "user.updated",
    "user.deleted",
    "session.started",
    "session.ended",
    "session.reuse_detected",
    "login.failed",
    "login.throttled",
    "password.changed",
    "password.reset_requested",
    "email.verification_requested",
    "factor.added",
    "factor.removed",
];

/// Whether `kind` is an event type a webhook may ask for.
pub fn is_event_type(kind: &str) -> bool {
    EVENT_TYPES.contains(&kind)
}

/// Retries go on for at least this long after an event's first delivery
/// attempt failed (SPEC §14 asks for 24 hours): three days, seconds.
pub const GIVE_UP_AFTER: i64 = 3 * 24 * 3600;

/// How long an attempt holds its delivery (seconds): far more than the
/// attempt's own timeout, so that only an instance that died lets it go.
pub const LEASE: i64 = 30;

/// The time allowed for one attempt, connection and answer (SPEC §14).
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The delay before the next attempt, after `attempts` failed ones
/// (1, 2, 4 … seconds, at most an hour): a receiver that comes back is
/// served within seconds of a short outage, and a long outage costs one
/// attempt an hour.
pub fn retry_delay(attempts: u32) -> i64 {
    let exp = attempts.saturating_sub(1).min(12);
    (1i64 << exp).min(3600)
}

/// An event as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// `msg_…`: the `webhook-id`, the same on every delivery and retry.
    pub id: String,
    /// One of [`EVENT_TYPES`].
    pub kind: String,
    /// When it happened, Unix seconds.
    pub at: i64,
    /// The event's `data`, JSON.
    pub data: String,
}

impl OutboxEvent {
    /// The body posted to a webhook: `{"type","timestamp","data"}`.
    pub fn webhook_body(&self) -> String {
        let data: serde_json::Value =
            serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "type": self.kind,
            "timestamp": rfc3339(self.at),
            "data": data,
        })
        .to_string()
    }
}

/// A webhook: where events of the types it wants are posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `wh_…`.
    pub id: String,
    /// An `http` or `https` URL.
    pub url: String,
    /// The event types it wants.
    pub events: Vec<String>,
    /// The signing secret as stored (sealed when a master key is set).
    pub secret: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
}

/// Where a delivery goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A webhook, signed per Standard Webhooks.
    Webhook,
    /// An OpenID Connect back-channel logout to a client.
    Backchannel,
    /// A mail to a user (SPEC §13); its URL is `mailto:` the address.
    Mail,
}

impl Channel {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Backchannel => "backchannel",
            Channel::Mail => "mail",
        }
    }

    /// The channel of a stored name.
    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "webhook" => Some(Channel::Webhook),
            "backchannel" => Some(Channel::Backchannel),
            "mail" => Some(Channel::Mail),
            _ => None,
        }
    }
}

/// A delivery's state, as the deliveries view filters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not tried yet.
    Pending,
    /// Its last attempt failed; `next_attempt_at` says when it is tried
    /// again (none: given up).
    Failed,
    /// A 2xx answer came back.
    Delivered,
}

impl DeliveryStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Delivered => "delivered",
        }
    }

    /// The status of a stored (or asked-for) name.
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "failed" => Some(DeliveryStatus::Failed),
            "delivered" => Some(DeliveryStatus::Delivered),
            _ => None,
        }
    }
}

/// A delivery claimed for an attempt.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The delivery's id.
    pub id: i64,
    /// Where it goes.
    pub channel: Channel,
    /// The URL posted to.
    pub url: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// When the delivery was made (its event fanned out), Unix seconds.
    pub created_at: i64,
    /// The event.
    pub event: OutboxEvent,
    /// The webhook (webhooks only).
    pub webhook_id: Option<String>,
    /// The webhook's stored secret (webhooks only).
    pub secret: Option<Vec<u8>>,
    /// The client told of a logout (back-channel only).
    pub client_id: Option<String>,
}

/// A delivery as the deliveries view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The delivery's id.
    pub id: i64,
    /// The event's id (`webhook-id`).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// Its state.
    pub status: DeliveryStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// When it was last tried.
    pub last_attempt_at: Option<i64>,
    /// When it is tried next; `None` once delivered or given up.
    pub next_attempt_at: Option<i64>,
    /// What went wrong last (a status code or a connection error).
    pub last_error: Option<String>,
    /// When it was delivered.
    pub delivered_at: Option<i64>,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx answer.
    Delivered,
    /// Anything else; tried again at `retry_at`, or never (`None`).
    Failed {
        /// What went wrong, for people.
        error: String,
        /// When to try again.
        retry_at: Option<i64>,
    },
}

/// The outcome of an attempt that failed at `now`, for a delivery made at
/// `created_at` with `attempts` attempts so far: when to try again, or
/// never once [`GIVE_UP_AFTER`] has passed.
pub fn failed_attempt(error: String, attempts: u32, created_at: i64, now: i64) -> Attempt {
    let next = now + retry_delay(attempts);
    Attempt::Failed {
        error,
        retry_at: (now - created_at < GIVE_UP_AFTER).then_some(next),
    }
}

/// The prefix of a webhook secret as shown (Standard Webhooks).
pub const SECRET_PREFIX: &str = "whsec_";

/// A webhook secret as shown once to whoever adds the webhook.
pub fn show_secret(bytes: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The `webhook-signature` header value: `v1,` and the base64 HMAC-SHA256
/// of `id.timestamp.body` under the secret's bytes (Standard Webhooks).
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// Unix seconds as RFC 3339 in UTC (`2026-12-03T23:08:10Z`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (H. Hinnant's algorithm), valid for every i64 day
    // count this can be given.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_339_290), "2026-12-03T23:08:10Z");
    }

    #[test]
    fn retries_grow_and_stop_after_the_window() {
        assert_eq!(retry_delay(1), 1);
        assert_eq!(retry_delay(2), 2);
        assert_eq!(retry_delay(5), 16);
        assert_eq!(retry_delay(40), 3600);
        assert!(matches!(
            failed_attempt("500".into(), 3, 0, 100),
            Attempt::Failed {
                retry_at: Some(104),
                ..
            }
        ));
        assert!(matches!(
            failed_attempt("500".into(), 90, 0, GIVE_UP_AFTER),
            Attempt::Failed { retry_at: None, .. }
        ));
    }

    #[test]
    fn the_body_has_type_timestamp_and_data() {
        let event = OutboxEvent {
            id: "msg_1".into(),
            kind: "session.ended".into(),
            at: 0,
            data: r#"{"reason":"logout"}"#.into(),
        };
        let body: serde_json::Value = serde_json::from_str(&event.webhook_body()).unwrap();
        assert_eq!(body["type"], "session.ended");
        assert_eq!(body["timestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(body["data"]["reason"], "logout");
    }
}
