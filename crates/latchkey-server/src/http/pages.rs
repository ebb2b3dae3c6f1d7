//! What the server's own pages share (the authorization pages, the device
//! page): the page frame and its headers (a strict CSP; no script but the
//! passkey button's own), the CSRF token and its `SameSite=Strict` cookie,
//! the browser's sign-in, an `HttpOnly` cookie holding the refresh token of
//! a session of the user, and the sign-in forms: a password, its second
//! step (`One-time code`, `Verify`, `Use a recovery code`), or a passkey.

use aws_lc_rs::rand::SecureRandom;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_app::flows::{SecondFactor, WRONG_CODE};
use latchkey_app::service::{Issued, Refusal};
use latchkey_core::refresh::RefreshToken;
use latchkey_core::rotation::RevocationReason;
use latchkey_core::store::{Session, User};

use super::browser::cookie;
use super::extract::Params;
use crate::config::Config;
use crate::error::ApiError;
use crate::state::{AppState, RequestContext};

pub(crate) fn sign_in_cookie_name(config: &Config) -> &'static str {
    if config.cookie_secure {
        "__Host-lk_signin"
    } else {
        "lk_signin"
    }
}

pub(super) fn csrf_cookie_name(config: &Config) -> &'static str {
    if config.cookie_secure {
        "__Host-lk_csrf"
    } else {
        "lk_csrf"
    }
}

/// A cookie for the whole origin: `__Host-` when secure. The sign-in cookie
/// is `SameSite=Lax`, since a client sends the browser here by a cross-site
/// navigation; the CSRF cookie `Strict`, since only this server's own forms
/// post back.
pub(crate) fn host_cookie(
    config: &Config,
    name: &str,
    value: &str,
    same_site: &str,
    max_age: Option<i64>,
) -> HeaderValue {
    let secure = if config.cookie_secure { "; Secure" } else { "" };
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    let text = format!("{name}={value}; HttpOnly{secure}; SameSite={same_site}; Path=/{age}");
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("lk_invalid=; Max-Age=0"))
}

/// Ends this browser's sign-in for the authorization pages (the session its
/// cookie names) and clears the cookie on `response`, unless the sign-in is
/// another user's than `user_id` (`None`: whoever's). Both logouts, the
/// account page's and an application's, end it this way.
pub(super) async fn end_sign_in(
    state: &AppState,
    headers: &HeaderMap,
    user_id: Option<&str>,
    ctx: &RequestContext,
    response: &mut Response,
) -> Result<(), ApiError> {
    let config = state.config();
    if cookie(headers, sign_in_cookie_name(config)).is_none() {
        return Ok(());
    }
    if let Some((session, user)) = signed_in(state, headers).await? {
        if user_id.is_some_and(|id| id != user.id) {
            return Ok(());
        }
        state
            .issuer
            .revoke_session(&session.id, &user.id, RevocationReason::Logout, None, ctx)
            .await?;
    }
    response.headers_mut().append(
        header::SET_COOKIE,
        host_cookie(config, sign_in_cookie_name(config), "", "Lax", Some(0)),
    );
    Ok(())
}

pub(super) async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Session, User)>, ApiError> {
    match cookie(headers, sign_in_cookie_name(state.config())) {
        Some(value) => Ok(state.authorizations.signed_in(value).await?),
        None => Ok(None),
    }
}

/// The form's CSRF token matches its cookie, and `Origin`, if sent, is one
/// this server allows.
pub(super) fn same_origin_form(state: &AppState, headers: &HeaderMap, params: &Params) -> bool {
    let config = state.config();
    let origin_ok = match headers.get(header::ORIGIN).map(HeaderValue::to_str) {
        None => true,
        Some(Ok(origin)) => config.allowed_origins.iter().any(|o| o == origin),
        Some(Err(_)) => false,
    };
    let csrf = cookie(headers, csrf_cookie_name(config));
    let matches = match (csrf, params.get("csrf")) {
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.bytes()
                    .zip(b.bytes())
                    .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                    == 0
        }
        _ => false,
    };
    origin_ok && matches
}

