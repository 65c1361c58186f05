//! [`HttpApiMailer`] inside a real engine against a fake mail API (axum on a local port):
//! what the API receives, how its answers and failures reach the client, and the closure
//! route through a Tokio channel.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use custom_mailer_example::HttpApiMailer;
use otp_core::mailer::{MailError, Message, mailer_fn};
use otp_core::{ClientInfo, Config, OtpAuth, store::MemoryStore};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

const API_KEY: &str = "test-key-4f9a2c71e0b8";
const FROM: &str = "OTP Auth <login@example.com>";
const TIMEOUT: Duration = Duration::from_secs(5);

/// One request as the fake API saw it.
#[derive(Debug, Clone)]
struct Recorded {
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
}

#[derive(Clone)]
struct FakeApi {
    answer: StatusCode,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

async fn email(
    State(api): State<FakeApi>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    api.requests.lock().unwrap().push(Recorded {
        authorization: text(header::AUTHORIZATION),
        content_type: text(header::CONTENT_TYPE),
        body,
    });
    // What a provider may put in an error body: it must not reach the log.
    (api.answer, Json(json!({ "id": "msg-1", "to": "echoed" })))
}

/// Starts a fake mail API answering every `POST /v1/email` with `answer`; returns its base
/// URL and the requests it records.
async fn fake_api(answer: StatusCode) -> (String, Arc<Mutex<Vec<Recorded>>>) {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/v1/email", post(email))
        .with_state(FakeApi {
            answer,
            requests: requests.clone(),
        });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), requests)
}

fn mailer(base_url: &str, timeout: Duration) -> HttpApiMailer {
    HttpApiMailer::new(base_url, SecretString::from(API_KEY), FROM, timeout).unwrap()
}

fn config() -> Config {
    let mut c = Config::default();
    c.tokens.secret = Some("5f2a9c7e1b3d4068a9e7c1f0b2d4e6a8c0f1e3d5".into());
    c.mail.from = "login@example.com".into();
    c
}

fn engine(mailer: impl otp_core::mailer::Mailer) -> OtpAuth {
    OtpAuth::builder(config())
        .stores(MemoryStore::new())
        .mailer(mailer)
        .build()
        .unwrap()
}

/// The code in a rendered subject (`Your OTP Auth login code: 123456`).
fn code_in_subject(body: &Value) -> String {
    let subject = body["subject"].as_str().unwrap();
    let code = subject.rsplit(' ').next().unwrap().to_owned();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "no code at the end of {subject:?}"
    );
    code
}

#[tokio::test]
async fn the_api_gets_the_login_mail_and_its_code_verifies() {
    let (base_url, requests) = fake_api(StatusCode::OK).await;
    let auth = engine(mailer(&base_url, TIMEOUT));
    let client = ClientInfo::default();

    auth.request_code("User@Example.com", &client)
        .await
        .unwrap();

    let requests = requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(
        r.authorization.as_deref(),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let body = r.body.as_object().unwrap();
    let mut fields: Vec<&str> = body.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["from", "html", "subject", "text", "to"]);
    assert_eq!(r.body["from"], FROM);
    assert_eq!(r.body["to"], "user@example.com");

    let code = code_in_subject(&r.body);
    assert!(r.body["text"].as_str().unwrap().contains(&code));
    assert!(r.body["html"].as_str().unwrap().contains(&code));

    let tokens = auth
        .verify_code("user@example.com", &code, &client)
        .await
        .unwrap();
    let user = auth.authenticate(&tokens.access_token).await.unwrap();
    assert_eq!(user.email, "user@example.com");
}

#[tokio::test]
async fn a_trailing_slash_on_the_base_url_is_fine() {
    let (base_url, requests) = fake_api(StatusCode::ACCEPTED).await;
    let mailer = mailer(&format!("{base_url}/"), TIMEOUT);
    assert_eq!(mailer.endpoint(), format!("{base_url}/email"));
    let auth = engine(mailer);

    auth.request_code("ada@example.com", &ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn api_answers_map_to_503_or_502() {
    for (answer, expected) in [
        (StatusCode::SERVICE_UNAVAILABLE, 503),
        (StatusCode::INTERNAL_SERVER_ERROR, 503),
        (StatusCode::TOO_MANY_REQUESTS, 503),
        (StatusCode::UNPROCESSABLE_ENTITY, 502),
        (StatusCode::BAD_REQUEST, 502),
        (StatusCode::UNAUTHORIZED, 502),
    ] {
        let (base_url, requests) = fake_api(answer).await;
        let auth = engine(mailer(&base_url, TIMEOUT));
        let client = ClientInfo::default();

        let err = auth
            .request_code("user@example.com", &client)
            .await
            .unwrap_err();
        assert_eq!(err.status(), expected, "{answer}: {err}");
        assert!(
            !err.to_string().contains("echoed"),
            "the response body leaked into the error: {err}"
        );

        // The API saw the mail, but the engine discarded its code.
        let requests = requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 1, "{answer}");
        let code = code_in_subject(&requests[0].body);
        let refused = auth
            .verify_code("user@example.com", &code, &client)
            .await
            .unwrap_err();
        assert_eq!(refused.status(), 400, "{answer}: {refused}");
    }
}

#[tokio::test]
async fn an_api_that_never_answers_times_out_with_503() {
    // Accepts connections and holds them without ever reading or answering.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            held.push(socket);
        }
    });
    let timeout = Duration::from_millis(500);
    let auth = engine(mailer(&format!("http://{addr}"), timeout));

    let started = Instant::now();
    let err = auth
        .request_code("user@example.com", &ClientInfo::default())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();

    assert_eq!(err.status(), 503, "{err}");
    assert!(elapsed >= timeout.mul_f32(0.9), "gave up after {elapsed:?}");
    assert!(
        elapsed < timeout + Duration::from_secs(2),
        "took {elapsed:?}"
    );
}

