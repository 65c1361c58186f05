//! The engine against mocked stores and mailers: which calls it makes, with what, and how
//! it maps each outcome.

use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::*;
use crate::code::derive_code_secret;
use crate::code::{CodeMac, IpKey};
use crate::dev_mailers::CapturingMailer;
use crate::error::BoxError;
use crate::error::TokenRejection;
use crate::mailer::Message;
use crate::mailer::template::Templates;
use crate::mailer::{MailError, MockMailer};
use crate::memory::MemoryStore;
use crate::primitives::now_secs;
use crate::store::{
    IssueOutcome, IssueRequest, NewSession, Revocation, RotateOutcome, VerifyOutcome,
};
use crate::store::{MockOtpStore, MockTokenBlacklist, StoreError};
use crate::web::bearer_token;

const SECRET: &str = "5b1f0c9e7d3a4b6c8e2f1a0d9c7b5e3f2a1d0c9b";

fn config() -> Config {
    let mut c = Config::default();
    c.tokens.secret = Some(SECRET.into());
    c
}

/// The codec of [`config`]'s tokens.
fn hs256_codec() -> TokenCodec {
    TokenCodec::hmac(
        crate::config::JwtAlgorithm::HS256,
        SECRET.as_bytes(),
        None,
        None,
        0,
    )
    .unwrap()
}

fn engine(store: MockOtpStore, bl: MockTokenBlacklist, mailer: MockMailer) -> OtpAuth {
    OtpAuth::builder(config())
        .store(store)
        .blacklist(bl)
        .mailer(mailer)
        .build()
        .unwrap()
}

fn memory_engine(config: Config, mailer: &CapturingMailer) -> OtpAuth {
    OtpAuth::builder(config)
        .stores(MemoryStore::new())
        .mailer(mailer.clone())
        .build()
        .unwrap()
}

fn client() -> ClientInfo {
    ClientInfo {
        ip: Some("198.51.100.4".parse().unwrap()),
        user_agent: Some("test-agent".into()),
        accept_language: None,
        flow: None,
        device: None,
    }
}

const ISSUED: IssueOutcome = IssueOutcome::Issued {
    resent: false,
    known_device: false,
};

#[tokio::test]
async fn request_stores_only_a_keyed_mac_and_mails_the_code() {
    let seen: Arc<Mutex<Option<IssueRequest>>> = Arc::default();
    let mut store = MockOtpStore::new();
    let s = seen.clone();
    store.expect_issue().times(1).returning(move |req| {
        *s.lock().unwrap() = Some(req.clone());
        Ok(ISSUED)
    });
    let sent: Arc<Mutex<Option<Message>>> = Arc::default();
    let mut mailer = MockMailer::new();
    let m = sent.clone();
    mailer.expect_send().times(1).returning(move |msg| {
        *m.lock().unwrap() = Some(msg.clone());
        Ok(())
    });
    let auth = engine(store, MockTokenBlacklist::new(), mailer);
    auth.request_code(" Alice@Example.COM ", &client())
        .await
        .unwrap();

    let req = seen.lock().unwrap().clone().unwrap();
    let msg = sent.lock().unwrap().clone().unwrap();
    assert_eq!(msg.to.as_str(), "alice@example.com");
    assert_eq!(msg.kind, crate::mailer::MessageKind::Login);
    let code = msg.code.as_ref().unwrap().expose().to_owned();
    assert_eq!(code.len(), 6);
    assert!(msg.text.contains(&code) && msg.html.contains(&code));
    // The key is a keyed hash, not the address; the stored value is the MAC of the code.
    assert!(!req.address.as_str().contains("alice"));
    let hasher = CodeHasher::new(&derive_code_secret(SECRET.as_bytes()));
    let email = Email::parse("alice@example.com").unwrap();
    assert_eq!(req.address, hasher.address_key(&email));
    assert!(req.code_mac.ct_eq(&hasher.code_mac(
        crate::code::Purpose::Login,
        &email,
        &Code::parse(&code, 6).unwrap()
    )));
    assert_eq!(req.code_ttl, Duration::from_secs(300));
    assert_eq!(req.ip, Some(IpKey::new("198.51.100.4".parse().unwrap())));
    assert_eq!(req.limits.per_address, 5);
    assert_eq!(req.limits.per_ip, 30);
}

