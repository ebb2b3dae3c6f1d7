//! The links mailed to users (SPEC §13): a verification link when an
//! address is given, a reset link when a password is forgotten. Each is
//! stored hashed with the event that carries it (and, when mail is set up,
//! mails it), in one transaction.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use latchkey_core::account::{AccountLink, LinkPurpose, LinkToken};
use latchkey_core::clock::Clock;
use latchkey_core::store::{AccountStore, User};

use super::ServiceError;

/// Makes and stores links.
#[derive(Clone)]
pub struct Links {
    store: Arc<dyn AccountStore>,
    issuer: String,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
}

impl Links {
    /// Links under `issuer`, stored in `store`.
    pub fn new(store: Arc<dyn AccountStore>, issuer: String, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            issuer,
            clock,
            rng: SystemRandom::new(),
        }
    }

    /// Sends `user` a link to verify their address (none: nothing to do).
    /// False if the user or the address changed meanwhile.
    pub async fn send_verification(&self, user: &User) -> Result<bool, ServiceError> {
        match &user.email {
            Some(email) => {
                self.send(LinkPurpose::VerifyEmail, user, Some(email.clone()))
                    .await
            }
            None => Ok(false),
        }
    }

    /// Sends `user` a password reset link, voiding their older ones. False
    /// if they have no address (or are gone).
    pub async fn send_reset(&self, user: &User) -> Result<bool, ServiceError> {
        if user.email.is_none() {
            return Ok(false);
        }
        self.send(LinkPurpose::ResetPassword, user, None).await
    }

    async fn send(
        &self,
        purpose: LinkPurpose,
        user: &User,
        verifies: Option<String>,
    ) -> Result<bool, ServiceError> {
        let now = self.clock.now();
        let token = LinkToken::generate(&self.rng)?;
        let url = token.url(&self.issuer, purpose);
        let link = AccountLink {
            hash: token.hash(),
            purpose,
            user_id: user.id.clone(),
            email: verifies,
            session_id: None,
            created_at: now,
            expires_at: now + purpose.ttl(),
        };
        let data = serde_json::json!({
            "user_id": user.id,
            "username": user.username,
            "email": user.email,
            "link": url,
            "expires_at": link.expires_at,
        });
        Ok(self.store.insert_link(&link, &data.to_string()).await?)
    }
}
