//! The storage trait. Each backend (SQLite, PostgreSQL) is a type of its own
//! implementing [`Store`]; the server holds a trait object. The records it
//! keeps are in [`crate::records`], re-exported here.

use async_trait::async_trait;

use crate::account::AccountLink;
use crate::coordination::RevocationFeed;
use crate::outbox::{Attempt, DeliveryRecord, DeliveryStatus, DueDelivery, Webhook};
use crate::refresh::TokenHash;
use crate::rotation::{Policy, RotationRequest};
use crate::session::SessionStart;

pub use crate::device::Poll;
pub use crate::records::{
    Activity, AuditEvent, AuditFilter, AuthorizationCode, Client, Collected, DeviceGrant,
    DeviceStatus, MfaChallenge, PasskeyRecord, Redemption, RefreshRecord, RevocationReason,
    Session, SessionChanges, StoredKey, TotpFactor, User, WebauthnCeremony,
};
pub use crate::rotation::Outcome;
pub use crate::store_error::{StoreError, StoreResult};

/// Everything Latchkey keeps: every storage role at once, so that one
/// conformance suite runs against every backend. A backend implements each
/// role and is then a `Store` of itself. Code that needs one role asks for
/// it (`&dyn UserStore`); `use latchkey_core::store::roles::*` brings every
/// role's methods into scope.
pub trait Store:
    UserStore
    + ClientStore
    + SessionStore
    + KeyStore
    + CodeStore
    + DeviceStore
    + FactorStore
    + PasskeyStore
    + ProofStore
    + AuditStore
    + OutboxStore
    + AccountStore
    + ConsoleStore
{
}

impl<T> Store for T where
    T: UserStore
        + ClientStore
        + SessionStore
        + KeyStore
        + CodeStore
        + DeviceStore
        + FactorStore
        + PasskeyStore
        + ProofStore
        + AuditStore
        + OutboxStore
        + AccountStore
        + ConsoleStore
{
}

/// Every storage role, to bring their methods into scope.
pub mod roles {
    pub use super::{
        AccountStore, AuditStore, ClientStore, CodeStore, ConsoleStore, DeviceStore, FactorStore,
        KeyStore, OutboxStore, PasskeyStore, ProofStore, SessionStore, UserStore,
    };
}

/// Accounts: the people who sign in.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Adds a user; [`StoreError::Conflict`] if the name is taken.
    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    /// The user with this name (never a deleted one).
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>>;
    /// Users whose name may differ from its canonical form
    /// ([`crate::username::may_need_folding`]): `(id, username)`.
    async fn names_that_may_need_folding(&self) -> StoreResult<Vec<(String, String)>>;
    /// Renames a user; false when another user has the name (or the user
    /// is unknown).
    async fn rename_user(&self, user_id: &str, username: &str) -> StoreResult<bool>;
    /// The user with this id (never a deleted one).
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>>;
    /// All users, by name.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// At most `limit` users by id, after the id `after`: one page.
    async fn users_page(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<User>>;
    /// Replaces a password hash; false if there is no such user.
    async fn set_password(&self, user_id: &str, password_hash: &str) -> StoreResult<bool>;
    /// Deletes a user: in one transaction every session of theirs is
    /// revoked (their ids are returned, for the revocation feed) and the
    /// user disappears from every lookup, freeing the name. The row stays,
    /// disabled and renamed, while revoked sessions still point to it;
    /// garbage collection removes it with the last one. Audit events stay.
    /// `None` if there is no such user.
    async fn delete_user(&self, user_id: &str, now: i64) -> StoreResult<Option<Vec<String>>>;
    /// Grants or withdraws the admin role (SPEC §15); false if there is no
    /// such user.
    async fn set_admin(&self, user_id: &str, admin: bool) -> StoreResult<bool>;
    /// Disables or enables a user; disabling revokes all their sessions,
    /// whose ids it returns. `None` if there is no such user.
    async fn set_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        now: i64,
    ) -> StoreResult<Option<Vec<String>>>;
}

