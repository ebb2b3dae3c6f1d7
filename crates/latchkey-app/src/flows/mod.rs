//! One type per flow, each holding only what it uses over the shared
//! [`TokenIssuer`](crate::service::TokenIssuer):
//!
//! | flow | type | file |
//! |---|---|---|
//! | password login (`/auth/login`, `grant_type=password`) | [`Login`] | `login.rs` |
//! | refresh (`grant_type=refresh_token`, browser mode) | [`Refresh`] | `refresh.rs` |
//! | client credentials | [`ClientCredentialsGrant`] | `client_credentials.rs` |
//! | authorization code: the pages' sign-in, consent and codes | [`Authorizations`] | `authorize.rs` |
//! | authorization code: redeeming a code | [`AuthorizationCodeGrant`] | `authorization_code.rs` |
//! | device authorization (RFC 8628) | [`DeviceFlow`], [`DeviceCodeGrant`] | `device_code.rs` |
//! | sign-up | [`SignUp`] | `signup.rs` |
//! | recovery: reset, verification, password change, not me | [`Recovery`] | `recovery.rs` |
//! | authenticator apps and the second step of a sign-in | [`AuthenticatorApps`] | `totp.rs` |
//! | passkeys: registering, removing, signing in with one | [`Passkeys`] | `passkeys.rs` |
//! | sessions made by the admin API | [`AdminSessions`] | `admin_sessions.rs` |
//! | introspection (RFC 7662) | [`Introspection`] | `introspection.rs` |
//! | revocation (RFC 7009) | [`TokenRevocation`] | `revocation.rs` |
//! | access tokens at this server's resources | [`AccessTokens`] | `access.rs` |
//!
//! The token endpoint's grants implement [`Grant`] and are registered once,
//! in the composition root, in a [`GrantRegistry`]: the endpoint reads its
//! preamble (form, client authentication, DPoP proof) into a
//! [`TokenRequest`] and hands it to the grant its `grant_type` names.

mod access;
mod admin_sessions;
mod authorization_code;
mod authorize;
mod client_credentials;
mod device_code;
mod introspection;
mod login;
mod passkeys;
mod recovery;
mod refresh;
mod revocation;
mod signup;
mod totp;

use std::sync::Arc;

use async_trait::async_trait;
use latchkey_core::store::Client;

pub use access::AccessTokens;
pub use admin_sessions::AdminSessions;
pub use authorization_code::AuthorizationCodeGrant;
pub use authorize::{Authorizations, CODE_TTL, CodeGrant, redirect_uri_allowed};
pub use client_credentials::ClientCredentialsGrant;
pub use device_code::{
    DEVICE_CODE_GRANT, DEVICE_CODE_TTL, DeviceAuthorization, DeviceCodeGrant, DeviceFlow,
    DeviceRequest, POLL_INTERVAL, format_user_code, normalise_user_code,
};
pub use introspection::Introspection;
pub use login::{Login, MAX_USERNAME_BYTES};
pub use passkeys::{
    CEREMONY_TTL, MAX_CREDENTIAL_BYTES, MAX_NAME_CHARS, MAX_PASSKEYS_PER_USER,
    MAX_WAITING_CEREMONIES, PasskeyView, Passkeys, passkeys_off,
};
pub use recovery::{LinkView, MAX_PENDING_FORGOT, NotMe, Recovery};
pub use refresh::Refresh;
pub use revocation::TokenRevocation;
pub use signup::{SignUp, SignUpRefusal};
pub use totp::{
    AuthenticatorApps, FactorView, MAX_MFA_FAILURES, MFA_TOKEN_TTL, SecondFactor, TotpSetup,
    WRONG_CODE,
};

use crate::service::{Issued, Refusal, RequestContext};

/// The parameters of a request, however the transport carried them (a form
/// body, a query string): empty values count as absent.
pub trait Parameters: Sync {
    /// The value of `name`, if present and not empty.
    fn get(&self, name: &str) -> Option<&str>;

    /// The value of `name`, or `invalid_request`.
    fn require(&self, name: &str) -> Result<&str, Refusal> {
        self.get(name)
            .ok_or_else(|| Refusal::invalid_request(format!("missing parameter {name}")))
    }
}

/// A token request after its preamble: the form, the client it
/// authenticated (none for the first-party client), the bearer token sent
/// along, and who asks (with the DPoP key it proved, if any).
pub struct TokenRequest<'a> {
    /// The form.
    pub params: &'a dyn Parameters,
    /// The authenticated client, or a public client's bare `client_id`.
    pub client: Option<&'a Client>,
    /// An access token in the `Authorization` header (not client
    /// authentication; a refresh checks it belongs to the same session).
    pub access_token: Option<&'a str>,
    /// Who asks.
    pub ctx: &'a RequestContext,
}

/// A grant of the token endpoint.
#[async_trait]
pub trait Grant: Send + Sync {
    /// The `grant_type` it answers.
    fn grant_type(&self) -> &'static str;

    /// Issues tokens for `request`, or says why not.
    async fn grant(&self, request: &TokenRequest<'_>) -> Result<Issued, Refusal>;
}

/// The grants the token endpoint offers, registered once.
#[derive(Default, Clone)]
pub struct GrantRegistry {
    grants: Vec<Arc<dyn Grant>>,
}

impl GrantRegistry {
    /// Adds `grant`; a later grant of the same type replaces an earlier one.
    pub fn register(&mut self, grant: Arc<dyn Grant>) {
        self.grants.retain(|g| g.grant_type() != grant.grant_type());
        self.grants.push(grant);
    }

    /// The grant for `grant_type`, or `unsupported_grant_type`.
    pub fn find(&self, grant_type: &str) -> Result<Arc<dyn Grant>, Refusal> {
        self.grants
            .iter()
            .find(|g| g.grant_type() == grant_type)
            .cloned()
            .ok_or_else(|| {
                Refusal::UnsupportedGrantType(format!("grant_type {grant_type} is not supported"))
            })
    }

    /// The `grant_type`s offered, in the order registered (discovery).
    pub fn grant_types(&self) -> Vec<&'static str> {
        self.grants.iter().map(|g| g.grant_type()).collect()
    }
}
