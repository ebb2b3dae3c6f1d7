//! Request parsing shared by the endpoints: form and JSON parameters, bearer
//! credentials and the caller's address.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use crate::error::ApiError;
use crate::state::{AppState, RequestContext};
use latchkey_app::config::IpRange;

const MAX_USER_AGENT: usize = 256;

impl FromRequestParts<AppState> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let ip = match peer {
            Some(peer) => {
                client_ip(peer, &parts.headers, &state.config().trusted_proxies).to_string()
            }
            None => "unknown".to_owned(),
        };
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect())
            .unwrap_or_default();
        let device = super::devices::device_of(&parts.headers, &parts.extensions, state.config());
        Ok(RequestContext {
            ip,
            user_agent,
            fingerprint: None,
            dpop: None,
            device,
        })
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy; then
/// `X-Forwarded-For` is read from the right, and the first address that is
/// not a trusted proxy is the client. A malformed entry ends the walk, so a
/// client cannot hide behind garbage it wrote itself.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpRange]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// Text that goes no further than here: a NUL byte (which no name, secret or
/// token of ours contains, and which PostgreSQL cannot store) is refused
/// with a `400`, on every backend alike. The name is not echoed back when
/// it is itself the bad text.
pub(crate) fn check_text(name: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        let name = if name.contains('\0') {
            "a parameter name"
        } else {
            name
        };
        let name: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
        return Err(ApiError::invalid_request(format!(
            "{name} contains a NUL byte"
        )));
    }
    Ok(())
}

/// One name or value of a form: `+` is a space, `%XX` a byte, as the URL
/// standard decodes them, except that bytes which are not UTF-8 are refused
/// rather than replaced with U+FFFD (which would make a name nobody typed).
pub(crate) fn form_decode(raw: &[u8]) -> Result<String, ApiError> {
    let spaced: std::borrow::Cow<'_, [u8]> = if raw.contains(&b'+') {
        raw.iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect()
    } else {
        raw.into()
    };
    percent_encoding::percent_decode(&spaced)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| ApiError::invalid_request("a parameter is not valid UTF-8"))
}

