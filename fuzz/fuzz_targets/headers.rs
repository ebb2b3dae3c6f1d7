//! Cookie and `Authorization` headers, and the refresh tokens they carry:
//! any bytes, never a panic; a cookie value never spans a `;`, a scheme's
//! value is never empty, and a refresh token parses only in its one form.
#![no_main]

use latchkey_core::refresh::RefreshToken;
use latchkey_server::fuzzing;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 5] = [
    "__Host-lk_refresh",
    "lk_refresh",
    "__Host-lk_signin",
    "__Host-lk_csrf",
    "__Host-lk_fgp",
];

fuzz_target!(|data: &[u8]| {
    for name in NAMES {
        if let Some(value) = fuzzing::cookie(data, name) {
            assert!(!value.contains(';'), "a cookie value spans pairs");
            if let Some(token) = RefreshToken::parse(&value) {
                // What parses prints back as itself: one form per token.
                assert_eq!(token.expose(), value);
            }
        }
    }
    if let Some((scheme, value)) = fuzzing::authorization(data) {
        assert!(
            scheme == "basic" || !value.is_empty(),
            "an empty credential"
        );
        assert_eq!(value, value.trim(), "a credential with its spaces");
    }
});
