//! Getting back into an account (SPEC §13): forgotten passwords, address
//! verification, `This wasn't me`, and a signed-in password change.
//!
//! Every link a mail carries opens a page whose button does the work: a
//! `GET` only reads (mail scanners open links). Each `POST` takes form
//! parameters (the pages' forms, which carry their CSRF token) or JSON (an
//! application's own pages); a form from a browser that accepts HTML is
//! answered with a page, anything else with JSON.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use latchkey_app::flows::SecondFactor;
use latchkey_app::service::Refusal;
use latchkey_core::account::LinkPurpose;
use serde_json::json;

use super::extract::Params;
use super::pages::{csrf_token, error_page, escape, html_page, same_origin_form, with_csrf_cookie};
use crate::error::ApiError;
use crate::state::{AppState, RequestContext};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/password", post(change_password))
        .route("/auth/password/forgot", get(forgot_page).post(forgot))
        .route("/auth/password/reset", get(reset_page).post(reset))
        .route("/auth/email/verify", get(verify_page).post(verify))
        .route("/auth/not-me", get(not_me_page).post(not_me))
}

/// The longest link token a page reads (they are 49 characters).
const MAX_TOKEN_BYTES: usize = 128;

const DEAD_LINK: &str =
    "This link is not valid any more: it was used, a newer one replaced it, or it expired.";

/// Whether a request is a page's form from a browser (answered with a page).
fn from_page(headers: &HeaderMap) -> bool {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    form && html
}

/// A page with a form: its CSRF token in a hidden field and its cookie.
fn form_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    title: &str,
    body: impl FnOnce(&str) -> String,
) -> Response {
    let Some(csrf) = csrf_token(state, headers) else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, "Try again in a moment.");
    };
    let hidden = format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        escape(&csrf)
    );
    let response = html_page(status, title, &body(&hidden), "'self'");
    with_csrf_cookie(state, response, &csrf)
}

fn done_page(title: &str, paragraphs: &str) -> Response {
    html_page(
        StatusCode::OK,
        title,
        &format!("<h1>{}</h1>\n{paragraphs}", escape(title)),
        "'self'",
    )
}

/// The `token` of a link's query.
fn query_token(query: Option<&str>) -> Option<String> {
    let params = Params::from_form(query.unwrap_or("").as_bytes()).ok()?;
    params
        .get("token")
        .filter(|t| t.len() <= MAX_TOKEN_BYTES)
        .map(str::to_owned)
}

/// A form's parameters, its CSRF token checked when it is a page's.
fn form_params(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Params, Box<Response>> {
    let page = from_page(headers);
    let params = Params::from_body(headers, body, true).map_err(|e| {
        Box::new(if page {
            error_page(StatusCode::BAD_REQUEST, "The form is malformed.")
        } else {
            e.into_response()
        })
    })?;
    if page && !same_origin_form(state, headers, &params) {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "This form did not come from this server's own page. Open the link again.",
        )));
    }
    if !page {
        super::browser::check_origin(headers, state.config())
            .map_err(|e| Box::new(e.into_response()))?;
    }
    Ok(params)
}

// --- forgot -----------------------------------------------------------------

fn forgot_form(state: &AppState, headers: &HeaderMap, status: StatusCode, alert: &str) -> Response {
    form_page(state, headers, status, "Forgot your password?", |hidden| {
        format!(
            r#"<h1>Forgot your password?</h1>
<p>Enter the e-mail address of your account. If it belongs to one, a link to choose a new password is sent to it.</p>
<form method="post" action="/auth/password/forgot">
{hidden}
<p><label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="email" required maxlength="254"></p>
<p class="error" role="alert">{alert}</p>
<p class="actions"><button type="submit">Send reset link</button></p>
</form>
<p><a href="/">Back to sign-in</a></p>"#,
            alert = escape(alert)
        )
    })
}

/// `GET /auth/password/forgot`: the form.
async fn forgot_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    forgot_form(&state, &headers, StatusCode::OK, "")
}

const FORGOT_ANSWER: &str = "If this address belongs to an account, a link to choose a new password is on its way. It works for 30 minutes.";

/// `POST /auth/password/forgot` `{"email"}`: `202` with the same body
/// whether or not the address is an account's.
async fn forgot(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let page = from_page(&headers);
    let params = match form_params(&state, &headers, &body) {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let result = match params.require("email") {
        Ok(email) => state
            .recovery
            .forgot(email, &ctx)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match (result, page) {
        (Ok(()), false) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "status": "accepted", "message": FORGOT_ANSWER })),
        )
            .into_response(),
        (Ok(()), true) => {
            let mut response = done_page(
                "Check your mail",
                &format!(
                    "<p role=\"status\">{}</p>\n<p><a href=\"/\">Back to sign-in</a></p>",
                    escape(FORGOT_ANSWER)
                ),
            );
            *response.status_mut() = StatusCode::ACCEPTED;
            response
        }
        (Err(e), false) => e.into_response(),
        (Err(e), true) => {
            let status = e.status_code();
            let alert = if status == StatusCode::TOO_MANY_REQUESTS {
                "Too many requests. Wait a while, then try again.".to_owned()
            } else {
                "Enter an e-mail address, like name@example.com.".to_owned()
            };
            forgot_form(&state, &headers, status, &alert)
        }
    }
}

