//! The HTTP scenarios of the contract (API.md), each a function of the adapter under test.
//! [`crate::http_scenarios!`] instantiates them as tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use otp_core::codec::TokenCodec;
use otp_core::config::{ForwardedHeader, JwtAlgorithm, RefreshTransport, SameSite};
use otp_core::event::{
    Event as AuditEvent, EventKind as AuditKind, Failure, Limit, LoginMethod, Verification,
};
use otp_core::mailer::MailError;
use otp_core::store::now_secs;
use otp_core::store::{
    AccessStatus, NewSession, Renewal, Revocation, RotateOutcome, Rotation, SessionInfo,
    StoreError, TokenBlacklist,
};
use otp_core::token::{Claims, TokenType};
use otp_core::{
    ClientInfo, Config, Hooks, OtpAuth,
    hooks::{BoxError, Email, async_trait},
};
use serde_json::{Value, json};

use crate::{Backends, TEST_SECRET, Target, TestServer, test_config};

// Each scenario runs in a process of its own under nextest, so the metrics recorder's
// counts are the scenario's own.

async fn start(t: Target) -> TestServer {
    TestServer::start(t, test_config()).await
}

/// Refresh rotation without a reuse interval: any spent token is reuse.
fn strict() -> Config {
    let mut c = test_config();
    c.sessions.reuse_interval_seconds = 0;
    c
}

fn codec() -> TokenCodec {
    TokenCodec::hmac(JwtAlgorithm::HS256, TEST_SECRET.as_bytes(), None, None, 0).unwrap()
}

/// Request, verify, protected: the bodies, statuses and headers of a whole login.
pub async fn login_flow(t: Target) {
    let s = start(t).await;
    let r = s.request_otp("Grace@Example.com").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"message": "OTP sent successfully"}));
    let code = s.mailer.last_code("grace@example.com").unwrap();
    let r = s.verify_otp("grace@example.com", &code).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = r.json();
    assert_eq!(v["message"], "OTP verified successfully!");
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 3600);
    let access = v["access_token"].as_str().unwrap();
    assert_eq!(access.split('.').count(), 3);
    assert!(r.refresh_cookie().is_some());
    let r = s.protected(Some(access)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"message": "Hello, grace@example.com!"}));
}

/// The refresh cookie's attributes, default and configured, and its clearing twin.
pub async fn cookie_attributes(t: Target) {
    let s = start(t).await;
    s.request_otp("c@example.com").await;
    let code = s.mailer.last_code("c@example.com").unwrap();
    let r = s.verify_otp("c@example.com", &code).await;
    let set = r.set_cookies();
    assert_eq!(set.len(), 1);
    let c = &set[0];
    assert!(c.starts_with("refresh_token=ey"), "{c}");
    for attr in [
        "; Max-Age=604800",
        "; Path=/",
        "; HttpOnly",
        "; Secure",
        "; SameSite=Lax",
    ] {
        assert!(c.contains(attr), "{c} lacks {attr}");
    }

    let s = TestServer::start(t, {
        let mut c = test_config();
        c.cookie.name = "rt".into();
        c.cookie.secure = false;
        c.cookie.samesite = SameSite::Strict;
        c.cookie.path = "/auth".into();
        c.tokens.refresh_expire_days = 2;
        c
    })
    .await;
    s.request_otp("c@example.com").await;
    let code = s.mailer.last_code("c@example.com").unwrap();
    let r = s.verify_otp("c@example.com", &code).await;
    let c = &r.set_cookies()[0];
    assert!(c.starts_with("rt=ey"), "{c}");
    for attr in [
        "; Max-Age=172800",
        "; Path=/auth",
        "; HttpOnly",
        "; SameSite=Strict",
    ] {
        assert!(c.contains(attr), "{c} lacks {attr}");
    }
    assert!(!c.contains("Secure"), "{c}");
    let token = c.strip_prefix("rt=").unwrap().split(';').next().unwrap();
    // The configured name is the one read back.
    let r = s
        .send(
            s.http
                .post(s.url("/auth/refresh"))
                .header("cookie", format!("rt={token}")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout"))
                .header("cookie", format!("rt={token}")),
        )
        .await;
    assert_eq!(
        r.set_cookies(),
        vec!["rt=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/auth; HttpOnly; SameSite=Strict".to_owned()]
    );
}

/// 422, 415 and 413 on `/request-otp`, with nothing mailed.
pub async fn request_otp_bad_input(t: Target) {
    let s = start(t).await;
    for body in [
        json!({}),
        json!({"email": 42}),
        json!({"email": null}),
        json!({"mail": "a@example.com"}),
        json!({"email": "not-an-address"}),
        json!({"email": "a@example.com\r\nBcc: victim@example.org"}),
        json!({"email": "a@example.com\n"}),
        json!({"email": "a\u{0000}@example.com"}),
        json!({"email": format!("{}@example.com", "a".repeat(250))}),
        json!(["a@example.com"]),
        // RFC 2047 encoded words: decoded, these name another mailbox.
        json!({"email": "=?utf-8?q?attacker=40evil.example?=@example.com"}),
        json!({"email": "=?utf-8?b?YXR0YWNrZXJAZXZpbC5leGFtcGxl?=@example.com"}),
    ] {
        let r = s.post_json("/auth/request-otp", &body).await;
        r.assert_problem(422);
    }
    assert_eq!(s.mailer.count(), 0, "no mail for a refused address");
    let nested = format!(
        "{{\"email\": {}\"a@example.com\"{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    for raw in [
        "{",
        "{\"email\": \"a@example.com\"",
        "not json",
        "",
        nested.as_str(),
    ] {
        let raw = raw.to_owned();
        let r = s
            .send(
                s.http
                    .post(s.url("/auth/request-otp"))
                    .header("content-type", "application/json")
                    .body(raw),
            )
            .await;
        r.assert_problem(422);
    }
    let r = s
        .send(
            s.http
                .post(s.url("/auth/request-otp"))
                .header("content-type", "application/json")
                .body(vec![0xff, 0xfe, 0x7b]),
        )
        .await;
    r.assert_problem(422);
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = s
            .http
            .post(s.url("/auth/request-otp"))
            .body("{\"email\": \"a@example.com\"}");
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        s.send(req).await.assert_problem(415);
    }
    let big = json!({"email": "a@example.com", "pad": "x".repeat(17 * 1024)});
    s.post_json("/auth/request-otp", &big)
        .await
        .assert_problem(413);
    // Streamed without a length: refused while reading.
    let mut raw = String::from(
        "POST /auth/request-otp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..40 {
        raw.push_str(&format!("400\r\n{}\r\n", " ".repeat(1024)));
    }
    raw.push_str("0\r\n\r\n");
    let reply = crate::raw_http(s.addr, raw.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("application/problem+json"), "{reply}");
    assert_eq!(s.mailer.count(), 0);
}

/// The per-address limit: 429 with `Retry-After`, no mail, across spellings of the address.
pub async fn address_rate_limit(t: Target) {
    let s = start(t).await;
    let spellings = [
        "Lim@Example.com",
        "lim@example.com",
        " LIM@EXAMPLE.COM ",
        "lim@Example.Com",
        "lim@example.com",
    ];
    for e in spellings {
        assert_eq!(s.request_otp(e).await.status, 200, "{e}");
    }
    assert_eq!(s.mailer.count(), 5);
    let r = s.request_otp("LIM@example.com").await;
    r.assert_problem(429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(s.mailer.count(), 5, "a limited request sends no mail");
    // Another address is not affected.
    assert_eq!(s.request_otp("other@example.com").await.status, 200);
}

/// The per-IP limit, which a forged `X-Forwarded-For` from an untrusted peer cannot bypass.
pub async fn ip_rate_limit_ignores_spoofed_forwarded_for(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.limits.per_ip_per_minute = 3;
        c
    })
    .await;
    for i in 0..3 {
        let r = s
            .send(
                s.http
                    .post(s.url("/auth/request-otp"))
                    .header("x-forwarded-for", format!("203.0.113.{i}"))
                    .json(&json!({"email": format!("ip{i}@example.com")})),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let r = s
        .send(
            s.http
                .post(s.url("/auth/request-otp"))
                .header("x-forwarded-for", "198.51.100.77")
                .json(&json!({"email": "ip9@example.com"})),
        )
        .await;
    r.assert_problem(429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(s.mailer.count(), 3);
}

/// Behind a trusted proxy, `X-Forwarded-For` names the client.
pub async fn trusted_proxy_forwarded_for(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.limits.per_ip_per_minute = 2;
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
        c
    })
    .await;
    let send = |xff: &'static str, n: u32| {
        s.send(
            s.http
                .post(s.url("/auth/request-otp"))
                .header("x-forwarded-for", xff)
                .json(&json!({"email": format!("p{n}@example.com")})),
        )
    };
    assert_eq!(send("203.0.113.1", 1).await.status, 200);
    assert_eq!(send("203.0.113.1", 2).await.status, 200);
    send("203.0.113.1", 3).await.assert_problem(429);
    // Another client behind the same proxy has its own bucket.
    assert_eq!(send("203.0.113.2", 4).await.status, 200);
    // A forged leftmost entry does not help: the proxy appended the real client.
    send("198.51.100.1, 203.0.113.1", 5)
        .await
        .assert_problem(429);
}

