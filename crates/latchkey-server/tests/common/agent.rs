//! A browser without JavaScript, for the server's own pages.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::TestApp;

/// A browser without JavaScript: it keeps cookies, follows nothing on its
/// own, and submits forms the way a person would.
pub struct Agent<'a> {
    pub app: &'a TestApp,
    /// Where its forms post.
    form_path: &'static str,
    http: reqwest::Client,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl<'a> Agent<'a> {
    /// An agent whose forms post to the authorization pages.
    pub fn new(app: &'a TestApp) -> Self {
        Self::at(app, "/oauth/authorize")
    }

    /// An agent whose forms post to `form_path`.
    pub fn at(app: &'a TestApp, form_path: &'static str) -> Self {
        Self::from_address(app, form_path, "127.0.0.1")
    }

    /// The same, connecting from the loopback address `ip`.
    pub fn from_address(app: &'a TestApp, form_path: &'static str, ip: &str) -> Self {
        Self {
            app,
            form_path,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(ip.parse::<std::net::IpAddr>().unwrap())
                .build()
                .unwrap(),
            cookies: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn cookie_header(&self) -> String {
        let jar = self.cookies.lock().unwrap();
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    pub fn absorb(&self, response: &reqwest::Response) {
        let mut jar = self.cookies.lock().unwrap();
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        let url = if url.starts_with("http") {
            url.to_owned()
        } else {
            self.app.url(url)
        };
        let response = self
            .http
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.absorb(&response);
        response
    }

    pub async fn post(&self, path: &str, form: &[(String, String)]) -> reqwest::Response {
        let response = self
            .http
            .post(self.app.url(path))
            .header("cookie", self.cookie_header())
            .header(
                "origin",
                self.app.state.config().allowed_origins[0].as_str(),
            )
            .form(form)
            .send()
            .await
            .unwrap();
        self.absorb(&response);
        response
    }

    /// Submits the page's passkey form with `answer` (what its script
    /// would put in it).
    pub async fn submit_passkey(
        &self,
        page: &str,
        answer: &serde_json::Value,
    ) -> reqwest::Response {
        let (_, form) = page
            .split_once("id=\"passkey-form\"")
            .expect("a passkey form");
        let mut fields: Vec<_> = hidden_fields(form)
            .into_iter()
            .filter(|(name, _)| name != "passkey_credential")
            .collect();
        fields.push(("passkey_credential".to_owned(), answer.to_string()));
        self.post(self.form_path, &fields).await
    }

    /// Submits the page's first form with its hidden fields and `extra`.
    pub async fn submit(&self, page: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut form = hidden_fields(page);
        form.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self.post(self.form_path, &form).await
    }
}

pub fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The hidden fields of the page's first form.
pub fn hidden_fields(page: &str) -> Vec<(String, String)> {
    let first = page.split("</form>").next().unwrap_or(page);
    first
        .split("<input type=\"hidden\" ")
        .skip(1)
        .map(|rest| {
            let name = rest
                .split("name=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let value = rest
                .split("value=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            (name.to_owned(), unescape(value))
        })
        .collect()
}
