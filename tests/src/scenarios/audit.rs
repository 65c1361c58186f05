//! The audit events the application's hooks receive.

use std::sync::Arc;

use otp_core::event::{
    Event as AuditEvent, EventKind as AuditKind, Failure, LoginMethod, Verification,
};
use otp_core::hooks::{BoxError, Email, async_trait};
use otp_core::token::TokenType;
use otp_core::{ClientInfo, Hooks, OtpAuth};
use serde_json::json;

use super::common::{codec, login_as};
use crate::{Backends, Target, TestServer, test_config};

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
    // The session's event, then the administrator's (no actor for the application's own
    // call).
    let kinds = hooks.kinds();
    let admin_action = |action| AuditKind::AdminAction {
        action,
        actor: None,
    };
    use otp_core::event::AdminAction;
    assert_eq!(
        kinds[kinds.len() - 2..],
        [
            AuditKind::SessionEnded,
            admin_action(AdminAction::SessionEnded)
        ]
    );
    let e = hooks.last();
    assert!(e.ip.is_none() && e.user_agent.is_none());
    assert_eq!(
        s.auth
            .admin()
            .end_all_sessions_of(&otp_core::flow::Account::subject("carol@example.com"))
            .await
            .unwrap(),
        2
    );
    let kinds = hooks.kinds();
    assert_eq!(
        kinds[kinds.len() - 2..],
        [
            AuditKind::LoggedOutAll { sessions: 2 },
            admin_action(AdminAction::SessionsEnded { count: 2 })
        ]
    );

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

    // Lockout, then a code request.
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
    // The lockout stops unbound guesses only: a code request still gets its code (for a
    // new flow), from an unknown device.
    let r = s
        .send(post(
            "/auth/request-otp",
            json!({ "email": "eve@example.com" }),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let last = hooks.last();
    assert_eq!(last.kind, AuditKind::CodeSent);
    assert_eq!(last.device, Some(otp_core::event::Device::New));

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
