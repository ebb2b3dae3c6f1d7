//! Accounts people can recover (SPEC §13): e-mail addresses, the links
//! mailed to them, and the devices a user signs in from.
//!
//! A link carries a random token (256 bits, `lk_ln_…`) that is stored only
//! as its SHA-256 (a keyed hash adds nothing to a value nobody can guess),
//! is used once, and dies with its purpose: a verification link when the
//! address changes, a reset link when the password changes or a newer one is
//! asked for, every link of a user with the user.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SecureRandom;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::refresh::TokenHash;

/// How long a verification link lives (SPEC §13: 24 h).
pub const VERIFY_TTL: i64 = 24 * 3600;
/// How long a password reset link lives (SPEC §13: 30 min).
pub const RESET_TTL: i64 = 30 * 60;
/// How long a new-device notice's `This wasn't me` link lives.
pub const NOT_ME_TTL: i64 = 7 * 24 * 3600;
/// A device not seen for this long is new again (SPEC §13: 90 days).
pub const DEVICE_MEMORY: i64 = 90 * 24 * 3600;
/// Devices remembered per user at most; the least recently seen go first.
pub const MAX_DEVICES_PER_USER: u32 = 50;
/// The longest address (RFC 5321's path limit, less its brackets).
pub const MAX_EMAIL_BYTES: usize = 254;

const LINK_PREFIX: &str = "lk_ln_";

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// Proves the user reads the address.
    VerifyEmail,
    /// Sets a new password without the old one.
    ResetPassword,
    /// Ends the session of a sign-in the user does not recognise.
    NotMe,
}

impl LinkPurpose {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
            Self::NotMe => "not_me",
        }
    }

    /// The purpose of a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "verify_email" => Some(Self::VerifyEmail),
            "reset_password" => Some(Self::ResetPassword),
            "not_me" => Some(Self::NotMe),
            _ => None,
        }
    }

    /// The event (SPEC §14) written with a new link of this purpose: public
    /// types for verification and reset, an internal one (`mail.…`, which no
    /// webhook can ask for) for a new-device notice.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::VerifyEmail => "email.verification_requested",
            Self::ResetPassword => "password.reset_requested",
            Self::NotMe => "mail.new_device",
        }
    }

    /// Its lifetime.
    pub fn ttl(self) -> i64 {
        match self {
            Self::VerifyEmail => VERIFY_TTL,
            Self::ResetPassword => RESET_TTL,
            Self::NotMe => NOT_ME_TTL,
        }
    }

    /// The page its link opens, under the issuer.
    pub fn path(self) -> &'static str {
        match self {
            Self::VerifyEmail => "/auth/email/verify",
            Self::ResetPassword => "/auth/password/reset",
            Self::NotMe => "/auth/not-me",
        }
    }
}

/// The event types that are mailed (to `data.email`) when mail is set up:
/// the two public ones with a link, and the internal notices.
pub const MAILED_EVENTS: [&str; 4] = [
    "email.verification_requested",
    "password.reset_requested",
    "mail.new_device",
    "mail.email_changed",
];

/// A link's stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLink {
    /// SHA-256 of its token.
    pub hash: TokenHash,
    /// What it is for.
    pub purpose: LinkPurpose,
    /// Whose it is.
    pub user_id: String,
    /// The address it verifies (verification links).
    pub email: Option<String>,
    /// The session it ends (not-me links).
    pub session_id: Option<String>,
    /// When it was made, Unix seconds.
    pub created_at: i64,
    /// When it dies, Unix seconds.
    pub expires_at: i64,
}

/// A link's token as the person holds it.
pub struct LinkToken(String);

impl LinkToken {
    /// A new random token.
    pub fn generate(rng: &dyn SecureRandom) -> crate::Result<Self> {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes)
            .map_err(|_| crate::Error::Crypto("random source failed"))?;
        Ok(Self(format!(
            "{LINK_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes)
        )))
    }

    /// The text of a token someone sent, if it has the form of one.
    pub fn parse(text: &str) -> Option<Self> {
        let body = text.strip_prefix(LINK_PREFIX)?;
        (body.len() == 43
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(text.to_owned()))
    }

    /// The token's text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored of it.
    pub fn hash(&self) -> TokenHash {
        sha256(self.0.as_bytes())
    }

    /// The absolute link of `purpose` under `issuer`.
    pub fn url(&self, issuer: &str, purpose: LinkPurpose) -> String {
        format!(
            "{}{}?token={}",
            issuer.trim_end_matches('/'),
            purpose.path(),
            self.0
        )
    }
}