/// Forwarded entries as proxies write them (`IP:port` as Azure Application Gateway does,
/// `[IPv6]:port`, a trailing comma, blanks) name their client, in both header modes: each
/// client keeps its own bucket instead of all sharing the proxy's.
pub async fn forwarded_entries_with_ports(t: Target) {
    for mode in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
        let s = TestServer::start(t, {
            let mut c = test_config();
            c.limits.per_ip_per_minute = 1;
            c.http.trusted_proxies = vec!["127.0.0.1".into()];
            c.http.forwarded_header = mode;
            c
        })
        .await;
        let (name, wrap): (&str, fn(&str) -> String) = match mode {
            ForwardedHeader::XForwardedFor => ("x-forwarded-for", |v| v.to_owned()),
            ForwardedHeader::Forwarded => ("forwarded", |v| {
                v.split(',')
                    .map(|e| {
                        let e = e.trim();
                        if e.is_empty() {
                            String::new()
                        } else {
                            format!("for=\"{e}\"")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
        };
        let mut n = 0;
        let mut send = |entry: &'static str| {
            n += 1;
            let value = wrap(entry);
            let email = format!("port{n}@example.com");
            let r = s
                .http
                .post(s.url("/auth/request-otp"))
                .header(name, value)
                .json(&json!({ "email": email }));
            s.send(r)
        };
        // Four clients with a port each: four buckets of one request.
        for entry in [
            "198.51.100.10:1234",
            "198.51.100.11:1234,",
            "[2001:db8::5]:443",
            " 198.51.100.12:80 , ",
        ] {
            let r = send(entry).await;
            assert_eq!(r.status, 200, "{mode:?} {entry}: {}", r.text());
        }
        // The same clients again, written another way: their buckets are full.
        for entry in ["198.51.100.10", "[2001:db8::5]", "198.51.100.11:9"] {
            send(entry).await.assert_problem(429);
        }
    }
}

/// `OTP_AUTH_FORWARDED_HEADER=forwarded`: behind a trusted proxy the per-IP limit buckets
/// by the RFC 7239 `for=` the proxy appended (quoted IPv6 with a port included), a forged
/// leftmost element does not help, and `X-Forwarded-For` is not read at all.
pub async fn trusted_proxy_rfc7239_forwarded(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.limits.per_ip_per_minute = 2;
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
        c.http.forwarded_header = ForwardedHeader::Forwarded;
        c
    })
    .await;
    let send = |name: &'static str, value: &'static str, n: u32| {
        s.send(
            s.http
                .post(s.url("/auth/request-otp"))
                .header(name, value)
                .json(&json!({"email": format!("f{n}@example.com")})),
        )
    };
    let fwd = "forwarded";
    assert_eq!(
        send(fwd, "for=203.0.113.1;proto=https", 1).await.status,
        200
    );
    assert_eq!(send(fwd, "for=\"203.0.113.1:4711\"", 2).await.status, 200);
    send(fwd, "for=203.0.113.1", 3).await.assert_problem(429);
    // Another client behind the same proxy has its own bucket, IPv6 too.
    assert_eq!(send(fwd, "for=\"[2001:db8::7]:443\"", 4).await.status, 200);
    assert_eq!(send(fwd, "for=203.0.113.2", 5).await.status, 200);
    // A forged leftmost element does not help: the proxy appended the real client.
    send(fwd, "for=198.51.100.1, for=203.0.113.1", 6)
        .await
        .assert_problem(429);
    // X-Forwarded-For is not the configured header: every request is the proxy's own
    // address, whose bucket (127.0.0.1) fills like any other.
    assert_eq!(
        send("x-forwarded-for", "198.51.100.50", 7).await.status,
        200
    );
    assert_eq!(
        send("x-forwarded-for", "198.51.100.51", 8).await.status,
        200
    );
    send("x-forwarded-for", "198.51.100.52", 9)
        .await
        .assert_problem(429);
}

/// 400 for no code and a wrong code; 422 for malformed codes, which are not counted.
pub async fn verify_errors(t: Target) {
    let s = start(t).await;
    s.verify_otp("none@example.com", "123456")
        .await
        .assert_problem(400);
    s.request_otp("v@example.com").await;
    let code = s.mailer.last_code("v@example.com").unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = s.verify_otp("v@example.com", wrong).await;
    let p = r.assert_problem(400);
    assert!(!r.text().contains(&code), "the right code leaks in {p}");
    for bad in [
        json!("12345"),
        json!("1234567"),
        json!("12345a"),
        json!(123456),
        json!(null),
        json!(" 123456"),
    ] {
        let r = s
            .post_json(
                "/auth/verify-otp",
                &json!({"email": "v@example.com", "otp": bad}),
            )
            .await;
        r.assert_problem(422);
    }
    s.post_json("/auth/verify-otp", &json!({"email": "v@example.com"}))
        .await
        .assert_problem(422);
    s.post_json("/auth/verify-otp", &json!({"otp": "123456"}))
        .await
        .assert_problem(422);
    // A code is bound to its address: valid for v@, useless for anyone else.
    s.request_otp("w@example.com").await;
    s.verify_otp("w@example.com", &code)
        .await
        .assert_problem(400);
    // Ten malformed codes did not count: the right code still works (cap is 5).
    assert_eq!(s.verify_otp("V@example.com", &code).await.status, 200);
    // Used: gone.
    s.verify_otp("v@example.com", &code)
        .await
        .assert_problem(400);
}

/// Five failures lock the address out across resends; 429 with `Retry-After` even for the
/// right code, and no new code while locked.
pub async fn lockout_across_resends(t: Target) {
    let s = start(t).await;
    s.request_otp("lock@example.com").await;
    let first = s.mailer.last_code("lock@example.com").unwrap();
    for w in wrong_codes(&first).take(3) {
        s.verify_otp("lock@example.com", &w)
            .await
            .assert_problem(400);
    }
    s.request_otp("lock@example.com").await;
    let second = s.mailer.last_code("lock@example.com").unwrap();
    for w in wrong_codes(&second).take(2) {
        s.verify_otp("lock@example.com", &w)
            .await
            .assert_problem(400);
    }
    let r = s.verify_otp("lock@example.com", &second).await;
    r.assert_problem(429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((890..=900).contains(&retry), "{retry}");
    let sent = s.mailer.count();
    s.request_otp("lock@example.com").await.assert_problem(429);
    assert_eq!(s.mailer.count(), sent, "no mail while locked out");
}

fn wrong_codes(right: &str) -> impl Iterator<Item = String> + '_ {
    (0..)
        .map(|i| format!("{:06}", 100_000 + i * 7919))
        .filter(move |c| c != right)
}

/// 16 parallel verifications of one code: exactly one 200.
pub async fn concurrent_verifications(t: Target) {
    let s = Arc::new(start(t).await);
    s.request_otp("race@example.com").await;
    let code = s.mailer.last_code("race@example.com").unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (s, code) = (s.clone(), code.clone());
            tokio::spawn(async move { s.verify_otp("race@example.com", &code).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    // The code is spent: the others count as failures (400) up to the address's five,
    // then meet the lockout (429).
    let count = |code: u16| statuses.iter().filter(|s| **s == code).count();
    assert_eq!(count(400), 5, "{statuses:?}");
    assert_eq!(count(429), 10, "{statuses:?}");
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

fn sign_expired(kind: TokenType, email: &str) -> String {
    let c = codec();
    let now = now_secs();
    let claims = Claims {
        iat: now - 120,
        exp: now - 60,
        ..c.claims(kind, email, email, "sid", 60, Default::default())
    };
    c.sign(claims).unwrap().token
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

/// Logout revokes both tokens, clears the cookie, and is idempotent.
pub async fn logout(t: Target) {
    let s = start(t).await;
    let session = s.login("out@example.com").await;
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout"))
                .bearer_auth(&session.access)
                .header("cookie", format!("refresh_token={}", session.refresh)),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"message": "Successfully logged out"}));
    assert_eq!(
        r.set_cookies(),
        vec!["refresh_token=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly; Secure; SameSite=Lax".to_owned()]
    );
    let r = s.protected(Some(&session.access)).await;
    r.assert_problem(401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    s.refresh(Some(&session.refresh)).await.assert_problem(401);
    // Again, with nothing, with garbage: still 200 and a cleared cookie.
    for req in [
        s.http
            .post(s.url("/auth/logout"))
            .bearer_auth(&session.access),
        s.http.post(s.url("/auth/logout")),
        s.http
            .post(s.url("/auth/logout"))
            .bearer_auth("garbage")
            .header("cookie", "refresh_token=garbage"),
    ] {
        let r = s.send(req).await;
        assert_eq!(r.status, 200);
        assert!(r.set_cookies()[0].contains("Max-Age=0"));
    }
    // The access token alone ends its session too.
    let other = s.login("out2@example.com").await;
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout"))
                .bearer_auth(&other.access),
        )
        .await;
    assert_eq!(r.status, 200);
    s.refresh(Some(&other.refresh)).await.assert_problem(401);
}

/// Logout-all ends every session of the user and no one else's.
pub async fn logout_all(t: Target) {
    let s = start(t).await;
    let r = s.send(s.http.post(s.url("/auth/logout-all"))).await;
    r.assert_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let a1 = s.login("all@example.com").await;
    let a2 = s.login("ALL@example.com").await;
    let b = s.login("bystander@example.com").await;
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout-all"))
                .bearer_auth(&a2.access),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"message": "Successfully logged out"}));
    for t in [&a1.access, &a2.access] {
        s.protected(Some(t)).await.assert_problem(401);
    }
    s.refresh(Some(&a1.refresh)).await.assert_problem(401);
    assert_eq!(s.protected(Some(&b.access)).await.status, 200);
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout-all"))
                .bearer_auth(&a1.access),
        )
        .await;
    r.assert_problem(401);
}

/// Administration from code, with no access token: list a subject's sessions, end one by
/// id, end them all; other users keep theirs.
pub async fn administration_from_code(t: Target) {
    let s = start(t).await;
    let a1 = s.login("admin-a@example.com").await;
    let a2 = s.login("admin-a@example.com").await;
    let b = s.login("admin-b@example.com").await;
    let subject = "admin-a@example.com";
    let sid_of = |access: &str| codec().verify(access, TokenType::Access).unwrap().sid;
    let listed = s.auth.admin().sessions_of(subject).await.unwrap();
    let mut sids: Vec<String> = listed.iter().map(|x| x.sid.clone()).collect();
    sids.sort();
    let mut expected = vec![sid_of(&a1.access), sid_of(&a2.access)];
    expected.sort();
    assert_eq!(sids, expected);

    // One session by id: its tokens stop working, the other session lives on.
    assert!(
        s.auth
            .admin()
            .end_session(&sid_of(&a1.access))
            .await
            .unwrap()
    );
    s.protected(Some(&a1.access)).await.assert_problem(401);
    s.refresh(Some(&a1.refresh)).await.assert_problem(401);
    assert_eq!(s.protected(Some(&a2.access)).await.status, 200);
    // Again, or an id that names nothing: no change, and no error.
    assert!(
        !s.auth
            .admin()
            .end_session(&sid_of(&a1.access))
            .await
            .unwrap()
    );
    assert!(!s.auth.admin().end_session("not-a-session").await.unwrap());
    assert!(!s.auth.admin().end_session("").await.unwrap());
    assert_eq!(s.auth.admin().sessions_of(subject).await.unwrap().len(), 1);

    // Every session of the subject; the bystander keeps hers.
    assert_eq!(
        s.auth.admin().end_all_sessions_of(subject).await.unwrap(),
        1
    );
    s.protected(Some(&a2.access)).await.assert_problem(401);
    s.refresh(Some(&a2.refresh)).await.assert_problem(401);
    assert!(
        s.auth
            .admin()
            .sessions_of(subject)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.auth.admin().end_all_sessions_of(subject).await.unwrap(),
        0
    );
    assert_eq!(s.protected(Some(&b.access)).await.status, 200);
    assert_eq!(
        s.auth
            .admin()
            .sessions_of("admin-b@example.com")
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The extractor: 401 with the right `WWW-Authenticate` for each kind of bad token.
pub async fn protected_route_refusals(t: Target) {
    let s = start(t).await;
    let r = s.protected(None).await;
    r.assert_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = s
        .send(
            s.http
                .get(s.url("/protected"))
                .header("authorization", "Basic dTpw"),
        )
        .await;
    r.assert_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let session = s.login("p@example.com").await;
    let foreign = TokenCodec::hmac(
        JwtAlgorithm::HS256,
        b"0ther-secret-0ther-secret-0ther-secret",
        None,
        None,
        0,
    )
    .unwrap();
    let foreign = foreign
        .sign(foreign.claims(
            TokenType::Access,
            "p@example.com",
            "p@example.com",
            "sid",
            60,
            Default::default(),
        ))
        .unwrap()
        .token;
    for bad in [
        "garbage".to_owned(),
        session.refresh.clone(),
        sign_expired(TokenType::Access, "p@example.com"),
        foreign,
        format!("{}x", session.access),
    ] {
        let r = s.protected(Some(&bad)).await;
        r.assert_problem(401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
    }
    assert_eq!(s.protected(Some(&session.access)).await.status, 200);
    // RFC 7519: a token is not accepted on or after its `exp`, also within that second.
    // The live session's own token, re-signed to expire now, at the start of a second.
    let mut claims = codec().verify(&session.access, TokenType::Access).unwrap();
    let start = now_secs();
    while now_secs() == start {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    claims.exp = now_secs();
    let at_exp = codec().sign(claims).unwrap().token;
    let r = s.protected(Some(&at_exp)).await;
    r.assert_problem(401);
    // Option<CurrentUser>: None without a token, the user with one, 401 with a bad one.
    let r = s.send(s.http.get(s.url("/maybe-user"))).await;
    assert_eq!(r.json(), json!({"user": null}));
    let r = s
        .send(
            s.http
                .get(s.url("/maybe-user"))
                .bearer_auth(&session.access),
        )
        .await;
    assert_eq!(r.json(), json!({"user": "p@example.com"}));
    s.send(s.http.get(s.url("/maybe-user")).bearer_auth("garbage"))
        .await
        .assert_problem(401);
}

/// With allowed origins set, another `Origin` gets 403 on every endpoint.
pub async fn origin_check(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.http.allowed_origins = vec!["https://app.example.com".into()];
        c
    })
    .await;
    let victim = s.login("victim@example.com").await;
    let sid = s
        .send(
            s.http
                .get(s.url("/auth/sessions"))
                .bearer_auth(&victim.access),
        )
        .await
        .json()["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = s.mailer.count();
    let delete = format!("/auth/sessions/{sid}");
    for (method, path) in [
        ("POST", "/auth/request-otp"),
        ("POST", "/auth/verify-otp"),
        ("POST", "/auth/verify-link"),
        ("POST", "/auth/refresh"),
        ("POST", "/auth/logout"),
        ("POST", "/auth/logout-all"),
        ("POST", "/auth/logout-others"),
        ("DELETE", delete.as_str()),
    ] {
        let r = s
            .send(
                s.http
                    .request(method.parse().unwrap(), s.url(path))
                    .header("origin", "https://evil.example.net")
                    .header("cookie", format!("refresh_token={}", victim.refresh))
                    .bearer_auth(&victim.access)
                    .json(&json!({"email": "o@example.com", "otp": "123456", "token": "x"})),
            )
            .await;
        r.assert_problem(403);
    }
    assert_eq!(s.mailer.count(), sent);
    assert_eq!(
        s.protected(Some(&victim.access)).await.status,
        200,
        "nothing was revoked"
    );
    // Reading changes nothing: the GET endpoints answer any origin.
    for path in ["/auth/jwks.json", "/auth/magic?token=x"] {
        let r = s
            .send(
                s.http
                    .get(s.url(path))
                    .header("origin", "https://evil.example.net"),
            )
            .await;
        assert_eq!(r.status, 200, "{path}");
    }
    let r = s
        .send(
            s.http
                .post(s.url("/auth/request-otp"))
                .header("origin", "https://app.example.com")
                .json(&json!({"email": "o@example.com"})),
        )
        .await;
    assert_eq!(r.status, 200);
    // Non-browser clients send no Origin.
    assert_eq!(s.request_otp("o2@example.com").await.status, 200);
}

/// Unknown paths and methods are problems too.
pub async fn not_found_and_method(t: Target) {
    let s = start(t).await;
    s.send(s.http.post(s.url("/auth/nope")))
        .await
        .assert_problem(404);
    for path in [
        "/auth/request-otp",
        "/auth/verify-otp",
        "/auth/refresh",
        "/auth/logout",
        "/auth/logout-all",
    ] {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let r = s.send(s.http.request(method.clone(), s.url(path))).await;
            r.assert_problem(405);
            assert_eq!(r.header("allow"), Some("POST"), "{method} {path}");
        }
    }
}

pub use otp_core::contract::DownStore;

/// An unreachable store: 503 problems everywhere, protected routes fail closed.
pub async fn store_unavailable(t: Target) {
    let backends = Backends::with_capture(Arc::new(DownStore), Arc::new(DownStore));
    let s = TestServer::start_with(t.adapter, test_config(), backends).await;
    let r = s.request_otp("d@example.com").await;
    let p = r.assert_problem(503);
    assert!(
        !p["detail"].as_str().unwrap().contains("refused"),
        "internal detail leaked: {p}"
    );
    s.verify_otp("d@example.com", "123456")
        .await
        .assert_problem(503);
    let c = codec();
    let valid = c
        .sign(c.claims(
            TokenType::Access,
            "d@example.com",
            "d@example.com",
            "sid",
            60,
            Default::default(),
        ))
        .unwrap()
        .token;
    s.protected(Some(&valid)).await.assert_problem(503);
    let refresh = c
        .sign(c.claims(
            TokenType::Refresh,
            "d@example.com",
            "d@example.com",
            "sid",
            60,
            Default::default(),
        ))
        .unwrap()
        .token;
    s.refresh(Some(&refresh)).await.assert_problem(503);
    assert_eq!(s.mailer.count(), 0);
}

/// Mail failures: transient → 503, permanent → 502; the next request works.
pub async fn mail_failures(t: Target) {
    let s = start(t).await;
    s.mailer
        .fail_next(MailError::Transient("421 try later".into()));
    s.request_otp("m@example.com").await.assert_problem(503);
    s.mailer
        .fail_next(MailError::Permanent("550 no such user".into()));
    let r = s.request_otp("m@example.com").await;
    let p = r.assert_problem(502);
    assert!(!r.text().contains("550"), "internal detail leaked: {p}");
    assert_eq!(s.request_otp("m@example.com").await.status, 200);
    let code = s.mailer.last_code("m@example.com").unwrap();
    assert_eq!(s.verify_otp("m@example.com", &code).await.status, 200);
}

/// Hooks adding the application's own claims that [`crate::TestClaims`] reads.
#[derive(Debug)]
pub struct RolesHooks;

#[async_trait]
impl Hooks for RolesHooks {
    async fn claims(
        &self,
        _subject: &str,
        email: &Email,
    ) -> Result<serde_json::Map<String, serde_json::Value>, BoxError> {
        let roles = if email.as_str().starts_with("admin") {
            json!(["member", "admin"])
        } else {
            json!(["member"])
        };
        let mut m = serde_json::Map::new();
        m.insert("roles".into(), roles);
        m.insert("tier".into(), json!(3));
        Ok(m)
    }
}

/// A blacklist that counts its access checks and can be made to fail them (the store
/// down), around the real one.
#[derive(Debug)]
struct CheckCounter {
    inner: Arc<dyn TokenBlacklist>,
    checks: AtomicUsize,
    down: AtomicBool,
}

#[async_trait]
impl TokenBlacklist for CheckCounter {
    async fn create_session(&self, session: &NewSession) -> Result<u32, StoreError> {
        self.inner.create_session(session).await
    }
    async fn rotate_refresh(&self, rotation: &Rotation) -> Result<RotateOutcome, StoreError> {
        self.inner.rotate_refresh(rotation).await
    }
    async fn renew_session(&self, renewal: &Renewal) -> Result<bool, StoreError> {
        self.inner.renew_session(renewal).await
    }
    async fn check_access(&self, sid: &str, jti: &str) -> Result<AccessStatus, StoreError> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("the test took the store down"));
        }
        self.inner.check_access(sid, jti).await
    }
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        self.inner.revoke(revocation).await
    }
    async fn revoke_all(&self, subject_key: &str) -> Result<u32, StoreError> {
        self.inner.revoke_all(subject_key).await
    }
    async fn list_sessions(&self, subject_key: &str) -> Result<Vec<SessionInfo>, StoreError> {
        self.inner.list_sessions(subject_key).await
    }
}

