//! `/oauth/authorize` (SPEC §10): the authorization code flow's pages, the
//! sign-in cookie, consent, and the redirect back; `/oauth/userinfo` and
//! RP-initiated logout (`/oauth/logout`).
//!
//! Until the client and its redirect URI are known good, every error is a
//! page of this server's own, never a redirect; after that, errors go back
//! to the client as `error=…` with `state` and `iss` (RFC 9207). The pages
//! have no script but the passkey button's; their forms carry a CSRF token
//! that must match a `SameSite=Strict` cookie, and `Origin`, when sent, must
//! be this server's.
//!
//! `acr_values` and `max_age` (SPEC §12): a sign-in older than `max_age`
//! signs in again; one weaker than the weakest level `acr_values` names
//! steps up first (the one-time code for `mfa` when the user has an
//! authenticator app, else a passkey), and a user who has neither gets
//! `unmet_authentication_requirements`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use latchkey_core::code::is_s256_challenge;
use latchkey_core::jwt::IdClaims;
use latchkey_core::rotation::RevocationReason;
use latchkey_core::scope::Scope;
use latchkey_core::store::{Client, Session, User};
use latchkey_core::strength::Acr;
use serde_json::json;

use latchkey_app::flows::{CodeGrant, redirect_uri_allowed};

use super::extract::{Authenticated, Params};
use super::pages::{
    LOGIN_FIELDS, NotSignedIn, csrf_token, end_sign_in, error_page, escape, form_sign_in,
    html_page, html_page_with_passkeys, passkey_form, replace_sign_in, same_origin_form,
    scope_items, second_step_form, signed_in, with_csrf_cookie,
};
use crate::error::ApiError;
use crate::state::{AppState, RequestContext};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth/authorize", get(authorize).post(authorize_form))
        .route("/oauth/userinfo", get(userinfo).post(userinfo))
        .route("/oauth/logout", get(logout).post(logout_confirmed))
}

/// The longest `state` or `nonce` accepted.
const MAX_OPAQUE: usize = 512;

/// The parameters an authorization request carries from page to page.
const CARRIED: [&str; 10] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "acr_values",
    "max_age",
];

