//! The records Latchkey keeps: users, clients, sessions, refresh tokens,
//! signing keys and audit events. Plain data; the rules live in
//! [`crate::rotation`], the storage traits in [`crate::store`].

use crate::refresh::TokenHash;
use crate::strength::AuthMethod;

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id (`usr_…`), the `sub` of its tokens.
    pub id: String,
    /// Unique login name.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// A disabled user cannot log in or refresh.
    pub disabled: bool,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Their e-mail address, as given (unique without regard to case).
    pub email: Option<String>,
    /// Whether they proved they read it (SPEC §13).
    pub email_verified: bool,
    /// An operator: may sign in to the console (SPEC §15).
    pub admin: bool,
}

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The `client_id` (`lkc_…`).
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Keyed hash of the secret; `None` for a public client.
    pub secret_hash: Option<TokenHash>,
    /// Scopes the client may request for itself (`client_credentials`), and
    /// the most a user's session through it may hold.
    pub scope: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Redirect URIs registered for the authorization code flow.
    pub redirect_uris: Vec<String>,
    /// Trusted to skip the consent page.
    pub first_party: bool,
    /// Disabled by an operator: it cannot authenticate, and its tokens and
    /// sessions are refused.
    pub disabled: bool,
    /// Its own access tokens (`client_credentials`) issued before this
    /// (Unix seconds) are refused: set when its secret is rotated or its
    /// scope changed.
    pub tokens_valid_after: i64,
    /// Where its OpenID Connect back-channel logout tokens are posted when a
    /// session with its tokens ends (SPEC §14).
    pub backchannel_logout_uri: Option<String>,
}

/// An authorization code (SPEC §10), stored by the keyed hash of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    /// Keyed hash of the code.
    pub hash: TokenHash,
    /// The client it was issued to.
    pub client_id: String,
    /// The user who authorized it.
    pub user_id: String,
    /// The redirect URI it was sent to (the token request must repeat it).
    pub redirect_uri: String,
    /// The PKCE `S256` challenge.
    pub code_challenge: String,
    /// The scope granted.
    pub scope: String,
    /// The OpenID Connect `nonce`, if the client sent one.
    pub nonce: Option<String>,
    /// When the user signed in, Unix seconds.
    pub auth_time: i64,
    /// How they signed in.
    pub auth_method: AuthMethod,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// What redeeming an authorization code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// Unused until now; now used, for the session named in the redemption.
    Fresh(AuthorizationCode),
    /// Used before: the session its first redemption started, if any.
    Used {
        /// That session.
        session_id: Option<String>,
    },
    /// No such code.
    Unknown,
}

/// A device authorization (RFC 8628, SPEC §16), stored by the keyed hashes
/// of its device code and of its user code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGrant {
    /// Keyed hash of the device code (the device polls with it).
    pub device_hash: TokenHash,
    /// Keyed hash of the user code (the person types it on `/device`).
    pub user_hash: TokenHash,
    /// The client the device is.
    pub client_id: String,
    /// The scope asked for (and granted, if approved).
    pub scope: String,
    /// When it was asked for, Unix seconds.
    pub created_at: i64,
    /// Its end, Unix seconds.
    pub expires_at: i64,
    /// Seconds the device must wait between polls (grows on `slow_down`).
    pub interval: i64,
    /// The device's last poll, Unix seconds.
    pub last_polled_at: Option<i64>,
    /// Where the person's answer stands.
    pub status: DeviceStatus,
}

/// Where a device authorization stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Nobody has answered yet.
    Pending,
    /// The person allowed it, signed in as `user_id` since `auth_time`.
    Approved {
        /// The user who allowed it.
        user_id: String,
        /// When they signed in.
        auth_time: i64,
        /// How they signed in.
        auth_method: AuthMethod,
    },
    /// The person denied it.
    Denied,
    /// Redeemed for the session `session_id`: never again.
    Redeemed {
        /// The session its redemption started.
        session_id: String,
    },
}

/// A [`DeviceStatus`] as columns: its name, the approving user, their
/// sign-in time, the redeeming session, and the sign-in's method.
pub type DeviceColumns<'a> = (
    &'static str,
    Option<&'a str>,
    Option<i64>,
    Option<&'a str>,
    Option<&'static str>,
);

