//! How strongly a person proved who they are (SPEC §12): the method of a
//! sign-in, the `amr` values (RFC 8176) it shows, and the `acr` level it
//! reached, `pwd` < `mfa` < `phr`.

use std::fmt;

/// How a sign-in was made. A session records it and keeps it: its tokens,
/// refreshed or not, carry what it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthMethod {
    /// A password alone.
    #[default]
    Password,
    /// A password and a code from an authenticator app.
    PasswordAndOtp,
    /// A password and a recovery code.
    PasswordAndRecoveryCode,
    /// A passkey with user verification.
    Passkey,
}

impl AuthMethod {
    /// Every method, weakest first.
    pub const ALL: [Self; 4] = [
        Self::Password,
        Self::PasswordAndOtp,
        Self::PasswordAndRecoveryCode,
        Self::Passkey,
    ];

    /// The name stored with a session, a code or a device grant.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "pwd",
            Self::PasswordAndOtp => "pwd_otp",
            Self::PasswordAndRecoveryCode => "pwd_recovery",
            Self::Passkey => "passkey",
        }
    }

    /// The method [`Self::as_str`] names; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Its `amr` values (RFC 8176 §2).
    pub fn amr(self) -> &'static [&'static str] {
        match self {
            Self::Password => &["pwd"],
            Self::PasswordAndOtp => &["pwd", "otp", "mfa"],
            Self::PasswordAndRecoveryCode => &["pwd", "mfa"],
            Self::Passkey => &["hwk", "user", "mfa"],
        }
    }

    /// Its `amr` values as a token's claim.
    pub fn amr_claim(self) -> Vec<String> {
        self.amr().iter().map(|v| (*v).to_owned()).collect()
    }

    /// The level it reaches.
    pub fn acr(self) -> Acr {
        match self {
            Self::Password => Acr::Pwd,
            Self::PasswordAndOtp | Self::PasswordAndRecoveryCode => Acr::Mfa,
            Self::Passkey => Acr::Phr,
        }
    }
}

/// An authentication context class, ordered: a password (`pwd`), two
/// factors (`mfa`), phishing-resistant (`phr`: a passkey).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Acr {
    /// A password.
    Pwd,
    /// Two factors.
    Mfa,
    /// Phishing-resistant.
    Phr,
}

impl Acr {
    /// Every level, weakest first: discovery's `acr_values_supported`.
    pub const ALL: [Self; 3] = [Self::Pwd, Self::Mfa, Self::Phr];

    /// Its name in tokens and requests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pwd => "pwd",
            Self::Mfa => "mfa",
            Self::Phr => "phr",
        }
    }

    /// The level `name` names; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The level an `acr_values` request asks for: the weakest of the known
    /// values it lists (any of them satisfies it, OpenID Connect Core
    /// §3.1.2.1), unknown values ignored; `None` when it names none.
    pub fn requested(acr_values: &str) -> Option<Self> {
        acr_values
            .split_ascii_whitespace()
            .filter_map(Self::parse)
            .min()
    }
}

impl fmt::Display for Acr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_round_trips_and_shows_what_it_proved() {
        for method in AuthMethod::ALL {
            assert_eq!(AuthMethod::parse(method.as_str()), Some(method));
            let amr = method.amr();
            assert_eq!(amr.contains(&"mfa"), method.acr() >= Acr::Mfa);
        }
        assert_eq!(AuthMethod::parse("PWD"), None);
        assert_eq!(AuthMethod::Passkey.acr(), Acr::Phr);
        assert_eq!(AuthMethod::PasswordAndRecoveryCode.amr(), &["pwd", "mfa"]);
    }

    #[test]
    fn levels_are_ordered_and_a_request_asks_for_its_weakest_known_value() {
        assert!(Acr::Pwd < Acr::Mfa && Acr::Mfa < Acr::Phr);
        assert_eq!(Acr::requested("phr mfa"), Some(Acr::Mfa));
        assert_eq!(Acr::requested("urn:example:gold phr"), Some(Acr::Phr));
        assert_eq!(Acr::requested("urn:example:gold"), None);
        assert_eq!(Acr::requested(""), None);
    }
}
