//! Refresh: rotation and reuse detection, refusals, parallel refreshes, the refresh token
//! in the body or in both.

use std::sync::Arc;

use otp_core::Config;
use otp_core::config::RefreshTransport;
use otp_core::token::TokenType;
use serde_json::json;

use super::common::{codec, sign_expired, start};
use crate::{Target, TestServer, test_config};

/// Refresh rotation without a reuse interval: any spent token is reuse.
fn strict() -> Config {
    let mut c = test_config();
    c.sessions.reuse_interval_seconds = 0;
    c
}

/// Refresh rotates; the spent token is refused and revokes the session.
pub async fn refresh_rotation_and_reuse(t: Target) {
    let s = TestServer::start(t, strict()).await;
    let session = s.login("rot@example.com").await;
    let r = s.refresh(Some(&session.refresh)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 3600);
    assert!(v.get("message").is_none());
    let new_access = v["access_token"].as_str().unwrap().to_owned();
    let new_refresh = r.refresh_cookie().unwrap();
    assert_ne!(new_refresh, session.refresh);
    assert_eq!(s.protected(Some(&new_access)).await.status, 200);
    // The spent token again: 401, and the whole session is gone.
    let r = s.refresh(Some(&session.refresh)).await;
    r.assert_problem(401);
    assert!(
        r.set_cookies().iter().any(|c| c.contains("Max-Age=0")),
        "a dead cookie is cleared"
    );
    s.refresh(Some(&new_refresh)).await.assert_problem(401);
    s.protected(Some(&new_access)).await.assert_problem(401);
    s.protected(Some(&session.access)).await.assert_problem(401);
}