/// Clients: the applications Latchkey serves.
#[async_trait]
pub trait ClientStore: Send + Sync + 'static {
    /// Adds a client.
    async fn insert_client(&self, client: &Client) -> StoreResult<()>;
    /// The client with this id.
    async fn client_by_id(&self, id: &str) -> StoreResult<Option<Client>>;
    /// All clients, by name.
    async fn list_clients(&self) -> StoreResult<Vec<Client>>;
    /// Writes a client's scope, secret hash, `disabled` and
    /// `tokens_valid_after`; false when it is unknown (or removed).
    async fn update_client(&self, client: &Client) -> StoreResult<bool>;
    /// Removes a client: it is never found again (its row stays for the
    /// sessions and events that name it). False when it was unknown.
    async fn remove_client(&self, id: &str, now: i64) -> StoreResult<bool>;
}

/// Sessions and their refresh tokens: creation under the per-user cap,
/// rotation and reuse detection (atomic, [`SessionStore::rotate`]), revocation,
/// the revocation feed, garbage collection.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores `start` (a new session, its first refresh token and its
    /// `login` event, as [`crate::session::start`] made it), then reads the
    /// user's other live sessions through the same client (none for
    /// first-party sessions; the cap is per user and client, so that one
    /// application never evicts another's) newest first (in the order of creation)
    /// and revokes those [`crate::session::evictions`] chooses, each with its
    /// event: all in one transaction. The user is read under a lock
    /// that disabling the user also takes, so a session is never created for
    /// a user disabled meanwhile. Returns the revoked sessions' ids, or
    /// `None`, having written nothing, when the user is unknown or disabled.
    /// "Oldest" is the order of creation, even within one second.
    async fn create_session(
        &self,
        start: &SessionStart,
        max_sessions: u32,
    ) -> StoreResult<Option<Vec<String>>>;
    /// A session and its user.
    async fn session_with_user(&self, id: &str) -> StoreResult<Option<(Session, User)>>;
    /// Revokes one session; false if it was unknown or already revoked.
    async fn revoke_session(
        &self,
        id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<bool>;
    /// The user's sessions that can still be refreshed, newest first.
    async fn live_sessions(&self, user_id: &str, now: i64) -> StoreResult<Vec<Session>>;
    /// The user's sessions that ended (with a reason) at or after `since`,
    /// the most recently ended first, at most `limit`.
    async fn ended_sessions(
        &self,
        user_id: &str,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<Session>>;
    /// Revokes one session if it belongs to `user_id`; false otherwise.
    async fn revoke_own_session(
        &self,
        user_id: &str,
        session_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<bool>;
    /// Revokes every live session of a user; returns their ids.
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<Vec<String>>;
    /// Revokes every live session through a client; returns each one's id
    /// and user.
    async fn revoke_client_sessions(
        &self,
        client_id: &str,
        reason: RevocationReason,
        now: i64,
    ) -> StoreResult<Vec<(String, String)>>;
    /// Sessions revoked at or after `since`: their ids and revocation
    /// times, oldest first (the revocation feed).
    async fn revoked_since(&self, since: i64) -> StoreResult<Vec<(String, i64)>>;
    /// The changes to sessions and users committed after sequence number
    /// `after` (revocations, ends, users changed or deleted), for an
    /// instance that caches sessions without a revocation feed; at most
    /// [`SessionChanges::MAX`] of them. `None` when the backend keeps no
    /// such log (its instances follow a feed instead).
    async fn session_changes(&self, _after: u64) -> StoreResult<Option<SessionChanges>> {
        Ok(None)
    }
    /// A refresh token and its session.
    async fn refresh_token(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshRecord, Session)>>;
    /// Applies [`crate::rotation::decide`] to the presented token atomically.
    /// A rotation records its `refresh` audit event in the same transaction.
    async fn rotate(&self, policy: &Policy, req: &RotationRequest) -> StoreResult<Outcome>;
    /// First marks the sessions that ended by expiry and are not marked yet
    /// (SPEC §14), each with its `session_ended` event, at the moment it
    /// ended: `idle_expired` when its newest refresh token expired unused
    /// before the session's absolute end (at that token's expiry), else
    /// `absolute_expired` (at the absolute end). Only sessions last used
    /// before `idle_before` are examined for idleness (the caller passes
    /// now less the idle lifetime: a session's last use is its newest
    /// token's issue), so a collection reads the idle candidates, not every
    /// live session. Then deletes, with their tokens, the sessions that
    /// ended at or before `ended_before` (kept until then so that their end
    /// reason can be told).
    async fn collect_garbage(
        &self,
        now: i64,
        revoked_before: i64,
        idle_before: i64,
    ) -> StoreResult<Collected>;
    /// The database's own feed of revoked sessions, when it can tell of
    /// them as they commit, whoever made them (another instance, the
    /// command line, or SQL by hand). `None` by default.
    fn revocation_feed(&self) -> Option<std::sync::Arc<dyn RevocationFeed>> {
        None
    }
}

/// Signing keys and the server's own secrets (the refresh-token key).
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Every signing key, oldest first.
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>>;
    /// Adds a signing key; when `retire_others_at` is given, every key
    /// without a retirement time that starts signing no later than the new
    /// one gets that retirement time, in the same transaction.
    async fn add_signing_key(
        &self,
        key: &StoredKey,
        retire_others_at: Option<i64>,
    ) -> StoreResult<()>;
    /// The secret stored under `name`, storing `candidate` first if there is
    /// none (so concurrent first starts agree on one value).
    async fn secret_or_insert(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>>;
    /// Replaces a signing key's private blob (to seal a plain one); false if
    /// there is no such key.
    async fn replace_key_blob(&self, kid: &str, private_blob: &[u8]) -> StoreResult<bool>;
    /// Replaces the secret stored under `name` (to seal a plain one); false
    /// if there is none.
    async fn replace_secret(&self, name: &str, value: &[u8]) -> StoreResult<bool>;
}

/// Authorization codes and the consents users gave (SPEC §10).
#[async_trait]
pub trait CodeStore: Send + Sync + 'static {
    /// Stores a new authorization code.
    async fn insert_code(&self, code: &AuthorizationCode) -> StoreResult<()>;
    /// Marks a code used, atomically, recording the session its redemption
    /// starts: of any number of redemptions at once, one finds it
    /// [`Redemption::Fresh`]; the others find it used, and which session
    /// the first one started.
    async fn redeem_code(
        &self,
        hash: &TokenHash,
        session_id: &str,
        now: i64,
    ) -> StoreResult<Redemption>;
    /// The scope `user_id` has consented to for `client_id`, if any.
    async fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<String>>;
    /// Records consent to `scope` (replacing what was there: the caller
    /// passes the union).
    async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> StoreResult<()>;
}

/// Device authorizations (RFC 8628, SPEC §16).
#[async_trait]
pub trait DeviceStore: Send + Sync + 'static {
    /// Stores a new device authorization; [`StoreError::Conflict`] if its
    /// user code is another's (the caller draws a new one).
    async fn insert_device_grant(&self, grant: &DeviceGrant) -> StoreResult<()>;
    /// The device authorization of a user code, if any.
    async fn device_grant_by_user_code(
        &self,
        user_hash: &TokenHash,
    ) -> StoreResult<Option<DeviceGrant>>;
    /// Records the person's answer (`Approved` or `Denied`) if the grant is
    /// still answerable at `now` (`device::answerable`); false otherwise.
    /// Of any number of answers at once, one is recorded.
    async fn answer_device_grant(
        &self,
        user_hash: &TokenHash,
        answer: &DeviceStatus,
        now: i64,
    ) -> StoreResult<bool>;
    /// A poll by `client_id`, atomically: reads the grant, decides with `device::poll`
    /// (which names `session_id` as the session an approved grant is
    /// redeemed for) and stores what follows. Of any number of polls of an
    /// approved grant at once, one gets [`Poll::Issue`]. `None` for an
    /// unknown device code.
    async fn poll_device_grant(
        &self,
        device_hash: &TokenHash,
        client_id: &str,
        now: i64,
        session_id: &str,
    ) -> StoreResult<Option<Poll>>;
    /// Deletes the device authorizations that ended before `before`;
    /// returns how many.
    async fn prune_device_grants(&self, before: i64) -> StoreResult<u64>;
}