impl std::fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkToken(…)")
    }
}

/// SHA-256 of `bytes`, as a stored hash.
pub fn sha256(bytes: &[u8]) -> TokenHash {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    TokenHash(out)
}

/// A sign-in's device (SPEC §13): a browser by its device cookie, another
/// client by its client id and user agent. Stored as a hash.
pub fn device_of_cookie(cookie: &str) -> TokenHash {
    sha256(format!("cookie\0{cookie}").as_bytes())
}

/// The device of a client that keeps no cookie: its client and user agent.
pub fn device_of_client(client_id: Option<&str>, user_agent: &str) -> TokenHash {
    sha256(format!("client\0{}\0{user_agent}", client_id.unwrap_or("")).as_bytes())
}

/// What a new session tells its store of the device it came from: the
/// device, and the `This wasn't me` link to mail if the device is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The device.
    pub device: TokenHash,
    /// The notice to send if the device is new to the user (none when mail
    /// is not set up).
    pub notice: Option<Notice>,
}

/// A new-device notice's link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The not-me link's hash.
    pub link_hash: TokenHash,
    /// The link itself (the notice's event carries it).
    pub link: String,
    /// The link's end.
    pub link_expires_at: i64,
}

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "an e-mail address is local@domain, at most {MAX_EMAIL_BYTES} bytes, without spaces or control characters"
)]
pub struct InvalidEmail;

/// An address as given, checked: one `@` with text on both sides, a domain
/// with a dot-separated label, no spaces, control characters or brackets,
/// at most [`MAX_EMAIL_BYTES`]. Leading and trailing spaces are dropped.
pub fn check_email(address: &str) -> Result<String, InvalidEmail> {
    let address = address.trim();
    if address.is_empty() || address.len() > MAX_EMAIL_BYTES {
        return Err(InvalidEmail);
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(InvalidEmail);
    };
    let bad = |c: char| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"@".contains(c);
    if local.is_empty()
        || local.len() > 64
        || domain.is_empty()
        || local.chars().any(bad)
        || domain.chars().any(bad)
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.starts_with('-')
        || domain.contains("..")
    {
        return Err(InvalidEmail);
    }
    Ok(address.to_owned())
}

/// The form two addresses share when they differ only in case: what
/// uniqueness is checked on.
pub fn email_key(address: &str) -> String {
    address.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;

    #[test]
    fn addresses_are_checked() {
        assert_eq!(
            check_email(" Ann@Example.com ").as_deref(),
            Ok("Ann@Example.com")
        );
        assert!(check_email("ann@localhost").is_ok());
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann @example.com",
            "ann@exa mple.com",
            "ann@example..com",
            "ann@.example.com",
            "a<b>@example.com",
            "ann@example.com\r\nBcc: x@y.z",
            "ann\0@example.com",
        ] {
            assert_eq!(check_email(bad), Err(InvalidEmail), "{bad:?}");
        }
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(200));
        assert_eq!(check_email(&long), Err(InvalidEmail));
        assert_eq!(email_key("Ann@Example.COM"), "ann@example.com");
    }

    #[test]
    fn link_tokens_round_trip_and_hash() {
        let rng = SystemRandom::new();
        let token = LinkToken::generate(&rng).unwrap();
        let again = LinkToken::parse(token.expose()).unwrap();
        assert_eq!(token.hash(), again.hash());
        assert!(LinkToken::parse("lk_ln_short").is_none());
        assert!(LinkToken::parse(&token.expose().replace("lk_ln_", "lk_rt_")).is_none());
        let url = token.url("https://id.example/", LinkPurpose::ResetPassword);
        assert!(url.starts_with("https://id.example/auth/password/reset?token=lk_ln_"));
        assert_ne!(LinkToken::generate(&rng).unwrap().hash(), token.hash());
    }
}
