//! Request bodies, content types and headers through the real axum router (in-memory
//! store, capturing mailer): every answer is one of the contract's statuses, never a 500,
//! and every error is problem+json.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use otp_core::{Config, OtpAuth, mailer::CapturingMailer, store::MemoryStore};
use tower::ServiceExt;

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

fuzz_target!(|data: &[u8]| {
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
        req = req
            .header("authorization", h.clone())
            .header("cookie", h.clone())
            .header("origin", h.clone())
            .header("x-forwarded-for", h);
    }
    let Ok(req) = req.body(Body::from(body.to_vec())) else {
        return;
    };
    let w = world();
    let resp =
        w.rt.block_on(w.app.clone().oneshot(req))
            .expect("infallible");
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
});
