//! DPoP proofs: any bytes, never a panic.
#![no_main]

use latchkey_core::dpop::{Expected, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let expected = Expected {
            method: "POST",
            url: "https://server.example.com/token",
            now: 1_562_262_616,
            access_token: None,
        };
        let _ = verify(text, &expected);
        let with_token = Expected {
            access_token: Some("token"),
            ..expected
        };
        let _ = verify(text, &with_token);
    }
});
