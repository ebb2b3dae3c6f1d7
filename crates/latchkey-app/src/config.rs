//! Configuration: one struct, parsed once from a TOML file and `LATCHKEY_*`
//! environment variables (which override the file). Parsing is pure; acting
//! on the result (connecting, loading keys) happens elsewhere.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use latchkey_core::keys::SigningAlg;
use latchkey_core::rotation::{BindingPolicy, Policy};
use latchkey_core::scope::Scope;
use latchkey_core::seal::MasterKey;
use latchkey_core::strength::Acr;

/// Every setting, by its TOML key (the environment variable is `LATCHKEY_` +
/// the key in upper case), with its default as the text a user would write:
/// the one place a default is written. An empty default means unset (or,
/// for `allowed_origins`, derived from the issuer).
const SETTINGS: &[(&str, &str)] = &[
    ("listen", "127.0.0.1:8080"),
    ("database_url", "sqlite://latchkey.db"),
    ("redis_url", ""),
    ("issuer", "http://127.0.0.1:8080"),
    ("audience", "latchkey"),
    ("access_ttl", "10m"),
    ("refresh_idle_ttl", "14d"),
    ("refresh_absolute_ttl", "30d"),
    ("reuse_grace", "0s"),
    ("max_sessions_per_user", "10"),
    ("signing_alg", "EdDSA"),
    ("binding_ip", "log"),
    ("cookie_secure", "true"),
    ("cookie_fingerprint", "false"),
    ("password_grant", "false"),
    ("signup", "off"),
    ("console_acr", "mfa"),
    ("dpop_nonce", "required"),
    ("allowed_origins", ""),
    ("master_key", ""),
    ("scopes", ""),
    ("default_scope", "profile"),
    ("trusted_proxies", ""),
    ("throttle_account", "10/15m"),
    ("throttle_ip", "100/15m"),
    ("gc_interval", "10m"),
    ("keys_refresh_interval", "30s"),
    ("redis_prefix", "latchkey:"),
    ("request_timeout", "10s"),
    ("max_connections", "1024"),
    ("max_connections_per_address", "256"),
    ("audit_refreshes", "false"),
    ("audit_retention", "90d"),
    ("reauth_window", "10m"),
    ("rp_id", ""),
    ("smtp_url", ""),
    ("mail_from", ""),
    ("throttle_reset", "5/1h"),
];

/// Environment variables with the `LATCHKEY_` prefix that are not settings
/// of the server (test harness, logging).
const OTHER_ENV: &[&str] = &["LATCHKEY_CONFIG", "LATCHKEY_LOG", "LATCHKEY_LOG_FORMAT"];

