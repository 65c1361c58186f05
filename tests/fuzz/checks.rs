//! The properties the fuzz targets check, one function per target, shared by the
//! cargo-fuzz binaries (`fuzz_targets/*.rs`, coverage-guided: `cargo xtask fuzz`) and by
//! the regression replay of the test suite (`tests/tests/fuzz_regressions.rs`), which runs
//! every saved input and mutations of it in the ordinary test build.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Each fuzz binary uses one of the properties.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::Request;
use otp_core::codec::TokenCodec;
use otp_core::config::JwtAlgorithm;
use otp_core::hooks::Email;
use otp_core::mailer::Code;
use otp_core::token::TokenType;
use otp_core::{Config, OtpAuth, mailer::CapturingMailer, store::MemoryStore};
use tower_service::Service;

/// Email parsing and normalization: never panics; whatever it accepts is normalized,
/// short enough, free of control characters and spaces, and normalizes to itself.
pub(crate) fn email(data: &[u8]) {
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
}

/// Code parsing: accepts exactly N ASCII digits, nothing else, never panics.
pub(crate) fn code(data: &[u8]) {
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
}

/// JWT verification on arbitrary input: never panics, never accepts. (A valid token needs
/// the server's key; the fuzzer does not have it.)
pub(crate) fn jwt(data: &[u8]) {
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
}

struct World {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let auth = OtpAuth::builder({
            let mut c = Config::default();
            c.tokens.secret = Some("c2f6e0a9b8d74e1f9a3b5c7d9e1f2a4b6c8d0e2f".into());
            // Fuzzing sends many requests from one address; the limits are tested elsewhere.
            c.limits.per_minute = 1_000_000;
            c.limits.per_ip_per_minute = 1_000_000;
            c
        })
        .stores(MemoryStore::new())
        .mailer(CapturingMailer::new())
        .build()
        .expect("engine");
        let app = axum::Router::new()
            .nest("/auth", otp_axum::router(auth))
            .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        World {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt"),
            app,
        }
    })
}

const PATHS: [&str; 6] = [
    "/auth/request-otp",
    "/auth/verify-otp",
    "/auth/refresh",
    "/auth/logout",
    "/auth/logout-all",
    "/auth/other",
];
const TYPES: [&str; 4] = [
    "application/json",
    "text/plain",
    "application/problem+json; charset=utf-8",
    "",
];

/// Request bodies, content types and headers (also as the flow, device and refresh
/// cookies) through the real axum router (in-memory store, capturing mailer): every answer
/// is one of the contract's statuses, never a 500, and every error is problem+json.
pub(crate) fn request(data: &[u8]) {
    let Some((sel, rest)) = data.split_first() else {
        return;
    };
    // The rest: an optional header value, then the body.
    let (header, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&rest[..0], rest),
    };
    let path = PATHS[usize::from(sel % 6)];
    let ctype = TYPES[usize::from((sel / 6) % 4)];
    let mut req = Request::post(path);
    if !ctype.is_empty() {
        req = req.header("content-type", ctype);
    }
    if let Ok(h) = axum::http::HeaderValue::from_bytes(header) {
        let cookies = format!(
            "otp_flow={0}; otp_device={0}; refresh_token={0}",
            String::from_utf8_lossy(header)
        );
        req = req
            .header("authorization", h.clone())
            .header("cookie", h.clone())
            .header("origin", h.clone())
            .header("x-forwarded-for", h);
        if let Ok(c) = axum::http::HeaderValue::from_str(&cookies) {
            req = req.header("cookie", c);
        }
    }
    let Ok(req) = req.body(Body::from(body.to_vec())) else {
        return;
    };
    let w = world();
    let resp = w.rt.block_on(w.app.clone().call(req)).expect("infallible");
    let status = resp.status().as_u16();
    assert!(
        [200, 400, 401, 403, 404, 413, 415, 422, 429].contains(&status),
        "status {status} for {path}"
    );
    if status >= 400 {
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
    }
}
