//! Password login (`/auth/login`, the password grant): attempts counted
//! before the hash, a bounded hash queue, one answer for every failure.

use latchkey_core::coordination::Blocked;
use latchkey_core::scope::Scope;
use latchkey_core::store::Client;

use super::Refusal;
use super::tokens::{Issued, RequestContext, TokenService};
use crate::metrics::Counter;

const INVALID_CREDENTIALS: &str = "invalid username or password";

/// The longest username a login looks up: the longest a user can have
/// (256 characters of up to 4 bytes); longer ones are refused before any
/// counting.
pub const MAX_USERNAME_BYTES: usize = 4 * super::MAX_USERNAME_CHARS;

/// Logins waiting for a hash or hashing, at most: beyond that a login is
/// answered `503` at once instead of queueing (about a second of work on two
/// cores).
pub const MAX_WAITING_HASHES: usize = 64;

/// The attempt counters a login takes: its account's and its address's.
struct AttemptKeys {
    account: String,
    address: String,
}

impl AttemptKeys {
    /// The account's key is its canonical name (every spelling of one
    /// account shares its budget), or the lower-cased text of a name that
    /// cannot be one.
    fn new(username: &str, ip: &str) -> Self {
        let account = latchkey_core::username::canonical(username)
            .unwrap_or_else(|_| username.to_lowercase());
        Self {
            account: format!("acct:{account}"),
            address: format!("ip:{}", address_key(ip)),
        }
    }
}

/// The part of a client's address its attempts count against (an IPv6
/// address by its /64).
pub(super) fn address_key(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(ip) => crate::throttle::address_key(ip),
        Err(_) => ip.to_owned(),
    }
}

