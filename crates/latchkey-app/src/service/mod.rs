//! What the flows share, and the account services.
//!
//! * [`TokenIssuer`]: minting and verifying access tokens, signing ID
//!   tokens, opening a session with its first token pair.
//! * [`PasswordService`]: Argon2id on a bounded pool, in one queue.
//! * [`ClientAuthentication`]: which client a request is from.
//! * [`DpopProofs`]: RFC 9449 proofs, nonces and the replay cache.
//! * [`Attempts`]: throttling, before any work.
//! * [`Events`] (audit trail, log and metrics in one place) and
//!   [`Sessions`] (revoking, and announcing revocations to every instance).
//! * [`Users`], [`Clients`] and [`Keys`]: the account, client and key
//!   operations of the admin API and the command line.
//!
//! Operations answer a [`Refusal`] (or, for accounts, a [`ServiceError`]),
//! never an HTTP error.

mod attempts;
mod client_auth;
mod clients;
mod dpop;
mod events;
mod issuer;
mod keys;
mod links;
mod passwords;
mod refusal;
mod sessions;
mod users;
mod webhooks;

pub use attempts::{Attempts, LoginKeys, address_key};
pub use client_auth::{ClientAuthentication, ClientCredentials};
pub use clients::{Clients, MAX_CLIENT_NAME_CHARS, NewClient, check_redirect_uri};
pub use dpop::{DpopKey, DpopProofs, ProofTarget};
pub use events::Events;
pub use issuer::{Issued, IssuerParts, Opening, Principal, RequestContext, Subject, TokenIssuer};
pub use keys::Keys;
pub use links::Links;
pub use passwords::{MAX_WAITING_HASHES, PasswordService};
pub use refusal::Refusal;
pub use sessions::{LocalFanout, Sessions};
pub use users::{
    BlockingHasher, MAX_USERNAME_CHARS, PasswordHashing, ServiceError, Users, canonical_username,
    canonicalise_stored_names, find_user,
};
pub use webhooks::{
    AddedWebhook, MAX_URL_LEN, MAX_WEBHOOKS, Webhooks, check_notification_url, open_secret,
};

/// Who acts, as far as the audit trail tells: a request's address and user
/// agent, or the command line.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// The client application acting, if any.
    pub client_id: Option<String>,
    /// The address (`cli` for the command line).
    pub ip: String,
    /// The user agent, if any.
    pub user_agent: String,
    /// The admin user acting through the operator's console, if one is.
    pub admin_id: Option<String>,
}

impl Actor {
    /// An operator at the command line.
    pub fn cli() -> Self {
        Self {
            client_id: None,
            ip: "cli".into(),
            user_agent: String::new(),
            admin_id: None,
        }
    }

    /// A request from this address and user agent.
    pub fn request(ctx: &RequestContext, client_id: Option<&str>) -> Self {
        Self {
            client_id: client_id.map(str::to_owned),
            ip: ctx.ip.clone(),
            user_agent: ctx.user_agent.clone(),
            admin_id: None,
        }
    }

    /// An admin user (`admin_id`) acting through the console, from this
    /// address and user agent.
    pub fn console(ctx: &RequestContext, admin_id: &str) -> Self {
        Self {
            admin_id: Some(admin_id.to_owned()),
            ..Self::request(ctx, None)
        }
    }
}
