//! The SMTP mailer against real SMTP servers: the in-process recording server (message
//! content, refusals, hangs, connection reuse), postfix's `smtp-sink` (throughput), and
//! the whole login over real SMTP and real Redis through the axum router.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_parser::{MessageParser, MimeHeaders};
use otp_core::mailer::template::Templates;
use otp_core::mailer::{Mailer, Message};
use otp_core::{
    ClientInfo, Config, Error, OtpAuth, hooks::Email, mailer::CapturingMailer, store::MemoryStore,
};
use otp_smtp::SmtpMailer;
use otp_tests::smtp_server::{Behaviour, SmtpServer};
use otp_tests::{Adapter, Backends, Store, TestServer, test_config};
use serde_json::json;

fn smtp_config(port: u16) -> Config {
    let mut c = test_config();
    c.smtp.server = "127.0.0.1".into();
    c.smtp.port = port;
    c.smtp.timeout_ms = 400;
    c.mail.from = "login@example.com".into();
    c.mail.from_name = "Example Login".into();
    c
}

fn engine(config: Config) -> OtpAuth {
    let mailer = SmtpMailer::from_config(&config).unwrap();
    OtpAuth::builder(config)
        .stores(MemoryStore::new())
        .mailer(mailer)
        .build()
        .unwrap()
}

fn client() -> ClientInfo {
    ClientInfo::default()
}

#[tokio::test]
async fn the_login_mail_is_multipart_with_code_headers_and_lifetime() {
    let server = SmtpServer::start(Behaviour::Accept).await;
    let auth = engine(smtp_config(server.port));
    auth.request_code("Ada.Lovelace@Example.COM", &client())
        .await
        .unwrap();
    let got = server.received();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.from, "login@example.com");
    assert_eq!(m.to, ["ada.lovelace@example.com"]);
    assert!(m.auth.is_none(), "no AUTH without credentials");
    let parsed = MessageParser::default().parse(&m.data).unwrap();
    let from = parsed.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("Example Login"));
    assert_eq!(from.address(), Some("login@example.com"));
    let to = parsed.to().unwrap().first().unwrap();
    assert_eq!(to.address(), Some("ada.lovelace@example.com"));
    assert!(parsed.date().is_some(), "Date header");
    let id = parsed.message_id().unwrap();
    assert!(id.ends_with("@example.com"), "{id}");
    assert!(parsed.content_type().unwrap().c_subtype.as_deref() == Some("alternative"));
    let text = parsed.body_text(0).unwrap();
    let html = parsed.body_html(0).unwrap();
    let code = server.last_code("ada.lovelace@example.com").unwrap();
    assert_eq!(code.len(), 6);
    for part in [&text, &html] {
        assert!(part.contains(&code), "code missing in {part}");
        assert!(part.contains("5 minutes"), "lifetime missing in {part}");
        assert!(part.contains("Example Login"));
    }
    assert!(parsed.subject().unwrap().contains(&code));
    // The code mailed is the code that works.
    auth.verify_code("ada.lovelace@example.com", &code, &client())
        .await
        .unwrap();
}

#[tokio::test]
async fn auth_is_used_only_with_credentials() {
    let server = SmtpServer::start(Behaviour::Accept).await;
    let auth = engine({
        let mut c = smtp_config(server.port);
        c.smtp.username = Some("mailer".into());
        c.smtp.password = Some("s3cret-pass".into());
        c
    });
    auth.request_code("a@example.com", &client()).await.unwrap();
    let line = server.received()[0].auth.clone().expect("authenticated");
    assert!(line.starts_with("AUTH PLAIN"), "{line}");
    // Half a credential is a configuration error, not a silent unauthenticated send.
    let half = {
        let mut c = smtp_config(server.port);
        c.smtp.username = Some("mailer".into());
        c
    };
    assert!(SmtpMailer::from_config(&half).is_err());
}