#[tokio::test]
async fn rate_limited_requests_send_no_mail() {
    for outcome in [
        IssueOutcome::AddressLimited {
            retry_after: Duration::from_secs(30),
            limit: crate::store::AddressLimit::Hour,
        },
        IssueOutcome::AddressLimited {
            retry_after: Duration::from_secs(30),
            limit: crate::store::AddressLimit::Flows,
        },
        IssueOutcome::IpLimited {
            retry_after: Duration::from_secs(30),
        },
    ] {
        let mut store = MockOtpStore::new();
        store.expect_issue().returning(move |_| Ok(outcome));
        let mut mailer = MockMailer::new();
        mailer.expect_send().times(0);
        let auth = engine(store, MockTokenBlacklist::new(), mailer);
        let err = auth
            .request_code("a@example.com", &client())
            .await
            .unwrap_err();
        assert_eq!(err.status(), 429);
        assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn failed_mail_discards_the_code_and_maps_the_status() {
    for (fail, status) in [
        (MailError::Transient("timeout".into()), 503),
        (MailError::Permanent("550".into()), 502),
    ] {
        let issued: Arc<Mutex<Option<(CodeMac, crate::code::FlowKey)>>> = Arc::default();
        let mut store = MockOtpStore::new();
        let i = issued.clone();
        store.expect_issue().returning(move |req| {
            *i.lock().unwrap() = Some((req.code_mac, req.flow));
            Ok(ISSUED)
        });
        let i = issued.clone();
        store
            .expect_discard()
            .times(1)
            .withf(move |_, flow, mac| {
                i.lock()
                    .unwrap()
                    .is_some_and(|(m, f)| m.ct_eq(mac) && f == *flow)
            })
            .returning(|_, _, _| Ok(()));
        let mut mailer = MockMailer::new();
        let f = fail.clone();
        mailer.expect_send().returning(move |_| Err(f.clone()));
        let auth = engine(store, MockTokenBlacklist::new(), mailer);
        let err = auth
            .request_code("a@example.com", &client())
            .await
            .unwrap_err();
        assert_eq!(err.status(), status);
    }
}

#[derive(Debug)]
struct OnlyExampleOrg;

#[async_trait]
impl Hooks for OnlyExampleOrg {
    async fn allow(&self, email: &Email, _client: &ClientInfo) -> Result<bool, BoxError> {
        Ok(email.domain() == "example.org")
    }
    async fn subject(&self, email: &Email) -> Result<String, BoxError> {
        Ok(format!("user:{}", email.as_str()))
    }
    async fn claims(&self, subject: &str, _: &Email) -> Result<Map<String, Value>, BoxError> {
        let mut m = Map::new();
        m.insert("role".into(), Value::from("admin"));
        m.insert("sub".into(), Value::from("someone-else"));
        m.insert("exp".into(), Value::from(u64::MAX));
        m.insert("who".into(), Value::from(subject));
        Ok(m)
    }
}

#[tokio::test]
async fn refused_addresses_get_the_same_answer_but_no_mail_and_no_usable_code() {
    let mailer = CapturingMailer::new();
    let auth = OtpAuth::builder(config())
        .stores(MemoryStore::new())
        .mailer(mailer.clone())
        .hooks(OnlyExampleOrg)
        .build()
        .unwrap();
    auth.request_code("bob@example.com", &client())
        .await
        .unwrap();
    assert_eq!(mailer.count(), 0);
    // No code guessed works: try a handful, then the address is locked out like any other.
    for c in ["000000", "123456", "999999"] {
        let e = auth
            .verify_code("bob@example.com", c, &client())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidCode), "{e:?}");
    }
    // Limits apply to refused addresses too.
    for _ in 0..4 {
        let _ = auth.request_code("bob@example.com", &client()).await;
    }
    let e = auth
        .request_code("bob@example.com", &client())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 429);

    auth.request_code("ann@example.org", &client())
        .await
        .unwrap();
    let code = mailer.last_code("ann@example.org").unwrap();
    let pair = auth
        .verify_code("ann@example.org", &code, &client())
        .await
        .unwrap();
    // Subject and extra claims from the hooks; reserved claims cannot be overridden.
    assert_eq!(pair.claims.sub, "user:ann@example.org");
    assert_eq!(pair.claims.extra.get("role"), Some(&Value::from("admin")));
    assert_eq!(
        pair.claims.extra.get("who"),
        Some(&Value::from("user:ann@example.org"))
    );
    assert!(!pair.claims.extra.contains_key("sub") && !pair.claims.extra.contains_key("exp"));
    let user = auth.authenticate(&pair.access_token).await.unwrap();
    assert_eq!(user.subject, "user:ann@example.org");
    assert_eq!(user.claims.extra.get("role"), Some(&Value::from("admin")));
}

#[tokio::test]
async fn malformed_codes_never_reach_the_store() {
    let mut store = MockOtpStore::new();
    store.expect_verify().times(0);
    store.expect_verify_and_open().times(0);
    let auth = engine(store, MockTokenBlacklist::new(), MockMailer::new());
    for bad in ["12345", "1234567", "12a456", "", " 123456"] {
        let e = auth
            .verify_code("a@example.com", bad, &client())
            .await
            .unwrap_err();
        assert_eq!(e.status(), 422, "{bad:?}");
    }
    let e = auth
        .verify_code("not-an-address", "123456", &client())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 422);
}

#[tokio::test]
async fn verify_outcomes_map_to_the_contract() {
    for (outcome, status) in [
        (VerifyOutcome::NoCode { attempts_left: 2 }, 400),
        (VerifyOutcome::Mismatch { attempts_left: 2 }, 400),
        (VerifyOutcome::Mismatch { attempts_left: 0 }, 400),
        (
            VerifyOutcome::LockedOut {
                retry_after: Duration::from_secs(60),
            },
            429,
        ),
        (
            VerifyOutcome::IpLimited {
                retry_after: Duration::from_secs(60),
            },
            429,
        ),
    ] {
        let mut store = MockOtpStore::new();
        store.expect_verify().returning(move |_| Ok(outcome));
        let mut bl = MockTokenBlacklist::new();
        bl.expect_create_session().times(0);
        let auth = engine(store, bl, MockMailer::new());
        let e = auth
            .verify_code("a@example.com", "123456", &client())
            .await
            .unwrap_err();
        assert_eq!(e.status(), status, "{outcome:?}");
    }
}

