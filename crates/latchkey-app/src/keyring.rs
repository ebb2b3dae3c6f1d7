//! The signing keys and the refresh-token key, loaded from the store (and
//! created there on first start), opened with the master key if any.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use latchkey_core::id::random_bytes;
use latchkey_core::jwt::Verifier;
use latchkey_core::keys::{PublicJwk, SigningAlg, SigningKey};
use latchkey_core::refresh::RefreshKeys;
use latchkey_core::seal::{self, MasterKey, OpenError, Opened};
use latchkey_core::store::{KeyStore, StoreError, StoredKey};

use crate::config::Config;

/// Why the keys could not be loaded; start-up stops with this.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The store failed.
    #[error("cannot read keys from the database")]
    Store(#[from] StoreError),
    /// The master key is missing or wrong.
    #[error("LATCHKEY_MASTER_KEY: {0}")]
    Master(OpenError),
    /// A master key is configured, but a secret is stored in plain.
    #[error(
        "LATCHKEY_MASTER_KEY is set, but {0} is stored unsealed: run `latchkey keys seal` \
         with LATCHKEY_MASTER_KEY set to seal it"
    )]
    Unsealed(String),
    /// No master key is configured, but the stored keys are sealed: a plain
    /// key beside them would undo what sealing protects.
    #[error("the stored keys are sealed: set LATCHKEY_MASTER_KEY to add a key")]
    WouldMix,
    /// Stored key material is unusable.
    #[error("stored key material: {0}")]
    Material(#[from] latchkey_core::Error),
}

/// Every key a token may still be signed with (and the next one, published
/// before it signs), the private keys of the configured algorithm, and the
/// verifier built from them.
pub struct Keyring {
    /// Keys of the configured algorithm with their activation times, oldest first.
    signers: Vec<(SigningKey, i64)>,
    /// Verifies access tokens (every published key).
    pub verifier: Verifier,
    /// The JWKS document's keys.
    pub published: Vec<PublicJwk>,
}

impl Keyring {
    /// The key that signs at `now`: the newest one already active.
    pub fn signing(&self, now: i64) -> &SigningKey {
        let activations: Vec<i64> = self.signers.iter().map(|(_, at)| *at).collect();
        &self.signers[select_signer(&activations, now)].0
    }
}

/// Index of the newest key active at `now` (activation times sorted
/// ascending); the oldest key when none is active yet.
fn select_signer(activations: &[i64], now: i64) -> usize {
    activations.iter().rposition(|at| *at <= now).unwrap_or(0)
}

/// How long a key stays published after its successor starts signing: the
/// last token it signed must expire first, and every instance must have
/// noticed the successor (it reloads keys every `keys_refresh_interval`).
pub fn retirement_delay(config: &Config) -> i64 {
    config.access_ttl + latchkey_core::jwt::LEEWAY_SECS + 2 * config.keys_refresh_interval
}

const REFRESH_SECRET: &str = "refresh_key";

fn open(master: Option<&MasterKey>, label: &str, blob: &[u8]) -> Result<Vec<u8>, KeyError> {
    match seal::open(master, label, blob).map_err(KeyError::Master)? {
        Opened::Sealed(bytes) => Ok(bytes),
        // With a master key, every secret must be sealed: a plain one would
        // be readable by whoever reads the database.
        Opened::Plain(_) if master.is_some() => Err(KeyError::Unsealed(label.to_owned())),
        Opened::Plain(bytes) => Ok(bytes),
    }
}

/// Loads (creating on first start) the refresh-token key.
pub async fn load_refresh_keys(
    store: &dyn KeyStore,
    master: Option<&MasterKey>,
    rng: &SystemRandom,
) -> Result<RefreshKeys, KeyError> {
    let fresh = random_bytes::<32>(rng)?;
    let candidate = seal::seal(master, REFRESH_SECRET, &fresh, rng)?;
    let blob = store.secret_or_insert(REFRESH_SECRET, &candidate).await?;
    let secret = open(master, REFRESH_SECRET, &blob)?;
    let secret: [u8; 32] = secret.try_into().map_err(|_| {
        KeyError::Material(latchkey_core::Error::KeyMaterial(
            "refresh key length".into(),
        ))
    })?;
    Ok(RefreshKeys::from_secret(&secret))
}

/// Generates a key of the configured algorithm that starts signing at
/// `activates_at`; every key not yet retiring retires once the last token
/// it can sign has expired.
pub async fn add_key(
    store: &dyn KeyStore,
    config: &Config,
    rng: &SystemRandom,
    now: i64,
    activates_at: i64,
) -> Result<StoredKey, KeyError> {
    let stored = store.signing_keys().await?;
    if config.master_key.is_none() && stored.iter().any(|k| seal::is_sealed(&k.private_blob)) {
        return Err(KeyError::WouldMix);
    }
    let (key, pkcs8) = SigningKey::generate(config.signing_alg, rng)?;
    let record = StoredKey {
        kid: key.kid().to_owned(),
        alg: config.signing_alg.as_str().to_owned(),
        private_blob: seal::seal(config.master_key.as_ref(), key.kid(), &pkcs8, rng)?,
        public_jwk: serde_json::to_string(&key.jwk)
            .map_err(|e| latchkey_core::Error::KeyMaterial(e.to_string()))?,
        created_at: now,
        activates_at,
        retires_at: None,
    };
    let live_others = stored
        .iter()
        .any(|k| k.retires_at.is_none() && k.activates_at <= activates_at);
    let retire_others_at = live_others.then(|| activates_at + retirement_delay(config));
    store.add_signing_key(&record, retire_others_at).await?;
    Ok(record)
}