/// A place in a bounded queue, given back when dropped.
struct Queued<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicUsize, max: usize) -> Option<Self> {
        use std::sync::atomic::Ordering;
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl TokenService {
    /// Runs Argon2id off the async runtime, one per core at most, for at
    /// most [`MAX_WAITING_HASHES`] logins waiting or hashing at once; past
    /// that, `503` with `Retry-After`.
    async fn verify_password(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, Refusal> {
        let _queued = Queued::enter(&self.waiting_hashes, MAX_WAITING_HASHES)
            .ok_or(Refusal::Busy { retry_after: 1 })?;
        let _turn = self.hash_gate.admit().await.map_err(Refusal::internal)?;
        let passwords = self.passwords.clone();
        self.hash_pool
            .run(move || passwords.verify(&password, stored.as_deref()))
            .await
            .ok_or_else(|| Refusal::internal("the hashing pool stopped"))
    }

    /// Hashes a new password off the async runtime, in the same bounded
    /// queue as logins (`503` past it).
    pub async fn hash_password(&self, password: String) -> Result<String, Refusal> {
        let _queued = Queued::enter(&self.waiting_hashes, MAX_WAITING_HASHES)
            .ok_or(Refusal::Busy { retry_after: 1 })?;
        let _turn = self.hash_gate.admit().await.map_err(Refusal::internal)?;
        let (passwords, rng) = (self.passwords.clone(), self.rng.clone());
        self.hash_pool
            .run(move || passwords.hash(&password, &rng))
            .await
            .ok_or_else(|| Refusal::internal("the hashing pool stopped"))?
            .map_err(Refusal::internal)
    }

    /// The scope a login gets (§3.3): the requested one, or the default,
    /// within `LATCHKEY_SCOPES` and, through a client, within the client's
    /// registered scopes.
    pub fn user_scope(
        &self,
        requested: Option<&str>,
        client: Option<&Client>,
    ) -> Result<Scope, Refusal> {
        let config = self.config();
        let allowed = match client {
            Some(client) => config
                .scopes
                .intersection(&Scope::parse(&client.scope).unwrap_or_default()),
            None => config.scopes.clone(),
        };
        match requested {
            Some(text) if !text.trim().is_empty() => {
                let scope =
                    Scope::parse(text).map_err(|_| Refusal::invalid_scope("malformed scope"))?;
                if !scope.is_subset(&allowed) {
                    return Err(Refusal::invalid_scope(
                        "the requested scope is not available",
                    ));
                }
                Ok(scope)
            }
            _ => Ok(config.default_scope.intersection(&allowed)),
        }
    }

    /// Takes a login attempt of the account and of the client's address
    /// before any password is checked; `Err(seconds)` when either has used
    /// up its attempts (and nothing is taken). With Redis the counts are
    /// shared by every instance; if Redis fails, logins are let through (and
    /// the failure logged) rather than refused.
    async fn take_attempts(&self, keys: &AttemptKeys) -> Result<(), Blocked> {
        let config = self.config();
        let account = self
            .counted(self.attempts.take_attempt(
                &keys.account,
                config.throttle_account.max,
                config.throttle_account.window,
            ))
            .await;
        if let Some(Some(wait)) = account {
            return Err(wait);
        }
        let address = self
            .counted(self.attempts.take_attempt(
                &keys.address,
                config.throttle_ip.max,
                config.throttle_ip.window,
            ))
            .await;
        if let Some(Some(wait)) = address {
            self.give_back_attempt(&keys.account).await;
            return Err(wait);
        }
        Ok(())
    }

    /// A refused attempt: counted in the metrics every time, audited only
    /// when its key has just become blocked (once per window), so that a
    /// flood of refused attempts writes nothing to the database.
    pub(super) async fn throttled(
        &self,
        blocked: &Blocked,
        client_id: Option<&str>,
        ctx: &RequestContext,
        detail: &str,
    ) {
        self.metrics().inc(Counter::Throttled, &[]);
        if blocked.first {
            self.audit("throttled", None, None, client_id, ctx, detail)
                .await;
        }
    }

    /// Gives back both attempts of a login whose password was not checked.
    async fn give_back_attempts(&self, keys: &AttemptKeys) {
        self.give_back_attempt(&keys.account).await;
        self.give_back_attempt(&keys.address).await;
    }

    async fn give_back_attempt(&self, key: &str) {
        self.counted(self.attempts.give_back_attempt(key)).await;
    }

    /// A successful login: the account starts afresh, and the address gets
    /// its attempt back.
    async fn login_succeeded(&self, keys: &AttemptKeys) {
        self.counted(self.attempts.clear_attempts(&keys.account))
            .await;
        self.give_back_attempt(&keys.address).await;
    }

    async fn counted<T>(
        &self,
        call: impl std::future::Future<Output = latchkey_core::store::StoreResult<T>>,
    ) -> Option<T> {
        match call.await {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::error!(error = %e, "login attempt counters unavailable");
                None
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
        let _credential = self.hash_gate.credential();
        if username.len() > MAX_USERNAME_BYTES {
            return Err(Refusal::invalid_request("username is too long"));
        }
        let scope = self.user_scope(scope, client)?;
        let client_id = client.map(|c| c.id.as_str());
        // The attempt counts before any hashing: however many arrive at
        // once, at most the limit are checked, and a flood costs no Argon2id.
        let keys = AttemptKeys::new(username, &ctx.ip);
        if let Err(blocked) = self.take_attempts(&keys).await {
            self.throttled(&blocked, client_id, ctx, "failed-login limit reached")
                .await;
            return Err(Refusal::TooManyRequests {
                retry_after: blocked.retry_after,
            });
        }
        let user = match super::find_user(self.store(), username).await {
            Ok(user) => user,
            Err(e) => {
                self.give_back_attempts(&keys).await;
                return Err(e.into());
            }
        };
        let checked = self
            .verify_password(
                password.to_owned(),
                user.as_ref().map(|u| u.password_hash.clone()),
            )
            .await;
        let ok = match checked {
            Ok(ok) => ok,
            // Not checked (the queue was full): the attempt does not count.
            Err(e) => {
                self.give_back_attempts(&keys).await;
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
                self.metrics().inc(Counter::LoginFailures, &[]);
                self.audit("login_failed", id, None, client_id, ctx, why)
                    .await;
                return Err(Refusal::invalid_grant(INVALID_CREDENTIALS));
            }
        };
        self.login_succeeded(&keys).await;
        match self
            .start_session(&user, client_id, &scope, ctx, "login")
            .await?
        {
            Some(issued) => Ok(issued),
            None => {
                // Disabled (or deleted) while the password was being checked.
                self.metrics().inc(Counter::LoginFailures, &[]);
                self.audit(
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
