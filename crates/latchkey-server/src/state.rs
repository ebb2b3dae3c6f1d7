//! The shared state of the server: its configuration and its services,
//! composed once at start-up. The operations themselves live in
//! [`crate::service`]; these methods hand them over, turning a
//! [`Refusal`](crate::service::Refusal) into the HTTP error it is.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use latchkey_core::clock::{Clock, SystemClock};
use latchkey_core::coordination::{
    AttemptCounter, Coordinator, DatabaseOnly, RevocationFanout, RevocationFeed,
};
use latchkey_core::jwt;
use latchkey_core::password::PasswordHasher;
use latchkey_core::store::Store;

use crate::config::Config;
use crate::keyring::{LiveKeyring, load_keyring};
use crate::metrics::Metrics;
use crate::revocation::RevocationCache;
use crate::service::{
    Clients, Events, LocalFanout, PasswordHashing, Refusal, ServiceError, Sessions, TokenService,
    Users,
};
use crate::throttle::Throttle;

pub use crate::service::{Issued, Principal, RequestContext};
pub use crate::service::{MAX_USERNAME_BYTES, MAX_WAITING_HASHES};

/// What the server shares between requests. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<TokenService>,
    /// Behind its own `Arc`: the state is cloned for every request, and
    /// one reference count is cheaper than the services' several.
    services: Arc<Services>,
}

/// The account and client operations the HTTP interface shares with the
/// command line.
struct Services {
    users: Users,
    clients: Clients,
}

/// The system's time in Unix seconds (for the command line; a server asks
/// its clock, [`AppState::now`]).
pub fn now() -> i64 {
    SystemClock.now()
}

impl AppState {
    /// Builds the state: loads keys from the store, creating them on first start.
    pub async fn new(
        config: Config,
        store: Arc<dyn Store>,
        coordinator: Option<Arc<dyn Coordinator>>,
    ) -> Result<Self, crate::keyring::KeyError> {
        Self::with_clock(config, store, coordinator, Arc::new(SystemClock)).await
    }

    /// Builds the state on `clock` (tests move a [`ManualClock`] instead of
    /// sleeping).
    ///
    /// [`ManualClock`]: latchkey_core::clock::ManualClock
    pub async fn with_clock(
        config: Config,
        store: Arc<dyn Store>,
        coordinator: Option<Arc<dyn Coordinator>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, crate::keyring::KeyError> {
        // Signers kept per key, before the first token is signed or verified.
        if !latchkey_core::signers::install() {
            tracing::debug!("JWT crypto provider already fixed; signers are built per signature");
        }
        let rng = SystemRandom::new();
        let refresh_keys =
            crate::keyring::load_refresh_keys(store.as_ref(), config.master_key.as_ref(), &rng)
                .await?;
        let keyring = load_keyring(store.as_ref(), &config, &rng, clock.now()).await?;
        let passwords = PasswordHasher::new(&rng)?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let feed = match &coordinator {
            Some(redis) => Some(redis.clone() as Arc<dyn RevocationFeed>),
            None => store.revocation_feed(),
        };
        // The one place where Redis or its absence is decided.
        let (attempts, fanout): (Arc<dyn AttemptCounter>, Arc<dyn RevocationFanout>) =
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
            fanout,
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
        let inner = Arc::new(TokenService {
            metrics,
            events,
            sessions,
            feed,
            revocations,
            attempts,
            waiting_hashes: std::sync::atomic::AtomicUsize::new(0),
            clock,
            config: Arc::new(config),
            store,
            keyring: LiveKeyring::new(keyring),
            refresh_keys,
            passwords: Arc::new(passwords),
            hash_gate: crate::hashing::HashGate::new(cores),
            hash_pool: crate::hashing::HashPool::new(cores),
            rng,
        });
        let users = Users::new(
            inner.store.clone(),
            inner.clock.clone(),
            Arc::new(ServerHashing(inner.clone())),
            inner.sessions.clone(),
            inner.events.clone(),
        );
        let clients = Clients::new(
            inner.store.clone(),
            inner.clock.clone(),
            inner.events.clone(),
            inner.sessions.clone(),
        );
        Ok(Self {
            inner,
            services: Arc::new(Services { users, clients }),
        })
    }

    /// The account operations (sign-up, the admin API).
    pub fn users(&self) -> &Users {
        &self.services.users
    }

    /// The client operations (the admin API).
    pub fn clients(&self) -> &Clients {
        &self.services.clients
    }

    /// Counts the requests in flight, which decide how many cores may hash.
    pub(crate) fn hash_gate(&self) -> &crate::hashing::HashGate {
        &self.inner.hash_gate
    }

    /// The token flows.
    pub fn tokens(&self) -> &TokenService {
        &self.inner
    }

    /// Now, in Unix seconds, by this server's clock.
    pub fn now(&self) -> i64 {
        self.inner.now()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.inner.config()
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.inner.store()
    }
}

/// New passwords hashed on the server's hashing pool, in the queue logins
/// wait in.
struct ServerHashing(Arc<TokenService>);

#[async_trait::async_trait]
impl PasswordHashing for ServerHashing {
    async fn hash(&self, password: String) -> Result<String, ServiceError> {
        self.0.hash_password(password).await.map_err(|e| match e {
            Refusal::Busy { retry_after } => ServiceError::Busy { retry_after },
            other => ServiceError::Internal(Box::new(other)),
        })
    }
}