#[tokio::test]
async fn verified_code_opens_one_session_matching_the_tokens() {
    // Two stores kept apart: the code is checked, then the session recorded.
    let mut store = MockOtpStore::new();
    store
        .expect_verify()
        .times(1)
        .returning(|_| Ok(VerifyOutcome::Verified));
    store.expect_verify_and_open().times(0);
    let created: Arc<Mutex<Vec<NewSession>>> = Arc::default();
    let c = created.clone();
    let mut bl = MockTokenBlacklist::new();
    bl.expect_create_session().times(1).returning(move |s| {
        c.lock().unwrap().push(s.clone());
        Ok(0)
    });
    let auth = engine(store, bl, MockMailer::new());
    let pair = auth
        .verify_code("A@Example.com", "123456", &client())
        .await
        .unwrap();
    let s = created.lock().unwrap()[0].clone();
    assert_eq!(s.sid, pair.claims.sid);
    assert_eq!(pair.claims.email, "a@example.com");
    assert_eq!(pair.expires_in, 3600);
    assert_eq!(pair.refresh_expires_in, 7 * 86_400);
    assert_eq!(s.user_agent.as_deref(), Some("test-agent"));
    assert_eq!(s.ip.as_deref(), Some("198.51.100.4"));
    assert!(
        !s.subject_key.contains("example"),
        "subject key is a keyed hash"
    );
    // The session id is shared by both tokens; the refresh jti is the one recorded.
    let codec = hs256_codec();
    let refresh = codec
        .verify(&pair.refresh_token, TokenType::Refresh)
        .unwrap();
    assert_eq!(refresh.sid, s.sid);
    assert_eq!(refresh.jti, s.refresh_jti);
    assert_ne!(refresh.jti, pair.claims.jti);
}

#[tokio::test]
async fn store_failures_are_503_and_protected_routes_fail_closed() {
    let mut store = MockOtpStore::new();
    store
        .expect_issue()
        .returning(|_| Err(StoreError::unavailable("connection refused")));
    store
        .expect_verify()
        .returning(|_| Err(StoreError::unavailable("timeout")));
    let mut bl = MockTokenBlacklist::new();
    bl.expect_check_access()
        .returning(|_, _| Err(StoreError::unavailable("timeout")));
    let mut mailer = MockMailer::new();
    mailer.expect_send().times(0);
    let auth = engine(store, bl, mailer);
    let e = auth
        .request_code("a@example.com", &client())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 503);
    let e = auth
        .verify_code("a@example.com", "123456", &client())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 503);
    // A perfectly valid token is still refused while revocation cannot be checked.
    let codec = hs256_codec();
    let t = codec
        .sign(codec.claims(
            TokenType::Access,
            "s",
            "a@example.com",
            "sid",
            60,
            Map::new(),
        ))
        .unwrap();
    let e = auth.authenticate(&t.token).await.unwrap_err();
    assert_eq!(e.status(), 503);
}

#[tokio::test]
async fn revoked_access_is_401_and_refresh_reuse_is_reported() {
    let mut bl = MockTokenBlacklist::new();
    bl.expect_check_access()
        .returning(|_, _| Ok(AccessStatus::Revoked));
    bl.expect_rotate_refresh()
        .returning(|_| Ok(RotateOutcome::Reused));
    let auth = engine(MockOtpStore::new(), bl, MockMailer::new());
    let codec = hs256_codec();
    let access = codec
        .sign(codec.claims(
            TokenType::Access,
            "s",
            "a@example.com",
            "sid",
            60,
            Map::new(),
        ))
        .unwrap();
    let e = auth.authenticate(&access.token).await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized(TokenRejection::Revoked)));
    let refresh = codec
        .sign(codec.claims(
            TokenType::Refresh,
            "s",
            "a@example.com",
            "sid",
            60,
            Map::new(),
        ))
        .unwrap();
    let e = auth
        .refresh(&refresh.token, &ClientInfo::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized(TokenRejection::Reused)));
    // An access token is not a refresh token; the store is not even asked.
    let e = auth
        .refresh(&access.token, &ClientInfo::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized(TokenRejection::WrongType)));
}