/// Seals, under the configured master key, every signing key and secret
/// stored in plain (made before `LATCHKEY_MASTER_KEY` was set). Returns what
/// it sealed.
pub async fn seal_stored(
    store: &dyn KeyStore,
    config: &Config,
    rng: &SystemRandom,
) -> Result<Vec<String>, KeyError> {
    let master = config
        .master_key
        .as_ref()
        .ok_or(KeyError::Master(OpenError::NeedsMasterKey))?;
    let mut sealed = Vec::new();
    for key in store.signing_keys().await? {
        if let Opened::Plain(pkcs8) =
            seal::open(Some(master), &key.kid, &key.private_blob).map_err(KeyError::Master)?
        {
            let blob = seal::seal(Some(master), &key.kid, &pkcs8, rng)?;
            store.replace_key_blob(&key.kid, &blob).await?;
            sealed.push(format!("signing key {}", key.kid));
        }
    }
    // A database without a refresh key yet gets a sealed one, as the
    // server's first start would make it.
    let candidate = seal::seal(Some(master), REFRESH_SECRET, &random_bytes::<32>(rng)?, rng)?;
    let probe = store.secret_or_insert(REFRESH_SECRET, &candidate).await?;
    if let Opened::Plain(secret) =
        seal::open(Some(master), REFRESH_SECRET, &probe).map_err(KeyError::Master)?
    {
        let blob = seal::seal(Some(master), REFRESH_SECRET, &secret, rng)?;
        store.replace_secret(REFRESH_SECRET, &blob).await?;
        sealed.push("the refresh-token key".to_owned());
    }
    Ok(sealed)
}

/// Loads every published key; creates one of the configured algorithm, active
/// at once, if none can sign now (first start, or a changed algorithm).
pub async fn load_keyring(
    store: &dyn KeyStore,
    config: &Config,
    rng: &SystemRandom,
    now: i64,
) -> Result<Keyring, KeyError> {
    let master = config.master_key.as_ref();
    let published_at = |k: &StoredKey| k.retires_at.is_none_or(|r| r > now);
    let mut stored = store.signing_keys().await?;
    let can_sign = |keys: &[StoredKey]| {
        keys.iter().any(|k| {
            published_at(k) && k.alg == config.signing_alg.as_str() && k.activates_at <= now
        })
    };
    if !can_sign(&stored) {
        add_key(store, config, rng, now, now).await?;
        stored = store.signing_keys().await?;
    }
    let mut verifier = Verifier::new(config.issuer.clone(), config.audience.clone());
    let mut published = Vec::new();
    let mut signers = Vec::new();
    for record in stored.iter().filter(|k| published_at(k)) {
        let alg: SigningAlg =
            record
                .alg
                .parse()
                .map_err(|e: latchkey_core::keys::UnknownAlg| {
                    latchkey_core::Error::KeyMaterial(e.to_string())
                })?;
        let jwk: PublicJwk = serde_json::from_str(&record.public_jwk)
            .map_err(|e| latchkey_core::Error::KeyMaterial(e.to_string()))?;
        verifier.insert(&jwk)?;
        published.push(jwk);
        if alg == config.signing_alg {
            let pkcs8 = open(master, &record.kid, &record.private_blob)?;
            signers.push((SigningKey::from_pkcs8(alg, &pkcs8)?, record.activates_at));
        }
    }
    if signers.is_empty() {
        return Err(KeyError::Material(latchkey_core::Error::KeyMaterial(
            "no signing key after creating one".into(),
        )));
    }
    Ok(Keyring {
        signers,
        verifier,
        published,
    })
}

/// The keyring as the running server holds it: swapped whole when the
/// database has keys this process has not seen (after `latchkey keys rotate`).
pub struct LiveKeyring {
    current: RwLock<Arc<Keyring>>,
    last_reload: Mutex<Instant>,
}

/// Reloads from the database at most this often, so that tokens with
/// invented `kid`s cannot make every request hit the database.
const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

impl LiveKeyring {
    /// Wraps a loaded keyring.
    pub fn new(keyring: Keyring) -> Self {
        Self {
            current: RwLock::new(Arc::new(keyring)),
            last_reload: Mutex::new(Instant::now()),
        }
    }

    /// The keyring now.
    pub fn get(&self) -> Arc<Keyring> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// True if a reload is allowed now (and marks it as done).
    pub fn may_reload(&self) -> bool {
        let mut last = match self.last_reload.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if last.elapsed() >= RELOAD_INTERVAL {
            *last = Instant::now();
            true
        } else {
            false
        }
    }

    /// Replaces the keyring.
    pub fn replace(&self, keyring: Keyring) {
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(keyring);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_active_key_signs() {
        assert_eq!(select_signer(&[100], 50), 0);
        assert_eq!(select_signer(&[100], 150), 0);
        assert_eq!(select_signer(&[100, 200], 199), 0);
        assert_eq!(select_signer(&[100, 200], 200), 1);
        assert_eq!(select_signer(&[100, 200, 300], 250), 1);
    }

    #[test]
    fn a_key_outlives_the_tokens_it_signed() {
        let config = Config::defaults();
        assert!(retirement_delay(&config) > config.access_ttl + latchkey_core::jwt::LEEWAY_SECS);
    }
}
