//! The `latchkey` binary: start-up and the operator's command line. A thin
//! layer over `latchkey-app` (every command runs on the services it
//! composes, `Services::build`), `latchkey-server` (for `serve`) and the
//! storage crates; the only place that chooses a storage backend.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use aws_lc_rs::rand::SystemRandom;
use clap::{Parser, Subcommand};
use latchkey_app::compose::Services;
use latchkey_app::config::{Config, ConfigError};
use latchkey_app::keyring::load_refresh_keys;
use latchkey_app::service::{
    Actor, NewClient, ServiceError, Users, canonical_username, canonicalise_stored_names,
};
use latchkey_coordinator_redis::RedisCoordinator;
use latchkey_core::clock::SystemClock;
use latchkey_core::coordination::Coordinator;
use latchkey_core::password::check_new_password;
use latchkey_core::rotation::RevocationReason;
use latchkey_core::store::{AuditFilter, Store, User};
use latchkey_server::state::now;
use latchkey_server::{AppState, app};
use latchkey_store_postgres::PgStore;
use latchkey_store_sqlite::SqliteStore;

/// Latchkey: access tokens and rotating refresh tokens.
#[derive(Debug, Parser)]
#[command(name = "latchkey", version, about)]
pub struct Cli {
    /// A TOML configuration file; `LATCHKEY_*` variables override it.
    #[arg(long, global = true, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Inspect signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// List or revoke sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Manage webhooks (SPEC §14).
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Read the audit trail, newest first.
    Audit {
        /// Only this user's events.
        #[arg(long)]
        user: Option<String>,
        /// Only events of this kind (login, login_failed, refresh, reuse_detected,
        /// session_revoked, binding_mismatch, throttled, user_disabled, …).
        #[arg(long)]
        kind: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// A user's live sessions.
    List {
        /// Login name.
        #[arg(long)]
        user: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke one session by id, or every session of a user.
    Revoke {
        /// Session id (`ses_…`).
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        id: Option<String>,
        /// Revoke all of this user's sessions.
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user; the password comes from a prompt or standard input.
    Add {
        /// Login name.
        name: String,
        /// Read the password from one line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The user's e-mail address (it gets a verification link).
        #[arg(long, value_name = "ADDRESS")]
        email: Option<String>,
        /// Give the user the admin role (the operator's console).
        #[arg(long)]
        admin: bool,
    },
    /// Grant or withdraw the admin role (who may sign in to the console).
    Admin {
        /// Login name.
        name: String,
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Change a user's password.
    Passwd {
        /// Login name.
        name: String,
        /// Read the password from one line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Also revoke every session of the user (by default they stay
        /// logged in where they are; use this after a suspected compromise).
        #[arg(long)]
        revoke_sessions: bool,
    },
    /// Disable a user and revoke all their sessions.
    Disable {
        /// Login name.
        name: String,
    },
    /// Enable a disabled user.
    Enable {
        /// Login name.
        name: String,
    },
    /// Delete a user: every session revoked, the name freed; the audit
    /// trail keeps their events.
    Delete {
        /// Login name.
        name: String,
    },
    /// List users.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Add a webhook; prints its id and (once) its signing secret.
    Add {
        /// Where events are posted (http or https).
        url: String,
        /// An event type it wants (repeatable): user.created, session.ended, ...
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List webhooks.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a webhook and its deliveries.
    Remove {
        /// The webhook's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Register a client; prints its id and (once) its secret.
    Add {
        /// A name for people.
        name: String,
        /// Scopes the client may request for itself (space-separated).
        #[arg(long, default_value = "")]
        scope: String,
        /// A public client (no secret), for native apps, single-page apps and CLIs.
        #[arg(long)]
        public: bool,
        /// A redirect URI for the authorization code flow (repeatable).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Trusted by the operator: its users are not asked for consent.
        #[arg(long)]
        first_party: bool,
        /// Where OpenID Connect back-channel logout tokens are posted when a
        /// session with this client's tokens ends.
        #[arg(long = "backchannel-logout-uri")]
        backchannel_logout_uri: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List clients.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a client: it cannot authenticate again, its own tokens stop
    /// working at once, and its users' sessions are revoked.
    Remove {
        /// The client_id.
        id: String,
    },
    /// Disable a client (as `remove`, but `enable` undoes it).
    Disable {
        /// The client_id.
        id: String,
    },
    /// Enable a disabled client again (its revoked sessions stay revoked).
    Enable {
        /// The client_id.
        id: String,
    },
    /// Give a confidential client a new secret (printed once); the old one
    /// and the client's own tokens issued with it stop working.
    RotateSecret {
        /// The client_id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set the scopes a client may get (space-separated); its own tokens
    /// issued before stop working.
    SetScope {
        /// The client_id.
        id: String,
        /// The new scopes.
        scope: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List signing keys: next (published, not signing yet), active, retiring, retired.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Seal, under LATCHKEY_MASTER_KEY, every signing key and secret stored
    /// unsealed (made before the master key was set). A server with a master
    /// key refuses to start while any is left.
    Seal,
    /// Pre-publish a new key, switch signing to it after a delay, and retire
    /// the current key once every token it signed has expired.
    Rotate {
        /// How long the new key is published before it signs: longer than
        /// verifiers cache the JWKS (the JWKS says `max-age=300`).
        #[arg(long, default_value = "15m", value_parser = parse_delay)]
        activate_in: i64,
    },
}

fn parse_delay(text: &str) -> Result<i64, String> {
    latchkey_server::config::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration (e.g. 15m)"))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("latchkey: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(config) = e.downcast_ref::<ConfigError>() {
                eprintln!("latchkey: {config}");
                return ExitCode::from(2);
            }
            eprintln!("latchkey: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LATCHKEY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LATCHKEY_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.with_target(false).init();
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    let text = match path {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| ConfigError {
            setting: format!("--config {}", path.display()),
            message: e.to_string(),
        })?),
        None => None,
    };
    let display = path.map(|p| p.display().to_string()).unwrap_or_default();
    let loaded = Config::load(
        text.as_deref().map(|t| (display.as_str(), t)),
        std::env::vars(),
    )?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    Ok(loaded.config)
}

/// Opens the configured database: the one place a backend is chosen.
async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    let url = &config.database_url;
    let store: Arc<dyn Store> = if url.starts_with("sqlite:") {
        Arc::new(
            SqliteStore::open(url)
                .await
                .with_context(|| format!("LATCHKEY_DATABASE_URL: cannot open {}", redacted(url)))?,
        )
    } else {
        Arc::new(
            PgStore::open(url)
                .await
                .with_context(|| format!("LATCHKEY_DATABASE_URL: cannot open {}", redacted(url)))?,
        )
    };
    // Names stored before they were folded to their canonical form.
    let renamed = canonicalise_stored_names(store.as_ref())
        .await
        .context("cannot read the stored usernames")?;
    if renamed > 0 {
        tracing::info!(renamed, "usernames folded to their canonical form");
    }
    Ok(store)
}

/// Connects to Redis when `LATCHKEY_REDIS_URL` is set.
async fn open_coordinator(config: &Config) -> Result<Option<Arc<dyn Coordinator>>> {
    let Some(url) = &config.redis_url else {
        return Ok(None);
    };
    let redis = RedisCoordinator::connect(url, &config.redis_prefix)
        .await
        .with_context(|| format!("LATCHKEY_REDIS_URL: cannot connect to {}", redacted(url)))?;
    Ok(Some(Arc::new(redis)))
}

/// The services every command runs on, composed as the server composes
/// them: sessions the command line revokes go on the Redis deny-list too
/// (when Redis is configured), so that running servers learn of them at
/// once; events carry the actor `cli`.
async fn services(config: Config, store: Arc<dyn Store>) -> Result<Services> {
    let coordinator = open_coordinator(&config).await?;
    Ok(Services::build(
        config,
        store,
        coordinator,
        Arc::new(SystemClock),
    ))
}

/// A database URL without its password, for logs.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = load_config(cli.config.as_ref())?;
    let store = open_store(&config).await?;
    match cli.command {
        Command::Serve => serve(config, store).await,
        Command::User(command) => user(command, &services(config, store).await?).await,
        Command::Client(command) => client(command, &services(config, store).await?).await,
        Command::Webhook(command) => webhook(command, &services(config, store).await?).await,
        Command::Keys(KeysCommand::List { json }) => keys_list(store.as_ref(), json).await,
        Command::Keys(KeysCommand::Rotate { activate_in }) => {
            keys_rotate(&services(config, store).await?, activate_in).await
        }
        Command::Keys(KeysCommand::Seal) => keys_seal(&services(config, store).await?).await,
        Command::Sessions(command) => sessions(command, &services(config, store).await?).await,
        Command::Audit {
            user,
            kind,
            limit,
            json,
        } => audit(store.as_ref(), user, kind, limit, json).await,
    }
}

async fn serve(config: Config, store: Arc<dyn Store>) -> Result<()> {
    let listen = config.listen;
    let database = redacted(&config.database_url);
    let coordinator = open_coordinator(&config).await?;
    let state = AppState::new(config, store, coordinator)
        .await
        .context("cannot load the signing keys")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ConfigError {
            setting: "LATCHKEY_LISTEN".into(),
            message: format!("cannot listen on {listen}: {e}"),
        })?;
    let local = listener.local_addr().context("no local address")?;
    let keyring = state.issuer.keyring();
    tracing::info!(
        "latchkey listening on http://{local}, database {database}, signing key {} ({})",
        keyring.signing(now()).kid(),
        keyring.signing(now()).alg()
    );
    match state.passkeys.off() {
        Some(why) => tracing::warn!("{why}"),
        None => tracing::info!(
            "passkeys on: relying-party id {}, origin {}",
            state.config().rp_id,
            state.config().issuer
        ),
    }
    latchkey_app::maintenance::spawn(state.app().clone());
    let transport = latchkey_server::HttpTransport::for_config(state.config())
        .map_err(|e| anyhow::anyhow!("cannot make the delivery client: {e}"))?;
    match &state.config().smtp_url {
        Some(_) => tracing::info!(from = %state.config().mail_from, "mail on"),
        None => tracing::info!(
            "mail off (LATCHKEY_SMTP_URL unset): the events carry the links for an application to mail"
        ),
    }
    latchkey_app::delivery::spawn(state.app().clone(), Arc::new(transport));
    let limits = latchkey_server::Limits::of(state.config());
    latchkey_server::serve(listener, app(state), limits, shutdown_signal()).await;
    tracing::info!("latchkey stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Reads a new password: one line of standard input, or twice from the terminal.
fn read_password(from_stdin: bool) -> Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read standard input")?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        line.strip_suffix('\r').unwrap_or(line).to_owned()
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to prompt on; pass the password with --password-stdin");
        }
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let again = rpassword::prompt_password("Again: ").context("cannot read the password")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    };
    check_new_password(&password)?;
    Ok(password)
}

async fn find_user(users: &Users, name: &str) -> Result<User> {
    match users.by_name(name).await {
        Err(ServiceError::NotFound) => bail!("no user named {name:?}"),
        other => Ok(other?),
    }
}

async fn user(command: UserCommand, services: &Services) -> Result<()> {
    let (users, store) = (&services.users, &services.store);
    let cli = Actor::cli();
    match command {
        UserCommand::Add {
            name,
            password_stdin,
            email,
            admin,
        } => {
            // The name and the address are checked before a password is
            // asked for.
            let canonical = canonical_username(&name)?;
            if let Some(email) = &email {
                latchkey_core::account::check_email(email)?;
            }
            let password = read_password(password_stdin)?;
            match users.add(&name, password, email.as_deref(), &cli).await {
                Ok(user) if admin => {
                    let user = users.set_admin(&user, true, &cli).await?;
                    println!("user {} added (id {}), an admin", user.username, user.id);
                    if let Some(email) = &user.email {
                        println!("a verification link was sent to {email}");
                    }
                }
                Ok(user) => match &user.email {
                    Some(email) => println!(
                        "user {} added (id {}); a verification link was sent to {email}",
                        user.username, user.id
                    ),
                    None => println!("user {} added (id {})", user.username, user.id),
                },
                Err(ServiceError::Taken) => bail!("a user named {canonical:?} already exists"),
                Err(ServiceError::EmailTaken) => bail!("another user has this e-mail address"),
                Err(e) => return Err(e.into()),
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
            revoke_sessions,
        } => {
            let user = find_user(users, &name).await?;
            let password = read_password(password_stdin)?;
            let revoked = users
                .set_password(&user, password, revoke_sessions, &cli)
                .await?;
            if revoke_sessions {
                println!(
                    "password of {name} changed; {} session(s) revoked",
                    revoked.len()
                );
            } else {
                println!(
                    "password of {name} changed; their sessions stay (--revoke-sessions ends them)"
                );
            }
        }
        UserCommand::Admin { name, state } => {
            let user = find_user(users, &name).await?;
            let on = state == "on";
            users.set_admin(&user, on, &cli).await?;
            if on {
                println!("{name} is an admin");
            } else {
                println!("{name} is no longer an admin");
            }
        }
        UserCommand::Disable { name } => {
            let user = find_user(users, &name).await?;
            users.set_disabled(&user, true, &cli).await?;
            println!("user {name} disabled; all their sessions are revoked");
        }
        UserCommand::Enable { name } => {
            let user = find_user(users, &name).await?;
            users.set_disabled(&user, false, &cli).await?;
            println!("user {name} enabled");
        }
        UserCommand::Delete { name } => {
            let user = find_user(users, &name).await?;
            users.delete(&user, &cli).await?;
            println!("user {name} deleted; all their sessions are revoked");
        }
        UserCommand::List { json } => {
            let users = store.list_users().await?;
            if json {
                let list: Vec<_> = users
                    .iter()
                    .map(|u| serde_json::json!({"id": u.id, "username": u.username, "email": u.email, "email_verified": u.email_verified, "admin": u.admin, "disabled": u.disabled, "created_at": u.created_at}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{:<24} {:<28} {:<8}", "USERNAME", "ID", "STATUS")?;
                for u in users {
                    let status = match (u.disabled, u.admin) {
                        (true, _) => "disabled",
                        (false, true) => "admin",
                        (false, false) => "active",
                    };
                    writeln!(out, "{:<24} {:<28} {:<8}", u.username, u.id, status)?;
                }
            }
        }
    }
    Ok(())
}

async fn webhook(command: WebhookCommand, services: &Services) -> Result<()> {
    let webhooks = &services.webhooks;
    match command {
        WebhookCommand::Add { url, events, json } => {
            let added = webhooks.add(&url, &events, &Actor::cli()).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"id": added.webhook.id, "url": added.webhook.url,
                        "events": added.webhook.events, "secret": added.secret})
                );
            } else {
                println!("id: {}", added.webhook.id);
                println!("secret: {}", added.secret);
                eprintln!("(the secret is shown only this once)");
            }
        }
        WebhookCommand::List { json } => {
            let list = webhooks.list().await?;
            if json {
                let list: Vec<_> = list
                    .iter()
                    .map(|w| serde_json::json!({"id": w.id, "url": w.url, "events": w.events}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for w in list {
                    println!("{}  {}  {}", w.id, w.url, w.events.join(","));
                }
            }
        }
        WebhookCommand::Remove { id } => {
            webhooks.remove(&id, &Actor::cli()).await?;
            println!("webhook {id} removed");
        }
    }
    Ok(())
}

async fn client(command: ClientCommand, services: &Services) -> Result<()> {
    let (clients, store, config) = (&services.clients, &services.store, &services.config);
    let cli = Actor::cli();
    let missing = |id: &str, e: ServiceError| match e {
        ServiceError::NotFound => anyhow::anyhow!("no client with id {id:?}"),
        e => e.into(),
    };
    match command {
        ClientCommand::Remove { id } => {
            clients
                .remove(&id, &cli)
                .await
                .map_err(|e| missing(&id, e))?;
            println!("client {id} removed");
        }
        ClientCommand::Disable { id } => {
            clients
                .set_disabled(&id, true, &cli)
                .await
                .map_err(|e| missing(&id, e))?;
            println!("client {id} disabled");
        }
        ClientCommand::Enable { id } => {
            clients
                .set_disabled(&id, false, &cli)
                .await
                .map_err(|e| missing(&id, e))?;
            println!("client {id} enabled");
        }
        ClientCommand::RotateSecret { id, json } => {
            let rng = SystemRandom::new();
            let keys = load_refresh_keys(store.as_ref(), config.master_key.as_ref(), &rng).await?;
            let (client, secret) = clients
                .rotate_secret(&id, &keys, &cli)
                .await
                .map_err(|e| missing(&id, e))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"client_id": client.id, "client_secret": secret})
                );
            } else {
                println!("client_id: {}", client.id);
                println!("client_secret: {secret}");
                eprintln!("(the secret is shown only this once)");
            }
        }
        ClientCommand::SetScope { id, scope } => {
            let client = clients
                .set_scope(&id, &scope, &cli)
                .await
                .map_err(|e| missing(&id, e))?;
            println!("client {id} scope: {}", client.scope);
        }
        ClientCommand::Add {
            name,
            scope,
            public,
            redirect_uris,
            first_party,
            backchannel_logout_uri,
            json,
        } => {
            let keys = if public {
                None
            } else {
                let rng = SystemRandom::new();
                Some(load_refresh_keys(store.as_ref(), config.master_key.as_ref(), &rng).await?)
            };
            let new = NewClient {
                name: &name,
                scope: &scope,
                redirect_uris: &redirect_uris,
                first_party,
                backchannel_logout_uri: backchannel_logout_uri.as_deref(),
            };
            let (client, secret) = clients.add(&new, keys.as_ref(), &Actor::cli()).await?;
            if json {
                let mut doc = serde_json::json!({"client_id": client.id, "name": name, "scope": client.scope,
                    "redirect_uris": client.redirect_uris, "first_party": client.first_party,
                    "backchannel_logout_uri": client.backchannel_logout_uri});
                if let Some(secret) = &secret {
                    doc["client_secret"] = serde_json::json!(secret);
                }
                println!("{doc}");
            } else {
                println!("client_id: {}", client.id);
                if let Some(secret) = &secret {
                    println!("client_secret: {secret}");
                    eprintln!("(the secret is shown only this once)");
                }
            }
        }
        ClientCommand::List { json } => {
            let clients = clients.list().await?;
            if json {
                let list: Vec<_> = clients
                    .iter()
                    .map(|c| serde_json::json!({"client_id": c.id, "name": c.name, "scope": c.scope, "confidential": c.secret_hash.is_some(),
                        "redirect_uris": c.redirect_uris, "first_party": c.first_party, "disabled": c.disabled}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "{:<28} {:<20} {:<12} SCOPE",
                    "CLIENT_ID", "NAME", "TYPE"
                )?;
                for c in clients {
                    let kind = match (c.disabled, c.secret_hash.is_some()) {
                        (true, _) => "disabled",
                        (false, true) => "confidential",
                        (false, false) => "public",
                    };
                    writeln!(out, "{:<28} {:<20} {:<12} {}", c.id, c.name, kind, c.scope)?;
                }
            }
        }
    }
    Ok(())
}

fn key_state(key: &latchkey_core::store::StoredKey, now: i64) -> &'static str {
    match key.retires_at {
        Some(at) if at <= now => "retired",
        Some(_) => "retiring",
        None if key.activates_at > now => "next",
        None => "active",
    }
}

async fn keys_list(store: &dyn Store, json: bool) -> Result<()> {
    let keys = store.signing_keys().await?;
    let now = now();
    if json {
        let list: Vec<_> = keys
            .iter()
            .map(|k| {
                serde_json::json!({"kid": k.kid, "alg": k.alg, "state": key_state(k, now), "created_at": k.created_at,
                    "activates_at": k.activates_at, "retires_at": k.retires_at})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        println!(
            "{:<46} {:<6} {:<9} {:<20} RETIRES",
            "KID", "ALG", "STATE", "SIGNS FROM"
        );
        for k in &keys {
            let retires = k.retires_at.map(timestamp).unwrap_or_default();
            println!(
                "{:<46} {:<6} {:<9} {:<20} {}",
                k.kid,
                k.alg,
                key_state(k, now),
                timestamp(k.activates_at),
                retires
            );
        }
    }
    Ok(())
}

async fn keys_rotate(services: &Services, activate_in: i64) -> Result<()> {
    let delay = latchkey_app::keyring::retirement_delay(&services.config);
    let keys = &services.keys;
    let key = keys.rotate(activate_in, &Actor::cli()).await?;
    println!(
        "key {} ({}) is published now and signs from {} UTC; the current key retires {} s after that",
        key.kid,
        key.alg,
        timestamp(key.activates_at),
        delay
    );
    Ok(())
}

async fn keys_seal(services: &Services) -> Result<()> {
    let keys = &services.keys;
    let sealed = keys.seal(&Actor::cli()).await?;
    if sealed.is_empty() {
        println!("every key is sealed already");
    }
    for what in sealed {
        println!("sealed {what}");
    }
    Ok(())
}

async fn sessions(command: SessionsCommand, services: &Services) -> Result<()> {
    let (users, sessions, store) = (&services.users, &services.sessions, &services.store);
    let cli = Actor::cli();
    match command {
        SessionsCommand::List { user, json } => {
            let user = find_user(users, &user).await?;
            let sessions = store.live_sessions(&user.id, now()).await?;
            if json {
                let list: Vec<_> = sessions
                    .iter()
                    .map(|s| {
                        serde_json::json!({"id": s.id, "created_at": s.created_at, "last_used_at": s.last_used_at,
                            "expires_at": s.expires_at, "ip": s.ip, "user_agent": s.user_agent,
                            "client_id": s.client_id, "scope": s.scope})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "{:<28} {:<20} {:<20} {:<16} USER AGENT",
                    "SESSION", "CREATED", "LAST USED", "IP"
                )?;
                for s in sessions {
                    writeln!(
                        out,
                        "{:<28} {:<20} {:<20} {:<16} {}",
                        s.id,
                        timestamp(s.created_at),
                        timestamp(s.last_used_at),
                        s.ip,
                        s.user_agent
                    )?;
                }
            }
        }
        SessionsCommand::Revoke { id: Some(id), .. } => {
            if id.contains('\0') {
                bail!("no session {id:?}");
            }
            let Some((session, _)) = store.session_with_user(&id).await? else {
                bail!("no session {id:?}");
            };
            if sessions
                .revoke(&id, &session.user_id, RevocationReason::Admin, &cli)
                .await?
            {
                println!("session {id} revoked");
            } else {
                println!("session {id} was already revoked");
            }
        }
        SessionsCommand::Revoke { id: None, user } => {
            let name = user.context("give a session id or --user NAME")?;
            let user = find_user(users, &name).await?;
            let revoked = sessions
                .revoke_all(&user.id, RevocationReason::Admin, &cli)
                .await?;
            println!("{} sessions of {name} revoked", revoked.len());
        }
    }
    Ok(())
}

async fn audit(
    store: &dyn Store,
    user: Option<String>,
    kind: Option<String>,
    limit: u32,
    json: bool,
) -> Result<()> {
    let user_id = match user {
        Some(name) => Some(
            latchkey_app::service::find_user(store, &name)
                .await?
                .with_context(|| format!("no user named {name:?}"))?
                .id,
        ),
        None => None,
    };
    let events = store
        .audit_events(&AuditFilter {
            user_id,
            kind,
            limit,
            ..AuditFilter::default()
        })
        .await?;
    let mut out = std::io::stdout().lock();
    if json {
        for e in events {
            let line = serde_json::json!({"at": e.at, "kind": e.kind, "user_id": e.user_id, "session_id": e.session_id,
                "client_id": e.client_id, "ip": e.ip, "user_agent": e.user_agent, "detail": e.detail});
            writeln!(out, "{line}")?;
        }
    } else {
        writeln!(
            out,
            "{:<20} {:<17} {:<28} {:<28} {:<16} DETAIL",
            "TIME", "KIND", "USER", "SESSION", "IP"
        )?;
        for e in events {
            writeln!(
                out,
                "{:<20} {:<17} {:<28} {:<28} {:<16} {}",
                timestamp(e.at),
                e.kind,
                e.user_id.unwrap_or_default(),
                e.session_id.unwrap_or_default(),
                e.ip.unwrap_or_default(),
                e.detail
            )?;
        }
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) from Unix seconds (the number itself when
/// out of the calendar's range).
fn timestamp(secs: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|at| at.format(FORMAT).ok())
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(1_795_346_478), "2026-11-22 11:21:18");
        assert_eq!(timestamp(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(timestamp(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redacted("postgres://u:secret@db/x"),
            "postgres://u:***@db/x"
        );
        assert_eq!(redacted("sqlite://latchkey.db"), "sqlite://latchkey.db");
    }
}