#[tokio::test]
async fn header_injection_is_impossible() {
    let server = SmtpServer::start(Behaviour::Accept).await;
    let auth = OtpAuth::builder(smtp_config(server.port))
        .stores(MemoryStore::new())
        .mailer(SmtpMailer::from_config(&smtp_config(server.port)).unwrap())
        .templates(Templates {
            subject: "Code {code}\r\nBcc: templates@evil.example".into(),
            ..Templates::default()
        })
        .build()
        .unwrap();
    for evil in [
        "victim@example.com\r\nBcc: attacker@evil.example",
        "victim@example.com\nBcc: attacker@evil.example",
        "victim@example.com>\r\nRCPT TO:<attacker@evil.example",
        "\"victim\r\nBcc: a@evil.example\"@example.com",
    ] {
        let e = auth.request_code(evil, &client()).await.unwrap_err();
        assert_eq!(e.status(), 422, "{evil:?}");
    }
    assert!(server.received().is_empty());
    auth.request_code("victim@example.com", &client())
        .await
        .unwrap();
    let m = &server.received()[0];
    assert_eq!(m.to, ["victim@example.com"]);
    let parsed = MessageParser::default().parse(&m.data).unwrap();
    assert!(parsed.bcc().is_none(), "a Bcc header was injected");
    assert!(!parsed.subject().unwrap().contains('\n'));
    // A sender name with a line break never gets that far: the configuration refuses it.
    let bad = {
        let mut c = smtp_config(server.port);
        c.mail.from_name = "Login\r\nBcc: x@evil.example".into();
        c
    };
    assert!(bad.validate().is_err());
}

async fn request_status(config: Config) -> (Result<(), Error>, Duration) {
    let auth = engine(config);
    let started = Instant::now();
    let r = auth.request_code("someone@example.com", &client()).await;
    (r.map(drop), started.elapsed())
}

#[tokio::test]
async fn server_down_is_503() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (r, took) = request_status(smtp_config(port)).await;
    let e = r.unwrap_err();
    assert!(matches!(e, Error::MailUnavailable(_)), "{e:?}");
    assert_eq!(e.status(), 503);
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn permanent_refusal_is_502_and_temporary_is_503() {
    let server = SmtpServer::start(Behaviour::Reject).await;
    let (r, _) = request_status(smtp_config(server.port)).await;
    let e = r.unwrap_err();
    assert!(matches!(e, Error::MailRejected(_)), "{e:?}");
    assert_eq!(e.status(), 502);
    server.set_behaviour(Behaviour::TempFail);
    let (r, _) = request_status(smtp_config(server.port)).await;
    let e = r.unwrap_err();
    assert!(matches!(e, Error::MailUnavailable(_)), "{e:?}");
    assert_eq!(e.status(), 503);
}

