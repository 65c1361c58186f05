//! SMTP mailer for [`otp_core`] on [`lettre`]: async (tokio), pooled connections, TLS by
//! rustls, timeouts, and errors sorted into transient (503) and permanent (502).
//!
//! ```no_run
//! use otp_core::{Config, OtpAuth, store::MemoryStore};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load()?; // OTP_AUTH_SMTP_SERVER, _PORT, _USERNAME, _PASSWORD, _TLS, MAIL_FROM...
//! let mailer = otp_smtp::SmtpMailer::from_config(&config)?;
//! let auth = OtpAuth::builder(config)
//!     .stores(MemoryStore::new())
//!     .mailer(mailer)
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! The message is `multipart/alternative` (plain text and HTML, both from
//! [`otp_core::mailer::template::Templates`]), `From: MAIL_FROM_NAME <MAIL_FROM>`, `To:` the normalized
//! address, with `Subject`, `Date` and `Message-ID`. Addresses are validated by
//! [`otp_core::hooks::Email`] before they get here, and lettre encodes every header, so no header
//! can be injected.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::time::Duration;

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Instant;

use lettre::Address;
use lettre::message::{Mailbox, MultiPart};
#[cfg(feature = "tls")]
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
#[cfg(feature = "tls")]
use lettre::transport::smtp::client::TlsParameters;
use lettre::transport::smtp::extension::ClientId;
#[cfg(feature = "tls")]
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use otp_core::Config;
use otp_core::config::{MailSettings, SmtpSettings, SmtpTls};
use otp_core::mailer::{MailError, Mailer, Message};
use secrecy::ExposeSecret;

/// Sends login mail over SMTP.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: Transport,
    from: Mailbox,
    message_id_domain: String,
    timeout: Duration,
    description: String,
    host: String,
    port: u16,
    tls: SmtpTls,
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

impl From<SmtpConfigError> for otp_core::config::ConfigError {
    fn from(e: SmtpConfigError) -> Self {
        otp_core::config::ConfigError::new(e.0)
    }
}

/// Plain and STARTTLS connections go through [`DirectPool`]; implicit TLS through lettre's
/// own pooled transport.
#[derive(Clone)]
enum Transport {
    Direct(Arc<DirectPool>),
    #[cfg(feature = "tls")]
    Lettre(AsyncSmtpTransport<Tokio1Executor>),
}

/// A pool of SMTP connections opened with `TCP_NODELAY`.
///
/// lettre writes a message and its final `.` in two writes; with Nagle's algorithm on, the
/// second waits for the ACK of the first, which the server delays by ~40 ms: every mail
/// took 44 ms on loopback. Its pool also sends a `NOOP` before each reuse. This pool opens
/// the sockets itself (no delay), reuses a connection at once, and retries a send once on
/// a fresh connection when a pooled one turns out to be closed.
struct DirectPool {
    host: String,
    port: u16,
    #[cfg(feature = "tls")]
    starttls: bool,
    credentials: Option<Credentials>,
    timeout: Duration,
    max_idle: usize,
    hello: ClientId,
    idle: tokio::sync::Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

/// How long an idle connection is kept: servers commonly drop idle clients after a minute.
const IDLE_LIMIT: Duration = Duration::from_secs(50);

type SmtpError = lettre::transport::smtp::Error;

impl DirectPool {
    async fn connect(&self) -> Result<AsyncSmtpConnection, MailError> {
        let stream = tokio::time::timeout(
            self.timeout,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| {
            MailError::Transient(format!("connecting timed out after {:?}", self.timeout))
        })?
        .map_err(|e| MailError::Transient(format!("connecting to the mail server: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| MailError::Transient(format!("TCP_NODELAY: {e}")))?;
        let setup = async {
            let mut conn =
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello).await?;
            // (Without the `tls` feature `from_config` refused every TLS mode.)
            #[cfg(feature = "tls")]
            if self.starttls {
                let tls = TlsParameters::new(self.host.clone())?;
                conn.starttls(tls, &self.hello).await?;
            }
            if let Some(c) = &self.credentials {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], c).await?;
            }
            Ok::<_, SmtpError>(conn)
        };
        match tokio::time::timeout(self.timeout, setup).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(MailError::Transient(format!(
                "the mail server did not greet within {:?}",
                self.timeout
            ))),
        }
    }

    async fn take(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().await;
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < IDLE_LIMIT && !conn.has_broken() {
                return Some(conn);
            }
        }
        None
    }

    async fn give_back(&self, conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        let mut idle = self.idle.lock().await;
        if idle.len() < self.max_idle {
            idle.push((conn, Instant::now()));
        }
    }

    async fn send_on(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &lettre::address::Envelope,
        bytes: &[u8],
    ) -> Result<(), Result<SmtpError, ()>> {
        match tokio::time::timeout(self.timeout, conn.send(envelope, bytes)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Ok(e)),
            Err(_) => Err(Err(())),
        }
    }

    async fn send(
        &self,
        envelope: &lettre::address::Envelope,
        bytes: &[u8],
    ) -> Result<(), MailError> {
        let timed_out = || {
            MailError::Transient(format!(
                "the mail server did not answer within {:?}",
                self.timeout
            ))
        };
        if let Some(mut conn) = self.take().await {
            match self.send_on(&mut conn, envelope, bytes).await {
                Ok(()) => {
                    self.give_back(conn).await;
                    return Ok(());
                }
                // A reply: the connection was alive, the answer stands.
                Err(Ok(e)) if e.is_permanent() || e.is_transient() => return Err(classify(&e)),
                Err(Err(())) => return Err(timed_out()),
                // The pooled connection was closed under us: once more on a new one.
                Err(Ok(_)) => {}
            }
        }
        let mut conn = self.connect().await?;
        match self.send_on(&mut conn, envelope, bytes).await {
            Ok(()) => {
                self.give_back(conn).await;
                Ok(())
            }
            Err(Ok(e)) => Err(classify(&e)),
            Err(Err(())) => Err(timed_out()),
        }
    }
}

