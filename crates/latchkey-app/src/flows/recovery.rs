//! Getting back into an account (SPEC §13): a forgotten password reset
//! through a mailed link, an address verified, a password changed, and a
//! sign-in the user does not recognise ended.
//!
//! `forgot` answers the same, after the same work, whether or not the
//! address belongs to anyone: the request is checked and counted against
//! its client's address and against the address asked about (both
//! whatever the answer), and everything that depends on the account (the
//! per-account count, the link, its event and mail) happens after the
//! answer, in a task of its own. At most [`MAX_PENDING_FORGOT`] such tasks
//! run at once; beyond that a request is dropped (and logged), never
//! queued without bound.

use std::sync::Arc;

use latchkey_core::account::{self, LinkPurpose, LinkToken};
use latchkey_core::password::check_new_password;
use latchkey_core::store::{RevocationReason, Store};

use super::{AuthenticatorApps, SecondFactor};
use crate::config::Limit;
use crate::service::{
    Attempts, LoginKeys, PasswordService, Refusal, RequestContext, Sessions, TokenIssuer, Users,
    address_key,
};

/// Reset requests whose account work is still running, at most.
pub const MAX_PENDING_FORGOT: usize = 256;

const DEAD_LINK: &str =
    "this link is not valid any more: it was used, replaced by a newer one, or expired";

/// What a link's page shows before its button is pressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkView {
    /// Whose account it is.
    pub username: String,
    /// A reset must also give a code of the user's authenticator app.
    pub needs_code: bool,
}

/// What `This wasn't me` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotMe {
    /// Whose sign-in it was.
    pub user_id: String,
    /// The session it ended (false: it had ended already).
    pub ended: bool,
}

/// The recovery flow.
#[derive(Clone)]
pub struct Recovery {
    issuer: Arc<TokenIssuer>,
    store: Arc<dyn Store>,
    passwords: Arc<PasswordService>,
    attempts: Attempts,
    users: Users,
    apps: Arc<AuthenticatorApps>,
    sessions: Sessions,
    per_address: Limit,
    pending: Arc<tokio::sync::Semaphore>,
}