/// The browser's CSRF token: kept while its cookie holds one, else new.
pub(super) fn csrf_token(state: &AppState, headers: &HeaderMap) -> Option<String> {
    if let Some(value) = cookie(headers, csrf_cookie_name(state.config()))
        && value.len() == 43
        && URL_SAFE_NO_PAD.decode(value).is_ok()
    {
        return Some(value.to_owned());
    }
    let mut bytes = [0u8; 32];
    state.issuer.rng().fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Escapes text for HTML content and attribute values.
pub(super) fn escape(text: &str) -> String {
    latchkey_app::mail::escape(text)
}

pub(super) fn html_page(
    status: StatusCode,
    title: &str,
    body: &str,
    form_action: &str,
) -> Response {
    framed(status, title, body, form_action, false)
}

/// [`html_page`] with the passkey button's script (this origin's only).
pub(super) fn html_page_with_passkeys(
    status: StatusCode,
    title: &str,
    body: &str,
    form_action: &str,
) -> Response {
    framed(status, title, body, form_action, true)
}

fn framed(
    status: StatusCode,
    title: &str,
    body: &str,
    form_action: &str,
    script: bool,
) -> Response {
    let (script_tag, script_policy) = if script {
        (
            "<script src=\"/assets/passkey.js\" defer></script>\n",
            "script-src 'self'; connect-src 'self'; require-trusted-types-for 'script'; \
             trusted-types 'none'; ",
        )
    } else {
        ("", "")
    };
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"/assets/account.css\">\n\
         {script_tag}</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        escape(title)
    );
    let policy = format!(
        "default-src 'none'; {script_policy}style-src 'self'; img-src 'self'; \
         form-action {form_action}; base-uri 'none'; frame-ancestors 'none'"
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it a browser sends `Origin: null` with the
    // page's own form, which the origin check must refuse.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>This request cannot go on</h1>\n<p role=\"alert\">{}</p>",
        escape(message)
    );
    html_page(status, "Error", &body, "'none'")
}

pub(super) fn with_csrf_cookie(state: &AppState, mut response: Response, csrf: &str) -> Response {
    let config = state.config();
    response.headers_mut().append(
        header::SET_COOKIE,
        host_cookie(config, csrf_cookie_name(config), csrf, "Strict", None),
    );
    response
}

/// Remembers the sign-in `issued` started in this browser (the cookie
/// holds its refresh token, never rotated), on `response`.
pub(super) fn remember_sign_in(state: &AppState, issued: &Issued, response: &mut Response) {
    if let Some(token) = &issued.refresh_token {
        let config = state.config();
        response.headers_mut().append(
            header::SET_COOKIE,
            host_cookie(
                config,
                sign_in_cookie_name(config),
                RefreshToken::expose(token),
                "Lax",
                Some(config.policy.absolute_ttl),
            ),
        );
    }
}

/// A sign-in a page's form made.
pub(super) struct SignedIn {
    /// Its session.
    pub(super) session: Session,
    /// Its user.
    pub(super) user: User,
    /// What it issued (the cookie keeps its refresh token).
    pub(super) issued: Issued,
}

