//! OAuth scopes (RFC 6749 §3.3): a set of scope tokens.

use std::collections::BTreeSet;
use std::fmt;

/// The scope of the admin API (SPEC §11): a registered client's, or the
/// operator's console's for an admin user who signed in strongly enough
/// (SPEC §15).
pub const ADMIN_SCOPE: &str = "latchkey:admin";

/// At most this many scope tokens in one request.
const MAX_TOKENS: usize = 32;
/// At most this many bytes in one scope token.
const MAX_TOKEN_LEN: usize = 64;

/// A set of scope tokens, kept sorted so equal sets print equally.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope(BTreeSet<String>);

/// A scope string that is not a valid RFC 6749 scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed scope")]
pub struct MalformedScope;

impl Scope {
    /// Parses a space-delimited scope; bounded in size, RFC 6749 characters only.
    pub fn parse(text: &str) -> Result<Self, MalformedScope> {
        let mut set = BTreeSet::new();
        for token in text.split(' ').filter(|t| !t.is_empty()) {
            let valid = token.len() <= MAX_TOKEN_LEN
                && token
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !valid {
                return Err(MalformedScope);
            }
            set.insert(token.to_owned());
            if set.len() > MAX_TOKENS {
                return Err(MalformedScope);
            }
        }
        Ok(Self(set))
    }

    /// True when every token of `self` is in `other`.
    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    /// True when there is no token.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `token` is in the set.
    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    /// The tokens in both.
    pub fn intersection(&self, other: &Scope) -> Scope {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    /// The set without `token`.
    pub fn without(&self, token: &str) -> Scope {
        let mut set = self.0.clone();
        set.remove(token);
        Self(set)
    }

    /// The tokens in either.
    pub fn union(&self, other: &Scope) -> Scope {
        Self(self.0.union(&other.0).cloned().collect())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for token in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(token)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let scope = Scope::parse("profile  email profile").unwrap();
        assert_eq!(scope.to_string(), "email profile");
        assert!(Scope::parse("profile").unwrap().is_subset(&scope));
        assert!(!scope.is_subset(&Scope::parse("profile").unwrap()));
    }

    #[test]
    fn rejects_bad_characters_and_sizes() {
        assert!(Scope::parse("a\"b").is_err());
        assert!(Scope::parse("a\\b").is_err());
        assert!(Scope::parse(&"x".repeat(65)).is_err());
        let many: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        assert!(Scope::parse(&many.join(" ")).is_err());
    }
}