/// The server's configuration. Defaults are those of the README's table.
#[derive(Debug)]
pub struct Config {
    /// `LATCHKEY_LISTEN`: address and port. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// `LATCHKEY_DATABASE_URL`: `sqlite://PATH` or `postgres://…`. Default `sqlite://latchkey.db`.
    pub database_url: String,
    /// `LATCHKEY_REDIS_URL`: optional Redis. Default unset.
    pub redis_url: Option<String>,
    /// `LATCHKEY_ISSUER`: `iss` of every token and base of discovery URLs,
    /// without a trailing slash. Default `http://127.0.0.1:8080`.
    pub issuer: String,
    /// `LATCHKEY_AUDIENCE`: `aud` of access tokens. Default `latchkey`.
    pub audience: String,
    /// `LATCHKEY_ACCESS_TTL`: access-token lifetime in seconds. Default 10 minutes.
    pub access_ttl: i64,
    /// Refresh-token lifetimes and policies (`LATCHKEY_REFRESH_IDLE_TTL`
    /// default 14 days, `LATCHKEY_REFRESH_ABSOLUTE_TTL` default 30 days,
    /// `LATCHKEY_REUSE_GRACE` default 0, `LATCHKEY_BINDING_IP` default `log`,
    /// and `LATCHKEY_AUDIT_REFRESHES`, whether each routine refresh writes an
    /// audit event, default `false`: they are counted in the metrics).
    pub policy: Policy,
    /// `LATCHKEY_MAX_SESSIONS_PER_USER`: the oldest session is revoked past this. Default 10.
    pub max_sessions_per_user: u32,
    /// `LATCHKEY_SIGNING_ALG`: `EdDSA`, `ES256` or `RS256`. Default `EdDSA`.
    pub signing_alg: SigningAlg,
    /// `LATCHKEY_COOKIE_SECURE`: `false` only for plain-http development. Default `true`.
    pub cookie_secure: bool,
    /// `LATCHKEY_COOKIE_FINGERPRINT`: browser-mode access tokens carry the
    /// SHA-256 of a random value in a hardened cookie, and this server
    /// refuses them without it. Default `false`.
    pub cookie_fingerprint: bool,
    /// `LATCHKEY_SIGNUP`: `open` lets anyone create an account at
    /// `POST /auth/signup`. Default `off`.
    pub signup_open: bool,
    /// `LATCHKEY_CONSOLE_ACR`: how strongly an admin must sign in for the
    /// operator's console to get `latchkey:admin`: `pwd`, `mfa` or `phr`.
    /// Default `mfa`.
    pub console_acr: Acr,
    /// `LATCHKEY_DPOP_NONCE`: `required` (a token request's DPoP proof must
    /// carry a fresh server nonce, RFC 9449 §8) or `optional` (checked when
    /// present). Default `required`.
    pub dpop_nonce_required: bool,
    /// `LATCHKEY_PASSWORD_GRANT`: allow `grant_type=password`. Default `false`.
    pub password_grant: bool,
    /// `LATCHKEY_ALLOWED_ORIGINS`: browser origins, comma-separated. Default: the issuer's origin.
    pub allowed_origins: Vec<String>,
    /// `LATCHKEY_MASTER_KEY`: 64 hex characters; seals keys at rest. Default unset.
    pub master_key: Option<MasterKey>,
    /// `LATCHKEY_SCOPES`: the scopes a user's session may hold,
    /// space-separated. Default: the default scope and `openid`.
    pub scopes: Scope,
    /// `LATCHKEY_DEFAULT_SCOPE`: granted when a login names none. Default `profile`.
    pub default_scope: Scope,
    /// `LATCHKEY_TRUSTED_PROXIES`: addresses or CIDR ranges of reverse proxies
    /// whose `X-Forwarded-For` is believed. Default none: the peer address is
    /// the client.
    pub trusted_proxies: Vec<IpRange>,
    /// `LATCHKEY_THROTTLE_ACCOUNT`: failed logins per account before `429`.
    /// Default `10/15m`.
    pub throttle_account: Limit,
    /// `LATCHKEY_THROTTLE_IP`: failed logins per client IP before `429`.
    /// Default `100/15m`.
    pub throttle_ip: Limit,
    /// `LATCHKEY_GC_INTERVAL`: how often dead sessions are deleted. Default `10m`.
    pub gc_interval: i64,
    /// `LATCHKEY_KEYS_REFRESH_INTERVAL`: how often a running server re-reads
    /// the signing keys (to notice `latchkey keys rotate`). Default `30s`.
    pub keys_refresh_interval: i64,
    /// `LATCHKEY_REDIS_PREFIX`: prefix of every Redis key and channel, so that
    /// several deployments can share one Redis. Default `latchkey:`.
    pub redis_prefix: String,
    /// `LATCHKEY_REQUEST_TIMEOUT`: a request's headers must arrive within
    /// this, and then its body within this again; a slower client is cut off
    /// (an idle kept-alive connection is closed after as long). Default `10s`.
    pub request_timeout: i64,
    /// `LATCHKEY_MAX_CONNECTIONS`: connections served at once; further ones
    /// wait to be accepted. Default `1024`.
    pub max_connections: usize,
    /// `LATCHKEY_MAX_CONNECTIONS_PER_ADDRESS`: connections served at once
    /// from one client address (an IPv4 address or an IPv6 /64; trusted
    /// proxies are exempt); a further one is closed at once. Default `256`.
    pub max_connections_per_address: usize,
    /// `LATCHKEY_AUDIT_RETENTION`: audit events older than this are deleted
    /// by garbage collection. Default `90d`.
    pub audit_retention: i64,
    /// `LATCHKEY_REAUTH_WINDOW`: adding or removing a sign-in factor needs a
    /// sign-in at most this old. Default `10m`.
    pub reauth_window: i64,
    /// `LATCHKEY_RP_ID`: the WebAuthn relying-party id of passkeys: the
    /// issuer's host or a domain it is under. Default: the issuer's host.
    /// An IP address turns passkeys off (WebAuthn refuses one).
    pub rp_id: String,
    /// `LATCHKEY_SMTP_URL`: where mail goes (`smtp://host:port` with
    /// STARTTLS when offered, `smtps://…` for TLS from the start, with
    /// `user:password@` when the server wants them). Unset: no mail is sent;
    /// the events still carry every link (SPEC §13).
    pub smtp_url: Option<String>,
    /// `LATCHKEY_MAIL_FROM`: the sender of every mail. Default
    /// `Latchkey <no-reply@HOST>`, HOST being the issuer's.
    pub mail_from: String,
    /// `LATCHKEY_THROTTLE_RESET`: password reset requests per address and
    /// per account. Default `5/1h`.
    pub throttle_reset: Limit,
}