/// Why a page's form did not sign anyone in.
pub(super) enum NotSignedIn {
    /// The message the form shows.
    Refused(&'static str),
    /// The password was right: the second step's form is next, with this
    /// token, asking for a recovery code rather than a one-time code if
    /// `recovery`, with a message if a code was wrong.
    SecondStep {
        mfa_token: String,
        recovery: bool,
        message: Option<&'static str>,
    },
}

const NOT_NOW: &str = "Signing in is not possible right now. Try again in a moment.";
const TOO_MANY: &str = "Too many attempts. Wait a while, then try again.";

/// The sign-in a page's form carries, if it carries one: a passkey's answer
/// (`passkey_credential`), a second step (`mfa_token` with `otp` or
/// `recovery_code`, or `use` to switch between them), or a username and
/// password. Every sign-in is first-party, with the default scope.
pub(super) async fn form_sign_in(
    state: &AppState,
    ctx: &RequestContext,
    params: &Params,
) -> Option<Result<SignedIn, NotSignedIn>> {
    let issued = if let Some(answer) = params.get("passkey_credential") {
        passkey_sign_in(state, ctx, answer).await
    } else if let Some(mfa_token) = params.get("mfa_token") {
        second_step(state, ctx, params, mfa_token).await
    } else if let (Some(username), Some(password)) =
        (params.get("username"), params.get("password"))
    {
        state
            .login
            .login(username, password, None, None, ctx)
            .await
            .map_err(|refusal| match refusal {
                Refusal::MfaRequired { mfa_token } => NotSignedIn::SecondStep {
                    mfa_token,
                    recovery: false,
                    message: None,
                },
                Refusal::InvalidGrant(_) | Refusal::InvalidRequest(_) => {
                    NotSignedIn::Refused("Wrong username or password.")
                }
                Refusal::TooManyRequests { .. } => NotSignedIn::Refused(TOO_MANY),
                _ => NotSignedIn::Refused(NOT_NOW),
            })
    } else {
        return None;
    };
    Some(match issued {
        Ok(issued) => signed_in_by(state, issued).await,
        Err(why) => Err(why),
    })
}

async fn signed_in_by(state: &AppState, issued: Issued) -> Result<SignedIn, NotSignedIn> {
    let found = match issued.session_id.as_deref() {
        Some(sid) => state.store().session_with_user(sid).await.ok().flatten(),
        None => None,
    };
    let (session, user) = found.ok_or(NotSignedIn::Refused(NOT_NOW))?;
    Ok(SignedIn {
        session,
        user,
        issued,
    })
}

async fn passkey_sign_in(
    state: &AppState,
    ctx: &RequestContext,
    answer: &str,
) -> Result<Issued, NotSignedIn> {
    let refused = NotSignedIn::Refused(
        "That passkey was not accepted. Try again, or log in with your password.",
    );
    let credential = serde_json::from_str(answer).map_err(|_| NotSignedIn::Refused(NOT_NOW))?;
    state
        .passkeys
        .sign_in(&credential, None, None, ctx)
        .await
        .map_err(|refusal| match refusal {
            Refusal::InvalidGrant(_) | Refusal::InvalidRequest(_) => refused,
            Refusal::TooManyRequests { .. } => NotSignedIn::Refused(TOO_MANY),
            _ => NotSignedIn::Refused(NOT_NOW),
        })
}

async fn second_step(
    state: &AppState,
    ctx: &RequestContext,
    params: &Params,
    mfa_token: &str,
) -> Result<Issued, NotSignedIn> {
    let again = |recovery: bool, message: Option<&'static str>| NotSignedIn::SecondStep {
        mfa_token: mfa_token.to_owned(),
        recovery,
        message,
    };
    let code = match (
        params.get("otp"),
        params.get("recovery_code"),
        params.get("use"),
    ) {
        (Some(otp), None, _) => SecondFactor::Otp(otp),
        (None, Some(code), _) => SecondFactor::RecoveryCode(code),
        (None, None, Some("recovery")) => return Err(again(true, None)),
        (None, None, Some(_)) => return Err(again(false, None)),
        _ => return Err(again(false, Some("Enter the code."))),
    };
    let recovery = matches!(code, SecondFactor::RecoveryCode(_));
    state
        .apps
        .finish(mfa_token, code, ctx)
        .await
        .map_err(|refusal| match refusal {
            Refusal::InvalidGrant(why) if why == WRONG_CODE => {
                again(recovery, Some("That code is not right. Try again."))
            }
            Refusal::InvalidGrant(_) => {
                NotSignedIn::Refused("The sign-in expired or failed too often. Log in again.")
            }
            Refusal::TooManyRequests { .. } => again(recovery, Some(TOO_MANY)),
            _ => NotSignedIn::Refused(NOT_NOW),
        })
}

