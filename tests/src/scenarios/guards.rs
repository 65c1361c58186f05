//! The guards: the current-user extractor and the adapter's require-user layer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use otp_core::codec::TokenCodec;
use otp_core::config::JwtAlgorithm;
use otp_core::hooks::{BoxError, Email, async_trait};
use otp_core::store::now_secs;
use otp_core::store::{
    AccessStatus, NewSession, Renewal, Revocation, RotateOutcome, Rotation, SessionInfo,
    StoreError, TokenBlacklist,
};
use otp_core::token::TokenType;
use otp_core::{Hooks, OtpAuth};
use serde_json::json;

use super::common::{codec, sign_expired, start};
use crate::{Backends, Target, TestServer, test_config};

/// The extractor: 401 with the right `WWW-Authenticate` for each kind of bad token.
pub async fn protected_route_refusals(t: Target) {
    let s = start(t).await;
    let r = s.protected(None).await;
    r.assert_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = s
        .send(
            s.http
                .get(s.url("/protected"))
                .header("authorization", "Basic dTpw"),
        )
        .await;
    r.assert_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let session = s.login("p@example.com").await;
    let foreign = TokenCodec::hmac(
        JwtAlgorithm::HS256,
        b"0ther-secret-0ther-secret-0ther-secret",
        None,
        None,
        0,
    )
    .unwrap();
    let foreign = foreign
        .sign(foreign.claims(
            TokenType::Access,
            "p@example.com",
            "p@example.com",
            "sid",
            60,
            Default::default(),
        ))
        .unwrap()
        .token;
    for bad in [
        "garbage".to_owned(),
        session.refresh.clone(),
        sign_expired(TokenType::Access, "p@example.com"),
        foreign,
        format!("{}x", session.access),
    ] {
        let r = s.protected(Some(&bad)).await;
        r.assert_problem(401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
    }
    assert_eq!(s.protected(Some(&session.access)).await.status, 200);
    // RFC 7519: a token is not accepted on or after its `exp`, also within that second.
    // The live session's own token, re-signed to expire now, at the start of a second.
    let mut claims = codec().verify(&session.access, TokenType::Access).unwrap();
    let start = now_secs();
    while now_secs() == start {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    claims.exp = now_secs();
    let at_exp = codec().sign(claims).unwrap().token;
    let r = s.protected(Some(&at_exp)).await;
    r.assert_problem(401);
    // Option<CurrentUser>: None without a token, the user with one, 401 with a bad one.
    let r = s.send(s.http.get(s.url("/maybe-user"))).await;
    assert_eq!(r.json(), json!({"user": null}));
    let r = s
        .send(
            s.http
                .get(s.url("/maybe-user"))
                .bearer_auth(&session.access),
        )
        .await;
    assert_eq!(r.json(), json!({"user": "p@example.com"}));
    s.send(s.http.get(s.url("/maybe-user")).bearer_auth("garbage"))
        .await
        .assert_problem(401);
}

/// Hooks adding the application's own claims that [`crate::TestClaims`] reads.
#[derive(Debug)]
pub struct RolesHooks;

#[async_trait]
impl Hooks for RolesHooks {
    async fn claims(
        &self,
        _subject: &str,
        email: &Email,
    ) -> Result<serde_json::Map<String, serde_json::Value>, BoxError> {
        let roles = if email.as_str().starts_with("admin") {
            json!(["member", "admin"])
        } else {
            json!(["member"])
        };
        let mut m = serde_json::Map::new();
        m.insert("roles".into(), roles);
        m.insert("tier".into(), json!(3));
        Ok(m)
    }
}

/// A blacklist that counts its access checks and can be made to fail them (the store
/// down), around the real one.
#[derive(Debug)]
struct CheckCounter {
    inner: Arc<dyn TokenBlacklist>,
    checks: AtomicUsize,
    down: AtomicBool,
}

#[async_trait]
impl TokenBlacklist for CheckCounter {
    async fn create_session(&self, session: &NewSession) -> Result<u32, StoreError> {
        self.inner.create_session(session).await
    }
    async fn rotate_refresh(&self, rotation: &Rotation) -> Result<RotateOutcome, StoreError> {
        self.inner.rotate_refresh(rotation).await
    }
    async fn renew_session(&self, renewal: &Renewal) -> Result<bool, StoreError> {
        self.inner.renew_session(renewal).await
    }
    async fn check_access(&self, sid: &str, jti: &str) -> Result<AccessStatus, StoreError> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("the test took the store down"));
        }
        self.inner.check_access(sid, jti).await
    }
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        self.inner.revoke(revocation).await
    }
    async fn revoke_all(&self, subject_key: &str) -> Result<u32, StoreError> {
        self.inner.revoke_all(subject_key).await
    }
    async fn list_sessions(&self, subject_key: &str) -> Result<Vec<SessionInfo>, StoreError> {
        self.inner.list_sessions(subject_key).await
    }
}

