//! Sending the login mail: the [`Mailer`] trait, the development [`ConsoleMailer`] and the
//! [`CapturingMailer`] for tests.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::email::Email;

/// A rendered login mail.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The normalized recipient.
    pub to: Email,
    /// The subject line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
    /// The code the message carries, for mailers that need it apart (the console and
    /// capturing mailers). Never logged by the library itself.
    pub code: crate::code::Code,
    /// The sign-in link the message carries, when `OTP_AUTH_PUBLIC_URL` is set (a
    /// credential like the code: never logged by the library itself).
    pub link: Option<String>,
    /// The language the message is written in (the template set chosen).
    pub language: String,
}

impl Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

/// Why a message could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// Worth retrying later: connection refused, timeout, a 4xx reply (503 to the client).
    #[error("transient mail failure: {0}")]
    Transient(String),
    /// Will not work by retrying: a 5xx reply, a refused recipient (502 to the client).
    #[error("permanent mail failure: {0}")]
    Permanent(String),
}

impl From<MailError> for crate::Error {
    fn from(e: MailError) -> Self {
        match e {
            MailError::Transient(m) => crate::Error::MailUnavailable(m),
            MailError::Permanent(m) => crate::Error::MailRejected(m),
        }
    }
}

/// Delivers one rendered message.
///
/// Implement it for any transport (an HTTP mail API, a queue). Return
/// [`MailError::Transient`] for failures a retry may fix and [`MailError::Permanent`] for the
/// others; the engine turns them into 503 and 502.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Mailer: Debug + Send + Sync + 'static {
    /// Sends `message`; returns once the transport has accepted it.
    async fn send(&self, message: &Message) -> Result<(), MailError>;
}

/// Writes each mail as one log line with the address and the code, for development.
///
/// This is the one place the library ever shows a code: it warns so at construction.
#[derive(Debug, Default)]
pub struct ConsoleMailer {
    _private: (),
}

impl ConsoleMailer {
    /// A console mailer; logs a warning that codes will be written to the log.
    pub fn new() -> ConsoleMailer {
        tracing::warn!(
            "console mailer: login codes are written to the log instead of being mailed. \
             This is for development only; set OTP_AUTH_SMTP_SERVER (or another mailer) \
             in production."
        );
        ConsoleMailer { _private: () }
    }
}

#[async_trait]
impl Mailer for ConsoleMailer {
    async fn send(&self, message: &Message) -> Result<(), MailError> {
        tracing::info!(
            target: "otp_core::console_mailer",
            "login code for {}: {}",
            message.to,
            message.code.expose()
        );
        if let Some(link) = &message.link {
            tracing::info!(
                target: "otp_core::console_mailer",
                "sign-in link for {}: {link}",
                message.to
            );
        }
        Ok(())
    }
}

/// Keeps every message in memory, for tests: read the last code sent to an address.
#[derive(Debug, Clone, Default)]
pub struct CapturingMailer {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Debug, Default)]
struct Captured {
    all: Vec<Message>,
    last_by_address: HashMap<String, usize>,
    fail_next: Option<MailError>,
}

impl CapturingMailer {
    /// An empty mailer.
    pub fn new() -> CapturingMailer {
        CapturingMailer::default()
    }

    /// The code of the last message sent to `email` (any spelling of it).
    pub fn last_code(&self, email: &str) -> Option<String> {
        self.last_message(email).map(|m| m.code.expose().to_owned())
    }

    /// The last message sent to `email` (any spelling of it).
    pub fn last_message(&self, email: &str) -> Option<Message> {
        let email = Email::parse(email).ok()?;
        let c = self.inner.lock().ok()?;
        c.last_by_address
            .get(email.as_str())
            .and_then(|i| c.all.get(*i))
            .cloned()
    }

    /// Every message sent so far, oldest first.
    pub fn messages(&self) -> Vec<Message> {
        self.inner.lock().map(|c| c.all.clone()).unwrap_or_default()
    }

    /// How many messages were sent.
    pub fn count(&self) -> usize {
        self.inner.lock().map(|c| c.all.len()).unwrap_or_default()
    }

    /// Makes the next send fail with `error` (and record nothing).
    pub fn fail_next(&self, error: MailError) {
        if let Ok(mut c) = self.inner.lock() {
            c.fail_next = Some(error);
        }
    }
}

#[async_trait]
impl Mailer for CapturingMailer {
    async fn send(&self, message: &Message) -> Result<(), MailError> {
        let mut c = self
            .inner
            .lock()
            .map_err(|_| MailError::Transient("capturing mailer lock poisoned".to_owned()))?;
        if let Some(e) = c.fail_next.take() {
            return Err(e);
        }
        let i = c.all.len();
        c.all.push(message.clone());
        c.last_by_address.insert(message.to.as_str().to_owned(), i);
        Ok(())
    }
}

/// A [`Mailer`] made from an async function or closure: see [`mailer_fn`].
pub struct MailerFn<F> {
    f: F,
}

impl<F> Debug for MailerFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailerFn")
    }
}

/// Turns an async function of a [`Message`] into a [`Mailer`].
///
/// ```
/// use otp_core::{MailError, Message, mailer_fn};
///
/// let mailer = mailer_fn(|message: Message| async move {
///     // Hand the message to any transport: a queue, an HTTP mail API...
///     if message.to.domain() == "blocked.example" {
///         return Err(MailError::Permanent("domain blocked".into()));
///     }
///     Ok(())
/// });
/// # let _: std::sync::Arc<dyn otp_core::Mailer> = std::sync::Arc::new(mailer);
/// ```
pub fn mailer_fn<F, Fut>(f: F) -> MailerFn<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), MailError>> + Send + 'static,
{
    MailerFn { f }
}

#[async_trait]
impl<F, Fut> Mailer for MailerFn<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), MailError>> + Send + 'static,
{
    async fn send(&self, message: &Message) -> Result<(), MailError> {
        (self.f)(message.clone()).await
    }
}
