//! Failures of the store and the mailer: 503 and 502, closed guards, no stranded code.

use std::sync::Arc;

use otp_core::contract::DownStore;
use otp_core::mailer::MailError;
use otp_core::token::TokenType;

use super::common::{codec, start};
use crate::{Backends, Target, TestServer, test_config};

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