/// A sub-router behind the adapter's require-user layer, its handlers reading the
/// application's claims typed: 401 with `WWW-Authenticate` without a user, the typed
/// claims with one, exactly one access check per request (the handler's `CurrentUser`
/// takes the layer's user), 401 for claims that do not fit the type, 503 with the store
/// down, and 401 once the session is logged out.
pub async fn layer_protected_sub_router(t: Target) {
    let backends = Backends::for_store(t.store).await;
    let counter = Arc::new(CheckCounter {
        inner: backends.blacklist.clone(),
        checks: AtomicUsize::new(0),
        down: AtomicBool::new(false),
    });
    let auth = OtpAuth::builder(test_config())
        .store(backends.store.clone())
        .blacklist(counter.clone())
        .mailer(backends.mailer.clone())
        .hooks(RolesHooks)
        .build()
        .unwrap();
    let s = TestServer::start_auth(t.adapter, auth, backends.mailbox.clone()).await;
    let get = |path: &str, token: Option<&str>| {
        let mut r = s.http.get(s.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    };

    let r = s.send(get("/app/me", None)).await;
    r.assert_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = s.send(get("/app/me", Some("garbage"))).await;
    r.assert_problem(401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.contains("error=\"invalid_token\"")),
        "{:?}",
        r.header("www-authenticate")
    );
    assert_eq!(
        counter.checks.load(Ordering::SeqCst),
        0,
        "no token, no store call"
    );

    let user = s.login("admin-layer@example.com").await;
    let member = s.login("layer@example.com").await;
    let before = counter.checks.load(Ordering::SeqCst);
    let r = s.send(get("/app/me", Some(&user.access))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["email"], "admin-layer@example.com");
    assert_eq!(v["roles"], json!(["member", "admin"]));
    assert_eq!(v["tier"], 3);
    assert_eq!(
        counter.checks.load(Ordering::SeqCst) - before,
        1,
        "the layer checks the token once and the handler's CurrentUser takes its user"
    );
    let r = s.send(get("/app/me", Some(&member.access))).await;
    assert_eq!(r.json()["roles"], json!(["member"]));

    // Claims the type does not fit: a 401 like a bad token, not a panic or a 500.
    let r = s.send(get("/app/unfit", Some(&user.access))).await;
    r.assert_problem(401);

    // The store down: the layer fails closed, 503.
    counter.down.store(true, Ordering::SeqCst);
    let r = s.send(get("/app/me", Some(&user.access))).await;
    r.assert_problem(503);
    counter.down.store(false, Ordering::SeqCst);
    assert_eq!(s.send(get("/app/me", Some(&user.access))).await.status, 200);

    // Logged out: the layer refuses the revoked token.
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout"))
                .bearer_auth(&user.access)
                .header("cookie", format!("refresh_token={}", user.refresh)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    s.send(get("/app/me", Some(&user.access)))
        .await
        .assert_problem(401);
    assert_eq!(
        s.send(get("/app/me", Some(&member.access))).await.status,
        200
    );
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

/// Hooks recording every audit event; `allow` refuses clients whose user agent says
/// `blocked-bot` (a policy on the request's client); the audit hook fails for addresses
/// starting with `fail` and panics for `panic`, after recording.
#[derive(Debug, Default)]
pub struct RecordingHooks {
    events: std::sync::Mutex<Vec<AuditEvent>>,
}

impl RecordingHooks {
    fn kinds(&self) -> Vec<AuditKind> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.kind.clone())
            .collect()
    }

    fn last(&self) -> AuditEvent {
        self.events
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("an event")
    }

    fn clear(&self) {
        self.events.lock().unwrap().clear();
    }
}

#[async_trait]
impl Hooks for RecordingHooks {
    async fn allow(&self, _email: &Email, client: &ClientInfo) -> Result<bool, BoxError> {
        Ok(!client
            .user_agent
            .as_deref()
            .is_some_and(|ua| ua.contains("blocked-bot")))
    }

    // The subject is the address here, so it says nothing of who owns an address: any
    // change is taken but to a `taken…` address.
    async fn change_email(
        &self,
        _subject: &str,
        _old: &Email,
        new: &Email,
    ) -> Result<otp_core::hooks::EmailChange, BoxError> {
        Ok(if new.as_str().starts_with("taken") {
            otp_core::hooks::EmailChange::Refused
        } else {
            otp_core::hooks::EmailChange::Changed
        })
    }

    fn on_event(&self, event: &AuditEvent) -> Result<(), BoxError> {
        self.events.lock().unwrap().push(event.clone());
        let address = event
            .address
            .as_ref()
            .map(|a| a.email().as_str().to_owned());
        match address.as_deref() {
            Some(a) if a.starts_with("fail") => Err("the audit sink is down".into()),
            Some(a) if a.starts_with("panic") => panic!("an audit hook that panics"),
            _ => Ok(()),
        }
    }
}

/// A code that is not `code` (same length).
fn other_code(code: &str) -> String {
    if code.starts_with('0') {
        "1".repeat(code.len())
    } else {
        "0".repeat(code.len())
    }
}

