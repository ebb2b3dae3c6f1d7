//! What each mail says (SPEC §13): plain text with an HTML alternative,
//! made from the outbox event that asks for it. The delivery engine sends
//! them through the server's mail transport; nothing here speaks SMTP.
//!
//! Every value from the event is escaped in the HTML, and a link is put in
//! a mail only if it is under the issuer.

use serde_json::Value;

/// A mail ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The subject.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML alternative.
    pub html: String,
}

/// The mail of an event of `kind` with `data`, for the server at `issuer`.
pub fn compose(kind: &str, data: &Value, issuer: &str) -> Result<Mail, String> {
    let field = |name: &str| data.get(name).and_then(Value::as_str).unwrap_or("");
    let to = field("email").to_owned();
    if to.is_empty() {
        return Err("the event names no address".into());
    }
    let user = field("username");
    let link = || {
        let link = field("link");
        if link.starts_with(&format!("{}/", issuer.trim_end_matches('/'))) {
            Ok(link.to_owned())
        } else {
            Err(format!("the event's link is not under {issuer}"))
        }
    };
    let site = issuer.trim_end_matches('/');
    let (subject, paragraphs, action): (String, Vec<String>, Option<(String, String)>) = match kind
    {
        "email.verification_requested" => (
            "Confirm your e-mail address".into(),
            vec![
                format!("Someone, probably you, gave this address to the account {user} at {site}."),
                "To confirm that it is yours, open the link below and press Verify. The link works once, for 24 hours.".into(),
                "If this was not you, ignore this mail: the address stays unconfirmed.".into(),
            ],
            Some(("Confirm the address".into(), link()?)),
        ),
        "password.reset_requested" => (
            "Reset your password".into(),
            vec![
                format!("Someone asked to reset the password of the account {user} at {site}."),
                "To choose a new password, open the link below. It works once, for 30 minutes; a newer request replaces it. If the account has an authenticator app, you will need a code from it too.".into(),
                "If you did not ask for this, ignore this mail: your password stays as it is.".into(),
            ],
            Some(("Choose a new password".into(), link()?)),
        ),
        "mail.new_device" => {
            let at = data
                .get("at")
                .and_then(Value::as_i64)
                .map(latchkey_core::outbox::rfc3339)
                .unwrap_or_default();
            let device = match field("user_agent") {
                "" => "an unnamed device".to_owned(),
                ua => ua.to_owned(),
            };
            (
                "New sign-in to your account".into(),
                vec![
                    format!("The account {user} at {site} was signed in to from a device it had not been used on before."),
                    format!("Device: {device}"),
                    format!("Address: {}", field("ip")),
                    format!("Time: {at}"),
                    "If this was you, there is nothing to do. If it was not, open the link below and press \"This wasn't me\": that sign-in ends at once, and you can then reset your password.".into(),
                ],
                Some(("This wasn't me".into(), link()?)),
            )
        }
        "mail.email_changed" => (
            "Your e-mail address was changed".into(),
            vec![
                format!("The e-mail address of the account {user} at {site} was changed, and mail for the account no longer comes to this address."),
                "If you did not make this change, contact the people who run the service at once.".into(),
            ],
            None,
        ),
        other => return Err(format!("no mail for events of type {other}")),
    };
    let mut text = paragraphs.join("\n\n");
    let mut html = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"></head><body>",
    );
    for p in &paragraphs {
        html.push_str(&format!("<p>{}</p>", escape(p)));
    }
    if let Some((label, url)) = action {
        text = format!("{text}\n\n{label}:\n{url}\n");
        html.push_str(&format!(
            "<p><a href=\"{}\">{}</a></p>",
            escape(&url),
            escape(&label)
        ));
    } else {
        text.push('\n');
    }
    html.push_str("</body></html>");
    Ok(Mail {
        to,
        subject,
        text,
        html,
    })
}

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_reset_mail_has_its_link_in_both_parts() {
        let link = "https://id.example/auth/password/reset?token=lk_ln_x";
        let mail = compose(
            "password.reset_requested",
            &json!({"email": "ann@example.com", "username": "ann", "link": link}),
            "https://id.example",
        )
        .unwrap();
        assert_eq!(mail.to, "ann@example.com");
        assert!(mail.text.contains(link));
        assert!(mail.html.contains(&escape(link)));
    }

    #[test]
    fn values_are_escaped_and_foreign_links_refused() {
        let mail = compose(
            "mail.new_device",
            &json!({"email": "a@b.c", "username": "<b>", "user_agent": "<script>",
                    "link": "https://id.example/auth/not-me?token=t", "at": 0}),
            "https://id.example",
        )
        .unwrap();
        assert!(!mail.html.contains("<script>"));
        assert!(mail.html.contains("&lt;script&gt;"));
        assert!(
            compose(
                "password.reset_requested",
                &json!({"email": "a@b.c", "link": "https://evil.example/x"}),
                "https://id.example",
            )
            .is_err()
        );
        assert!(compose("user.created", &json!({"email": "a@b.c"}), "https://x").is_err());
    }
}
