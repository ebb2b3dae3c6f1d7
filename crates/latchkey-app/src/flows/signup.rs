//! Self-service sign-up (`POST /auth/signup`, when `LATCHKEY_SIGNUP=open`):
//! the command line's rules for names and passwords, attempts counted per
//! address before any hashing, and then a session exactly as a login
//! starts one.

use std::sync::Arc;

use latchkey_core::password::check_new_password;
use latchkey_core::strength::AuthMethod;

use crate::service::{
    Attempts, Issued, Refusal, RequestContext, ServiceError, TokenIssuer, Users, address_key,
    canonical_username,
};

/// The sign-up flow.
pub struct SignUp {
    issuer: Arc<TokenIssuer>,
    users: Users,
    attempts: Attempts,
}

impl SignUp {
    /// Accounts made through `users`, counted by `attempts`, first
    /// sessions opened by `issuer`.
    pub fn new(issuer: Arc<TokenIssuer>, users: Users, attempts: Attempts) -> Self {
        Self {
            issuer,
            users,
            attempts,
        }
    }

    /// Creates the account `username` (with `email`, which gets a
    /// verification link) and starts its first session.
    /// [`ServiceError::Taken`] for a name in use, [`ServiceError::EmailTaken`]
    /// for an address in use (sign-up cannot hide that either exists).
    pub async fn sign_up(
        &self,
        username: &str,
        password: String,
        email: Option<&str>,
        scope: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Issued, SignUpRefusal> {
        canonical_username(username)?;
        if let Some(email) = email {
            latchkey_core::account::check_email(email).map_err(ServiceError::from)?;
        }
        check_new_password(&password).map_err(ServiceError::from)?;
        let scope = self.issuer.user_scope(scope, None)?;
        // Every sign-up counts against its address, successful or not, and
        // before any hashing: an address creates at most the limit of
        // accounts (or learns at most the limit of taken names) per window.
        let key = format!("signup:{}", address_key(&ctx.ip));
        self.attempts
            .take_per_address(&key, ctx, "sign-up limit reached")
            .await
            .map_err(Refusal::from)?;
        let user = self
            .users
            .add(username, password, email, &ctx.actor(None))
            .await?;
        match self
            .issuer
            .start_session(&user, None, &scope, ctx, "signup", AuthMethod::Password)
            .await?
        {
            Some(issued) => Ok(issued),
            // Disabled or deleted between its creation and its first session.
            None => Err(Refusal::invalid_grant("the account is not available").into()),
        }
    }
}

/// Why a sign-up was refused: a rule of accounts, or of tokens.
#[derive(Debug, thiserror::Error)]
pub enum SignUpRefusal {
    /// The name, the password or the account store said no.
    #[error(transparent)]
    Account(#[from] ServiceError),
    /// The scope, the throttle or the session said no.
    #[error(transparent)]
    Token(#[from] Refusal),
}