#[tokio::test]
async fn logout_with_bad_tokens_touches_nothing() {
    let mut bl = MockTokenBlacklist::new();
    bl.expect_revoke().times(0);
    let auth = engine(MockOtpStore::new(), bl, MockMailer::new());
    auth.logout(None, None, &ClientInfo::default())
        .await
        .unwrap();
    auth.logout(
        Some("garbage"),
        Some("also.garbage.here"),
        &ClientInfo::default(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn logout_revokes_the_access_jti_and_both_sessions() {
    let seen: Arc<Mutex<Vec<Revocation>>> = Arc::default();
    let mut bl = MockTokenBlacklist::new();
    let s = seen.clone();
    bl.expect_revoke().times(1).returning(move |r| {
        s.lock().unwrap().push(r.clone());
        Ok(())
    });
    let auth = engine(MockOtpStore::new(), bl, MockMailer::new());
    let codec = hs256_codec();
    let access = codec
        .sign(codec.claims(
            TokenType::Access,
            "s",
            "a@example.com",
            "sid-a",
            60,
            Map::new(),
        ))
        .unwrap();
    let refresh = codec
        .sign(codec.claims(
            TokenType::Refresh,
            "s",
            "a@example.com",
            "sid-r",
            60,
            Map::new(),
        ))
        .unwrap();
    auth.logout(
        Some(&access.token),
        Some(&refresh.token),
        &ClientInfo::default(),
    )
    .await
    .unwrap();
    let r = seen.lock().unwrap()[0].clone();
    assert_eq!(r.sessions, vec!["sid-a".to_owned(), "sid-r".to_owned()]);
    let a = r.access.unwrap();
    assert_eq!(
        (a.sid.as_str(), a.jti.as_str(), a.expires_at),
        ("sid-a", access.claims.jti.as_str(), access.claims.exp)
    );
}

#[tokio::test]
async fn full_flow_on_the_memory_store() {
    let mailer = CapturingMailer::new();
    let strict = {
        let mut c = config();
        c.sessions.reuse_interval_seconds = 0;
        c
    };
    let auth = memory_engine(strict, &mailer);
    auth.request_code("Flow@Example.com", &client())
        .await
        .unwrap();
    let code = mailer.last_code("flow@example.com").unwrap();
    let pair = auth
        .verify_code("FLOW@example.com", &code, &client())
        .await
        .unwrap();
    assert_eq!(
        auth.authenticate(&pair.access_token).await.unwrap().email,
        "flow@example.com"
    );
    // Rotation: the new refresh works once, the old one is spent and kills the session.
    let second = auth
        .refresh(&pair.refresh_token, &ClientInfo::default())
        .await
        .unwrap();
    assert!(auth.authenticate(&second.access_token).await.is_ok());
    let e = auth
        .refresh(&pair.refresh_token, &ClientInfo::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized(TokenRejection::Reused)));
    let e = auth.authenticate(&second.access_token).await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized(TokenRejection::Revoked)));
    let e = auth
        .refresh(&second.refresh_token, &ClientInfo::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized(TokenRejection::Revoked)));
}

#[tokio::test]
async fn the_parent_refreshes_on_the_same_lineage_within_the_interval() {
    let mailer = CapturingMailer::new();
    let auth = memory_engine(config(), &mailer);
    auth.request_code("tabs@example.com", &client())
        .await
        .unwrap();
    let code = mailer.last_code("tabs@example.com").unwrap();
    let first = auth
        .verify_code("tabs@example.com", &code, &client())
        .await
        .unwrap();
    let second = auth
        .refresh(&first.refresh_token, &ClientInfo::default())
        .await
        .unwrap();
    // Another tab with the same cookie: a fresh access token and the current refresh
    // token re-issued (same jti), not a second branch.
    let again = auth
        .refresh(&first.refresh_token, &ClientInfo::default())
        .await
        .unwrap();
    assert!(auth.authenticate(&again.access_token).await.is_ok());
    let codec = hs256_codec();
    let jti = |t: &str| codec.verify(t, TokenType::Refresh).unwrap().jti;
    assert_eq!(jti(&again.refresh_token), jti(&second.refresh_token));
    let third = auth
        .refresh(&again.refresh_token, &ClientInfo::default())
        .await
        .unwrap();
    // Now the first token is a grandparent: reuse, the session ends.
    let e = auth
        .refresh(&first.refresh_token, &ClientInfo::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized(TokenRejection::Reused)));
    assert!(matches!(
        auth.authenticate(&third.access_token).await,
        Err(Error::Unauthorized(TokenRejection::Revoked))
    ));
}

#[tokio::test]
async fn sessions_end_at_the_absolute_lifetime_whatever_the_refreshes() {
    let mailer = CapturingMailer::new();
    let auth = memory_engine(
        {
            let mut c = config();
            c.sessions.max_days = 1;
            c.tokens.refresh_expire_days = 7;
            c
        },
        &mailer,
    );
    auth.request_code("abs@example.com", &client())
        .await
        .unwrap();
    let code = mailer.last_code("abs@example.com").unwrap();
    let pair = auth
        .verify_code("abs@example.com", &code, &client())
        .await
        .unwrap();
    let codec = hs256_codec();
    let end = |t: &str| {
        let c = codec.verify(t, TokenType::Refresh).unwrap();
        (c.exp, c.extra.get("sxp").and_then(|v| v.as_u64()))
    };
    let (exp, sxp) = end(&pair.refresh_token);
    let sxp = sxp.expect("the session end travels in the refresh token");
    assert!(exp <= sxp && sxp <= now_secs() + 86_400, "{exp} {sxp}");
    assert!(pair.refresh_expires_in <= 86_400);
    let next = auth
        .refresh(&pair.refresh_token, &ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(
        end(&next.refresh_token).1,
        Some(sxp),
        "rotation keeps the end"
    );
    assert!(end(&next.refresh_token).0 <= sxp, "and never extends it");
}

#[tokio::test]
async fn logout_all_ends_every_device() {
    let mailer = CapturingMailer::new();
    let auth = memory_engine(config(), &mailer);
    let mut pairs = Vec::new();
    for _ in 0..3 {
        auth.request_code("multi@example.com", &client())
            .await
            .unwrap();
        let code = mailer.last_code("multi@example.com").unwrap();
        pairs.push(
            auth.verify_code("multi@example.com", &code, &client())
                .await
                .unwrap(),
        );
    }
    auth.request_code("other@example.com", &client())
        .await
        .unwrap();
    let code = mailer.last_code("other@example.com").unwrap();
    let other = auth
        .verify_code("other@example.com", &code, &client())
        .await
        .unwrap();
    assert_eq!(
        auth.sessions()
            .end_all(&pairs[0].access_token, &ClientInfo::default())
            .await
            .unwrap(),
        3
    );
    for p in &pairs {
        assert!(matches!(
            auth.authenticate(&p.access_token).await,
            Err(Error::Unauthorized(TokenRejection::Revoked))
        ));
        assert!(matches!(
            auth.refresh(&p.refresh_token, &ClientInfo::default()).await,
            Err(Error::Unauthorized(TokenRejection::Revoked))
        ));
    }
    assert!(auth.authenticate(&other.access_token).await.is_ok());
}

#[tokio::test]
async fn magic_mode_sends_nothing_and_accepts_zeros_for_listed_addresses_only() {
    let mailer = CapturingMailer::new();
    let auth = memory_engine(
        {
            let mut c = config();
            c.codes.disable_local_auth = true;
            c.codes.magic_emails = vec!["*@test.example.com".into()];
            c
        },
        &mailer,
    );
    auth.request_code("dev@Test.Example.com", &client())
        .await
        .unwrap();
    assert_eq!(mailer.count(), 0);
    auth.verify_code("dev@test.example.com", "000000", &client())
        .await
        .unwrap();
    // Single use like any code.
    assert!(matches!(
        auth.verify_code("dev@test.example.com", "000000", &client())
            .await,
        Err(Error::InvalidCode)
    ));
    // Not listed: a real code by mail; zeros are just a wrong guess.
    auth.request_code("real@example.com", &client())
        .await
        .unwrap();
    assert_eq!(mailer.count(), 1);
    let code = mailer.last_code("real@example.com").unwrap();
    if code != "000000" {
        assert!(matches!(
            auth.verify_code("real@example.com", "000000", &client())
                .await,
            Err(Error::InvalidCode)
        ));
    }
}

#[tokio::test]
async fn code_length_follows_the_configuration() {
    let mailer = CapturingMailer::new();
    let auth = memory_engine(
        {
            let mut c = config();
            c.codes.length = 8;
            c
        },
        &mailer,
    );
    auth.request_code("len@example.com", &client())
        .await
        .unwrap();
    let code = mailer.last_code("len@example.com").unwrap();
    assert_eq!(code.len(), 8);
    let e = auth
        .verify_code("len@example.com", &code[..6], &client())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 422);
    auth.verify_code("len@example.com", &code, &client())
        .await
        .unwrap();
}

