//! Codes: issuing one within the limits and mailing it, and checking one. Shared by the
//! login, step-up and email-change flows.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;

use super::{ClientInfo, OtpAuth, PACING_FLOOR};
use crate::code::{AddressKey, Code, CodeMac, IpKey, Purpose};
use crate::config::CodeSettings;
use crate::email::Email;
use crate::error::Error;
use crate::event::{Event, EventKind, Failure, Limit, Verification, Withheld};
#[cfg(feature = "links")]
use crate::link::link_url;
use crate::mailer::{Message, MessageKind};
#[cfg(feature = "links")]
use crate::primitives::now_secs;
use crate::store::{CallId, IssueOutcome, IssueRequest, VerifyOutcome, VerifyRequest};

impl OtpAuth {
    /// Sends a code for `purpose` to `email`, within its limits. A refused address (the
    /// `allow` hook) goes through the limits with a code nobody knows and gets no mail, in
    /// about the time a mail takes.
    pub(super) async fn send_code(
        &self,
        email: &Email,
        purpose: Purpose<'_>,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        let i = &*self.inner;
        let address = i.hasher.address_key(email);
        let allowed = i.hooks.allow(email, client).await.map_err(Error::Hook)?;
        let magic = allowed && self.magic_applies(email);
        let code = if magic {
            Code::magic(i.config.codes.length)
        } else {
            Code::generate(i.config.codes.length)
        };
        let code_mac = if allowed {
            i.hasher.code_mac(purpose, email, &code)
        } else {
            CodeMac::unguessable()
        };
        let outcome = i
            .store
            .issue(&IssueRequest {
                address: address.clone(),
                ip: client.ip.map(IpKey::new),
                code_mac,
                code_ttl: Duration::from_secs(i.config.codes.expiry_seconds),
                limits: i.limits,
                call: CallId::random(),
            })
            .await?;
        let event = |kind| Event::new(kind, client).of_address(&address, email);
        if let Some((limit, error)) = refusal(outcome) {
            self.emit(&event(EventKind::CodeRefused { limit }));
            return Err(error);
        }
        if !allowed || magic {
            let reason = if magic {
                Withheld::MagicCode
            } else {
                Withheld::Refused
            };
            self.emit(&event(EventKind::CodeWithheld { reason }));
            if !allowed {
                self.pace_like_a_mail().await;
            }
            return Ok(());
        }
        let message = self.code_message(email, purpose, code, client);
        let kind = message.kind;
        let started = Instant::now();
        match i.mailer.send(&message).await {
            Ok(()) => {
                self.record_mail_latency(started.elapsed());
                self.emit(&event(EventKind::CodeSent));
                Ok(())
            }
            Err(e) => {
                let error = e.redacted();
                self.emit(&event(EventKind::MailFailed {
                    mail: kind,
                    error: error.clone(),
                }));
                // A code whose mail never left must not stay usable.
                if let Err(se) = i.store.discard(&address, &code_mac).await {
                    tracing::warn!(address = %address, error = %se, "discarding the unsent code failed");
                }
                Err(error.into())
            }
        }
    }

    /// The mail carrying `code` for `purpose`, in the request's language, with a sign-in
    /// link for a login when `OTP_AUTH_PUBLIC_URL` is set.
    fn code_message(
        &self,
        email: &Email,
        purpose: Purpose<'_>,
        code: Code,
        client: &ClientInfo,
    ) -> Message {
        let i = &*self.inner;
        #[cfg(feature = "links")]
        let link = i
            .config
            .http
            .public_url
            .as_deref()
            .filter(|_| purpose == Purpose::Login)
            .map(|url| link_url(url, &i.link.seal(email, &code, now_secs())));
        #[cfg(not(feature = "links"))]
        let link: Option<String> = None;
        let (language, templates) = i.templates.select(client.accept_language.as_deref());
        let values = crate::mailer::template::TemplateValues {
            code: code.expose(),
            minutes: i.config.codes.expiry_seconds.div_ceil(60),
            app_name: &i.config.mail.from_name,
            email: email.as_str(),
            link: link.as_deref(),
        };
        let rendered = match purpose {
            Purpose::EmailChange { .. } => templates.render_email_change(&values),
            _ => templates.render(&values),
        };
        Message {
            to: email.clone(),
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
            kind: match purpose {
                Purpose::Login => MessageKind::Login,
                Purpose::Reauthentication { .. } => MessageKind::Reauthentication,
                Purpose::EmailChange { .. } => MessageKind::EmailChange,
            },
            code: Some(code),
            link,
            language: language.to_owned(),
        }
    }

    /// Folds a delivery time into the smoothed mail latency.
    pub(super) fn record_mail_latency(&self, d: Duration) {
        let sample = d.as_micros().min(u128::from(u32::MAX)) as u64;
        let old = self.inner.mail_latency_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        self.inner.mail_latency_us.store(new, Ordering::Relaxed);
    }

