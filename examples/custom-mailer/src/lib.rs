//! A custom mailer for `otp-core`: [`HttpApiMailer`] sends the login mail through a JSON
//! HTTP mail API instead of SMTP, written the way you would write one for your provider.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use custom_mailer_example::HttpApiMailer;
//! use otp_core::{ClientInfo, Config, OtpAuth};
//! use secrecy::SecretString;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut config = Config::default();
//!     config.tokens.secret = Some("8d3c0e2b6a4f4f6e9b1d7c5a3e2f1a0b9c8d7e6f".into());
//!     config.mail.from = "login@example.com".into();
//!     let mailer = HttpApiMailer::new(
//!         "http://mail-api.internal:8080/v1", // requests go to {base_url}/email
//!         SecretString::from(std::env::var("MAIL_API_KEY")?),
//!         &config.mail.from,
//!         Duration::from_secs(10), // per request: connecting, sending, the answer
//!     )?;
//!     let auth = OtpAuth::builder(config)
//!         .stores(otp_core::store::MemoryStore::new())
//!         .mailer(mailer)
//!         .build()?;
//!
//!     // One `POST http://mail-api.internal:8080/v1/email` with the rendered login mail.
//!     auth.request_code("ada@example.com", &ClientInfo::default()).await?;
//!     Ok(())
//! }
//! ```
//!
//! # Writing a mailer
//!
//! [`Mailer`] has one method, `send(&Message)`, called once a code is stored (or, for the
//! notice of an email change, once the change is done). The [`Message`] is ready to go:
//! the normalized recipient (`to`), what it is for (`kind`: a login, a re-authentication,
//! a code to a new address, the notice to the old one), and the subject, plain text and
//! HTML rendered from the [`Templates`](otp_core::mailer::template::Templates). It also carries the
//! code apart (`code`, `None` for the notice), for transports that need it alone (the code
//! is in the subject and bodies already). The subject and bodies hold a live code: never
//! log them. Return `Ok` only once the transport has accepted the message.
//!
//! The error is the client's answer. [`MailError::Transient`] (a retry later may work)
//! becomes 503 with `Retry-After`; [`MailError::Permanent`] (retrying will not help)
//! becomes 502. Either way the engine discards the code, so a mail that never left leaves
//! no usable code behind. This mailer maps:
//!
//! | outcome                                              | result                      |
//! |------------------------------------------------------|-----------------------------|
//! | a 2xx answer                                         | `Ok(())`                    |
//! | 429, any 5xx, connection refused or reset, timeout   | `Transient` (503)           |
//! | any other 4xx (bad key, refused recipient, ...)      | `Permanent` (502)           |
//! | anything else (1xx, 3xx: redirects are not followed) | `Permanent` (502)           |
//!
//! The error text goes to the server log, so it names the status and the cause but never
//! the response body: a provider's error body often echoes the recipient's address, which
//! the library itself only ever logs as a keyed hash.
//!
//! The user's login request waits for `send`, so bound it: [`HttpApiMailer::new`] takes a
//! timeout for each request. A request that timed out may still have been delivered; the
//! code it carried is discarded all the same, and the user asks for a new one.
//!
//! # TLS
//!
//! This example builds `reqwest` without TLS (`default-features = false`), which only
//! speaks `http://`: enough for its tests and for a mail relay on a private network. Built
//! so, an `https://` base URL is accepted but every send fails with a connection error
//! ("scheme is not http", a 503). A real deployment against a provider's `https://` API
//! enables reqwest's rustls feature:
//!
//! ```toml
//! reqwest = { version = "0.12", default-features = false, features = ["json", "rustls-tls"] }
//! ```
//!
//! # The closure route: a queue
//!
//! For a transport that needs no type of its own, [`otp_core::mailer::mailer_fn`] turns an async
//! closure of a [`Message`] into a [`Mailer`]. Here it hands each message to a Tokio
//! channel drained by a worker that delivers it (with retries, or through
//! [`HttpApiMailer`]):
//!
//! ```
//! use std::sync::Arc;
//!
//! use otp_core::{ClientInfo, Config, OtpAuth, store::MemoryStore};
//! use otp_core::mailer::{MailError, Message, mailer_fn};
//! use tokio::sync::mpsc;
//! use tokio::sync::mpsc::error::TrySendError;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let (queue, mut outbox) = mpsc::channel::<Message>(1024);
//!     let mailer = mailer_fn(move |message: Message| {
//!         let queue = queue.clone();
//!         async move {
//!             // `try_send`: a full queue answers 503 at once instead of holding the
//!             // login request until there is room.
//!             queue.try_send(message).map_err(|e| match e {
//!                 TrySendError::Full(_) => MailError::Transient("mail queue full".into()),
//!                 TrySendError::Closed(_) => MailError::Transient("mail worker stopped".into()),
//!             })
//!         }
//!     });
//!
//!     let mut config = Config::default();
//!     config.tokens.secret = Some("8d3c0e2b6a4f4f6e9b1d7c5a3e2f1a0b9c8d7e6f".into());
//!     let auth = OtpAuth::builder(config)
//!         .stores(MemoryStore::new())
//!         .mailer(mailer)
//!         .build()?;
//!
//!     let client = ClientInfo::default();
//!     auth.request_code("Ada@Example.com", &client).await?;
//!
//!     // The worker's side; in an application a spawned task:
//!     // `while let Some(message) = outbox.recv().await { deliver(&message).await }`.
//!     let message = outbox.recv().await.ok_or("the queue is closed")?;
//!     assert_eq!(message.to.as_str(), "ada@example.com");
//!     let code = message.code.as_ref().ok_or("a login mail carries its code")?;
//!     auth.verify_code("ada@example.com", code.expose(), &client).await?;
//!     Ok(())
//! }
//! ```
//!
//! What a queue changes: `request_code` succeeds once the message is queued, so a
//! delivery failure after that reaches the log and not the user (no 502 or 503), and an
//! in-memory queue is lost on restart. Queued messages hold live codes: a persistent queue
//! should keep them no longer than the code lifetime (`OTP_AUTH_OTP_EXPIRY_SECONDS`).

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use otp_core::mailer::{MailError, Mailer, Message};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

