// Included once per storage backend by tests/hostile.rs; `BACKEND` names it.

use crate::common::{PASSWORD, TestApp, field};
use serde_json::{Value, json};

/// One request, byte for byte.
#[derive(Clone)]
struct Case {
    label: String,
    method: reqwest::Method,
    /// Path and query, already encoded.
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// How an endpoint takes its input.
enum Input {
    /// `application/x-www-form-urlencoded` pairs (JSON too when `json`).
    Form { pairs: Vec<(String, String)>, json: bool },
    /// A JSON object (admin API).
    Json(Value),
    /// Query parameters; `optional` when the endpoint needs none of them.
    Query(Vec<(String, String)>, bool),
    /// Nothing but the path and headers.
    Bare,
}

/// An endpoint with the input of a request it would accept, and the
/// headers (credentials, cookies) that request carries.
struct Endpoint {
    method: reqwest::Method,
    path: String,
    input: Input,
    headers: Vec<(&'static str, String)>,
}

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

fn encode(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Endpoint {
    fn new(method: reqwest::Method, path: &str, input: Input) -> Self {
        Self {
            method,
            path: path.to_owned(),
            input,
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn case(&self, label: &str, target: String, content_type: Option<&str>, body: Vec<u8>) -> Case {
        let mut headers: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        if let Some(content_type) = content_type {
            headers.push(("content-type".into(), content_type.as_bytes().to_vec()));
        }
        Case {
            label: format!("{} {}: {label}", self.method, self.path),
            method: self.method.clone(),
            target,
            headers,
            body,
        }
    }

    /// The bad variants of this endpoint's request.
    fn cases(&self) -> Vec<Case> {
        let path = self.path.clone();
        let mut cases = Vec::new();
        match &self.input {
            Input::Form { pairs, json } => {
                let body = encode(pairs).into_bytes();
                let (first, first_value) = pairs[0].clone();
                let with_first = |value: &str| {
                    let mut changed = pairs.clone();
                    changed[0].1 = value.to_owned();
                    encode(&changed).into_bytes()
                };
                cases.push(self.case("wrong content type", path.clone(), Some("text/plain"), body.clone()));
                cases.push(self.case("no content type", path.clone(), None, body.clone()));
                cases.push(self.case("multipart", path.clone(), Some("multipart/form-data; boundary=x"), body.clone()));
                let object: serde_json::Map<String, Value> =
                    pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                cases.push(self.case("JSON sent as a form", path.clone(), Some(FORM), serde_json::to_vec(&object).unwrap()));
                let mut repeated = pairs.clone();
                repeated.push((first.clone(), first_value.clone()));
                cases.push(self.case("repeated parameter", path.clone(), Some(FORM), encode(&repeated).into_bytes()));
                let mut differing = pairs.clone();
                differing.push((first.clone(), "other".into()));
                cases.push(self.case("repeated parameter, two values", path.clone(), Some(FORM), encode(&differing).into_bytes()));
                cases.push(self.case("missing fields", path.clone(), Some(FORM), Vec::new()));
                let empty: Vec<(String, String)> =
                    pairs.iter().map(|(k, _)| (k.clone(), String::new())).collect();
                cases.push(self.case("empty values", path.clone(), Some(FORM), encode(&empty).into_bytes()));
                let mut raw = format!("{first}=").into_bytes();
                raw.extend_from_slice(&[0xff, 0xfe, b'a', 0xc3]);
                for (k, v) in &pairs[1..] {
                    raw.extend_from_slice(format!("&{}", encode(&[(k.clone(), v.clone())])).as_bytes());
                }
                cases.push(self.case("invalid UTF-8", path.clone(), Some(FORM), raw));
                let mut escaped = format!("{first}=%FF%FE%C3").into_bytes();
                escaped.extend_from_slice(&body[body.iter().position(|b| *b == b'&').unwrap_or(body.len())..]);
                cases.push(self.case("escaped invalid UTF-8", path.clone(), Some(FORM), escaped));
                cases.push(self.case("NUL in a value", path.clone(), Some(FORM), with_first(&format!("{first_value}\0"))));
                let mut nul_name = pairs.clone();
                nul_name.push(("x\0".into(), "1".into()));
                cases.push(self.case("NUL in a name", path.clone(), Some(FORM), encode(&nul_name).into_bytes()));
                cases.push(self.case("huge body", path.clone(), Some(FORM), with_first(&"a".repeat(1 << 20))));
                if *json {
                    cases.push(self.case("malformed JSON", path.clone(), Some(JSON), b"{\"username\":".to_vec()));
                    cases.push(self.case("JSON array", path.clone(), Some(JSON), serde_json::to_vec(&json!([object])).unwrap()));
                    let mut number = object.clone();
                    number.insert(first.clone(), json!(12345));
                    cases.push(self.case("JSON number for a string", path.clone(), Some(JSON), serde_json::to_vec(&number).unwrap()));
                    let mut nul = object.clone();
                    nul.insert(first.clone(), json!(format!("{first_value}\0")));
                    cases.push(self.case("JSON with NUL", path.clone(), Some(JSON), serde_json::to_vec(&nul).unwrap()));
                    cases.push(self.case("JSON nested deep", path.clone(), Some(JSON), deep_json()));
                }
            }
            Input::Json(object) => {
                let body = serde_json::to_vec(object).unwrap();
                let map = object.as_object().unwrap();
                let (first, first_value) = map.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
                let with = |value: Value| {
                    let mut changed = map.clone();
                    changed.insert(first.clone(), value);
                    serde_json::to_vec(&changed).unwrap()
                };
                cases.push(self.case("wrong content type", path.clone(), Some(FORM), body.clone()));
                cases.push(self.case("no content type", path.clone(), None, body.clone()));
                cases.push(self.case("malformed JSON", path.clone(), Some(JSON), body[..body.len() - 1].to_vec()));
                cases.push(self.case("JSON array", path.clone(), Some(JSON), serde_json::to_vec(&json!([object])).unwrap()));
                let text = String::from_utf8(body.clone()).unwrap();
                let duplicated = format!("{{\"{first}\":{},{}", first_value, &text[1..]);
                cases.push(self.case("duplicated field", path.clone(), Some(JSON), duplicated.into_bytes()));
                let mut unknown = map.clone();
                unknown.insert("superuser".into(), json!(true));
                cases.push(self.case("unknown field", path.clone(), Some(JSON), serde_json::to_vec(&unknown).unwrap()));
                cases.push(self.case("wrong type", path.clone(), Some(JSON), with(json!([1, 2]))));
                cases.push(self.case("missing fields", path.clone(), Some(JSON), b"{}".to_vec()));
                cases.push(self.case("empty body", path.clone(), Some(JSON), Vec::new()));
                cases.push(self.case("empty string", path.clone(), Some(JSON), with(json!(""))));
                let mut raw = format!("{{\"{first}\":\"").into_bytes();
                raw.extend_from_slice(&[0xff, 0xfe, b'a']);
                raw.extend_from_slice(b"\"}");
                cases.push(self.case("invalid UTF-8", path.clone(), Some(JSON), raw));
                cases.push(self.case("NUL in a string", path.clone(), Some(JSON), with(json!("usr\0x"))));
                cases.push(self.case("huge body", path.clone(), Some(JSON), with(json!("a".repeat(1 << 20)))));
                cases.push(self.case("nested deep", path.clone(), Some(JSON), deep_json()));
            }
            Input::Query(query, optional) => {
                let (first, first_value) = query[0].clone();
                let at = |pairs: &[(String, String)]| format!("{path}?{}", encode(pairs));
                let mut repeated = query.clone();
                repeated.push((first.clone(), first_value.clone()));
                cases.push(self.case("repeated parameter", at(&repeated), None, Vec::new()));
                let mut differing = query.clone();
                differing.push((first.clone(), "2".into()));
                cases.push(self.case("repeated parameter, two values", at(&differing), None, Vec::new()));
                let empty: Vec<(String, String)> =
                    query.iter().map(|(k, _)| (k.clone(), String::new())).collect();
                if !optional {
                    cases.push(self.case("empty values", at(&empty), None, Vec::new()));
                    cases.push(self.case("missing", path.clone(), None, Vec::new()));
                } else if self.path.starts_with("/admin/") {
                    // The admin API is strict; OAuth endpoints ignore what
                    // they do not know (RFC 6749 §3.1).
                    let mut unknown = query.clone();
                    unknown.push(("superuser".into(), "1".into()));
                    cases.push(self.case("unknown parameter", at(&unknown), None, Vec::new()));
                }
                let rest = encode(&query[1..]);
                cases.push(self.case(
                    "escaped invalid UTF-8",
                    format!("{path}?{first}=%FF%FE%C3&{rest}"),
                    None,
                    Vec::new(),
                ));
                cases.push(self.case("NUL in a value", format!("{path}?{first}=a%00b&{rest}"), None, Vec::new()));
                cases.push(self.case("NUL in a name", format!("{}&x%00=1", at(query)), None, Vec::new()));
                cases.push(self.case("huge query", format!("{}&pad={}", at(query), "a".repeat(60_000)), None, Vec::new()));
            }
            Input::Bare => {}
        }
        // Headers, for every endpoint: credentials and cookies mangled.
        let target = match &self.input {
            Input::Query(query, _) => format!("{path}?{}", encode(query)),
            _ => path.clone(),
        };
        let (content_type, body) = match &self.input {
            Input::Form { pairs, .. } => (Some(FORM), encode(pairs).into_bytes()),
            Input::Json(object) => (Some(JSON), serde_json::to_vec(object).unwrap()),
            _ => (None, Vec::new()),
        };
        for (name, value) in &self.headers {
            let mut mangle = |label: &str, new: Option<Vec<u8>>, twice: bool| {
                let mut case = self.case(label, target.clone(), content_type, body.clone());
                let at = case.headers.iter().position(|(n, _)| n == name).unwrap();
                match new {
                    Some(bytes) => case.headers[at].1 = bytes,
                    None => {
                        case.headers.remove(at);
                    }
                }
                if twice {
                    case.headers.push((name.to_string(), value.as_bytes().to_vec()));
                }
                cases.push(case);
            };
            if *name == "x-latchkey-browser" || *name == "origin" {
                mangle(&format!("no {name}"), None, false);
                continue;
            }
            mangle(&format!("no {name}"), None, false);
            let mut bad = value.as_bytes()[..value.len() / 2].to_vec();
            bad.extend_from_slice(&[0xff, 0xfe]);
            mangle(&format!("invalid UTF-8 in {name}"), Some(bad), false);
            mangle(&format!("{name} cut short"), Some(value.as_bytes()[..value.len() / 2].to_vec()), false);
            mangle(&format!("{name} sent twice"), Some(value.as_bytes().to_vec()), true);
            let mut huge = value.as_bytes().to_vec();
            huge.extend(std::iter::repeat_n(b'a', 100_000));
            mangle(&format!("huge {name}"), Some(huge), false);
        }
        cases
    }
}

/// `[[[[…]]]]` deeper than any parser of ours goes.
fn deep_json() -> Vec<u8> {
    let mut body = "[".repeat(100_000).into_bytes();
    body.extend("]".repeat(100_000).into_bytes());
    body
}

/// Sends a case as it is; `None` when the HTTP client itself refuses a
/// header (such a request never reaches a server from a conforming client,
/// and the raw-socket cases cover what does).
async fn send(app: &TestApp, case: &Case) -> Option<(u16, Vec<u8>, String)> {
    // A connection per request: the server closes some after refusing
    // them (a header too large), and a pooled one could be reused just then.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut request = http.request(case.method.clone(), app.url(&case.target));
    for (name, value) in &case.headers {
        let value = reqwest::header::HeaderValue::from_bytes(value).ok()?;
        request = request.header(name.as_str(), value);
    }
    let response = match request.body(case.body.clone()).send().await {
        Ok(response) => response,
        Err(e) if e.is_builder() => return None,
        Err(e) => panic!("{}: {e}", case.label),
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.bytes().await.unwrap().to_vec();
    Some((status, body, content_type))
}

/// A clear refusal: a 4xx that says why, as the endpoint's kind of answer
/// (JSON with an `error`, or an HTML page), or a bare status from the HTTP
/// layer for a request it cannot read (413, 414, 431).
fn clear_refusal(case: &Case, status: u16, body: &[u8], content_type: &str) -> Result<(), String> {
    let label = &case.label;
    if !(400..500).contains(&status) {
        let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
        return Err(format!("{label}: answered {status}: {text}"));
    }
    if matches!(status, 405 | 413 | 414 | 431) {
        return Ok(());
    }
    if content_type.starts_with("application/json") {
        let value: Value = serde_json::from_slice(body).map_err(|e| format!("{label}: {e}"))?;
        if value["error"].as_str().unwrap_or_default().is_empty() {
            return Err(format!("{label}: no error code in {value}"));
        }
    } else if content_type.starts_with("text/html") {
        if body.is_empty() {
            return Err(format!("{label}: an empty page"));
        }
    } else if status != 401 && body.is_empty() {
        // 401s of protected resources say why in WWW-Authenticate; the
        // rest must have a body.
        return Err(format!("{label}: {status} without a reason ({content_type})"));
    }
    Ok(())
}

/// Logging out with no usable session is a `204` that changes nothing
/// (a logout is idempotent, §4): for these, that answer is right too.
fn no_op_allowed(case: &Case, status: u16) -> bool {
    status == 204 && case.label.starts_with("POST /auth/logout: ")
}

/// Refused refreshes and logins are written to the audit trail by design;
/// everything else must stay exactly as it was.
const AUDIT: &[&str] = &["audit_events", "sqlite_sequence"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_at_every_endpoint_gets_a_clear_4xx_and_changes_nothing() {
    use reqwest::Method;
    let app = start!(&[("LATCHKEY_SIGNUP", "open")]);
    let alice = app.add_user("alice").await;
    let (admin_id, admin_secret) = app.add_client("lkc_admin", "latchkey:admin", true).await;
    let admin_secret = admin_secret.unwrap();
    let response = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&admin_id, Some(&admin_secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "latchkey:admin")])
        .send()
        .await
        .unwrap();
    let admin = format!("Bearer {}", field(&response.json::<Value>().await.unwrap(), "access_token"));
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{admin_id}:{admin_secret}")
        )
    );
    let pair = app.login("alice").await;
    let access = field(&pair, "access_token").to_owned();
    let refresh = field(&pair, "refresh_token").to_owned();
    let bearer = format!("Bearer {access}");
    let sid = crate::common::claims(&access)["sid"].as_str().unwrap().to_owned();
    // A browser session, for the cookie endpoints.
    let (_, cookie, _) = app.browser_login().await;
    let redirect = "https://app.example/cb";
    app.code_for(&alice, "app", redirect).await;
    let authorize = pairs(&[
        ("client_id", "app"),
        ("response_type", "code"),
        ("redirect_uri", redirect),
        ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
        ("code_challenge_method", "S256"),
        ("scope", "openid"),
        ("state", "s"),
    ]);

    // An answer of the shape a browser sends, to no ceremony of this server.
    let assertion = json!({
        "id": "AAAA",
        "rawId": "AAAA",
        "type": "public-key",
        "response": {"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA", "userHandle": "AAAA"},
        "clientExtensionResults": {},
    });
    let endpoints = vec![
        Endpoint::new(Method::POST, "/auth/login", Input::Form {
            pairs: pairs(&[("username", "alice"), ("password", PASSWORD)]),
            json: true,
        }),
        Endpoint::new(Method::POST, "/auth/signup", Input::Form {
            pairs: pairs(&[("username", "newcomer"), ("password", "a long enough password")]),
            json: true,
        }),
        Endpoint::new(Method::POST, "/oauth/token", Input::Form {
            pairs: pairs(&[("refresh_token", &refresh), ("grant_type", "refresh_token")]),
            json: false,
        }),
        Endpoint::new(Method::POST, "/oauth/token", Input::Form {
            pairs: pairs(&[("scope", "latchkey:admin"), ("grant_type", "client_credentials")]),
            json: false,
        })
        .header("authorization", &basic),
        Endpoint::new(Method::POST, "/oauth/token", Input::Form {
            pairs: pairs(&[
                ("device_code", "lk_dc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", "app"),
            ]),
            json: false,
        }),
        Endpoint::new(Method::POST, "/oauth/device_authorization", Input::Form {
            pairs: pairs(&[("client_id", "app"), ("scope", "openid")]),
            json: false,
        }),
        Endpoint::new(Method::POST, "/device", Input::Form { pairs: pairs(&[("user_code", "BCDF-GHJK")]), json: false })
            .header("origin", &app.base),
        Endpoint::new(Method::GET, "/device", Input::Query(pairs(&[("user_code", "BCDF-GHJK")]), true)),
        Endpoint::new(Method::POST, "/auth/login/mfa", Input::Form {
            pairs: pairs(&[("mfa_token", "lk_mfa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), ("otp", "123456")]),
            json: true,
        }),
        // Recovery (SPEC §13): an address that is nobody's, dead links, and a
        // wrong current password, so that no variant changes anything.
        Endpoint::new(Method::POST, "/auth/password/forgot", Input::Form {
            pairs: pairs(&[("email", "nobody@example.com")]),
            json: true,
        }),
        Endpoint::new(Method::POST, "/auth/password/reset", Input::Form {
            pairs: pairs(&[("token", "lk_ln_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), ("password", "a long enough password")]),
            json: true,
        }),
        Endpoint::new(Method::POST, "/auth/email/verify", Input::Form {
            pairs: pairs(&[("token", "lk_ln_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]),
            json: true,
        }),
        Endpoint::new(Method::POST, "/auth/not-me", Input::Form {
            pairs: pairs(&[("token", "lk_ln_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]),
            json: true,
        }),
        Endpoint::new(Method::GET, "/auth/password/reset", Input::Query(pairs(&[("token", "lk_ln_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]), true)),
        Endpoint::new(Method::POST, "/auth/password", Input::Form {
            pairs: pairs(&[("current_password", "not the password"), ("new_password", "a long enough password")]),
            json: true,
        })
        .header("authorization", &bearer),
        Endpoint::new(Method::POST, "/auth/totp/confirm", Input::Form { pairs: pairs(&[("code", "123456")]), json: true })
            .header("authorization", &bearer),
        Endpoint::new(Method::DELETE, "/auth/totp", Input::Form { pairs: pairs(&[("code", "123456")]), json: true })
            .header("authorization", &bearer),
        Endpoint::new(Method::POST, "/auth/passkey/login", Input::Json(json!({"credential": assertion.clone()}))),
        Endpoint::new(Method::POST, "/auth/passkeys", Input::Json(json!({"credential": assertion.clone(), "name": "Laptop"})))
            .header("authorization", &bearer),
        Endpoint::new(Method::GET, "/auth/passkeys", Input::Bare).header("authorization", &bearer),
        Endpoint::new(Method::DELETE, "/auth/passkeys/pk_none", Input::Bare).header("authorization", &bearer),
        Endpoint::new(Method::GET, "/auth/factors", Input::Bare).header("authorization", &bearer),
        Endpoint::new(Method::POST, "/oauth/revoke", Input::Form {
            pairs: pairs(&[("token", &refresh), ("token_type_hint", "refresh_token")]),
            json: false,
        }),
        Endpoint::new(Method::POST, "/oauth/introspect", Input::Form {
            pairs: pairs(&[("token", &access)]),
            json: false,
        })
        .header("authorization", &basic),
        Endpoint::new(Method::POST, "/oauth/authorize", Input::Form { pairs: authorize.clone(), json: false })
            .header("origin", &app.base),
        Endpoint::new(Method::GET, "/oauth/authorize", Input::Query(authorize.clone(), false)),
        Endpoint::new(Method::GET, "/oauth/logout", Input::Query(pairs(&[("id_token_hint", &access)]), false)),
        Endpoint::new(Method::GET, "/oauth/revocations", Input::Query(pairs(&[("since", "0")]), true))
            .header("authorization", &basic),
        Endpoint::new(Method::POST, "/auth/refresh", Input::Bare)
            .header("cookie", &cookie)
            .header("x-latchkey-browser", "1")
            .header("origin", &app.base),
        Endpoint::new(Method::POST, "/auth/logout", Input::Bare)
            .header("cookie", &cookie)
            .header("x-latchkey-browser", "1")
            .header("origin", &app.base),
        Endpoint::new(Method::GET, "/api/me", Input::Bare).header("authorization", &bearer),
        Endpoint::new(Method::GET, "/oauth/userinfo", Input::Bare).header("authorization", &bearer),
        Endpoint::new(Method::GET, "/sessions", Input::Bare).header("authorization", &bearer),
        Endpoint::new(Method::DELETE, "/sessions", Input::Bare).header("authorization", &bearer),
        Endpoint::new(Method::DELETE, &format!("/sessions/{sid}"), Input::Bare).header("authorization", &bearer),
        Endpoint::new(Method::POST, "/admin/users", Input::Json(json!({"username": "newcomer", "password": "a long enough password"})))
            .header("authorization", &admin),
        Endpoint::new(Method::PATCH, &format!("/admin/users/{}", alice.id), Input::Json(json!({"disabled": true})))
            .header("authorization", &admin),
        Endpoint::new(Method::POST, "/admin/sessions", Input::Json(json!({"user_id": alice.id})))
            .header("authorization", &admin),
        Endpoint::new(Method::GET, "/admin/users", Input::Query(pairs(&[("limit", "10")]), true)).header("authorization", &admin),
        Endpoint::new(Method::GET, "/admin/users", Input::Query(pairs(&[("q", "ali"), ("limit", "10")]), true))
            .header("authorization", &admin),
        Endpoint::new(Method::GET, "/admin/overview", Input::Bare).header("authorization", &admin),
        Endpoint::new(Method::POST, &format!("/admin/users/{}/password-reset", alice.id), Input::Bare)
            .header("authorization", &admin),
        Endpoint::new(Method::DELETE, &format!("/admin/users/{}/factors/fac_none", alice.id), Input::Bare)
            .header("authorization", &admin),
        Endpoint::new(Method::GET, "/admin/audit", Input::Query(pairs(&[("limit", "10")]), true)).header("authorization", &admin),
        Endpoint::new(Method::DELETE, &format!("/admin/users/{}", alice.id), Input::Bare).header("authorization", &admin),
        Endpoint::new(Method::DELETE, &format!("/admin/sessions/{sid}"), Input::Bare).header("authorization", &admin),
        Endpoint::new(Method::DELETE, &format!("/admin/users/{}/sessions", alice.id), Input::Bare)
            .header("authorization", &admin),
    ];
    let mut cases: Vec<Case> = endpoints.iter().flat_map(Endpoint::cases).collect();
    // Ids in paths: NUL, invalid UTF-8, absurd lengths.
    for (method, prefix, auth) in [
        (Method::DELETE, "/sessions/", &bearer),
        (Method::GET, "/admin/users/", &admin),
        (Method::PATCH, "/admin/users/", &admin),
        (Method::DELETE, "/admin/sessions/", &admin),
    ] {
        for (label, id) in [
            ("NUL in the id", "ses%00x".to_owned()),
            ("invalid UTF-8 in the id", "%FF%FE".to_owned()),
            ("a huge id", "a".repeat(50_000)),
            ("a traversal id", "..%2F..%2Fetc".to_owned()),
        ] {
            let mut headers = vec![("authorization".to_owned(), auth.as_bytes().to_vec())];
            let mut body = Vec::new();
            if method == Method::PATCH {
                headers.push(("content-type".into(), JSON.as_bytes().to_vec()));
                body = br#"{"disabled":true}"#.to_vec();
            }
            cases.push(Case {
                label: format!("{method} {prefix}…: {label}"),
                method: method.clone(),
                target: format!("{prefix}{id}"),
                headers,
                body,
            });
        }
    }
    let before = app.snapshot(AUDIT).await;
    let mut sent = 0;
    let mut failures = Vec::new();
    for case in &cases {
        let Some((status, body, content_type)) = send(&app, case).await else {
            continue;
        };
        sent += 1;
        if let Err(why) = clear_refusal(case, status, &body, &content_type)
            && !no_op_allowed(case, status)
        {
            failures.push(why);
        }
        assert_eq!(app.snapshot(AUDIT).await, before, "{} changed the database", case.label);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{sent} bad requests sent");
    assert!(sent > 250, "only {sent} cases were sent");

    // All of them at once: the same answers, still nothing changed.
    let answers = crate::common::join_all(cases.iter().map(|case| send(&app, case)).collect()).await;
    for (case, answer) in cases.iter().zip(answers) {
        if let Some((status, body, content_type)) = answer
            && !no_op_allowed(case, status)
        {
            clear_refusal(case, status, &body, &content_type).unwrap();
        }
    }
    assert_eq!(app.snapshot(AUDIT).await, before);

    // The server is up, and the untouched credentials all still work.
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(app.me(&access).await.status(), 200);
    assert_eq!(app.refresh(&refresh).await.status(), 200);
}

/// Raw bytes no conforming client sends: a NUL and other control bytes in
/// header values, a request line of invalid UTF-8, a header line without a
/// colon. The HTTP layer refuses each with a 400 (or closes), the server
/// stays up.
#[tokio::test]
async fn malformed_http_is_refused_and_the_server_stays_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = start!(&[]);
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    let before = app.snapshot(AUDIT).await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let requests: Vec<Vec<u8>> = vec![
        b"GET /api/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\0b\r\n\r\n".to_vec(),
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\0\r\nContent-Length: 3\r\n\r\na=b".to_vec(),
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /api/me HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".to_vec(),
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nab".to_vec(),
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nzz\r\n".to_vec(),
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"GARBAGE\r\n\r\n".to_vec(),
    ];
    for request in requests {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(&request).await.unwrap();
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_to_end(&mut answer),
        )
        .await;
        assert!(read.is_ok(), "{:?}: still open after 5 s", String::from_utf8_lossy(&request));
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "{:?}: {answer}",
            String::from_utf8_lossy(&request)
        );
    }
    assert_eq!(app.snapshot(AUDIT).await, before);
    assert_eq!(app.me(field(&pair, "access_token")).await.status(), 200);
}

/// A slow client at every endpoint at once, trickling its headers or its
/// body: each is cut off after the request timeout (a body with `408`),
/// and the server answers others meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_at_every_endpoint_are_cut_off_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = start!(&[("LATCHKEY_REQUEST_TIMEOUT", "1s"), ("LATCHKEY_SIGNUP", "open")]);
    app.add_user("alice").await;
    let pair = app.login("alice").await;
    let before = app.snapshot(AUDIT).await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let targets = [
        ("POST", "/auth/login"),
        ("POST", "/auth/signup"),
        ("POST", "/auth/refresh"),
        ("POST", "/auth/logout"),
        ("POST", "/oauth/token"),
        ("POST", "/oauth/revoke"),
        ("POST", "/oauth/introspect"),
        ("POST", "/oauth/authorize"),
        ("POST", "/oauth/userinfo"),
        ("POST", "/admin/users"),
        ("PATCH", "/admin/users/usr_alice"),
        ("POST", "/admin/sessions"),
    ];
    let mut slow = Vec::new();
    for (method, path) in targets {
        for trickle_body in [true, false] {
            let address = address.clone();
            slow.push(tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
                let head = if trickle_body {
                    format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\na=")
                } else {
                    format!("{method} {path} HTTP/1.1\r\nHost: x\r\n")
                };
                stream.write_all(head.as_bytes()).await.unwrap();
                let mut answer = Vec::new();
                let read = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    stream.read_to_end(&mut answer),
                )
                .await;
                assert!(read.is_ok(), "{method} {path}: still open after 5 s");
                let answer = String::from_utf8_lossy(&answer).into_owned();
                if trickle_body {
                    assert!(answer.starts_with("HTTP/1.1 408"), "{method} {path}: {answer}");
                } else {
                    assert!(!answer.contains(" 200 "), "{method} {path}: {answer}");
                }
            }));
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(app.me(field(&pair, "access_token")).await.status(), 200);
    for task in slow {
        task.await.unwrap();
    }
    assert_eq!(app.snapshot(AUDIT).await, before);
}
