//! `/device` (SPEC §16): where a person connects a device that showed them a
//! user code. The page asks for the code (`Code`, `Continue`), then the
//! usual sign-in, then always asks whether to allow the device
//! (`decision=allow|deny`; never skipped, even for a first-party client or
//! a remembered consent, since the person must check that the code is the
//! one their own device shows), then tells them to go back to the device.
//! Every form carries the CSRF token of the authorization pages and the
//! code; each step looks the code up again, counted against the address.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use latchkey_app::flows::{DeviceRequest, format_user_code};
use latchkey_app::service::Refusal;
use latchkey_core::store::User;

use super::extract::Params;
use super::pages::{
    LOGIN_FIELDS, NotSignedIn, csrf_token, error_page, escape, form_sign_in, html_page,
    html_page_with_passkeys, passkey_form, replace_sign_in, same_origin_form, scope_items,
    second_step_form, signed_in, with_csrf_cookie,
};
use crate::error::ApiError;
use crate::state::{AppState, RequestContext};

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/device", get(code_page).post(device_form))
}

/// The longest code accepted in a form.
const MAX_CODE_CHARS: usize = 32;

/// A page with one of the device flow's forms, its CSRF cookie set.
fn page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    title: &str,
    body: impl FnOnce(&str) -> String,
) -> Response {
    framed(state, headers, status, title, body, false)
}

/// [`page`], with the passkey button's script when `passkeys`.
fn framed(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    title: &str,
    body: impl FnOnce(&str) -> String,
    passkeys: bool,
) -> Response {
    let Some(csrf) = csrf_token(state, headers) else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, "Try again in a moment.");
    };
    let hidden = format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        escape(&csrf)
    );
    let response = if passkeys {
        html_page_with_passkeys(status, title, &body(&hidden), "'self'")
    } else {
        html_page(status, title, &body(&hidden), "'self'")
    };
    with_csrf_cookie(state, response, &csrf)
}

/// The first step: the code, prefilled from `verification_uri_complete`.
fn ask_code(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    prefill: &str,
    alert: Option<&str>,
) -> Response {
    page(state, headers, status, "Connect a device", |hidden| {
        format!(
            r#"<h1>Connect a device</h1>
<p>Enter the code your device shows.</p>
<form method="post" action="/device">
{hidden}
<p><label for="user_code">Code</label>
<input id="user_code" name="user_code" value="{prefill}" autocomplete="off" autocapitalize="characters" spellcheck="false" required maxlength="{MAX_CODE_CHARS}" aria-describedby="code-help">
<span id="code-help" class="hint">Eight letters, like BCDF-GHJK.</span></p>
<p class="error" role="alert">{alert}</p>
<p class="actions"><button type="submit">Continue</button></p>
</form>"#,
            prefill = escape(prefill),
            alert = alert.map(escape).unwrap_or_default(),
        )
    })
}

fn code_field(request: &DeviceRequest) -> String {
    format!(
        r#"<input type="hidden" name="user_code" value="{}">"#,
        format_user_code(&request.user_code)
    )
}

fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    request: &DeviceRequest,
    alert: Option<&str>,
) -> Response {
    let status = if alert.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let passkeys = state.passkeys.off().is_none();
    let body = |hidden: &str| {
        let hidden = format!("{hidden}\n{}", code_field(request));
        format!(
            r#"<h1>Log in to connect {client}</h1>
<form method="post" action="/device">
{hidden}
{LOGIN_FIELDS}
<p class="error" role="alert">{alert}</p>
<p class="actions"><button type="submit">Log in</button></p>
</form>
{passkey}"#,
            client = escape(&request.client.name),
            alert = alert.map(escape).unwrap_or_default(),
            passkey = passkey_form(state, "/device", &hidden),
        )
    };
    framed(state, headers, status, "Log in", body, passkeys)
}

fn second_step_page(
    state: &AppState,
    headers: &HeaderMap,
    request: &DeviceRequest,
    mfa_token: &str,
    recovery: bool,
    message: Option<&str>,
) -> Response {
    page(
        state,
        headers,
        StatusCode::OK,
        "Confirm it is you",
        |hidden| {
            let hidden = format!("{hidden}\n{}", code_field(request));
            format!(
                "<h1>Confirm it is you to connect {client}</h1>\n{form}",
                client = escape(&request.client.name),
                form = second_step_form("/device", &hidden, mfa_token, recovery, message),
            )
        },
    )
}

