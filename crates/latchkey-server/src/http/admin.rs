//! The admin API (SPEC §11) for an application's back end: users, their
//! sessions, the audit trail, and sessions for users the application
//! authenticated itself. Every call needs a `client_credentials` token of a
//! registered client whose scope holds `latchkey:admin`; every change is
//! audited with that client's id. JSON in and out; every input is checked
//! before anything changes.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_core::rotation::RevocationReason;
use latchkey_core::scope::{ADMIN_SCOPE, Scope};
use latchkey_core::store::{AuditFilter, Session, User};
use latchkey_core::strength::Acr;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::extract::{Params, check_text};
use super::oauth::token_response;
use crate::error::ApiError;
use crate::state::{AppState, RequestContext};
use latchkey_app::service::Actor;
use latchkey_core::jwt::FIRST_PARTY_CLIENT_ID;

/// The longest search of users (`q`): longer than any name or address.
const MAX_SEARCH_CHARS: usize = 320;

/// Page sizes: the default, and the most a caller may ask for.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(list_users).post(create_user))
        .route(
            "/admin/users/{id}",
            get(read_user).patch(update_user).delete(delete_user),
        )
        .route(
            "/admin/users/{id}/sessions",
            get(user_sessions).delete(revoke_user_sessions),
        )
        .route("/admin/users/{id}/factors", get(user_factors))
        .route(
            "/admin/users/{id}/password-reset",
            post(send_password_reset),
        )
        .route("/admin/overview", get(overview))
        .route(
            "/admin/users/{id}/factors/{factor_id}",
            delete(remove_user_factor),
        )
        .route("/admin/sessions", post(create_session))
        .route("/admin/sessions/{sid}", delete(revoke_session))
        .route("/admin/audit", get(audit))
        .route("/admin/clients", get(list_clients))
        .route("/admin/webhooks", get(list_webhooks).post(add_webhook))
        .route("/admin/webhooks/{id}", delete(remove_webhook))
        .route("/admin/webhooks/{id}/deliveries", get(webhook_deliveries))
        .route(
            "/admin/clients/{id}",
            get(read_client).patch(update_client).delete(remove_client),
        )
}

/// Who calls the admin API: a registered client with its own token, or an
/// admin user signed in to the operator's console (SPEC §15).
struct Admin {
    /// The client, for a client's own token.
    client_id: Option<String>,
    /// The admin user, for a console token.
    user_id: Option<String>,
}

impl Admin {
    fn actor(&self, ctx: &RequestContext) -> Actor {
        match &self.user_id {
            Some(user_id) => Actor::console(ctx, user_id),
            None => Actor::request(ctx, self.client_id.as_deref()),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal =
            super::extract::authenticate(state, &parts.headers, &parts.method, parts.uri.path())
                .await?;
        let claims = &principal.claims;
        let refuse = || {
            ApiError::forbidden(
                "the admin API needs a token with the scope latchkey:admin: a client's own, \
                 or an admin's console sign-in",
            )
        };
        if !Scope::parse(&claims.scope).is_ok_and(|s| s.contains(ADMIN_SCOPE)) {
            return Err(refuse());
        }
        match (&principal.user, &claims.sid) {
            // A client's own token (client_credentials). Authenticating it
            // checked its client: still registered and enabled, the token's
            // scope within the client's scope now (so a withdrawn
            // `latchkey:admin` ends it at once), and issued after its last
            // rotation. Only confidential clients get such tokens.
            (None, None) => Ok(Self {
                client_id: Some(claims.client_id.clone()),
                user_id: None,
            }),
            // A console sign-in: only an admin's own first-party session
            // got the scope; the role and the sign-in's strength are read
            // again now (the session's user may be a cached copy), so that
            // withdrawing the role, or asking for more, holds at once.
            (Some(user), Some(_)) if claims.client_id == FIRST_PARTY_CLIENT_ID => {
                // A user gone since is refused; a database that fails says so,
                // as everywhere else, rather than posing as a refusal.
                let fresh = match state.users.by_id(&user.id).await {
                    Ok(fresh) => fresh,
                    Err(latchkey_app::service::ServiceError::NotFound) => return Err(refuse()),
                    Err(e) => return Err(e.into()),
                };
                let strong = claims
                    .acr
                    .as_deref()
                    .and_then(Acr::parse)
                    .is_some_and(|acr| acr >= state.config().console_acr);
                if !fresh.admin || fresh.disabled || !strong {
                    return Err(refuse());
                }
                Ok(Self {
                    client_id: None,
                    user_id: Some(fresh.id),
                })
            }
            _ => Err(refuse()),
        }
    }
}

/// A JSON body into `T`: `Content-Type: application/json`, an object of the
/// expected fields only (a duplicated or unknown one is refused), and no
/// NUL byte in any string.
fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if content_type.as_deref() != Some("application/json") {
        return Err(ApiError::invalid_request(
            "Content-Type must be application/json",
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::invalid_request("the body is not valid JSON"))?;
    check_strings(&value)?;
    // Read again from the bytes, where a duplicated field is still seen.
    serde_json::from_slice(body).map_err(|e| {
        let why: String = e.to_string().chars().take(200).collect();
        ApiError::invalid_request(format!("bad body: {why}"))
    })
}

fn check_strings(value: &serde_json::Value) -> Result<(), ApiError> {
    match value {
        serde_json::Value::String(s) => check_text("a string", s),
        serde_json::Value::Array(items) => items.iter().try_for_each(check_strings),
        serde_json::Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            check_text("a field name", k)?;
            check_strings(v)
        }),
        _ => Ok(()),
    }
}