/// Second factors (SPEC §12): authenticator apps, their recovery codes,
/// and password sign-ins waiting for their second step.
#[async_trait]
pub trait FactorStore: Send + Sync + 'static {
    /// Stores a new, pending authenticator app for its user, replacing a
    /// pending one; false (and nothing changed) if the user has a confirmed
    /// one.
    async fn put_pending_totp(&self, factor: &TotpFactor) -> StoreResult<bool>;
    /// The user's authenticator app, pending or confirmed.
    async fn totp_of(&self, user_id: &str) -> StoreResult<Option<TotpFactor>>;
    /// Confirms the pending app `factor_id` with the code of `step`, and
    /// stores its recovery codes (replacing any): false if it is not that
    /// user's pending app any more. Of confirmations at once, one wins.
    async fn confirm_totp(
        &self,
        user_id: &str,
        factor_id: &str,
        step: i64,
        recovery_codes: &[TokenHash],
        now: i64,
    ) -> StoreResult<bool>;
    /// Accepts a code of `step` for the user's confirmed app if no code of
    /// this step or a later one was accepted before: of the same code sent
    /// any number of times at once, one is accepted.
    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool>;
    /// Spends one of the user's unused recovery codes; false if it is not
    /// one (or was used). Of the same code sent at once, one is spent.
    async fn use_recovery_code(
        &self,
        user_id: &str,
        hash: &TokenHash,
        now: i64,
    ) -> StoreResult<bool>;
    /// The user's unused recovery codes, counted.
    async fn recovery_codes_left(&self, user_id: &str) -> StoreResult<u32>;
    /// Removes the user's app (pending or confirmed) and its recovery codes;
    /// false if there was none.
    async fn remove_totp(&self, user_id: &str) -> StoreResult<bool>;
    /// Stores a sign-in waiting for its second step.
    async fn insert_mfa_challenge(&self, challenge: &MfaChallenge) -> StoreResult<()>;
    /// The sign-in waiting under this hash, if any and not ended at `now`.
    async fn mfa_challenge(&self, hash: &TokenHash, now: i64) -> StoreResult<Option<MfaChallenge>>;
    /// Counts a wrong code against it, and deletes it at `max_failures`;
    /// false once it is gone. Wrong codes at once are all counted.
    async fn fail_mfa_challenge(&self, hash: &TokenHash, max_failures: i64) -> StoreResult<bool>;
    /// Spends it (its second step succeeded): the challenge, if it was still
    /// there and not ended at `now`. Of spends at once, one gets it.
    async fn spend_mfa_challenge(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> StoreResult<Option<MfaChallenge>>;
    /// Deletes the sign-ins waiting for a second step that ended before
    /// `before`; returns how many.
    async fn prune_mfa_challenges(&self, before: i64) -> StoreResult<u64>;
}

