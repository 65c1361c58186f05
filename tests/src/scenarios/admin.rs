//! The admin router (`otp_axum::admin_router`, `otp_poem::admin_routes`) through the real
//! routers, on the target's store: its guard, the sessions of a user, an address's state,
//! its lock and unlock, a sign-in sent by an administrator, and the audit trail.

use std::sync::{Arc, Mutex};

use otp_core::event::{AdminAction, EventKind};
use otp_core::hooks::{BoxError, Email, EmailChange, async_trait};
use otp_core::{Hooks, OtpAuth};
use serde_json::{Map, Value, json};

use crate::{Backends, Reply, Target, TestServer, test_config};

/// The examples' hooks (the `admin` role for boss@example.com), recording every event.
#[derive(Debug, Clone)]
struct AdminHooks {
    inner: example_common::ExampleHooks,
    events: Arc<Mutex<Vec<otp_core::event::Event>>>,
}

#[async_trait]
impl Hooks for AdminHooks {
    async fn subject(&self, email: &Email) -> Result<String, BoxError> {
        self.inner.subject(email).await
    }

    async fn claims(&self, subject: &str, email: &Email) -> Result<Map<String, Value>, BoxError> {
        self.inner.claims(subject, email).await
    }

    async fn change_email(
        &self,
        subject: &str,
        old: &Email,
        new: &Email,
    ) -> Result<EmailChange, BoxError> {
        self.inner.change_email(subject, old, new).await
    }

    fn on_event(&self, event: &otp_core::event::Event) -> Result<(), BoxError> {
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }
}

impl AdminHooks {
    /// The administrators' actions so far: what, by whom.
    fn actions(&self) -> Vec<(AdminAction, Option<String>)> {
        (self.events.lock().unwrap().iter())
            .filter_map(|e| match &e.kind {
                EventKind::AdminAction { action, actor } => Some((*action, actor.clone())),
                _ => None,
            })
            .collect()
    }
}

async fn admin_server(t: Target) -> (TestServer, AdminHooks) {
    let backends = Backends::for_store(t.store).await;
    let hooks = AdminHooks {
        inner: example_common::ExampleHooks::new(["boss@example.com"]),
        events: Arc::default(),
    };
    let mut config = test_config();
    config.http.public_url = Some("http://127.0.0.1:9/auth".into());
    let auth = backends
        .stores(OtpAuth::builder(config))
        .mailer(backends.mailer.clone())
        .hooks(hooks.clone())
        .build()
        .unwrap();
    (
        TestServer::start_auth(t.adapter, auth, backends.mailbox).await,
        hooks,
    )
}

/// Two session lists are the same: every field equal, `expires_at` within a second (the
/// Redis stores derive it from the key's TTL when read).
fn same_sessions(a: &Value, b: &Value) {
    let strip = |v: &Value| {
        let mut v = v.clone();
        let mut ends = Vec::new();
        for s in v["sessions"].as_array_mut().unwrap() {
            ends.push(s["expires_at"].as_u64().unwrap());
            s.as_object_mut().unwrap().remove("expires_at");
        }
        (v, ends)
    };
    let ((a, ea), (b, eb)) = (strip(a), strip(b));
    assert_eq!(a, b);
    assert!(
        ea.iter().zip(&eb).all(|(x, y)| x.abs_diff(*y) <= 1),
        "{ea:?} vs {eb:?}"
    );
    assert_eq!(ea.len(), eb.len());
}