#[tokio::test]
async fn a_closed_port_is_503() {
    // A port that was just free: nothing listens there any more.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let auth = engine(mailer(&format!("http://{addr}"), TIMEOUT));

    let started = Instant::now();
    let err = auth
        .request_code("user@example.com", &ClientInfo::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), 503, "{err}");
    assert!(started.elapsed() < TIMEOUT, "refused, not timed out");
}

#[test]
fn debug_never_shows_the_api_key() {
    let mailer = mailer("http://127.0.0.1:9/v1", TIMEOUT);
    let debug = format!("{mailer:?}");
    assert!(!debug.contains(API_KEY), "{debug}");
    assert!(debug.contains("[redacted]"), "{debug}");
    assert!(debug.contains("http://127.0.0.1:9/v1/email"), "{debug}");
}

#[test]
fn bad_settings_are_refused_up_front() {
    let key = || SecretString::from(API_KEY);
    for base_url in [
        "not a url",
        "ftp://mail.example.com",
        "http://user:secret@mail.example.com",
        "http://mail.example.com/v1?x=1",
        "http://mail.example.com/v1#x",
    ] {
        let err = HttpApiMailer::new(base_url, key(), FROM, TIMEOUT).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
    assert!(
        HttpApiMailer::new("http://m.example", SecretString::from(" "), FROM, TIMEOUT).is_err()
    );
    assert!(
        HttpApiMailer::new(
            "http://m.example",
            SecretString::from("a\nb"),
            FROM,
            TIMEOUT
        )
        .is_err()
    );
    assert!(HttpApiMailer::new("http://m.example", key(), "", TIMEOUT).is_err());
    assert!(HttpApiMailer::new("http://m.example", key(), FROM, Duration::ZERO).is_err());
    assert!(HttpApiMailer::new("https://m.example", key(), FROM, TIMEOUT).is_ok());
}

/// The queue mailer of the crate docs: `mailer_fn` over a bounded channel.
fn queue_mailer(capacity: usize) -> (impl otp_core::mailer::Mailer, mpsc::Receiver<Message>) {
    let (queue, outbox) = mpsc::channel::<Message>(capacity);
    let mailer = mailer_fn(move |message: Message| {
        let queue = queue.clone();
        async move {
            queue.try_send(message).map_err(|e| match e {
                TrySendError::Full(_) => MailError::Transient("mail queue full".into()),
                TrySendError::Closed(_) => MailError::Transient("mail worker stopped".into()),
            })
        }
    });
    (mailer, outbox)
}

#[tokio::test]
async fn the_closure_mailer_queues_messages_on_a_channel() {
    let (mailer, mut outbox) = queue_mailer(1);
    let auth = engine(mailer);
    let client = ClientInfo::default();

    auth.request_code("User@Example.com", &client)
        .await
        .unwrap();
    // The queue (capacity 1) is full until the worker takes the message: 503.
    let full = auth
        .request_code("other@example.com", &client)
        .await
        .unwrap_err();
    assert_eq!(full.status(), 503, "{full}");

    let message = outbox.recv().await.unwrap();
    assert_eq!(message.to.as_str(), "user@example.com");
    let code = message.code.as_ref().unwrap().expose();
    assert!(message.subject.contains(code));
    assert!(message.text.contains(code));
    assert!(message.html.contains(code));
    auth.verify_code("user@example.com", code, &client)
        .await
        .unwrap();

    // The worker is gone: 503 again.
    drop(outbox);
    let stopped = auth
        .request_code("third@example.com", &client)
        .await
        .unwrap_err();
    assert_eq!(stopped.status(), 503, "{stopped}");
}
