//! The authorization code flow with PKCE and OpenID Connect (SPEC §10): the
//! rules, once, for the HTTP pages and the token endpoint. A browser's
//! sign-in is itself a session of the user (its refresh token is the
//! sign-in cookie, never rotated), so it is listed and revocable like any
//! other; a code is single-use, lives [`CODE_TTL`] seconds, and is bound to
//! its client, redirect URI and challenge.

use latchkey_core::code::pkce_matches;
use latchkey_core::jwt::{self, IdClaims};
use latchkey_core::refresh::RefreshToken;
use latchkey_core::rotation::{RevocationReason, has_expired};
use latchkey_core::scope::Scope;
use latchkey_core::store::{AuthorizationCode, Client, Redemption, Session, User};

use super::Refusal;
use super::tokens::{Issued, Opening, RequestContext, TokenService};
use latchkey_core::id::random_id;

/// How long an authorization code lives, in seconds.
pub const CODE_TTL: i64 = 60;

/// What a code is issued for: everything the authorization request
/// established.
#[derive(Debug, Clone)]
pub struct CodeGrant<'a> {
    /// The user who authorized.
    pub user: &'a User,
    /// The client.
    pub client: &'a Client,
    /// The redirect URI the code goes to.
    pub redirect_uri: &'a str,
    /// The PKCE `S256` challenge.
    pub code_challenge: &'a str,
    /// The scope granted.
    pub scope: &'a Scope,
    /// The OpenID Connect `nonce`.
    pub nonce: Option<&'a str>,
    /// When the user signed in.
    pub auth_time: i64,
}

