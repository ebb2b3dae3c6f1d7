//! The application layer: each operation on accounts and sessions once, for
//! the HTTP handlers and the command line alike, which only parse, call and
//! render. An operation depends on the store, a clock, the revocation
//! fan-out and the [`Events`] sink (audit trail, log and metrics in one
//! place), never on HTTP or on a terminal.
//!
//! What lives here: [`TokenService`] (password login, refresh rotation,
//! client credentials, checking access tokens), [`Sessions`] (revoking one,
//! one's own, all of a user's, and announcing revocations made elsewhere)
//! [`Users`] (adding, listing, changing a password, disabling and enabling,
//! deleting), sign-up (a user, then a session),
//! [`Clients`] (registering) and [`Keys`] (rotating, sealing).
//! Operations answer a [`Refusal`], never an HTTP error.

mod access;
mod authorize;
mod client_credentials;
mod clients;
mod dpop;
mod events;
mod keys;
mod login;
mod refresh;
mod refusal;
mod sessions;
mod signup;
mod tokens;
mod users;

pub use authorize::{CODE_TTL, CodeGrant, redirect_uri_allowed};
pub use clients::{Clients, MAX_CLIENT_NAME_CHARS, NewClient, check_redirect_uri};
pub use dpop::{DpopKey, ProofTarget};
pub use events::Events;
pub use keys::Keys;
pub use login::{MAX_USERNAME_BYTES, MAX_WAITING_HASHES};
pub use refusal::Refusal;
pub use sessions::{LocalFanout, Sessions};
pub use signup::SignUpRefusal;
pub use tokens::{Issued, Principal, RequestContext, TokenService};
pub use users::{
    BlockingHasher, MAX_USERNAME_CHARS, PasswordHashing, ServiceError, Users, canonical_username,
    canonicalise_stored_names, find_user,
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
}

impl Actor {
    /// An operator at the command line.
    pub fn cli() -> Self {
        Self {
            client_id: None,
            ip: "cli".into(),
            user_agent: String::new(),
        }
    }

    /// A request from this address and user agent.
    pub fn request(ctx: &RequestContext, client_id: Option<&str>) -> Self {
        Self {
            client_id: client_id.map(str::to_owned),
            ip: ctx.ip.clone(),
            user_agent: ctx.user_agent.clone(),
        }
    }
}