#[test]
fn bearer_parsing() {
    assert_eq!(bearer_token(Some("Bearer abc")).unwrap(), "abc");
    assert_eq!(bearer_token(Some("bearer   abc ")).unwrap(), "abc");
    assert!(matches!(
        bearer_token(None),
        Err(Error::Unauthorized(TokenRejection::Missing))
    ));
    assert!(matches!(
        bearer_token(Some("Basic dXNlcg==")),
        Err(Error::Unauthorized(TokenRejection::Missing))
    ));
    assert!(matches!(
        bearer_token(Some("Bearer ")),
        Err(Error::Unauthorized(TokenRejection::Invalid))
    ));
}

#[test]
fn builder_refuses_weak_configuration() {
    let e = OtpAuth::builder(Config::default())
        .mailer(CapturingMailer::new())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("OTP_AUTH_JWT_SECRET"), "{e}");
}

#[test]
fn builder_requires_a_store_and_a_mailer_and_names_the_fix() {
    let mailer = CapturingMailer::new();
    let e = OtpAuth::builder(config())
        .mailer(mailer.clone())
        .build()
        .unwrap_err()
        .to_string();
    for hint in [".stores(", "MemoryStore", ".memory_store()"] {
        assert!(e.contains(hint), "{e}");
    }
    let e = OtpAuth::builder(config())
        .store(MemoryStore::new())
        .mailer(mailer.clone())
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains(".blacklist(") && e.contains(".stores("), "{e}");
    let e = OtpAuth::builder(config())
        .blacklist(MemoryStore::new())
        .mailer(mailer.clone())
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains(".store(") && e.contains(".stores("), "{e}");
    let e = OtpAuth::builder(config())
        .memory_store()
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains(".mailer("), "{e}");
    // Chosen explicitly, either way, the memory store serves.
    OtpAuth::builder(config())
        .memory_store()
        .mailer(mailer.clone())
        .build()
        .unwrap();
    OtpAuth::builder(config())
        .mailer(Arc::new(mailer) as Arc<dyn crate::mailer::Mailer>)
        .stores(MemoryStore::new())
        .build()
        .unwrap();
}

/// The same parts in any order give the same engine: English templates and the whole set,
/// either way round, mail the custom English subject.
#[tokio::test]
async fn builder_calls_in_any_order_give_the_same_engine() {
    let custom = Templates {
        subject: "Custom {code}".to_owned(),
        ..Templates::default()
    };
    let mut subjects = Vec::new();
    for english_first in [true, false] {
        let mailer = CapturingMailer::new();
        let builder = OtpAuth::builder(config());
        let builder = if english_first {
            builder
                .templates(custom.clone())
                .mail_templates(MailTemplates::builtin())
                .hooks(DefaultHooks)
                .mailer(mailer.clone())
                .memory_store()
        } else {
            builder
                .memory_store()
                .mailer(mailer.clone())
                .hooks(Arc::new(DefaultHooks) as Arc<dyn Hooks>)
                .mail_templates(MailTemplates::builtin())
                .templates(custom.clone())
        };
        let auth = builder.build().unwrap();
        auth.request_code("order@example.com", &client())
            .await
            .unwrap();
        let m = mailer.last_message("order@example.com").unwrap();
        subjects.push(m.subject.starts_with("Custom "));
    }
    assert_eq!(subjects, [true, true]);
}