impl DeviceStatus {
    /// The status as a backend stores it: its name (`pending`, `approved`,
    /// `denied`, `redeemed`), the approving user and their sign-in time,
    /// the session a redemption started, and how the user signed in.
    pub fn columns(&self) -> DeviceColumns<'_> {
        match self {
            Self::Pending => ("pending", None, None, None, None),
            Self::Denied => ("denied", None, None, None, None),
            Self::Approved {
                user_id,
                auth_time,
                auth_method,
            } => (
                "approved",
                Some(user_id),
                Some(*auth_time),
                None,
                Some(auth_method.as_str()),
            ),
            Self::Redeemed { session_id } => ("redeemed", None, None, Some(session_id), None),
        }
    }

    /// The status [`Self::columns`] stored; `None` for columns that no
    /// status gives (a corrupt row).
    pub fn from_columns(
        name: &str,
        user_id: Option<String>,
        auth_time: Option<i64>,
        session_id: Option<String>,
        auth_method: Option<&str>,
    ) -> Option<Self> {
        match (name, user_id, auth_time, session_id) {
            ("pending", ..) => Some(Self::Pending),
            ("denied", ..) => Some(Self::Denied),
            ("approved", Some(user_id), Some(auth_time), _) => Some(Self::Approved {
                user_id,
                auth_time,
                auth_method: AuthMethod::parse(auth_method?)?,
            }),
            ("redeemed", _, _, Some(session_id)) => Some(Self::Redeemed { session_id }),
            _ => None,
        }
    }
}

/// A user's authenticator app (SPEC §12): its secret, sealed like the
/// signing keys; pending until its first code is confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpFactor {
    /// Its id (`fac_…`).
    pub id: String,
    /// Its user.
    pub user_id: String,
    /// The secret, sealed (`seal::seal` under the label `totp:<id>`).
    pub secret: Vec<u8>,
    /// When it was set up, Unix seconds.
    pub created_at: i64,
    /// When its first code confirmed it; until then it asks nothing of
    /// sign-ins.
    pub confirmed_at: Option<i64>,
    /// The last step whose code was accepted: a code of it or an earlier
    /// step is never accepted again.
    pub last_step: i64,
}

/// A user's passkey (SPEC §12): a discoverable WebAuthn credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    /// Its id (`pk_…`).
    pub id: String,
    /// Its user.
    pub user_id: String,
    /// The credential id its authenticator chose.
    pub credential_id: Vec<u8>,
    /// The name its user gave it.
    pub name: String,
    /// The WebAuthn library's record of it (public key, counter, flags), as
    /// JSON: public data only.
    pub credential: String,
    /// The signature counter last seen.
    pub counter: u32,
    /// When it was registered, Unix seconds.
    pub created_at: i64,
    /// When it last signed someone in.
    pub last_used_at: Option<i64>,
}

/// A WebAuthn ceremony waiting for its answer, stored by the SHA-256 of its
/// challenge (which the answer carries back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebauthnCeremony {
    /// SHA-256 of the challenge.
    pub hash: TokenHash,
    /// A registration's user; `None` for a sign-in, whose user the answer
    /// names.
    pub user_id: Option<String>,
    /// The WebAuthn library's state of the ceremony, as JSON.
    pub state: String,
    /// Its end, Unix seconds.
    pub expires_at: i64,
}

/// A password sign-in waiting for its second step (`mfa_token`), stored by
/// the keyed hash of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaChallenge {
    /// Keyed hash of the `mfa_token`.
    pub hash: TokenHash,
    /// The user whose password was right.
    pub user_id: String,
    /// The client the sign-in is for, if any.
    pub client_id: Option<String>,
    /// The scope the sign-in asked for and was allowed.
    pub scope: String,
    /// When the password was checked, Unix seconds.
    pub created_at: i64,
    /// Its end, Unix seconds.
    pub expires_at: i64,
    /// Wrong codes sent with it so far.
    pub failures: i64,
}

/// A session: the family of refresh tokens started by one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Session id (`ses_…`), the `sid` claim.
    pub id: String,
    /// Its user.
    pub user_id: String,
    /// The client it was issued to, if any.
    pub client_id: Option<String>,
    /// Scope granted at login.
    pub scope: String,
    /// When it started, Unix seconds.
    pub created_at: i64,
    /// When its user authenticated (`auth_time`), Unix seconds: its start,
    /// or the earlier sign-in an authorization code or a device grant
    /// carried.
    pub auth_time: i64,
    /// How its user authenticated: its tokens' `amr` and `acr`.
    pub auth_method: AuthMethod,
    /// Absolute end, Unix seconds.
    pub expires_at: i64,
    /// Last refresh, Unix seconds.
    pub last_used_at: i64,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
    /// IP address at login.
    pub ip: String,
    /// User agent at login.
    pub user_agent: String,
    /// The RFC 7638 thumbprint of the DPoP key its refresh tokens are bound
    /// to (a public client's session started with a proof), if any.
    pub dpop_jkt: Option<String>,
}