/// Every audit event through the real router: code sent (with a pseudonym, the address on
/// request, the client's IP and user agent), code refused, verification failed, lockout,
/// logins by code and by link, a step-up, an email change (refused, then done), refresh,
/// the reuse grant, reuse detected, logout,
/// logout-all, logout-others, a session ended, sessions evicted, and the application's own
/// calls (no client). `allow` sees the request's client. A failing or panicking audit hook
/// does not fail the login.
pub async fn audit_events(t: Target) {
    let backends = Backends::for_store(t.store).await;
    let hooks = Arc::new(RecordingHooks::default());
    let mut config = test_config();
    config.sessions.max_per_user = 3;
    config.http.public_url = Some("http://app.example".into());
    let auth = OtpAuth::builder(config)
        .store(backends.store.clone())
        .blacklist(backends.blacklist.clone())
        .mailer(backends.mailer.clone())
        .hooks(hooks.clone())
        .build()
        .unwrap();
    let s = TestServer::start_auth(t.adapter, auth, backends.mailbox.clone()).await;
    const UA: &str = "audit-test/1";
    let post = |path: &str, body: serde_json::Value| {
        s.http
            .post(s.url(path))
            .header("user-agent", UA)
            .json(&body)
    };
    let sid_of = |access: &str| codec().verify(access, TokenType::Access).unwrap().sid;

    // A code sent: the address as a pseudonym, and itself on request; the client.
    let r = s
        .send(post(
            "/auth/request-otp",
            json!({ "email": "Ada@Example.com" }),
        ))
        .await;
    assert_eq!(r.status, 200);
    let e = hooks.last();
    assert_eq!(e.kind, AuditKind::CodeSent);
    let address = e.address.clone().expect("the address of a pre-login event");
    assert_eq!(address.email().as_str(), "ada@example.com");
    assert!(
        !address.pseudonym().contains("ada"),
        "{}",
        address.pseudonym()
    );
    assert!(
        !format!("{e:?}").contains("ada@example.com"),
        "Debug masks: {e:?}"
    );
    assert_eq!(e.ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(e.user_agent.as_deref(), Some(UA));
    assert!(e.subject.is_none() && e.session_id.is_none());
    let since = e.at.elapsed().unwrap();
    assert!(since < std::time::Duration::from_secs(60), "{since:?}");

    // A wrong code, then the right one.
    let code = s.mailer.last_code("ada@example.com").unwrap();
    s.send(post(
        "/auth/verify-otp",
        json!({ "email": "ada@example.com", "otp": other_code(&code) }),
    ))
    .await
    .assert_problem(400);
    assert_eq!(
        hooks.last().kind,
        AuditKind::VerificationFailed {
            method: Verification::Code,
            reason: Failure::Mismatch,
            attempts_left: Some(4)
        }
    );
    assert_eq!(
        hooks.last().address.unwrap().pseudonym(),
        address.pseudonym()
    );
    let r = s
        .send(post(
            "/auth/verify-otp",
            json!({ "email": "ada@example.com", "otp": code }),
        ))
        .await;
    assert_eq!(r.status, 200);
    let access = r.json()["access_token"].as_str().unwrap().to_owned();
    let a = r.refresh_cookie().unwrap();
    let e = hooks.last();
    assert_eq!(
        e.kind,
        AuditKind::LoginSucceeded {
            method: LoginMethod::Code
        }
    );
    assert_eq!(e.subject.as_deref(), Some("ada@example.com"));
    assert_eq!(e.session_id, Some(sid_of(&access)));
    assert!(e.address.is_none());

    // A step-up: its code sent (the pseudonym), a wrong one, then the re-authentication.
    let r = s
        .send(post("/auth/reauthenticate", json!({})).bearer_auth(&access))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = hooks.last();
    assert_eq!(e.kind, AuditKind::CodeSent);
    assert_eq!(e.address.unwrap().pseudonym(), address.pseudonym());
    let code = s.mailer.last_code("ada@example.com").unwrap();
    s.send(
        post(
            "/auth/verify-reauthentication",
            json!({ "otp": other_code(&code) }),
        )
        .bearer_auth(&access),
    )
    .await
    .assert_problem(400);
    assert_eq!(
        hooks.last().kind,
        AuditKind::VerificationFailed {
            method: Verification::Reauthentication,
            reason: Failure::Mismatch,
            attempts_left: Some(4)
        }
    );
    let r = s
        .send(post("/auth/verify-reauthentication", json!({ "otp": code })).bearer_auth(&access))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = hooks.last();
    assert_eq!(e.kind, AuditKind::Reauthenticated);
    assert_eq!(e.subject.as_deref(), Some("ada@example.com"));
    assert_eq!(e.session_id, Some(sid_of(&access)));
    assert_eq!(e.user_agent.as_deref(), Some(UA));

    // An email change: its code sent to the new address, a refusal, then the change, which
    // ends the user's other session.
    let zoe = login_as(&s, "zoe@example.com", UA).await;
    let zoe_other = login_as(&s, "zoe@example.com", UA).await;
    let change =
        |to: &str| post("/auth/change-email", json!({ "new_email": to })).bearer_auth(&zoe.access);
    let verify = |to: &str, otp: &str| {
        post(
            "/auth/verify-email-change",
            json!({ "new_email": to, "otp": otp }),
        )
        .bearer_auth(&zoe.access)
    };
    assert_eq!(s.send(change("taken@example.com")).await.status, 200);
    let e = hooks.last();
    assert_eq!(e.kind, AuditKind::CodeSent);
    assert_eq!(e.address.unwrap().email().as_str(), "taken@example.com");
    let code = s.mailer.last_code("taken@example.com").unwrap();
    s.send(verify("taken@example.com", &code))
        .await
        .assert_problem(403);
    let e = hooks.last();
    assert_eq!(
        e.kind,
        AuditKind::VerificationFailed {
            method: Verification::EmailChange,
            reason: Failure::Refused,
            attempts_left: None
        }
    );
    assert_eq!(e.address.unwrap().email().as_str(), "taken@example.com");
    assert_eq!(s.send(change("zoe.new@example.com")).await.status, 200);
    let code = s.mailer.last_code("zoe.new@example.com").unwrap();
    hooks.clear();
    let r = s.send(verify("zoe.new@example.com", &code)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        hooks.kinds(),
        [
            AuditKind::NoticeSent,
            AuditKind::EmailChanged,
            AuditKind::LoggedOutAll { sessions: 2 }
        ]
    );
    let events = hooks.events.lock().unwrap().clone();
    let (e, ended) = (events[1].clone(), events[2].clone());
    assert_eq!(ended.session_id, Some(sid_of(&zoe.access)));
    assert_eq!(e.subject.as_deref(), Some("zoe@example.com"));
    let moved = r.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(e.session_id, Some(sid_of(&moved)), "the session it opened");
    assert_eq!(e.address.unwrap().email().as_str(), "zoe.new@example.com");
    assert_eq!(e.user_agent.as_deref(), Some(UA));
    s.protected(Some(&zoe_other.access))
        .await
        .assert_problem(401);

    // Refresh, the reuse grant, reuse detected.
    let refresh = |token: &str| {
        s.http
            .post(s.url("/auth/refresh"))
            .header("user-agent", UA)
            .header("cookie", format!("refresh_token={token}"))
    };
    let r = s.send(refresh(&a)).await;
    assert_eq!(r.status, 200);
    let b = r.refresh_cookie().unwrap();
    assert_eq!(hooks.last().kind, AuditKind::Refreshed);
    assert_eq!(hooks.last().session_id, Some(sid_of(&access)));
    assert_eq!(s.send(refresh(&a)).await.status, 200);
    assert_eq!(hooks.last().kind, AuditKind::ReuseGranted);
    assert_eq!(s.send(refresh(&b)).await.status, 200);
    assert_eq!(hooks.last().kind, AuditKind::Refreshed);
    s.send(refresh(&a)).await.assert_problem(401);
    let e = hooks.last();
    assert_eq!(e.kind, AuditKind::ReuseDetected);
    assert_eq!(e.subject.as_deref(), Some("ada@example.com"));
    assert_eq!(e.session_id, Some(sid_of(&access)));

    // Logout, one session ended, logout-others, logout-all, eviction.
    let one = login_as(&s, "bob@example.com", UA).await;
    hooks.clear();
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout"))
                .header("user-agent", UA)
                .bearer_auth(&one.access)
                .header("cookie", format!("refresh_token={}", one.refresh)),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(hooks.kinds(), [AuditKind::LoggedOut]);
    assert_eq!(hooks.last().session_id, Some(sid_of(&one.access)));
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(login_as(&s, "bob@example.com", UA).await);
    }
    hooks.clear();
    let mine = &sessions[0];
    let other = sid_of(&sessions[1].access);
    let r = s
        .send(
            s.http
                .delete(s.url(&format!("/auth/sessions/{other}")))
                .bearer_auth(&mine.access),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(hooks.kinds(), [AuditKind::SessionEnded]);
    assert_eq!(hooks.last().session_id, Some(other));
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout-others"))
                .bearer_auth(&mine.access),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        hooks.last().kind,
        AuditKind::LoggedOutOthers { sessions: 1 }
    );
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout-all"))
                .bearer_auth(&mine.access),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(hooks.last().kind, AuditKind::LoggedOutAll { sessions: 1 });
    assert_eq!(hooks.last().subject.as_deref(), Some("bob@example.com"));
    for _ in 0..3 {
        login_as(&s, "carol@example.com", UA).await;
    }
    hooks.clear();
    let newest = login_as(&s, "carol@example.com", UA).await;
    let kinds = hooks.kinds();
    assert!(
        kinds.contains(&AuditKind::SessionsEvicted { count: 1 }),
        "a fourth session past the cap of 3: {kinds:?}"
    );

    // The application's own calls: no client.
    hooks.clear();
    assert!(
        s.auth
            .admin()
            .end_session(&sid_of(&newest.access))
            .await
            .unwrap()
    );
    let e = hooks.last();
    assert_eq!(e.kind, AuditKind::SessionEnded);
    assert!(e.ip.is_none() && e.user_agent.is_none());
    assert_eq!(
        s.auth
            .admin()
            .end_all_sessions_of("carol@example.com")
            .await
            .unwrap(),
        2
    );
    assert_eq!(hooks.last().kind, AuditKind::LoggedOutAll { sessions: 2 });

    // A sign-in link, and a bad one.
    s.send(post(
        "/auth/request-otp",
        json!({ "email": "dan@example.com" }),
    ))
    .await;
    let link = s
        .mailer
        .last_link("dan@example.com")
        .expect("a link in the mail");
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let r = s
        .send(post("/auth/verify-link", json!({ "token": token })))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        hooks.last().kind,
        AuditKind::LoginSucceeded {
            method: LoginMethod::Link
        }
    );
    s.send(post("/auth/verify-link", json!({ "token": "garbage" })))
        .await
        .assert_problem(400);
    assert_eq!(
        hooks.last().kind,
        AuditKind::VerificationFailed {
            method: Verification::Link,
            reason: Failure::InvalidLink,
            attempts_left: None
        }
    );

    // Lockout, then a code request refused by it.
    s.send(post(
        "/auth/request-otp",
        json!({ "email": "eve@example.com" }),
    ))
    .await;
    let wrong = other_code(&s.mailer.last_code("eve@example.com").unwrap());
    for _ in 0..s.auth.config().limits.max_verify_attempts {
        s.send(post(
            "/auth/verify-otp",
            json!({ "email": "eve@example.com", "otp": wrong }),
        ))
        .await;
    }
    assert!(
        hooks.kinds().contains(&AuditKind::LockedOut),
        "{:?}",
        hooks.kinds()
    );
    s.send(post(
        "/auth/request-otp",
        json!({ "email": "eve@example.com" }),
    ))
    .await
    .assert_problem(429);
    assert_eq!(
        hooks.last().kind,
        AuditKind::CodeRefused {
            limit: Limit::Lockout
        }
    );

    // `allow` sees the client: a refused client gets the same 200 and no mail; the application hears of it.
    hooks.clear();
    let mails = s.mailer.count();
    let r = s
        .send(
            s.http
                .post(s.url("/auth/request-otp"))
                .header("user-agent", "blocked-bot/2")
                .json(&json!({ "email": "frank@example.com" })),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(s.mailer.count(), mails, "no mail for a refused client");
    assert_eq!(
        hooks.kinds(),
        [AuditKind::CodeWithheld {
            reason: otp_core::event::Withheld::Refused
        }],
        "the application hears of the withheld code"
    );

    // A failing and a panicking audit hook: the logins go through.
    login_as(&s, "fail@example.com", UA).await;
    login_as(&s, "panic@example.com", UA).await;
}

#[derive(Debug)]
struct OnlyKnown;

#[async_trait]
impl Hooks for OnlyKnown {
    async fn allow(&self, email: &Email, _client: &ClientInfo) -> Result<bool, BoxError> {
        Ok(email.as_str() == "known@example.com")
    }
}

/// Known and unknown addresses get the same status, headers and body.
pub async fn no_account_enumeration(t: Target) {
    // The target's own store and mailer (SMTP on the Redis targets).
    let backends = crate::Backends::for_store(t.store).await;
    let auth = backends
        .stores(OtpAuth::builder(test_config()))
        .mailer(backends.mailer)
        .hooks(OnlyKnown)
        .build()
        .unwrap();
    let s = TestServer::start_auth(t.adapter, auth, backends.mailbox).await;
    let known = s.request_otp("known@example.com").await;
    let unknown = s.request_otp("stranger@example.com").await;
    assert_eq!(known.status, unknown.status);
    assert_eq!(known.body, unknown.body);
    let names = |r: &crate::Reply| {
        let mut v: Vec<String> = r
            .headers
            .keys()
            .map(|k| k.to_string())
            .filter(|k| k != "date")
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&known), names(&unknown));
    assert_eq!(s.mailer.count(), 1);
}

/// Development magic code: no mail, all zeros accepted.
pub async fn magic_code(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.codes.disable_local_auth = true;
        // The Redis targets mail through SMTP: a mailer that delivers, next to which the
        // magic code must be narrowed to test addresses.
        c.codes.magic_emails = vec!["*@example.com".into()];
        c
    })
    .await;
    assert_eq!(s.request_otp("dev@example.com").await.status, 200);
    assert_eq!(s.mailer.count(), 0);
    let r = s.verify_otp("dev@example.com", "000000").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The refresh token's `jti` (unverified: the test's own tokens).
fn refresh_jti(token: &str) -> String {
    codec().verify(token, TokenType::Refresh).unwrap().jti
}

/// The access token of a token answer, verified, with its claims.
fn access_claims(r: &crate::Reply) -> (String, Claims) {
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    let claims = codec().verify(&token, TokenType::Access).unwrap();
    (token, claims)
}