/// 401 for a missing, garbled, access-typed or expired refresh token.
pub async fn refresh_refusals(t: Target) {
    let s = start(t).await;
    let r = s.refresh(None).await;
    r.assert_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = s.refresh(Some("garbage")).await;
    r.assert_problem(401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    let session = s.login("rr@example.com").await;
    s.refresh(Some(&session.access)).await.assert_problem(401);
    let expired = sign_expired(TokenType::Refresh, "rr@example.com");
    s.refresh(Some(&expired)).await.assert_problem(401);
    // Only POST.
    let r = s.send(s.http.get(s.url("/auth/refresh"))).await;
    r.assert_problem(405);
    assert_eq!(r.header("allow"), Some("POST"));
    // The real one still works.
    assert_eq!(s.refresh(Some(&session.refresh)).await.status, 200);
}

/// 20 parallel refreshes of one token, strict (no reuse interval): at most one 200.
pub async fn concurrent_refreshes(t: Target) {
    let s = Arc::new(TestServer::start(t, strict()).await);
    let session = s.login("cr@example.com").await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (s, t) = (s.clone(), session.refresh.clone());
            tokio::spawn(async move { s.refresh(Some(&t)).await })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    // The first to reach the store rotates; every other presents a spent token.
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
    // ... which is reuse: the whole session is revoked, the winner's new token too.
    let winner = replies.iter().find(|r| r.status == 200).unwrap();
    let next = winner.refresh_cookie().expect("a new refresh cookie");
    s.refresh(Some(&next)).await.assert_problem(401);
    let access = winner.json()["access_token"].as_str().unwrap().to_owned();
    s.protected(Some(&access)).await.assert_problem(401);
}

fn with_transport(transport: RefreshTransport) -> Config {
    let mut c = strict();
    c.sessions.refresh_transport = transport;
    c
}

/// `OTP_AUTH_REFRESH_TOKEN_TRANSPORT=body`, for native apps: the refresh token in the JSON
/// of verify-otp and refresh, never a cookie; `/refresh` and `/logout` read it from a JSON
/// body, not from a cookie; a body token beside a cookie is a 400; bad bodies get the
/// documented problems; rotation and reuse detection work as with the cookie.
pub async fn refresh_token_in_body(t: Target) {
    let s = TestServer::start(t, with_transport(RefreshTransport::Body)).await;
    assert_eq!(s.request_otp("native@example.com").await.status, 200);
    let code = s.mailer.last_code("native@example.com").unwrap();
    let r = s.verify_otp("native@example.com", &code).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.set_cookies().is_empty(),
        "no cookie in body mode: {:?}",
        r.set_cookies()
    );
    let v = r.json();
    let first = v["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        v["refresh_expires_in"],
        s.auth.config().tokens.refresh_expire_days * 86_400
    );
    assert_eq!(v["token_type"], "bearer");
    let access = v["access_token"].as_str().unwrap().to_owned();

    let refresh_with = |body: Option<String>, cookie: Option<&str>, ct: &str| {
        let mut r = s.http.post(s.url("/auth/refresh"));
        if let Some(b) = body {
            r = r.header("content-type", ct).body(b);
        }
        if let Some(c) = cookie {
            r = r.header("cookie", format!("refresh_token={c}"));
        }
        r
    };
    let token_body = |t: &str| Some(json!({ "refresh_token": t }).to_string());
    // No body: nothing presented; a cookie is not read in body mode.
    let r = s.send(refresh_with(None, None, "")).await;
    r.assert_problem(401);
    assert!(r.set_cookies().is_empty());
    s.send(refresh_with(None, Some(&first), ""))
        .await
        .assert_problem(401);
    // Both at once: 400, and nothing is spent.
    let p = s
        .send(refresh_with(
            token_body(&first),
            Some(&first),
            "application/json",
        ))
        .await
        .assert_problem(400);
    assert!(p["detail"].as_str().unwrap().contains("not both"), "{p}");
    // Bad bodies.
    s.send(refresh_with(Some("{}".into()), None, "application/json"))
        .await
        .assert_problem(422);
    s.send(refresh_with(token_body(&first), None, "text/plain"))
        .await
        .assert_problem(415);
    s.send(refresh_with(
        token_body("garbage"),
        None,
        "application/json",
    ))
    .await
    .assert_problem(401);

    let r = s
        .send(refresh_with(token_body(&first), None, "application/json"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.set_cookies().is_empty());
    let second = r.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert!(r.json().get("message").is_none());
    // The spent token again: reuse, the session revoked (strict interval).
    s.send(refresh_with(token_body(&first), None, "application/json"))
        .await
        .assert_problem(401);
    s.send(refresh_with(token_body(&second), None, "application/json"))
        .await
        .assert_problem(401);

    // Logout reads the body token and ends its session.
    let r = s.login_body("native2@example.com").await;
    let out = s
        .send(
            s.http
                .post(s.url("/auth/logout"))
                .bearer_auth(&access)
                .json(&json!({ "refresh_token": r.refresh })),
        )
        .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert!(out.set_cookies().is_empty());
    s.send(refresh_with(
        token_body(&r.refresh),
        None,
        "application/json",
    ))
    .await
    .assert_problem(401);
    s.protected(Some(&r.access)).await.assert_problem(401);
    // A body token beside a cookie on /logout: 400, and the session lives on.
    let live = s.login_body("native3@example.com").await;
    s.send(
        s.http
            .post(s.url("/auth/logout"))
            .header("cookie", format!("refresh_token={}", live.refresh))
            .json(&json!({ "refresh_token": live.refresh })),
    )
    .await
    .assert_problem(400);
    assert_eq!(s.protected(Some(&live.access)).await.status, 200);
}

/// `OTP_AUTH_REFRESH_TOKEN_TRANSPORT=both`: the cookie is set and the JSON carries the
/// same token; `/refresh` takes either, not both.
pub async fn refresh_token_in_cookie_and_body(t: Target) {
    let s = TestServer::start(t, with_transport(RefreshTransport::Both)).await;
    assert_eq!(s.request_otp("both@example.com").await.status, 200);
    let code = s.mailer.last_code("both@example.com").unwrap();
    let r = s.verify_otp("both@example.com", &code).await;
    assert_eq!(r.status, 200);
    let cookie = r.refresh_cookie().expect("the cookie is set in both mode");
    assert_eq!(r.json()["refresh_token"].as_str(), Some(cookie.as_str()));
    // By cookie.
    let r = s.refresh(Some(&cookie)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let next = r.refresh_cookie().unwrap();
    assert_eq!(r.json()["refresh_token"].as_str(), Some(next.as_str()));
    // By body.
    let r = s
        .post_json("/auth/refresh", &json!({ "refresh_token": next }))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let last = r.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(r.refresh_cookie().as_deref(), Some(last.as_str()));
    // Both: 400.
    s.send(
        s.http
            .post(s.url("/auth/refresh"))
            .header("cookie", format!("refresh_token={last}"))
            .json(&json!({ "refresh_token": last })),
    )
    .await
    .assert_problem(400);
    // Logout by cookie clears it.
    let out = s
        .send(
            s.http
                .post(s.url("/auth/logout"))
                .header("cookie", format!("refresh_token={last}")),
        )
        .await;
    assert_eq!(out.status, 200);
    assert!(
        out.set_cookies()
            .iter()
            .any(|c| c.starts_with("refresh_token=;"))
    );
    s.post_json("/auth/refresh", &json!({ "refresh_token": last }))
        .await
        .assert_problem(401);
}

/// The refresh token's `jti` (unverified: the test's own tokens).
fn refresh_jti(token: &str) -> String {
    codec().verify(token, TokenType::Refresh).unwrap().jti
}

/// Eight tabs refresh with the one cookie they share at the same moment: every tab gets
/// 200, all on one lineage (the same current refresh token), and the session lives on.
pub async fn racing_tabs(t: Target) {
    let s = Arc::new(start(t).await);
    let session = s.login("tabs@example.com").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (s, t) = (s.clone(), session.refresh.clone());
            tokio::spawn(async move { s.refresh(Some(&t)).await })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let cookies: Vec<String> = replies
        .iter()
        .map(|r| r.refresh_cookie().unwrap())
        .collect();
    let lineage = refresh_jti(&cookies[0]);
    assert!(
        cookies.iter().all(|c| refresh_jti(c) == lineage),
        "one lineage: every tab holds the current token"
    );
    assert_ne!(lineage, refresh_jti(&session.refresh));
    for r in &replies {
        let access = r.json()["access_token"].as_str().unwrap().to_owned();
        assert_eq!(s.protected(Some(&access)).await.status, 200);
    }
    // Any tab's cookie refreshes on.
    let next = s.refresh(Some(&cookies[5])).await;
    assert_eq!(next.status, 200, "{}", next.text());
    // The first token is now two rotations back: reuse ends the session.
    s.refresh(Some(&session.refresh)).await.assert_problem(401);
    let access = next.json()["access_token"].as_str().unwrap().to_owned();
    s.protected(Some(&access)).await.assert_problem(401);
}
