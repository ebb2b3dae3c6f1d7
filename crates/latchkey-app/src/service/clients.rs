//! The applications Latchkey serves: registering them, and afterwards
//! changing their scope, rotating their secret, disabling and removing them
//! (the command line and the admin API, through one implementation).

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use latchkey_core::clock::Clock;
use latchkey_core::id::random_id;
use latchkey_core::refresh::RefreshKeys;
use latchkey_core::scope::Scope;
use latchkey_core::store::{Client, RevocationReason, Store};

use super::{Actor, Events, ServiceError, Sessions};

/// The longest client name, in characters.
pub const MAX_CLIENT_NAME_CHARS: usize = 256;

/// What registering a client asks for.
#[derive(Debug, Clone, Copy)]
pub struct NewClient<'a> {
    /// A name for people.
    pub name: &'a str,
    /// The scopes it may get (for itself, and at most for its users).
    pub scope: &'a str,
    /// Redirect URIs for the authorization code flow.
    pub redirect_uris: &'a [String],
    /// Trusted to skip the consent page.
    pub first_party: bool,
    /// Where back-channel logout tokens go (SPEC §14), if anywhere.
    pub backchannel_logout_uri: Option<&'a str>,
}

/// A redirect URI a client may register (RFC 9700 §2.1, RFC 8252): absolute,
/// without a fragment; `https`, `http` only on a loopback address, or a
/// private-use scheme of a native app (`com.example.app:/callback`).
pub fn check_redirect_uri(uri: &str) -> Result<(), ServiceError> {
    let parsed = url::Url::parse(uri).map_err(|_| ServiceError::InvalidRedirectUri)?;
    let loopback = matches!(
        parsed.host(),
        Some(url::Host::Ipv4(ip)) if ip.is_loopback()
    ) || matches!(parsed.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    let allowed = match parsed.scheme() {
        "https" => parsed.host().is_some(),
        "http" => loopback,
        scheme => scheme.contains('.'),
    };
    if !allowed
        || parsed.fragment().is_some()
        || uri.len() > 2048
        || uri.contains(char::is_whitespace)
    {
        return Err(ServiceError::InvalidRedirectUri);
    }
    Ok(())
}

/// The client operations.
#[derive(Clone)]
pub struct Clients {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    events: Events,
    sessions: Sessions,
}

impl Clients {
    /// Clients in `store`; their users' sessions revoked through `sessions`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        events: Events,
        sessions: Sessions,
    ) -> Self {
        Self {
            store,
            clock,
            events,
            sessions,
        }
    }

    /// Registers a client. A confidential client gets a secret, hashed with
    /// `secret_keys`, returned only this once; with `None`, a public client
    /// (no secret).
    pub async fn add(
        &self,
        new: &NewClient<'_>,
        secret_keys: Option<&RefreshKeys>,
        actor: &Actor,
    ) -> Result<(Client, Option<String>), ServiceError> {
        let name = new.name;
        let count = name.chars().count();
        if count == 0 || count > MAX_CLIENT_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(ServiceError::InvalidClientName);
        }
        let scope = Scope::parse(new.scope).map_err(|_| ServiceError::InvalidScope)?;
        for uri in new.redirect_uris {
            check_redirect_uri(uri)?;
        }
        if let Some(uri) = new.backchannel_logout_uri {
            super::check_notification_url(uri)?;
        }
        let rng = SystemRandom::new();
        let (secret, secret_hash) = match secret_keys {
            Some(keys) => {
                let (secret, hash) = keys.new_client_secret(&rng)?;
                (Some(secret), Some(hash))
            }
            None => (None, None),
        };
        let client = Client {
            id: random_id("lkc_", &rng)?,
            name: name.to_owned(),
            secret_hash,
            scope: scope.to_string(),
            created_at: self.clock.now(),
            redirect_uris: new.redirect_uris.to_vec(),
            first_party: new.first_party,
            disabled: false,
            tokens_valid_after: 0,
            backchannel_logout_uri: new.backchannel_logout_uri.map(str::to_owned),
        };
        self.store.insert_client(&client).await?;
        let kind = if secret.is_some() {
            "confidential"
        } else {
            "public"
        };
        let mut who = actor.clone();
        who.client_id = Some(client.id.clone());
        self.events
            .audit("client_added", None, None, &who, kind)
            .await;
        Ok((client, secret))
    }

    /// Every client, by name.
    pub async fn list(&self) -> Result<Vec<Client>, ServiceError> {
        Ok(self.store.list_clients().await?)
    }

    /// The client with this id (never a removed one).
    pub async fn by_id(&self, id: &str) -> Result<Client, ServiceError> {
        self.store
            .client_by_id(id)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    /// Removes a client: it can no longer authenticate, its own access
    /// tokens are refused at once (here and at introspection), and every
    /// session of a user through it is revoked.
    pub async fn remove(&self, id: &str, actor: &Actor) -> Result<(), ServiceError> {
        if !self.store.remove_client(id, self.clock.now()).await? {
            return Err(ServiceError::NotFound);
        }
        self.audit("client_removed", id, actor, "").await;
        self.end_sessions(id, actor).await
    }

    /// Disables (or enables again) a client. Disabling works like removing,
    /// but the client can be enabled again (with no session back).
    pub async fn set_disabled(
        &self,
        id: &str,
        disabled: bool,
        actor: &Actor,
    ) -> Result<Client, ServiceError> {
        let mut client = self.by_id(id).await?;
        if client.disabled == disabled {
            return Ok(client);
        }
        client.disabled = disabled;
        self.write(&client).await?;
        let kind = if disabled {
            "client_disabled"
        } else {
            "client_enabled"
        };
        self.audit(kind, id, actor, "").await;
        if disabled {
            self.end_sessions(id, actor).await?;
        }
        Ok(client)
    }

    /// Gives a confidential client a new secret (returned only this once,
    /// hashed with `secret_keys`): the old one stops working, and so do the
    /// client's own access tokens issued until now.
    pub async fn rotate_secret(
        &self,
        id: &str,
        secret_keys: &RefreshKeys,
        actor: &Actor,
    ) -> Result<(Client, String), ServiceError> {
        let mut client = self.by_id(id).await?;
        if client.secret_hash.is_none() {
            return Err(ServiceError::PublicClient);
        }
        let (secret, hash) = secret_keys.new_client_secret(&SystemRandom::new())?;
        client.secret_hash = Some(hash);
        client.tokens_valid_after = self.clock.now();
        self.write(&client).await?;
        self.audit("client_secret_rotated", id, actor, "").await;
        Ok((client, secret))
    }

    /// Sets the scopes a client may get. Its own access tokens issued until
    /// now are refused from now on (they may hold what it no longer may);
    /// its users' sessions keep the scope they were granted, within the new
    /// one at their next refresh only if narrower (revoke them to be sure).
    pub async fn set_scope(
        &self,
        id: &str,
        scope: &str,
        actor: &Actor,
    ) -> Result<Client, ServiceError> {
        let scope = Scope::parse(scope).map_err(|_| ServiceError::InvalidScope)?;
        let mut client = self.by_id(id).await?;
        let detail = format!("{} -> {scope}", client.scope);
        client.scope = scope.to_string();
        client.tokens_valid_after = self.clock.now();
        self.write(&client).await?;
        self.audit("client_scope_changed", id, actor, &detail).await;
        Ok(client)
    }

    async fn write(&self, client: &Client) -> Result<(), ServiceError> {
        if self.store.update_client(client).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound)
        }
    }

    /// Revokes every session through the client, announcing and auditing
    /// each.
    async fn end_sessions(&self, id: &str, actor: &Actor) -> Result<(), ServiceError> {
        let revoked = self
            .store
            .revoke_client_sessions(id, RevocationReason::Admin, self.clock.now())
            .await?;
        for (sid, user_id) in &revoked {
            self.sessions
                .revoked(
                    std::slice::from_ref(sid),
                    user_id,
                    RevocationReason::Admin,
                    actor,
                )
                .await;
        }
        Ok(())
    }

    async fn audit(&self, kind: &str, client_id: &str, actor: &Actor, detail: &str) {
        let mut who = actor.clone();
        if who.client_id.is_none() {
            who.client_id = Some(client_id.to_owned());
        }
        let detail = if actor.client_id.is_some() {
            // An admin client acts: the event names it, and the detail the
            // client it acted on.
            format!("{client_id} {detail}").trim_end().to_owned()
        } else {
            detail.to_owned()
        };
        self.events.audit(kind, None, None, &who, &detail).await;
    }
}
