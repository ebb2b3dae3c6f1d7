//! Passkeys (SPEC §12): registering, naming, listing and removing a signed-in
//! user's discoverable WebAuthn credentials, and signing in with one alone.
//!
//! The WebAuthn ceremonies are `webauthn-rs`'s; this flow keeps their state
//! in the database ([`PasskeyStore`]) under the SHA-256 of the challenge,
//! which the browser's answer carries back in its client data: any instance
//! finishes a ceremony another started, once, within five minutes.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use data_encoding::BASE64URL_NOPAD;
use latchkey_core::id::random_id;
use latchkey_core::refresh::TokenHash;
use latchkey_core::store::{
    Client, PasskeyRecord, PasskeyStore, User, UserStore, WebauthnCeremony,
};
use latchkey_core::strength::AuthMethod;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

use crate::config::Config;
use crate::service::{Actor, Attempts, Issued, Refusal, RequestContext, TokenIssuer, address_key};

/// How long a ceremony waits for its answer, in seconds.
pub const CEREMONY_TTL: i64 = 300;
/// Ceremonies waiting at once, across every instance: a flood of option
/// requests from many addresses fills this, never the disk.
pub const MAX_WAITING_CEREMONIES: u64 = 50_000;
/// Passkeys one user may hold.
pub const MAX_PASSKEYS_PER_USER: u32 = 20;
/// The longest name of a passkey, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// The largest answer accepted from a browser, in bytes of JSON.
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

const REFUSED: &str = "the passkey was not accepted";

/// A passkey as its user sees it.
#[derive(Debug, Clone, Serialize)]
pub struct PasskeyView {
    /// Its id (`pk_…`).
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was added, Unix seconds.
    pub created_at: i64,
    /// When it last signed its user in.
    pub last_used_at: Option<i64>,
}

impl From<&PasskeyRecord> for PasskeyView {
    fn from(record: &PasskeyRecord) -> Self {
        Self {
            id: record.id.clone(),
            name: record.name.clone(),
            created_at: record.created_at,
            last_used_at: record.last_used_at,
        }
    }
}

/// The one field of the client data this flow reads before the library
/// checks the rest.
#[derive(Deserialize)]
struct ClientData {
    challenge: String,
}

/// Passkeys: off (with the reason) when the relying-party id cannot be one.
pub struct Passkeys {
    issuer: Arc<TokenIssuer>,
    users: Arc<dyn UserStore>,
    passkeys: Arc<dyn PasskeyStore>,
    attempts: Attempts,
    webauthn: Result<Webauthn, String>,
}

/// Why passkeys are off under `config`, if they are: WebAuthn refuses an IP
/// address as a relying-party id, and browsers allow it only in a secure
/// context (HTTPS, or `http://localhost`).
pub fn passkeys_off(config: &Config) -> Option<String> {
    build(config).err()
}

fn build(config: &Config) -> Result<Webauthn, String> {
    let rp_id = config.rp_id.as_str();
    if rp_id.parse::<std::net::IpAddr>().is_ok() || rp_id.starts_with('[') {
        return Err(format!(
            "passkeys are off: the relying-party id {rp_id:?} is an IP address, which WebAuthn \
             refuses; serve the issuer under a name (e.g. LATCHKEY_ISSUER=http://localhost:8080) \
             or set LATCHKEY_RP_ID"
        ));
    }
    let origin = Url::parse(&config.issuer).map_err(|e| format!("passkeys are off: {e}"))?;
    WebauthnBuilder::new(rp_id, &origin)
        .and_then(|b| {
            b.rp_name("Latchkey")
                .timeout(Duration::from_secs(CEREMONY_TTL.unsigned_abs()))
                .build()
        })
        .map_err(|e| format!("passkeys are off: {e}"))
}

/// The SHA-256 of a challenge, the key its ceremony is kept under.
fn challenge_hash(challenge: &[u8]) -> TokenHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, challenge).as_ref());
    TokenHash(out)
}

/// The challenge a browser's answer carries back, from its client data.
fn answered_challenge(client_data_json: &[u8]) -> Option<TokenHash> {
    let data: ClientData = serde_json::from_slice(client_data_json).ok()?;
    let bytes = BASE64URL_NOPAD
        .decode(data.challenge.trim_end_matches('=').as_bytes())
        .ok()?;
    Some(challenge_hash(&bytes))
}

/// A passkey's name: trimmed, 1 to 64 characters, no control characters.
fn checked_name(name: &str) -> Result<String, Refusal> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(Refusal::invalid_request(format!(
            "a passkey's name is 1 to {MAX_NAME_CHARS} characters, none of them control characters"
        )));
    }
    Ok(name.to_owned())
}

