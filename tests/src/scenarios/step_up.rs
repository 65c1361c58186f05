//! Step-up (RFC 9470): `auth_time` and `amr`, the recent-authentication guards,
//! re-authentication.

use std::time::Duration;

use otp_core::store::now_secs;
use serde_json::json;

use super::common::{access_claims, bearer_post, start};
use crate::{Target, TestServer};

/// `GET path` with a bearer token.
async fn bearer_get(s: &TestServer, path: &str, token: &str) -> crate::Reply {
    s.send(s.http.get(s.url(path)).bearer_auth(token)).await
}

/// Step-up (RFC 9470): every access token carries `auth_time` and `amr`, a refresh keeps
/// them; the guards (extractor and layer) refuse an old `auth_time` with the
/// `insufficient_user_authentication` challenge; `/reauthenticate` mails a code that
/// `/verify-reauthentication` trades for a new access token on the same session with
/// `auth_time` now, which later refreshes keep; a login code never passes for a
/// re-authentication nor the other way round; and a re-authentication code lives in the
/// session's own flow, whose failures lock nothing else of the address.
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
    // ... which never passes for a login; it went to the session's own flow, so the login
    // code still pending is not replaced.
    s.verify_otp(email, &reauth_code).await.assert_problem(400);
    let r = s.verify_otp(email, &login_code).await;
    assert_eq!(
        r.status,
        200,
        "the login code survived the step-up: {}",
        r.text()
    );
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

    // A re-authentication code lives in the session's own flow: five wrong codes end
    // that flow (the right one then fails too) and lock nothing else of the address.
    let r = bearer_post(&s, "/auth/reauthenticate", Some(&stepped), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let good = s.mailer.last_code(email).unwrap();
    let wrong = if good == "000000" { "111111" } else { "000000" };
    let verify = |code: String| {
        let (s, stepped) = (&s, &stepped);
        async move {
            bearer_post(
                s,
                "/auth/verify-reauthentication",
                Some(stepped),
                Some(json!({ "otp": code })),
            )
            .await
        }
    };
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(verify(wrong.to_owned()).await.status);
    }
    assert_eq!(statuses, [400; 5]);
    verify(good.clone()).await.assert_problem(400);
    // The address is not locked: an unbound login guess is still compared (400, not 429).
    s.verify_otp(email, wrong).await.assert_problem(400);

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
