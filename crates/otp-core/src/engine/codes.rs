//! Codes: issuing one within the limits and mailing it, and checking one. Shared by the
//! login, step-up and email-change flows.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;

use super::flows::is_id;
use super::{ClientInfo, OtpAuth, PACING_FLOOR};
use crate::code::{AddressKey, Code, CodeMac, FlowKey, IpKey, Purpose};
use crate::config::CodeSettings;
use crate::email::Email;
use crate::error::Error;
use crate::event::{Binding, Device, Event, EventKind, Failure, Limit, Verification, Withheld};
#[cfg(feature = "links")]
use crate::link::link_url;
use crate::mailer::{Message, MessageKind};
#[cfg(feature = "links")]
use crate::primitives::now_secs;
use crate::store::{CallId, IssueOutcome, IssueRequest, VerifyOutcome, VerifyRequest};

impl OtpAuth {
    /// Sends a code for `purpose` to `email`, within its limits, and answers the id of the
    /// flow it belongs to: a login's (the client's flow for a resend, else a new one), or
    /// for a signed-in user (`session`: the session id) the session's, whose id is not
    /// the client's to hold (`None`). A refused address (the `allow` hook) goes through the
    /// limits with a code nobody knows and gets no mail, in about the time a mail takes.
    pub(super) async fn send_code(
        &self,
        email: &Email,
        purpose: Purpose<'_>,
        client: &ClientInfo,
        session: Option<&str>,
    ) -> Result<Option<String>, Error> {
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
        let target = FlowTarget::new(self, client, session);
        let outcome = i
            .store
            .issue(&IssueRequest {
                address: address.clone(),
                ip: client.ip.map(IpKey::new),
                code_mac,
                code_ttl: Duration::from_secs(i.config.codes.expiry_seconds),
                limits: i.limits,
                call: CallId::random(),
                resend: target.resend.as_ref().map(|(_, key)| *key),
                flow: target.new.1,
                device: self.known_device(&address, client),
                signed_in: session.is_some(),
            })
            .await?;
        let event = |kind| Event::new(kind, client).of_address(&address, email);
        let (resent, known) = match outcome {
            IssueOutcome::Issued {
                resent,
                known_device,
            } => (resent, known_device),
            IssueOutcome::Locked { resent } => {
                // An administrator's lock answers like a sent code: nobody learns of it.
                let reason = Withheld::Locked;
                self.emit(&event(EventKind::CodeWithheld { reason }));
                self.pace_like_a_mail().await;
                return Ok(target.used(resent).0);
            }
            refused => {
                let (limit, error) = refusal(refused);
                self.emit(&event(EventKind::CodeRefused { limit }));
                return Err(error);
            }
        };
        let (flow_id, flow) = target.used(resent);
        let device = if known { Device::Known } else { Device::New };
        let event = |kind| event(kind).on_device(device);
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
            return Ok(flow_id);
        }
        let message = self.code_message(email, purpose, code, client, None);
        let kind = message.kind;
        let started = Instant::now();
        match i.mailer.send(&message).await {
            Ok(()) => {
                self.record_mail_latency(started.elapsed());
                self.emit(&event(EventKind::CodeSent));
                Ok(flow_id)
            }
            Err(e) => {
                let error = e.redacted();
                self.emit(&event(EventKind::MailFailed {
                    mail: kind,
                    error: error.clone(),
                }));
                // A code whose mail never left must not stay usable.
                if let Err(se) = i.store.discard(&address, &flow, &code_mac).await {
                    tracing::warn!(address = %address, error = %se, "discarding the unsent code failed");
                }
                Err(error.into())
            }
        }
    }

    /// The mail carrying `code` for `purpose`, in the request's language, with a sign-in
    /// link for a login when `OTP_AUTH_PUBLIC_URL` is set. `sign_in`: an administrator's
    /// sign-in, its flow id and lifetime (seconds), which its link carries.
    pub(super) fn code_message(
        &self,
        email: &Email,
        purpose: Purpose<'_>,
        code: Code,
        client: &ClientInfo,
        sign_in: Option<(&str, u64)>,
    ) -> Message {
        let i = &*self.inner;
        let link = self.sign_in_link(email, purpose, &code, sign_in);
        let lifetime = sign_in.map_or(i.config.codes.expiry_seconds, |(_, secs)| secs);
        let (language, templates) = i.templates.select(client.accept_language.as_deref());
        let values = crate::mailer::template::TemplateValues {
            code: code.expose(),
            minutes: lifetime.div_ceil(60),
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

    /// The sign-in link of a login's `code` when `OTP_AUTH_PUBLIC_URL` is set (carrying an
    /// administrator's sign-in's flow and lifetime).
    pub(super) fn sign_in_link(
        &self,
        email: &Email,
        purpose: Purpose<'_>,
        code: &Code,
        sign_in: Option<(&str, u64)>,
    ) -> Option<String> {
        #[cfg(feature = "links")]
        {
            let i = &*self.inner;
            let url = i.config.http.public_url.as_deref();
            let url = url.filter(|_| purpose == Purpose::Login)?;
            let token = match sign_in {
                Some(s) => i.link.seal_sign_in(email, code, now_secs(), s),
                None => i.link.seal(email, code, now_secs()),
            };
            Some(link_url(url, &token))
        }
        #[cfg(not(feature = "links"))]
        {
            let _ = (email, purpose, code, sign_in);
            None
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

    /// The store's request to check `code` of `purpose` for `email`, with its flow (or
    /// unbound).
    pub(super) fn verify_request(
        &self,
        email: &Email,
        purpose: Purpose<'_>,
        code: &Code,
        client: &ClientInfo,
        flow: Option<FlowKey>,
    ) -> VerifyRequest {
        let i = &*self.inner;
        VerifyRequest {
            address: i.hasher.address_key(email),
            code_mac: i.hasher.code_mac(purpose, email, code),
            flow,
            ip: client.ip.map(IpKey::new),
            limits: i.limits,
            code_ttl: Duration::from_secs(i.config.codes.expiry_seconds),
            call: CallId::random(),
        }
    }

    /// Checks a signed-in user's `code` of `purpose` for `email` (a re-authentication or an
    /// email change), bound to the flow of the session `sid`; the spent request on
    /// success. An address the allow hook refuses spends its code and gets
    /// [`Error::InvalidCode`].
    pub(super) async fn verify_signed_in(
        &self,
        email: &Email,
        purpose: Purpose<'_>,
        code: &Code,
        client: &ClientInfo,
        (method, sid): (Verification, &str),
    ) -> Result<VerifyRequest, Error> {
        let i = &*self.inner;
        let flow = Some(i.hasher.session_flow_key(sid));
        let req = self.verify_request(email, purpose, code, client, flow);
        let allowed = i.hooks.allow(email, client).await.map_err(Error::Hook)?;
        let outcome = i.store.verify(&req).await?;
        let failed = Failed {
            method,
            binding: Binding::Bound,
            address: &req.address,
            email,
        };
        if outcome != VerifyOutcome::Verified {
            return Err(self.not_verified(outcome, &failed, client));
        }
        if !allowed {
            self.refused(&failed, client);
            return Err(Error::InvalidCode);
        }
        Ok(req)
    }

    /// Emits the failure of a verification whose code was right but which the application
    /// refused (the `allow` hook, or an email change it will not take).
    pub(super) fn refused(&self, f: &Failed<'_>, client: &ClientInfo) {
        let kind = EventKind::VerificationFailed {
            method: f.method,
            reason: Failure::Refused,
            attempts_left: None,
        };
        let event = Event::new(kind, client).of_address(f.address, f.email);
        self.emit(&event.bound(f.binding));
    }

    /// The error for a verification that did not succeed, its events emitted.
    pub(super) fn not_verified(
        &self,
        outcome: VerifyOutcome,
        f: &Failed<'_>,
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
        let event =
            |kind| (Event::new(kind, client).of_address(f.address, f.email)).bound(f.binding);
        self.emit(&event(EventKind::VerificationFailed {
            method: f.method,
            reason,
            attempts_left,
        }));
        // A bound flow that used its last attempt just ends; the address locks only for
        // unbound guesses.
        if attempts_left == Some(0) && f.binding == Binding::Unbound {
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

/// A verification that failed: which, how it was bound, of which address.
pub(super) struct Failed<'a> {
    pub(super) method: Verification,
    pub(super) binding: Binding,
    pub(super) address: &'a AddressKey,
    pub(super) email: &'a Email,
}

/// The flows a code request may go to: the one the client presented (a resend, if the
/// store still holds it) and a new one.
struct FlowTarget {
    /// The presented flow's id (`None` for a signed-in user's) and key.
    resend: Option<(Option<String>, FlowKey)>,
    /// The new flow's id (`None` for a signed-in user's) and key.
    new: (Option<String>, FlowKey),
}

impl FlowTarget {
    fn new(auth: &OtpAuth, client: &ClientInfo, session: Option<&str>) -> FlowTarget {
        if let Some(sid) = session {
            let key = auth.inner.hasher.session_flow_key(sid);
            return FlowTarget {
                resend: Some((None, key)),
                new: (None, key),
            };
        }
        let resend = (client.flow.as_deref())
            .filter(|id| is_id(id))
            .map(|id| (Some(id.to_owned()), auth.inner.hasher.flow_key(id)));
        let (id, key) = auth.new_flow();
        FlowTarget {
            resend,
            new: (Some(id), key),
        }
    }

    /// The flow the store used.
    fn used(self, resent: bool) -> (Option<String>, FlowKey) {
        match (resent, self.resend) {
            (true, Some(r)) => r,
            _ => self.new,
        }
    }
}

/// The limit that refused an issue, and the error the client gets.
fn refusal(outcome: IssueOutcome) -> (Limit, Error) {
    match outcome {
        IssueOutcome::AddressLimited { retry_after, limit } => {
            (limit.into(), Error::RateLimited { retry_after })
        }
        IssueOutcome::IpLimited { retry_after } => (Limit::Ip, Error::RateLimited { retry_after }),
        IssueOutcome::Issued { .. } | IssueOutcome::Locked { .. } => (
            Limit::Ip,
            Error::Internal("an issued code was taken for a refusal".to_owned()),
        ),
    }
}
