//! The admin API's JSON bodies (strict: unknown and duplicated fields
//! refused, no NUL byte in any string) and its listing queries and cursors:
//! the first byte picks which. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let accepted = latchkey_server::fuzzing::admin_body(selector, body);
    if accepted && selector % 4 != 3 {
        assert!(!body.contains(&0), "a raw NUL byte in accepted JSON");
        let text = std::str::from_utf8(body).expect("accepted JSON is UTF-8");
        assert!(!text.contains("\\u0000"), "an escaped NUL accepted");
    }
});
