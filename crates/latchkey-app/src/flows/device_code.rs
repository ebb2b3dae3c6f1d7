//! The device authorization grant (RFC 8628, SPEC §16): a device without a
//! browser asks for a pair of codes (`POST /oauth/device_authorization`),
//! shows the user code, and polls the token endpoint with the device code;
//! the person types the user code on `/device`, signs in and allows or
//! denies. The rules (codes, the poll's answer) are `latchkey_core::device`;
//! the store applies a poll atomically (`DeviceStore::poll_device_grant`),
//! so an approved grant is redeemed once however many polls arrive at once.

use std::sync::Arc;

use async_trait::async_trait;
use latchkey_core::device::{self, Poll};
use latchkey_core::id::random_id;
use latchkey_core::scope::Scope;
use latchkey_core::store::{
    Client, ClientStore, DeviceGrant, DeviceStatus, DeviceStore, Session, StoreError, User,
    UserStore,
};

use super::{Grant, TokenRequest};
use crate::service::{
    Attempts, Issued, Opening, Refusal, RequestContext, TokenIssuer, address_key,
};

pub use latchkey_core::device::{format_user_code, normalise_user_code};

/// The `grant_type` of a device's polls.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How long a pair of codes lives, in seconds.
pub const DEVICE_CODE_TTL: i64 = 600;

/// Seconds a device waits between polls, at first.
pub const POLL_INTERVAL: i64 = 5;

/// Times a new user code is drawn again when it is taken.
const USER_CODE_DRAWS: usize = 4;

/// What `POST /oauth/device_authorization` answers (RFC 8628 §3.2).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceAuthorization {
    /// What the device polls with.
    pub device_code: String,
    /// What the person types, `XXXX-XXXX`.
    pub user_code: String,
    /// Where the person goes: `LATCHKEY_ISSUER/device`.
    pub verification_uri: String,
    /// The same, with the user code filled in.
    pub verification_uri_complete: String,
    /// Seconds the codes live.
    pub expires_in: i64,
    /// Seconds between polls.
    pub interval: i64,
}

/// A pending device authorization a person found by its user code.
#[derive(Debug, Clone)]
pub struct DeviceRequest {
    /// The user code, canonical (undashed).
    pub user_code: String,
    /// The client the device is.
    pub client: Client,
    /// The scope it asks for.
    pub scope: Scope,
}

/// The device side and the person's side of the flow (the token endpoint's
/// side is [`DeviceCodeGrant`]).
pub struct DeviceFlow {
    issuer: Arc<TokenIssuer>,
    devices: Arc<dyn DeviceStore>,
    clients: Arc<dyn ClientStore>,
    attempts: Attempts,
}

impl DeviceFlow {
    /// Device authorizations kept in `devices`, their clients read from
    /// `clients`, guesses of user codes counted by `attempts`.
    pub fn new(
        issuer: Arc<TokenIssuer>,
        devices: Arc<dyn DeviceStore>,
        clients: Arc<dyn ClientStore>,
        attempts: Attempts,
    ) -> Self {
        Self {
            issuer,
            devices,
            clients,
            attempts,
        }
    }