/// `POST path` with a bearer token and an optional JSON body.
async fn bearer_post(
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

/// `GET path` with a bearer token.
async fn bearer_get(s: &TestServer, path: &str, token: &str) -> crate::Reply {
    s.send(s.http.get(s.url(path)).bearer_auth(token)).await
}

/// Whether `text` holds a word that looks like a code (six or more digits).
fn has_code(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .any(|w| w.len() >= 6)
}

/// Email change: `/change-email` (bearer, a recent authentication) mails a code to the new
/// address; `/verify-email-change` trades it for new tokens with the new `email` and the
/// same `sub`, ends every token of the old address (every session of the user), and mails
/// the old address a notice without a code. The new address then logs in as the same user and the
/// old one as a new user; a taken address is refused after its code (403); codes of the
/// other purposes never pass, nor an email-change code for a login. Through the examples'
/// user directory ([`example_common::ExampleHooks`]).
pub async fn email_change(t: Target) {
    let backends = Backends::for_store(t.store).await;
    let hooks = example_common::ExampleHooks::new::<&str>([]);
    let mut config = test_config();
    config.sessions.email_change_max_age_seconds = crate::RECENT_SECS;
    let auth = backends
        .stores(OtpAuth::builder(config))
        .mailer(backends.mailer)
        .hooks(hooks.clone())
        .build()
        .unwrap();
    let s = TestServer::start_auth(t.adapter, auth, backends.mailbox.clone()).await;
    let (old, new, taken) = (
        "mover@example.com",
        "moved@example.org",
        "taken@example.com",
    );
    let owner = s.login(taken).await;
    let owner_id = hooks.user_of(taken).unwrap();
    assert!(owner_id.starts_with("user_"), "{owner_id}");

    assert_eq!(s.request_otp(old).await.status, 200);
    let code = s.mailer.last_code(old).unwrap();
    let login = s.verify_otp(old, &code).await;
    let (earlier, claims) = access_claims(&login);
    // A refresh: the change is made with the newer access token; both must end with it.
    let r = s.refresh(login.refresh_cookie().as_deref()).await;
    let (access, _) = access_claims(&r);
    let cookie = r.refresh_cookie().unwrap();
    let subject = claims.sub.clone();
    assert_eq!(hooks.user_of(old).as_deref(), Some(subject.as_str()));
    // Another device of the same user: the change ends it.
    let second = s.login(old).await;

    // No or a bad token: 401 at both endpoints, nothing mailed.
    let mails = s.mailer.count();
    let change = |e: &str| Some(json!({ "new_email": e }));
    let verify = |e: &str, otp: &str| Some(json!({ "new_email": e, "otp": otp }));
    for (path, body) in [
        ("/auth/change-email", change(new)),
        ("/auth/verify-email-change", verify(new, "123456")),
    ] {
        let r = bearer_post(&s, path, None, body.clone()).await;
        r.assert_problem(401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        bearer_post(&s, path, Some("not.a.token"), body)
            .await
            .assert_problem(401);
    }
    // Bad input: 422 (a malformed address, the current one, a malformed code), 415.
    for body in [change("not-an-address"), change("Mover@Example.com")] {
        bearer_post(&s, "/auth/change-email", Some(&access), body)
            .await
            .assert_problem(422);
    }
    bearer_post(&s, "/auth/change-email", Some(&access), None)
        .await
        .assert_problem(415);
    bearer_post(
        &s,
        "/auth/verify-email-change",
        Some(&access),
        verify(new, "12ab56"),
    )
    .await
    .assert_problem(422);
    assert_eq!(s.mailer.count(), mails);

    // A login code of the new address never passes for the change.
    assert_eq!(s.request_otp(new).await.status, 200);
    let login_code = s.mailer.last_code(new).unwrap();
    bearer_post(
        &s,
        "/auth/verify-email-change",
        Some(&access),
        verify(new, &login_code),
    )
    .await
    .assert_problem(400);

    // The code goes to the new address (any spelling of it)...
    let r = bearer_post(
        &s,
        "/auth/change-email",
        Some(&access),
        change("Moved@Example.ORG"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"message": "OTP sent successfully"}));
    let change_code = s.mailer.last_code(new).unwrap();
    let (subject_line, text, _) = s.mailer.last_mail(new).unwrap();
    assert!(subject_line.contains("Confirm your new"), "{subject_line}");
    assert!(
        text.contains("move your") && !text.contains("http"),
        "{text}"
    );
    // ... and never passes for a login there, nor for another user's change.
    s.verify_otp(new, &change_code).await.assert_problem(400);
    bearer_post(
        &s,
        "/auth/verify-email-change",
        Some(&owner.access),
        verify(new, &change_code),
    )
    .await
    .assert_problem(400);

    let before = now_secs();
    let r = bearer_post(
        &s,
        "/auth/verify-email-change",
        Some(&access),
        verify(new, &change_code),
    )
    .await;
    assert_eq!(r.json()["message"], "Email address changed successfully!");
    let new_cookie = r.refresh_cookie().expect("a new refresh cookie");
    let (moved, moved_claims) = access_claims(&r);
    assert_eq!(moved_claims.email, new);
    assert_eq!(moved_claims.sub, subject, "the same user");
    assert_ne!(
        moved_claims.sid, claims.sid,
        "a session in place of the old address's"
    );
    assert!(moved_claims.auth_time.unwrap() >= before);
    assert_eq!(moved_claims.amr, Some(vec!["otp".to_owned()]));
    assert_eq!(hooks.user_of(new).as_deref(), Some(subject.as_str()));
    assert_eq!(hooks.user_of(old), None);
    // Spent: the same code again is a 400.
    bearer_post(
        &s,
        "/auth/verify-email-change",
        Some(&moved),
        verify(new, &change_code),
    )
    .await
    .assert_problem(400);

    // The old address was told (over SMTP on the Redis targets), without a code or link.
    let (subject_line, text, html) = s.mailer.last_mail(old).expect("a notice");
    assert!(
        subject_line.contains("address was changed"),
        "{subject_line}"
    );
    assert!(
        text.contains(old) && text.contains("mo\u{2022}\u{2022}\u{2022}d@example.org"),
        "{text}"
    );
    assert!(
        !text.contains(new) && !html.contains(new),
        "the new address is masked"
    );
    assert!(!has_code(&text) && !has_code(&html), "{text}");
    assert!(
        !text.contains("http") && !html.contains("href"),
        "{text} {html}"
    );

    // The new tokens carry the new address; every token of the old address is done: the
    // presented access token, an earlier one of its session, its refresh token (at once,
    // without ending the new session), and the other device's.
    let r = s.protected(Some(&moved)).await;
    assert_eq!(r.json()["message"], format!("Hello, {new}!"));
    for token in [&access, &earlier, &second.access] {
        s.protected(Some(token)).await.assert_problem(401);
    }
    for refresh in [&cookie, &second.refresh] {
        s.refresh(Some(refresh)).await.assert_problem(401);
    }
    let r = s.refresh(Some(&new_cookie)).await;
    let (_, refreshed) = access_claims(&r);
    assert_eq!(
        (refreshed.email.as_str(), refreshed.sub.as_str()),
        (new, subject.as_str())
    );
    assert_eq!(refreshed.sid, moved_claims.sid);
    let latest_cookie = r.refresh_cookie().unwrap();

    // The new address logs in as the same user, the old one as someone new.
    assert_eq!(s.request_otp(new).await.status, 200);
    let code = s.mailer.last_code(new).unwrap();
    let (again, again_claims) = access_claims(&s.verify_otp(new, &code).await);
    assert_eq!(again_claims.sub, subject);
    assert_ne!(again_claims.sid, moved_claims.sid);
    assert_eq!(s.request_otp(old).await.status, 200);
    let code = s.mailer.last_code(old).unwrap();
    let (_, stranger) = access_claims(&s.verify_otp(old, &code).await);
    assert_ne!(stranger.sub, subject);

    // A re-authentication code never passes for an email change (the same address key,
    // another purpose).
    let r = bearer_post(&s, "/auth/reauthenticate", Some(&again), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let reauth_code = s.mailer.last_code(new).unwrap();
    bearer_post(
        &s,
        "/auth/verify-email-change",
        Some(&again),
        verify(new, &reauth_code),
    )
    .await
    .assert_problem(400);

    // A taken address: the code goes out as to any address, and the verification is
    // refused with one 403; nothing changes.
    let r = bearer_post(&s, "/auth/change-email", Some(&again), change(taken)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let taken_code = s.mailer.last_code(taken).unwrap();
    let mails = s.mailer.count();
    let r = bearer_post(
        &s,
        "/auth/verify-email-change",
        Some(&again),
        verify(taken, &taken_code),
    )
    .await;
    let p = r.assert_problem(403);
    assert_eq!(p["detail"], "This address cannot be used for this account.");
    assert_eq!(hooks.user_of(taken).as_deref(), Some(owner_id.as_str()));
    assert_eq!(hooks.user_of(new).as_deref(), Some(subject.as_str()));
    assert_eq!(s.mailer.count(), mails, "no notice for a refused change");
    assert_eq!(s.protected(Some(&again)).await.status, 200);
    assert_eq!(s.protected(Some(&owner.access)).await.status, 200);

    // A sign-in older than OTP_AUTH_EMAIL_CHANGE_MAX_AGE_SECONDS gets RFC 9470's
    // challenge; nothing is mailed.
    tokio::time::sleep(Duration::from_millis(crate::RECENT_SECS * 1000 + 1100)).await;
    let r = bearer_post(
        &s,
        "/auth/change-email",
        Some(&again),
        change("late@example.net"),
    )
    .await;
    r.assert_problem(401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            format!(
                "Bearer error=\"insufficient_user_authentication\", error_description=\"A more recent authentication is required\", max_age={}",
                crate::RECENT_SECS
            )
            .as_str()
        )
    );
    assert!(s.mailer.last_code("late@example.net").is_none());

    // The session the change opened lives on.
    assert_eq!(s.refresh(Some(&latest_cookie)).await.status, 200);
}

/// Two email changes of one user at once, to two addresses, with the same token: one
/// moves the account, the other is refused (its `old` is no longer the user's: 403) or
/// finds the session ended (401); the user ends with exactly one address.
pub async fn concurrent_email_changes(t: Target) {
    let backends = Backends::for_store(t.store).await;
    let hooks = example_common::ExampleHooks::new::<&str>([]);
    let auth = backends
        .stores(OtpAuth::builder(test_config()))
        .mailer(backends.mailer)
        .hooks(hooks.clone())
        .build()
        .unwrap();
    let s = TestServer::start_auth(t.adapter, auth, backends.mailbox.clone()).await;
    let user = s.login("racer@example.com").await;
    let subject = hooks.user_of("racer@example.com").unwrap();
    let targets = ["racer.a@example.com", "racer.b@example.com"];
    let mut codes = Vec::new();
    for to in targets {
        let body = Some(json!({ "new_email": to }));
        let r = bearer_post(&s, "/auth/change-email", Some(&user.access), body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        codes.push(s.mailer.last_code(to).unwrap());
    }
    let verify = |i: usize| {
        let body = Some(json!({ "new_email": targets[i], "otp": codes[i] }));
        bearer_post(&s, "/auth/verify-email-change", Some(&user.access), body)
    };
    let (a, b) = tokio::join!(verify(0), verify(1));
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert!(
        statuses == [200, 401] || statuses == [200, 403],
        "{statuses:?}: {} / {}",
        a.text(),
        b.text()
    );
    let owners: Vec<Option<String>> = targets.iter().map(|t| hooks.user_of(t)).collect();
    let moved = usize::from(a.status != 200);
    assert_eq!(owners[moved].as_deref(), Some(subject.as_str()));
    assert_eq!(owners[1 - moved], None, "one address only: {owners:?}");
    assert_eq!(hooks.user_of("racer@example.com"), None);
}

/// The default hooks offer no email change: the subject is the address. The code is
/// checked first, then refused with 403 and a clear sentence.
pub async fn email_change_needs_the_hook(t: Target) {
    let s = start(t).await;
    let email = "plain@example.com";
    let user = s.login(email).await;
    let body = json!({ "new_email": "other@example.com" });
    let r = bearer_post(&s, "/auth/change-email", Some(&user.access), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let code = s.mailer.last_code("other@example.com").unwrap();
    let body = json!({ "new_email": "other@example.com", "otp": code });
    let r = bearer_post(
        &s,
        "/auth/verify-email-change",
        Some(&user.access),
        Some(body),
    )
    .await;
    let p = r.assert_problem(403);
    assert_eq!(
        p["detail"],
        "Changing the email address is not enabled on this service."
    );
    assert!(s.mailer.last_mail(email).unwrap().0.contains("login code"));
    assert_eq!(s.protected(Some(&user.access)).await.status, 200);
}

/// Step-up (RFC 9470): every access token carries `auth_time` and `amr`, a refresh keeps
/// them; the guards (extractor and layer) refuse an old `auth_time` with the
/// `insufficient_user_authentication` challenge; `/reauthenticate` mails a code that
/// `/verify-reauthentication` trades for a new access token on the same session with
/// `auth_time` now, which later refreshes keep; a login code never passes for a
/// re-authentication nor the other way round; and both purposes share one guessing budget.
pub async fn step_up_reauthentication(t: Target) {
    let s = start(t).await;
    let email = "stepup@example.com";
    assert_eq!(s.request_otp(email).await.status, 200);
    let before = now_secs();
    let code = s.mailer.last_code(email).unwrap();
    let login = s.verify_otp(email, &code).await;
    let (access, claims) = access_claims(&login);
    let login_time = claims.auth_time.expect("auth_time at login");
    assert!(
        login_time >= before && login_time <= now_secs(),
        "{login_time}"
    );
    assert_eq!(claims.amr, Some(vec!["otp".to_owned()]));
    let mut cookie = login.refresh_cookie().unwrap();
    // Fresh: both guards let it through.
    let r = bearer_get(&s, "/recent", &access).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["auth_time"], login_time);
    assert_eq!(r.json()["amr"], json!(["otp"]));
    assert_eq!(bearer_get(&s, "/app-recent/me", &access).await.status, 200);

    // A refresh keeps the login's authentication.
    let r = s.refresh(Some(&cookie)).await;
    cookie = r.refresh_cookie().unwrap();
    let (_, refreshed) = access_claims(&r);
    assert_eq!(refreshed.auth_time, Some(login_time));
    assert_eq!(refreshed.amr, claims.amr);
    assert_eq!(refreshed.sid, claims.sid);

    // Too old now: 401 with RFC 9470's challenge, from the extractor and from the layer.
    tokio::time::sleep(Duration::from_millis(crate::RECENT_SECS * 1000 + 1100)).await;
    let challenge = format!(
        "Bearer error=\"insufficient_user_authentication\", error_description=\"A more recent authentication is required\", max_age={}",
        crate::RECENT_SECS
    );
    for path in ["/recent", "/app-recent/me"] {
        let r = bearer_get(&s, path, &access).await;
        let p = r.assert_problem(401);
        assert_eq!(
            r.header("www-authenticate"),
            Some(challenge.as_str()),
            "{path}"
        );
        assert!(p["detail"].as_str().unwrap().contains("more recent"), "{p}");
    }
    // The plain extractor does not care.
    assert_eq!(s.protected(Some(&access)).await.status, 200);

    // No or a bad token: 401 at both endpoints, and nothing mailed.
    let mails = s.mailer.count();
    for path in ["/auth/reauthenticate", "/auth/verify-reauthentication"] {
        let body = Some(json!({ "otp": "123456" }));
        let r = bearer_post(&s, path, None, body.clone()).await;
        r.assert_problem(401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        bearer_post(&s, path, Some("not.a.token"), body)
            .await
            .assert_problem(401);
    }
    assert_eq!(s.mailer.count(), mails);

    // A login code never passes for a re-authentication.
    assert_eq!(s.request_otp(email).await.status, 200);
    let login_code = s.mailer.last_code(email).unwrap();
    let body = |otp: &str| Some(json!({ "otp": otp }));
    bearer_post(
        &s,
        "/auth/verify-reauthentication",
        Some(&access),
        body(&login_code),
    )
    .await
    .assert_problem(400);
    // A malformed code is a 422, not counted.
    bearer_post(
        &s,
        "/auth/verify-reauthentication",
        Some(&access),
        body("12ab56"),
    )
    .await
    .assert_problem(422);
    bearer_post(&s, "/auth/verify-reauthentication", Some(&access), None)
        .await
        .assert_problem(415);

    // /reauthenticate mails the signed-in user's address a fresh code.
    let r = bearer_post(&s, "/auth/reauthenticate", Some(&access), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"message": "OTP sent successfully"}));
    assert_eq!(s.mailer.count(), mails + 2);
    let reauth_code = s.mailer.last_code(email).unwrap();
    // ... which never passes for a login (and the login code it replaced is gone).
    s.verify_otp(email, &reauth_code).await.assert_problem(400);
    s.verify_otp(email, &login_code).await.assert_problem(400);
    let r = bearer_post(
        &s,
        "/auth/verify-reauthentication",
        Some(&access),
        body(&reauth_code),
    )
    .await;
    assert_eq!(r.json()["message"], "OTP verified successfully!");
    assert_eq!(r.json()["token_type"], "bearer");
    assert!(r.set_cookies().is_empty(), "the refresh token is unchanged");
    let (stepped, stepped_claims) = access_claims(&r);
    let reauth_time = stepped_claims.auth_time.unwrap();
    assert!(
        reauth_time > login_time + crate::RECENT_SECS,
        "{reauth_time}"
    );
    assert_eq!(stepped_claims.sid, claims.sid, "the same session");
    assert_eq!(stepped_claims.sub, claims.sub);
    assert_eq!(stepped_claims.amr, Some(vec!["otp".to_owned()]));
    for path in ["/recent", "/app-recent/me"] {
        let r = bearer_get(&s, path, &stepped).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json()["auth_time"], reauth_time);
    }
    // Spent: the same code again is a 400.
    bearer_post(
        &s,
        "/auth/verify-reauthentication",
        Some(&access),
        body(&reauth_code),
    )
    .await
    .assert_problem(400);

    // The session keeps the new authentication through refreshes (the cookie of before).
    let r = s.refresh(Some(&cookie)).await;
    let (_, after) = access_claims(&r);
    assert_eq!(after.auth_time, Some(reauth_time));
    assert_eq!(after.sid, claims.sid);

    // One guessing budget for both purposes: wrong re-authentication codes lock the
    // address out for logins too.
    let r = bearer_post(&s, "/auth/reauthenticate", Some(&stepped), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let good = s.mailer.last_code(email).unwrap();
    let wrong = if good == "000000" { "111111" } else { "000000" };
    let mut statuses = Vec::new();
    // The spent code presented again above was the first failure (a code presented with
    // none pending counts like a wrong one): four more make five.
    for _ in 0..4 {
        statuses.push(
            bearer_post(
                &s,
                "/auth/verify-reauthentication",
                Some(&stepped),
                body(wrong),
            )
            .await
            .status,
        );
    }
    assert_eq!(statuses, [400, 400, 400, 400]);
    let r = bearer_post(
        &s,
        "/auth/verify-reauthentication",
        Some(&stepped),
        body(&good),
    )
    .await;
    r.assert_problem(429);
    assert!(r.header("retry-after").is_some());
    s.request_otp(email).await.assert_problem(429);
    bearer_post(&s, "/auth/reauthenticate", Some(&stepped), None)
        .await
        .assert_problem(429);

    // A logged-out session cannot re-authenticate.
    let other = s.login("stepup-other@example.com").await;
    let r = bearer_post(&s, "/auth/reauthenticate", Some(&other.access), None).await;
    assert_eq!(r.status, 200);
    let code = s.mailer.last_code("stepup-other@example.com").unwrap();
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout"))
                .bearer_auth(&other.access),
        )
        .await;
    assert_eq!(r.status, 200);
    bearer_post(
        &s,
        "/auth/verify-reauthentication",
        Some(&other.access),
        body(&code),
    )
    .await
    .assert_problem(401);
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

/// A login whose session cannot be recorded answers 503 and keeps the code: the same code
/// then signs in (a second app on the same store, whose session store works).
pub async fn verify_never_strands_a_code(t: Target) {
    let working = crate::Backends::for_store(t.store).await;
    let broken = working.clone().with_blacklist(Arc::new(DownStore));
    let good = TestServer::start_with(t.adapter, test_config(), working).await;
    let bad = TestServer::start_with(t.adapter, test_config(), broken).await;
    let email = "strand@example.com";
    assert_eq!(good.request_otp(email).await.status, 200);
    let code = good.mailer.last_code(email).unwrap();
    bad.verify_otp(email, &code).await.assert_problem(503);
    let r = good.verify_otp(email, &code).await;
    assert_eq!(r.status, 200, "the code survived: {}", r.text());
    let access = r.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(good.protected(Some(&access)).await.status, 200);
}

/// Sessions per user are capped: the sixth login of an address with a cap of 3 leaves 3,
/// the least recently refreshed ones ended.
pub async fn session_cap(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.sessions.max_per_user = 3;
        c
    })
    .await;
    let before = s.metrics().await;
    let email = "many@example.com";
    let mut sessions = Vec::new();
    for _ in 0..5 {
        sessions.push(s.login(email).await);
    }
    let listed = s
        .send(
            s.http
                .get(s.url("/auth/sessions"))
                .bearer_auth(&sessions[4].access),
        )
        .await
        .json();
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 3, "{listed}");
    // The two oldest are gone; the three latest work.
    let mut live = 0;
    for session in &sessions {
        if s.protected(Some(&session.access)).await.status == 200 {
            live += 1;
        }
    }
    assert_eq!(live, 3);
    for session in &sessions[3..] {
        assert_eq!(s.protected(Some(&session.access)).await.status, 200);
    }
    assert_eq!(
        s.metric_since(&before, "otp_sessions_evicted_total", "")
            .await,
        2.0
    );
}