/// The query string's parameters, each at most once, none unknown.
fn query(raw: Option<&str>, known: &[&str]) -> Result<Params, ApiError> {
    let params = Params::from_form(raw.unwrap_or("").as_bytes())?;
    if let Some(name) = params.names().find(|n| !known.contains(n)) {
        let name: String = name.chars().take(64).collect();
        return Err(ApiError::invalid_request(format!(
            "unknown parameter {name}"
        )));
    }
    Ok(params)
}

fn limit(params: &Params) -> Result<u32, ApiError> {
    match params.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::invalid_request(format!("limit is 1 to {MAX_LIMIT}"))),
    }
}

fn bad_cursor() -> ApiError {
    ApiError::invalid_request("bad cursor")
}

/// A cursor is opaque to callers: the base64url of where the page ended.
fn encode_cursor(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position)
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    if cursor.len() > 1024 {
        return Err(bad_cursor());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
    if text.is_empty() || text.chars().any(char::is_control) {
        return Err(bad_cursor());
    }
    Ok(text)
}

/// An id from the path: no NUL, no control character, not absurdly long.
fn path_id(id: &str) -> Result<&str, ApiError> {
    check_text("the id", id)?;
    if id.len() > 256 || id.chars().any(char::is_control) {
        return Err(ApiError::not_found("no such id"));
    }
    Ok(id)
}

