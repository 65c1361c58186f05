//! The login page and the sign-in link's page in a real browser: headless Chromium
//! through chromedriver, against each example app in process, with the code and the link
//! read from a real SMTP server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use otp_core::{OtpAuth, store::MemoryStore};
use otp_tests::smtp_server::{Behaviour, SmtpServer};
use otp_tests::test_config;
use otp_tests::webdriver::{Browser, binaries};

/// The example's engine on a memory store, mailing over SMTP, with the examples' user
/// directory (so the address can change), a 1 s limit on how old a sign-in may be to
/// start an email change (so the page goes through its step-up), and login flows required
/// (so the page's code and link work only through the flow cookie the page got).
fn engine(smtp_port: u16) -> OtpAuth {
    let mut config = test_config();
    config.smtp.server = "127.0.0.1".into();
    config.smtp.port = smtp_port;
    config.sessions.email_change_max_age_seconds = 1;
    // The page must carry its login flow: a code or link without it is refused.
    config.flows.binding = otp_core::config::FlowBinding::Required;
    let mailer = otp_smtp::SmtpMailer::from_config(&config).unwrap();
    OtpAuth::builder(config)
        .stores(MemoryStore::new())
        .mailer(mailer)
        .hooks(example_common::ExampleHooks::new::<&str>([]))
        .build()
        .unwrap()
}

/// The code of the first mail to `to` after the server had received `before` mails.
async fn next_code(smtp: &SmtpServer, to: &str, before: usize) -> String {
    for _ in 0..200 {
        if smtp.received().len() > before
            && let Some(code) = smtp.last_code(to)
        {
            return code;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no code arrived by SMTP for {to}");
}

async fn serve_axum(auth: OtpAuth) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum_example::app(auth);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    base
}

async fn serve_poem(auth: OtpAuth) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let app = poem_example::app(auth);
    tokio::spawn(async move {
        poem::Server::new_with_acceptor(acceptor)
            .run(app)
            .await
            .unwrap();
    });
    base
}

