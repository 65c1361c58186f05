//! SMTP mailer for [`otp_core`] on [`lettre`]: async (tokio), pooled connections, TLS by
//! rustls, timeouts, and errors sorted into transient (503) and permanent (502).
//!
//! ```no_run
//! use std::sync::Arc;
//! use otp_core::{Config, MemoryStore, OtpAuth};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load()?; // OTP_AUTH_SMTP_SERVER, _PORT, _USERNAME, _PASSWORD, _TLS, MAIL_FROM...
//! let mailer = otp_smtp::SmtpMailer::from_config(&config)?;
//! let auth = OtpAuth::builder(config)
//!     .stores(MemoryStore::new())
//!     .mailer(Arc::new(mailer))
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! The message is `multipart/alternative` (plain text and HTML, both from
//! [`otp_core::Templates`]), `From: MAIL_FROM_NAME <MAIL_FROM>`, `To:` the normalized
//! address, with `Subject`, `Date` and `Message-ID`. Addresses are validated by
//! [`otp_core::Email`] before they get here, and lettre encodes every header, so no header
//! can be injected.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use otp_core::{Config, MailError, Mailer, Message, SmtpTls};
use secrecy::ExposeSecret;

/// Sends login mail over SMTP.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    message_id_domain: String,
    timeout: Duration,
    description: String,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("server", &self.description)
            .field("from", &self.from.email.to_string())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The mailer could not be set up from the configuration.
#[derive(Debug)]
pub struct SmtpConfigError(pub String);

impl std::fmt::Display for SmtpConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SmtpConfigError {}

impl From<SmtpConfigError> for otp_core::Error {
    fn from(e: SmtpConfigError) -> Self {
        otp_core::Error::Config(e.0)
    }
}

impl SmtpMailer {
    /// Builds the mailer from `OTP_AUTH_SMTP_*` and `OTP_AUTH_MAIL_FROM*`. Connects lazily:
    /// the first mail opens the first pooled connection.
    pub fn from_config(config: &Config) -> Result<SmtpMailer, SmtpConfigError> {
        let host = config.smtp_server.as_str();
        let tls = config.smtp_tls_mode();
        let builder = match tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| SmtpConfigError(format!("OTP_AUTH_SMTP_SERVER {host:?}: {e}")))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| SmtpConfigError(format!("OTP_AUTH_SMTP_SERVER {host:?}: {e}")))?,
        };
        let timeout = Duration::from_millis(config.smtp_timeout_ms);
        let mut builder = builder
            .port(config.smtp_port)
            .timeout(Some(timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(config.smtp_pool_size)
                    .idle_timeout(Duration::from_secs(60)),
            );
        match (&config.smtp_username, &config.smtp_password) {
            (Some(user), Some(password)) => {
                builder = builder.credentials(Credentials::new(
                    user.clone(),
                    password.expose_secret().to_owned(),
                ));
            }
            (None, None) => {}
            _ => {
                return Err(SmtpConfigError(
                    "set both OTP_AUTH_SMTP_USERNAME and OTP_AUTH_SMTP_PASSWORD, or neither"
                        .to_owned(),
                ));
            }
        }
        let address: Address = config.mail_from.parse().map_err(|e| {
            SmtpConfigError(format!("OTP_AUTH_MAIL_FROM {:?}: {e}", config.mail_from))
        })?;
        let message_id_domain = address.domain().to_owned();
        Ok(SmtpMailer {
            transport: builder.build(),
            from: Mailbox::new(Some(config.mail_from_name.clone()), address),
            message_id_domain,
            timeout,
            description: format!("{host}:{} ({tls:?})", config.smtp_port),
        })
    }

    /// Builds the MIME message for `message`.
    pub fn build_message(&self, message: &Message) -> Result<lettre::Message, MailError> {
        let to: Address = message
            .to
            .as_str()
            .parse()
            .map_err(|e| MailError::Permanent(format!("recipient address: {e}")))?;
        lettre::Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(message.subject.clone())
            .message_id(Some(format!(
                "<{}@{}>",
                otp_core::token::random_id(),
                self.message_id_domain
            )))
            .multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                message.html.clone(),
            ))
            .map_err(|e| MailError::Permanent(format!("building the message: {e}")))
    }
}

/// Sorts an SMTP failure: 5xx replies are permanent; 4xx replies, refused or dropped
/// connections, TLS trouble and timeouts are worth retrying later.
fn classify(e: &lettre::transport::smtp::Error) -> MailError {
    if e.is_permanent() {
        MailError::Permanent(e.to_string())
    } else {
        MailError::Transient(e.to_string())
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, message: &Message) -> Result<(), MailError> {
        let email = self.build_message(message)?;
        // lettre bounds each step by the timeout; this bounds the whole exchange.
        match tokio::time::timeout(self.timeout * 3, self.transport.send(email)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(MailError::Transient(format!(
                "the mail server did not finish within {:?}",
                self.timeout * 3
            ))),
        }
    }
}