/// At most `max` events per `window` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Events allowed in one window.
    pub max: u32,
    /// The window, in seconds.
    pub window: i64,
}

impl Limit {
    /// Parses `N/DURATION`, e.g. `10/15m`.
    pub fn parse(text: &str) -> Option<Self> {
        let (max, window) = text.split_once('/')?;
        let max = max.trim().parse().ok().filter(|m| *m > 0)?;
        let window = parse_duration(window).filter(|w| *w > 0)?;
        Some(Self { max, window })
    }
}

/// An IP address range: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: std::net::IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Parses `ADDRESS` or `ADDRESS/PREFIX`.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: std::net::IpAddr = addr.trim().parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Self { network, prefix })
    }

    /// True when `ip` is in the range.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A setting that cannot be used; start-up stops with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {setting}: {message}")]
pub struct ConfigError {
    /// The setting, as the operator wrote it (`LATCHKEY_ACCESS_TTL` or `access_ttl in FILE`).
    pub setting: String,
    /// What is wrong with it.
    pub message: String,
}

/// The outcome of reading the environment: the config, plus warnings about
/// variables that look like settings but are not.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// One line per ignored `LATCHKEY_*` variable.
    pub warnings: Vec<String>,
}

struct Source {
    value: String,
    origin: String,
}

impl Config {
    /// The configuration with every default.
    pub fn defaults() -> Config {
        match Self::load(None, std::iter::empty()) {
            Ok(loaded) => loaded.config,
            Err(e) => unreachable!("defaults are valid: {e}"),
        }
    }