/// The hour and day caps and the resend cooldown answer 429 with `Retry-After`, and send
/// no mail.
pub async fn mail_caps(t: Target) {
    for (config, refused_after, min_wait, scope) in [
        (
            {
                let mut c = test_config();
                c.limits.per_hour = 3;
                c
            },
            3,
            3000,
            "address_hour",
        ),
        (
            {
                let mut c = test_config();
                c.limits.per_day = 2;
                c
            },
            2,
            80_000,
            "address_day",
        ),
        (
            {
                let mut c = test_config();
                c.limits.resend_cooldown_seconds = 30;
                c
            },
            1,
            20,
            "cooldown",
        ),
    ] {
        let s = TestServer::start(t, config).await;
        let before = s.metrics().await;
        let email = "bombed@example.com";
        for i in 0..refused_after {
            assert_eq!(s.request_otp(email).await.status, 200, "request {i}");
        }
        let sent = s.mailer.count();
        let r = s.request_otp(email).await;
        r.assert_problem(429);
        let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!(wait >= min_wait, "Retry-After {wait} < {min_wait}");
        assert_eq!(s.mailer.count(), sent, "a refused request sends no mail");
        let labels = format!("scope=\"{scope}\"");
        assert_eq!(
            s.metric_since(&before, "otp_rate_limited_total", &labels)
                .await,
            1.0,
            "{scope}"
        );
        // Other addresses are not affected.
        assert_eq!(s.request_otp("other@example.com").await.status, 200);
    }
}

/// Wrong codes count against the client IP across addresses: past the limit, 429 and no
/// comparison, even for the right code; another client goes on.
pub async fn ip_verification_failures(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.limits.verify_failures_per_ip_per_hour = 3;
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
        c
    })
    .await;
    let before = s.metrics().await;
    let verify = |client: &'static str, email: String, otp: String| {
        s.send(
            s.http
                .post(s.url("/auth/verify-otp"))
                .header("x-forwarded-for", client)
                .json(&json!({"email": email, "otp": otp})),
        )
    };
    let mut codes = Vec::new();
    for i in 0..4 {
        let email = format!("spread{i}@example.com");
        assert_eq!(s.request_otp(&email).await.status, 200);
        codes.push((email.clone(), s.mailer.last_code(&email).unwrap()));
    }
    for (email, code) in &codes[..3] {
        let wrong = if code == "000000" { "111111" } else { "000000" };
        verify("203.0.113.50", email.clone(), wrong.to_owned())
            .await
            .assert_problem(400);
    }
    let (email, code) = codes[3].clone();
    let r = verify("203.0.113.50", email.clone(), code.clone()).await;
    r.assert_problem(429);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait > 3000, "{wait}");
    let r = verify("203.0.113.51", email, code).await;
    assert_eq!(
        r.status,
        200,
        "nothing was compared for the limited IP: {}",
        r.text()
    );
    assert_eq!(
        s.metric_since(&before, "otp_rate_limited_total", "scope=\"ip_failures\"")
            .await,
        1.0
    );
}

/// The answers to wrong codes do not tell whether an address has a login in progress:
/// seven wrong codes get the same statuses and bodies for an idle address as for one with
/// a pending code (400 five times, then 429 for the lockout, with the same wait).
pub async fn wrong_codes_answer_alike_for_every_address(t: Target) {
    let s = start(t).await;
    s.request_otp("pending@example.com").await;
    let code = s.mailer.last_code("pending@example.com").unwrap();
    let mut answers = Vec::new();
    for email in ["idle@example.com", "pending@example.com"] {
        let mut seen = Vec::new();
        for w in wrong_codes(&code).take(7) {
            let r = s.verify_otp(email, &w).await;
            let retry = r.header("retry-after").map(|v| v.parse::<u64>().unwrap());
            seen.push((r.status, r.text(), retry.map(|v| v / 5)));
        }
        answers.push(seen);
    }
    let statuses: Vec<u16> = answers[0].iter().map(|a| a.0).collect();
    assert_eq!(
        statuses,
        [400, 400, 400, 400, 400, 429, 429],
        "idle address"
    );
    // Retry-After compared in 5 s steps: the two lockouts started a few ms apart.
    assert_eq!(
        answers[0], answers[1],
        "idle and pending addresses answer alike"
    );
    // The pending code died with the lockout, as it always has.
    s.verify_otp("pending@example.com", &code)
        .await
        .assert_problem(429);
}

