//! The HTTP surface: bad input (422, 415, 413), unknown paths and methods (404, 405),
//! allowed origins and cross-site requests.

use serde_json::json;

use super::common::start;
use crate::{Target, TestServer, test_config};

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