fn confirm_page(
    state: &AppState,
    headers: &HeaderMap,
    request: &DeviceRequest,
    user: &User,
) -> Response {
    let scopes = scope_items(&request.scope);
    page(
        state,
        headers,
        StatusCode::OK,
        "Allow the device",
        |hidden| {
            format!(
                r#"<h1>Allow {client} on your device?</h1>
<p>Signed in as <strong>{user}</strong>. Allow this only if you started it on your own device and it shows the code <strong>{code}</strong>.</p>
<p>{client} asks for:</p>
<ul>{scopes}</ul>
<form method="post" action="/device">
{hidden}
{field}
<p class="actions"><button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button></p>
</form>"#,
                client = escape(&request.client.name),
                user = escape(&user.username),
                code = format_user_code(&request.user_code),
                field = code_field(request),
            )
        },
    )
}

fn done_page(allowed: bool) -> Response {
    let (title, text) = if allowed {
        (
            "Device connected",
            "You can go back to your device: it is signing in.",
        )
    } else {
        (
            "Device not connected",
            "You denied the request. You can go back to your device.",
        )
    };
    let body = format!("<h1>{title}</h1>\n<p role=\"status\">{}</p>", escape(text));
    html_page(StatusCode::OK, title, &body, "'none'")
}

/// `GET /device`, `GET /device?user_code=…`. A query that cannot be read
/// (not UTF-8, a NUL, a parameter twice, a code far too long) is a `400`
/// page, not an empty form.
async fn code_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let prefill = Params::from_form(query.as_deref().unwrap_or("").as_bytes())
        .ok()
        .map(|q| q.get("user_code").unwrap_or_default().to_owned());
    match prefill {
        Some(code) if code.chars().count() <= MAX_CODE_CHARS => {
            ask_code(&state, &headers, StatusCode::OK, &code, None)
        }
        _ => error_page(
            StatusCode::BAD_REQUEST,
            "This link is malformed. Open the device page and type the code.",
        ),
    }
}

/// `POST /device`: the code, then the sign-in, then the answer.
async fn device_form(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(params) = Params::from_body(&headers, &body, false) else {
        return error_page(StatusCode::BAD_REQUEST, "The form is malformed.");
    };
    if !same_origin_form(&state, &headers, &params) {
        return error_page(
            StatusCode::FORBIDDEN,
            "This form did not come from this server's own page. Open the device page again.",
        );
    }
    let typed = params.get("user_code").unwrap_or_default();
    let found = if typed.chars().count() > MAX_CODE_CHARS {
        Ok(None)
    } else {
        state.device.find(typed, &ctx).await
    };
    let request = match found {
        Ok(Some(request)) => request,
        Ok(None) => {
            return ask_code(
                &state,
                &headers,
                StatusCode::BAD_REQUEST,
                typed,
                Some("That code is not valid or has expired. Check the code on your device."),
            );
        }
        Err(Refusal::TooManyRequests { .. }) => {
            return ask_code(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                "",
                Some("Too many attempts. Wait a while, then try again."),
            );
        }
        Err(e) => return axum::response::IntoResponse::into_response(ApiError::from(e)),
    };
    match form_sign_in(&state, &ctx, &params).await {
        Some(Ok(signed)) => {
            let mut response = confirm_page(&state, &headers, &request, &signed.user);
            replace_sign_in(&state, &headers, &ctx, &signed, &mut response).await;
            return response;
        }
        Some(Err(NotSignedIn::Refused(message))) => {
            return login_page(&state, &headers, &request, Some(message));
        }
        Some(Err(NotSignedIn::SecondStep {
            mfa_token,
            recovery,
            message,
        })) => {
            return second_step_page(&state, &headers, &request, &mfa_token, recovery, message);
        }
        None => {}
    }
    let Ok(Some((session, user))) = signed_in(&state, &headers).await else {
        return login_page(&state, &headers, &request, None);
    };
    let allow = match params.get("decision") {
        Some("allow") => true,
        Some("deny") => false,
        None => return confirm_page(&state, &headers, &request, &user),
        Some(_) => return error_page(StatusCode::BAD_REQUEST, "The form is malformed."),
    };
    match state
        .device
        .answer(&request, &user, &session, allow, &ctx)
        .await
    {
        Ok(true) => done_page(allow),
        Ok(false) => error_page(
            StatusCode::CONFLICT,
            "This code was answered already, or has expired. Start again on your device.",
        ),
        Err(e) => axum::response::IntoResponse::into_response(ApiError::from(e)),
    }
}
