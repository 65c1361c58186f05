//! Email parsing and normalization: never panics; whatever it accepts is normalized,
//! short enough, free of control characters and spaces, and normalizes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otp_core::hooks::Email;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = Email::parse(s) {
        let n = e.as_str();
        assert!(n.len() <= 254, "{n:?}");
        assert!(
            !n.chars().any(|c| c.is_control() || c.is_whitespace()),
            "{n:?}"
        );
        assert!(!n.chars().any(char::is_uppercase), "{n:?}");
        assert_eq!(n.matches('@').count(), 1, "{n:?}");
        let again = Email::parse(n).expect("a normalized address parses");
        assert_eq!(again.as_str(), n, "normalization is idempotent");
    }
});
