//! The helpers that scenarios of several topics share.

use otp_core::codec::TokenCodec;
use otp_core::config::JwtAlgorithm;
use otp_core::store::now_secs;
use otp_core::token::{Claims, TokenType};
use serde_json::{Value, json};

use crate::{TEST_SECRET, Target, TestServer, test_config};

// Each scenario runs in a process of its own under nextest, so the metrics recorder's
// counts are the scenario's own.

pub(super) async fn start(t: Target) -> TestServer {
    TestServer::start(t, test_config()).await
}

pub(super) fn codec() -> TokenCodec {
    TokenCodec::hmac(JwtAlgorithm::HS256, TEST_SECRET.as_bytes(), None, None, 0).unwrap()
}

pub(super) fn sign_expired(kind: TokenType, email: &str) -> String {
    let c = codec();
    let now = now_secs();
    let claims = Claims {
        iat: now - 120,
        exp: now - 60,
        ..c.claims(kind, email, email, "sid", 60, Default::default())
    };
    c.sign(claims).unwrap().token
}

/// The access token of a token answer, verified, with its claims.
pub(super) fn access_claims(r: &crate::Reply) -> (String, Claims) {
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    let claims = codec().verify(&token, TokenType::Access).unwrap();
    (token, claims)
}

/// `POST path` with a bearer token and an optional JSON body.
pub(super) async fn bearer_post(
    s: &TestServer,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> crate::Reply {
    let mut r = s.http.post(s.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    s.send(r).await
}

pub(super) async fn login_as(s: &TestServer, email: &str, user_agent: &str) -> crate::Session {
    let r = s
        .send(
            s.http
                .post(s.url("/auth/request-otp"))
                .header("user-agent", user_agent)
                .json(&json!({ "email": email })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let code = s.mailer.last_code(email).unwrap();
    let r = s
        .send(
            s.http
                .post(s.url("/auth/verify-otp"))
                .header("user-agent", user_agent)
                .json(&json!({ "email": email, "otp": code })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    crate::Session {
        access: r.json()["access_token"].as_str().unwrap().to_owned(),
        refresh: r.refresh_cookie().unwrap(),
    }
}