// --- reset ------------------------------------------------------------------

fn reset_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    token: &str,
    username: &str,
    needs_code: bool,
    alert: &str,
) -> Response {
    form_page(state, headers, status, "Choose a new password", |hidden| {
        let code = if needs_code {
            r#"<p><label for="otp">One-time code</label>
<input id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code" required maxlength="64" aria-describedby="otp-help">
<span id="otp-help" class="hint">The six digits your authenticator app shows, or one of your recovery codes.</span></p>"#
        } else {
            ""
        };
        format!(
            r#"<h1>Choose a new password</h1>
<p>For the account <strong>{username}</strong>. Every device signed in to it will be signed out.</p>
<form method="post" action="/auth/password/reset">
{hidden}
<input type="hidden" name="token" value="{token}">
<input type="hidden" name="username" value="{username}" autocomplete="username">
<p><label for="password">New password</label>
<input id="password" name="password" type="password" autocomplete="new-password" required minlength="8" maxlength="1024" aria-describedby="password-help">
<span id="password-help" class="hint">At least 8 characters.</span></p>
{code}
<p class="error" role="alert">{alert}</p>
<p class="actions"><button type="submit">Set password</button></p>
</form>"#,
            username = escape(username),
            token = escape(token),
            alert = escape(alert),
        )
    })
}

fn dead_link_page(purpose: LinkPurpose) -> Response {
    let next = match purpose {
        LinkPurpose::ResetPassword => {
            "<p><a href=\"/auth/password/forgot\">Ask for a new link</a></p>"
        }
        _ => "<p><a href=\"/\">Go to your account</a></p>",
    };
    html_page(
        StatusCode::BAD_REQUEST,
        "Link not valid",
        &format!(
            "<h1>This link does not work</h1>\n<p role=\"alert\">{}</p>\n{next}",
            escape(DEAD_LINK)
        ),
        "'none'",
    )
}

