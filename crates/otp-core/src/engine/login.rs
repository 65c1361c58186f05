//! Login: request a code, then verify it (typed in, or by the mail's sign-in link).

use super::{ClientInfo, OtpAuth, TokenPair};
use crate::code::{Code, Purpose};
use crate::email::Email;
use crate::error::Error;
use crate::event::{Event, EventKind, Failure, LoginMethod, Verification};
#[cfg(feature = "links")]
use crate::link::LinkError;
use crate::primitives::now_secs;
use crate::store::{NewSession, SessionAuth, VerifyOutcome, VerifyRequest, verify_then_open};

impl OtpAuth {
    /// Sends a new code to `email`, within the address and IP limits.
    ///
    /// Succeeds the same way whether or not the address is known or allowed. Fails with
    /// [`Error::RateLimited`] or [`Error::LockedOut`] (429), [`Error::StoreUnavailable`] or
    /// [`Error::MailUnavailable`] (503), [`Error::MailRejected`] (502).
    pub async fn request_code(&self, email: &str, client: &ClientInfo) -> Result<(), Error> {
        let email = Self::parse_email(email)?;
        self.send_code(&email, Purpose::Login, client).await
    }

    /// Checks `code` for `email` and, on success, opens a session and issues its tokens.
    ///
    /// A malformed code is refused with [`Error::InvalidRequest`] (422) and not counted.
    /// A wrong, expired or used code gives [`Error::InvalidCode`] (400); a locked-out
    /// address [`Error::LockedOut`] (429).
    pub async fn verify_code(
        &self,
        email: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<TokenPair, Error> {
        let email = Self::parse_email(email)?;
        let code = self.parse_code(code)?;
        self.login(&email, &code, client, LoginMethod::Code).await
    }

    /// Signs in with the token of a sign-in link: the code it carries is checked exactly
    /// like [`OtpAuth::verify_code`] (same attempts and lockout; either way spends both).
    /// A forged, altered or expired token, or one whose code is no longer pending, gives
    /// [`Error::InvalidLink`] (400).
    pub async fn verify_link(&self, token: &str, client: &ClientInfo) -> Result<TokenPair, Error> {
        let (email, code) = match self.open_link(token) {
            Ok(v) => v,
            Err(reason) => {
                let kind = EventKind::VerificationFailed {
                    method: Verification::Link,
                    reason,
                    attempts_left: None,
                };
                self.emit(&Event::new(kind, client));
                return Err(Error::InvalidLink);
            }
        };
        match self.login(&email, &code, client, LoginMethod::Link).await {
            Err(Error::InvalidCode) => Err(Error::InvalidLink),
            other => other,
        }
    }

    /// The masked address a sign-in link would sign in (for its confirmation page), or
    /// `None` for a forged, altered or expired token. Checks nothing in the store.
    pub(crate) fn link_account(&self, token: &str) -> Option<String> {
        self.open_link(token).ok().map(|(email, _)| email.masked())
    }

    /// The address and code a sign-in link's token carries, or why it carries none.
    #[cfg(feature = "links")]
    fn open_link(&self, token: &str) -> Result<(Email, Code), Failure> {
        let i = &*self.inner;
        i.link
            .open(
                token,
                now_secs(),
                i.config.codes.expiry_seconds,
                i.config.codes.length,
            )
            .map_err(|e| match e {
                LinkError::Expired => Failure::ExpiredLink,
                LinkError::Invalid => Failure::InvalidLink,
            })
    }

    /// Without the `links` feature no token opens.
    #[cfg(not(feature = "links"))]
    fn open_link(&self, _token: &str) -> Result<(Email, Code), Failure> {
        Err(Failure::InvalidLink)
    }

    /// Checks a login code of `email` and opens its session.
    ///
    /// The policy may have changed since the code was sent: a refused address is checked
    /// like any other (and spends its code), but never opens a session. The application's
    /// hooks see only verified addresses (a `subject` hook may create the user): with them,
    /// the code is checked first and given back if the hooks or the session write fail.
    /// The built-in hooks are pure: the tokens are signed first, and the store checks the
    /// code and records the session in one operation.
    async fn login(
        &self,
        email: &Email,
        code: &Code,
        client: &ClientInfo,
        method: LoginMethod,
    ) -> Result<TokenPair, Error> {
        let i = &*self.inner;
        let req = self.verify_request(email, Purpose::Login, code, client);
        if !i.hooks.allow(email, client).await.map_err(Error::Hook)? {
            let outcome = i.store.verify(&req).await?;
            if outcome == VerifyOutcome::Verified {
                self.refused(method.verification(), &req.address, email, client);
                return Err(Error::InvalidCode);
            }
            return Err(self.failed(outcome, method, &req, email, client));
        }
        if i.custom_hooks {
            return self.login_with_hooks(email, &req, client, method).await;
        }
        let (pair, session) = self.prepare_login(email, client, method).await?;
        let login = if i.one_step_login {
            i.store.verify_and_open(&req, &session).await?
        } else {
            verify_then_open(&*i.store, &req, &session, &*i.blacklist).await?
        };
        if login.outcome != VerifyOutcome::Verified {
            return Err(self.failed(login.outcome, method, &req, email, client));
        }
        self.logged_in(email, method, login.evicted, &pair, client);
        Ok(pair)
    }

    /// [`OtpAuth::login`] with the application's hooks: the code is spent first, and given
    /// back when the hooks or the session write fail.
    async fn login_with_hooks(
        &self,
        email: &Email,
        req: &VerifyRequest,
        client: &ClientInfo,
        method: LoginMethod,
    ) -> Result<TokenPair, Error> {
        let i = &*self.inner;
        let outcome = i.store.verify(req).await?;
        if outcome != VerifyOutcome::Verified {
            return Err(self.failed(outcome, method, req, email, client));
        }
        let opened = async {
            let (pair, session) = self.prepare_login(email, client, method).await?;
            let evicted = i.blacklist.create_session(&session).await?;
            Ok::<_, Error>((pair, evicted))
        };
        match opened.await {
            Ok((pair, evicted)) => {
                self.logged_in(email, method, evicted, &pair, client);
                Ok(pair)
            }
            Err(e) => Err(self.give_back(req, e, "login").await),
        }
    }

    fn failed(
        &self,
        outcome: VerifyOutcome,
        method: LoginMethod,
        req: &VerifyRequest,
        email: &Email,
        client: &ClientInfo,
    ) -> Error {
        self.not_verified(outcome, method.verification(), &req.address, email, client)
    }

    /// Gives a verified code back after the step that should have followed failed with
    /// `e` (a session that ended meanwhile keeps nothing to give back to); `e` again.
    pub(super) async fn give_back(&self, req: &VerifyRequest, e: Error, flow: &str) -> Error {
        if matches!(e, Error::Unauthorized(_)) {
            return e;
        }
        if let Err(r) = self.inner.store.restore(req).await {
            tracing::error!(
                address = %req.address,
                error = %r,
                "a verified code could not be restored after its {flow} failed"
            );
        }
        e
    }

    /// The tokens and the session record of a new login of `email`.
    async fn prepare_login(
        &self,
        email: &Email,
        client: &ClientInfo,
        method: LoginMethod,
    ) -> Result<(TokenPair, NewSession), Error> {
        let i = &*self.inner;
        let subject = i.hooks.subject(email).await.map_err(Error::Hook)?;
        let now = now_secs();
        let auth = SessionAuth { at: now, method };
        let session_end = i.config.sessions.end_from(now);
        self.new_session(&subject, email, session_end, auth, client)
            .await
    }

    /// Emits the events of a login that opened its session.
    fn logged_in(
        &self,
        email: &Email,
        method: LoginMethod,
        evicted: u32,
        pair: &TokenPair,
        client: &ClientInfo,
    ) {
        if self.magic_applies(email) {
            let address = self.inner.hasher.address_key(email);
            self.warn_magic(&address, "login with the magic code");
        }
        let (sub, sid) = (&pair.claims.sub, &pair.claims.sid);
        let kind = EventKind::LoginSucceeded { method };
        self.emit(&Event::new(kind, client).of_session(sub, sid));
        if evicted > 0 {
            let kind = EventKind::SessionsEvicted { count: evicted };
            self.emit(&Event::new(kind, client).of_session(sub, sid));
        }
    }
}