impl Session {
    /// Whether the session may still be used at `now`: not revoked, not past
    /// its absolute end ([`has_expired`]). The one statement of a session's
    /// liveness; the stores' SQL says the same (`revoked_at IS NULL AND
    /// expires_at >= now`).
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && !has_expired(self.expires_at, now)
    }

    /// [`Self::is_live`], and its user's too: the user enabled and the one
    /// the session belongs to.
    pub fn is_live_for(&self, user: &User, now: i64) -> bool {
        self.is_live(now) && self.user_id == user.id && !user.disabled
    }
}

/// Whether a lifetime that ends at `expires_at` (Unix seconds) is over at
/// `now`. Times are whole seconds, rounded down: a lifetime that began at
/// second `t` (really somewhere in `[t, t + 1)`) and ends at `t + ttl` is
/// over only from second `t + ttl + 1` on, so nothing ends before its
/// configured lifetime has passed (and nothing lasts a whole second longer).
pub fn has_expired(expires_at: i64, now: i64) -> bool {
    expires_at < now
}

/// One refresh token, stored only as its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// Keyed hash of the token.
    pub hash: TokenHash,
    /// Its session.
    pub session_id: String,
    /// The token it replaced.
    pub parent: Option<TokenHash>,
    /// Its scope.
    pub scope: String,
    /// Issue time, Unix seconds.
    pub issued_at: i64,
    /// Idle expiry, Unix seconds.
    pub expires_at: i64,
    /// When it was rotated; a used token is kept to detect reuse.
    pub used_at: Option<i64>,
    /// `jti` of the access token issued beside it.
    pub access_jti: String,
    /// Requesting IP address.
    pub ip: String,
    /// Requesting user agent.
    pub user_agent: String,
}

impl RefreshRecord {
    /// Whether the token may still be presented at `now` with its session
    /// (unused, within its idle lifetime, its session live).
    pub fn is_usable(&self, session: &Session, now: i64) -> bool {
        self.used_at.is_none() && !has_expired(self.expires_at, now) && session.is_live(now)
    }
}

/// A signing key as stored: the private half sealed (or marked plain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// `EdDSA`, `ES256` or `RS256`.
    pub alg: String,
    /// The PKCS#8 private key, as made by [`crate::seal::seal`].
    pub private_blob: Vec<u8>,
    /// The public JWK, as JSON.
    pub public_jwk: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// When it starts signing, Unix seconds; it is published before that.
    pub activates_at: i64,
    /// When it leaves the JWKS: after every token it signed has expired.
    pub retires_at: Option<i64>,
}

/// A security event for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When, Unix seconds.
    pub at: i64,
    /// What, e.g. `login_failed`, `reuse_detected`.
    pub kind: String,
    /// Whose.
    pub user_id: Option<String>,
    /// Which session.
    pub session_id: Option<String>,
    /// Which client.
    pub client_id: Option<String>,
    /// From where.
    pub ip: Option<String>,
    /// With what.
    pub user_agent: Option<String>,
    /// Free-form detail; never a token or a password.
    pub detail: String,
    /// The admin user who acted through the console, if one did.
    pub actor_id: Option<String>,
}

impl AuditEvent {
    /// The `login` event of `session`, by the request that created it.
    pub fn login(session: &Session) -> AuditEvent {
        AuditEvent {
            at: session.created_at,
            kind: "login".into(),
            user_id: Some(session.user_id.clone()),
            session_id: Some(session.id.clone()),
            client_id: session.client_id.clone(),
            ip: Some(session.ip.clone()),
            user_agent: Some(session.user_agent.clone()),
            detail: String::new(),
            actor_id: None,
        }
    }

    /// The event of revoking `session_id` for `reason`, by the request that
    /// `self` records, at the same time.
    pub fn session_revoked(&self, session_id: &str, reason: RevocationReason) -> AuditEvent {
        AuditEvent {
            kind: "session_revoked".into(),
            session_id: Some(session_id.to_owned()),
            detail: reason.as_str().into(),
            ..self.clone()
        }
    }
}