    /// Waits about as long as a mail takes (±15 %), for an answer that sends none.
    async fn pace_like_a_mail(&self) {
        let us = match self.inner.mail_latency_us.load(Ordering::Relaxed) {
            0 => PACING_FLOOR.as_micros() as u64,
            us => us,
        };
        let jitter = rand::rng().random_range(0.85..1.15);
        tokio::time::sleep(Duration::from_micros((us as f64 * jitter) as u64)).await;
    }

    /// The store's request to check `code` of `purpose` for `email`.
    pub(super) fn verify_request(
        &self,
        email: &Email,
        purpose: Purpose<'_>,
        code: &Code,
        client: &ClientInfo,
    ) -> VerifyRequest {
        let i = &*self.inner;
        VerifyRequest {
            address: i.hasher.address_key(email),
            code_mac: i.hasher.code_mac(purpose, email, code),
            ip: client.ip.map(IpKey::new),
            limits: i.limits,
            code_ttl: Duration::from_secs(i.config.codes.expiry_seconds),
            call: CallId::random(),
        }
    }

    /// Checks a signed-in user's `code` of `purpose` for `email` (a re-authentication or an
    /// email change); the spent request on success. An address the allow hook refuses
    /// spends its code and gets [`Error::InvalidCode`].
    pub(super) async fn verify_signed_in(
        &self,
        email: &Email,
        purpose: Purpose<'_>,
        code: &Code,
        client: &ClientInfo,
        method: Verification,
    ) -> Result<VerifyRequest, Error> {
        let i = &*self.inner;
        let req = self.verify_request(email, purpose, code, client);
        let allowed = i.hooks.allow(email, client).await.map_err(Error::Hook)?;
        let outcome = i.store.verify(&req).await?;
        if outcome != VerifyOutcome::Verified {
            return Err(self.not_verified(outcome, method, &req.address, email, client));
        }
        if !allowed {
            self.refused(method, &req.address, email, client);
            return Err(Error::InvalidCode);
        }
        Ok(req)
    }

    /// Emits the failure of a verification whose code was right but which the application
    /// refused (the `allow` hook, or an email change it will not take).
    pub(super) fn refused(
        &self,
        method: Verification,
        address: &AddressKey,
        email: &Email,
        client: &ClientInfo,
    ) {
        let kind = EventKind::VerificationFailed {
            method,
            reason: Failure::Refused,
            attempts_left: None,
        };
        self.emit(&Event::new(kind, client).of_address(address, email));
    }

    /// The error for a verification that did not succeed, its events emitted.
    pub(super) fn not_verified(
        &self,
        outcome: VerifyOutcome,
        method: Verification,
        address: &AddressKey,
        email: &Email,
        client: &ClientInfo,
    ) -> Error {
        let (reason, attempts_left, error) = match outcome {
            VerifyOutcome::Verified => {
                return Error::Internal("a verified code was refused".to_owned());
            }
            VerifyOutcome::NoCode { attempts_left } => {
                (Failure::NoCode, Some(attempts_left), Error::InvalidCode)
            }
            VerifyOutcome::Mismatch { attempts_left } => {
                (Failure::Mismatch, Some(attempts_left), Error::InvalidCode)
            }
            VerifyOutcome::LockedOut { retry_after } => {
                (Failure::LockedOut, None, Error::LockedOut { retry_after })
            }
            VerifyOutcome::IpLimited { retry_after } => {
                (Failure::IpLimited, None, Error::RateLimited { retry_after })
            }
        };
        let event = |kind| Event::new(kind, client).of_address(address, email);
        self.emit(&event(EventKind::VerificationFailed {
            method,
            reason,
            attempts_left,
        }));
        if attempts_left == Some(0) {
            self.emit(&event(EventKind::LockedOut));
        }
        error
    }

    /// Warns that the development magic code was issued or used.
    pub(super) fn warn_magic(&self, address: &AddressKey, what: &str) {
        tracing::warn!(
            address = %address,
            "{}: {what}",
            CodeSettings::VARS.disable_local_auth
        );
    }
}

/// The limit that refused an issue, and the error the client gets; `None` when issued.
fn refusal(outcome: IssueOutcome) -> Option<(Limit, Error)> {
    match outcome {
        IssueOutcome::Issued => None,
        IssueOutcome::AddressLimited { retry_after, limit } => {
            Some((limit.into(), Error::RateLimited { retry_after }))
        }
        IssueOutcome::IpLimited { retry_after } => {
            Some((Limit::Ip, Error::RateLimited { retry_after }))
        }
        IssueOutcome::LockedOut { retry_after } => {
            Some((Limit::Lockout, Error::LockedOut { retry_after }))
        }
    }
}