/// Whether `presented` is one of `registered`, exactly; a loopback redirect
/// (`http://127.0.0.1:PORT/…` or `http://[::1]:PORT/…`) matches whatever its
/// port (RFC 8252 §7.3).
pub fn redirect_uri_allowed(registered: &[String], presented: &str) -> bool {
    registered.iter().any(|r| {
        r == presented
            || match (url::Url::parse(r), url::Url::parse(presented)) {
                (Ok(r), Ok(p)) => {
                    let loopback = |u: &url::Url| {
                        u.scheme() == "http"
                            && matches!(u.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
                            || u.scheme() == "http"
                                && matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                    };
                    loopback(&r)
                        && loopback(&p)
                        && r.host() == p.host()
                        && r.path() == p.path()
                        && r.query() == p.query()
                        && p.fragment().is_none()
                        && p.username().is_empty()
                        && p.password().is_none()
                }
                _ => false,
            }
    })
}

impl TokenService {
    /// The user a browser's sign-in cookie names, if its session is live
    /// and the user enabled.
    pub async fn signed_in(&self, cookie: &str) -> Result<Option<(Session, User)>, Refusal> {
        let Some(token) = RefreshToken::parse(cookie) else {
            return Ok(None);
        };
        let now = self.now();
        let Some((record, session)) = self
            .store()
            .refresh_token(&self.refresh_keys().hash(&token))
            .await?
        else {
            return Ok(None);
        };
        let live = record.used_at.is_none()
            && !has_expired(record.expires_at, now)
            && session.revoked_at.is_none()
            && !has_expired(session.expires_at, now)
            && session.client_id.is_none();
        if !live {
            return Ok(None);
        }
        let user = self.store().user_by_id(&session.user_id).await?;
        Ok(user.filter(|u| !u.disabled).map(|u| (session, u)))
    }

    /// Whether `user` must be asked before `client` gets `scope`: never for
    /// a first-party client, else unless they agreed to all of it before.
    pub async fn needs_consent(
        &self,
        user: &User,
        client: &Client,
        scope: &Scope,
    ) -> Result<bool, Refusal> {
        if client.first_party {
            return Ok(false);
        }
        let granted = self.store().consent(&user.id, &client.id).await?;
        Ok(!granted
            .and_then(|g| Scope::parse(&g).ok())
            .is_some_and(|g| scope.is_subset(&g)))
    }

    /// Remembers that `user` agreed to `scope` for `client` (added to what
    /// they agreed to before).
    pub async fn remember_consent(
        &self,
        user: &User,
        client: &Client,
        scope: &Scope,
        ctx: &RequestContext,
    ) -> Result<(), Refusal> {
        let before = self.store().consent(&user.id, &client.id).await?;
        let all = match before.and_then(|g| Scope::parse(&g).ok()) {
            Some(before) => before.union(scope),
            None => scope.clone(),
        };
        self.store()
            .grant_consent(&user.id, &client.id, &all.to_string(), self.now())
            .await?;
        self.audit(
            "consent_granted",
            Some(&user.id),
            None,
            Some(&client.id),
            ctx,
            &scope.to_string(),
        )
        .await;
        Ok(())
    }

    /// Issues a code for `grant`; the code itself, which only its hash
    /// outlives in the database.
    pub async fn issue_code(&self, grant: &CodeGrant<'_>) -> Result<String, Refusal> {
        let (code, hash) = self.refresh_keys().new_code(self.rng())?;
        let record = AuthorizationCode {
            hash,
            client_id: grant.client.id.clone(),
            user_id: grant.user.id.clone(),
            redirect_uri: grant.redirect_uri.to_owned(),
            code_challenge: grant.code_challenge.to_owned(),
            scope: grant.scope.to_string(),
            nonce: grant.nonce.map(str::to_owned),
            auth_time: grant.auth_time,
            expires_at: self.now() + CODE_TTL,
        };
        self.store().insert_code(&record).await?;
        Ok(code)
    }

    /// `grant_type=authorization_code`: redeems `code` for `client` (already
    /// authenticated, if confidential). A code used before revokes the
    /// session its first use started. Every refusal is `invalid_grant`.
    pub async fn exchange_code(
        &self,
        code: &str,
        client: &Client,
        redirect_uri: &str,
        verifier: &str,
        ctx: &RequestContext,
    ) -> Result<Issued, Refusal> {
        const REFUSED: &str = "the authorization code is invalid, expired or used";
        let now = self.now();
        let session_id = random_id("ses_", self.rng())?;
        let hash = self.refresh_keys().code_hash(code);
        let found = match self.store().redeem_code(&hash, &session_id, now).await? {
            Redemption::Fresh(found) => found,
            Redemption::Unknown => return Err(Refusal::invalid_grant(REFUSED)),
            Redemption::Used { session_id } => {
                // A code replayed: whoever has it, the session it started is
                // no longer to be trusted (RFC 6749 §4.1.2).
                if let Some(sid) = session_id
                    && let Some((session, _)) = self.store().session_with_user(&sid).await?
                {
                    self.revoke_session(
                        &sid,
                        &session.user_id,
                        RevocationReason::Reuse,
                        Some(&client.id),
                        ctx,
                    )
                    .await?;
                }
                self.audit("code_reused", None, None, Some(&client.id), ctx, "")
                    .await;
                return Err(Refusal::invalid_grant(REFUSED));
            }
        };
        let why = if found.client_id != client.id {
            Some("code of another client")
        } else if found.redirect_uri != redirect_uri {
            Some("redirect_uri differs")
        } else if has_expired(found.expires_at, now) {
            Some("code expired")
        } else if !pkce_matches(verifier, &found.code_challenge) {
            Some("code_verifier does not match")
        } else {
            None
        };
        if let Some(why) = why {
            self.audit(
                "code_refused",
                Some(&found.user_id),
                None,
                Some(&client.id),
                ctx,
                why,
            )
            .await;
            return Err(Refusal::invalid_grant(REFUSED));
        }
        let user = self.store().user_by_id(&found.user_id).await?;
        let Some(user) = user.filter(|u| !u.disabled) else {
            return Err(Refusal::invalid_grant(REFUSED));
        };
        let scope = Scope::parse(&found.scope).map_err(|_| Refusal::invalid_grant(REFUSED))?;
        let opening = Opening {
            session_id,
            auth_time: found.auth_time,
        };
        let Some(mut issued) = self
            .open_session(
                opening,
                &user,
                Some(&client.id),
                &scope,
                ctx,
                "authorization_code",
            )
            .await?
        else {
            return Err(Refusal::invalid_grant(REFUSED));
        };
        if scope.contains("openid")
            && let Some(sid) = issued.session_id.clone()
        {
            let claims = IdClaims {
                iss: self.config().issuer.clone(),
                sub: user.id.clone(),
                aud: client.id.clone(),
                exp: now + self.config().access_ttl,
                iat: now,
                auth_time: found.auth_time,
                nonce: found.nonce,
                sid,
                at_hash: None,
            };
            issued.id_token = Some(self.sign_id_token(claims, &issued.access_token)?);
        }
        Ok(issued)
    }

    /// Signs an ID token, with the `at_hash` of `access_token`, by the key
    /// that signs access tokens now.
    fn sign_id_token(&self, mut claims: IdClaims, access_token: &str) -> Result<String, Refusal> {
        let keyring = self.keyring();
        let key = keyring.signing(self.now());
        claims.at_hash = Some(jwt::at_hash(key.alg(), access_token));
        Ok(jwt::sign_id_token(key, &claims)?)
    }

    /// The claims of an ID token this server issued (`id_token_hint`),
    /// expired or not; `None` for anything else.
    pub fn id_token_hint(&self, token: &str) -> Option<IdClaims> {
        self.keyring().verifier.verify_id_token_hint(token).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_match_exactly_but_for_loopback_ports() {
        let registered = vec![
            "https://app.example/cb".to_owned(),
            "http://127.0.0.1/callback".to_owned(),
            "http://[::1]:8000/cb".to_owned(),
        ];
        assert!(redirect_uri_allowed(&registered, "https://app.example/cb"));
        assert!(!redirect_uri_allowed(
            &registered,
            "https://app.example/cb/"
        ));
        assert!(!redirect_uri_allowed(
            &registered,
            "https://app.example/cb?x=1"
        ));
        assert!(!redirect_uri_allowed(
            &registered,
            "https://app.example:444/cb"
        ));
        assert!(!redirect_uri_allowed(
            &registered,
            "https://evil.example/cb"
        ));
        assert!(redirect_uri_allowed(
            &registered,
            "http://127.0.0.1:51234/callback"
        ));
        assert!(redirect_uri_allowed(
            &registered,
            "http://127.0.0.1/callback"
        ));
        assert!(!redirect_uri_allowed(
            &registered,
            "http://127.0.0.1:51234/other"
        ));
        assert!(!redirect_uri_allowed(
            &registered,
            "http://localhost:51234/callback"
        ));
        assert!(!redirect_uri_allowed(
            &registered,
            "http://user@127.0.0.1:5/callback"
        ));
        assert!(redirect_uri_allowed(&registered, "http://[::1]:9/cb"));
        assert!(!redirect_uri_allowed(&[], "https://app.example/cb"));
    }
}