/// A sub-router behind the adapter's require-user layer, its handlers reading the
/// application's claims typed: 401 with `WWW-Authenticate` without a user, the typed
/// claims with one, exactly one access check per request (the handler's `CurrentUser`
/// takes the layer's user), 401 for claims that do not fit the type, 503 with the store
/// down, and 401 once the session is logged out.
pub async fn layer_protected_sub_router(t: Target) {
    let backends = Backends::for_store(t.store).await;
    let counter = Arc::new(CheckCounter {
        inner: backends.blacklist.clone(),
        checks: AtomicUsize::new(0),
        down: AtomicBool::new(false),
    });
    let auth = OtpAuth::builder(test_config())
        .store(backends.store.clone())
        .blacklist(counter.clone())
        .mailer(backends.mailer.clone())
        .hooks(RolesHooks)
        .build()
        .unwrap();
    let s = TestServer::start_auth(t.adapter, auth, backends.mailbox.clone()).await;
    let get = |path: &str, token: Option<&str>| {
        let mut r = s.http.get(s.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    };

    let r = s.send(get("/app/me", None)).await;
    r.assert_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = s.send(get("/app/me", Some("garbage"))).await;
    r.assert_problem(401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.contains("error=\"invalid_token\"")),
        "{:?}",
        r.header("www-authenticate")
    );
    assert_eq!(
        counter.checks.load(Ordering::SeqCst),
        0,
        "no token, no store call"
    );

    let user = s.login("admin-layer@example.com").await;
    let member = s.login("layer@example.com").await;
    let before = counter.checks.load(Ordering::SeqCst);
    let r = s.send(get("/app/me", Some(&user.access))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["email"], "admin-layer@example.com");
    assert_eq!(v["roles"], json!(["member", "admin"]));
    assert_eq!(v["tier"], 3);
    assert_eq!(
        counter.checks.load(Ordering::SeqCst) - before,
        1,
        "the layer checks the token once and the handler's CurrentUser takes its user"
    );
    let r = s.send(get("/app/me", Some(&member.access))).await;
    assert_eq!(r.json()["roles"], json!(["member"]));

    // Claims the type does not fit: a 401 like a bad token, not a panic or a 500.
    let r = s.send(get("/app/unfit", Some(&user.access))).await;
    r.assert_problem(401);

    // The store down: the layer fails closed, 503.
    counter.down.store(true, Ordering::SeqCst);
    let r = s.send(get("/app/me", Some(&user.access))).await;
    r.assert_problem(503);
    counter.down.store(false, Ordering::SeqCst);
    assert_eq!(s.send(get("/app/me", Some(&user.access))).await.status, 200);

    // Logged out: the layer refuses the revoked token.
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout"))
                .bearer_auth(&user.access)
                .header("cookie", format!("refresh_token={}", user.refresh)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    s.send(get("/app/me", Some(&user.access)))
        .await
        .assert_problem(401);
    assert_eq!(
        s.send(get("/app/me", Some(&member.access))).await.status,
        200
    );
}

/// An administration endpoint of the application's own: a role guard on the layer (403 for
/// a member, 401 without a token), the engine's errors answered with `?` in the contract's
/// shape (422 for an address that is not one), and the sessions as `GET /sessions` shows
/// them, found by address however it is written.
pub async fn role_guard_and_admin_endpoint(t: Target) {
    let backends = Backends::memory();
    let auth = backends
        .stores(OtpAuth::builder(test_config()))
        .mailer(backends.mailer)
        .hooks(example_common::ExampleHooks::new(["boss@example.com"]))
        .build()
        .unwrap();
    let s = TestServer::start_auth(t.adapter, auth, backends.mailbox).await;
    let boss = s.login("boss@example.com").await;
    let hank = s.login("hank@example.com").await;
    let get = |path: &str, token: Option<&str>| {
        let mut r = s.http.get(s.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        s.send(r)
    };
    let path = "/admin/sessions?email=Hank%40Example.COM";
    let r = get(path, Some(&hank.access)).await;
    let p = r.assert_problem(403);
    assert!(p["detail"].as_str().unwrap().contains("not allowed"), "{p}");
    get(path, None).await.assert_problem(401);
    let r = get(path, Some(&boss.access)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let listed = r.json();
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
    assert_eq!(
        listed,
        json!({ "sessions": [mine] }),
        "the same fields as GET /sessions"
    );
    let r = get("/admin/sessions?email=not-an-address", Some(&boss.access)).await;
    r.assert_problem(422);
}
