//! JWT verification on arbitrary input: never panics, never accepts. (A valid token
//! needs the server's key; the fuzzer does not have it.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use otp_core::config::JwtAlgorithm;
use otp_core::codec::TokenCodec;
use otp_core::token::TokenType;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let codec = TokenCodec::hmac(
        JwtAlgorithm::HS256,
        b"fuzz-key-fuzz-key-fuzz-key-fuzz-key!",
        Some("issuer".into()),
        None,
        0,
    )
    .expect("codec");
    assert!(
        codec.verify(s, TokenType::Access).is_err(),
        "accepted {s:?}"
    );
    assert!(
        codec.verify(s, TokenType::Refresh).is_err(),
        "accepted {s:?}"
    );
});