impl Recovery {
    /// Recovery over `store`; passwords hashed by `passwords`, requests
    /// counted by `attempts` (reset requests within `per_address` per
    /// address asked about and per account), links sent through `users`,
    /// codes checked by `apps`, sessions ended through `sessions`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        issuer: Arc<TokenIssuer>,
        store: Arc<dyn Store>,
        passwords: Arc<PasswordService>,
        attempts: Attempts,
        users: Users,
        apps: Arc<AuthenticatorApps>,
        sessions: Sessions,
        per_address: Limit,
    ) -> Self {
        Self {
            issuer,
            store,
            passwords,
            attempts,
            users,
            apps,
            sessions,
            per_address,
            pending: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_FORGOT)),
        }
    }

    /// `POST /auth/password/forgot`: the same answer (`Ok`) for any
    /// well-formed address, within the limits of the client's address and
    /// of the address asked about; the link goes out afterwards, if the
    /// address is an account's.
    pub async fn forgot(&self, email: &str, ctx: &RequestContext) -> Result<(), Refusal> {
        let email =
            account::check_email(email).map_err(|e| Refusal::invalid_request(e.to_string()))?;
        let key = account::email_key(&email);
        self.attempts
            .take_per_address(
                &format!("reset-ip:{}", address_key(&ctx.ip)),
                ctx,
                "password reset limit of an address reached",
            )
            .await?;
        self.attempts
            .take_limited(
                self.per_address,
                &format!("reset-email:{key}"),
                ctx,
                "password reset limit of an e-mail address reached",
            )
            .await?;
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            tracing::warn!("too many password reset requests at once; one dropped");
            return Ok(());
        };
        let this = self.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = this.send_reset(&key, &ctx).await {
                tracing::error!(error = %e, "a password reset request failed");
            }
            drop(permit);
        });
        Ok(())
    }

    /// The account side of a reset request.
    async fn send_reset(&self, key: &str, ctx: &RequestContext) -> Result<(), Refusal> {
        let Some(user) = self.store.user_by_email(key).await? else {
            return Ok(());
        };
        if user.disabled {
            return Ok(());
        }
        if self
            .attempts
            .take_limited(
                self.per_address,
                &format!("reset-acct:{}", user.id),
                ctx,
                "password reset limit of an account reached",
            )
            .await
            .is_err()
        {
            return Ok(());
        }
        if self
            .users
            .links()
            .send_reset(&user)
            .await
            .map_err(Refusal::internal)?
        {
            self.issuer
                .audit(
                    "password_reset_requested",
                    Some(&user.id),
                    None,
                    None,
                    ctx,
                    "",
                )
                .await;
        }
        Ok(())
    }

    /// Sends `user` a reset link now (an operator's "Send password reset"):
    /// false if they have no address.
    pub async fn send_reset_to(&self, user_id: &str) -> Result<bool, Refusal> {
        let Some(user) = self.store.user_by_id(user_id).await? else {
            return Ok(false);
        };
        self.users
            .links()
            .send_reset(&user)
            .await
            .map_err(Refusal::internal)
    }

    /// What the page of a link of `purpose` shows; `invalid_grant` if the
    /// link is dead. Reads only: opening a link changes nothing.
    pub async fn link_page(&self, token: &str, purpose: LinkPurpose) -> Result<LinkView, Refusal> {
        let link = self.live_link(token, purpose).await?;
        let Some(user) = self.store.user_by_id(&link.user_id).await? else {
            return Err(Refusal::invalid_grant(DEAD_LINK));
        };
        let needs_code =
            purpose == LinkPurpose::ResetPassword && self.apps.has_app(&user.id).await?;
        Ok(LinkView {
            username: user.username,
            needs_code,
        })
    }

    async fn live_link(
        &self,
        token: &str,
        purpose: LinkPurpose,
    ) -> Result<account::AccountLink, Refusal> {
        let token = LinkToken::parse(token).ok_or_else(|| Refusal::invalid_grant(DEAD_LINK))?;
        self.store
            .link(&token.hash(), self.issuer.now())
            .await?
            .filter(|l| l.purpose == purpose)
            .ok_or_else(|| Refusal::invalid_grant(DEAD_LINK))
    }

    /// `POST /auth/password/reset`: a new password through a reset link,
    /// with a code of the user's authenticator app if they have one. Every
    /// session of the user ends (`password_reset`).
    pub async fn reset(
        &self,
        token: &str,
        password: &str,
        code: Option<SecondFactor<'_>>,
        ctx: &RequestContext,
    ) -> Result<(), Refusal> {
        let link = self.live_link(token, LinkPurpose::ResetPassword).await?;
        check_new_password(password).map_err(|e| Refusal::invalid_request(e.to_string()))?;
        if self.apps.has_app(&link.user_id).await? {
            let Some(code) = code else {
                return Err(Refusal::invalid_request(
                    "this account has an authenticator app: send otp (a current code) or recovery_code too",
                ));
            };
            if !self.apps.verify_code(&link.user_id, code, ctx).await? {
                return Err(Refusal::invalid_grant("wrong code"));
            }
        }
        let hash = self.passwords.hash(password.to_owned()).await?;
        let Some(token) = LinkToken::parse(token) else {
            return Err(Refusal::invalid_grant(DEAD_LINK));
        };
        let Some((user_id, revoked)) = self
            .store
            .reset_password(&token.hash(), &hash, self.issuer.now())
            .await?
        else {
            return Err(Refusal::invalid_grant(DEAD_LINK));
        };
        let actor = ctx.actor(None);
        self.issuer
            .audit("password_reset", Some(&user_id), None, None, ctx, "")
            .await;
        self.sessions
            .revoked(&revoked, &user_id, RevocationReason::PasswordReset, &actor)
            .await;
        Ok(())
    }

    /// `POST /auth/email/verify`: the address the link was made for is
    /// verified, if it is still the user's.
    pub async fn verify(&self, token: &str, ctx: &RequestContext) -> Result<String, Refusal> {
        let token = LinkToken::parse(token).ok_or_else(|| Refusal::invalid_grant(DEAD_LINK))?;
        let Some(user_id) = self
            .store
            .verify_email(&token.hash(), self.issuer.now())
            .await?
        else {
            return Err(Refusal::invalid_grant(DEAD_LINK));
        };
        self.issuer
            .audit("email_verified", Some(&user_id), None, None, ctx, "")
            .await;
        Ok(user_id)
    }

    /// `POST /auth/not-me`: ends the session of a new-device notice
    /// (`not_me`).
    pub async fn not_me(&self, token: &str, ctx: &RequestContext) -> Result<NotMe, Refusal> {
        let token = LinkToken::parse(token).ok_or_else(|| Refusal::invalid_grant(DEAD_LINK))?;
        let Some((user_id, session_id, ended)) =
            self.store.not_me(&token.hash(), self.issuer.now()).await?
        else {
            return Err(Refusal::invalid_grant(DEAD_LINK));
        };
        if ended {
            self.sessions
                .revoked(
                    &[session_id],
                    &user_id,
                    RevocationReason::NotMe,
                    &ctx.actor(None),
                )
                .await;
        }
        Ok(NotMe { user_id, ended })
    }

    /// `POST /auth/password`: a signed-in user's new password, given their
    /// current one (wrong guesses count like failed logins). Their other
    /// sessions end (`password_changed`); `session_id`'s stays.
    pub async fn change_password(
        &self,
        user_id: &str,
        session_id: Option<&str>,
        current: &str,
        new: &str,
        ctx: &RequestContext,
    ) -> Result<(), Refusal> {
        let Some(user) = self.store.user_by_id(user_id).await? else {
            return Err(Refusal::invalid_token("the user is gone"));
        };
        if current.len() > 4096 || new.len() > 4096 {
            return Err(Refusal::invalid_request("the password is too long"));
        }
        let keys = LoginKeys::new(&user.username, &ctx.ip);
        if let Err(blocked) = self.attempts.take_login(&keys).await {
            self.attempts
                .throttled(&blocked, None, ctx, "failed-login limit reached")
                .await;
            return Err(blocked.into());
        }
        if !self
            .passwords
            .verify(current.to_owned(), Some(user.password_hash.clone()))
            .await?
        {
            self.issuer
                .audit(
                    "login_failed",
                    Some(user_id),
                    session_id,
                    None,
                    ctx,
                    "wrong current password",
                )
                .await;
            return Err(Refusal::invalid_grant("the current password is wrong"));
        }
        self.attempts.login_succeeded(&keys).await;
        check_new_password(new).map_err(|e| Refusal::invalid_request(e.to_string()))?;
        let hash = self.passwords.hash(new.to_owned()).await?;
        let Some(revoked) = self
            .store
            .change_password(user_id, &hash, session_id, self.issuer.now())
            .await?
        else {
            return Err(Refusal::invalid_token("the user is gone"));
        };
        self.issuer
            .audit("password_changed", Some(user_id), session_id, None, ctx, "")
            .await;
        self.sessions
            .revoked(
                &revoked,
                user_id,
                RevocationReason::PasswordChanged,
                &ctx.actor(None),
            )
            .await;
        Ok(())
    }
}
