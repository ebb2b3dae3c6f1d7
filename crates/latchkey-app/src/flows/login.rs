//! Password login (`/auth/login`, the password grant, the authorization
//! pages' sign-in): attempts counted before the hash, a bounded hash queue,
//! one answer for every failure.

use std::sync::Arc;

use async_trait::async_trait;
use latchkey_core::store::{AccountStore, Client, UserStore};
use latchkey_core::strength::AuthMethod;

use super::{AuthenticatorApps, Grant, TokenRequest};
use crate::metrics::Counter;
use crate::service::{
    Attempts, Issued, LoginKeys, PasswordService, Refusal, RequestContext, TokenIssuer, find_user,
};

const INVALID_CREDENTIALS: &str = "invalid username or password";

/// The longest username a login looks up: the longest a user can have
/// (256 characters of up to 4 bytes); longer ones are refused before any
/// counting.
pub const MAX_USERNAME_BYTES: usize = 4 * crate::service::MAX_USERNAME_CHARS;

/// The password login flow.
pub struct Login {
    issuer: Arc<TokenIssuer>,
    passwords: Arc<PasswordService>,
    attempts: Attempts,
    users: Arc<dyn UserStore>,
    devices: Arc<dyn AccountStore>,
    apps: Arc<AuthenticatorApps>,
}

impl Login {
    /// Logins of `users`, passwords checked by `passwords`, counted by
    /// `attempts` (per known device in `devices`), second steps asked by
    /// `apps`, sessions opened by `issuer`.
    pub fn new(
        issuer: Arc<TokenIssuer>,
        passwords: Arc<PasswordService>,
        attempts: Attempts,
        users: Arc<dyn UserStore>,
        devices: Arc<dyn AccountStore>,
        apps: Arc<AuthenticatorApps>,
    ) -> Self {
        Self {
            issuer,
            passwords,
            attempts,
            users,
            devices,
            apps,
        }
    }

    /// The attempt counters of a login: the account's and the address's,
    /// or, from a browser that signed in to this account before (review
    /// finding L12, OWASP's device cookies), that device's own budget in
    /// place of the account's, so that failures elsewhere never lock the
    /// owner out of their own browser.
    async fn keys(&self, username: &str, ctx: &RequestContext) -> LoginKeys {
        let keys = LoginKeys::new(username, &ctx.ip);
        let Some(device) = &ctx.device else {
            return keys;
        };
        let Ok(name) = latchkey_core::username::canonical(username) else {
            return keys;
        };
        let since = self.issuer.now() - latchkey_core::account::DEVICE_MEMORY;
        match self.devices.known_device(&name, device, since).await {
            Ok(true) => keys.on_device(device),
            Ok(false) => keys,
            Err(e) => {
                tracing::warn!(error = %e, "reading known devices failed; the account's budget applies");
                keys
            }
        }
    }

    /// Username and password to a new session (`/auth/login`, password grant).
    /// Unknown user, wrong password and disabled user give the same answer
    /// after the same work.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        scope: Option<&str>,
        client: Option<&Client>,
        ctx: &RequestContext,
    ) -> Result<Issued, Refusal> {
        // A login does not keep the last core from hashing other logins.
        let _credential = self.passwords.gate().credential();
        if username.len() > MAX_USERNAME_BYTES {
            return Err(Refusal::invalid_request("username is too long"));
        }
        let scope = self.issuer.user_scope(scope, client)?;
        let client_id = client.map(|c| c.id.as_str());
        // The attempt counts before any hashing: however many arrive at
        // once, at most the limit are checked, and a flood costs no Argon2id.
        let keys = self.keys(username, ctx).await;
        if let Err(blocked) = self.attempts.take_login(&keys).await {
            self.attempts
                .throttled(&blocked, client_id, ctx, "failed-login limit reached")
                .await;
            return Err(blocked.into());
        }
        let user = match find_user(self.users.as_ref(), username).await {
            Ok(user) => user,
            Err(e) => {
                self.attempts.give_back_login(&keys).await;
                return Err(e.into());
            }
        };
        let checked = self
            .passwords
            .verify(
                password.to_owned(),
                user.as_ref().map(|u| u.password_hash.clone()),
            )
            .await;
        let ok = match checked {
            Ok(ok) => ok,
            // Not checked (the queue was full): the attempt does not count.
            Err(e) => {
                self.attempts.give_back_login(&keys).await;
                return Err(e);
            }
        };
        let user = match user {
            Some(user) if ok && !user.disabled => user,
            other => {
                let id = other.as_ref().map(|u| u.id.as_str());
                let why = match &other {
                    None => "unknown user",
                    Some(u) if u.disabled && ok => "user disabled",
                    Some(_) => "wrong password",
                };
                self.issuer.metrics().inc(Counter::LoginFailures, &[]);
                self.issuer
                    .audit("login_failed", id, None, client_id, ctx, why)
                    .await;
                return Err(Refusal::invalid_grant(INVALID_CREDENTIALS));
            }
        };
        self.attempts.login_succeeded(&keys).await;
        // The factor is asked for only now that the password is right.
        if let Some(mfa_token) = self.apps.second_step(&user.id, client_id, &scope).await? {
            return Err(Refusal::MfaRequired { mfa_token });
        }
        match self
            .issuer
            .start_session(&user, client_id, &scope, ctx, "login", AuthMethod::Password)
            .await?
        {
            Some(issued) => Ok(issued),
            None => {
                // Disabled (or deleted) while the password was being checked.
                self.issuer.metrics().inc(Counter::LoginFailures, &[]);
                self.issuer
                    .audit(
                        "login_failed",
                        Some(&user.id),
                        None,
                        client_id,
                        ctx,
                        "user disabled",
                    )
                    .await;
                Err(Refusal::invalid_grant(INVALID_CREDENTIALS))
            }
        }
    }
}

/// `grant_type=password` (when `LATCHKEY_PASSWORD_GRANT` allows it).
#[async_trait]
impl Grant for Login {
    fn grant_type(&self) -> &'static str {
        "password"
    }

    async fn grant(&self, request: &TokenRequest<'_>) -> Result<Issued, Refusal> {
        let params = request.params;
        self.login(
            params.require("username")?,
            params.require("password")?,
            params.get("scope"),
            request.client,
            request.ctx,
        )
        .await
    }
}