/// The whole journey: request a code, read it from the SMTP server, sign in, see the
/// protected message, refresh, reload (still signed in), change the address (through a
/// step-up), log out, reload (signed out), and an error's `detail` shown on the page.
async fn journey(serve: impl AsyncFnOnce(OtpAuth) -> String, screenshot: Option<&str>) {
    let (driver, chromium) = binaries();
    let smtp = SmtpServer::start(Behaviour::Accept).await;
    let base = serve(engine(smtp.port)).await;
    let b = Browser::start(&driver, &chromium).await;
    b.goto(&format!("{base}/")).await;
    b.wait_text("h1", "Sign in with a code").await;

    // A bad address: the server's detail is shown.
    b.type_into("#email", "someone@localhost").await; // the browser accepts it; the server does not
    b.click("#send").await;
    b.wait_text("#error", "Invalid email address").await;

    b.type_into("#email", "Browser.User@Example.com").await;
    b.click("#send").await;
    b.wait_text("#status", "We sent a code").await;
    let code = {
        let mut code = None;
        for _ in 0..100 {
            code = smtp.last_code("browser.user@example.com");
            if code.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        code.expect("the code arrived by SMTP")
    };

    // A wrong code first: 400's detail.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    b.type_into("#code", wrong).await;
    b.click("#verify").await;
    b.wait_text("#error", "Invalid or expired OTP").await;

    b.type_into("#code", &code).await;
    b.click("#verify").await;
    b.wait_text("#message", "Hello, browser.user@example.com!")
        .await;
    // The access token is in memory only, never in storage; the refresh cookie is HttpOnly.
    let stored = b
        .eval("return JSON.stringify([Object.keys(localStorage), Object.keys(sessionStorage), document.cookie])")
        .await;
    assert_eq!(
        stored.as_str().unwrap(),
        "[[],[],\"\"]",
        "nothing readable by scripts"
    );
    if let Some(path) = screenshot {
        std::fs::write(path, b.screenshot().await).unwrap();
    }

    b.click("#refresh").await;
    b.wait_text("#status", "Token refreshed").await;
    b.wait_text("#message", "Hello, browser.user@example.com!")
        .await;

    // Reload: the access token is gone, the cookie brings the session back.
    b.reload().await;
    b.wait_text("#status", "Welcome back").await;
    b.wait_text("#message", "Hello, browser.user@example.com!")
        .await;

    // Change the address. The sign-in is older than the 1 s the engine allows for that, so
    // the page first asks for a code to the current address (step-up), then sends one to
    // the new address.
    // (`auth_time` is in whole seconds: 2.1 s is more than 1 s whatever the rounding.)
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    b.click("#change-email").await;
    b.type_into("#new-email", "Browser.New@Example.com").await;
    let before = smtp.received().len();
    b.click("#send-change").await;
    b.wait_text("#status", "First confirm it is you").await;
    let reauth = next_code(&smtp, "browser.user@example.com", before).await;
    b.type_into("#reauth-code", &reauth).await;
    let before = smtp.received().len();
    b.click("#confirm-reauth").await;
    b.wait_text("#status", "We sent a code to Browser.New@Example.com")
        .await;
    let change = next_code(&smtp, "browser.new@example.com", before).await;
    b.type_into("#change-code", &change).await;
    b.click("#confirm-change").await;
    b.wait_text("#message", "Hello, browser.new@example.com!")
        .await;
    b.wait_text("#status", "Your address is now Browser.New@Example.com")
        .await;
    // The old address was told, over SMTP, without a code.
    let (subject, text, _) = smtp
        .last_mail("browser.user@example.com")
        .expect("a notice to the old address");
    assert!(subject.contains("address was changed"), "{subject}");
    assert!(
        text.contains("br\u{2022}\u{2022}\u{2022}w@example.com"),
        "{text}"
    );
    assert!(
        smtp.last_code("browser.user@example.com").is_none(),
        "{text}"
    );
    // The new refresh cookie refreshes as the new address.
    b.click("#refresh").await;
    b.wait_text("#status", "Token refreshed").await;
    b.wait_text("#message", "Hello, browser.new@example.com!")
        .await;

    b.click("#logout").await;
    b.wait_text("#status", "Signed out").await;
    b.reload().await;
    // Signed out for good: the page falls back to the address form.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let hidden = b
            .eval("return document.getElementById('email-form').hidden")
            .await;
        if hidden == serde_json::Value::Bool(false) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the login form never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(b.text("#message").await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_browser),
    ignore = "needs chromium and chromedriver (OTP_TEST_CHROMIUM, OTP_TEST_CHROMEDRIVER): run `cargo xtask test`"
)]
async fn login_page_in_chromium_axum() {
    let shot = std::env::var("OTP_TEST_SCREENSHOT").ok();
    journey(serve_axum, shot.as_deref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_browser),
    ignore = "needs chromium and chromedriver (OTP_TEST_CHROMIUM, OTP_TEST_CHROMEDRIVER): run `cargo xtask test`"
)]
async fn login_page_in_chromium_poem() {
    journey(serve_poem, None).await;
}

/// The sign-in link: opened from the mail in the browser, the page's button signs in
/// (its script runs under the page's CSP), the browser lands on the login page signed in;
/// the same link a second time shows why it no longer works.
async fn link_journey(adapter: &str) {
    let (driver, chromium) = binaries();
    let smtp = SmtpServer::start(Behaviour::Accept).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = {
        let mut c = test_config();
        c.smtp.server = "127.0.0.1".into();
        c.smtp.port = smtp.port;
        c.http.public_url = Some(format!("{base}/auth"));
        c
    };
    let mailer = otp_smtp::SmtpMailer::from_config(&config).unwrap();
    let auth = OtpAuth::builder(config)
        .stores(MemoryStore::new())
        .mailer(mailer)
        .build()
        .unwrap();
    if adapter == "axum" {
        let app = axum_example::app(auth);
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
    } else {
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
        let app = poem_example::app(auth);
        tokio::spawn(async move {
            poem::Server::new_with_acceptor(acceptor)
                .run(app)
                .await
                .unwrap();
        });
    }
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/auth/request-otp"))
        .json(&serde_json::json!({"email": "linked@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let link = {
        let mut link = None;
        for _ in 0..100 {
            link = smtp
                .last_mail("linked@example.com")
                .and_then(|(_, text, _)| {
                    text.split_whitespace()
                        .find(|w| w.contains("/magic?token="))
                        .map(str::to_owned)
                });
            if link.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        link.expect("the link arrived by SMTP")
    };
    assert!(
        link.starts_with(&format!("{base}/auth/magic?token=")),
        "{link}"
    );

    let b = Browser::start(&driver, &chromium).await;
    b.goto(&link).await;
    b.wait_text("h1", "Sign in to OTP Auth").await;
    b.click("#confirm").await;
    b.wait_text("#status", "You are signed in").await;
    // The page moves on to the app, whose login page trades the cookie for a token.
    b.wait_text("#status", "Welcome back").await;
    b.wait_text("#message", "Hello, linked@example.com!").await;
    let stored = b.eval("return document.cookie").await;
    assert_eq!(stored.as_str(), Some(""), "the refresh cookie is HttpOnly");

    // The link is spent: the page says so.
    b.goto(&link).await;
    b.wait_text("h1", "Sign in to OTP Auth").await;
    b.click("#confirm").await;
    b.wait_text("#status", "sign-in link").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_browser),
    ignore = "needs chromium and chromedriver (OTP_TEST_CHROMIUM, OTP_TEST_CHROMEDRIVER): run `cargo xtask test`"
)]
async fn sign_in_link_in_chromium_axum() {
    link_journey("axum").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_browser),
    ignore = "needs chromium and chromedriver (OTP_TEST_CHROMIUM, OTP_TEST_CHROMEDRIVER): run `cargo xtask test`"
)]
async fn sign_in_link_in_chromium_poem() {
    link_journey("poem").await;
}

