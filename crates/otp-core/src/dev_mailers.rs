//! The development mailers: [`ConsoleMailer`] (codes in the log) and [`CapturingMailer`]
//! (codes in memory, for tests).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::config::SmtpSettings;
use crate::email::Email;
use crate::mailer::{MailError, Mailer, Message};

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
             This is for development only; set {} (or another mailer) in production.",
            SmtpSettings::VARS.server
        );
        ConsoleMailer { _private: () }
    }
}

#[async_trait]
impl Mailer for ConsoleMailer {
    /// A development mailer: it writes to the log (or keeps the messages), nobody's
    /// mailbox.
    fn delivers_mail(&self) -> bool {
        false
    }

    async fn send(&self, message: &Message) -> Result<(), MailError> {
        match &message.code {
            Some(code) => tracing::info!(
                target: "otp_core::console_mailer",
                "{} code for {}: {}",
                message.kind.as_str(),
                message.to,
                code.expose()
            ),
            None => tracing::info!(
                target: "otp_core::console_mailer",
                "{} mail for {}: {}",
                message.kind.as_str(),
                message.to,
                message.subject
            ),
        }
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

    /// The code of the last message with a code sent to `email` (any spelling of it).
    pub fn last_code(&self, email: &str) -> Option<String> {
        let email = Email::parse(email).ok()?;
        let c = self.inner.lock().ok()?;
        c.all
            .iter()
            .rev()
            .filter(|m| m.to == email)
            .find_map(|m| m.code.as_ref())
            .map(|code| code.expose().to_owned())
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
    /// A development mailer: it writes to the log (or keeps the messages), nobody's
    /// mailbox.
    fn delivers_mail(&self) -> bool {
        false
    }

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