/// Passkeys (SPEC §12): users' WebAuthn credentials, and the ceremonies
/// waiting for their answer, shared by every instance.
#[async_trait]
pub trait PasskeyStore: Send + Sync + 'static {
    /// Stores a new passkey, unless its user has `max_per_user` already or
    /// its credential id is registered (to anyone): false then, nothing
    /// changed. Of registrations at once, no more than the cap are kept.
    async fn insert_passkey(&self, passkey: &PasskeyRecord, max_per_user: u32)
    -> StoreResult<bool>;
    /// The user's passkeys, oldest first.
    async fn passkeys_of(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>>;
    /// The passkey with this credential id, whoever's.
    async fn passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> StoreResult<Option<PasskeyRecord>>;
    /// Records a sign-in with passkey `id`: its new record and signature
    /// counter, and `now` as its last use, only if the counter moved on
    /// from the stored one (or both are zero: an authenticator that keeps
    /// none). False, nothing changed, otherwise: of two uses with the same
    /// counter at once, one is recorded.
    async fn record_passkey_use(
        &self,
        id: &str,
        credential: &str,
        counter: u32,
        now: i64,
    ) -> StoreResult<bool>;
    /// Removes the user's passkey `id`; false if they have none such.
    async fn delete_passkey(&self, user_id: &str, id: &str) -> StoreResult<bool>;
    /// Stores a ceremony waiting for its answer, unless `max_waiting`
    /// unexpired ones are waiting already: false then.
    async fn insert_ceremony(
        &self,
        ceremony: &WebauthnCeremony,
        max_waiting: u64,
        now: i64,
    ) -> StoreResult<bool>;
    /// Takes the ceremony of this challenge hash: it is gone afterwards,
    /// whatever the answer. `None` if there is none, or it ended before
    /// `now`. Of takes at once, one gets it.
    async fn take_ceremony(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> StoreResult<Option<WebauthnCeremony>>;
    /// Deletes the ceremonies that ended before `before`; how many.
    async fn prune_ceremonies(&self, before: i64) -> StoreResult<u64>;
}

/// Single-use proofs seen (DPoP `jti`s), shared by every instance.
#[async_trait]
pub trait ProofStore: Send + Sync + 'static {
    /// Records a DPoP proof (`id`: its key's thumbprint and its `jti`) until
    /// `expires_at`; false if it was recorded before (a replay). Of any
    /// number of the same proof at once, one gets true.
    async fn record_proof(&self, id: &str, expires_at: i64) -> StoreResult<bool>;
}