#[tokio::test]
async fn a_silent_server_times_out_as_503() {
    let server = SmtpServer::start(Behaviour::Hang).await;
    let (r, took) = request_status(smtp_config(server.port)).await;
    let e = r.unwrap_err();
    assert_eq!(e.status(), 503, "{e:?}");
    // 400 ms per step; the whole exchange is bounded by three steps.
    assert!(took >= Duration::from_millis(350), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

#[tokio::test]
async fn the_pool_reuses_connections() {
    let server = SmtpServer::start(Behaviour::Accept).await;
    let config = smtp_config(server.port);
    let mailer = SmtpMailer::from_config(&config).unwrap();
    for i in 0..8 {
        let to = Email::parse(&format!("p{i}@example.com")).unwrap();
        let msg = Message {
            to,
            subject: "s".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
            kind: otp_core::mailer::MessageKind::Login,
            code: Some(otp_core::mailer::Code::generate(6)),
            link: None,
            language: "en".into(),
        };
        mailer.send(&msg).await.unwrap();
        // lettre parks a connection back in the pool from a spawned task after the send;
        // give it a moment, as any real traffic would.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.received().len(), 8);
    assert_eq!(
        server.connections(),
        1,
        "sequential mails share one pooled connection"
    );
}

/// A pooled connection the server has closed is replaced, not reported as a failure.
#[tokio::test]
async fn a_connection_closed_by_the_server_is_replaced() {
    let server = SmtpServer::start(Behaviour::OneMailPerConnection).await;
    let auth = engine(smtp_config(server.port));
    for i in 0..3 {
        auth.request_code(&format!("c{i}@example.com"), &client())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.received().len(), 3);
    assert_eq!(server.connections(), 3);
}

/// 400 login mails from 16 concurrent clients through the axum router, over the pool to
/// postfix's `smtp-sink`: every request is answered 200 and every mail is accepted by the
/// server (counted at the mailer), none lost or sent twice. Prints the rate, the figure
/// the README quotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_smtp_sink),
    ignore = "needs postfix's smtp-sink at OTP_TEST_SMTP_SINK: run `cargo xtask test`"
)]
async fn every_mail_reaches_smtp_sink_under_concurrent_requests() {
    let sink = otp_tests::server("OTP_TEST_SMTP_SINK");
    let (host, port) = sink.rsplit_once(':').unwrap();
    let config = {
        let mut c = test_config();
        c.smtp.server = host.into();
        c.smtp.port = port.parse().unwrap();
        c.limits.per_ip_per_minute = 1_000_000;
        c
    };
    /// The SMTP mailer, counting the messages the server accepted.
    #[derive(Debug)]
    struct Counting(SmtpMailer, Arc<std::sync::atomic::AtomicU32>);
    #[otp_core::hooks::async_trait]
    impl Mailer for Counting {
        async fn send(&self, message: &Message) -> Result<(), otp_core::mailer::MailError> {
            self.0.send(message).await?;
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }
    let accepted = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mailer = Counting(SmtpMailer::from_config(&config).unwrap(), accepted.clone());
    let auth = OtpAuth::builder(config)
        .stores(MemoryStore::new())
        .mailer(mailer)
        .build()
        .unwrap();
    let s = Arc::new(TestServer::start_auth(Adapter::Axum, auth, CapturingMailer::new()).await);
    let n: u32 = 400;
    let started = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in (w..n).step_by(16) {
                    let r = s.request_otp(&format!("sink{i}@example.com")).await;
                    assert_eq!(r.status, 200, "{}", r.text());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        n,
        "mails accepted by smtp-sink"
    );
    eprintln!(
        "smtp-sink: {n} login mails in {secs:.2} s = {:.0} mails/s (16 clients, debug build)",
        f64::from(n) / secs
    );
}

/// The whole login over real SMTP and real Redis through the axum router.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis),
    ignore = "needs a Redis server at OTP_TEST_REDIS_URL: run `cargo xtask test`"
)]
async fn login_end_to_end_over_smtp_and_redis() {
    let smtp = SmtpServer::start(Behaviour::Accept).await;
    let config = smtp_config(smtp.port);
    let backends = Backends::for_store(Store::Redis).await;
    let auth = backends
        .stores(OtpAuth::builder(config.clone()))
        .mailer(SmtpMailer::from_config(&config).unwrap())
        .build()
        .unwrap();
    let s = TestServer::start_auth(Adapter::Axum, auth, CapturingMailer::new()).await;
    assert_eq!(s.request_otp("E2E@example.com").await.status, 200);
    let code = smtp.last_code("e2e@example.com").unwrap();
    let r = s.verify_otp("e2e@example.com", &code).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let access = r.json()["access_token"].as_str().unwrap().to_owned();
    let refresh = r.refresh_cookie().unwrap();
    let r = s.protected(Some(&access)).await;
    assert_eq!(r.json(), json!({"message": "Hello, e2e@example.com!"}));
    let r = s.refresh(Some(&refresh)).await;
    assert_eq!(r.status, 200);
    // A refused send answers 502 over HTTP too.
    smtp.set_behaviour(Behaviour::Reject);
    s.request_otp("e2e@example.com").await.assert_problem(502);
}