/// The second step's form (posting to `action` with `hidden` and the
/// token): `One-time code` and `Verify`, and `Use a recovery code` (or the
/// recovery code's input, and back).
pub(super) fn second_step_form(
    action: &str,
    hidden: &str,
    mfa_token: &str,
    recovery: bool,
    message: Option<&str>,
) -> String {
    let (field, switch) = if recovery {
        (
            r#"<p><label for="recovery_code">Recovery code</label>
<input id="recovery_code" name="recovery_code" autocomplete="off" autocapitalize="none" spellcheck="false" required maxlength="64" autofocus></p>"#,
            r#"<button type="submit" name="use" value="otp" formnovalidate class="secondary">Use a one-time code</button>"#,
        )
    } else {
        (
            r#"<p><label for="otp">One-time code</label>
<input id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]*" required maxlength="10" autofocus aria-describedby="otp-help">
<span id="otp-help" class="hint">The six digits your authenticator app shows.</span></p>"#,
            r#"<button type="submit" name="use" value="recovery" formnovalidate class="secondary">Use a recovery code</button>"#,
        )
    };
    format!(
        r#"<form method="post" action="{action}">
{hidden}
<input type="hidden" name="mfa_token" value="{token}">
{field}
<p class="error" role="alert">{alert}</p>
<p class="actions"><button type="submit">Verify</button>
{switch}</p>
</form>"#,
        token = escape(mfa_token),
        alert = message.map(escape).unwrap_or_default(),
    )
}

/// The passkey button's form (posting to `action` with `hidden`): the
/// script fills in the answer and submits it. Without JavaScript or WebAuthn
/// it stays hidden; with passkeys off, the page says why.
pub(super) fn passkey_form(state: &AppState, action: &str, hidden: &str) -> String {
    if let Some(why) = state.passkeys.off() {
        return format!(
            r#"<p class="hint">Signing in with a passkey is not available here ({}).</p>"#,
            escape(why)
        );
    }
    format!(
        r#"<form id="passkey-form" method="post" action="{action}" hidden>
{hidden}
<input type="hidden" name="passkey_credential" value="">
<p class="actions"><button type="button" id="passkey-button" class="secondary">Sign in with a passkey</button></p>
<p id="passkey-error" class="error" role="alert"></p>
</form>"#
    )
}

/// Keeps the sign-in `signed` in this browser's cookie on `response`, and
/// ends the one it replaces (a step-up, or another sign-in over it).
pub(super) async fn replace_sign_in(
    state: &AppState,
    headers: &HeaderMap,
    ctx: &RequestContext,
    signed: &SignedIn,
    response: &mut Response,
) {
    if let Ok(Some((old, user))) = signed_in(state, headers).await
        && old.id != signed.session.id
        && let Err(e) = state
            .issuer
            .revoke_session(&old.id, &user.id, RevocationReason::Logout, None, ctx)
            .await
    {
        tracing::warn!(error = %e, "ending the replaced sign-in failed");
    }
    remember_sign_in(state, &signed.issued, response);
}

/// The username and password inputs of a sign-in form.
pub(super) const LOGIN_FIELDS: &str = r#"<p><label for="username">Username</label>
<input id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required maxlength="256"></p>
<p><label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024">
<a href="/auth/password/forgot">Forgot password?</a></p>"#;

/// A scope as the items of a list, one `<li>` per scope.
pub(super) fn scope_items(scope: &latchkey_core::scope::Scope) -> String {
    scope
        .to_string()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| format!("<li>{}</li>", escape(s)))
        .collect()
}