/// A [`Mailer`] that posts each login mail to a JSON HTTP mail API.
///
/// Each message is one `POST {base_url}/email` with the header
/// `Authorization: Bearer <api key>` and the body
///
/// ```json
/// {"from": "...", "to": "...", "subject": "...", "text": "...", "html": "..."}
/// ```
///
/// the shape of Postmark- or SendGrid-style APIs (adapt the path, the field names and the
/// authentication header to your provider). See the [crate docs](crate) for how outcomes
/// map to [`MailError`]. Cheap to clone; clones share the connection pool. Its `Debug`
/// output never shows the API key.
#[derive(Clone)]
pub struct HttpApiMailer {
    client: reqwest::Client,
    endpoint: Url,
    api_key: SecretString,
    from: String,
    timeout: Duration,
}

/// The JSON body of one mail.
#[derive(Serialize)]
struct EmailBody<'a> {
    from: &'a str,
    to: &'a str,
    subject: &'a str,
    text: &'a str,
    html: &'a str,
}

/// [`HttpApiMailer::new`] was given something it cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP mail API: {0}")]
pub struct SetupError(String);

impl HttpApiMailer {
    /// A mailer posting to `{base_url}/email` as `from`, each request bounded by `timeout`.
    ///
    /// `base_url` is an `http://` or `https://` URL, possibly with a path prefix
    /// (`https://api.example.com/v1`), without credentials, query or fragment: the key
    /// goes in `api_key`. `https://` needs reqwest's TLS feature (see the
    /// [crate docs](crate#tls)). `from` is the sender exactly as the API expects it, for
    /// instance `login@example.com` or `Example <login@example.com>`. `timeout` covers a
    /// whole request, from connecting to the end of the answer, and must not be zero.
    /// Redirects are not followed. Connects lazily: nothing is contacted here.
    pub fn new(
        base_url: &str,
        api_key: SecretString,
        from: impl Into<String>,
        timeout: Duration,
    ) -> Result<HttpApiMailer, SetupError> {
        // The input is not echoed in these errors: it might hold a credential.
        let base = Url::parse(base_url)
            .map_err(|e| SetupError(format!("the base URL is not a valid URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(SetupError(format!(
                "the base URL must be http:// or https://, not {}://",
                base.scheme()
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(SetupError(
                "the base URL must not hold credentials; pass the key as api_key".to_owned(),
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(SetupError(
                "the base URL must not have a query or a fragment".to_owned(),
            ));
        }
        let endpoint = Url::parse(&format!("{}/email", base.as_str().trim_end_matches('/')))
            .map_err(|e| SetupError(format!("the endpoint URL is not valid: {e}")))?;
        if api_key.expose_secret().trim().is_empty() {
            return Err(SetupError("the API key is empty".to_owned()));
        }
        if reqwest::header::HeaderValue::from_str(api_key.expose_secret()).is_err() {
            return Err(SetupError(
                "the API key holds characters a header cannot carry".to_owned(),
            ));
        }
        let from = from.into();
        if from.trim().is_empty() {
            return Err(SetupError("the sender (from) is empty".to_owned()));
        }
        if timeout.is_zero() {
            return Err(SetupError("the timeout must be more than zero".to_owned()));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SetupError(format!("the HTTP client could not be built: {e}")))?;
        Ok(HttpApiMailer {
            client,
            endpoint,
            api_key,
            from,
            timeout,
        })
    }

    /// The URL every mail is posted to: `{base_url}/email`.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// The timeout of each request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Debug for HttpApiMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpApiMailer")
            .field("endpoint", &self.endpoint.as_str())
            .field("api_key", &"[redacted]")
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Mailer for HttpApiMailer {
    async fn send(&self, message: &Message) -> Result<(), MailError> {
        let body = EmailBody {
            from: &self.from,
            to: message.to.as_str(),
            subject: &message.subject,
            text: &message.text,
            html: &message.html,
        };
        let response = self
            .client
            .post(self.endpoint.clone())
            .bearer_auth(self.api_key.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(|e| self.request_error(&e))?;
        // The body is not read: success needs nothing from it, and a failure's body is
        // kept out of the log (see the crate docs).
        status_outcome(response.status())
    }
}

impl HttpApiMailer {
    /// The request did not get an answer (or could not be made).
    fn request_error(&self, e: &reqwest::Error) -> MailError {
        if e.is_timeout() {
            MailError::Transient(format!(
                "mail API {} did not answer within {:?}",
                self.endpoint, self.timeout
            ))
        } else if e.is_builder() {
            // The request itself could not be made; the same request will fail the same
            // way. (`new` checks the URL and the key, so this is not expected.)
            MailError::Permanent(format!("mail API request could not be made: {}", chain(e)))
        } else {
            // Connection refused or reset, DNS failure, the connection closed mid-answer.
            // Also an https:// URL when reqwest is built without TLS ("scheme is not
            // http"): see the crate docs.
            MailError::Transient(format!("mail API unreachable: {}", chain(e)))
        }
    }
}

/// Maps the API's answer to the outcome of `send`.
fn status_outcome(status: StatusCode) -> Result<(), MailError> {
    if status.is_success() {
        Ok(())
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        Err(MailError::Transient(format!(
            "mail API rate limit reached ({status})"
        )))
    } else if status.is_server_error() {
        Err(MailError::Transient(format!("mail API failed ({status})")))
    } else if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        Err(MailError::Permanent(format!(
            "mail API refused the API key ({status})"
        )))
    } else if status.is_client_error() {
        Err(MailError::Permanent(format!(
            "mail API refused the message ({status})"
        )))
    } else {
        Err(MailError::Permanent(format!(
            "mail API answered an unexpected {status} (redirects are not followed)"
        )))
    }
}

/// An error with its causes, `outer: inner: innermost`.
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(code: u16) -> Result<(), MailError> {
        match StatusCode::from_u16(code) {
            Ok(status) => status_outcome(status),
            Err(e) => Err(MailError::Permanent(format!("bad test status {code}: {e}"))),
        }
    }

    #[test]
    fn every_status_maps_as_documented() {
        for code in 100..=999 {
            let result = outcome(code);
            match code {
                200..=299 => assert_eq!(result, Ok(()), "{code}"),
                429 | 500..=599 => {
                    assert!(matches!(result, Err(MailError::Transient(_))), "{code}");
                }
                _ => assert!(matches!(result, Err(MailError::Permanent(_))), "{code}"),
            }
        }
    }
}
