//! Calls a protected API with a Latchkey token pair that refreshes itself.
//!
//! `ISSUER=http://127.0.0.1:8080 API=http://127.0.0.1:3000/hello USERNAME=alice PASSWORD=… cargo run --example client`

use latchkey_client::TokenClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str| std::env::var(name).map_err(|_| format!("set {name}"));
    let client = TokenClient::login(&env("ISSUER")?, &env("USERNAME")?, &env("PASSWORD")?).await?;
    let api = env("API")?;
    let response = client.send(|http| http.get(&api)).await?;
    println!("{} {}", response.status().as_u16(), response.text().await?);
    Ok(())
}