/// The API docs page (`/docs`) of each example: the operations in the order of a login,
/// Markdown code spans rendered, example requests and answers, and "Try it" sending a
/// real request.
async fn docs_page(serve: impl AsyncFnOnce(OtpAuth) -> String, screenshot: Option<&str>) {
    let (driver, chromium) = binaries();
    let smtp = SmtpServer::start(Behaviour::Accept).await;
    let base = serve(engine(smtp.port)).await;
    let b = Browser::start(&driver, &chromium).await;
    b.goto(&format!("{base}/docs")).await;
    b.wait_text(".op .path", "/auth/request-otp").await;
    let order = b
        .eval("return [...document.querySelectorAll('.op .path')].map(e => e.textContent)")
        .await;
    let order: Vec<String> = serde_json::from_value(order).unwrap();
    let at = |p: &str| order.iter().position(|o| o == p).unwrap_or(usize::MAX);
    assert_eq!(at("/auth/request-otp"), 0, "{order:?}");
    assert!(
        at("/auth/verify-otp") < at("/auth/refresh")
            && at("/auth/refresh") < at("/auth/logout")
            && at("/auth/logout") < order.len(),
        "{order:?}"
    );
    // Code spans are rendered, never shown as backticks.
    let shown = b
        .eval("return document.getElementById('ops').innerText")
        .await;
    assert!(!shown.as_str().unwrap().contains('`'), "raw backticks");
    let spans = b
        .eval("return document.querySelectorAll('.op .desc code').length")
        .await;
    assert!(spans.as_u64().unwrap() > 5, "{spans}");
    // Example requests and answers, from the schemas.
    let verify = b
        .eval(
            "const op = [...document.querySelectorAll('.op')].find(o => \
             o.querySelector('.path').textContent === '/auth/verify-otp'); \
             return [op.querySelector('pre.request').textContent, \
             op.querySelector('pre.answer').textContent]",
        )
        .await;
    let (request, reply) = (verify[0].as_str().unwrap(), verify[1].as_str().unwrap());
    assert!(request.contains("\"otp\": \"123456\""), "{request}");
    assert!(reply.contains("\"access_token\""), "{reply}");
    if let Some(path) = screenshot {
        std::fs::write(path, b.screenshot().await).unwrap();
    }
    // Try it: the first operation sends its example to the server.
    b.eval(
        "const op = document.querySelector('.op'); op.querySelector('details').open = true; \
         op.querySelector('textarea').value = '{\"email\": \"docs.page@example.com\"}'; \
         op.querySelector('button').click(); return null",
    )
    .await;
    b.wait_text(".op pre.result", "200").await;
    let code = next_code(&smtp, "docs.page@example.com", 0).await;
    assert_eq!(code.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_browser),
    ignore = "needs chromium and chromedriver (OTP_TEST_CHROMIUM, OTP_TEST_CHROMEDRIVER): run `cargo xtask test`"
)]
async fn docs_page_in_chromium_axum() {
    let shot = std::env::var("OTP_TEST_DOCS_SCREENSHOT").ok();
    docs_page(serve_axum, shot.as_deref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_browser),
    ignore = "needs chromium and chromedriver (OTP_TEST_CHROMIUM, OTP_TEST_CHROMEDRIVER): run `cargo xtask test`"
)]
async fn docs_page_in_chromium_poem() {
    docs_page(serve_poem, None).await;
}