impl Passkeys {
    /// Passkeys of `users`, kept in `passkeys`, sign-ins counted by
    /// `attempts`, sessions opened by `issuer`.
    pub fn new(
        issuer: Arc<TokenIssuer>,
        users: Arc<dyn UserStore>,
        passkeys: Arc<dyn PasskeyStore>,
        attempts: Attempts,
    ) -> Self {
        let webauthn = build(issuer.config());
        Self {
            issuer,
            users,
            passkeys,
            attempts,
            webauthn,
        }
    }

    /// Why passkeys are off, if they are.
    pub fn off(&self) -> Option<&str> {
        self.webauthn.as_ref().err().map(String::as_str)
    }

    fn webauthn(&self) -> Result<&Webauthn, Refusal> {
        self.webauthn
            .as_ref()
            .map_err(|why| Refusal::PasskeysOff(why.clone()))
    }

    /// The opaque user handle of `user_id` in their credentials: a keyed
    /// hash, so that it names no one outside this server.
    fn user_handle(&self, user_id: &str) -> Uuid {
        let hash = self
            .issuer
            .refresh_keys()
            .code_hash(&format!("webauthn-user-handle:{user_id}"));
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&hash.0[..16]);
        Uuid::from_bytes(bytes)
    }

    /// Keeps a ceremony's state until its answer; `challenge` is what the
    /// browser signs.
    async fn keep<S: Serialize>(
        &self,
        challenge: &[u8],
        user_id: Option<&str>,
        state: &S,
    ) -> Result<(), Refusal> {
        let now = self.issuer.now();
        let ceremony = WebauthnCeremony {
            hash: challenge_hash(challenge),
            user_id: user_id.map(str::to_owned),
            state: serde_json::to_string(state).map_err(Refusal::internal)?,
            expires_at: now + CEREMONY_TTL,
        };
        if !self
            .passkeys
            .insert_ceremony(&ceremony, MAX_WAITING_CEREMONIES, now)
            .await?
        {
            // Too many waiting at once: try again once some have ended.
            return Err(Refusal::Busy { retry_after: 5 });
        }
        Ok(())
    }

    /// Takes the ceremony the answer's client data names; `None` if there
    /// is none (unknown, used, or ended).
    async fn take(&self, client_data_json: &[u8]) -> Result<Option<WebauthnCeremony>, Refusal> {
        let Some(hash) = answered_challenge(client_data_json) else {
            return Ok(None);
        };
        Ok(self
            .passkeys
            .take_ceremony(&hash, self.issuer.now())
            .await?)
    }

    /// Counts an options request against the caller's address, so that one
    /// address cannot fill the table of waiting ceremonies.
    async fn count_options(&self, ctx: &RequestContext) -> Result<(), Refusal> {
        let key = format!("passkey-options:{}", address_key(&ctx.ip));
        self.attempts
            .take_per_address(&key, ctx, "passkey options limit reached")
            .await?;
        Ok(())
    }

    /// `POST /auth/passkeys/options`: creation options for a new passkey of
    /// `user` (`{"publicKey": …}`): a discoverable credential, user
    /// verification required, none of the user's own passkeys again.
    pub async fn registration_options(
        &self,
        user: &User,
        ctx: &RequestContext,
    ) -> Result<Value, Refusal> {
        let webauthn = self.webauthn()?;
        self.count_options(ctx).await?;
        let held = self.passkeys.passkeys_of(&user.id).await?;
        if held.len() >= MAX_PASSKEYS_PER_USER as usize {
            return Err(Refusal::invalid_request(format!(
                "a user holds at most {MAX_PASSKEYS_PER_USER} passkeys; remove one first"
            )));
        }
        let exclude = held.iter().map(|p| p.credential_id.clone()).collect();
        let (options, state) = webauthn
            .start_passkey_registration(
                self.user_handle(&user.id),
                &user.username,
                &user.username,
                Some(exclude),
            )
            .map_err(Refusal::internal)?;
        self.keep(&options.public_key.challenge, Some(&user.id), &state)
            .await?;
        let mut options = serde_json::to_value(&options).map_err(Refusal::internal)?;
        // A passkey is found by the browser, no username typed: ask for a
        // discoverable credential (the library's default only prefers one).
        let selection = &mut options["publicKey"]["authenticatorSelection"];
        selection["residentKey"] = "required".into();
        selection["requireResidentKey"] = true.into();
        selection["userVerification"] = "required".into();
        Ok(options)
    }

    /// `POST /auth/passkeys`: registers the answer to this user's creation
    /// options under `name`.
    pub async fn register(
        &self,
        user: &User,
        name: &str,
        credential: &RegisterPublicKeyCredential,
        ctx: &RequestContext,
    ) -> Result<PasskeyView, Refusal> {
        let webauthn = self.webauthn()?;
        let name = checked_name(name)?;
        let ceremony = self
            .take(&credential.response.client_data_json)
            .await?
            .filter(|c| c.user_id.as_deref() == Some(user.id.as_str()))
            .ok_or_else(|| {
                Refusal::invalid_grant("no registration of yours waits for this answer")
            })?;
        let state: PasskeyRegistration =
            serde_json::from_str(&ceremony.state).map_err(Refusal::internal)?;
        let passkey = webauthn
            .finish_passkey_registration(credential, &state)
            .map_err(|e| self.refused(e))?;
        let now = self.issuer.now();
        let record = PasskeyRecord {
            id: random_id("pk_", self.issuer.rng())?,
            user_id: user.id.clone(),
            credential_id: passkey.cred_id().to_vec(),
            name,
            credential: serde_json::to_string(&passkey).map_err(Refusal::internal)?,
            counter: 0,
            created_at: now,
            last_used_at: None,
        };
        if !self
            .passkeys
            .insert_passkey(&record, MAX_PASSKEYS_PER_USER)
            .await?
        {
            return Err(Refusal::invalid_request(
                "this passkey is registered already, or the user holds too many",
            ));
        }
        self.issuer
            .audit(
                "passkey_added",
                Some(&user.id),
                None,
                None,
                ctx,
                &format!("{} ({})", record.id, record.name),
            )
            .await;
        Ok(PasskeyView::from(&record))
    }

    /// A refusal for a ceremony the library refused, logged for operators.
    fn refused(&self, error: WebauthnError) -> Refusal {
        tracing::info!(%error, "passkey ceremony refused");
        Refusal::invalid_grant(REFUSED)
    }

    /// The user's passkeys, oldest first.
    pub async fn list(&self, user_id: &str) -> Result<Vec<PasskeyView>, Refusal> {
        let held = self.passkeys.passkeys_of(user_id).await?;
        Ok(held.iter().map(PasskeyView::from).collect())
    }

    /// The user's passkeys, as stored (the admin API lists them).
    pub async fn records(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, Refusal> {
        Ok(self.passkeys.passkeys_of(user_id).await?)
    }

    /// Removes the user's passkey `id`; false if they have none such.
    /// `actor` is the user themselves, or whoever acts through the admin API.
    pub async fn remove(&self, user_id: &str, id: &str, actor: &Actor) -> Result<bool, Refusal> {
        let removed = self.passkeys.delete_passkey(user_id, id).await?;
        if removed {
            self.issuer
                .events()
                .audit("passkey_removed", Some(user_id), None, actor, id)
                .await;
        }
        Ok(removed)
    }

    /// `POST /auth/passkey/options`: request options for a sign-in with a
    /// discoverable passkey, user verification required.
    pub async fn sign_in_options(&self, ctx: &RequestContext) -> Result<Value, Refusal> {
        let webauthn = self.webauthn()?;
        self.count_options(ctx).await?;
        let (options, state) = webauthn
            .start_discoverable_authentication()
            .map_err(Refusal::internal)?;
        self.keep(&options.public_key.challenge, None, &state)
            .await?;
        // Asked for by a button, not by an input's autofill: no mediation.
        Ok(serde_json::json!({ "publicKey": options.public_key }))
    }

    /// `POST /auth/passkey/login`: a new session for the user whose passkey
    /// signed the answer, with `scope` (through a first-party `client`).
    /// Failures count against the address like failed logins.
    pub async fn sign_in(
        &self,
        credential: &PublicKeyCredential,
        scope: Option<&str>,
        client: Option<&Client>,
        ctx: &RequestContext,
    ) -> Result<Issued, Refusal> {
        let webauthn = self.webauthn()?;
        let scope = self.issuer.user_scope(scope, client)?;
        let client_id = client.map(|c| c.id.as_str());
        let key = format!("passkey-login:{}", address_key(&ctx.ip));
        self.attempts
            .take_per_address(&key, ctx, "failed passkey sign-in limit reached")
            .await?;
        let user = self.verify(webauthn, credential, client_id, ctx).await?;
        self.attempts.give_back_per_address(&key).await;
        let issued = self
            .issuer
            .start_session(
                &user,
                client_id,
                &scope,
                ctx,
                "passkey",
                AuthMethod::Passkey,
            )
            .await?;
        issued.ok_or_else(|| Refusal::invalid_grant(REFUSED))
    }

    /// The user whose passkey signed `credential`, its use recorded.
    async fn verify(
        &self,
        webauthn: &Webauthn,
        credential: &PublicKeyCredential,
        client_id: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<User, Refusal> {
        let failed = |why: &str| {
            let why = why.to_owned();
            async move {
                self.issuer
                    .audit("login_failed", None, None, client_id, ctx, &why)
                    .await;
                Refusal::invalid_grant(REFUSED)
            }
        };
        let Some(ceremony) = self
            .take(&credential.response.client_data_json)
            .await?
            .filter(|c| c.user_id.is_none())
        else {
            return Err(failed("passkey: no sign-in waits for this answer").await);
        };
        let state: DiscoverableAuthentication =
            serde_json::from_str(&ceremony.state).map_err(Refusal::internal)?;
        let Ok((handle, credential_id)) = webauthn.identify_discoverable_authentication(credential)
        else {
            return Err(failed("passkey: the answer names no user").await);
        };
        let stored = self
            .passkeys
            .passkey_by_credential_id(credential_id)
            .await?
            .filter(|p| self.user_handle(&p.user_id) == handle);
        let Some(stored) = stored else {
            return Err(failed("passkey: unknown credential").await);
        };
        let mut passkey: Passkey =
            serde_json::from_str(&stored.credential).map_err(Refusal::internal)?;
        let result =
            match webauthn.finish_discoverable_authentication_v2(credential, state, &passkey) {
                Ok(result) => result,
                Err(WebauthnError::CredentialPossibleCompromise) => {
                    return Err(self.cloned(&stored, None, client_id, ctx).await);
                }
                Err(e) => {
                    let refusal = self.refused(e);
                    self.issuer
                        .audit(
                            "login_failed",
                            Some(&stored.user_id),
                            None,
                            client_id,
                            ctx,
                            "passkey: signature or flags refused",
                        )
                        .await;
                    return Err(refusal);
                }
            };
        passkey.update_credential(&result);
        let updated = serde_json::to_string(&passkey).map_err(Refusal::internal)?;
        let counter = result.counter();
        if !self
            .passkeys
            .record_passkey_use(&stored.id, &updated, counter, self.issuer.now())
            .await?
        {
            // Another sign-in recorded this counter or a later one first.
            return Err(self.cloned(&stored, Some(counter), client_id, ctx).await);
        }
        let user = self.users.user_by_id(&stored.user_id).await?;
        match user.filter(|u| !u.disabled) {
            Some(user) => Ok(user),
            None => Err(failed("passkey: user disabled").await),
        }
    }

    /// A counter that went backwards: refused, and audited as a possible
    /// cloned authenticator.
    async fn cloned(
        &self,
        stored: &PasskeyRecord,
        counter: Option<u32>,
        client_id: Option<&str>,
        ctx: &RequestContext,
    ) -> Refusal {
        let seen = counter.map_or_else(|| "not above".to_owned(), |c| c.to_string());
        self.issuer
            .audit(
                "passkey_counter_regressed",
                Some(&stored.user_id),
                None,
                client_id,
                ctx,
                &format!(
                    "{}: signature counter {seen} after {}: possibly a cloned authenticator",
                    stored.id, stored.counter
                ),
            )
            .await;
        Refusal::invalid_grant(REFUSED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_short_printable_text() {
        assert_eq!(checked_name("  Laptop  ").ok(), Some("Laptop".to_owned()));
        assert!(checked_name("").is_err());
        assert!(checked_name("   ").is_err());
        assert!(checked_name("a\u{7}b").is_err());
        assert!(checked_name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(checked_name(&"é".repeat(MAX_NAME_CHARS)).is_ok());
    }

    #[test]
    fn the_answer_names_its_challenge_by_hash() {
        let challenge = [7u8; 32];
        let data = format!(
            r#"{{"type":"webauthn.get","challenge":"{}","origin":"http://localhost"}}"#,
            BASE64URL_NOPAD.encode(&challenge)
        );
        assert_eq!(
            answered_challenge(data.as_bytes()),
            Some(challenge_hash(&challenge))
        );
        assert_eq!(answered_challenge(b"{}"), None);
        assert_eq!(answered_challenge(br#"{"challenge":"!!"}"#), None);
        assert_eq!(answered_challenge(b"not json"), None);
    }
}