/// `GET /auth/password/reset?token=…`: the form (changes nothing).
async fn reset_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(token) = query_token(query.as_deref()) else {
        return dead_link_page(LinkPurpose::ResetPassword);
    };
    match state
        .recovery
        .link_page(&token, LinkPurpose::ResetPassword)
        .await
    {
        Ok(view) => reset_form(
            &state,
            &headers,
            StatusCode::OK,
            &token,
            &view.username,
            view.needs_code,
            "",
        ),
        Err(Refusal::InvalidGrant(_)) => dead_link_page(LinkPurpose::ResetPassword),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The second factor a reset names: `otp` (digits: a code of the app,
/// anything else: a recovery code, as the page's one field takes both) or
/// `recovery_code`.
fn second_factor(params: &Params) -> Option<SecondFactor<'_>> {
    match (params.get("otp"), params.get("recovery_code")) {
        (Some(code), None) if code.trim().bytes().all(|b| b.is_ascii_digit()) => {
            Some(SecondFactor::Otp(code.trim()))
        }
        (Some(code), None) | (None, Some(code)) => Some(SecondFactor::RecoveryCode(code)),
        _ => None,
    }
}

/// `POST /auth/password/reset` `{"token", "password", "otp"?, "recovery_code"?}`.
async fn reset(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let page = from_page(&headers);
    let params = match form_params(&state, &headers, &body) {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let token = params.get("token").unwrap_or_default();
    let Some(password) = params.get("password") else {
        return ApiError::invalid_request("missing parameter password").into_response();
    };
    let result = state
        .recovery
        .reset(token, password, second_factor(&params), &ctx)
        .await;
    match (result, page) {
        (Ok(()), false) => axum::Json(json!({ "status": "password_reset" })).into_response(),
        (Ok(()), true) => done_page(
            "Your password is set",
            "<p role=\"status\">Your new password works now. Every device that was signed in has been signed out.</p>\n<p><a href=\"/\">Sign in</a></p>",
        ),
        (Err(e), false) => ApiError::from(e).into_response(),
        (Err(e), true) => {
            let message = match &e {
                Refusal::InvalidRequest(d) | Refusal::InvalidGrant(d) => d.clone(),
                Refusal::TooManyRequests { .. } => {
                    "Too many attempts. Wait a while, then try again.".to_owned()
                }
                _ => "Setting the password is not possible right now. Try again in a moment."
                    .to_owned(),
            };
            let status = ApiError::from(e).status_code();
            match state
                .recovery
                .link_page(token, LinkPurpose::ResetPassword)
                .await
            {
                Ok(view) => reset_form(
                    &state,
                    &headers,
                    status,
                    token,
                    &view.username,
                    view.needs_code,
                    &message,
                ),
                Err(_) => dead_link_page(LinkPurpose::ResetPassword),
            }
        }
    }
}

// --- verify -----------------------------------------------------------------

/// `GET /auth/email/verify?token=…`: the `Verify` button (changes nothing).
async fn verify_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    button_page(
        &state,
        &headers,
        query.as_deref(),
        LinkPurpose::VerifyEmail,
        "Confirm your e-mail address",
        "For the account <strong>{username}</strong>.",
        "Verify",
    )
    .await
}

/// The page of a link whose one button does the work: `intro` (with
/// `{username}`, escaped) and the button `label`, posting the token to the
/// purpose's path. A dead link gets its page.
async fn button_page(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
    purpose: LinkPurpose,
    title: &str,
    intro: &str,
    label: &str,
) -> Response {
    let Some(token) = query_token(query) else {
        return dead_link_page(purpose);
    };
    match state.recovery.link_page(&token, purpose).await {
        Ok(view) => form_page(state, headers, StatusCode::OK, title, |hidden| {
            format!(
                r#"<h1>{title}</h1>
<p>{intro}</p>
<form method="post" action="{action}">
{hidden}
<input type="hidden" name="token" value="{token}">
<p class="actions"><button type="submit">{label}</button></p>
</form>"#,
                title = escape(title),
                intro = intro.replace("{username}", &escape(&view.username)),
                action = purpose.path(),
                token = escape(&token),
                label = escape(label),
            )
        }),
        Err(Refusal::InvalidGrant(_)) => dead_link_page(purpose),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /auth/email/verify` `{"token"}`.
async fn verify(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let page = from_page(&headers);
    let params = match form_params(&state, &headers, &body) {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let token = params.get("token").unwrap_or_default();
    match (state.recovery.verify(token, &ctx).await, page) {
        (Ok(_), false) => axum::Json(json!({ "status": "verified" })).into_response(),
        (Ok(_), true) => done_page(
            "Address confirmed",
            "<p role=\"status\">Thank you: your e-mail address is confirmed.</p>\n<p><a href=\"/\">Go to your account</a></p>",
        ),
        (Err(_), true) => dead_link_page(LinkPurpose::VerifyEmail),
        (Err(e), false) => ApiError::from(e).into_response(),
    }
}

// --- not me -----------------------------------------------------------------

/// `GET /auth/not-me?token=…`: the `This wasn't me` button (changes
/// nothing).
async fn not_me_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    button_page(
        &state,
        &headers,
        query.as_deref(),
        LinkPurpose::NotMe,
        "A new sign-in to your account",
        "The account <strong>{username}</strong> was signed in to from a device it had not been used on before. \
         If that was not you, end that sign-in now; you can then choose a new password.",
        "This wasn't me",
    )
    .await
}

/// `POST /auth/not-me` `{"token"}`: ends that sign-in's session (`not_me`).
async fn not_me(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let page = from_page(&headers);
    let params = match form_params(&state, &headers, &body) {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let token = params.get("token").unwrap_or_default();
    match (state.recovery.not_me(token, &ctx).await, page) {
        (Ok(done), false) => {
            axum::Json(json!({ "status": "ended", "session_ended": done.ended })).into_response()
        }
        (Ok(_), true) => done_page(
            "That sign-in has ended",
            "<p role=\"status\">The sign-in you did not recognise has ended. Whoever made it may know your password: choose a new one now.</p>\n<p><a href=\"/auth/password/forgot\">Reset your password</a></p>",
        ),
        (Err(_), true) => dead_link_page(LinkPurpose::NotMe),
        (Err(e), false) => ApiError::from(e).into_response(),
    }
}

// --- change -----------------------------------------------------------------

/// `POST /auth/password` `{"current_password", "new_password"}`, signed in
/// (a user's access token): the other sessions end (`password_changed`),
/// this one stays.
async fn change_password(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    super::browser::check_origin(&headers, state.config())?;
    let principal =
        super::extract::authenticate(&state, &headers, &Method::POST, "/auth/password").await?;
    if principal.claims.sid.is_none() {
        return Err(ApiError::forbidden(
            "only a user's session can change its password",
        ));
    }
    let params = Params::from_body(&headers, &body, true)?;
    let current = params.require("current_password")?;
    let new = params.require("new_password")?;
    state
        .recovery
        .change_password(
            &principal.claims.sub,
            principal.claims.sid.as_deref(),
            current,
            new,
            &ctx,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
