//! Authenticator apps (RFC 6238, SPEC §12) and the second step of a
//! password sign-in. Setting an app up gives its secret (sealed at rest
//! like the signing keys), an `otpauth://` URI and its QR code; the first
//! code confirms it and gives ten recovery codes, stored hashed. From then
//! on a right password answers `mfa_required` with an `mfa_token`, which
//! `POST /auth/login/mfa` trades, with a code, for the session. Codes are
//! counted per user like failed logins, before they are checked; a code
//! step and a recovery code are accepted once; an `mfa_token` lives
//! [`MFA_TOKEN_TTL`] seconds, is spent by its success and dies at its
//! [`MAX_MFA_FAILURES`]th wrong code. The rules are `latchkey_core::totp`.

use std::sync::Arc;

use latchkey_core::id::random_id;
use latchkey_core::scope::Scope;
use latchkey_core::seal;
use latchkey_core::store::{FactorStore, MfaChallenge, TotpFactor, User, UserStore};
use latchkey_core::strength::AuthMethod;
use latchkey_core::totp;

use crate::service::{Actor, Attempts, Issued, Refusal, RequestContext, TokenIssuer};

/// Seconds an `mfa_token` lives.
pub const MFA_TOKEN_TTL: i64 = 300;

/// Wrong codes an `mfa_token` survives, less one.
pub const MAX_MFA_FAILURES: i64 = 5;

/// The longest `mfa_token` looked up (`lk_mfa_` and 43 characters).
const MAX_MFA_TOKEN_BYTES: usize = 64;

/// What setting up an app shows once: the secret in base32, the
/// `otpauth://` URI, and that URI as a QR code (SVG).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TotpSetup {
    /// The secret, base32 without padding.
    pub secret: String,
    /// `otpauth://totp/…`.
    pub otpauth_uri: String,
    /// The URI as an SVG QR code.
    pub qr_svg: String,
}

/// A second factor as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FactorView {
    /// Its id.
    pub id: String,
    /// `totp` or `passkey`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// When it was set up.
    pub created_at: i64,
}

/// What a wrong code is refused with (`invalid_grant`); any other refusal
/// of a second step ends it.
pub const WRONG_CODE: &str = "the code is wrong";