/// How many of one kind of thing happened in one minute (SPEC §15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// The minute: Unix seconds / 60.
    pub minute: i64,
    /// What was counted, e.g. `logins_failed` or `ended:logout`.
    pub series: String,
    /// How many.
    pub n: u64,
}

/// Which audit events to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this user's.
    pub user_id: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only events at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Only events before this time (Unix seconds).
    pub until: Option<i64>,
    /// Only events older than the event with this id (the cursor of a page).
    pub before_id: Option<i64>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// Changes to sessions and users, read from a backend's change log
/// ([`crate::store::SessionStore::session_changes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionChanges {
    /// The newest change read: what to ask after next time.
    pub upto: u64,
    /// Sessions that changed.
    pub sessions: Vec<String>,
    /// Users that changed (each of their sessions with them).
    pub users: Vec<String>,
    /// False when the changes since the asked sequence number could not all
    /// be told (too many, or pruned): forget every cached session.
    pub complete: bool,
}

impl SessionChanges {
    /// Changes read at most per call; past this, `complete` is false.
    pub const MAX: usize = 1024;
}

/// What a garbage collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Sessions deleted, with every refresh token in them.
    pub sessions: u64,
    /// Deleted users whose last session has gone, removed for good.
    pub users: u64,
    /// Sessions found ended by idleness, now marked `idle_expired`.
    pub idle_expired: u64,
    /// Sessions found past their absolute end, now marked `absolute_expired`.
    pub absolute_expired: u64,
}

impl AuditEvent {
    /// The event of a session found ended by expiry, at the moment it ended.
    pub fn session_expired(
        session_id: String,
        user_id: String,
        reason: RevocationReason,
        at: i64,
    ) -> AuditEvent {
        AuditEvent {
            at,
            kind: "session_ended".into(),
            user_id: Some(user_id),
            session_id: Some(session_id),
            client_id: None,
            ip: None,
            user_agent: None,
            detail: reason.as_str().into(),
            actor_id: None,
        }
    }
}

/// Why a session ended (SPEC §14): one of these, stored with it at the
/// moment it ends, told to whoever is entitled to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RevocationReason {
    /// A rotated refresh token was presented again.
    Reuse,
    /// A refresh came from another IP address under the `revoke` policy.
    IpBinding,
    /// The user logged out (or revoked a token, RFC 7009).
    Logout,
    /// The user revoked this session from another one.
    UserRevoked,
    /// The user logged out everywhere.
    LogoutEverywhere,
    /// An operator revoked it.
    Admin,
    /// The user was disabled.
    UserDisabled,
    /// The user was deleted.
    UserDeleted,
    /// A newer login pushed it past the per-user cap.
    SessionCap,
    /// The user's password was changed and their sessions ended with it.
    PasswordChanged,
    /// The user's password was reset (account recovery).
    PasswordReset,
    /// Its refresh token went unused for the idle lifetime.
    IdleExpired,
    /// It reached its absolute lifetime.
    AbsoluteExpired,
    /// The authorization code that started it was presented again.
    CodeReplayed,
    /// The user said a sign-in was not theirs.
    NotMe,
    /// An application ended it (OpenID Connect RP-initiated logout).
    Backchannel,
}

impl RevocationReason {
    /// Every reason.
    pub const ALL: [Self; 16] = [
        Self::Logout,
        Self::LogoutEverywhere,
        Self::UserRevoked,
        Self::Admin,
        Self::Reuse,
        Self::IdleExpired,
        Self::AbsoluteExpired,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::UserDisabled,
        Self::UserDeleted,
        Self::SessionCap,
        Self::IpBinding,
        Self::CodeReplayed,
        Self::NotMe,
        Self::Backchannel,
    ];

    /// Its name in SPEC §14, stored, logged, and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reuse => "reuse_detected",
            Self::IpBinding => "ip_changed",
            Self::Logout => "logout",
            Self::UserRevoked => "revoked",
            Self::LogoutEverywhere => "logout_everywhere",
            Self::Admin => "revoked_by_admin",
            Self::UserDisabled => "user_disabled",
            Self::UserDeleted => "user_deleted",
            Self::SessionCap => "session_cap",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::IdleExpired => "idle_expired",
            Self::AbsoluteExpired => "absolute_expired",
            Self::CodeReplayed => "code_replayed",
            Self::NotMe => "not_me",
            Self::Backchannel => "backchannel",
        }
    }

    /// The reason [`Self::as_str`] names; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}
