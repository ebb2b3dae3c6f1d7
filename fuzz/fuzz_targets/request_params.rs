//! The token-endpoint, login and sign-up parser (`Params`): the first byte
//! picks the `Content-Type` and whether JSON is allowed, the rest is the
//! body. Never a panic; whatever is accepted has no NUL byte and each name
//! once, and form input round-trips through the same decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [&[u8]; 6] = [
    b"application/x-www-form-urlencoded",
    b"application/json",
    b"application/JSON; charset=utf-8",
    b"text/plain",
    b" application/x-www-form-urlencoded ;q=1",
    b"",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    let json_allowed = selector & 0x80 != 0;
    if let Some(params) = latchkey_server::fuzzing::request_params(content_type, body, json_allowed)
    {
        let mut names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a name twice");
        for (name, value) in &params {
            assert!(
                !name.contains('\0') && !value.contains('\0'),
                "NUL accepted"
            );
        }
    }
});
