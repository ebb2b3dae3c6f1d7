//! The `DPoP` header (RFC 9449) at the token endpoints and at this server's
//! protected resources.

use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::Response;
use latchkey_core::dpop::Proof;
use latchkey_core::store::Client;

use crate::error::ApiError;
use crate::state::{AppState, Principal, RequestContext};
use latchkey_app::service::{DpopKey, ProofTarget, Refusal};

/// The one `DPoP` header of a request, if any; two are refused.
fn header(headers: &HeaderMap) -> Result<Option<&str>, Refusal> {
    let mut all = headers.get_all("dpop").iter();
    match (all.next(), all.next()) {
        (None, _) => Ok(None),
        (Some(one), None) => one
            .to_str()
            .map(Some)
            .map_err(|_| Refusal::InvalidDpopProof("the DPoP header is not text".into())),
        (Some(_), Some(_)) => Err(Refusal::InvalidDpopProof("one DPoP header at most".into())),
    }
}

/// At a token endpoint (`path`): the proof, if one came, checked; the new
/// tokens will be bound to its key.
pub(crate) async fn token_proof(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
) -> Result<Option<Proof>, ApiError> {
    let Some(proof) = header(headers)? else {
        return Ok(None);
    };
    let target = ProofTarget {
        method: "POST",
        path,
        access_token: None,
        nonce_required: state.config().dpop_nonce_required,
    };
    Ok(Some(state.dpop.check(proof, target).await?))
}

/// Binds what `ctx` starts to the proof's key (the policy is
/// [`DpopKey::of`]'s).
pub(crate) fn bind(ctx: &mut RequestContext, proof: Option<&Proof>, client: Option<&Client>) {
    ctx.dpop = proof.map(|p| DpopKey::of(p, client));
}

/// A fresh server nonce on the answer to a request that sent a proof.
pub(crate) fn with_nonce(
    state: &AppState,
    proof: Option<&Proof>,
    mut response: Response,
) -> Response {
    if proof.is_some()
        && let Ok(value) = HeaderValue::from_str(&state.dpop.nonce())
    {
        response.headers_mut().insert("dpop-nonce", value);
    }
    response
}

fn resource_error(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::InvalidDpopProof(description) => ApiError::Dpop {
            resource: true,
            code: "invalid_dpop_proof",
            description,
            nonce: None,
        },
        Refusal::UseDpopNonce { nonce } => ApiError::Dpop {
            resource: true,
            code: "use_dpop_nonce",
            description: "use the server's DPoP nonce".into(),
            nonce: Some(nonce),
        },
        other => other.into(),
    }
}

/// At a protected resource: a token bound to a key needs the `DPoP` scheme
/// and a fresh proof of that key for this request (`ath` its hash); a
/// bearer token may not come as `DPoP`.
pub(crate) async fn check_resource(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    token: &str,
    dpop_scheme: bool,
) -> Result<(), ApiError> {
    let bound = principal
        .claims
        .cnf
        .as_ref()
        .and_then(|c| c.get("jkt"))
        .and_then(|j| j.as_str());
    let invalid = |description: &str| ApiError::Dpop {
        resource: true,
        code: "invalid_token",
        description: description.into(),
        nonce: None,
    };
    let Some(jkt) = bound else {
        if dpop_scheme {
            return Err(invalid("the access token is not bound to a DPoP key"));
        }
        return Ok(());
    };
    if !dpop_scheme {
        return Err(invalid(
            "a DPoP-bound access token needs the DPoP scheme and a proof",
        ));
    }
    let Some(proof) = header(headers).map_err(resource_error)? else {
        return Err(resource_error(Refusal::InvalidDpopProof(
            "a DPoP proof is required".into(),
        )));
    };
    let target = ProofTarget {
        method: method.as_str(),
        path,
        access_token: Some(token),
        nonce_required: false,
    };
    let proof = state
        .dpop
        .check(proof, target)
        .await
        .map_err(resource_error)?;
    if proof.jkt != jkt {
        return Err(resource_error(Refusal::InvalidDpopProof(
            "the DPoP proof is for another key".into(),
        )));
    }
    Ok(())
}