    /// A new pair of codes for `client` (authenticated, if confidential),
    /// for `scope` within what the client may have. Each counts against the
    /// address's attempts (`429` past them), so that one address cannot
    /// fill the table faster than its rows expire.
    pub async fn start(
        &self,
        client: &Client,
        scope: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<DeviceAuthorization, Refusal> {
        let issuer = &self.issuer;
        let scope = issuer.user_scope(scope, Some(client))?;
        let key = format!("device-start:{}", address_key(&ctx.ip));
        self.attempts
            .take_per_address(&key, ctx, "device authorization limit reached")
            .await?;
        let keys = issuer.refresh_keys();
        let now = issuer.now();
        let (device_code, device_hash) = keys.new_device_code(issuer.rng())?;
        for _ in 0..USER_CODE_DRAWS {
            let user_code = device::new_user_code(issuer.rng())?;
            let grant = DeviceGrant {
                device_hash,
                user_hash: keys.user_code_hash(&user_code),
                client_id: client.id.clone(),
                scope: scope.to_string(),
                created_at: now,
                expires_at: now + DEVICE_CODE_TTL,
                interval: POLL_INTERVAL,
                last_polled_at: None,
                status: DeviceStatus::Pending,
            };
            match self.devices.insert_device_grant(&grant).await {
                Ok(()) => {
                    let base = format!("{}/device", issuer.config().issuer);
                    let shown = format_user_code(&user_code);
                    return Ok(DeviceAuthorization {
                        device_code,
                        verification_uri_complete: format!("{base}?user_code={shown}"),
                        verification_uri: base,
                        user_code: shown,
                        expires_in: DEVICE_CODE_TTL,
                        interval: POLL_INTERVAL,
                    });
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Refusal::internal("no free user code was drawn"))
    }

    /// The pending request a person's typed `user_code` names, if any. Every
    /// look-up counts against the address's attempts before the store is
    /// asked (`429` past them), and a look-up that finds a request is given
    /// back: guessing codes is throttled, typing one's own is not.
    pub async fn find(
        &self,
        typed: &str,
        ctx: &RequestContext,
    ) -> Result<Option<DeviceRequest>, Refusal> {
        let key = format!("device:{}", address_key(&ctx.ip));
        self.attempts
            .take_per_address(&key, ctx, "user-code limit reached")
            .await?;
        let Some(user_code) = normalise_user_code(typed) else {
            return Ok(None);
        };
        let hash = self.issuer.refresh_keys().user_code_hash(&user_code);
        let Some(grant) = self.devices.device_grant_by_user_code(&hash).await? else {
            return Ok(None);
        };
        if !device::answerable(&grant, self.issuer.now()) {
            return Ok(None);
        }
        let Some(client) = self
            .clients
            .client_by_id(&grant.client_id)
            .await?
            .filter(|c| !c.disabled)
        else {
            return Ok(None);
        };
        let Ok(scope) = Scope::parse(&grant.scope) else {
            return Ok(None);
        };
        self.attempts.give_back_per_address(&key).await;
        Ok(Some(DeviceRequest {
            user_code,
            client,
            scope,
        }))
    }

    /// Records `user`'s answer to `request`, given in the browser sign-in
    /// `signed_in` (whose strength the device's session inherits): false if
    /// it was answered, or ended, meanwhile.
    pub async fn answer(
        &self,
        request: &DeviceRequest,
        user: &User,
        signed_in: &Session,
        allow: bool,
        ctx: &RequestContext,
    ) -> Result<bool, Refusal> {
        let answer = if allow {
            DeviceStatus::Approved {
                user_id: user.id.clone(),
                auth_time: signed_in.auth_time,
                auth_method: signed_in.auth_method,
            }
        } else {
            DeviceStatus::Denied
        };
        let hash = self
            .issuer
            .refresh_keys()
            .user_code_hash(&request.user_code);
        let recorded = self
            .devices
            .answer_device_grant(&hash, &answer, self.issuer.now())
            .await?;
        if recorded {
            let kind = if allow {
                "device_allowed"
            } else {
                "device_denied"
            };
            self.issuer
                .audit(
                    kind,
                    Some(&user.id),
                    None,
                    Some(&request.client.id),
                    ctx,
                    &request.scope.to_string(),
                )
                .await;
        }
        Ok(recorded)
    }
}

/// `grant_type=urn:ietf:params:oauth:grant-type:device_code`: a device's
/// poll.
pub struct DeviceCodeGrant {
    issuer: Arc<TokenIssuer>,
    devices: Arc<dyn DeviceStore>,
    users: Arc<dyn UserStore>,
}

impl DeviceCodeGrant {
    /// Polls answered from `devices`; the approving user read from `users`.
    pub fn new(
        issuer: Arc<TokenIssuer>,
        devices: Arc<dyn DeviceStore>,
        users: Arc<dyn UserStore>,
    ) -> Self {
        Self {
            issuer,
            devices,
            users,
        }
    }
}

#[async_trait]
impl Grant for DeviceCodeGrant {
    fn grant_type(&self) -> &'static str {
        DEVICE_CODE_GRANT
    }

    async fn grant(&self, request: &TokenRequest<'_>) -> Result<Issued, Refusal> {
        const REFUSED: &str = "the device code is invalid or was used";
        let Some(client) = request.client else {
            return Err(Refusal::invalid_client(
                "the device code grant needs the client's client_id (and its authentication, if confidential)",
            ));
        };
        let code = request.params.require("device_code")?;
        let issuer = &self.issuer;
        let hash = issuer.refresh_keys().code_hash(code);
        let session_id = random_id("ses_", issuer.rng())?;
        let polled = self
            .devices
            .poll_device_grant(&hash, &client.id, issuer.now(), &session_id)
            .await?;
        let (user_id, auth_time, auth_method, scope) = match polled {
            None | Some(Poll::Redeemed) | Some(Poll::OtherClient) => {
                return Err(Refusal::invalid_grant(REFUSED));
            }
            Some(Poll::Pending) => return Err(Refusal::AuthorizationPending),
            Some(Poll::SlowDown { interval }) => return Err(Refusal::SlowDown { interval }),
            Some(Poll::Denied) => return Err(Refusal::AccessDenied),
            Some(Poll::Expired) => return Err(Refusal::ExpiredToken),
            Some(Poll::Issue {
                user_id,
                auth_time,
                auth_method,
                scope,
            }) => (user_id, auth_time, auth_method, scope),
        };
        // The grant is redeemed now, whatever follows: a user disabled
        // meanwhile ends it.
        let user = self.users.user_by_id(&user_id).await?;
        let Some(user) = user.filter(|u| !u.disabled) else {
            return Err(Refusal::invalid_grant(REFUSED));
        };
        let scope = Scope::parse(&scope).map_err(|_| Refusal::invalid_grant(REFUSED))?;
        let opening = Opening {
            session_id,
            auth_time,
            auth_method,
        };
        issuer
            .open_session(
                opening,
                &user,
                Some(&client.id),
                &scope,
                request.ctx,
                "device_code",
            )
            .await?
            .ok_or_else(|| Refusal::invalid_grant(REFUSED))
    }
}