impl SmtpMailer {
    /// Builds the mailer from `OTP_AUTH_SMTP_*` and `OTP_AUTH_MAIL_FROM*`. Connects lazily:
    /// the first mail opens the first pooled connection.
    pub fn from_config(config: &Config) -> Result<SmtpMailer, SmtpConfigError> {
        let host = config.smtp.server.as_str();
        let tls = config.smtp.tls_mode();
        let timeout = Duration::from_millis(config.smtp.timeout_ms);
        let credentials = match (&config.smtp.username, &config.smtp.password) {
            (Some(user), Some(password)) => Some(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            )),
            (None, None) => None,
            _ => {
                let v = SmtpSettings::VARS;
                return Err(SmtpConfigError(format!(
                    "set both {} and {}, or neither",
                    v.username, v.password
                )));
            }
        };
        #[cfg(not(feature = "tls"))]
        if tls != SmtpTls::None {
            return Err(SmtpConfigError(format!(
                "{}={tls:?} needs otp-smtp's `tls` feature (it is built without: only a plain \
                 relay, `none`, works)",
                SmtpSettings::VARS.tls
            )));
        }
        let transport = match tls {
            SmtpTls::None | SmtpTls::Starttls => Transport::Direct(Arc::new(DirectPool {
                host: host.to_owned(),
                port: config.smtp.port,
                #[cfg(feature = "tls")]
                starttls: tls == SmtpTls::Starttls,
                credentials,
                timeout,
                max_idle: config.smtp.pool_size as usize,
                hello: ClientId::default(),
                idle: tokio::sync::Mutex::new(Vec::new()),
            })),
            #[cfg(not(feature = "tls"))]
            SmtpTls::Tls => {
                return Err(SmtpConfigError(format!(
                    "{}=tls needs otp-smtp's `tls` feature",
                    SmtpSettings::VARS.tls
                )));
            }
            #[cfg(feature = "tls")]
            SmtpTls::Tls => {
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                    .map_err(|e| {
                        SmtpConfigError(format!("{} {host:?}: {e}", SmtpSettings::VARS.server))
                    })?
                    .port(config.smtp.port)
                    .timeout(Some(timeout))
                    .pool_config(
                        PoolConfig::new()
                            .max_size(config.smtp.pool_size)
                            .idle_timeout(Duration::from_secs(60)),
                    );
                if let Some(c) = credentials {
                    builder = builder.credentials(c);
                }
                Transport::Lettre(builder.build())
            }
        };
        let address: Address = config.mail.from.parse().map_err(|e| {
            SmtpConfigError(format!(
                "{} {:?}: {e}",
                MailSettings::VARS.from,
                config.mail.from
            ))
        })?;
        let message_id_domain = address.domain().to_owned();
        Ok(SmtpMailer {
            transport,
            from: Mailbox::new(Some(config.mail.from_name.clone()), address),
            message_id_domain,
            timeout,
            description: format!("{host}:{} ({tls:?})", config.smtp.port),
            host: host.to_owned(),
            port: config.smtp.port,
            tls,
        })
    }

    /// Builds the MIME message for `message`.
    pub fn build_message(&self, message: &Message) -> Result<lettre::Message, MailError> {
        let to: Address = message.to.as_str().parse().map_err(|e| {
            MailError::Permanent(otp_core::mailer::redact_addresses(&format!(
                "recipient address: {e}"
            )))
        })?;
        lettre::Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(message.subject.clone())
            .message_id(Some(format!(
                "<{}@{}>",
                otp_core::store::random_id(),
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
    // Servers quote the recipient in their replies: no address goes into the error.
    let text = otp_core::mailer::redact_addresses(&e.to_string());
    if e.is_permanent() {
        MailError::Permanent(text)
    } else {
        MailError::Transient(text)
    }
}

impl SmtpMailer {
    /// A connection made (greeting, STARTTLS and AUTH) and kept in the pool, nothing sent.
    async fn check_connection(&self) -> Result<(), MailError> {
        match &self.transport {
            Transport::Direct(pool) => {
                let conn = pool.connect().await?;
                pool.give_back(conn).await;
                Ok(())
            }
            #[cfg(feature = "tls")]
            Transport::Lettre(t) => {
                match tokio::time::timeout(self.timeout * 3, t.test_connection()).await {
                    Ok(Ok(true)) => Ok(()),
                    Ok(Ok(false)) => Err(MailError::Transient(
                        "the mail server did not answer NOOP".to_owned(),
                    )),
                    Ok(Err(e)) => Err(classify(&e)),
                    Err(_) => Err(MailError::Transient(format!(
                        "the mail server did not answer within {:?}",
                        self.timeout * 3
                    ))),
                }
            }
        }
    }

    /// The TLS mode's setting value.
    fn tls_word(&self) -> &'static str {
        match self.tls {
            SmtpTls::None => "none",
            SmtpTls::Starttls => "starttls",
            SmtpTls::Tls => "tls",
        }
    }

    /// A hint when the TLS mode and the port disagree (implicit TLS is usually 465,
    /// STARTTLS and plain 25 or 587).
    fn tls_hint(&self) -> &'static str {
        match (self.tls, self.port) {
            (SmtpTls::Tls, p) if p != 465 => {
                " (implicit TLS on a port other than 465: does the server want starttls?)"
            }
            (SmtpTls::Starttls | SmtpTls::None, 465) => {
                " (port 465 usually speaks TLS from the first byte: OTP_AUTH_SMTP_TLS=tls?)"
            }
            _ => "",
        }
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    /// Connects (greeting, STARTTLS and AUTH as configured) without sending; the
    /// connection stays in the pool for the next mail. A failure names the server and the
    /// variables, with a hint when the TLS mode and the port disagree.
    async fn ready(&self) -> Result<(), MailError> {
        let v = SmtpSettings::VARS;
        let named = |reason: String| {
            format!(
                "{}:{} {} ({}/{}/{}): {reason}{}",
                self.host,
                self.port,
                self.tls_word(),
                v.server,
                v.port,
                v.tls,
                self.tls_hint()
            )
        };
        self.check_connection().await.map_err(|e| match e {
            MailError::Transient(r) => MailError::Transient(named(r)),
            MailError::Permanent(r) => MailError::Permanent(named(r)),
            other => other,
        })
    }

    async fn send(&self, message: &Message) -> Result<(), MailError> {
        let email = self.build_message(message)?;
        // Each step is bounded by the timeout; this bounds the whole exchange.
        let whole = self.timeout * 3;
        let sent = async {
            match &self.transport {
                Transport::Direct(pool) => pool.send(email.envelope(), &email.formatted()).await,
                #[cfg(feature = "tls")]
                Transport::Lettre(t) => t.send(email).await.map(|_| ()).map_err(|e| classify(&e)),
            }
        };
        match tokio::time::timeout(whole, sent).await {
            Ok(r) => r,
            Err(_) => Err(MailError::Transient(format!(
                "the mail server did not finish within {whole:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tls: Option<SmtpTls>) -> Config {
        let mut c = Config::default();
        c.smtp.server = "mail.example.com".into();
        c.smtp.tls = tls;
        c
    }

    // Building lettre's pool (implicit TLS) spawns its task: a runtime is needed.
    #[tokio::test]
    async fn tls_modes_need_the_tls_feature() {
        for mode in [Some(SmtpTls::Starttls), Some(SmtpTls::Tls), None] {
            let built = SmtpMailer::from_config(&config(mode));
            if cfg!(feature = "tls") {
                assert!(built.is_ok(), "{mode:?}");
            } else {
                // A remote server defaults to STARTTLS: refused too, naming the feature.
                let e = built.err().map(|e| e.to_string()).unwrap_or_default();
                assert!(e.contains("`tls` feature"), "{mode:?}: {e}");
            }
        }
        let mut plain = config(Some(SmtpTls::None));
        plain.smtp.server = "127.0.0.1".into();
        assert!(SmtpMailer::from_config(&plain).is_ok());
    }
}

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