    /// Parses a TOML document (if any) and the given environment.
    pub fn load(
        toml_text: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let mut values: BTreeMap<&'static str, Source> = BTreeMap::new();
        if let Some((path, text)) = toml_text {
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
                setting: path.to_owned(),
                message: format!("not valid TOML: {}", e.message()),
            })?;
            for (key, value) in table {
                let origin = format!("{key} in {path}");
                let Some(known) = SETTINGS.iter().map(|(k, _)| k).find(|k| **k == key) else {
                    return Err(ConfigError {
                        setting: origin,
                        message: "unknown setting".into(),
                    });
                };
                let value = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Array(items) => {
                        let mut parts = Vec::new();
                        for item in items {
                            match item {
                                toml::Value::String(s) => parts.push(s),
                                _ => {
                                    return Err(ConfigError {
                                        setting: origin,
                                        message: "expected a list of strings".into(),
                                    });
                                }
                            }
                        }
                        parts.join(",")
                    }
                    _ => {
                        return Err(ConfigError {
                            setting: origin,
                            message: "expected a string, number or boolean".into(),
                        });
                    }
                };
                values.insert(known, Source { value, origin });
            }
        }
        let mut warnings = Vec::new();
        for (name, value) in env {
            let Some(suffix) = name.strip_prefix("LATCHKEY_") else {
                continue;
            };
            let key = suffix.to_ascii_lowercase();
            match SETTINGS.iter().map(|(k, _)| k).find(|k| **k == key) {
                Some(known) => {
                    values.insert(
                        known,
                        Source {
                            value,
                            origin: name,
                        },
                    );
                }
                None if suffix.starts_with("TEST_") || OTHER_ENV.contains(&name.as_str()) => {}
                None => warnings.push(format!("{name} is not a Latchkey setting; ignored")),
            }
        }
        let config = Self::from_values(&values)?;
        Ok(Loaded { config, warnings })
    }

    fn from_values(values: &BTreeMap<&'static str, Source>) -> Result<Config, ConfigError> {
        let v = Values(values);
        let (issuer, issuer_origin) = v.issuer()?;
        let default_scope = v.scope("default_scope")?;
        Ok(Config {
            listen: v.address("listen")?,
            database_url: v.database_url()?,
            redis_url: v.redis_url()?,
            audience: v.nonempty("audience")?,
            access_ttl: v.positive_duration("access_ttl")?,
            policy: v.policy()?,
            max_sessions_per_user: v.whole("max_sessions_per_user")?,
            signing_alg: v.parsed("signing_alg")?,
            cookie_secure: v.boolean("cookie_secure")?,
            cookie_fingerprint: v.boolean("cookie_fingerprint")?,
            signup_open: v.choice("signup", &[("off", false), ("open", true)])?,
            console_acr: v.choice(
                "console_acr",
                &[("pwd", Acr::Pwd), ("mfa", Acr::Mfa), ("phr", Acr::Phr)],
            )?,
            dpop_nonce_required: v
                .choice("dpop_nonce", &[("required", true), ("optional", false)])?,
            password_grant: v.boolean("password_grant")?,
            allowed_origins: v.allowed_origins(&issuer_origin)?,
            master_key: v.master_key()?,
            scopes: v.scopes(&default_scope)?,
            default_scope,
            trusted_proxies: v.trusted_proxies()?,
            throttle_account: v.limit("throttle_account")?,
            throttle_ip: v.limit("throttle_ip")?,
            gc_interval: v.positive_duration("gc_interval")?,
            keys_refresh_interval: v.positive_duration("keys_refresh_interval")?,
            redis_prefix: v.get("redis_prefix").0,
            request_timeout: v.positive_duration("request_timeout")?,
            max_connections: v.whole("max_connections")?,
            max_connections_per_address: v.whole("max_connections_per_address")?,
            audit_retention: v.positive_duration("audit_retention")?,
            reauth_window: v.positive_duration("reauth_window")?,
            rp_id: v.rp_id(&issuer)?,
            smtp_url: v.smtp_url()?,
            mail_from: v.mail_from(&issuer)?,
            throttle_reset: v.limit("throttle_reset")?,
            issuer,
        })
    }
}

/// The settings' values as given, read one at a time: each reader checks
/// its value and names the setting it came from when it is wrong.
struct Values<'a>(&'a BTreeMap<&'static str, Source>);