/// Collects everything logged while `f` runs on a current-thread runtime.
/// What `f` logs (every level), run on this thread.
///
/// One global subscriber writes into the buffer of the thread's capture, if any: with
/// per-test `set_default` subscribers, tracing's global cache of callsite interest races
/// between test threads (a callsite first hit on a thread without a subscriber can stay
/// disabled), and lines went missing now and then.
pub(crate) fn capture_logs<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) -> String {
    use std::cell::RefCell;
    thread_local! {
        static CAPTURE: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    }
    struct ThreadBuf;
    impl std::io::Write for ThreadBuf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            CAPTURE.with(|c| {
                if let Some(buf) = c.borrow_mut().as_mut() {
                    buf.extend_from_slice(b);
                }
            });
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| ThreadBuf)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in otp-core's tests");
    });
    CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(f());
    let out = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    String::from_utf8(out).unwrap()
}

#[test]
fn logs_show_neither_codes_nor_addresses_nor_tokens() {
    let mailer = CapturingMailer::new();
    let tokens: Arc<Mutex<Vec<String>>> = Arc::default();
    let t = tokens.clone();
    let m = mailer.clone();
    let logs = capture_logs(|| async move {
        // Strict rotation, so that presenting the spent token is reuse.
        let strict = {
            let mut c = config();
            c.sessions.reuse_interval_seconds = 0;
            c
        };
        let auth = memory_engine(strict, &m);
        auth.request_code("Secret.Person@Example.com", &client())
            .await
            .unwrap();
        let code = m.last_code("secret.person@example.com").unwrap();
        let wrong = if code == "111111" { "222222" } else { "111111" };
        let refused = auth
            .verify_code("secret.person@example.com", wrong, &client())
            .await;
        assert!(matches!(refused, Err(Error::InvalidCode)), "{refused:?}");
        let pair = auth
            .verify_code("secret.person@example.com", &code, &client())
            .await
            .unwrap();
        let second = auth
            .refresh(&pair.refresh_token, &ClientInfo::default())
            .await
            .unwrap();
        let reused = auth
            .refresh(&pair.refresh_token, &ClientInfo::default())
            .await;
        assert!(
            matches!(reused, Err(Error::Unauthorized(TokenRejection::Reused))),
            "{reused:?}"
        );
        auth.logout(
            Some(&second.access_token),
            Some(&second.refresh_token),
            &ClientInfo::default(),
        )
        .await
        .unwrap();
        t.lock().unwrap().extend([
            code,
            pair.access_token,
            pair.refresh_token,
            second.access_token,
            second.refresh_token,
        ]);
    });
    for step in [
        "login code sent",
        "verification failed",
        "login verified",
        "refresh token reuse detected",
    ] {
        assert!(logs.contains(step), "the flow logged {step:?}: {logs}");
    }
    let key = CodeHasher::new(&derive_code_secret(SECRET.as_bytes()))
        .address_key(&Email::parse("secret.person@example.com").unwrap());
    assert!(
        logs.contains(key.as_str()),
        "addresses appear as their keyed hash"
    );
    assert!(
        !logs.to_lowercase().contains("secret.person"),
        "address leaked: {logs}"
    );
    for secret in tokens.lock().unwrap().iter() {
        assert!(!logs.contains(secret.as_str()), "{secret} leaked: {logs}");
    }
    assert!(!logs.contains(SECRET));
}

#[test]
fn magic_code_next_to_a_delivering_mailer_needs_a_narrow_allow_list() {
    let build = |patterns: &[&str], mailer: Arc<dyn Mailer>| {
        let mut c = config();
        c.codes.disable_local_auth = true;
        c.codes.magic_emails = patterns.iter().map(|p| (*p).to_owned()).collect();
        OtpAuth::builder(c)
            .stores(MemoryStore::new())
            .mailer(mailer)
            .build()
    };
    let real: Arc<dyn Mailer> = Arc::new(crate::mailer::mailer_fn(
        |_m: crate::mailer::Message| async { Ok(()) },
    ));
    for patterns in [
        &[][..],
        &["*"],
        &["*@*"],
        &["*@test.example.com", "*@*.com"],
    ] {
        let e = build(patterns, real.clone()).unwrap_err().to_string();
        assert!(
            e.contains("OTP_AUTH_MAGIC_OTP_EMAILS") && e.contains("OTP_AUTH_DISABLE_LOCAL_AUTH"),
            "{patterns:?}: {e}"
        );
    }
    assert!(build(&["*@test.example.com"], real.clone()).is_ok());
    // A development mailer delivers nothing: the seed's local set-up starts as before.
    for dev in [
        Arc::new(crate::mailer::ConsoleMailer::new()) as Arc<dyn Mailer>,
        Arc::new(CapturingMailer::new()),
    ] {
        assert!(!dev.delivers_mail());
        assert!(build(&[], dev.clone()).is_ok());
        assert!(build(&["*"], dev).is_ok());
    }
    assert!(
        real.delivers_mail(),
        "a mailer delivers unless it says otherwise"
    );
}

