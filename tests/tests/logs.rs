//! What reaches the log: a whole login, refresh, logout, wrong codes, a lockout and a mail
//! server refusing a recipient with a reply that quotes the address, on Redis with real
//! SMTP; the log holds no address, code or token, only keyed hashes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use otp_tests::smtp_server::Behaviour;
use otp_tests::{Adapter, Mailbox, Store, Target, TestServer, test_config};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis),
    ignore = "needs a Redis server at OTP_TEST_REDIS_URL: run `cargo xtask test`"
)]
async fn the_log_of_a_full_run_holds_no_address_code_or_token() {
    let target = Target {
        adapter: Adapter::Axum,
        store: Store::Redis,
    };
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_env_filter(
            "info,otp_core=trace,otp_smtp=trace,otp_redis=trace,otp_axum=trace,example_common=trace",
        )
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let s = TestServer::start(target, {
        let mut c = test_config();
        c.limits.max_verify_attempts = 2;
        // Strict rotation: presenting a spent refresh token is reuse.
        c.sessions.reuse_interval_seconds = 0;
        c.http.public_url = Some("http://127.0.0.1:9/auth".into());
        c
    })
    .await;
    let Mailbox::Smtp(smtp) = s.mailer.clone() else {
        panic!("the Redis target delivers over SMTP");
    };
    let mut secrets = vec!["alice.secret".to_owned(), "victim.secret".to_owned()];
    let alice = s.login("Alice.Secret@example.com").await;
    secrets.extend([alice.access.clone(), alice.refresh.clone()]);
    secrets.push(s.mailer.last_code("alice.secret@example.com").unwrap());
    let r = s.refresh(Some(&alice.refresh)).await;
    assert_eq!(r.status, 200);
    secrets.push(r.refresh_cookie().unwrap());
    secrets.push(r.json()["access_token"].as_str().unwrap().to_owned());
    // The spent token again: reuse, the session is revoked.
    s.refresh(Some(&alice.refresh)).await.assert_problem(401);
    s.protected(Some(&alice.access)).await.assert_problem(401);
    let alice = s.login("alice.secret@example.com").await;
    secrets.extend([alice.access.clone(), alice.refresh.clone()]);
    // Wrong codes up to the lockout.
    s.request_otp("alice.secret@example.com").await;
    let code = s.mailer.last_code("alice.secret@example.com").unwrap();
    secrets.push(code.clone());
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(s.verify_otp("alice.secret@example.com", wrong).await.status);
    }
    assert_eq!(statuses, [400, 400, 429], "two failures lock the address");
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout"))
                .bearer_auth(&alice.access)
                .json(&json!({})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    s.protected(Some(&alice.access)).await.assert_problem(401);
    // The mail server refuses the recipient, quoting it.
    smtp.fail_next(Behaviour::Reject);
    s.request_otp("victim.secret@example.com")
        .await
        .assert_problem(502);

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    // Every step above was logged (so the check below covers them).
    for step in [
        "login verified",
        "refresh token reuse detected",
        "verification failed",
        "locked out",
        "login code could not be sent",
    ] {
        assert!(text.contains(step), "{step:?} was not logged: {text}");
    }
    assert!(text.contains("[address]"), "the reply was logged redacted");
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{secret:?} in the log:\n{text}"
        );
    }
    assert!(
        !text.contains("@example.com"),
        "an address in the log:\n{text}"
    );
}
