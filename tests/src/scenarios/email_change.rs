//! Changing the account's email address.

use std::time::Duration;

use otp_core::OtpAuth;
use otp_core::store::now_secs;
use serde_json::json;

use super::common::{access_claims, bearer_post, start};
use crate::{Backends, Target, TestServer, test_config};

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
    let owner_id = hooks.user_of(taken).await.unwrap();
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
    assert_eq!(hooks.user_of(old).await.as_deref(), Some(subject.as_str()));
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
    assert_eq!(hooks.user_of(new).await.as_deref(), Some(subject.as_str()));
    assert_eq!(hooks.user_of(old).await, None);
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
    assert_eq!(
        hooks.user_of(taken).await.as_deref(),
        Some(owner_id.as_str())
    );
    assert_eq!(hooks.user_of(new).await.as_deref(), Some(subject.as_str()));
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
    let subject = hooks.user_of("racer@example.com").await.unwrap();
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
    let mut owners: Vec<Option<String>> = Vec::new();
    for t in &targets {
        owners.push(hooks.user_of(t).await);
    }
    let moved = usize::from(a.status != 200);
    assert_eq!(owners[moved].as_deref(), Some(subject.as_str()));
    assert_eq!(owners[1 - moved], None, "one address only: {owners:?}");
    assert_eq!(hooks.user_of("racer@example.com").await, None);
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
