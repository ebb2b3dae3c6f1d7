//! Accounts: the rules for names and passwords, and what disabling a user
//! or changing a password does to their sessions, for every caller (the
//! command line today; sign-up and the admin API next).

use std::sync::Arc;

use async_trait::async_trait;
use aws_lc_rs::rand::SystemRandom;
use latchkey_core::clock::Clock;
use latchkey_core::id::random_id;
use latchkey_core::password::{PasswordHasher, WeakPassword, check_new_password};
use latchkey_core::store::{RevocationReason, Store, StoreError, User, UserStore};
use latchkey_core::username::UsernameError;

use super::{Actor, Events, Links, Sessions};

/// Why an account operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The client name breaks the rule.
    #[error(
        "a client name has 1 to {} characters and no control characters",
        super::MAX_CLIENT_NAME_CHARS
    )]
    InvalidClientName,
    /// A redirect URI breaks the rule.
    #[error(
        "a redirect URI is absolute, without a fragment: https, http on a loopback address, or a private-use scheme (com.example.app:/callback)"
    )]
    InvalidRedirectUri,
    /// A webhook's or a back-channel logout's URL breaks the rule.
    #[error(
        "a URL events are posted to is absolute http or https, with a host and no credentials or fragment"
    )]
    InvalidUrl,
    /// Not one of the event types (SPEC §14).
    #[error("unknown event type {0:?}: one of {types}", types = latchkey_core::outbox::EVENT_TYPES.join(", "))]
    InvalidEventType(String),
    /// A cap is reached (webhooks).
    #[error("too many webhooks (at most {})", super::webhooks::MAX_WEBHOOKS)]
    TooMany,
    /// The scope is not a list of valid scope tokens.
    #[error("not a valid scope")]
    InvalidScope,
    /// A secret was asked of a public client.
    #[error("a public client has no secret")]
    PublicClient,
    /// The username breaks the rule.
    #[error("{0}")]
    InvalidUsername(#[from] UsernameError),
    /// The password breaks the rule.
    #[error("{0}")]
    WeakPassword(#[from] WeakPassword),
    /// The username is taken.
    #[error("a user with this name already exists")]
    Taken,
    /// The address breaks the rule.
    #[error("{0}")]
    InvalidEmail(#[from] latchkey_core::account::InvalidEmail),
    /// Another user has the address.
    #[error("another user has this e-mail address")]
    EmailTaken,
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// Too busy to hash a password now: retry after this many seconds.
    #[error("busy; retry after {retry_after} s")]
    Busy {
        /// Seconds to wait.
        retry_after: i64,
    },
    /// A failure of the server.
    #[error("internal failure")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Hashing or randomness failed.
    #[error("cryptography failed")]
    Crypto(#[from] latchkey_core::Error),
    /// The store failed.
    #[error("the database failed")]
    Store(#[source] StoreError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => Self::Taken,
            other => Self::Store(other),
        }
    }
}

/// The longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = latchkey_core::username::MAX_CHARS;

/// The name a new account gets for `name`: its canonical form (see
/// [`latchkey_core::username`]), so that one visible name is one account.
pub fn canonical_username(name: &str) -> Result<String, ServiceError> {
    Ok(latchkey_core::username::canonical(name)?)
}

/// The user a person means by `name`: the account spelled exactly so, or
/// else the account of its canonical form. (Exactly so first: an account
/// stored before names were folded, whose canonical form another account
/// had already taken, keeps its spelling and signs in with it.)
pub async fn find_user(store: &dyn UserStore, name: &str) -> Result<Option<User>, StoreError> {
    if let Some(user) = store.user_by_name(name).await? {
        return Ok(Some(user));
    }
    match latchkey_core::username::canonical(name) {
        Ok(canonical) if canonical != name => store.user_by_name(&canonical).await,
        _ => Ok(None),
    }
}

/// Renames every stored account whose name is not in canonical form (made
/// before names were folded) to its canonical form, unless another account
/// holds that name already or the old name is no longer a valid one: such
/// an account keeps its spelling, still signs in with it exactly, and is
/// named in a warning. Returns how many were renamed.
pub async fn canonicalise_stored_names(store: &dyn UserStore) -> Result<usize, StoreError> {
    let mut renamed = 0;
    for (id, name) in store.names_that_may_need_folding().await? {
        match latchkey_core::username::canonical(&name) {
            Ok(canonical) if canonical == name => {}
            Ok(canonical) => {
                if store.rename_user(&id, &canonical).await? {
                    renamed += 1;
                } else {
                    tracing::warn!(
                        user_id = %id,
                        "the account's name is taken in its canonical form by another account: \
                         it keeps its old spelling"
                    );
                }
            }
            Err(e) => tracing::warn!(
                user_id = %id,
                reason = %e,
                "the account's name is no longer a valid username: it keeps its old spelling"
            ),
        }
    }
    Ok(renamed)
}

/// Turns a new password into its stored hash, off the async runtime.
#[async_trait]
pub trait PasswordHashing: Send + Sync {
    /// The Argon2id PHC string of `password`.
    async fn hash(&self, password: String) -> Result<String, ServiceError>;
}

/// Hashing on tokio's blocking pool (the command line; a server uses its
/// bounded hashing pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockingHasher;

#[async_trait]
impl PasswordHashing for BlockingHasher {
    async fn hash(&self, password: String) -> Result<String, ServiceError> {
        tokio::task::spawn_blocking(move || {
            let rng = SystemRandom::new();
            PasswordHasher::new(&rng)?.hash(&password, &rng)
        })
        .await
        .map_err(|e| ServiceError::Store(StoreError::Backend(Box::new(e))))?
        .map_err(ServiceError::Crypto)
    }
}

/// The account operations.
#[derive(Clone)]
pub struct Users {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    hashing: Arc<dyn PasswordHashing>,
    sessions: Sessions,
    events: Events,
    links: Links,
}

impl Users {
    /// Accounts in `store`; their sessions revoked through `sessions`,
    /// their addresses verified through `links`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        hashing: Arc<dyn PasswordHashing>,
        sessions: Sessions,
        events: Events,
        links: Links,
    ) -> Self {
        Self {
            store,
            clock,
            hashing,
            sessions,
            events,
            links,
        }
    }

    /// The links this service sends.
    pub fn links(&self) -> &Links {
        &self.links
    }

    /// Sets or clears a user's address (unverified; a verification link
    /// goes to a new one, and a verified old one is told).
    pub async fn set_email(
        &self,
        user: &User,
        email: Option<&str>,
        actor: &Actor,
    ) -> Result<User, ServiceError> {
        let email = email.map(latchkey_core::account::check_email).transpose()?;
        let same = match (&email, &user.email) {
            (Some(new), Some(old)) => new == old,
            (None, None) => true,
            _ => false,
        };
        if same {
            return Ok(user.clone());
        }
        match self.store.set_email(&user.id, email.as_deref()).await {
            Ok(true) => {}
            Ok(false) => return Err(ServiceError::NotFound),
            Err(StoreError::Conflict) => return Err(ServiceError::EmailTaken),
            Err(e) => return Err(e.into()),
        }
        self.events
            .audit("email_changed", Some(&user.id), None, actor, "")
            .await;
        let user = self.by_id(&user.id).await?;
        self.links.send_verification(&user).await?;
        Ok(user)
    }

    /// The user named `name` (see [`find_user`]).
    pub async fn by_name(&self, name: &str) -> Result<User, ServiceError> {
        find_user(self.store.as_ref(), name)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    /// The user with this id.
    pub async fn by_id(&self, id: &str) -> Result<User, ServiceError> {
        self.store
            .user_by_id(id)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    /// At most `limit` users by id after the id `after`.
    pub async fn page(&self, after: Option<&str>, limit: u32) -> Result<Vec<User>, ServiceError> {
        Ok(self.store.users_page(after, limit).await?)
    }

    /// Adds a user who has no password of theirs (an application
    /// authenticates them by its own means and starts their sessions): the
    /// stored hash is of 128 random bits nobody knows, so a password login
    /// fails after the same work as any other.
    pub async fn add_without_password(
        &self,
        name: &str,
        email: Option<&str>,
        actor: &Actor,
    ) -> Result<User, ServiceError> {
        let secret = latchkey_core::id::random_id("", &SystemRandom::new())?;
        self.add(name, secret, email, actor).await
    }

    /// Deletes a user: every session revoked (returned, and announced) in
    /// the same transaction that takes the user out of every lookup. The
    /// audit trail keeps their events.
    pub async fn delete(&self, user: &User, actor: &Actor) -> Result<Vec<String>, ServiceError> {
        let revoked = self
            .store
            .delete_user(&user.id, self.clock.now())
            .await?
            .ok_or(ServiceError::NotFound)?;
        self.events
            .audit("user_deleted", Some(&user.id), None, actor, "")
            .await;
        self.sessions
            .revoked(&revoked, &user.id, RevocationReason::UserDeleted, actor)
            .await;
        Ok(revoked)
    }

    /// Adds a user, checking the name, the address and the password first;
    /// a verification link goes to the address.
    pub async fn add(
        &self,
        name: &str,
        password: String,
        email: Option<&str>,
        actor: &Actor,
    ) -> Result<User, ServiceError> {
        let username = canonical_username(name)?;
        let email = email.map(latchkey_core::account::check_email).transpose()?;
        check_new_password(&password)?;
        if let Some(email) = &email
            && self.email_taken(email).await?
        {
            return Err(ServiceError::EmailTaken);
        }
        let user = User {
            id: random_id("usr_", &SystemRandom::new())?,
            username,
            password_hash: self.hashing.hash(password).await?,
            disabled: false,
            created_at: self.clock.now(),
            email,
            email_verified: false,
            admin: false,
        };
        if let Err(e) = self.store.insert_user(&user).await {
            // Which was taken meanwhile: the name or the address?
            return Err(match (&e, &user.email) {
                (StoreError::Conflict, Some(email)) if self.email_taken(email).await? => {
                    ServiceError::EmailTaken
                }
                _ => e.into(),
            });
        }
        self.events
            .audit("user_added", Some(&user.id), None, actor, "")
            .await;
        self.links.send_verification(&user).await?;
        Ok(user)
    }

    async fn email_taken(&self, email: &str) -> Result<bool, ServiceError> {
        Ok(self
            .store
            .user_by_email(&latchkey_core::account::email_key(email))
            .await?
            .is_some())
    }

    /// Replaces a user's password; with `revoke_sessions`, ends every
    /// session of theirs too (returned). The next login needs the new one.
    pub async fn set_password(
        &self,
        user: &User,
        password: String,
        revoke_sessions: bool,
        actor: &Actor,
    ) -> Result<Vec<String>, ServiceError> {
        check_new_password(&password)?;
        let hash = self.hashing.hash(password).await?;
        // With its revocations, the new password commits in one transaction
        // (the store's password change, keeping no session).
        let revoked = if revoke_sessions {
            self.store
                .change_password(&user.id, &hash, None, self.clock.now())
                .await?
                .ok_or(ServiceError::NotFound)?
        } else if self.store.set_password(&user.id, &hash).await? {
            Vec::new()
        } else {
            return Err(ServiceError::NotFound);
        };
        self.events
            .audit("password_changed", Some(&user.id), None, actor, "")
            .await;
        self.sessions
            .revoked(&revoked, &user.id, RevocationReason::PasswordChanged, actor)
            .await;
        Ok(revoked)
    }

    /// Grants (`on`) or withdraws the admin role: who may sign in to the
    /// console (SPEC §15).
    pub async fn set_admin(
        &self,
        user: &User,
        on: bool,
        actor: &Actor,
    ) -> Result<User, ServiceError> {
        if !self.store.set_admin(&user.id, on).await? {
            return Err(ServiceError::NotFound);
        }
        let kind = if on {
            "admin_granted"
        } else {
            "admin_withdrawn"
        };
        self.events
            .audit(kind, Some(&user.id), None, actor, "")
            .await;
        Ok(User {
            admin: on,
            ..user.clone()
        })
    }

    /// Disables a user and revokes every session of theirs (returned), or
    /// enables them again.
    pub async fn set_disabled(
        &self,
        user: &User,
        disabled: bool,
        actor: &Actor,
    ) -> Result<Vec<String>, ServiceError> {
        let revoked = self
            .store
            .set_disabled(&user.id, disabled, self.clock.now())
            .await?
            .ok_or(ServiceError::NotFound)?;
        let kind = if disabled {
            "user_disabled"
        } else {
            "user_enabled"
        };
        self.events
            .audit(kind, Some(&user.id), None, actor, "")
            .await;
        self.sessions
            .revoked(&revoked, &user.id, RevocationReason::UserDisabled, actor)
            .await;
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_have_one_to_256_characters_and_no_control_characters() {
        assert_eq!(canonical_username("Alice").ok().as_deref(), Some("alice"));
        assert!(canonical_username(&"é".repeat(256)).is_ok());
        assert!(canonical_username(&"é".repeat(257)).is_err());
        assert!(canonical_username("").is_err());
        assert!(canonical_username("al\0ice").is_err());
        assert!(canonical_username("al\nice").is_err());
    }
}