#[derive(Serialize)]
struct UserView {
    id: String,
    username: String,
    email: Option<String>,
    email_verified: bool,
    admin: bool,
    disabled: bool,
    created_at: i64,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            username: u.username,
            email: u.email,
            email_verified: u.email_verified,
            admin: u.admin,
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

#[derive(Serialize)]
struct SessionView {
    id: String,
    user_id: String,
    client_id: Option<String>,
    scope: String,
    created_at: i64,
    last_used_at: i64,
    expires_at: i64,
    ip: String,
    user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_reason: Option<String>,
}

impl From<Session> for SessionView {
    fn from(s: Session) -> Self {
        Self {
            ended_at: s.revoked_at,
            end_reason: s.revoked_reason,
            id: s.id,
            user_id: s.user_id,
            client_id: s.client_id,
            scope: s.scope,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            ip: s.ip,
            user_agent: s.user_agent,
        }
    }
}

#[derive(Serialize)]
struct ClientView {
    client_id: String,
    name: String,
    scope: String,
    confidential: bool,
    redirect_uris: Vec<String>,
    first_party: bool,
    disabled: bool,
    created_at: i64,
    backchannel_logout_uri: Option<String>,
    /// Only in the answer to a secret rotation, this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

impl From<latchkey_core::store::Client> for ClientView {
    fn from(c: latchkey_core::store::Client) -> Self {
        Self {
            client_id: c.id,
            name: c.name,
            scope: c.scope,
            confidential: c.secret_hash.is_some(),
            redirect_uris: c.redirect_uris,
            first_party: c.first_party,
            disabled: c.disabled,
            created_at: c.created_at,
            backchannel_logout_uri: c.backchannel_logout_uri,
            client_secret: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: Option<String>,
    email: Option<String>,
    admin: Option<bool>,
}

async fn create_user(
    State(state): State<AppState>,
    ctx: RequestContext,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: NewUser = json_body(&headers, &body)?;
    let actor = admin.actor(&ctx);
    let users = &state.users;
    let user = match new.password {
        Some(password) => {
            users
                .add(&new.username, password, new.email.as_deref(), &actor)
                .await?
        }
        None => {
            users
                .add_without_password(&new.username, new.email.as_deref(), &actor)
                .await?
        }
    };
    let user = match new.admin {
        Some(true) => users.set_admin(&user, true, &actor).await?,
        _ => user,
    };
    Ok((StatusCode::CREATED, Json(UserView::from(user))).into_response())
}

async fn list_users(
    State(state): State<AppState>,
    _admin: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = query(raw.as_deref(), &["limit", "cursor", "q"])?;
    let limit = limit(&params)?;
    let after = params.get("cursor").map(decode_cursor).transpose()?;
    let search = params.get("q").map(str::trim).filter(|q| !q.is_empty());
    // One more than asked tells whether another page follows.
    let mut users = match search {
        None => state.users.page(after.as_deref(), limit + 1).await?,
        Some(q) => {
            if q.chars().count() > MAX_SEARCH_CHARS || q.chars().any(char::is_control) {
                return Err(ApiError::invalid_request(format!(
                    "q is at most {MAX_SEARCH_CHARS} characters, none of them a control character"
                )));
            }
            state
                .store()
                .search_users(&q.to_lowercase(), after.as_deref(), limit + 1)
                .await?
        }
    };
    let next_cursor = if users.len() > limit as usize {
        users.truncate(limit as usize);
        // A search pages by name, the full list by id.
        users
            .last()
            .map(|u| encode_cursor(if search.is_some() { &u.username } else { &u.id }))
    } else {
        None
    };
    let users: Vec<UserView> = users.into_iter().map(UserView::from).collect();
    Ok(Json(json!({ "users": users, "next_cursor": next_cursor })).into_response())
}

async fn read_user(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = state.users.by_id(path_id(&id)?).await?;
    Ok(Json(UserView::from(user)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    disabled: Option<bool>,
    password: Option<String>,
    /// Absent: unchanged; `null`: cleared.
    #[serde(default, deserialize_with = "present")]
    email: Option<Option<String>>,
    admin: Option<bool>,
}

/// A field that is present, `null` or not.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Every change is checked before anything changes. A new password revokes
/// every session (`password_changed`), disabling too (`user_disabled`); a
/// new address is unverified and gets a verification link.
async fn update_user(
    State(state): State<AppState>,
    ctx: RequestContext,
    admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let change: UserChange = json_body(&headers, &body)?;
    if change.disabled.is_none()
        && change.password.is_none()
        && change.email.is_none()
        && change.admin.is_none()
    {
        return Err(ApiError::invalid_request(
            "nothing to change: give disabled, password, email or admin",
        ));
    }
    if let Some(password) = &change.password {
        latchkey_core::password::check_new_password(password)
            .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    }
    if let Some(Some(email)) = &change.email {
        latchkey_core::account::check_email(email)
            .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    }
    let users = &state.users;
    let mut user = users.by_id(path_id(&id)?).await?;
    let actor = admin.actor(&ctx);
    if let Some(email) = &change.email {
        user = users.set_email(&user, email.as_deref(), &actor).await?;
    }
    if let Some(password) = change.password {
        users.set_password(&user, password, true, &actor).await?;
    }
    if let Some(admin) = change.admin
        && admin != user.admin
    {
        user = users.set_admin(&user, admin, &actor).await?;
    }
    if let Some(disabled) = change.disabled
        && disabled != user.disabled
    {
        users.set_disabled(&user, disabled, &actor).await?;
        user.disabled = disabled;
    }
    Ok(Json(UserView::from(user)).into_response())
}

async fn list_clients(
    State(state): State<AppState>,
    _admin: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    query(raw.as_deref(), &[])?;
    let clients: Vec<ClientView> = state
        .clients
        .list()
        .await?
        .into_iter()
        .map(ClientView::from)
        .collect();
    Ok(Json(json!({ "clients": clients })).into_response())
}

async fn read_client(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let client = state.clients.by_id(path_id(&id)?).await?;
    Ok(Json(ClientView::from(client)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientChange {
    disabled: Option<bool>,
    scope: Option<String>,
    rotate_secret: Option<bool>,
}

/// `disabled`, `scope` and `rotate_secret: true`, each checked before
/// anything changes; the answer carries a new secret only this once. An
/// admin client cannot disable itself here (the command line can).
async fn update_client(
    State(state): State<AppState>,
    ctx: RequestContext,
    admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let change: ClientChange = json_body(&headers, &body)?;
    let rotate = change.rotate_secret == Some(true);
    if change.disabled.is_none() && change.scope.is_none() && !rotate {
        return Err(ApiError::invalid_request(
            "nothing to change: give disabled, scope or rotate_secret",
        ));
    }
    if let Some(scope) = &change.scope {
        Scope::parse(scope).map_err(|_| ApiError::invalid_request("not a valid scope"))?;
    }
    let id = path_id(&id)?;
    if change.disabled == Some(true) && admin.client_id.as_deref() == Some(id) {
        return Err(ApiError::invalid_request(
            "an admin client cannot disable itself",
        ));
    }
    let clients = &state.clients;
    let mut client = clients.by_id(id).await?;
    if rotate && client.secret_hash.is_none() {
        return Err(ApiError::invalid_request("a public client has no secret"));
    }
    let actor = admin.actor(&ctx);
    if let Some(scope) = &change.scope {
        client = clients.set_scope(id, scope, &actor).await?;
    }
    if let Some(disabled) = change.disabled {
        client = clients.set_disabled(id, disabled, &actor).await?;
    }
    let mut secret = None;
    if rotate {
        let (rotated, new_secret) = clients
            .rotate_secret(id, state.issuer.refresh_keys(), &actor)
            .await?;
        client = rotated;
        secret = Some(new_secret);
    }
    let mut view = ClientView::from(client);
    view.client_secret = secret;
    let mut response = Json(view).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// Removes a client (`204`): it cannot authenticate again, its own tokens
/// stop working at once, its users' sessions are revoked.
async fn remove_client(
    State(state): State<AppState>,
    ctx: RequestContext,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    if admin.client_id.as_deref() == Some(id) {
        return Err(ApiError::invalid_request(
            "an admin client cannot remove itself",
        ));
    }
    state.clients.remove(id, &admin.actor(&ctx)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_user(
    State(state): State<AppState>,
    ctx: RequestContext,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let users = &state.users;
    let user = users.by_id(path_id(&id)?).await?;
    users.delete(&user, &admin.actor(&ctx)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A user's live sessions; with `include=ended`, also those that ended in
/// the last 30 days, with `ended_at` and `end_reason`.
async fn user_sessions(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = query(raw.as_deref(), &["include"])?;
    let ended = super::sessions::include_ended(&params)?;
    let user = state.users.by_id(path_id(&id)?).await?;
    let mut sessions = state.store().live_sessions(&user.id, state.now()).await?;
    if ended {
        sessions.extend(super::sessions::recently_ended(&state, &user.id).await?);
    }
    let sessions: Vec<SessionView> = sessions.into_iter().map(SessionView::from).collect();
    Ok(Json(json!({ "sessions": sessions })).into_response())
}

async fn revoke_user_sessions(
    State(state): State<AppState>,
    ctx: RequestContext,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = state.users.by_id(path_id(&id)?).await?;
    state
        .sessions
        .revoke_all(&user.id, RevocationReason::Admin, &admin.actor(&ctx))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A user's second factors.
async fn user_factors(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    query(raw.as_deref(), &[])?;
    let user = state.users.by_id(path_id(&id)?).await?;
    let factors = super::factors::factors_of(&state, &user.id).await?;
    Ok(Json(serde_json::json!({ "factors": factors })).into_response())
}

/// Removes one of a user's factors: `204`, or `404` for no such factor.
async fn remove_user_factor(
    State(state): State<AppState>,
    ctx: RequestContext,
    admin: Admin,
    Path((id, factor_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let user = state.users.by_id(path_id(&id)?).await?;
    let factor_id = path_id(&factor_id)?;
    let removed = if factor_id.starts_with("pk_") {
        state
            .passkeys
            .remove(&user.id, factor_id, &admin.actor(&ctx))
            .await?
    } else {
        state
            .apps
            .remove_factor(&user.id, factor_id, &admin.actor(&ctx))
            .await?
    };
    if !removed {
        return Err(ApiError::not_found("no such factor"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `204` for a session that exists (revoked now, or already); `404` else.
async fn revoke_session(
    State(state): State<AppState>,
    ctx: RequestContext,
    admin: Admin,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let Some((session, _)) = state.store().session_with_user(path_id(&sid)?).await? else {
        return Err(ApiError::not_found("no such session"));
    };
    state
        .sessions
        .revoke(
            &session.id,
            &session.user_id,
            RevocationReason::Admin,
            &admin.actor(&ctx),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSession {
    user_id: String,
    scope: Option<String>,
    client_id: Option<String>,
}

/// A token pair for a user the application authenticated by its own means.
async fn create_session(
    State(state): State<AppState>,
    mut ctx: RequestContext,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: NewSession = json_body(&headers, &body)?;
    let user = state.users.by_id(path_id(&new.user_id)?).await?;
    let client = match new.client_id.as_deref() {
        None | Some(FIRST_PARTY_CLIENT_ID) => None,
        Some(id) => Some(
            state
                .store()
                .client_by_id(id)
                .await?
                .filter(|c| !c.disabled)
                .ok_or_else(|| ApiError::invalid_request("no such client"))?,
        ),
    };
    // A proof sent along binds the new session to the end user's key.
    let proof = super::dpop::token_proof(&state, &headers, "/admin/sessions").await?;
    super::dpop::bind(&mut ctx, proof.as_ref(), client.as_ref());
    // Sessions for users are for applications' back ends, which
    // authenticated the user themselves; the console signs nobody in.
    let Some(admin_client) = admin.client_id.as_deref() else {
        return Err(ApiError::forbidden(
            "sessions for users are made by an application's own token, not the console",
        ));
    };
    let Some(issued) = state
        .admin_sessions
        .start(
            &user,
            client.as_ref(),
            new.scope.as_deref(),
            admin_client,
            &ctx,
        )
        .await?
    else {
        return Err(ApiError::invalid_request("the user is disabled"));
    };
    Ok(super::dpop::with_nonce(
        &state,
        proof.as_ref(),
        token_response(&issued),
    ))
}

#[derive(Serialize)]
struct EventView {
    at: i64,
    kind: String,
    user_id: Option<String>,
    session_id: Option<String>,
    client_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    detail: String,
    /// The admin user who acted through the console.
    #[serde(skip_serializing_if = "Option::is_none")]
    actor_id: Option<String>,
}

fn time(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    params
        .get(name)
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| ApiError::invalid_request(format!("{name} is Unix seconds")))
        })
        .transpose()
}

/// Mails the user a password-reset link (the console's `Send password
/// reset`): `202`; `409 conflict` when they have no address to send it to,
/// `503` when mail is not set up.
async fn send_password_reset(
    State(state): State<AppState>,
    ctx: RequestContext,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = state.users.by_id(path_id(&id)?).await?;
    if state.config().smtp_url.is_none() {
        return Err(ApiError::Plain {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "temporarily_unavailable",
            description: "mail is not set up (LATCHKEY_SMTP_URL)".into(),
        });
    }
    if !state.recovery.send_reset_to(&user.id).await? {
        return Err(ApiError::Plain {
            status: StatusCode::CONFLICT,
            code: "conflict",
            description: "the user has no e-mail address".into(),
        });
    }
    state
        .issuer
        .events()
        .audit(
            "password_reset_sent",
            Some(&user.id),
            None,
            &admin.actor(&ctx),
            "by an administrator",
        )
        .await;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The console's overview (SPEC §15): the last hour per minute, the last
/// day per hour, and the numbers of users and live sessions, read from the
/// database so that every instance shows the same.
async fn overview(
    State(state): State<AppState>,
    _admin: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    query(raw.as_deref(), &[])?;
    let overview = state.activity.overview().await?;
    Ok(Json(overview).into_response())
}

async fn audit(
    State(state): State<AppState>,
    _admin: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = query(
        raw.as_deref(),
        &["user_id", "kind", "since", "until", "limit", "cursor"],
    )?;
    let limit = limit(&params)?;
    let before_id = match params.get("cursor") {
        None => None,
        Some(cursor) => Some(
            decode_cursor(cursor)?
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(bad_cursor)?,
        ),
    };
    let filter = AuditFilter {
        user_id: params.get("user_id").map(str::to_owned),
        kind: params.get("kind").map(str::to_owned),
        since: time(&params, "since")?,
        until: time(&params, "until")?,
        before_id,
        limit: limit + 1,
    };
    let mut events = state.store().audit_page(&filter).await?;
    let next_cursor = if events.len() > limit as usize {
        events.truncate(limit as usize);
        events.last().map(|(id, _)| encode_cursor(&id.to_string()))
    } else {
        None
    };
    let events: Vec<EventView> = events
        .into_iter()
        .map(|(_, e)| EventView {
            at: e.at,
            kind: e.kind,
            user_id: e.user_id,
            session_id: e.session_id,
            client_id: e.client_id,
            ip: e.ip,
            user_agent: e.user_agent,
            detail: e.detail,
            actor_id: e.actor_id,
        })
        .collect();
    Ok(Json(json!({ "events": events, "next_cursor": next_cursor })).into_response())
}

/// For the fuzz targets: a body of `POST /admin/users` (0),
/// `PATCH /admin/users/{id}` (1) or `POST /admin/sessions` (2), or a query
/// of the listings with its cursor (3).
#[cfg(feature = "fuzzing")]
pub(super) fn parse_for_fuzzing(
    which: u8,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    match which % 4 {
        0 => json_body::<NewUser>(headers, body).map(drop),
        1 => json_body::<UserChange>(headers, body).map(drop),
        2 => json_body::<NewSession>(headers, body).map(drop),
        _ => {
            let raw = std::str::from_utf8(body).map_err(|_| bad_cursor())?;
            let params = query(Some(raw), &["limit", "cursor", "user_id", "since", "until"])?;
            limit(&params)?;
            time(&params, "since")?;
            params.get("cursor").map(decode_cursor).transpose()?;
            Ok(())
        }
    }
}

#[derive(Serialize)]
struct WebhookView {
    id: String,
    url: String,
    events: Vec<String>,
    created_at: i64,
    /// Only in the answer that adds it, this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<latchkey_core::outbox::Webhook> for WebhookView {
    fn from(w: latchkey_core::outbox::Webhook) -> Self {
        Self {
            id: w.id,
            url: w.url,
            events: w.events,
            created_at: w.created_at,
            secret: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    url: String,
    events: Vec<String>,
}

/// `{"url", "events"}` → `201` with the secret, this once.
async fn add_webhook(
    State(state): State<AppState>,
    ctx: RequestContext,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: NewWebhook = json_body(&headers, &body)?;
    if new.events.len() > latchkey_core::outbox::EVENT_TYPES.len() * 2 {
        return Err(ApiError::invalid_request("too many event types"));
    }
    let added = state
        .webhooks
        .add(&new.url, &new.events, &admin.actor(&ctx))
        .await?;
    let mut view = WebhookView::from(added.webhook);
    view.secret = Some(added.secret);
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

async fn list_webhooks(
    State(state): State<AppState>,
    _admin: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    query(raw.as_deref(), &[])?;
    let webhooks: Vec<WebhookView> = state
        .webhooks
        .list()
        .await?
        .into_iter()
        .map(WebhookView::from)
        .collect();
    Ok(Json(json!({ "webhooks": webhooks })).into_response())
}

async fn remove_webhook(
    State(state): State<AppState>,
    ctx: RequestContext,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state
        .webhooks
        .remove(path_id(&id)?, &admin.actor(&ctx))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize)]
struct DeliveryView {
    id: i64,
    event_id: String,
    #[serde(rename = "type")]
    event_type: String,
    status: &'static str,
    attempts: u32,
    created_at: i64,
    last_attempt_at: Option<i64>,
    next_attempt_at: Option<i64>,
    last_error: Option<String>,
    delivered_at: Option<i64>,
}

/// `?status=pending|failed|delivered`, `limit`, `cursor`: newest first.
async fn webhook_deliveries(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    use latchkey_core::outbox::DeliveryStatus;
    let params = query(raw.as_deref(), &["status", "limit", "cursor"])?;
    let status = params
        .get("status")
        .map(|s| {
            DeliveryStatus::parse(s)
                .ok_or_else(|| ApiError::invalid_request("status is pending, failed or delivered"))
        })
        .transpose()?;
    let limit = limit(&params)?;
    let before = params
        .get("cursor")
        .map(|c| decode_cursor(c)?.parse::<i64>().map_err(|_| bad_cursor()))
        .transpose()?;
    let mut deliveries = state
        .webhooks
        .deliveries(path_id(&id)?, status, before, limit + 1)
        .await?;
    let next_cursor = if deliveries.len() > limit as usize {
        deliveries.truncate(limit as usize);
        deliveries.last().map(|d| encode_cursor(&d.id.to_string()))
    } else {
        None
    };
    let deliveries: Vec<DeliveryView> = deliveries
        .into_iter()
        .map(|d| DeliveryView {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            status: d.status.as_str(),
            attempts: d.attempts,
            created_at: d.created_at,
            last_attempt_at: d.last_attempt_at,
            next_attempt_at: d.next_attempt_at,
            last_error: d.last_error,
            delivered_at: d.delivered_at,
        })
        .collect();
    Ok(Json(json!({ "deliveries": deliveries, "next_cursor": next_cursor })).into_response())
}