/// `method path` under the server with `token` and an optional JSON body.
async fn call(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut r = s.http.request(method, s.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    s.send(r).await
}

/// The admin router end to end: only administrators get in (401, 403); a user's sessions
/// by address (any spelling) or subject; an address's state; a lock that withholds codes
/// without telling the requester, and its unlock (the lockout of guesses too); every
/// session ended and one session ended; a sign-in mailed with its own lifetime, whose link
/// signs in (bound to its own flow) while its code alone does not; bad input as 422, 404
/// and 405; every action in the audit trail with the administrator's `sub`.
pub async fn admin_router(t: Target) {
    use reqwest::Method as M;
    let (s, hooks) = admin_server(t).await;
    let boss = s.login("boss@example.com").await;
    let hank = s.login("hank@example.com").await;
    let boss_sub = s.auth.authenticate(&boss.access).await.unwrap().claims.sub;
    let hank_sub = s.auth.authenticate(&hank.access).await.unwrap().claims.sub;
    let admin = Some(boss.access.as_str());

    // The guard.
    let list = "/admin/sessions?email=Hank%40Example.COM";
    let p = call(&s, M::GET, list, Some(&hank.access), None)
        .await
        .assert_problem(403);
    assert!(p["detail"].as_str().unwrap().contains("not allowed"), "{p}");
    call(&s, M::GET, list, None, None).await.assert_problem(401);

    // A user's sessions: the fields of GET /auth/sessions, by address or by subject.
    let r = call(&s, M::GET, list, admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let own = s
        .send(
            s.http
                .get(s.url("/auth/sessions"))
                .bearer_auth(&hank.access),
        )
        .await
        .json();
    let mut mine = own["sessions"][0].clone();
    mine.as_object_mut().unwrap().remove("current");
    same_sessions(&r.json(), &json!({ "sessions": [mine] }));
    let by_subject = format!("/admin/sessions?subject={hank_sub}");
    same_sessions(
        &call(&s, M::GET, &by_subject, admin, None).await.json(),
        &r.json(),
    );
    for bad in [
        "/admin/sessions",
        "/admin/sessions?email=a%40b.example&subject=x",
        "/admin/sessions?email=not-an-address",
        "/admin/sessions?email=%zz",
        "/admin/sessions?subject=",
    ] {
        call(&s, M::GET, bad, admin, None).await.assert_problem(422);
    }

    // An address's state.
    let state = "/admin/addresses/hank%40example.com";
    let r = call(&s, M::GET, state, admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["email"], "hank@example.com");
    assert_eq!(
        (v["locked"].clone(), v["locked_until"].clone()),
        (json!(false), Value::Null)
    );
    assert_eq!(v["requests"]["minute"], 1, "{v}");
    assert_eq!(
        v["limits"]["minute"],
        s.auth.config().limits.per_minute,
        "{v}"
    );
    assert_eq!(
        (v["failures"].clone(), v["pending_flows"].clone()),
        (json!(0), json!(0))
    );

    // A lock: the requester gets the usual answer, and no mail goes out.
    let r = call(
        &s,
        M::POST,
        &format!("{state}/lock"),
        admin,
        Some(json!({ "seconds": 3600 })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let until = r.json()["locked_until"].as_u64().unwrap();
    let now = otp_core::store::now_secs();
    assert!(
        (now + 3590..=now + 3610).contains(&until),
        "{until} vs {now}"
    );
    let mails = s.mailer.count();
    let r = s.request_otp("hank@example.com").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["message"], "OTP sent successfully");
    assert_eq!(s.mailer.count(), mails, "no mail to a locked address");
    let v = call(&s, M::GET, state, admin, None).await.json();
    assert_eq!(
        (v["locked"].clone(), v["requests"]["minute"].clone()),
        (json!(true), json!(2)),
        "counted like anyone's"
    );
    // A locked address and an open one meet the minute's cap at the same request, with the
    // same answers.
    let capped = "/admin/addresses/capped%40example.com/lock";
    call(&s, M::POST, capped, admin, None).await;
    let (mut locked, mut open) = (Vec::new(), Vec::new());
    for _ in 0..=s.auth.config().limits.per_minute {
        for (email, seen) in [
            ("capped@example.com", &mut locked),
            ("open@example.com", &mut open),
        ] {
            let r = s.request_otp(email).await;
            seen.push((
                r.status,
                r.header("retry-after").is_some(),
                r.json()["message"].clone(),
            ));
        }
    }
    assert_eq!(locked, open, "locked and open answer alike");
    assert_eq!(locked.last().unwrap().0, 429, "the cap reached");
    assert!(
        s.mailer.last_code("capped@example.com").is_none(),
        "no mail to a locked address"
    );
    let mails = s.mailer.count();
    // A lock without an end.
    let v = call(&s, M::POST, &format!("{state}/lock"), admin, None)
        .await
        .json();
    assert_eq!(
        (v["locked"].clone(), v["locked_until"].clone()),
        (json!(true), Value::Null)
    );

    // Every session of the user ends; their refresh token stops working.
    let r = call(
        &s,
        M::DELETE,
        "/admin/sessions?email=hank%40example.com",
        admin,
        None,
    )
    .await;
    assert_eq!(r.json(), json!({ "message": "Sessions ended", "ended": 1 }));
    assert_eq!(s.refresh(Some(&hank.refresh)).await.status, 401);

    // Unlocked, the address gets its codes again; a lockout of guesses ends too.
    let v = call(&s, M::DELETE, &format!("{state}/lock"), admin, None)
        .await
        .json();
    assert_eq!(v["locked"], false, "{v}");
    s.request_otp("hank@example.com").await;
    assert_eq!(s.mailer.count(), mails + 1, "mail again");
    let code = s.mailer.last_code("hank@example.com").unwrap();
    let wrong = if code.starts_with('0') {
        "111111"
    } else {
        "000000"
    };
    let max = s.auth.config().limits.max_verify_attempts;
    for _ in 0..max {
        s.verify_otp("hank@example.com", wrong).await;
    }
    assert_eq!(
        s.verify_otp("hank@example.com", &code).await.status,
        429,
        "locked out"
    );
    let v = call(&s, M::GET, state, admin, None).await.json();
    assert!(v["locked_out_until"].is_u64(), "{v}");
    assert_eq!(
        (v["failures"].clone(), v["attempts_left"].clone()),
        (json!(max), json!(0))
    );
    let v = call(&s, M::DELETE, &format!("{state}/lock"), admin, None)
        .await
        .json();
    assert_eq!(
        (v["locked_out_until"].clone(), v["failures"].clone()),
        (Value::Null, json!(0))
    );
    assert_eq!(
        s.verify_otp("hank@example.com", &code).await.status,
        200,
        "after unlocking"
    );

    // A sign-in sent by an administrator: 202 without the code or the link.
    let r = call(
        &s,
        M::POST,
        "/admin/addresses/Invitee%40Example.com/sign-in",
        admin,
        Some(json!({ "expires_in": 7200 })),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({ "message": "Sign-in sent", "expires_in": 7200 })
    );
    let code = s.mailer.last_code("invitee@example.com").unwrap();
    let link = s.mailer.last_link("invitee@example.com").unwrap();
    assert!(!r.text().contains(&code), "the answer holds no code");
    let (_, text, _) = s.mailer.last_mail("invitee@example.com").unwrap();
    assert!(
        text.contains("120 minutes"),
        "its own lifetime in the mail: {text}"
    );
    // The code alone (unbound) is never compared; the link signs in, bound to its flow.
    assert_eq!(s.verify_otp("invitee@example.com", &code).await.status, 400);
    let token = link.split_once("token=").unwrap().1;
    let page = s
        .send(s.http.get(s.url(&format!("/auth/magic?token={token}"))))
        .await;
    assert!(
        !page.text().contains("id=\"elsewhere\""),
        "the link carries its flow"
    );
    let r = s
        .post_json("/auth/verify-link", &json!({ "token": token }))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s
        .post_json("/auth/verify-link", &json!({ "token": token }))
        .await;
    assert_eq!(r.status, 400, "spent");
    for bad in [
        json!({ "expires_in": 10 }),
        json!({ "expires_in": 604_801 }),
        json!({ "other": 1 }),
    ] {
        let path = "/admin/addresses/invitee%40example.com/sign-in";
        call(&s, M::POST, path, admin, Some(bad))
            .await
            .assert_problem(422);
    }
    let path = "/admin/addresses/hank%40example.com/lock";
    for bad in [json!({ "seconds": 0 }), json!({ "seconds": "soon" })] {
        call(&s, M::POST, path, admin, Some(bad))
            .await
            .assert_problem(422);
    }
    // A locked address gets no sign-in.
    call(&s, M::POST, path, admin, None).await;
    let path = "/admin/addresses/hank%40example.com/sign-in";
    call(&s, M::POST, path, admin, None)
        .await
        .assert_problem(422);

    // One session ended by id, then not found.
    let other = s.login("boss@example.com").await;
    let sid = s.auth.authenticate(&other.access).await.unwrap().claims.sid;
    let path = format!("/admin/sessions/{sid}");
    let r = call(&s, M::DELETE, &path, admin, None).await;
    assert_eq!(r.json(), json!({ "message": "Session revoked" }));
    call(&s, M::DELETE, &path, admin, None)
        .await
        .assert_problem(404);

    // Routing.
    call(&s, M::GET, "/admin/nowhere", admin, None)
        .await
        .assert_problem(404);
    let r = call(
        &s,
        M::PUT,
        "/admin/addresses/x%40y.example/lock",
        admin,
        None,
    )
    .await;
    r.assert_problem(405);
    assert_eq!(r.header("allow"), Some("POST, DELETE"));

    // The audit trail names the administrator.
    let actions = hooks.actions();
    assert!(
        actions
            .iter()
            .all(|(_, actor)| actor.as_deref() == Some(boss_sub.as_str())),
        "{actions:?}"
    );
    for wanted in [
        "sessions_listed",
        "address_read",
        "locked",
        "sessions_ended",
        "unlocked",
        "sign_in_issued",
        "session_ended",
    ] {
        assert!(
            actions.iter().any(|(a, _)| a.as_str() == wanted),
            "{wanted} in {actions:?}"
        );
    }
    assert!(actions.contains(&(
        AdminAction::SignInIssued {
            expires_in: 7200,
            mailed: true
        },
        Some(boss_sub.clone())
    )));
}
