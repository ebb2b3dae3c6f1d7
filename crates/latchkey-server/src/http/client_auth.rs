//! Reading a client's credentials (RFC 6749 §2.3) off a request, and the
//! extractors of the endpoints clients call: [`ClientForm`] (a form and the
//! client it authenticated: revocation, introspection, device
//! authorization) and [`TokenPreamble`] (the token endpoint's: the form,
//! its grant, the client, the DPoP proof). Checking the credentials is
//! `latchkey_app::service::ClientAuthentication`'s.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latchkey_app::flows::{Grant, Parameters};
use latchkey_app::service::ClientCredentials;
use latchkey_core::dpop::Proof;
use latchkey_core::store::Client;

use super::extract::{Authorization, Params, authorization, check_text, form_decode};
use crate::error::ApiError;
use crate::state::{AppState, RequestContext};

impl Parameters for Params {
    fn get(&self, name: &str) -> Option<&str> {
        Params::get(self, name)
    }
}

/// The credentials a request presents: HTTP Basic (`client_secret_basic`),
/// or `client_id` and `client_secret` in the body (`client_secret_post`), or
/// a public client's bare `client_id`; `None` when it names no client.
fn credentials(
    headers: &HeaderMap,
    params: &Params,
) -> Result<Option<ClientCredentials>, ApiError> {
    let (id, secret) = match authorization(headers) {
        Authorization::Basic(encoded) => {
            if params.get("client_secret").is_some() {
                return Err(ApiError::invalid_request(
                    "use one client authentication method",
                ));
            }
            let decoded = STANDARD
                .decode(encoded)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::invalid_client("malformed Basic credentials"))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| ApiError::invalid_client("malformed Basic credentials"))?;
            // The parts are form-urlencoded (RFC 6749 §2.3.1).
            let malformed = |_| ApiError::invalid_client("malformed Basic credentials");
            let id = form_decode(id.as_bytes()).map_err(malformed)?;
            let secret = form_decode(secret.as_bytes()).map_err(malformed)?;
            check_text("client_id", &id)?;
            check_text("client_secret", &secret)?;
            if params.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(ApiError::invalid_request(
                    "client_id differs from the authenticated client",
                ));
            }
            (id, Some(secret))
        }
        _ => match params.get("client_id") {
            Some(id) => (
                id.to_owned(),
                params.get("client_secret").map(str::to_owned),
            ),
            None if params.get("client_secret").is_some() => {
                return Err(ApiError::invalid_request("client_secret without client_id"));
            }
            None => return Ok(None),
        },
    };
    Ok(Some(ClientCredentials { id, secret }))
}

/// The client a request authenticated (none for the first-party client, or
/// when it names none).
pub(crate) async fn client(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Option<Client>, ApiError> {
    match credentials(headers, params)? {
        Some(credentials) => Ok(state.client_auth.authenticate(credentials).await?),
        None => Ok(None),
    }
}

/// A request's parts, context and form body.
async fn read_form(
    request: Request,
    state: &AppState,
) -> Result<(HeaderMap, RequestContext, Params), Response> {
    let (mut parts, body) = request.into_parts();
    let ctx = match RequestContext::from_request_parts(&mut parts, state).await {
        Ok(ctx) => ctx,
        Err(never) => match never {},
    };
    let headers = parts.headers.clone();
    let body = Bytes::from_request(Request::from_parts(parts, body), state)
        .await
        .map_err(IntoResponse::into_response)?;
    let params = Params::from_body(&headers, &body, false).map_err(IntoResponse::into_response)?;
    Ok((headers, ctx, params))
}

/// A form posted by a client, and the client it authenticated.
pub(crate) struct ClientForm {
    pub(crate) params: Params,
    pub(crate) client: Option<Client>,
    pub(crate) ctx: RequestContext,
}

impl FromRequest<AppState> for ClientForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (headers, ctx, params) = read_form(request, state).await?;
        let client = client(state, &headers, &params)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            params,
            client,
            ctx,
        })
    }
}

/// The token endpoint's preamble, in order: the form, the grant its
/// `grant_type` names (`unsupported_grant_type` otherwise), the client it
/// authenticated, a bearer access token sent along, and the DPoP proof,
/// checked, whose key the new tokens are bound to.
pub(crate) struct TokenPreamble {
    pub(crate) params: Params,
    pub(crate) grant: Arc<dyn Grant>,
    pub(crate) client: Option<Client>,
    pub(crate) access_token: Option<String>,
    pub(crate) ctx: RequestContext,
    pub(crate) proof: Option<Proof>,
}

impl FromRequest<AppState> for TokenPreamble {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let path = request.uri().path().to_owned();
        let (headers, ctx, params) = read_form(request, state).await?;
        Self::read(state, &path, &headers, ctx, params)
            .await
            .map_err(IntoResponse::into_response)
    }
}

impl TokenPreamble {
    async fn read(
        state: &AppState,
        path: &str,
        headers: &HeaderMap,
        mut ctx: RequestContext,
        params: Params,
    ) -> Result<Self, ApiError> {
        let grant = state.grants.find(params.require("grant_type")?)?;
        // A bearer (access) token in the header is not client
        // authentication; a refresh checks it belongs to the same session.
        let access_token = match authorization(headers) {
            Authorization::Bearer(token) => Some(token.to_owned()),
            _ => None,
        };
        let client = client(state, headers, &params).await?;
        let proof = super::dpop::token_proof(state, headers, path).await?;
        super::dpop::bind(&mut ctx, proof.as_ref(), client.as_ref());
        Ok(Self {
            params,
            grant,
            client,
            access_token,
            ctx,
            proof,
        })
    }
}
