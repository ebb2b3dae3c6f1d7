//! The outbox's way out ([`latchkey_app::delivery::Transport`]): posts
//! webhooks and back-channel logout tokens, and hands mail to the SMTP
//! server of `LATCHKEY_SMTP_URL`. No redirects are followed (a receiver
//! answers where it was registered), TLS is rustls on aws-lc-rs with the
//! system's roots, and every attempt has its timeout. The answer's body is
//! never read.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use latchkey_app::delivery::{Post, Transport};
use latchkey_app::mail::Mail;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Posts over HTTP and HTTPS, and mails over SMTP when set up.
pub struct HttpTransport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    mailer: Option<Mailer>,
}

/// The SMTP side.
struct Mailer {
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// A mailer for `url` (`smtp://` with STARTTLS when the server offers
    /// it, unless the URL says `?tls=required` or `?tls=none`; `smtps://`
    /// for TLS from the start) sending as `from`.
    fn new(url: &str, from: &str) -> Result<Self, String> {
        let url = if url.contains("tls=") || url.starts_with("smtps://") {
            url.to_owned()
        } else if url.contains('?') {
            format!("{url}&tls=opportunistic")
        } else {
            format!("{url}?tls=opportunistic")
        };
        let smtp = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
            .map_err(|e| format!("LATCHKEY_SMTP_URL: {e}"))?
            .timeout(Some(latchkey_core::outbox::ATTEMPT_TIMEOUT))
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| format!("LATCHKEY_MAIL_FROM: {e}"))?;
        Ok(Self { smtp, from })
    }
}

impl HttpTransport {
    /// A client for deliveries; fails only when the system's roots cannot
    /// be read.
    pub fn new() -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(latchkey_core::outbox::ATTEMPT_TIMEOUT));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| format!("the system's TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(4)
            .build(https);
        Ok(Self {
            client,
            mailer: None,
        })
    }

    /// The transport of `config`: with mail when `LATCHKEY_SMTP_URL` is set.
    pub fn for_config(config: &latchkey_app::config::Config) -> Result<Self, String> {
        let mut transport = Self::new()?;
        if let Some(url) = &config.smtp_url {
            transport.mailer = Some(Mailer::new(url, &config.mail_from)?);
        }
        Ok(transport)
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn post(&self, post: Post, timeout: Duration) -> Result<u16, String> {
        let mut request = Request::post(post.url.as_str())
            .header(CONTENT_TYPE, post.content_type)
            .header(USER_AGENT, concat!("latchkey/", env!("CARGO_PKG_VERSION")));
        for (name, value) in &post.headers {
            let value = HeaderValue::from_str(value).map_err(|_| "a header value is not valid")?;
            request = request.header(HeaderName::from_static(name), value);
        }
        let request = request
            .body(Full::new(Bytes::from(post.body)))
            .map_err(|_| "not a valid URL".to_owned())?;
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => Err("timed out".to_owned()),
            Ok(Err(e)) if e.is_connect() => Err("connection failed".to_owned()),
            Ok(Err(_)) => Err("request failed".to_owned()),
            Ok(Ok(response)) => Ok(response.status().as_u16()),
        }
    }

    async fn mail(&self, mail: Mail, timeout: Duration) -> Result<(), String> {
        let Some(mailer) = &self.mailer else {
            return Err("no mail server is set up".into());
        };
        let to = mail
            .to
            .parse::<Mailbox>()
            .map_err(|e| format!("not an address: {e}"))?;
        let message = Message::builder()
            .from(mailer.from.clone())
            .to(to)
            .subject(mail.subject)
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")).to_owned())
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
            .map_err(|e| format!("the mail cannot be built: {e}"))?;
        match tokio::time::timeout(timeout, mailer.smtp.send(message)).await {
            Err(_) => Err("timed out".to_owned()),
            Ok(Err(e)) => Err(format!("SMTP: {e}")),
            Ok(Ok(_)) => Ok(()),
        }
    }
}