#[test]
fn magic_mode_warns_at_start_and_on_every_use() {
    let mailer = CapturingMailer::new();
    let logs = capture_logs(|| async move {
        let auth = memory_engine(
            {
                let mut c = config();
                c.codes.disable_local_auth = true;
                c
            },
            &mailer,
        );
        auth.request_code("m1@example.com", &client())
            .await
            .unwrap();
        auth.verify_code("m1@example.com", "000000", &client())
            .await
            .unwrap();
        auth.request_code("m2@example.com", &client())
            .await
            .unwrap();
    });
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("Never enable this in production")),
        "{logs}"
    );
    assert_eq!(
        warnings
            .iter()
            .filter(|l| l.contains("magic code issued"))
            .count(),
        2,
        "{logs}"
    );
    assert_eq!(
        warnings
            .iter()
            .filter(|l| l.contains("login with the magic code"))
            .count(),
        1,
        "{logs}"
    );
}

#[test]
fn console_mailer_warns_at_start_and_logs_one_line_per_mail() {
    let logs = capture_logs(|| async {
        let auth = OtpAuth::builder(config())
            .stores(MemoryStore::new())
            .mailer(crate::mailer::ConsoleMailer::new())
            .build()
            .unwrap();
        auth.request_code("dev@example.com", &client())
            .await
            .unwrap();
    });
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("development only")),
        "{logs}"
    );
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("login code for dev@example.com: "))
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
    let code = lines[0].rsplit(' ').next().unwrap();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{}",
        lines[0]
    );
}

#[derive(Debug)]
struct SlowMailer(Duration);

#[async_trait]
impl Mailer for SlowMailer {
    async fn send(&self, _: &Message) -> Result<(), MailError> {
        tokio::time::sleep(self.0).await;
        Ok(())
    }
}

#[tokio::test]
async fn refused_addresses_take_about_as_long_as_a_mail() {
    let auth = OtpAuth::builder(config())
        .stores(MemoryStore::new())
        .mailer(SlowMailer(Duration::from_millis(400)))
        .hooks(OnlyExampleOrg)
        .build()
        .unwrap();
    // Learn the mail latency from real sends.
    for i in 0..3 {
        auth.request_code(&format!("u{i}@example.org"), &client())
            .await
            .unwrap();
    }
    let started = Instant::now();
    auth.request_code("stranger@example.com", &client())
        .await
        .unwrap();
    let took = started.elapsed();
    // The pacing sleeps at least 85% of the learnt latency (400 ms); the floor used before
    // any mail was timed (150 ms, at most 172 ms with its jitter) would not reach it, nor
    // would an answer without pacing (well under a millisecond).
    assert!(
        took >= Duration::from_millis(340),
        "refused address answered in {took:?}"
    );
}

#[tokio::test]
async fn refused_addresses_are_paced_from_a_floor_before_any_mail_was_timed() {
    let auth = OtpAuth::builder(config())
        .stores(MemoryStore::new())
        .mailer(SlowMailer(Duration::from_millis(120)))
        .hooks(OnlyExampleOrg)
        .build()
        .unwrap();
    // Right after a start, no mail has been sent yet: the answer still takes about what a
    // mail would (the floor, with its jitter of at most 15% below).
    let started = Instant::now();
    auth.request_code("stranger@example.com", &client())
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= PACING_FLOOR.mul_f64(0.85),
        "refused address answered in {took:?} before any mail was timed"
    );
}

/// Hooks that count `subject` calls and fail the first one.
#[derive(Debug, Default)]
struct CountingHooks {
    calls: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl Hooks for CountingHooks {
    async fn subject(&self, email: &Email) -> Result<String, BoxError> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n == 0 {
            return Err("the user directory is down".into());
        }
        Ok(format!("user-{}", email.as_str()))
    }
}

#[tokio::test]
async fn application_hooks_see_only_verified_addresses_and_a_failing_hook_keeps_the_code() {
    let mailer = CapturingMailer::new();
    let hooks = Arc::new(CountingHooks::default());
    let auth = OtpAuth::builder(config())
        .stores(MemoryStore::new())
        .mailer(mailer.clone())
        .hooks(hooks.clone())
        .build()
        .unwrap();
    let calls = || hooks.calls.load(std::sync::atomic::Ordering::SeqCst);
    // No pending code, then a wrong code: the hook is never asked.
    assert!(matches!(
        auth.verify_code("h@example.com", "123456", &client()).await,
        Err(Error::InvalidCode)
    ));
    auth.request_code("h@example.com", &client()).await.unwrap();
    let code = mailer.last_code("h@example.com").unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert!(matches!(
        auth.verify_code("h@example.com", wrong, &client()).await,
        Err(Error::InvalidCode)
    ));
    assert_eq!(calls(), 0, "a hook saw an unverified address");
    // The right code: the hook fails once, and the code is given back.
    let e = auth
        .verify_code("h@example.com", &code, &client())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 500);
    assert_eq!(calls(), 1);
    let pair = auth
        .verify_code("h@example.com", &code, &client())
        .await
        .unwrap();
    assert_eq!(pair.claims.sub, "user-h@example.com");
}

#[tokio::test]
async fn an_async_closure_serves_as_mailer() {
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = sent.clone();
    let mailer = crate::mailer::mailer_fn(move |m: Message| {
        let s = s.clone();
        async move {
            if m.to.domain() == "blocked.example" {
                return Err(MailError::Permanent("blocked".into()));
            }
            s.lock().unwrap().push(m.code.unwrap().expose().to_owned());
            Ok(())
        }
    });
    let auth = OtpAuth::builder(config())
        .stores(MemoryStore::new())
        .mailer(mailer)
        .build()
        .unwrap();
    auth.request_code("c@example.com", &client()).await.unwrap();
    let code = sent.lock().unwrap()[0].clone();
    auth.verify_code("c@example.com", &code, &client())
        .await
        .unwrap();
    let e = auth
        .request_code("x@blocked.example", &client())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 502);
}

