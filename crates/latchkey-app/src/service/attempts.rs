//! Attempt counters: logins per account and per address, sign-ups and
//! device-code guesses per address, counted before any work, with Redis
//! (shared by every instance) or this process's counter behind one trait.

use std::sync::Arc;

use latchkey_core::coordination::{AttemptCounter, Blocked};

use super::{Events, RequestContext};
use crate::config::Limit;
use crate::metrics::Counter;

/// The attempt counters a login takes: its account's and its address's.
pub struct LoginKeys {
    account: String,
    address: String,
}

impl LoginKeys {
    /// The account's key is its canonical name (every spelling of one
    /// account shares its budget), or the lower-cased text of a name that
    /// cannot be one.
    pub fn new(username: &str, ip: &str) -> Self {
        let account = latchkey_core::username::canonical(username)
            .unwrap_or_else(|_| username.to_lowercase());
        Self {
            account: format!("acct:{account}"),
            address: format!("ip:{}", address_key(ip)),
        }
    }

    /// The same from a device that signed in to the account before: the
    /// device's own budget for the account in place of the account's.
    pub fn on_device(self, device: &latchkey_core::refresh::TokenHash) -> Self {
        let tag: String = device.0[..16].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            account: format!("{}#device:{tag}", self.account),
            address: self.address,
        }
    }
}

/// The part of a client's address its attempts count against (an IPv6
/// address by its /64).
pub fn address_key(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(ip) => crate::throttle::address_key(ip),
        Err(_) => ip.to_owned(),
    }
}

/// Takes and gives back attempts; refusals are counted and audited.
#[derive(Clone)]
pub struct Attempts {
    counter: Arc<dyn AttemptCounter>,
    account: Limit,
    address: Limit,
    events: Events,
}

impl Attempts {
    /// Attempts counted by `counter`, `account` per account, `address` per
    /// address.
    pub fn new(
        counter: Arc<dyn AttemptCounter>,
        account: Limit,
        address: Limit,
        events: Events,
    ) -> Self {
        Self {
            counter,
            account,
            address,
            events,
        }
    }

    /// Takes one attempt under `key` within the per-address limit; `Err`
    /// when it is used up (then counted, and audited once per window). If
    /// the counter fails, the attempt is let through and the failure logged.
    pub async fn take_per_address(
        &self,
        key: &str,
        ctx: &RequestContext,
        detail: &str,
    ) -> Result<(), Blocked> {
        self.take_within(self.address, key, ctx, detail).await
    }

    /// The same within the per-account limit (what a wrong password costs):
    /// the second step's codes count like failed logins.
    pub async fn take_per_account(
        &self,
        key: &str,
        ctx: &RequestContext,
        detail: &str,
    ) -> Result<(), Blocked> {
        self.take_within(self.account, key, ctx, detail).await
    }

    /// The same within `limit`.
    pub async fn take_limited(
        &self,
        limit: Limit,
        key: &str,
        ctx: &RequestContext,
        detail: &str,
    ) -> Result<(), Blocked> {
        self.take_within(limit, key, ctx, detail).await
    }

    async fn take_within(
        &self,
        limit: Limit,
        key: &str,
        ctx: &RequestContext,
        detail: &str,
    ) -> Result<(), Blocked> {
        let taken = self
            .counted(self.counter.take_attempt(key, limit.max, limit.window))
            .await;
        match taken {
            Some(Some(blocked)) => {
                self.throttled(&blocked, None, ctx, detail).await;
                Err(blocked)
            }
            _ => Ok(()),
        }
    }

    /// Starts `key`'s count afresh (what it guarded succeeded).
    pub async fn clear(&self, key: &str) {
        self.counted(self.counter.clear_attempts(key)).await;
    }

    /// Gives back an attempt taken with [`Self::take_per_address`] (what it
    /// was for succeeded, and should not count).
    pub async fn give_back_per_address(&self, key: &str) {
        self.give_back(key).await;
    }

    /// Takes a login attempt of the account and of the client's address
    /// before any password is checked; `Err` when either has used up its
    /// attempts (and nothing is taken). If the counters fail, logins are let
    /// through (and the failure logged) rather than refused.
    pub async fn take_login(&self, keys: &LoginKeys) -> Result<(), Blocked> {
        let account = self
            .counted(self.counter.take_attempt(
                &keys.account,
                self.account.max,
                self.account.window,
            ))
            .await;
        if let Some(Some(wait)) = account {
            return Err(wait);
        }
        let address = self
            .counted(self.counter.take_attempt(
                &keys.address,
                self.address.max,
                self.address.window,
            ))
            .await;
        if let Some(Some(wait)) = address {
            self.give_back(&keys.account).await;
            return Err(wait);
        }
        Ok(())
    }

    /// A refused attempt: counted in the metrics every time, audited only
    /// when its key has just become blocked (once per window), so that a
    /// flood of refused attempts writes nothing to the database.
    pub async fn throttled(
        &self,
        blocked: &Blocked,
        client_id: Option<&str>,
        ctx: &RequestContext,
        detail: &str,
    ) {
        self.events.metrics().inc(Counter::Throttled, &[]);
        if blocked.first {
            self.events
                .audit("throttled", None, None, &ctx.actor(client_id), detail)
                .await;
        }
    }

    /// Gives back both attempts of a login whose password was not checked.
    pub async fn give_back_login(&self, keys: &LoginKeys) {
        self.give_back(&keys.account).await;
        self.give_back(&keys.address).await;
    }

    async fn give_back(&self, key: &str) {
        self.counted(self.counter.give_back_attempt(key)).await;
    }

    /// A successful login: the account starts afresh, and the address gets
    /// its attempt back.
    pub async fn login_succeeded(&self, keys: &LoginKeys) {
        self.counted(self.counter.clear_attempts(&keys.account))
            .await;
        self.give_back(&keys.address).await;
    }

    async fn counted<T>(
        &self,
        call: impl std::future::Future<Output = latchkey_core::store::StoreResult<T>>,
    ) -> Option<T> {
        match call.await {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::error!(error = %e, "attempt counters unavailable");
                None
            }
        }
    }
}