/// A client past its IP budget of wrong codes gets one answer for every address: the same
/// 429, `Retry-After` and body whether or not the address has a pending code, at
/// `/verify-otp` and `/verify-reauthentication`; and nothing is counted for those
/// addresses (another client's right code still works).
pub async fn ip_limited_client_gets_one_answer(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.limits.verify_failures_per_ip_per_hour = 3;
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
        c
    })
    .await;
    let from = |client: &'static str, path: &'static str, body: Value, token: Option<String>| {
        let mut r = s
            .http
            .post(s.url(path))
            .header("x-forwarded-for", client)
            .json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        s.send(r)
    };
    let user = s.login("signed.in@example.com").await;
    s.request_otp("pending@example.com").await;
    let code = s.mailer.last_code("pending@example.com").unwrap();
    // Three wrong codes for addresses with no code spend the budget.
    for i in 0..3 {
        let r = from(
            "203.0.113.60",
            "/auth/verify-otp",
            json!({"email": format!("nobody{i}@example.com"), "otp": "123456"}),
            None,
        )
        .await;
        r.assert_problem(400);
    }
    let mut answers = Vec::new();
    for email in ["pending@example.com", "idle@example.com"] {
        for otp in [code.as_str(), "123456"] {
            let r = from(
                "203.0.113.60",
                "/auth/verify-otp",
                json!({"email": email, "otp": otp}),
                None,
            )
            .await;
            r.assert_problem(429);
            let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
            answers.push((r.text(), retry / 5));
        }
    }
    let r = from(
        "203.0.113.60",
        "/auth/verify-reauthentication",
        json!({"otp": "123456"}),
        Some(user.access.clone()),
    )
    .await;
    r.assert_problem(429);
    answers.push((
        r.text(),
        r.header("retry-after").unwrap().parse::<u64>().unwrap() / 5,
    ));
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "one answer for every address and endpoint: {answers:?}"
    );
    // Nothing was compared or counted: four wrong codes from other clients leave the
    // pending address one attempt, and its code still works.
    for (w, client) in wrong_codes(&code).zip(["203.0.113.61", "203.0.113.63", "203.0.113.64"]) {
        from(
            client,
            "/auth/verify-otp",
            json!({"email": "pending@example.com", "otp": w}),
            None,
        )
        .await
        .assert_problem(400);
    }
    let r = from(
        "203.0.113.65",
        "/auth/verify-otp",
        json!({"email": "pending@example.com", "otp": wrong_codes(&code).nth(3).unwrap()}),
        None,
    )
    .await;
    assert_eq!(
        r.json()["detail"],
        s.verify_otp("idle2@example.com", "123456").await.json()["detail"]
    );
    let r = from(
        "203.0.113.62",
        "/auth/verify-otp",
        json!({"email": "pending@example.com", "otp": code}),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Cross-site requests to state-changing endpoints are refused by default (`Sec-Fetch-Site`,
/// else `Origin` against `Host`); same-origin and non-browser requests pass; an allowed
/// origin passes.
pub async fn cross_site_requests(t: Target) {
    let s = start(t).await;
    let own = s.base.clone();
    let victim = s.login("csrf@example.com").await;
    let logout = |headers: &[(&'static str, &str)]| {
        let mut r = s
            .http
            .post(s.url("/auth/logout"))
            .header("cookie", format!("refresh_token={}", victim.refresh));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        s.send(r)
    };
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("sec-fetch-site", "cross-site"), ("origin", own.as_str())],
        vec![("origin", "https://evil.example.net")],
        vec![("origin", "null")],
    ] {
        logout(&headers).await.assert_problem(403);
    }
    assert_eq!(
        s.protected(Some(&victim.access)).await.status,
        200,
        "still signed in"
    );
    // Login CSRF: a foreign page cannot sign the browser in as someone else.
    s.request_otp("attacker@example.com").await;
    let code = s.mailer.last_code("attacker@example.com").unwrap();
    let r = s
        .send(
            s.http
                .post(s.url("/auth/verify-otp"))
                .header("sec-fetch-site", "cross-site")
                .json(&json!({"email": "attacker@example.com", "otp": code})),
        )
        .await;
    r.assert_problem(403);
    assert!(r.refresh_cookie().is_none());
    // Same origin (by Sec-Fetch-Site, or by Origin naming this host) and non-browser
    // clients pass.
    for headers in [
        vec![("sec-fetch-site", "same-origin")],
        vec![("sec-fetch-site", "none")],
        vec![("origin", own.as_str())],
        vec![],
    ] {
        let r = s
            .send(
                s.http
                    .post(s.url("/auth/request-otp"))
                    .headers(
                        headers
                            .iter()
                            .map(|(k, v)| {
                                (
                                    reqwest::header::HeaderName::from_static(k),
                                    v.parse().unwrap(),
                                )
                            })
                            .collect(),
                    )
                    .json(&json!({"email": "same@example.com"})),
            )
            .await;
        assert_eq!(r.status, 200, "{headers:?}: {}", r.text());
    }
    // An origin in OTP_AUTH_ALLOWED_ORIGINS passes even cross-site.
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.http.allowed_origins = vec!["https://app.example.com".into()];
        c
    })
    .await;
    let r = s
        .send(
            s.http
                .post(s.url("/auth/request-otp"))
                .header("sec-fetch-site", "cross-site")
                .header("origin", "https://app.example.com")
                .json(&json!({"email": "front@example.com"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Behind a proxy on a dual-stack socket, IPv4 peers arrive as `::ffff:a.b.c.d`: they still
/// match `OTP_AUTH_TRUSTED_PROXIES`, so each client behind the proxy has its own bucket and
/// its own address in the session list.
pub async fn ipv4_mapped_clients(t: Target) {
    let backends = crate::Backends::for_store(t.store).await;
    let config = {
        let mut c = test_config();
        c.limits.per_ip_per_minute = 1;
        c.http.trusted_proxies = vec!["127.0.0.0/8".into()];
        c
    };
    let auth = backends
        .stores(OtpAuth::builder(config))
        .mailer(backends.mailer)
        .build()
        .unwrap();
    let s = TestServer::start_auth_at(t.adapter, auth, backends.mailbox, "[::]:0").await;
    let request = |client: &'static str, email: &'static str| {
        s.send(
            s.http
                .post(s.url("/auth/request-otp"))
                .header("x-forwarded-for", client)
                .json(&json!({"email": email})),
        )
    };
    assert_eq!(request("203.0.113.7", "m1@example.com").await.status, 200);
    assert_eq!(
        request("203.0.113.8", "m2@example.com").await.status,
        200,
        "another client behind the proxy has its own bucket"
    );
    request("203.0.113.7", "m3@example.com")
        .await
        .assert_problem(429);
    let code = s.mailer.last_code("m1@example.com").unwrap();
    let r = s
        .send(
            s.http
                .post(s.url("/auth/verify-otp"))
                .header("x-forwarded-for", "203.0.113.7")
                .json(&json!({"email": "m1@example.com", "otp": code})),
        )
        .await;
    assert_eq!(r.status, 200);
    let access = r.json()["access_token"].as_str().unwrap().to_owned();
    let listed = s
        .send(s.http.get(s.url("/auth/sessions")).bearer_auth(&access))
        .await
        .json();
    assert_eq!(listed["sessions"][0]["ip"], "203.0.113.7", "{listed}");
}

/// The sign-in link's page names the account it signs in, masked.
pub async fn magic_page_names_the_account(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.http.public_url = Some("http://127.0.0.1:9/auth".into());
        c
    })
    .await;
    s.request_otp("Linda.Page@example.com").await;
    let link = s.mailer.last_link("linda.page@example.com").unwrap();
    let query = link.split_once('?').unwrap().1;
    let page = s
        .send(s.http.get(s.url(&format!("/auth/magic?{query}"))))
        .await
        .text();
    assert!(
        page.contains("signs in as <strong>li\u{2022}\u{2022}\u{2022}e@example.com</strong>"),
        "{page}"
    );
    assert!(!page.contains("linda.page"), "the address in full");
    // An attacker's look-alike address is told apart from the victim's.
    let hint = |email: &'static str| {
        let s = &s;
        async move {
            s.request_otp(email).await;
            let link = s.mailer.last_link(email).unwrap();
            let query = link.split_once('?').unwrap().1.to_owned();
            let page = s
                .send(s.http.get(s.url(&format!("/auth/magic?{query}"))))
                .await
                .text();
            let at = page.find("signs in as <strong>").unwrap() + "signs in as <strong>".len();
            page[at..at + page[at..].find("</strong>").unwrap()].to_owned()
        }
    };
    assert_eq!(hint("bob@gmail.com").await, "bob@gmail.com");
    assert_eq!(
        hint("b.attacker.2024@gmail.com").await,
        "b.\u{2022}\u{2022}\u{2022}4@gmail.com"
    );
    let forged = s
        .send(s.http.get(s.url("/auth/magic?token=AAAA")))
        .await
        .text();
    assert!(forged.contains("invalid or has expired"));
    // No token, or an empty one: the same page, with 400.
    for path in ["/auth/magic", "/auth/magic?token=", "/auth/magic?other=1"] {
        let r = s.send(s.http.get(s.url(path))).await;
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(r.text().contains("invalid or has expired"), "{path}");
    }
}

/// Every scenario as a test against one adapter and store (`http_scenarios!(Axum,
/// Redis)`). Attributes written before them go on every test (the Redis targets are
/// ignored unless the build knows their server).
#[macro_export]
macro_rules! http_scenarios {
    ($(#[$attr:meta])* $adapter:ident, $store:ident) => {
        fn target() -> $crate::Target {
            $crate::Target {
                adapter: $crate::Adapter::$adapter,
                store: $crate::Store::$store,
            }
        }
        $crate::http_scenarios!(@each [$(#[$attr])*]
            login_flow, cookie_attributes, request_otp_bad_input, address_rate_limit,
            ip_rate_limit_ignores_spoofed_forwarded_for, trusted_proxy_forwarded_for,
            trusted_proxy_rfc7239_forwarded,
            verify_errors, lockout_across_resends, concurrent_verifications,
            refresh_rotation_and_reuse, refresh_refusals, concurrent_refreshes, logout,
            logout_all, administration_from_code, layer_protected_sub_router,
            refresh_token_in_body, refresh_token_in_cookie_and_body, audit_events, protected_route_refusals, origin_check, not_found_and_method,
            store_unavailable, mail_failures, no_account_enumeration, magic_code,
            sessions_list_and_revoke, logout_others, magic_link, localized_mail, jwks,
            racing_tabs, verify_never_strands_a_code, cross_site_requests,
            ipv4_mapped_clients, magic_page_names_the_account, step_up_reauthentication,
            email_change, email_change_needs_the_hook, concurrent_email_changes,
            wrong_codes_answer_alike_for_every_address, ip_limited_client_gets_one_answer,
            forwarded_entries_with_ports);
    };
    (@each [$($attr:tt)*] $name:ident $(, $rest:ident)*) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $name() {
            $crate::scenarios::$name(target()).await;
        }
        $crate::http_scenarios!(@each [$($attr)*] $($rest),*);
    };
    (@each [$($attr:tt)*]) => {};
}

/// The scenarios that read counters of `GET /metrics`, as tests against one adapter and store, like
/// [`http_scenarios!`](crate::http_scenarios). The process has one recorder, so each test
/// holds [`crate::metrics_lock`] throughout and compares the counters before and after:
/// instantiate them in a test binary of their own (no other test moves the counters).
#[macro_export]
macro_rules! metrics_scenarios {
    ($(#[$attr:meta])* $adapter:ident, $store:ident) => {
        fn target() -> $crate::Target {
            $crate::Target {
                adapter: $crate::Adapter::$adapter,
                store: $crate::Store::$store,
            }
        }
        $crate::metrics_scenarios!(@each [$(#[$attr])*]
            metrics, session_cap, mail_caps, ip_verification_failures);
    };
    (@each [$($attr:tt)*] $name:ident $(, $rest:ident)*) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $name() {
            let _only_test_counting = $crate::metrics_lock().await;
            $crate::scenarios::$name(target()).await;
        }
        $crate::metrics_scenarios!(@each [$($attr)*] $($rest),*);
    };
    (@each [$($attr:tt)*]) => {};
}

async fn login_as(s: &TestServer, email: &str, user_agent: &str) -> crate::Session {
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

async fn list_sessions(s: &TestServer, access: &str) -> Vec<serde_json::Value> {
    let r = s
        .send(s.http.get(s.url("/auth/sessions")).bearer_auth(access))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json()["sessions"].as_array().unwrap().clone()
}

async fn delete_session(s: &TestServer, access: &str, id: &str) -> crate::Reply {
    s.send(
        s.http
            .delete(s.url(&format!("/auth/sessions/{id}")))
            .bearer_auth(access),
    )
    .await
}

/// `GET /sessions` lists the user's sessions with what was seen at login;
/// `DELETE /sessions/{id}` ends one, only the user's own.
pub async fn sessions_list_and_revoke(t: Target) {
    let s = start(t).await;
    let laptop = login_as(&s, "sess@example.com", "Laptop/1.0").await;
    let phone = login_as(&s, "SESS@example.com", "Phone/2.0").await;
    let other = login_as(&s, "other@example.com", "Other/3.0").await;
    let r = s.send(s.http.get(s.url("/auth/sessions"))).await;
    r.assert_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));

    let list = list_sessions(&s, &laptop.access).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[0]["user_agent"], "Laptop/1.0");
    assert_eq!(list[0]["ip"], "127.0.0.1");
    assert_eq!(list[1]["current"], false);
    assert_eq!(list[1]["user_agent"], "Phone/2.0");
    let now = now_secs();
    for e in &list {
        let created = e["created_at"].as_u64().unwrap();
        assert!(created <= now && created + 60 > now, "{e}");
        assert_eq!(e["last_refreshed_at"].as_u64().unwrap(), created);
        assert!(e["expires_at"].as_u64().unwrap() > now + 86_400);
    }
    let phone_id = list[1]["id"].as_str().unwrap().to_owned();

    // A refresh moves the phone's last refresh and keeps its session.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = s.refresh(Some(&phone.refresh)).await;
    assert_eq!(r.status, 200);
    let phone_access = r.json()["access_token"].as_str().unwrap().to_owned();
    let list = list_sessions(&s, &phone_access).await;
    assert_eq!(list[0]["id"], phone_id.as_str());
    assert!(list[0]["last_refreshed_at"].as_u64() > list[0]["created_at"].as_u64());

    // Another user's session, or no session at all: 404, and nothing happens.
    let other_id = list_sessions(&s, &other.access).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    delete_session(&s, &laptop.access, &other_id)
        .await
        .assert_problem(404);
    assert_eq!(s.protected(Some(&other.access)).await.status, 200);
    delete_session(&s, &laptop.access, "no-such-session")
        .await
        .assert_problem(404);
    delete_session(&s, "not-a-token", &phone_id)
        .await
        .assert_problem(401);

    // The laptop ends the phone's session.
    let r = delete_session(&s, &laptop.access, &phone_id).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"message": "Session revoked"}));
    assert!(
        r.set_cookies().is_empty(),
        "another session: the cookie stays"
    );
    s.protected(Some(&phone_access)).await.assert_problem(401);
    s.refresh(Some(&phone.refresh)).await.assert_problem(401);
    assert_eq!(list_sessions(&s, &laptop.access).await.len(), 1);
    delete_session(&s, &laptop.access, &phone_id)
        .await
        .assert_problem(404);

    // Methods: the list is GET only, one session DELETE only.
    let r = s
        .send(
            s.http
                .post(s.url("/auth/sessions"))
                .bearer_auth(&laptop.access),
        )
        .await;
    r.assert_problem(405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = s
        .send(
            s.http
                .get(s.url(&format!("/auth/sessions/{phone_id}")))
                .bearer_auth(&laptop.access),
        )
        .await;
    r.assert_problem(405);
    assert_eq!(r.header("allow"), Some("DELETE"));

    // Ending its own session logs the laptop out and clears its cookie.
    let own = list_sessions(&s, &laptop.access).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = delete_session(&s, &laptop.access, &own).await;
    assert_eq!(r.status, 200);
    assert!(
        r.set_cookies()[0].contains("Max-Age=0"),
        "{:?}",
        r.set_cookies()
    );
    s.protected(Some(&laptop.access)).await.assert_problem(401);
    assert_eq!(s.protected(Some(&other.access)).await.status, 200);
}

/// `POST /logout-others` keeps only the current session.
pub async fn logout_others(t: Target) {
    let s = start(t).await;
    let a = login_as(&s, "many@example.com", "A").await;
    let b = login_as(&s, "many@example.com", "B").await;
    let c = login_as(&s, "many@example.com", "C").await;
    let d = s.login("bystander@example.com").await;
    let post = |token: Option<&str>| {
        let r = s.http.post(s.url("/auth/logout-others"));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    };
    s.send(post(None)).await.assert_problem(401);
    let r = s.send(post(Some(&b.access))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"message": "Other sessions logged out", "revoked": 2})
    );
    assert!(r.set_cookies().is_empty());
    for gone in [&a, &c] {
        s.protected(Some(&gone.access)).await.assert_problem(401);
        s.refresh(Some(&gone.refresh)).await.assert_problem(401);
    }
    assert_eq!(s.protected(Some(&b.access)).await.status, 200);
    assert_eq!(s.protected(Some(&d.access)).await.status, 200);
    let r = s.send(post(Some(&b.access))).await;
    assert_eq!(r.json()["revoked"], 0);
    let r = s.refresh(Some(&b.refresh)).await;
    assert_eq!(r.status, 200, "the current session still refreshes");
}