/// Request parameters: each name at most once (RFC 6749 §3.2).
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` (or a query string).
    pub(crate) fn from_form(body: &[u8]) -> Result<Self, ApiError> {
        let mut map = HashMap::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            let (name, value) = (form_decode(name)?, form_decode(value)?);
            check_text("a parameter name", &name)?;
            check_text(&name, &value)?;
            match map.entry(name) {
                Entry::Occupied(seen) => {
                    return Err(ApiError::invalid_request(format!(
                        "parameter {} appears more than once",
                        seen.key()
                    )));
                }
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
            }
        }
        Ok(Self(map))
    }

    /// Parses a JSON object whose values are strings.
    pub(crate) fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|_| ApiError::invalid_request("the body is not a JSON object"))?;
        Self::from_map(value)
    }

    /// Parses a JSON object whose values are strings but for the object
    /// `name`, which is required and returned beside them.
    pub(crate) fn from_json_with_object(
        body: &[u8],
        name: &str,
    ) -> Result<(Self, serde_json::Value), ApiError> {
        let mut value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|_| ApiError::invalid_request("the body is not a JSON object"))?;
        let object = match value.remove(name) {
            Some(object @ serde_json::Value::Object(_)) => object,
            Some(_) => {
                return Err(ApiError::invalid_request(format!(
                    "parameter {name} must be an object"
                )));
            }
            None => {
                return Err(ApiError::invalid_request(format!(
                    "parameter {name} is required"
                )));
            }
        };
        Ok((Self::from_map(value)?, object))
    }

    fn from_map(value: serde_json::Map<String, serde_json::Value>) -> Result<Self, ApiError> {
        let mut map = HashMap::new();
        for (name, value) in value {
            check_text("a parameter name", &name)?;
            match value {
                serde_json::Value::String(s) => {
                    check_text(&name, &s)?;
                    map.insert(name, s);
                }
                serde_json::Value::Null => {}
                _ => {
                    return Err(ApiError::invalid_request(format!(
                        "parameter {name} must be a string"
                    )));
                }
            }
        }
        Ok(Self(map))
    }

    /// Form or JSON, by `Content-Type`.
    pub(crate) fn from_body(
        headers: &HeaderMap,
        body: &[u8],
        json_allowed: bool,
    ) -> Result<Self, ApiError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match content_type.as_str() {
            "application/x-www-form-urlencoded" => Self::from_form(body),
            "application/json" if json_allowed => Self::from_json(body),
            _ if json_allowed => Err(ApiError::invalid_request(
                "Content-Type must be application/x-www-form-urlencoded or application/json",
            )),
            _ => Err(ApiError::invalid_request(
                "Content-Type must be application/x-www-form-urlencoded",
            )),
        }
    }

    /// The names of the parameters present.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// A parameter; empty counts as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A required parameter.
    pub(crate) fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::invalid_request(format!("missing parameter {name}")))
    }
}

/// The credentials in an `Authorization` header.
pub(crate) enum Authorization<'a> {
    None,
    Basic(&'a str),
    Bearer(&'a str),
    Dpop(&'a str),
    Other,
}

/// The one `Authorization` header; two of them (which a proxy in front
/// might read differently from us) are refused as `Other`.
pub(crate) fn authorization(headers: &HeaderMap) -> Authorization<'_> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = all.next() else {
        return Authorization::None;
    };
    if all.next().is_some() {
        return Authorization::Other;
    }
    let Ok(value) = value.to_str() else {
        return Authorization::Other;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        Authorization::Basic(rest)
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Authorization::Bearer(rest)
    } else if scheme.eq_ignore_ascii_case("dpop") && !rest.is_empty() {
        Authorization::Dpop(rest)
    } else {
        Authorization::Other
    }
}

/// The access token of a protected-resource request and whether it came
/// with the `DPoP` scheme, or the RFC 6750 error.
pub(crate) fn access_token(headers: &HeaderMap) -> Result<(&str, bool), ApiError> {
    match authorization(headers) {
        Authorization::Bearer(token) => Ok((token, false)),
        Authorization::Dpop(token) => Ok((token, true)),
        Authorization::None => Err(ApiError::no_credentials()),
        _ => Err(ApiError::Bearer {
            status: axum::http::StatusCode::UNAUTHORIZED,
            code: Some("invalid_request"),
            description: Some("use Authorization: Bearer or DPoP".into()),
        }),
    }
}

/// The caller of a protected resource: a valid access token of a live
/// session (or a client's own), bound to this browser if it carries a
/// fingerprint, and proven with a DPoP proof if it is bound to a key.
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    method: &axum::http::Method,
    path: &str,
) -> Result<crate::state::Principal, ApiError> {
    let (token, dpop_scheme) = access_token(headers)?;
    let principal = state.access.authenticate(token).await?;
    super::browser::check_fingerprint(headers, state.config(), &principal.claims)?;
    super::dpop::check_resource(state, &principal, headers, method, path, token, dpop_scheme)
        .await?;
    Ok(principal)
}

pub(crate) struct Authenticated(pub(crate) crate::state::Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(state, &parts.headers, &parts.method, parts.uri.path())
            .await
            .map(Authenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_as_the_url_standard_but_refuse_what_is_not_utf8() {
        let params = Params::from_form(b"a=x+y%2Bz&b=%C3%A9&c&=v").unwrap();
        assert_eq!(params.get("a"), Some("x y+z"));
        assert_eq!(params.get("b"), Some("\u{e9}"));
        assert_eq!(params.get("c"), None);
        for bad in [&b"a=%FF"[..], b"a=\xff", b"%C3=1", b"a=%C3"] {
            assert!(Params::from_form(bad).is_err(), "{bad:?}");
        }
        assert!(Params::from_form(b"a=1&a=1").is_err());
        assert!(Params::from_form(b"a=%00").is_err());
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        let mut h = HeaderMap::new();
        h.append(header::AUTHORIZATION, "Bearer a".parse().unwrap());
        assert!(matches!(authorization(&h), Authorization::Bearer("a")));
        h.append(header::AUTHORIZATION, "Bearer a".parse().unwrap());
        assert!(matches!(authorization(&h), Authorization::Other));
    }

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = [IpRange::parse("10.0.0.0/8").unwrap()];
        let client = |peer: IpAddr, xff: &str| client_ip(peer, &headers(xff), &trusted).to_string();
        assert_eq!(client(proxy, "203.0.113.5"), "203.0.113.5");
        // The client's own forged entry on the left is not believed.
        assert_eq!(
            client(proxy, "1.2.3.4, 203.0.113.5, 10.0.0.2"),
            "203.0.113.5"
        );
        assert_eq!(client(proxy, "garbage, 203.0.113.5"), "203.0.113.5");
        assert_eq!(client(proxy, "203.0.113.5, garbage"), "10.0.0.1");
        let direct: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(client(direct, "203.0.113.5"), "198.51.100.7");
    }
}