/// Hooks whose `change_email` fails while `fail` is set, and moves the user otherwise.
#[derive(Debug, Default)]
struct MovingHooks {
    fail: std::sync::atomic::AtomicBool,
    changes: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Hooks for MovingHooks {
    async fn subject(&self, _email: &Email) -> Result<String, BoxError> {
        Ok("user-1".to_owned())
    }

    async fn change_email(
        &self,
        subject: &str,
        old: &Email,
        new: &Email,
    ) -> Result<EmailChange, BoxError> {
        assert_eq!(subject, "user-1");
        assert_ne!(old, new);
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("the user directory is down".into());
        }
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(EmailChange::Changed)
    }
}

#[tokio::test]
async fn an_email_change_keeps_its_code_when_the_hook_fails_and_survives_a_failed_notice() {
    use std::sync::atomic::Ordering::SeqCst;

    let mailer = CapturingMailer::new();
    let hooks = Arc::new(MovingHooks::default());
    let mut config = config();
    config.http.public_url = Some("https://app.example.com/auth".into());
    let auth = OtpAuth::builder(config)
        .stores(MemoryStore::new())
        .mailer(mailer.clone())
        .hooks(hooks.clone())
        .build()
        .unwrap();
    let de = ClientInfo {
        accept_language: Some("de-DE".into()),
        ..client()
    };
    auth.request_code("old@example.com", &client())
        .await
        .unwrap();
    let code = mailer.last_code("old@example.com").unwrap();
    let pair = auth
        .verify_code("old@example.com", &code, &client())
        .await
        .unwrap();
    auth.email_change()
        .request(&pair.access_token, "New@Example.com", &de)
        .await
        .unwrap();
    let sent = mailer.last_message("new@example.com").unwrap();
    assert_eq!(sent.kind, crate::mailer::MessageKind::EmailChange);
    assert_eq!(
        sent.link, None,
        "an email-change mail carries no sign-in link"
    );
    assert_eq!(sent.language, "de");
    let code = sent.code.unwrap().expose().to_owned();

    // The hook fails: 500, nothing changed, and the code is given back.
    hooks.fail.store(true, SeqCst);
    let e = auth
        .email_change()
        .verify(&pair.access_token, "new@example.com", &code, &de)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 500, "{e}");
    assert!(auth.authenticate(&pair.access_token).await.is_ok());

    // Again, with the notice failing to go out: the change is done all the same.
    hooks.fail.store(false, SeqCst);
    mailer.fail_next(MailError::Transient("451 try later".into()));
    let mails = mailer.count();
    let moved = auth
        .email_change()
        .verify(&pair.access_token, "new@example.com", &code, &de)
        .await
        .unwrap();
    assert_eq!(hooks.changes.load(SeqCst), 1);
    assert_eq!(mailer.count(), mails, "the notice failed");
    assert_eq!(moved.claims.email, "new@example.com");
    assert_eq!(moved.claims.sub, "user-1");
    assert_ne!(moved.claims.sid, pair.claims.sid, "a new session");
    assert!(matches!(
        auth.authenticate(&pair.access_token).await,
        Err(Error::Unauthorized(TokenRejection::Revoked))
    ));
    assert!(auth.authenticate(&moved.access_token).await.is_ok());

    // The current address cannot be the new one.
    let e = auth
        .email_change()
        .request(&moved.access_token, "new@example.com", &de)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 422, "the current address: {e}");

    // A second change mails the notice, in the request's language, without code or link.
    auth.email_change()
        .request(&moved.access_token, "third@example.com", &de)
        .await
        .unwrap();
    let code = mailer.last_code("third@example.com").unwrap();
    auth.email_change()
        .verify(&moved.access_token, "third@example.com", &code, &de)
        .await
        .unwrap();
    let notice = mailer.last_message("new@example.com").unwrap();
    assert_eq!(notice.kind, crate::mailer::MessageKind::EmailChanged);
    assert_eq!((notice.code, notice.link), (None, None));
    assert_eq!(notice.language, "de");
    assert!(notice.subject.contains("geändert"), "{}", notice.subject);
    assert!(
        notice
            .text
            .contains("th\u{2022}\u{2022}\u{2022}d@example.com"),
        "{}",
        notice.text
    );
    assert!(!notice.text.contains("third@"), "{}", notice.text);
}

#[tokio::test]
async fn check_reports_the_store_and_the_mail_server() {
    let mut config = Config::default();
    config.tokens.secret = Some(SECRET.into());
    let ready = OtpAuth::builder(config.clone())
        .stores(crate::store::MemoryStore::new())
        .mailer(crate::mailer::CapturingMailer::new())
        .build()
        .unwrap()
        .check()
        .await;
    assert!(ready.is_ready(), "{ready}");
    assert_eq!(ready.to_string(), "store: ok; mail server: ok");
    let down = OtpAuth::builder(config)
        .store(crate::contract::DownStore)
        .blacklist(crate::store::MemoryStore::new())
        .mailer(crate::mailer::CapturingMailer::new())
        .build()
        .unwrap()
        .check()
        .await;
    assert!(!down.is_ready());
    assert!(
        matches!(down.store, Err(StoreError::Unavailable(_))),
        "{down:?}"
    );
    assert!(down.to_string().starts_with("store: "), "{down}");
    assert!(down.to_string().ends_with("; mail server: ok"), "{down}");
}
