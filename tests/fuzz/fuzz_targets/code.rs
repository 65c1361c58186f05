//! Code parsing: accepts exactly N ASCII digits, nothing else, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otp_core::mailer::Code;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first() else {
        return;
    };
    let len = 6 + len % 5;
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    let want = s.len() == usize::from(len) && s.bytes().all(|b| b.is_ascii_digit());
    assert_eq!(
        Code::parse(s, len).is_some(),
        want,
        "{s:?} with length {len}"
    );
});
