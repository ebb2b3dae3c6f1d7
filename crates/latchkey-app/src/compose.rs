//! The composition root: the one place that decides which clock runs (the
//! system's, or a `ManualClock` in tests), whether Redis is configured (into
//! an attempt counter and a fan-out), which grants the token endpoint
//! offers, and which storage role each flow gets. [`App::build`] composes
//! everything for `serve`; [`Services::build`], which it starts with, is
//! what every command of the command line runs on (it loads no signing
//! keys, so `keys seal` can run before a server could start).

use std::sync::Arc;

use latchkey_core::clock::Clock;
use latchkey_core::coordination::{
    AttemptCounter, Coordinator, DatabaseOnly, RevocationFanout, RevocationFeed,
};
use latchkey_core::jwt;
use latchkey_core::store::Store;

use crate::activity::ActivityLog;
use crate::config::Config;
use crate::flows::{
    AccessTokens, AdminSessions, AuthenticatorApps, AuthorizationCodeGrant, Authorizations,
    ClientCredentialsGrant, DeviceCodeGrant, DeviceFlow, GrantRegistry, Introspection, Login,
    Passkeys, Recovery, Refresh, SignUp, TokenRevocation,
};
use crate::keyring::{KeyError, load_keyring, load_refresh_keys};
use crate::metrics::Metrics;
use crate::revocation::RevocationCache;
use crate::service::{
    Attempts, ClientAuthentication, Clients, DpopProofs, Events, IssuerParts, Keys, Links,
    LocalFanout, PasswordService, Sessions, TokenIssuer, Users, Webhooks,
};
use crate::throttle::Throttle;

/// The services every command shares: accounts, clients, keys, revoking
/// sessions, events, and the password hashing service.
pub struct Services {
    /// The configuration.
    pub config: Arc<Config>,
    /// The store, every role.
    pub store: Arc<dyn Store>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The events sink.
    pub events: Events,
    /// Revoking sessions, announced to every instance.
    pub sessions: Sessions,
    /// The account operations.
    pub users: Users,
    /// The client operations.
    pub clients: Clients,
    /// The key operations.
    pub keys: Keys,
    /// The webhook operations.
    pub webhooks: Webhooks,
    /// Argon2id on a bounded pool.
    pub passwords: Arc<PasswordService>,
    /// Attempt counters (Redis's, or this process's).
    pub attempts: Attempts,
    /// Revocations announced to this instance.
    pub revocations: Arc<RevocationCache>,
    /// Where revocations are learnt as they happen: Redis when configured,
    /// else the database when it can tell (PostgreSQL).
    pub feed: Option<Arc<dyn RevocationFeed>>,
}

impl Services {
    /// Composes the shared services.
    pub fn build(
        config: Config,
        store: Arc<dyn Store>,
        coordinator: Option<Arc<dyn Coordinator>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let config = Arc::new(config);
        let feed = match &coordinator {
            Some(redis) => Some(redis.clone() as Arc<dyn RevocationFeed>),
            None => store.revocation_feed(),
        };
        // The one place where Redis or its absence is decided.
        let (counter, remote): (Arc<dyn AttemptCounter>, Arc<dyn RevocationFanout>) =
            match &coordinator {
                Some(redis) => (redis.clone(), redis.clone()),
                None => (
                    Arc::new(Throttle::new(clock.clone())),
                    Arc::new(DatabaseOnly),
                ),
            };
        let metrics = Arc::new(Metrics::default());
        let revocations = Arc::new(RevocationCache::default());
        let events = Events::new(store.clone(), clock.clone(), metrics.clone());
        let fanout = Arc::new(LocalFanout::new(
            revocations.clone(),
            feed.is_some(),
            remote,
            clock.clone(),
        ));
        let deny_ttl = config.access_ttl + jwt::LEEWAY_SECS;
        let sessions = Sessions::new(
            store.clone(),
            clock.clone(),
            fanout,
            events.clone(),
            deny_ttl,
        );
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let passwords = Arc::new(PasswordService::new(cores));
        let links = Links::new(store.clone(), config.issuer.clone(), clock.clone());
        let users = Users::new(
            store.clone(),
            clock.clone(),
            passwords.clone(),
            sessions.clone(),
            events.clone(),
            links,
        );
        let clients = Clients::new(
            store.clone(),
            clock.clone(),
            events.clone(),
            sessions.clone(),
        );
        let keys = Keys::new(store.clone(), config.clone(), clock.clone(), events.clone());
        let webhooks = Webhooks::new(store.clone(), clock.clone(), events.clone(), config.clone());
        let attempts = Attempts::new(
            counter,
            config.throttle_account,
            config.throttle_ip,
            events.clone(),
        );
        Self {
            config,
            store,
            clock,
            metrics,
            events,
            sessions,
            users,
            clients,
            keys,
            webhooks,
            passwords,
            attempts,
            revocations,
            feed,
        }
    }
}

