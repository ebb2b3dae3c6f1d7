//! `GET /console`: the operator's console (SPEC §15). Like the account
//! page, plain HTML, CSS and a script compiled into the binary, served from
//! this origin under the same strict `Content-Security-Policy`. The page
//! holds no data: it signs an admin in (asking for `latchkey:admin`, which
//! only an admin's strong enough sign-in gets) and reads everything through
//! the admin API, which checks the role and the strength on every call.

use axum::Router;
use axum::response::Response;
use axum::routing::get;

use super::account::served;
use crate::state::AppState;

const PAGE: &str = include_str!("../../assets/console.html");
const SCRIPT: &str = include_str!("../../assets/console.js");
const STYLE: &str = include_str!("../../assets/console.css");

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(page))
        .route("/assets/console.js", get(script))
        .route("/assets/console.css", get(style))
}

async fn page() -> Response {
    served("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    served("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    served("text/css; charset=utf-8", STYLE)
}