/// The code a second step was sent with.
#[derive(Debug, Clone, Copy)]
pub enum SecondFactor<'a> {
    /// A code of the authenticator app.
    Otp(&'a str),
    /// A recovery code.
    RecoveryCode(&'a str),
}

/// Setting up, confirming and removing authenticator apps, and the second
/// step of a sign-in.
pub struct AuthenticatorApps {
    issuer: Arc<TokenIssuer>,
    factors: Arc<dyn FactorStore>,
    users: Arc<dyn UserStore>,
    attempts: Attempts,
}

impl AuthenticatorApps {
    /// Apps kept in `factors`, their users read from `users`, codes counted
    /// by `attempts`.
    pub fn new(
        issuer: Arc<TokenIssuer>,
        factors: Arc<dyn FactorStore>,
        users: Arc<dyn UserStore>,
        attempts: Attempts,
    ) -> Self {
        Self {
            issuer,
            factors,
            users,
            attempts,
        }
    }

    /// Starts setting up an app for `user` (replacing one being set up);
    /// refused while one is confirmed.
    pub async fn start(&self, user: &User, ctx: &RequestContext) -> Result<TotpSetup, Refusal> {
        let issuer = &self.issuer;
        let config = issuer.config();
        let id = random_id("fac_", issuer.rng())?;
        let secret = totp::new_secret(issuer.rng())?;
        let sealed = seal::seal(
            config.master_key.as_ref(),
            &format!("totp:{id}"),
            &secret,
            issuer.rng(),
        )?;
        let factor = TotpFactor {
            id,
            user_id: user.id.clone(),
            secret: sealed,
            created_at: issuer.now(),
            confirmed_at: None,
            last_step: 0,
        };
        if !self.factors.put_pending_totp(&factor).await? {
            return Err(Refusal::invalid_request(
                "an authenticator app is set up already: remove it first",
            ));
        }
        issuer
            .audit("totp_started", Some(&user.id), None, None, ctx, "")
            .await;
        let secret = data_encoding::BASE32_NOPAD.encode(&secret);
        let label = url::Url::parse(&config.issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "latchkey".to_owned());
        let otpauth_uri = otpauth_uri(&label, &user.username, &secret);
        let qr_svg = qrcode::QrCode::new(otpauth_uri.as_bytes())
            .map_err(Refusal::internal)?
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build();
        Ok(TotpSetup {
            secret,
            otpauth_uri,
            qr_svg,
        })
    }

    /// Confirms the app being set up with its first code: the ten recovery
    /// codes, shown once.
    pub async fn confirm(
        &self,
        user: &User,
        code: &str,
        ctx: &RequestContext,
    ) -> Result<Vec<String>, Refusal> {
        let key = self.take_attempt(&user.id, ctx).await?;
        let Some(factor) = self
            .factors
            .totp_of(&user.id)
            .await?
            .filter(|f| f.confirmed_at.is_none())
        else {
            return Err(Refusal::invalid_request(
                "no authenticator app is being set up",
            ));
        };
        let issuer = &self.issuer;
        let now = issuer.now();
        let Some(step) = totp::matching_step(&self.open(&factor)?, code, now) else {
            self.wrong_code(&user.id, ctx).await;
            return Err(Refusal::invalid_grant(WRONG_CODE));
        };
        let codes = totp::new_recovery_codes(issuer.rng())?;
        let hashes: Vec<_> = codes
            .iter()
            .filter_map(|c| totp::normalise_recovery_code(c))
            .map(|c| issuer.refresh_keys().recovery_code_hash(&c))
            .collect();
        if !self
            .factors
            .confirm_totp(&user.id, &factor.id, step, &hashes, now)
            .await?
        {
            return Err(Refusal::invalid_request(
                "the authenticator app being set up changed meanwhile",
            ));
        }
        self.attempts.clear(&key).await;
        issuer
            .audit("totp_added", Some(&user.id), None, None, ctx, "")
            .await;
        Ok(codes)
    }

    /// Removes `user`'s app (and its recovery codes), with a current code or
    /// a recovery code.
    pub async fn remove(
        &self,
        user: &User,
        code: SecondFactor<'_>,
        ctx: &RequestContext,
    ) -> Result<(), Refusal> {
        let key = self.take_attempt(&user.id, ctx).await?;
        if !self.check(&user.id, code).await? {
            self.wrong_code(&user.id, ctx).await;
            return Err(Refusal::invalid_grant(WRONG_CODE));
        }
        self.attempts.clear(&key).await;
        if self.factors.remove_totp(&user.id).await? {
            self.issuer
                .audit("totp_removed", Some(&user.id), None, None, ctx, "")
                .await;
        }
        Ok(())
    }

    /// The user's confirmed factors (an app being set up is not one yet).
    pub async fn factors_of(&self, user_id: &str) -> Result<Vec<FactorView>, Refusal> {
        Ok(self
            .factors
            .totp_of(user_id)
            .await?
            .filter(|f| f.confirmed_at.is_some())
            .map(|f| FactorView {
                id: f.id,
                kind: "totp",
                name: "Authenticator app".to_owned(),
                created_at: f.created_at,
            })
            .into_iter()
            .collect())
    }

    /// Removes the user's factor `factor_id` (for the admin API's `actor`,
    /// whom the audit trail names); false if the user has no such factor.
    pub async fn remove_factor(
        &self,
        user_id: &str,
        factor_id: &str,
        actor: &Actor,
    ) -> Result<bool, Refusal> {
        let theirs = self
            .factors
            .totp_of(user_id)
            .await?
            .is_some_and(|f| f.id == factor_id);
        if !theirs || !self.factors.remove_totp(user_id).await? {
            return Ok(false);
        }
        self.issuer
            .events()
            .audit(
                "totp_removed",
                Some(user_id),
                None,
                actor,
                "by the admin API",
            )
            .await;
        Ok(true)
    }

    /// Whether `user_id` must take a second step after a right password;
    /// if so, the `mfa_token` carrying the sign-in (through `client_id`, for
    /// `scope`) on.
    pub async fn second_step(
        &self,
        user_id: &str,
        client_id: Option<&str>,
        scope: &Scope,
    ) -> Result<Option<String>, Refusal> {
        let confirmed = self
            .factors
            .totp_of(user_id)
            .await?
            .is_some_and(|f| f.confirmed_at.is_some());
        if !confirmed {
            return Ok(None);
        }
        let issuer = &self.issuer;
        let (token, hash) = issuer.refresh_keys().new_mfa_token(issuer.rng())?;
        let now = issuer.now();
        let challenge = MfaChallenge {
            hash,
            user_id: user_id.to_owned(),
            client_id: client_id.map(str::to_owned),
            scope: scope.to_string(),
            created_at: now,
            expires_at: now + MFA_TOKEN_TTL,
            failures: 0,
        };
        self.factors.insert_mfa_challenge(&challenge).await?;
        Ok(Some(token))
    }

    /// `POST /auth/login/mfa`: the sign-in `mfa_token` carries, finished by
    /// `code`. Every refusal but throttling is `invalid_grant`.
    pub async fn finish(
        &self,
        mfa_token: &str,
        code: SecondFactor<'_>,
        ctx: &RequestContext,
    ) -> Result<Issued, Refusal> {
        const EXPIRED: &str = "the sign-in expired or failed too often: log in again";
        let issuer = &self.issuer;
        if mfa_token.len() > MAX_MFA_TOKEN_BYTES {
            return Err(Refusal::invalid_grant(EXPIRED));
        }
        let hash = issuer.refresh_keys().code_hash(mfa_token);
        let Some(challenge) = self.factors.mfa_challenge(&hash, issuer.now()).await? else {
            return Err(Refusal::invalid_grant(EXPIRED));
        };
        let user_id = challenge.user_id.as_str();
        let key = self.take_attempt(user_id, ctx).await?;
        if !self.check(user_id, code).await? {
            self.wrong_code(user_id, ctx).await;
            self.factors
                .fail_mfa_challenge(&hash, MAX_MFA_FAILURES)
                .await?;
            return Err(Refusal::invalid_grant(WRONG_CODE));
        }
        let Some(challenge) = self
            .factors
            .spend_mfa_challenge(&hash, issuer.now())
            .await?
        else {
            return Err(Refusal::invalid_grant(EXPIRED));
        };
        self.attempts.clear(&key).await;
        let user = self.users.user_by_id(&challenge.user_id).await?;
        let Some(user) = user.filter(|u| !u.disabled) else {
            return Err(Refusal::invalid_grant(EXPIRED));
        };
        let scope = Scope::parse(&challenge.scope).map_err(|_| Refusal::invalid_grant(EXPIRED))?;
        let method = match code {
            SecondFactor::Otp(_) => AuthMethod::PasswordAndOtp,
            SecondFactor::RecoveryCode(_) => AuthMethod::PasswordAndRecoveryCode,
        };
        issuer
            .start_session(
                &user,
                challenge.client_id.as_deref(),
                &scope,
                ctx,
                "login",
                method,
            )
            .await?
            .ok_or_else(|| Refusal::invalid_grant(EXPIRED))
    }

    /// Whether the user has a confirmed authenticator app (a password
    /// reset then needs one of its codes too).
    pub async fn has_app(&self, user_id: &str) -> Result<bool, Refusal> {
        Ok(self
            .factors
            .totp_of(user_id)
            .await?
            .is_some_and(|f| f.confirmed_at.is_some()))
    }

    /// Checks (and spends) a code of the user's app or a recovery code
    /// outside a sign-in (a password reset), counted like the second step's.
    pub async fn verify_code(
        &self,
        user_id: &str,
        code: SecondFactor<'_>,
        ctx: &RequestContext,
    ) -> Result<bool, Refusal> {
        let key = self.take_attempt(user_id, ctx).await?;
        if !self.check(user_id, code).await? {
            self.wrong_code(user_id, ctx).await;
            return Ok(false);
        }
        self.attempts.clear(&key).await;
        Ok(true)
    }

    /// Takes one of the user's code attempts (the per-account limit of
    /// failed logins); the key, to clear on success.
    async fn take_attempt(&self, user_id: &str, ctx: &RequestContext) -> Result<String, Refusal> {
        let key = format!("otp:{user_id}");
        self.attempts
            .take_per_account(&key, ctx, "one-time code limit reached")
            .await?;
        Ok(key)
    }

    async fn wrong_code(&self, user_id: &str, ctx: &RequestContext) {
        self.issuer
            .metrics()
            .inc(crate::metrics::Counter::LoginFailures, &[]);
        self.issuer
            .audit("mfa_failed", Some(user_id), None, None, ctx, "wrong code")
            .await;
    }

    /// Whether `code` is a current code of the user's confirmed app (not
    /// used before) or one of their unused recovery codes; using it spends
    /// it.
    async fn check(&self, user_id: &str, code: SecondFactor<'_>) -> Result<bool, Refusal> {
        let Some(factor) = self
            .factors
            .totp_of(user_id)
            .await?
            .filter(|f| f.confirmed_at.is_some())
        else {
            return Ok(false);
        };
        let now = self.issuer.now();
        match code {
            SecondFactor::Otp(code) => match totp::matching_step(&self.open(&factor)?, code, now) {
                Some(step) => Ok(self.factors.use_totp_step(user_id, step).await?),
                None => Ok(false),
            },
            SecondFactor::RecoveryCode(code) => match totp::normalise_recovery_code(code) {
                Some(canonical) => {
                    let hash = self.issuer.refresh_keys().recovery_code_hash(&canonical);
                    Ok(self.factors.use_recovery_code(user_id, &hash, now).await?)
                }
                None => Ok(false),
            },
        }
    }

    /// The app's secret, opened with the master key.
    fn open(&self, factor: &TotpFactor) -> Result<Vec<u8>, Refusal> {
        let master = self.issuer.config().master_key.as_ref();
        match seal::open(master, &format!("totp:{}", factor.id), &factor.secret) {
            Ok(seal::Opened::Sealed(secret) | seal::Opened::Plain(secret)) => Ok(secret),
            Err(e) => Err(Refusal::internal(e)),
        }
    }
}

/// The `otpauth://` URI of a secret (Google Authenticator's key-URI format,
/// which every app reads).
fn otpauth_uri(issuer: &str, username: &str, secret: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let issuer = utf8_percent_encode(issuer, NON_ALPHANUMERIC);
    let username = utf8_percent_encode(username, NON_ALPHANUMERIC);
    format!(
        "otpauth://totp/{issuer}:{username}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits=6&period=30"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_otpauth_uri_escapes_its_label() {
        assert_eq!(
            super::otpauth_uri("auth.example", "ana maría", "JBSWY3DPEHPK3PXP"),
            "otpauth://totp/auth%2Eexample:ana%20mar%C3%ADa?secret=JBSWY3DPEHPK3PXP\
             &issuer=auth%2Eexample&algorithm=SHA1&digits=6&period=30"
        );
    }
}