/// The audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends to the audit trail.
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Deletes audit events from before `before` (the retention period),
    /// in small batches so that other writers get in between; returns how
    /// many went.
    async fn prune_audit(&self, before: i64) -> StoreResult<u64>;
    /// Reads the audit trail, newest first.
    async fn audit_events(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEvent>> {
        Ok(self
            .audit_page(filter)
            .await?
            .into_iter()
            .map(|(_, event)| event)
            .collect())
    }
    /// The same, each with its id (newest first), which pages further with
    /// [`AuditFilter::before_id`].
    async fn audit_page(&self, filter: &AuditFilter) -> StoreResult<Vec<(i64, AuditEvent)>>;
}

/// The outbox (SPEC §14): webhooks, and the deliveries of the events that
/// the database writes in the transactions of the changes they report.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Adds a webhook unless `max` exist already (false then).
    async fn insert_webhook(&self, webhook: &Webhook, max: u32) -> StoreResult<bool>;
    /// Every webhook, oldest first.
    async fn webhooks(&self) -> StoreResult<Vec<Webhook>>;
    /// One webhook.
    async fn webhook(&self, id: &str) -> StoreResult<Option<Webhook>>;
    /// Removes a webhook and its deliveries; false if unknown.
    async fn delete_webhook(&self, id: &str) -> StoreResult<bool>;
    /// A webhook's deliveries, newest first, at most `limit`, before the
    /// delivery id `before` when given.
    async fn deliveries(
        &self,
        webhook_id: &str,
        status: Option<DeliveryStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>>;
    /// Fans out at most `limit` events not yet dispatched, oldest first, in
    /// one transaction: a delivery for each webhook that wants the event's
    /// type and, for `session.ended`, one for the back-channel logout URI
    /// of the session's client, and with `mail`, one to `data.email` for
    /// the [`crate::account::MAILED_EVENTS`]. Returns how many events it took
    /// (another instance's are skipped, not waited for).
    async fn dispatch_events(&self, now: i64, limit: u32, mail: bool) -> StoreResult<u32>;
    /// Claims at most `limit` deliveries due at `now`, oldest due first:
    /// each is leased (not due again) until `now + lease` and counts one
    /// more attempt. A delivery is claimed by one caller at a time.
    async fn claim_deliveries(
        &self,
        now: i64,
        lease: i64,
        limit: u32,
    ) -> StoreResult<Vec<DueDelivery>>;
    /// Records the outcome of an attempt at `now`.
    async fn finish_delivery(&self, id: i64, now: i64, attempt: &Attempt) -> StoreResult<()>;
    /// Deliveries still to be tried (pending or failed and not given up).
    async fn deliveries_waiting(&self) -> StoreResult<u64>;
    /// Deletes events dispatched before `before` whose deliveries are all
    /// delivered or given up, with those deliveries; returns how many
    /// events.
    async fn prune_outbox(&self, before: i64) -> StoreResult<u64>;
}

