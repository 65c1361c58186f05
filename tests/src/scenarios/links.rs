//! Sign-in links and their confirmation page.

use otp_core::token::TokenType;
use serde_json::json;

use super::common::{codec, start};
use crate::{Target, TestServer, test_config};

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
