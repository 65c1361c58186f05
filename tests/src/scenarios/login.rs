//! Logging in with a code: the whole flow, the refresh cookie, the verification errors,
//! one winner among parallel verifications, no account enumeration, the development magic
//! code, the mail's language.

use std::sync::Arc;

use otp_core::config::SameSite;
use otp_core::hooks::{BoxError, Email, async_trait};
use otp_core::{ClientInfo, Hooks, OtpAuth};
use serde_json::json;

use super::common::start;
use crate::{Target, TestServer, test_config};

/// Request, verify, protected: the bodies, statuses and headers of a whole login.
pub async fn login_flow(t: Target) {
    let s = start(t).await;
    let r = s.request_otp("Grace@Example.com").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["message"], "OTP sent successfully");
    assert_eq!(
        v.as_object().unwrap().len(),
        2,
        "the message and the flow: {v}"
    );
    assert!(v["flow_id"].is_string(), "{v}");
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
    assert_eq!(set.len(), 3, "refresh, flow cleared, known device: {set:?}");
    let c = set
        .iter()
        .find(|c| c.starts_with("refresh_token="))
        .unwrap();
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
    let set = r.set_cookies();
    let c = set.iter().find(|c| c.starts_with("rt=")).unwrap();
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
    // The same body but for the flow's id, random for each.
    let without_flow = |r: &crate::Reply| {
        let mut v = r.json();
        let id = v["flow_id"].take();
        (v, id.as_str().map(str::len))
    };
    assert_eq!(without_flow(&known), without_flow(&unknown));
    assert_eq!(without_flow(&known).1, Some(22));
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
