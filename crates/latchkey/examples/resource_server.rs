//! An API protected by Latchkey access tokens, verified offline.
//!
//! `ISSUER=http://127.0.0.1:8080 LISTEN=127.0.0.1:3000 cargo run --example resource_server`
//! With `FEED_CLIENT_ID` and `FEED_CLIENT_SECRET` (a confidential client from
//! `latchkey client add`), it follows the revocation feed every `FEED_INTERVAL_MS`.
//! DPoP-bound tokens are checked against `PUBLIC_URL` (by default the
//! address it listens on, `http://` + `LISTEN`). `/payments` needs two
//! factors, signed in within five minutes: a weaker token gets RFC 9470's
//! `insufficient_user_authentication` challenge.

use axum::{Router, routing::get};
use latchkey_verify::{Acr, Claims, Options, RemoteVerifier};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let listener = tokio::net::TcpListener::bind(env("LISTEN", "127.0.0.1:3000")).await?;
    let public_url = env("PUBLIC_URL", &format!("http://{}", listener.local_addr()?));
    let verifier = RemoteVerifier::discover_with_options(
        &env("ISSUER", "http://127.0.0.1:8080"),
        "latchkey",
        Options::default().public_url(&public_url),
    )
    .await?;
    if let (Ok(id), Ok(secret)) = (
        std::env::var("FEED_CLIENT_ID"),
        std::env::var("FEED_CLIENT_SECRET"),
    ) {
        let every = std::time::Duration::from_millis(env("FEED_INTERVAL_MS", "5000").parse()?);
        verifier.follow_revocations(&id, &secret, every);
    }
    let payments = Router::new()
        .route(
            "/payments",
            get(|Claims(c): Claims| async move { format!("payments of {}", c.sub) }),
        )
        .layer(
            verifier
                .layer()
                .require_scope("profile")
                .require_acr(Acr::Mfa)
                .max_age(std::time::Duration::from_secs(300)),
        );
    let app = Router::new()
        .route(
            "/hello",
            get(|Claims(c): Claims| async move { format!("hello {}", c.sub) }),
        )
        .layer(verifier.layer().require_scope("profile"))
        .merge(payments);
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
