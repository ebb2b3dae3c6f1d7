//! Self-service sign-up (`POST /auth/signup`, when `LATCHKEY_SIGNUP=open`):
//! the command line's rules for names and passwords, attempts counted per
//! address before any hashing, and then a session exactly as a login
//! starts one.

use latchkey_core::password::check_new_password;

use super::tokens::{Issued, RequestContext, TokenService};
use super::{Actor, Refusal, ServiceError, Users, canonical_username};

impl TokenService {
    /// Creates the account `username` and starts its first session.
    /// [`ServiceError::Taken`] for a name in use (sign-up cannot hide that a
    /// name exists).
    pub async fn sign_up(
        &self,
        users: &Users,
        username: &str,
        password: String,
        scope: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Issued, SignUpRefusal> {
        canonical_username(username)?;
        check_new_password(&password).map_err(ServiceError::from)?;
        let scope = self.user_scope(scope, None)?;
        // Every sign-up counts against its address, successful or not, and
        // before any hashing: an address creates at most the limit of
        // accounts (or learns at most the limit of taken names) per window.
        let key = format!("signup:{}", super::login::address_key(&ctx.ip));
        let limit = self.config().throttle_ip;
        match self
            .attempts
            .take_attempt(&key, limit.max, limit.window)
            .await
        {
            Ok(Some(blocked)) => {
                self.throttled(&blocked, None, ctx, "sign-up limit reached")
                    .await;
                return Err(Refusal::TooManyRequests {
                    retry_after: blocked.retry_after,
                }
                .into());
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "sign-up attempt counters unavailable"),
        }
        let actor = Actor::request(ctx, None);
        let user = users.add(username, password, &actor).await?;
        match self
            .start_session(&user, None, &scope, ctx, "signup")
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

impl TokenService {
    /// A session for a user whom an application authenticated by its own
    /// means (`POST /admin/sessions`): the scope rules of a login, then the
    /// same session and first token pair. `None` when the user is disabled.
    pub async fn start_session_for(
        &self,
        user: &latchkey_core::store::User,
        client: Option<&latchkey_core::store::Client>,
        scope: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Option<Issued>, Refusal> {
        let scope = self.user_scope(scope, client)?;
        let client_id = client.map(|c| c.id.as_str());
        self.start_session(user, client_id, &scope, ctx, "admin")
            .await
    }
}