impl Values<'_> {
    /// The value (its default when unset) and where it came from.
    fn get(&self, key: &'static str) -> (String, String) {
        let default = SETTINGS
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, d)| d);
        match self.0.get(key) {
            Some(s) => (s.value.trim().to_owned(), s.origin.clone()),
            None => (
                default.to_owned(),
                format!("LATCHKEY_{}", key.to_ascii_uppercase()),
            ),
        }
    }

    /// The value when set and not empty, with where it came from.
    fn set(&self, key: &'static str) -> Option<(String, String)> {
        self.0
            .get(key)
            .filter(|s| !s.value.trim().is_empty())
            .map(|s| (s.value.trim().to_owned(), s.origin.clone()))
    }

    fn fail(origin: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            setting: origin.to_owned(),
            message: message.into(),
        }
    }

    fn duration(&self, key: &'static str) -> Result<i64, ConfigError> {
        let (text, origin) = self.get(key);
        parse_duration(&text).ok_or_else(|| {
            Self::fail(
                &origin,
                format!("{text:?} is not a duration (use e.g. 30s, 10m, 12h, 14d)"),
            )
        })
    }

    fn positive_duration(&self, key: &'static str) -> Result<i64, ConfigError> {
        match self.duration(key)? {
            0 => Err(Self::fail(&self.get(key).1, "must be longer than zero")),
            seconds => Ok(seconds),
        }
    }

    fn boolean(&self, key: &'static str) -> Result<bool, ConfigError> {
        let (text, origin) = self.get(key);
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(Self::fail(
                &origin,
                format!("{text:?} is not true or false"),
            )),
        }
    }

    /// One of the words of `choices`.
    fn choice<T: Copy>(&self, key: &'static str, choices: &[(&str, T)]) -> Result<T, ConfigError> {
        let (text, origin) = self.get(key);
        choices
            .iter()
            .find(|(word, _)| *word == text)
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
                Self::fail(
                    &origin,
                    format!("{text:?} is not one of {}", words.join(", ")),
                )
            })
    }

    /// A whole number of at least 1.
    fn whole<T: std::str::FromStr + PartialOrd + From<u8>>(
        &self,
        key: &'static str,
    ) -> Result<T, ConfigError> {
        let (text, origin) = self.get(key);
        match text.parse::<T>() {
            Ok(n) if n >= T::from(1) => Ok(n),
            _ => Err(Self::fail(
                &origin,
                format!("{text:?} is not a whole number of at least 1"),
            )),
        }
    }

    /// A value of a type that parses itself (its error says what is wrong).
    fn parsed<T>(&self, key: &'static str) -> Result<T, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let (text, origin) = self.get(key);
        text.parse::<T>()
            .map_err(|e| Self::fail(&origin, e.to_string()))
    }

    fn address(&self, key: &'static str) -> Result<SocketAddr, ConfigError> {
        let (text, origin) = self.get(key);
        text.parse()
            .map_err(|_| Self::fail(&origin, format!("{text:?} is not an address:port")))
    }

    fn nonempty(&self, key: &'static str) -> Result<String, ConfigError> {
        let (text, origin) = self.get(key);
        if text.is_empty() {
            return Err(Self::fail(&origin, "must not be empty"));
        }
        Ok(text)
    }

    fn limit(&self, key: &'static str) -> Result<Limit, ConfigError> {
        let (text, origin) = self.get(key);
        Limit::parse(&text).ok_or_else(|| {
            Self::fail(
                &origin,
                format!("{text:?} is not COUNT/DURATION, e.g. 10/15m"),
            )
        })
    }

    fn scope(&self, key: &'static str) -> Result<Scope, ConfigError> {
        let (text, origin) = self.get(key);
        Scope::parse(&text).map_err(|_| Self::fail(&origin, "not a valid scope"))
    }

    fn database_url(&self) -> Result<String, ConfigError> {
        let (url, origin) = self.get("database_url");
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(Self::fail(
                &origin,
                "expected sqlite://PATH or postgres://…",
            ));
        }
        Ok(url)
    }

    fn redis_url(&self) -> Result<Option<String>, ConfigError> {
        match self.set("redis_url") {
            Some((url, origin))
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) =>
            {
                Err(Self::fail(&origin, "expected redis://…"))
            }
            set => Ok(set.map(|(url, _)| url)),
        }
    }

    fn smtp_url(&self) -> Result<Option<String>, ConfigError> {
        match self.set("smtp_url") {
            Some((url, origin)) if !(url.starts_with("smtp://") || url.starts_with("smtps://")) => {
                Err(Self::fail(
                    &origin,
                    "expected smtp://HOST:PORT or smtps://…",
                ))
            }
            set => Ok(set.map(|(url, _)| url)),
        }
    }

    fn mail_from(&self, issuer: &str) -> Result<String, ConfigError> {
        match self.set("mail_from") {
            Some((from, origin)) => {
                let address = from
                    .rsplit_once('<')
                    .map_or(from.as_str(), |(_, a)| a.trim_end_matches('>'));
                latchkey_core::account::check_email(address)
                    .map_err(|e| Self::fail(&origin, e.to_string()))?;
                Ok(from)
            }
            None => {
                let host = url::Url::parse(issuer)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_else(|| "localhost".into());
                // An IPv6 host is no domain of an address.
                let host = if host.contains(':') || host.starts_with('[') {
                    "localhost"
                } else {
                    host.as_str()
                };
                Ok(format!("Latchkey <no-reply@{host}>"))
            }
        }
    }

    /// The issuer, without a trailing slash, and its origin.
    fn issuer(&self) -> Result<(String, String), ConfigError> {
        let (issuer, origin) = self.get("issuer");
        let issuer = issuer.trim_end_matches('/').to_owned();
        match origin_of(&issuer) {
            Some(issuer_origin) => Ok((issuer, issuer_origin)),
            None => Err(Self::fail(
                &origin,
                format!("{issuer:?} is not an http(s) URL"),
            )),
        }
    }

    fn policy(&self) -> Result<Policy, ConfigError> {
        let reuse_grace = self.duration("reuse_grace")?;
        if reuse_grace > 300 {
            return Err(Self::fail(
                &self.get("reuse_grace").1,
                "at most 5m: a longer window lets a thief use a stolen token unnoticed",
            ));
        }
        Ok(Policy {
            idle_ttl: self.positive_duration("refresh_idle_ttl")?,
            absolute_ttl: self.positive_duration("refresh_absolute_ttl")?,
            reuse_grace,
            binding_ip: self.choice(
                "binding_ip",
                &[
                    ("off", BindingPolicy::Off),
                    ("log", BindingPolicy::Log),
                    ("revoke", BindingPolicy::Revoke),
                ],
            )?,
            audit_refreshes: self.boolean("audit_refreshes")?,
        })
    }

    /// Unset: the issuer's host. Set: the host or a domain it is under.
    fn rp_id(&self, issuer: &str) -> Result<String, ConfigError> {
        let host = url::Url::parse(issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let Some((rp_id, origin)) = self.set("rp_id") else {
            return Ok(host);
        };
        let rp_id = rp_id.trim().trim_end_matches('.').to_ascii_lowercase();
        let under = host
            .strip_suffix(rp_id.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'));
        if rp_id.is_empty() || !under {
            return Err(Self::fail(
                &origin,
                format!("{rp_id:?} is not the issuer's host {host:?} nor a domain it is under"),
            ));
        }
        Ok(rp_id)
    }

    /// Unset: the issuer's origin.
    fn allowed_origins(&self, issuer_origin: &str) -> Result<Vec<String>, ConfigError> {
        let (mut text, origin) = self.get("allowed_origins");
        if !self.0.contains_key("allowed_origins") {
            text = issuer_origin.to_owned();
        }
        let mut allowed = Vec::new();
        for item in text.split([',', ' ']).filter(|s| !s.is_empty()) {
            let item = item.trim_end_matches('/');
            match origin_of(item) {
                Some(o) if o == item => allowed.push(o),
                _ => {
                    return Err(Self::fail(
                        &origin,
                        format!("{item:?} is not an origin (scheme://host[:port])"),
                    ));
                }
            }
        }
        Ok(allowed)
    }

    fn master_key(&self) -> Result<Option<MasterKey>, ConfigError> {
        let Some((text, origin)) = self.set("master_key") else {
            return Ok(None);
        };
        MasterKey::from_hex(&text).map(Some).ok_or_else(|| {
            Self::fail(
                &origin,
                "expected 32 random bytes as 64 hexadecimal characters",
            )
        })
    }

    /// Unset: the default scope and `openid`, never whatever a login asks.
    fn scopes(&self, default_scope: &Scope) -> Result<Scope, ConfigError> {
        let Some(set) = self.0.get("scopes") else {
            return Ok(default_scope.union(&Scope::parse("openid email").unwrap_or_default()));
        };
        let scopes = Scope::parse(&set.value.replace(',', " "))
            .map_err(|_| Self::fail(&set.origin, "not a list of valid scope tokens"))?;
        if !default_scope.is_subset(&scopes) {
            return Err(Self::fail(
                &self.get("default_scope").1,
                "must be within LATCHKEY_SCOPES",
            ));
        }
        Ok(scopes)
    }

    fn trusted_proxies(&self) -> Result<Vec<IpRange>, ConfigError> {
        let (text, origin) = self.get("trusted_proxies");
        text.split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(|item| {
                IpRange::parse(item).ok_or_else(|| {
                    Self::fail(
                        &origin,
                        format!("{item:?} is not an IP address or CIDR range"),
                    )
                })
            })
            .collect()
    }
}

/// Parses `30s`, `10m`, `12h`, `14d`, `1h30m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<i64>() {
        return (secs >= 0).then_some(secs);
    }
    let mut total: i64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604_800,
            _ => return None,
        };
        let n: i64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        number.clear();
    }
    number.is_empty().then_some(total)
}