/// The application: the shared services and every flow, composed once.
pub struct App {
    /// The configuration.
    pub config: Arc<Config>,
    /// The store, every role (the adapters read with it; the flows each
    /// hold the roles they use).
    pub store: Arc<dyn Store>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Revoking sessions.
    pub sessions: Sessions,
    /// The account operations.
    pub users: Users,
    /// The client operations.
    pub clients: Clients,
    /// The webhook operations.
    pub webhooks: Webhooks,
    /// Argon2id on a bounded pool.
    pub passwords: Arc<PasswordService>,
    /// Revocations announced to this instance.
    pub revocations: Arc<RevocationCache>,
    /// The revocation feed this instance follows, if any.
    pub feed: Option<Arc<dyn RevocationFeed>>,
    /// Minting and verifying tokens, opening sessions.
    pub issuer: Arc<TokenIssuer>,
    /// Client authentication.
    pub client_auth: ClientAuthentication,
    /// DPoP proofs and nonces.
    pub dpop: DpopProofs,
    /// Access tokens at this server's resources.
    pub access: Arc<AccessTokens>,
    /// Password login.
    pub login: Arc<Login>,
    /// Refresh rotation (browser mode calls it directly).
    pub refresh: Arc<Refresh>,
    /// The authorization pages' sign-in, consent and codes.
    pub authorizations: Authorizations,
    /// The device authorization grant's device and person sides.
    pub device: DeviceFlow,
    /// Authenticator apps and the second step of a sign-in.
    pub apps: Arc<AuthenticatorApps>,
    /// Passkeys.
    pub passkeys: Passkeys,
    /// Self-service sign-up.
    pub signup: SignUp,
    /// Resets, verification, password changes, not-me.
    pub recovery: Recovery,
    /// Sessions the admin API makes.
    pub admin_sessions: AdminSessions,
    /// Introspection.
    pub introspection: Introspection,
    /// Revocation.
    pub revocation: TokenRevocation,
    /// The token endpoint's grants.
    pub grants: GrantRegistry,
    /// The console's overview: this instance's counts, added up in the
    /// database.
    pub activity: Arc<ActivityLog>,
}

impl App {
    /// Composes the application: loads the keys from the store (creating
    /// them on first start), then every flow over the roles it uses.
    pub async fn build(
        config: Config,
        store: Arc<dyn Store>,
        coordinator: Option<Arc<dyn Coordinator>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KeyError> {
        // Signers kept per key, before the first token is signed or verified.
        if !latchkey_core::signers::install() {
            tracing::debug!("JWT crypto provider already fixed; signers are built per signature");
        }
        let services = Services::build(config, store, coordinator, clock);
        services.passwords.warm();
        let Services {
            config,
            store,
            clock,
            metrics,
            events,
            sessions,
            users,
            clients,
            keys: _,
            webhooks,
            passwords,
            attempts,
            revocations,
            feed,
        } = services;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let refresh_keys =
            load_refresh_keys(store.as_ref(), config.master_key.as_ref(), &rng).await?;
        let keyring = load_keyring(store.as_ref(), &config, &rng, clock.now()).await?;
        let issuer = Arc::new(TokenIssuer::new(IssuerParts {
            config: config.clone(),
            sessions_store: store.clone(),
            key_store: store.clone(),
            keyring,
            refresh_keys: refresh_keys.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            events: events.clone(),
            sessions: sessions.clone(),
        }));
        let client_auth = ClientAuthentication::new(store.clone(), refresh_keys.clone());
        let dpop = DpopProofs::new(
            config.issuer.clone(),
            store.clone(),
            refresh_keys,
            clock.clone(),
            metrics.clone(),
        );
        let access = Arc::new(AccessTokens::new(
            issuer.clone(),
            store.clone(),
            store.clone(),
            revocations.clone(),
        ));
        let apps = Arc::new(AuthenticatorApps::new(
            issuer.clone(),
            store.clone(),
            store.clone(),
            attempts.clone(),
        ));
        let login = Arc::new(Login::new(
            issuer.clone(),
            passwords.clone(),
            attempts.clone(),
            store.clone(),
            store.clone(),
            apps.clone(),
        ));
        let refresh = Arc::new(Refresh::new(issuer.clone(), store.clone()));
        let device = DeviceFlow::new(
            issuer.clone(),
            store.clone(),
            store.clone(),
            attempts.clone(),
        );
        // The token endpoint's grants: one line each.
        let mut grants = GrantRegistry::default();
        grants.register(Arc::new(AuthorizationCodeGrant::new(
            issuer.clone(),
            store.clone(),
            store.clone(),
            store.clone(),
        )));
        grants.register(refresh.clone());
        grants.register(Arc::new(ClientCredentialsGrant::new(issuer.clone())));
        grants.register(Arc::new(DeviceCodeGrant::new(
            issuer.clone(),
            store.clone(),
            store.clone(),
        )));
        if config.password_grant {
            grants.register(login.clone());
        }
        let activity = Arc::new(ActivityLog::new(
            store.clone(),
            metrics.clone(),
            clock.clone(),
        ));
        Ok(Self {
            activity,
            authorizations: Authorizations::new(
                issuer.clone(),
                store.clone(),
                store.clone(),
                store.clone(),
            ),
            passkeys: Passkeys::new(
                issuer.clone(),
                store.clone(),
                store.clone(),
                attempts.clone(),
            ),
            recovery: Recovery::new(
                issuer.clone(),
                store.clone(),
                passwords.clone(),
                attempts.clone(),
                users.clone(),
                apps.clone(),
                sessions.clone(),
                config.throttle_reset,
            ),
            signup: SignUp::new(issuer.clone(), users.clone(), attempts),
            admin_sessions: AdminSessions::new(issuer.clone()),
            introspection: Introspection::new(
                issuer.clone(),
                access.clone(),
                store.clone(),
                store.clone(),
            ),
            revocation: TokenRevocation::new(issuer.clone(), store.clone()),
            config,
            store,
            clock,
            metrics,
            sessions,
            users,
            clients,
            webhooks,
            passwords,
            revocations,
            feed,
            issuer,
            client_auth,
            dpop,
            access,
            login,
            refresh,
            device,
            apps,
            grants,
        })
    }

    /// Now, in Unix seconds, by this application's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}
