//! Webhook signatures checked by the Standard Webhooks reference implementation (the
//! `standardwebhooks` package from PyPI, in the Python of `OTP_TEST_PYTHON`), over the
//! payloads of a real login, refresh and logout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use otp_core::event::Event;
use otp_core::hooks::BoxError;
use otp_core::webhook::{WebhookSecret, payload};
use otp_core::{Hooks, OtpAuth};
use otp_tests::{Adapter, Backends, TestServer, test_config};

#[derive(Debug, Default, Clone)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

#[otp_core::hooks::async_trait]
impl Hooks for Recorder {
    /// The application's own user id (the default would be the address itself).
    async fn subject(&self, _email: &otp_core::hooks::Email) -> Result<String, BoxError> {
        Ok("user-7".to_owned())
    }

    fn on_event(&self, event: &Event) -> Result<(), BoxError> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

#[tokio::test]
#[cfg_attr(
    not(otp_test_python),
    ignore = "needs the Standard Webhooks library in OTP_TEST_PYTHON: run `cargo xtask test`"
)]
async fn the_reference_library_verifies_our_signatures() {
    let backends = Backends::memory();
    let recorder = Recorder::default();
    let auth = backends
        .stores(OtpAuth::builder(test_config()))
        .mailer(backends.mailer.clone())
        .hooks(recorder.clone())
        .build()
        .unwrap();
    let s = TestServer::start_auth(Adapter::Axum, auth, backends.mailbox).await;
    let session = s.login("hooked@example.com").await;
    let code = s.mailer.last_code("hooked@example.com").unwrap();
    assert_eq!(
        s.verify_otp("hooked@example.com", "000000").await.status,
        400
    );
    let refreshed = s.refresh(Some(&session.refresh)).await;
    assert_eq!(refreshed.status, 200);
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout"))
                .bearer_auth(&session.access),
        )
        .await;
    assert_eq!(r.status, 200);
    let events = recorder.0.lock().unwrap().clone();
    assert!(events.len() >= 5, "{events:?}");

    let written = WebhookSecret::generate();
    let secret = WebhookSecret::parse(&written).unwrap();
    let now = otp_core::store::now_secs();
    let mut lines = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let body = serde_json::to_string(&payload(event)).unwrap();
        // Nothing secret or personal: no address, code or token (the subject is the
        // application's user id).
        for secret_text in [
            "hooked@example.com",
            &code,
            &session.access,
            &session.refresh,
        ] {
            assert!(!body.contains(secret_text), "{body}");
        }
        let id = format!("msg_{i}_{}", otp_core::store::random_id());
        let signature = secret.sign(&id, now, body.as_bytes());
        lines.push(serde_json::json!({
            "secret": written, "id": id, "timestamp": now, "payload": body, "signature": signature,
        }));
        // Tampered: another payload under the same signature.
        lines.push(serde_json::json!({
            "secret": written, "id": id, "timestamp": now,
            "payload": body.replacen('{', "{ ", 1), "signature": signature,
        }));
    }
    let python = std::env::var("OTP_TEST_PYTHON").unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/webhook_verify.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for l in &lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let verdicts: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(verdicts.len(), lines.len());
    for (i, v) in verdicts.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(v, "ok", "{}: {}", lines[i], v);
        } else {
            assert!(v.starts_with("fail"), "tampered accepted: {}", lines[i]);
        }
    }
    let types: Vec<String> = (events.iter())
        .map(|e| payload(e)["type"].as_str().unwrap().to_owned())
        .collect();
    for t in [
        "otp.code_sent",
        "otp.login_succeeded",
        "otp.refreshed",
        "otp.logged_out",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} in {types:?}");
    }
}
