//! Email change: a signed-in user moves the account to a new address, proved by a code
//! sent there; every session of the old address ends.

use std::time::Instant;

use super::codes::Failed;
use super::{ClientInfo, CurrentUser, EmailChange, OtpAuth, TokenPair, token_email};
use crate::code::Purpose;
use crate::email::Email;
use crate::error::{Error, TokenRejection};
use crate::event::{Binding, Event, EventKind, LoginMethod, Verification};
use crate::mailer::template::NoticeValues;
use crate::mailer::{Message, MessageKind};
use crate::primitives::now_secs;
use crate::store::SessionAuth;

/// A signed-in user's change of address: [`OtpAuth::email_change`].
#[derive(Debug, Clone, Copy)]
pub struct ChangeEmail<'a> {
    pub(super) auth: &'a OtpAuth,
}

impl ChangeEmail<'_> {
    /// Starts an email change for the signed-in user of `access_token`: sends a code to
    /// `new_email` (under that address's limits, like [`OtpAuth::request_code`]). The
    /// user must have authenticated within `OTP_AUTH_EMAIL_CHANGE_MAX_AGE_SECONDS`
    /// ([`Error::InsufficientAuthentication`], 401 with RFC 9470's challenge, otherwise:
    /// re-authenticate first).
    ///
    /// Succeeds the same way whether or not the new address is another user's: only
    /// [`ChangeEmail::verify`] asks the application. Fails with [`Error::InvalidRequest`]
    /// (422) for a malformed address or the current one, [`Error::Unauthorized`] (401)
    /// without a valid access token, and like `request_code`.
    pub async fn request(
        &self,
        access_token: &str,
        new_email: &str,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        let auth = self.auth;
        let user = auth.authenticate(access_token).await?;
        user.require_recent(auth.inner.config.sessions.email_change_max_age_seconds)?;
        let new = OtpAuth::parse_email(new_email)?;
        if new.as_str() == user.email {
            return Err(Error::InvalidRequest(
                "The new address is the current one.".to_owned(),
            ));
        }
        let purpose = Purpose::EmailChange {
            subject: &user.subject,
        };
        let sid = Some(user.session_id.as_str());
        auth.send_code(&new, purpose, client, sid).await?;
        Ok(())
    }

    /// Completes an email change: checks the code [`ChangeEmail::request`] sent to
    /// `new_email`, lets the application move its user
    /// ([`Hooks::change_email`](crate::Hooks::change_email)), mails the old address a
    /// notice (no code, no link; a failure to send it is logged and changes nothing for
    /// the request), and answers new tokens with the new `email` and the same `sub`
    /// (`auth_time` now: the code proved the new address).
    ///
    /// Every session of the user ends, the one of `access_token` included: all their
    /// tokens carry the old address. The new tokens open a session in its place, with the
    /// same absolute end under `OTP_AUTH_SESSION_MAX_DAYS`.
    ///
    /// A code of another purpose, or one sent for another user, never passes. Fails with
    /// [`Error::InvalidCode`] (400), [`Error::LockedOut`] (429), [`Error::InvalidRequest`]
    /// (422) for a malformed address or code, [`Error::Unauthorized`] (401) without a
    /// valid access token, [`Error::EmailChangeRefused`] or
    /// [`Error::EmailChangeUnsupported`] (403) as the hook answers. When the store fails
    /// (503) the code is given back, so the client can retry: the hook is then asked the
    /// same change again, and the old address told again.
    pub async fn verify(
        &self,
        access_token: &str,
        new_email: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<TokenPair, Error> {
        let auth = self.auth;
        let user = auth.authenticate(access_token).await?;
        let new = OtpAuth::parse_email(new_email)?;
        let code = auth.parse_code(code)?;
        let old = token_email(&user.email)?;
        let purpose = Purpose::EmailChange {
            subject: &user.subject,
        };
        let method = Verification::EmailChange;
        let req = auth
            .verify_signed_in(&new, purpose, &code, client, (method, &user.session_id))
            .await?;
        let session_end = match self.session_end_of(&user).await {
            Ok(end) => end,
            Err(e) => return Err(auth.give_back(&req, e, "email change").await),
        };
        let decision = auth
            .inner
            .hooks
            .change_email(&user.subject, &old, &new)
            .await
            .map_err(Error::Hook);
        let refused = match decision {
            Ok(EmailChange::Changed) => None,
            Ok(EmailChange::Refused) => Some(Error::EmailChangeRefused),
            Ok(EmailChange::Unsupported) => Some(Error::EmailChangeUnsupported),
            Err(e) => return Err(auth.give_back(&req, e, "email change").await),
        };
        if let Some(e) = refused {
            let failed = Failed {
                method,
                binding: Binding::Bound,
                address: &req.address,
                email: &new,
            };
            auth.refused(&failed, client);
            return Err(e);
        }
        // The application's record has moved: the old address is told whatever happens
        // to the tokens.
        self.send_notice(&old, &new, client).await;
        match self.reopen(&user, &new, session_end, client).await {
            Ok((pair, ended)) => {
                let event = Event::new(EventKind::EmailChanged, client)
                    .of_session(&user.subject, &pair.claims.sid)
                    .of_address(&req.address, &new);
                auth.emit(&event);
                if ended > 0 {
                    let kind = EventKind::LoggedOutAll { sessions: ended };
                    let event = Event::new(kind, client);
                    auth.emit(&event.of_session(&user.subject, &user.session_id));
                }
                Ok(pair)
            }
            Err(e) => Err(auth.give_back(&req, e, "email change").await),
        }
    }

    /// The absolute end of `user`'s session under `OTP_AUTH_SESSION_MAX_DAYS` (counted
    /// from its login), or `None` without one. Asks the store only when there is one; a
    /// session that is no longer live is a 401.
    async fn session_end_of(&self, user: &CurrentUser) -> Result<Option<u64>, Error> {
        let sessions = &self.auth.inner.config.sessions;
        if sessions.max_days == 0 {
            return Ok(None);
        }
        let live = self.auth.sessions_of(&user.subject).await?;
        let current = live
            .iter()
            .find(|s| s.sid == user.session_id)
            .ok_or(Error::Unauthorized(TokenRejection::Revoked))?;
        Ok(sessions.end_from(current.created_at))
    }

    /// Ends every session of `user` (all their tokens carry the old address) and opens one
    /// for `new`, ending by `session_end`; the new tokens, and how many sessions ended.
    async fn reopen(
        &self,
        user: &CurrentUser,
        new: &Email,
        session_end: Option<u64>,
        client: &ClientInfo,
    ) -> Result<(TokenPair, u32), Error> {
        let i = &*self.auth.inner;
        let proof = SessionAuth {
            at: now_secs(),
            method: LoginMethod::Code,
        };
        let (pair, session) = self
            .auth
            .new_session(&user.subject, new, session_end, proof, client)
            .await?;
        let ended = i.blacklist.revoke_all(&session.subject_key).await?;
        // The old address's known devices knew the account by it. (Those of the new one
        // knew whoever reads its mail, which this user just proved to be.)
        self.auth.forget_devices(&token_email(&user.email)?).await?;
        i.blacklist.create_session(&session).await?;
        Ok((pair, ended))
    }

    /// Mails `old` that the account moved to `new` (masked), in the request's language.
    /// A failure is logged: the change is done.
    async fn send_notice(&self, old: &Email, new: &Email, client: &ClientInfo) {
        let auth = self.auth;
        let i = &*auth.inner;
        let (language, templates) = i.templates.select(client.accept_language.as_deref());
        let masked = new.masked();
        let rendered = templates.render_email_changed(&NoticeValues {
            app_name: &i.config.mail.from_name,
            email: old.as_str(),
            new_email: &masked,
        });
        let message = Message {
            to: old.clone(),
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
            kind: MessageKind::EmailChanged,
            code: None,
            link: None,
            language: language.to_owned(),
        };
        let started = Instant::now();
        let kind = match i.mailer.send(&message).await {
            Ok(()) => {
                auth.record_mail_latency(started.elapsed());
                EventKind::NoticeSent
            }
            Err(e) => EventKind::MailFailed {
                mail: MessageKind::EmailChanged,
                error: e.redacted(),
            },
        };
        let address = i.hasher.address_key(old);
        auth.emit(&Event::new(kind, client).of_address(&address, old));
    }
}