/// `scheme://host[:port]` of an http(s) URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The book's configuration reference names every setting.
    #[test]
    fn every_setting_is_documented() {
        let reference = include_str!("../../../docs/src/operating/configuration.md");
        for (key, _) in SETTINGS {
            let variable = format!("`LATCHKEY_{}`", key.to_ascii_uppercase());
            assert!(
                reference.contains(&variable),
                "{variable} is not in docs/src/operating/configuration.md"
            );
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::defaults();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://latchkey.db");
        assert_eq!(c.issuer, "http://127.0.0.1:8080");
        assert_eq!(c.audience, "latchkey");
        assert_eq!(c.access_ttl, 600);
        assert_eq!(c.policy.idle_ttl, 14 * 86400);
        assert_eq!(c.policy.absolute_ttl, 30 * 86400);
        assert_eq!(c.policy.reuse_grace, 0);
        assert_eq!(c.policy.binding_ip, BindingPolicy::Log);
        assert_eq!(c.max_sessions_per_user, 10);
        assert_eq!(c.signing_alg, SigningAlg::EdDSA);
        assert!(c.cookie_secure);
        assert!(!c.password_grant);
        assert_eq!(c.allowed_origins, vec!["http://127.0.0.1:8080".to_string()]);
        assert!(c.master_key.is_none());
    }

    #[test]
    fn mail_settings_are_checked_and_default_to_the_issuers_host() {
        let c = Config::defaults();
        assert!(c.smtp_url.is_none());
        assert_eq!(c.mail_from, "Latchkey <no-reply@127.0.0.1>");
        assert_eq!(
            c.throttle_reset,
            Limit {
                max: 5,
                window: 3600
            }
        );
        let load = |pairs: &[(&str, &str)]| Config::load(None, env(pairs)).map(|l| l.config);
        let c = load(&[
            ("LATCHKEY_ISSUER", "https://id.example.com"),
            ("LATCHKEY_SMTP_URL", "smtps://u:p@mail.example.com:465"),
        ])
        .unwrap();
        assert_eq!(c.mail_from, "Latchkey <no-reply@id.example.com>");
        assert_eq!(
            c.smtp_url.as_deref(),
            Some("smtps://u:p@mail.example.com:465")
        );
        let c = load(&[("LATCHKEY_ISSUER", "http://[::1]:8080")]).unwrap();
        assert_eq!(c.mail_from, "Latchkey <no-reply@localhost>");
        let bad = load(&[("LATCHKEY_SMTP_URL", "http://mail.example.com")]).unwrap_err();
        assert_eq!(bad.setting, "LATCHKEY_SMTP_URL");
        let bad = load(&[("LATCHKEY_MAIL_FROM", "Accounts <not an address>")]).unwrap_err();
        assert_eq!(bad.setting, "LATCHKEY_MAIL_FROM");
        let c = load(&[("LATCHKEY_MAIL_FROM", "Accounts <accounts@example.com>")]).unwrap();
        assert_eq!(c.mail_from, "Accounts <accounts@example.com>");
    }

    #[test]
    fn environment_overrides_file() {
        let toml = "access_ttl = \"5m\"\naudience = \"file\"\nallowed_origins = [\"https://a.test\", \"https://b.test\"]\n";
        let loaded = Config::load(
            Some(("c.toml", toml)),
            env(&[
                ("LATCHKEY_AUDIENCE", "env"),
                ("LATCHKEY_TEST_POSTGRES_URL", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.config.access_ttl, 300);
        assert_eq!(loaded.config.audience, "env");
        assert_eq!(loaded.config.allowed_origins.len(), 2);
        assert!(loaded.warnings.is_empty());
    }

    #[test]
    fn bad_settings_are_named() {
        let e = Config::load(None, env(&[("LATCHKEY_ACCESS_TTL", "ten minutes")])).unwrap_err();
        assert_eq!(e.setting, "LATCHKEY_ACCESS_TTL");
        let e = Config::load(Some(("c.toml", "acess_ttl = \"5m\"")), env(&[])).unwrap_err();
        assert_eq!(e.setting, "acess_ttl in c.toml");
        let e = Config::load(None, env(&[("LATCHKEY_MASTER_KEY", "abcd")])).unwrap_err();
        assert_eq!(e.setting, "LATCHKEY_MASTER_KEY");
        let e = Config::load(None, env(&[("LATCHKEY_SIGNING_ALG", "HS256")])).unwrap_err();
        assert_eq!(e.setting, "LATCHKEY_SIGNING_ALG");
        let e = Config::load(None, env(&[("LATCHKEY_BINDING_IP", "maybe")])).unwrap_err();
        assert_eq!(e.setting, "LATCHKEY_BINDING_IP");
    }

    #[test]
    fn ip_ranges_and_limits() {
        let range = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(range.contains("10.1.2.3".parse().unwrap()));
        assert!(!range.contains("11.0.0.1".parse().unwrap()));
        assert!(range.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one = IpRange::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            IpRange::parse("::1/128")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(
            IpRange::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(IpRange::parse("10.0.0.0/33").is_none());
        assert!(IpRange::parse("example.com").is_none());
        assert_eq!(
            Limit::parse("10/15m"),
            Some(Limit {
                max: 10,
                window: 900
            })
        );
        assert_eq!(Limit::parse("0/15m"), None);
        assert_eq!(Limit::parse("10"), None);
        let e = Config::load(
            None,
            env(&[("LATCHKEY_TRUSTED_PROXIES", "10.0.0.0/8, bogus")]),
        )
        .unwrap_err();
        assert_eq!(e.setting, "LATCHKEY_TRUSTED_PROXIES");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30));
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("14d"), Some(14 * 86400));
        assert_eq!(parse_duration("45"), Some(45));
        assert_eq!(parse_duration("10"), Some(10));
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration("-5"), None);
        assert_eq!(parse_duration("99999999999999999999d"), None);
    }
}
