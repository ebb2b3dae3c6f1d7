//! `GET /`: the account page (SPEC §4). Plain HTML, CSS and one small
//! script, compiled into the binary and served from this origin only, under
//! a strict `Content-Security-Policy`: no inline script or style, nothing
//! from elsewhere, no framing, and Trusted Types so that no script can
//! write HTML into the page.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

const PAGE: &str = include_str!("../../assets/account.html");
/// The page with its `Sign up` button, for `LATCHKEY_SIGNUP=open`.
static PAGE_WITH_SIGNUP: LazyLock<String> = LazyLock::new(|| {
    PAGE.replace(
        "<!--signup-->",
        r#"<button type="submit" name="action" value="signup" class="secondary">Sign up</button>"#,
    )
});
const SCRIPT: &str = include_str!("../../assets/account.js");
const STYLE: &str = include_str!("../../assets/account.css");
const PASSKEY_SCRIPT: &str = include_str!("../../assets/passkey.js");

/// The page's policy: its own script, style and API calls, nothing else
/// (and `data:` images: the authenticator app's QR code, an SVG the server
/// drew, shown as an image, where no script runs).
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; \
     trusted-types 'none'";

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/assets/account.js", get(script))
        .route("/assets/account.css", get(style))
        .route("/assets/passkey.js", get(passkey_script))
}

/// The headers every part of the page is served with.
pub(crate) fn served(content_type: &'static str, body: &'static str) -> Response {
    // Every part is compiled in: nothing a request sends reaches the body.
    let mut response = body.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        // Small enough to fetch every time; an upgrade shows at once.
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn page(State(state): State<AppState>) -> Response {
    let page = if state.config().signup_open {
        PAGE_WITH_SIGNUP.as_str()
    } else {
        PAGE
    };
    served("text/html; charset=utf-8", page)
}

async fn script() -> Response {
    served("text/javascript; charset=utf-8", SCRIPT)
}

async fn passkey_script() -> Response {
    served("text/javascript; charset=utf-8", PASSKEY_SCRIPT)
}

async fn style() -> Response {
    served("text/css; charset=utf-8", STYLE)
}
