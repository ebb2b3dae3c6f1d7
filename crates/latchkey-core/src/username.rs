//! Usernames as people see them: one account per visible name.
//!
//! A name is stored and compared in one canonical form, in the spirit of
//! PRECIS `UsernameCaseMapped` (RFC 8265 §3.3): compatibility forms folded
//! (NFKC: full-width letters, ligatures, the many spaces), letters in lower
//! case, and NFKC again (lowering can leave a form unnormalised). So
//! `Alice`, `ALICE` and `ａｌｉｃｅ` are the name `alice`. What a person
//! cannot see, or cannot tell apart, is refused instead of kept: control
//! and format characters (zero-width spaces and joiners, the bidirectional
//! overrides and isolates), line and paragraph separators, private-use,
//! surrogate and unassigned code points, spaces at either end and runs of
//! spaces.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The longest name, in characters of its canonical form.
pub const MAX_CHARS: usize = 256;

/// Why a name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    /// Nothing (or nothing but spaces).
    #[error("a username cannot be empty")]
    Empty,
    /// Over [`MAX_CHARS`].
    #[error("a username has at most {MAX_CHARS} characters")]
    TooLong,
    /// A space at either end, or two in a row.
    #[error("a username cannot begin or end with a space, or hold two in a row")]
    Spaces,
    /// A character nobody can see or type apart from another.
    #[error("a username cannot hold the character U+{0:04X}")]
    Invisible(u32),
}

/// The canonical form of `name`, or why it cannot be a username.
pub fn canonical(name: &str) -> Result<String, UsernameError> {
    // The bound first, on what was sent (NFKC can lengthen a name, but a
    // name this long is refused whatever it becomes).
    if name.chars().count() > 4 * MAX_CHARS {
        return Err(UsernameError::TooLong);
    }
    let folded: String = name
        .nfkc()
        .collect::<String>()
        .to_lowercase()
        .nfkc()
        .collect();
    if folded.is_empty() {
        return Err(UsernameError::Empty);
    }
    if folded.chars().count() > MAX_CHARS {
        return Err(UsernameError::TooLong);
    }
    if folded.starts_with(char::is_whitespace)
        || folded.ends_with(char::is_whitespace)
        || folded.contains("  ")
    {
        return Err(UsernameError::Spaces);
    }
    if let Some(c) = folded.chars().find(|&c| !visible(c)) {
        return Err(UsernameError::Invisible(u32::from(c)));
    }
    Ok(folded)
}

/// Whether `c` may appear in a canonical name.
fn visible(c: char) -> bool {
    if c.is_whitespace() {
        // NFKC has made every other space U+0020.
        return c == ' ';
    }
    !matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
    )
}

/// Whether a stored name may differ from its canonical form: it holds an
/// ASCII capital, a space or a character beyond ASCII (a name of lower-case
/// ASCII letters, digits and punctuation alone is canonical already, or was
/// refused before it was stored).
pub fn may_need_folding(name: &str) -> bool {
    name.bytes()
        .any(|b| b.is_ascii_uppercase() || b == b' ' || !b.is_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_people_cannot_tell_apart_are_one_name() {
        for name in ["alice", "Alice", "ALICE", "ａｌｉｃｅ", "Ａｌｉｃｅ"] {
            assert_eq!(canonical(name), Ok("alice".to_owned()), "{name:?}");
        }
        // Compatibility forms and case together.
        assert_eq!(canonical("ﬁnn"), Ok("finn".to_owned()));
        assert_eq!(canonical("Straße"), Ok("straße".to_owned()));
        assert_eq!(canonical("Ǆemal"), canonical("ǆemal"));
        // A combining accent and the precomposed letter are one name.
        assert_eq!(canonical("e\u{301}lise"), canonical("élise"));
        // A non-breaking or ideographic space is a space.
        assert_eq!(canonical("ann\u{a0}lee"), Ok("ann lee".to_owned()));
        assert_eq!(canonical("ann\u{3000}lee"), Ok("ann lee".to_owned()));
        // Scripts other than Latin are names like any other.
        assert_eq!(canonical("Ωμέγα"), Ok("ωμέγα".to_owned()));
        assert_eq!(canonical("山田"), Ok("山田".to_owned()));
    }

    #[test]
    fn invisible_and_ambiguous_characters_are_refused() {
        for name in [
            "alice\u{200b}", // zero-width space
            "al\u{200d}ice", // zero-width joiner
            "\u{202e}ecila", // right-to-left override
            "al\u{2066}ice", // left-to-right isolate
            "alice\u{feff}", // byte-order mark
            "ali\u{ad}ce",   // soft hyphen
            "al\u{0}ice",    // NUL
            "al\nice",       // line feed
            "al\u{2028}ice", // line separator
            "al\u{e000}ice", // private use
            "al\u{378}ice",  // unassigned
        ] {
            assert!(
                matches!(canonical(name), Err(UsernameError::Invisible(_))),
                "{name:?} gave {:?}",
                canonical(name)
            );
        }
        for name in [" alice", "alice ", "al  ice", "\u{3000}alice"] {
            assert_eq!(canonical(name), Err(UsernameError::Spaces), "{name:?}");
        }
        assert_eq!(canonical(""), Err(UsernameError::Empty));
        assert_eq!(canonical(&"é".repeat(256)), Ok("é".repeat(256)));
        assert_eq!(canonical(&"é".repeat(257)), Err(UsernameError::TooLong));
        assert_eq!(canonical(&"a".repeat(5000)), Err(UsernameError::TooLong));
    }

    #[test]
    fn the_canonical_form_is_its_own_canonical_form() {
        for name in ["Alice", "ǅemal", "İstanbul", "ﬃ", "Ωμέγα", "ann\u{a0}lee"] {
            let once = canonical(name).unwrap_or_default();
            assert_eq!(canonical(&once), Ok(once.clone()), "{name:?}");
            assert!(
                !may_need_folding(&once) || once.contains(' ') || !once.is_ascii(),
                "{once:?}"
            );
        }
        assert!(!may_need_folding("alice.smith-2@example"));
        assert!(may_need_folding("Alice"));
        assert!(may_need_folding("élise"));
    }
}
