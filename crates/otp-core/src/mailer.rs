//! Sending the login mail: what a mailer implements ([`Mailer`], with [`Message`] and
//! [`MailError`]), and [`mailer_fn`] to make one of an async function. The development
//! mailers are [`ConsoleMailer`] and
//! [`CapturingMailer`].

use std::fmt::Debug;

pub use crate::code::Code;
pub use crate::dev_mailers::{CapturingMailer, ConsoleMailer};
/// Re-exported for implementing [`Mailer`] without a direct dependency.
pub use async_trait::async_trait;

#[path = "template.rs"]
pub mod template;

use crate::email::Email;
pub use crate::error::{MailError, redact_addresses};

/// What a [`Message`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageKind {
    /// A login code (and the sign-in link, when links are on): `/request-otp`.
    Login,
    /// A code for a signed-in user's re-authentication: `/reauthenticate`.
    Reauthentication,
    /// A code to the new address of an email change: `/change-email`.
    EmailChange,
    /// The notice to the old address once an email change is done: no code, no link.
    EmailChanged,
}

impl MessageKind {
    /// `login`, `reauthentication`, `email_change` or `email_changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Login => "login",
            MessageKind::Reauthentication => "reauthentication",
            MessageKind::EmailChange => "email_change",
            MessageKind::EmailChanged => "email_changed",
        }
    }
}

/// A rendered mail: a code (for a login, a re-authentication or a new address) or the
/// notice of an email change.
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
    /// What the message is for.
    pub kind: MessageKind,
    /// The code the message carries, for mailers that need it apart (the console and
    /// capturing mailers); `None` for a notice. Never logged by the library itself.
    pub code: Option<Code>,
    /// The sign-in link the message carries, when `OTP_AUTH_PUBLIC_URL` is set (a
    /// credential like the code: never logged by the library itself).
    pub link: Option<String>,
    /// The language the message is written in (the template set chosen).
    pub language: String,
}

// The subject and bodies carry the code (and the link): Debug shows neither, and the
// recipient only masked.
impl Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("to", &self.to)
            .field("kind", &self.kind)
            .field("language", &self.language)
            .field("has_link", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

/// Delivers one rendered message.
///
/// Implement it for any transport (an HTTP mail API, a queue). Return
/// [`MailError::Transient`] for failures a retry may fix and [`MailError::Permanent`] for the
/// others; the engine turns them into 503 and 502.
#[async_trait]
pub trait Mailer: Debug + Send + Sync + 'static {
    /// Sends `message`; returns once the transport has accepted it.
    async fn send(&self, message: &Message) -> Result<(), MailError>;

    /// Whether this mailer delivers mail to real mailboxes. `true` unless the mailer says
    /// otherwise: the development mailers ([`crate::mailer::ConsoleMailer`],
    /// [`crate::mailer::CapturingMailer`]) answer `false`. Next to a mailer that delivers, the
    /// development magic code (`OTP_AUTH_DISABLE_LOCAL_AUTH`) refuses to start unless
    /// `OTP_AUTH_MAGIC_OTP_EMAILS` narrows it to some addresses: a mailer of your own for
    /// development only may answer `false`.
    fn delivers_mail(&self) -> bool {
        true
    }

    /// Whether the mail server can be reached now, without sending anything (SMTP: it
    /// greets, STARTTLS and AUTH pass): for a readiness check at start-up
    /// ([`OtpAuth::check`](crate::OtpAuth::check)). The default answers `Ok(())`.
    async fn ready(&self) -> Result<(), MailError> {
        Ok(())
    }
}

#[cfg(any(test, feature = "mock"))]
mockall::mock! {
    /// A mockall mock of [`Mailer`] (the `mock` feature); it delivers mail
    /// ([`Mailer::delivers_mail`] keeps its default).
    pub Mailer {}
    #[async_trait]
    impl Mailer for Mailer {
        async fn send(&self, message: &Message) -> Result<(), MailError>;
    }
}

// A trait bound of the trait; mockall's mocks do not derive it.
#[cfg(any(test, feature = "mock"))]
impl Debug for MockMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockMailer")
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
/// use otp_core::mailer::{MailError, Message, mailer_fn};
///
/// let mailer = mailer_fn(|message: Message| async move {
///     // Hand the message to any transport: a queue, an HTTP mail API...
///     if message.to.domain() == "blocked.example" {
///         return Err(MailError::Permanent("domain blocked".into()));
///     }
///     Ok(())
/// });
/// # let _: std::sync::Arc<dyn otp_core::mailer::Mailer> = std::sync::Arc::new(mailer);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn addresses_are_redacted_wherever_a_server_puts_them() {
        for (raw, want) in [
            (
                "550 5.1.1 <victim@corp.test>: User unknown",
                "550 5.1.1 <[address]>: User unknown",
            ),
            ("user victim@corp.test unknown", "user [address] unknown"),
            ("a@b, c@d", "[address], [address]"),
            ("RCPT TO:<a.b+c@x.example> 550", "RCPT TO:<[address]> 550"),
            ("no address @ all @", "no address @ all @"),
            ("", ""),
        ] {
            assert_eq!(redact_addresses(raw), want, "{raw:?}");
        }
        let e = MailError::Permanent("550 <victim@corp.test> rejected".into());
        assert!(!e.redacted().to_string().contains("victim"));
        let err: crate::Error = e.into();
        assert!(!format!("{err} {err:?}").contains("victim"));
    }

    #[test]
    fn message_debug_shows_no_subject_body_code_or_address() {
        let code = crate::code::Code::parse("123456", 6).unwrap();
        let m = Message {
            to: Email::parse("victim@corp.test").unwrap(),
            subject: "Your code is 123456".into(),
            text: "123456 https://app/magic?token=secret".into(),
            html: "<b>123456</b>".into(),
            kind: MessageKind::Login,
            code: Some(code),
            link: Some("https://app/magic?token=secret".into()),
            language: "en".into(),
        };
        let shown = format!("{m:?}");
        for leak in ["123456", "secret", "victim", "Your code"] {
            assert!(!shown.contains(leak), "{leak} in {shown}");
        }
    }
}