/// A validated authorization request.
struct Authorization {
    client: Client,
    redirect_uri: String,
    state: Option<String>,
    scope: Scope,
    nonce: Option<String>,
    code_challenge: String,
    prompt: Vec<String>,
    /// The weakest level `acr_values` names, if it names a known one.
    acr: Option<Acr>,
    /// The oldest sign-in accepted, in seconds.
    max_age: Option<i64>,
    /// The parameters as they came, to carry in the pages' forms.
    carried: Vec<(&'static str, String)>,
}

/// Why a request stops before a code.
enum Failure {
    /// Shown here: the client or its redirect URI cannot be trusted.
    Page(StatusCode, String),
    /// Sent back to the client.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

impl Failure {
    fn respond(self, issuer: &str) -> Response {
        match self {
            Self::Page(status, message) => error_page(status, &message),
            Self::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut pairs = vec![
                    ("error", error.to_owned()),
                    ("error_description", description),
                ];
                if let Some(state) = state {
                    pairs.push(("state", state));
                }
                pairs.push(("iss", issuer.to_owned()));
                redirect(&redirect_uri, &pairs, StatusCode::SEE_OTHER)
            }
        }
    }
}

async fn validate(state: &AppState, params: &Params) -> Result<Authorization, Failure> {
    let page = |message: &str| Failure::Page(StatusCode::BAD_REQUEST, message.to_owned());
    let client_id = params
        .get("client_id")
        .ok_or_else(|| page("The request names no client."))?;
    let client = state
        .store()
        .client_by_id(client_id)
        .await
        .map_err(|_| {
            Failure::Page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment.".into(),
            )
        })?
        .filter(|c| !c.disabled)
        .ok_or_else(|| page("This application is not registered here."))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| page("The request names no redirect URI."))?;
    if !redirect_uri_allowed(&client.redirect_uris, redirect_uri) {
        return Err(page(
            "This redirect URI is not registered for this application.",
        ));
    }
    let back = |error: &'static str, description: &str| Failure::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: params.get("state").map(str::to_owned),
        error,
        description: description.to_owned(),
    };
    if params.get("state").is_some_and(|s| s.len() > MAX_OPAQUE)
        || params.get("nonce").is_some_and(|s| s.len() > MAX_OPAQUE)
    {
        return Err(back("invalid_request", "state or nonce is too long"));
    }
    if params.get("response_type") != Some("code") {
        return Err(back(
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    let challenge = params.get("code_challenge");
    if params.get("code_challenge_method") != Some("S256")
        || !challenge.is_some_and(is_s256_challenge)
    {
        return Err(back(
            "invalid_request",
            "PKCE is required: code_challenge_method=S256 and a code_challenge",
        ));
    }
    let scope = state
        .issuer
        .user_scope(params.get("scope"), Some(&client))
        .map_err(|e| back("invalid_scope", &e.to_string()))?;
    let prompt: Vec<String> = params
        .get("prompt")
        .map(|p| {
            p.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if prompt.iter().any(|p| p == "none") && prompt.len() > 1 {
        return Err(back("invalid_request", "prompt=none stands alone"));
    }
    let max_age = match params.get("max_age") {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(seconds) if seconds >= 0 => Some(seconds),
            _ => {
                return Err(back(
                    "invalid_request",
                    "max_age must be a whole number of seconds",
                ));
            }
        },
    };
    let acr = params.get("acr_values").and_then(Acr::requested);
    let carried = CARRIED
        .iter()
        .filter_map(|name| params.get(name).map(|v| (*name, v.to_owned())))
        .collect();
    Ok(Authorization {
        redirect_uri: redirect_uri.to_owned(),
        state: params.get("state").map(str::to_owned),
        nonce: params.get("nonce").map(str::to_owned),
        code_challenge: challenge.unwrap_or_default().to_owned(),
        scope,
        prompt,
        acr,
        max_age,
        carried,
        client,
    })
}

/// `GET /oauth/authorize`.
async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let issuer = state.config().issuer.clone();
    let params = match Params::from_form(query.as_deref().unwrap_or("").as_bytes()) {
        Ok(params) => params,
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "The request is malformed."),
    };
    let request = match validate(&state, &params).await {
        Ok(request) => request,
        Err(failure) => return failure.respond(&issuer),
    };
    let signed_in = match signed_in(&state, &headers).await {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let forced = request.prompt.iter().any(|p| p == "login");
    let silent = request.prompt.iter().any(|p| p == "none");
    match signed_in {
        Some((session, user)) if !forced => proceed(&state, &headers, request, session, user).await,
        _ if silent => back(&request, "login_required", "no one is signed in").respond(&issuer),
        _ => login_page(&state, &headers, &request, None),
    }
}

/// `POST /oauth/authorize`: the login form or the consent form.
async fn authorize_form(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let issuer = state.config().issuer.clone();
    let params = match Params::from_body(&headers, &body, false) {
        Ok(params) => params,
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "The form is malformed."),
    };
    if !same_origin_form(&state, &headers, &params) {
        return error_page(
            StatusCode::FORBIDDEN,
            "This form did not come from this server's own page. Go back to the application and start again.",
        );
    }
    let request = match validate(&state, &params).await {
        Ok(request) => request,
        Err(failure) => return failure.respond(&issuer),
    };
    match form_sign_in(&state, &ctx, &params).await {
        Some(Ok(signed)) => {
            let mut response = proceed(
                &state,
                &headers,
                request,
                signed.session.clone(),
                signed.user.clone(),
            )
            .await;
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
            let step = SecondStep {
                mfa_token: &mfa_token,
                recovery,
                message,
            };
            return second_step_page(&state, &headers, &request, &step);
        }
        None => {}
    }
    let Ok(Some((session, user))) = signed_in(&state, &headers).await else {
        return login_page(&state, &headers, &request, Some("Sign in first."));
    };
    match params.get("decision") {
        Some("allow") => {
            if let Some(first) = strength_gate(&state, &headers, &request, &session, &user).await {
                return first;
            }
            if let Err(e) = state
                .authorizations
                .remember_consent(&user, &request.client, &request.scope, &ctx)
                .await
            {
                return ApiError::from(e).into_response();
            }
            code_redirect(&state, &request, &session, &user).await
        }
        Some("deny") => {
            back(&request, "access_denied", "the user denied the request").respond(&issuer)
        }
        _ => error_page(StatusCode::BAD_REQUEST, "The form is malformed."),
    }
}

/// The page a sign-in too old or too weak for the request shows first, if
/// it is: the sign-in again (`max_age`), or the step up (`acr_values`).
async fn strength_gate(
    state: &AppState,
    headers: &HeaderMap,
    request: &Authorization,
    session: &Session,
    user: &User,
) -> Option<Response> {
    let issuer = &state.config().issuer;
    let silent = request.prompt.iter().any(|p| p == "none");
    if let Some(max_age) = request.max_age
        && state.now().saturating_sub(session.auth_time) > max_age
    {
        if silent {
            return Some(
                back(
                    request,
                    "login_required",
                    "the sign-in is older than max_age",
                )
                .respond(issuer),
            );
        }
        // Not a failure: the page asks again, with a 200.
        let mut again = login_page(state, headers, request, Some("Sign in again to continue."));
        *again.status_mut() = StatusCode::OK;
        return Some(again);
    }
    let wanted = request.acr?;
    if session.auth_method.acr() >= wanted {
        return None;
    }
    if silent {
        return Some(
            back(
                request,
                "interaction_required",
                "the sign-in must be stronger",
            )
            .respond(issuer),
        );
    }
    if wanted == Acr::Mfa {
        let scope = state.issuer.user_scope(None, None).unwrap_or_default();
        match state.apps.second_step(&user.id, None, &scope).await {
            Ok(Some(mfa_token)) => {
                let step = SecondStep {
                    mfa_token: &mfa_token,
                    recovery: false,
                    message: Some("This application asks you to confirm it is you."),
                };
                return Some(second_step_page(state, headers, request, &step));
            }
            Ok(None) => {}
            Err(e) => return Some(ApiError::from(e).into_response()),
        }
    }
    let has_passkey = match state.passkeys.list(&user.id).await {
        Ok(held) => !held.is_empty(),
        Err(e) => return Some(ApiError::from(e).into_response()),
    };
    if has_passkey && state.passkeys.off().is_none() {
        return Some(step_up_page(state, headers, request, user));
    }
    Some(
        back(
            request,
            "unmet_authentication_requirements",
            "the user has no sign-in method strong enough for acr_values",
        )
        .respond(issuer),
    )
}

/// Signed in: a code, or first the step up or the consent page.
async fn proceed(
    state: &AppState,
    headers: &HeaderMap,
    request: Authorization,
    session: Session,
    user: User,
) -> Response {
    let issuer = &state.config().issuer;
    if let Some(first) = strength_gate(state, headers, &request, &session, &user).await {
        return first;
    }
    let ask = match state
        .authorizations
        .needs_consent(&user, &request.client, &request.scope)
        .await
    {
        Ok(needed) => {
            needed || (request.prompt.iter().any(|p| p == "consent") && !request.client.first_party)
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    if ask {
        if request.prompt.iter().any(|p| p == "none") {
            return back(&request, "consent_required", "the user has not consented")
                .respond(issuer);
        }
        return consent_page(state, headers, &request, &user);
    }
    code_redirect(state, &request, &session, &user).await
}

async fn code_redirect(
    state: &AppState,
    request: &Authorization,
    session: &Session,
    user: &User,
) -> Response {
    let grant = CodeGrant {
        user,
        client: &request.client,
        redirect_uri: &request.redirect_uri,
        code_challenge: &request.code_challenge,
        scope: &request.scope,
        nonce: request.nonce.as_deref(),
        auth_time: session.auth_time,
        auth_method: session.auth_method,
    };
    let code = match state.authorizations.issue_code(&grant).await {
        Ok(code) => code,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut pairs = vec![("code", code)];
    if let Some(s) = &request.state {
        pairs.push(("state", s.clone()));
    }
    pairs.push(("iss", state.config().issuer.clone()));
    redirect(&request.redirect_uri, &pairs, StatusCode::SEE_OTHER)
}

fn back(request: &Authorization, error: &'static str, description: &str) -> Failure {
    Failure::Redirect {
        redirect_uri: request.redirect_uri.clone(),
        state: request.state.clone(),
        error,
        description: description.to_owned(),
    }
}

fn hidden_fields(request: &Authorization, csrf: &str) -> String {
    let mut html = format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        escape(csrf)
    );
    for (name, value) in &request.carried {
        html.push_str(&format!(
            r#"<input type="hidden" name="{name}" value="{}">"#,
            escape(value)
        ));
    }
    html
}

/// Where the page's forms may send the browser: this server, and (after the
/// form's redirect) the client's redirect URI.
fn form_targets(redirect_uri: &str) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
            format!("'self' {}", u.origin().ascii_serialization())
        }
        Ok(u) => format!("'self' {}:", u.scheme()),
        Err(_) => "'self'".to_owned(),
    }
}

