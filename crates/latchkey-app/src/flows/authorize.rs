//! The authorization code flow with PKCE and OpenID Connect (SPEC §10): the
//! rules, once, for the HTTP pages and the token endpoint. A browser's
//! sign-in is itself a session of the user (its refresh token is the
//! sign-in cookie, never rotated), so it is listed and revocable like any
//! other; a code is single-use, lives [`CODE_TTL`] seconds, and is bound to
//! its client, redirect URI and challenge.

use std::sync::Arc;

use latchkey_core::refresh::RefreshToken;
use latchkey_core::scope::Scope;
use latchkey_core::store::{
    AuthorizationCode, Client, CodeStore, Session, SessionStore, User, UserStore,
};
use latchkey_core::strength::AuthMethod;

use crate::service::{Refusal, RequestContext, TokenIssuer};

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
    /// How.
    pub auth_method: AuthMethod,
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

/// The authorization pages' side of the code flow: who is signed in,
/// consent, and issuing codes.
pub struct Authorizations {
    issuer: Arc<TokenIssuer>,
    sessions: Arc<dyn SessionStore>,
    users: Arc<dyn UserStore>,
    codes: Arc<dyn CodeStore>,
}

impl Authorizations {
    /// Sign-ins read from `sessions` and `users`, consent and codes kept in
    /// `codes`.
    pub fn new(
        issuer: Arc<TokenIssuer>,
        sessions: Arc<dyn SessionStore>,
        users: Arc<dyn UserStore>,
        codes: Arc<dyn CodeStore>,
    ) -> Self {
        Self {
            issuer,
            sessions,
            users,
            codes,
        }
    }

    /// The user a browser's sign-in cookie names, if its session is live
    /// and the user enabled.
    pub async fn signed_in(&self, cookie: &str) -> Result<Option<(Session, User)>, Refusal> {
        let Some(token) = RefreshToken::parse(cookie) else {
            return Ok(None);
        };
        let now = self.issuer.now();
        let Some((record, session)) = self
            .sessions
            .refresh_token(&self.issuer.refresh_keys().hash(&token))
            .await?
        else {
            return Ok(None);
        };
        if !record.is_usable(&session, now) || session.client_id.is_some() {
            return Ok(None);
        }
        let user = self.users.user_by_id(&session.user_id).await?;
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
        let granted = self.codes.consent(&user.id, &client.id).await?;
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
        let before = self.codes.consent(&user.id, &client.id).await?;
        let all = match before.and_then(|g| Scope::parse(&g).ok()) {
            Some(before) => before.union(scope),
            None => scope.clone(),
        };
        self.codes
            .grant_consent(&user.id, &client.id, &all.to_string(), self.issuer.now())
            .await?;
        self.issuer
            .audit(
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
        let (code, hash) = self.issuer.refresh_keys().new_code(self.issuer.rng())?;
        let record = AuthorizationCode {
            hash,
            client_id: grant.client.id.clone(),
            user_id: grant.user.id.clone(),
            redirect_uri: grant.redirect_uri.to_owned(),
            code_challenge: grant.code_challenge.to_owned(),
            scope: grant.scope.to_string(),
            nonce: grant.nonce.map(str::to_owned),
            auth_time: grant.auth_time,
            auth_method: grant.auth_method,
            expires_at: self.issuer.now() + CODE_TTL,
        };
        self.codes.insert_code(&record).await?;
        Ok(code)
    }

    /// The claims of an ID token this server issued (`id_token_hint`),
    /// expired or not; `None` for anything else.
    pub fn id_token_hint(&self, token: &str) -> Option<latchkey_core::jwt::IdClaims> {
        self.issuer.id_token_hint(token)
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