fn link_token(link: &str) -> String {
    link.split_once("token=").unwrap().1.to_owned()
}

/// Sign-in links: in the mail when a public URL is set; `GET /magic` changes nothing;
/// `POST /verify-link` answers like `/verify-otp`; link and code spend each other; the
/// attempt and lockout rules are shared.
pub async fn magic_link(t: Target) {
    let s = start(t).await;
    s.request_otp("nolink@example.com").await;
    assert!(s.mailer.last_code("nolink@example.com").is_some());
    assert_eq!(s.mailer.last_link("nolink@example.com"), None);

    let s = TestServer::start(t, {
        let mut c = test_config();
        c.http.public_url = Some("https://app.example.com/auth".into());
        c
    })
    .await;
    let email = "link@example.com";
    assert_eq!(s.request_otp(email).await.status, 200);
    let link = s.mailer.last_link(email).expect("a link in the mail");
    assert!(
        link.starts_with("https://app.example.com/auth/magic?token="),
        "{link}"
    );
    let token = link_token(&link);
    let (_, text, html) = s.mailer.last_mail(email).unwrap();
    assert!(html.contains(&token), "the HTML part carries the link too");
    assert!(!link.contains("link%40") && !token.contains("example.com"));
    assert!(text.contains(&s.mailer.last_code(email).unwrap()));

    // Opening the page (a scanner does) changes nothing, however often.
    for _ in 0..2 {
        let r = s
            .send(s.http.get(s.url(&format!("/auth/magic?token={token}"))))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(r.text().contains(&format!("data-token=\"{token}\"")));
        assert!(r.set_cookies().is_empty());
    }
    let r = s
        .post_json("/auth/verify-link", &json!({ "token": token }))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["message"], "OTP verified successfully!");
    assert_eq!(v["token_type"], "bearer");
    let access = v["access_token"].as_str().unwrap();
    let r2 = s.protected(Some(access)).await;
    assert_eq!(r2.json(), json!({"message": "Hello, link@example.com!"}));
    assert!(r.refresh_cookie().is_some());
    // A link login says so in `amr`, and the session keeps it through a refresh.
    let claims = codec().verify(access, TokenType::Access).unwrap();
    assert_eq!(claims.amr, Some(vec!["otp".to_owned(), "link".to_owned()]));
    let refreshed = s.refresh(r.refresh_cookie().as_deref()).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text());
    let again = codec()
        .verify(
            refreshed.json()["access_token"].as_str().unwrap(),
            TokenType::Access,
        )
        .unwrap();
    assert_eq!(again.amr, claims.amr);
    assert_eq!(again.auth_time, claims.auth_time);
    // The link spent the code, and itself.
    let code = s.mailer.last_code(email).unwrap();
    s.verify_otp(email, &code).await.assert_problem(400);
    s.post_json("/auth/verify-link", &json!({ "token": token }))
        .await
        .assert_problem(400);

    // The code spends the link.
    s.request_otp(email).await;
    let token = link_token(&s.mailer.last_link(email).unwrap());
    let code = s.mailer.last_code(email).unwrap();
    assert_eq!(s.verify_otp(email, &code).await.status, 200);
    let r = s
        .post_json("/auth/verify-link", &json!({ "token": token }))
        .await;
    let p = r.assert_problem(400);
    assert!(p["detail"].as_str().unwrap().contains("link"), "{p}");

    // A newer code makes the older link useless.
    s.request_otp(email).await;
    let old = link_token(&s.mailer.last_link(email).unwrap());
    s.request_otp(email).await;
    let new = link_token(&s.mailer.last_link(email).unwrap());
    s.post_json("/auth/verify-link", &json!({ "token": old }))
        .await
        .assert_problem(400);
    assert_eq!(
        s.post_json("/auth/verify-link", &json!({ "token": new }))
            .await
            .status,
        200
    );

    // Forged, altered or malformed tokens; bodies of the wrong shape.
    let mut altered = new.clone().into_bytes();
    let last = altered.len() - 3;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::from_utf8(altered).unwrap(),
        "garbage".to_owned(),
        String::new(),
        "A".repeat(5000),
    ] {
        s.post_json("/auth/verify-link", &json!({ "token": bad }))
            .await
            .assert_problem(400);
    }
    s.post_json("/auth/verify-link", &json!({ "link": new }))
        .await
        .assert_problem(422);
    let r = s
        .send(
            s.http
                .post(s.url("/auth/verify-link"))
                .header("content-type", "text/plain")
                .body("{}"),
        )
        .await;
    r.assert_problem(415);
    let r = s.send(s.http.get(s.url("/auth/verify-link"))).await;
    r.assert_problem(405);
    assert_eq!(r.header("allow"), Some("POST"));

    // Wrong codes lock the address out for the link as well.
    let victim = "locked@example.com";
    s.request_otp(victim).await;
    let token = link_token(&s.mailer.last_link(victim).unwrap());
    let code = s.mailer.last_code(victim).unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        s.verify_otp(victim, wrong).await.assert_problem(400);
    }
    let r = s
        .post_json("/auth/verify-link", &json!({ "token": token }))
        .await;
    r.assert_problem(429);
    assert!(r.header("retry-after").is_some());
}

/// The login mail's language follows `Accept-Language`, then the configured default.
pub async fn localized_mail(t: Target) {
    let s = start(t).await;
    let request = |email: &'static str, lang: Option<&'static str>| {
        let mut r = s
            .http
            .post(s.url("/auth/request-otp"))
            .json(&json!({ "email": email }));
        if let Some(l) = lang {
            r = r.header("accept-language", l);
        }
        s.send(r)
    };
    assert_eq!(request("en@example.com", None).await.status, 200);
    let (subject, text, _) = s.mailer.last_mail("en@example.com").unwrap();
    assert!(subject.contains("login code"), "{subject}");
    assert!(text.contains("minutes"), "{text}");

    let r = request("de@example.com", Some("de-CH, de;q=0.9, en;q=0.5")).await;
    assert_eq!(r.status, 200);
    let (subject, text, html) = s.mailer.last_mail("de@example.com").unwrap();
    let code = s.mailer.last_code("de@example.com").unwrap();
    assert!(subject.contains("Anmeldecode"), "{subject}");
    assert!(subject.contains(&code));
    assert!(text.contains("Minuten") && text.contains(&code), "{text}");
    assert!(html.contains("Minuten") && html.contains(&code));

    assert_eq!(
        request("fr@example.com", Some("fr-FR, fr;q=0.9"))
            .await
            .status,
        200
    );
    let (subject, _, _) = s.mailer.last_mail("fr@example.com").unwrap();
    assert!(subject.contains("login code"), "no French set: the default");

    let s = TestServer::start(t, {
        let mut c = test_config();
        c.mail.default_language = "de".into();
        c
    })
    .await;
    s.request_otp("default@example.com").await;
    let (subject, _, _) = s.mailer.last_mail("default@example.com").unwrap();
    assert!(subject.contains("Anmeldecode"), "{subject}");
}

/// Asymmetric keys: tokens carry the key's thumbprint as `kid` and verify from the JWKS
/// alone; the HMAC secret never appears there.
pub async fn jwks(t: Target) {
    let s = start(t).await;
    let r = s.send(s.http.get(s.url("/auth/jwks.json"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"keys": []}));

    for (alg, file) in [
        (JwtAlgorithm::ES256, "ec-a.pem"),
        (JwtAlgorithm::EdDSA, "ed25519-a.pem"),
        (JwtAlgorithm::RS256, "rsa-a.pem"),
    ] {
        let s = TestServer::start(t, {
            let mut c = test_config();
            c.tokens.algorithm = alg;
            c.tokens.secret = None;
            c.codes.secret = Some(TEST_SECRET.into());
            c.tokens.private_key_file = Some(crate::test_key(file));
            c
        })
        .await;
        let session = s.login("keys@example.com").await;
        let r = s.send(s.http.get(s.url("/auth/jwks.json"))).await;
        assert_eq!(r.status, 200);
        assert!(r.header("cache-control").unwrap().contains("max-age"));
        let jwks = r.json();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "{jwks}");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(
                keys[0].get(private).is_none(),
                "{alg:?} publishes {private}"
            );
        }
        let header = jsonwebtoken::decode_header(&session.access).unwrap();
        assert_eq!(header.kid.as_deref(), keys[0]["kid"].as_str(), "{alg:?}");
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(keys[0].clone()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.validate_aud = false;
        let claims = jsonwebtoken::decode::<Claims>(&session.access, &key, &v)
            .unwrap()
            .claims;
        assert_eq!(claims.email, "keys@example.com");
        assert_eq!(s.protected(Some(&session.access)).await.status, 200);
        if alg == JwtAlgorithm::ES256 {
            // The mirror of a valid signature (`s` → `n − s`) is valid ECDSA too, and
            // refused: one token, one encoding.
            let mirrored = mirror_es256_signature(&session.access);
            assert_ne!(mirrored, session.access);
            let r = s.protected(Some(&mirrored)).await;
            r.assert_problem(401);
        }
        let r = s.refresh(Some(&session.refresh)).await;
        assert_eq!(r.status, 200, "{alg:?}: {}", r.text());
    }
}

/// `token` with its ES256 signature's `s` replaced by `n − s` (P-256's order `n`).
fn mirror_es256_signature(token: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
    assert_eq!(sig.len(), 64);
    let mut borrow = 0_i16;
    for i in (0..32).rev() {
        let d = i16::from(N[i]) - i16::from(sig[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        sig[32 + i] = u8::try_from(d + 256 * borrow).unwrap();
    }
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// The `otp_*` metrics count what happened, with no address or token in them.
pub async fn metrics(t: Target) {
    let s = start(t).await;
    let before = s.metrics().await;
    let email = "metrics@example.com";
    s.request_otp(email).await;
    let code = s.mailer.last_code(email).unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    s.verify_otp(email, wrong).await.assert_problem(400);
    let r = s.verify_otp(email, &code).await;
    assert_eq!(r.status, 200);
    let refresh = r.refresh_cookie().unwrap();
    let r = s.refresh(Some(&refresh)).await;
    assert_eq!(r.status, 200);
    // The parent again, within the reuse interval: re-issued.
    assert_eq!(s.refresh(Some(&refresh)).await.status, 200);
    let current = r.refresh_cookie().unwrap();
    assert_eq!(s.refresh(Some(&current)).await.status, 200);
    // Now a grandparent: reuse.
    s.refresh(Some(&refresh)).await.assert_problem(401);
    s.send(s.http.post(s.url("/auth/logout"))).await;
    for _ in 0..5 {
        s.request_otp(email).await;
    }
    s.mailer.fail_next(MailError::Permanent("550".into()));
    s.request_otp("bounce@example.com")
        .await
        .assert_problem(502);
    // Answers given before any endpoint runs.
    s.send(s.http.get(s.url("/auth/no-such-path")))
        .await
        .assert_problem(404);
    s.send(s.http.delete(s.url("/auth/request-otp")))
        .await
        .assert_problem(405);
    s.send(
        s.http
            .post(s.url("/auth/request-otp"))
            .header("content-type", "application/json")
            .body(vec![b' '; 20_000]),
    )
    .await
    .assert_problem(413);

    let m = |name: &'static str, labels: &'static str| s.metric_since(&before, name, labels);
    assert_eq!(m("otp_codes_requested_total", "").await, 7.0);
    assert_eq!(m("otp_mails_sent_total", "").await, 5.0);
    assert_eq!(
        m("otp_mails_failed_total", "reason=\"rejected\"").await,
        1.0
    );
    assert_eq!(
        m(
            "otp_verifications_total",
            "method=\"code\",outcome=\"mismatch\""
        )
        .await,
        1.0
    );
    assert_eq!(
        m(
            "otp_verifications_total",
            "method=\"code\",outcome=\"success\""
        )
        .await,
        1.0
    );
    assert_eq!(m("otp_rate_limited_total", "scope=\"address\"").await, 1.0);
    assert_eq!(m("otp_refreshes_total", "outcome=\"success\"").await, 2.0);
    assert_eq!(m("otp_refreshes_total", "outcome=\"reissued\"").await, 1.0);
    assert_eq!(m("otp_refreshes_total", "outcome=\"reused\"").await, 1.0);
    assert_eq!(m("otp_refresh_reuse_detected_total", "").await, 1.0);
    assert_eq!(m("otp_logouts_total", "scope=\"session\"").await, 1.0);
    for status in ["404", "405", "413"] {
        let labels = format!("status=\"{status}\"");
        let n = s
            .metric_since(&before, "otp_refused_requests_total", &labels)
            .await;
        assert_eq!(n, 1.0, "refused {status}");
    }
    assert_eq!(
        m(
            "otp_request_duration_seconds_count",
            "endpoint=\"verify_otp\",status=\"200\""
        )
        .await,
        1.0
    );
    assert_eq!(
        m(
            "otp_request_duration_seconds_count",
            "endpoint=\"request_otp\",status=\"429\""
        )
        .await,
        1.0
    );
    let text = s.send(s.http.get(s.url("/metrics"))).await.text();
    assert!(
        text.contains("otp_request_duration_seconds_bucket{"),
        "a histogram"
    );
    for leak in ["example.com", "metrics@", code.as_str(), refresh.as_str()] {
        assert!(!text.contains(leak), "/metrics shows {leak}");
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("otp_"), "{line}");
    }
}