/// One of the pages' forms for `request`: `body` gets the hidden fields (the
/// CSRF token and the request's parameters); the page sets the CSRF cookie,
/// and loads the passkey script when `passkeys`.
fn form_page(
    state: &AppState,
    headers: &HeaderMap,
    request: &Authorization,
    (status, title, passkeys): (StatusCode, &str, bool),
    body: impl FnOnce(&str) -> String,
) -> Response {
    let Some(csrf) = csrf_token(state, headers) else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, "Try again in a moment.");
    };
    let body = body(&hidden_fields(request, &csrf));
    let targets = form_targets(&request.redirect_uri);
    let page = if passkeys {
        html_page_with_passkeys(status, title, &body, &targets)
    } else {
        html_page(status, title, &body, &targets)
    };
    with_csrf_cookie(state, page, &csrf)
}

fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    request: &Authorization,
    error: Option<&str>,
) -> Response {
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    form_page(
        state,
        headers,
        request,
        (status, "Log in", true),
        |hidden| {
            format!(
                r#"<h1>Log in to continue to {client}</h1>
<form method="post" action="/oauth/authorize">
{hidden}
{fields}
<p class="error" role="alert">{alert}</p>
<p class="actions"><button type="submit">Log in</button></p>
</form>
{passkey}"#,
                client = escape(&request.client.name),
                fields = LOGIN_FIELDS,
                alert = error.map(escape).unwrap_or_default(),
                passkey = passkey_form(state, "/oauth/authorize", hidden),
            )
        },
    )
}

