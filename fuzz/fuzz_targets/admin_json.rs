//! The admin API's JSON bodies (strict: unknown and duplicated fields
//! refused, no NUL byte in any string) and its listing queries and cursors:
//! the first byte picks which. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let accepted = latchkey_server::fuzzing::admin_body(selector, body);
    if accepted && selector % 4 != 3 {
        let value: serde_json::Value = serde_json::from_slice(body).expect("accepted JSON parses");
        assert!(!has_nul(&value), "a NUL accepted");
    }
});