/// What the operator's console reads (SPEC §15): activity counted per
/// minute (each instance adds what it counted, so every instance shows the
/// same), the numbers of users and live sessions, and users found by the
/// start of their name or address.
#[async_trait]
pub trait ConsoleStore: Send + Sync + 'static {
    /// Adds `counts` (series name, how many) to `minute` (Unix seconds / 60).
    async fn add_activity(&self, minute: i64, counts: &[(&str, u64)]) -> StoreResult<()>;
    /// Every count from `since` (a minute) on, oldest first.
    async fn activity(&self, since: i64) -> StoreResult<Vec<Activity>>;
    /// Deletes the counts of minutes before `before`; returns how many went.
    async fn prune_activity(&self, before: i64) -> StoreResult<u64>;
    /// Users not deleted.
    async fn count_users(&self) -> StoreResult<u64>;
    /// Sessions neither ended nor past their absolute end at `now`.
    async fn count_live_sessions(&self, now: i64) -> StoreResult<u64>;
    /// Users not deleted whose name or address (lower-cased) starts with
    /// `prefix`, by name, after the name `after`, at most `limit`.
    async fn search_users(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<User>>;
}

/// What recovering an account needs (SPEC §13): addresses, the links mailed
/// to them (single use, stored hashed, each written with its event in one
/// transaction), and the devices users signed in from.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// The user whose address has this key ([`crate::account::email_key`]).
    async fn user_by_email(&self, email_key: &str) -> StoreResult<Option<User>>;
    /// Sets or clears a user's address, unverified: the user's verification
    /// links die with the old one, and an old verified address is told
    /// (a `mail.email_changed` event). [`StoreError::Conflict`] if another
    /// user has it; false if there is no such user.
    async fn set_email(&self, user_id: &str, email: Option<&str>) -> StoreResult<bool>;
    /// Stores a link with its event (`link.purpose`'s type, `event_data` as
    /// its JSON data), replacing the user's other links of that purpose (the
    /// newest wins). False, nothing stored, if the user is gone (or, for a
    /// verification link, has another address by now).
    async fn insert_link(&self, link: &AccountLink, event_data: &str) -> StoreResult<bool>;
    /// The link with this hash, if it is there and alive at `now`.
    async fn link(&self, hash: &TokenHash, now: i64) -> StoreResult<Option<AccountLink>>;
    /// Spends a verification link: the user's address is verified if it is
    /// still the one the link was made for. The user's id, or `None` if the
    /// link was not there (used, ended, voided). Of spends at once, one wins.
    async fn verify_email(&self, hash: &TokenHash, now: i64) -> StoreResult<Option<String>>;
    /// Spends a reset link, sets the password and revokes every session of
    /// the user (`password_reset`), in one transaction: the user's id and the
    /// revoked sessions, or `None` if the link was not there. Of spends at
    /// once, one wins.
    async fn reset_password(
        &self,
        hash: &TokenHash,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<Option<(String, Vec<String>)>>;
    /// Sets a user's password and revokes their other sessions
    /// (`password_changed`), keeping `keep`, in one transaction: the revoked
    /// sessions, or `None` if there is no such user.
    async fn change_password(
        &self,
        user_id: &str,
        password_hash: &str,
        keep: Option<&str>,
        now: i64,
    ) -> StoreResult<Option<Vec<String>>>;
    /// Spends a not-me link and revokes its session (`not_me`): the user and
    /// session ids and whether the session was live until now, or `None` if
    /// the link was not there.
    async fn not_me(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> StoreResult<Option<(String, String, bool)>>;
    /// Whether the user named `username` signed in successfully from
    /// `device` at or after `since`.
    async fn known_device(
        &self,
        username: &str,
        device: &TokenHash,
        since: i64,
    ) -> StoreResult<bool>;
    /// Deletes links that ended before `now` and devices not seen since
    /// `devices_before`; how many rows went.
    async fn prune_accounts(&self, now: i64, devices_before: i64) -> StoreResult<u64>;
}