/// A second step the page asks for.
struct SecondStep<'a> {
    mfa_token: &'a str,
    recovery: bool,
    message: Option<&'a str>,
}

fn second_step_page(
    state: &AppState,
    headers: &HeaderMap,
    request: &Authorization,
    step: &SecondStep<'_>,
) -> Response {
    let status = if step.message.is_some_and(|m| m.contains("not right")) {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    form_page(
        state,
        headers,
        request,
        (status, "Confirm it is you", false),
        |hidden| {
            format!(
                "<h1>Confirm it is you to continue to {client}</h1>\n{form}",
                client = escape(&request.client.name),
                form = second_step_form(
                    "/oauth/authorize",
                    hidden,
                    step.mfa_token,
                    step.recovery,
                    step.message,
                ),
            )
        },
    )
}

/// The step up to a passkey for a signed-in user.
fn step_up_page(
    state: &AppState,
    headers: &HeaderMap,
    request: &Authorization,
    user: &User,
) -> Response {
    let frame = (StatusCode::OK, "Confirm it is you", true);
    form_page(state, headers, request, frame, |hidden| {
        format!(
            "<h1>Confirm it is you to continue to {client}</h1>\n\
             <p>Signed in as <strong>{user}</strong>. {client} asks you to confirm with a passkey.</p>\n{form}",
            client = escape(&request.client.name),
            user = escape(&user.username),
            form = passkey_form(state, "/oauth/authorize", hidden),
        )
    })
}

fn consent_page(
    state: &AppState,
    headers: &HeaderMap,
    request: &Authorization,
    user: &User,
) -> Response {
    let scopes = scope_items(&request.scope);
    let frame = (StatusCode::OK, "Allow access", false);
    form_page(state, headers, request, frame, |hidden| {
        format!(
            r#"<h1>Allow {client} to use your account?</h1>
<p>Signed in as <strong>{user}</strong>. {client} asks for:</p>
<ul>{scopes}</ul>
<form method="post" action="/oauth/authorize">
{hidden}
<p class="actions"><button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button></p>
</form>"#,
            client = escape(&request.client.name),
            user = escape(&user.username),
        )
    })
}

/// A redirect to `uri` with `pairs` added to its query.
fn redirect(uri: &str, pairs: &[(&str, String)], status: StatusCode) -> Response {
    let mut target = uri.to_owned();
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        query.append_pair(name, value);
    }
    target.push(if uri.contains('?') { '&' } else { '?' });
    target.push_str(&query.finish());
    let mut response = status.into_response();
    if let Ok(location) = HeaderValue::from_str(&target) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET`/`POST /oauth/userinfo`: `sub`, with `profile` the username, with
/// `email` the address and whether it is verified.
async fn userinfo(Authenticated(principal): Authenticated) -> Result<Response, ApiError> {
    let Some(user) = principal.user else {
        return Err(ApiError::forbidden("a client's own token has no user"));
    };
    let scope = Scope::parse(&principal.claims.scope).unwrap_or_default();
    if !scope.contains("openid") {
        return Err(ApiError::forbidden("userinfo needs the openid scope"));
    }
    let mut info = json!({ "sub": user.id });
    if scope.contains("profile") {
        info["preferred_username"] = json!(user.username);
    }
    if scope.contains("email")
        && let Some(email) = &user.email
    {
        info["email"] = json!(email);
        info["email_verified"] = json!(user.email_verified);
    }
    Ok(Json(info).into_response())
}

/// An RP-initiated logout request whose ID-token hint, client and return
/// address were checked.
struct LogoutRequest {
    claims: IdClaims,
    /// The application's name, for the page.
    application: Option<String>,
    /// Where to go afterwards, one of the client's registered redirect URIs.
    target: Option<String>,
    state: Option<String>,
}

/// Checks `id_token_hint`, `client_id` and `post_logout_redirect_uri`; a
/// hint whose session has already ended is refused, so that an old ID token
/// does nothing (not even end a newer sign-in of the same user).
async fn logout_request(state: &AppState, params: &Params) -> Result<LogoutRequest, Response> {
    let Some(claims) = params
        .get("id_token_hint")
        .and_then(|t| state.authorizations.id_token_hint(t))
    else {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "Logging out from an application needs the ID token it received (id_token_hint).",
        ));
    };
    if params.get("client_id").is_some_and(|c| c != claims.aud) {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "The ID token is another application's.",
        ));
    }
    let client = state
        .store()
        .client_by_id(&claims.aud)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    let target = params.get("post_logout_redirect_uri");
    if let Some(target) = target
        && !client
            .as_ref()
            .is_some_and(|c| redirect_uri_allowed(&c.redirect_uris, target))
    {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "This address is not registered for the application.",
        ));
    }
    let live = state
        .store()
        .session_with_user(&claims.sid)
        .await
        .map_err(|e| ApiError::from(e).into_response())?
        .is_some_and(|(session, user)| user.id == claims.sub && session.is_live(state.now()));
    if !live {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "This application's session has already ended; there is nothing to log out of.",
        ));
    }
    Ok(LogoutRequest {
        claims,
        application: client.map(|c| c.name),
        target: target.map(str::to_owned),
        state: params.get("state").map(str::to_owned),
    })
}

/// `GET /oauth/logout` (OpenID Connect RP-Initiated Logout): checks the
/// request and asks the person to confirm with a `Log out` button. A `GET`
/// changes nothing, so another site's image or link cannot log anyone out.
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(params) = Params::from_form(query.as_deref().unwrap_or("").as_bytes()) else {
        return error_page(StatusCode::BAD_REQUEST, "The request is malformed.");
    };
    let request = match logout_request(&state, &params).await {
        Ok(request) => request,
        Err(page) => return page,
    };
    let Some(csrf) = csrf_token(&state, &headers) else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, "Try again in a moment.");
    };
    let mut hidden = format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        escape(&csrf)
    );
    for name in [
        "id_token_hint",
        "client_id",
        "post_logout_redirect_uri",
        "state",
    ] {
        if let Some(value) = params.get(name) {
            hidden.push_str(&format!(
                r#"<input type="hidden" name="{name}" value="{}">"#,
                escape(value)
            ));
        }
    }
    let application = request
        .application
        .unwrap_or_else(|| "the application".to_owned());
    let body = format!(
        r#"<h1>Log out?</h1>
<p>{application} asks to end your session here.</p>
<form method="post" action="/oauth/logout">
{hidden}
<p class="actions"><button type="submit">Log out</button></p>
</form>"#,
        application = escape(&application),
    );
    let targets = request
        .target
        .as_deref()
        .map(form_targets)
        .unwrap_or_else(|| "'self'".to_owned());
    let page = html_page(StatusCode::OK, "Log out", &body, &targets);
    with_csrf_cookie(&state, page, &csrf)
}

/// `POST /oauth/logout`: the confirmation of the page above (its CSRF token
/// and origin checked). Ends the session the ID token names and this
/// browser's sign-in (when it is the same user's), then goes back to
/// `post_logout_redirect_uri`, if given.
async fn logout_confirmed(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(params) = Params::from_form(&body) else {
        return error_page(StatusCode::BAD_REQUEST, "The request is malformed.");
    };
    if !same_origin_form(&state, &headers, &params) {
        return error_page(
            StatusCode::FORBIDDEN,
            "This form has expired. Go back to the application and log out again.",
        );
    }
    let request = match logout_request(&state, &params).await {
        Ok(request) => request,
        Err(page) => return page,
    };
    let claims = &request.claims;
    if let Err(e) = state
        .issuer
        .revoke_session(
            &claims.sid,
            &claims.sub,
            RevocationReason::Backchannel,
            Some(&claims.aud),
            &ctx,
        )
        .await
    {
        return ApiError::from(e).into_response();
    }
    let mut response = match &request.target {
        Some(target) => {
            let pairs: Vec<(&str, String)> =
                request.state.iter().map(|s| ("state", s.clone())).collect();
            redirect(target, &pairs, StatusCode::SEE_OTHER)
        }
        None => html_page(
            StatusCode::OK,
            "Logged out",
            "<h1>You have logged out</h1>\n<p role=\"status\">You can close this page.</p>",
            "'none'",
        ),
    };
    if let Err(e) = end_sign_in(&state, &headers, Some(&claims.sub), &ctx, &mut response).await {
        return e.into_response();
    }
    response
}

/// For the fuzz targets: a query of `GET /oauth/authorize`, parsed and
/// checked as the endpoint does; the redirect URI and PKCE challenge it
/// accepted.
#[cfg(feature = "fuzzing")]
pub(super) async fn validate_for_fuzzing(
    state: &AppState,
    query: &[u8],
) -> Option<(Client, String, String)> {
    let params = Params::from_form(query).ok()?;
    let request = validate(state, &params).await.ok()?;
    Some((request.client, request.redirect_uri, request.code_challenge))
}
