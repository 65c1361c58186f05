//! Login: request a code, then verify it (typed in, or by the mail's sign-in link).

use super::codes::Failed;
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
    /// Sends a new code to `email`, within the limits of the client's budget (its known
    /// device's, else the address's) and its IP, and answers the id of the login flow the
    /// code belongs to: the client's flow ([`ClientInfo::flow`]) when it is still pending
    /// for this address (a resend: the flow keeps its failures), else a new one. The
    /// client presents it to verify (the flow cookie, or `flow_id`).
    ///
    /// Succeeds the same way whether or not the address is known or allowed. Fails with
    /// [`Error::RateLimited`] (429), [`Error::StoreUnavailable`] or
    /// [`Error::MailUnavailable`] (503), [`Error::MailRejected`] (502).
    pub async fn request_code(&self, email: &str, client: &ClientInfo) -> Result<String, Error> {
        let email = Self::parse_email(email)?;
        let flow = self.send_code(&email, Purpose::Login, client, None).await?;
        Ok(flow.unwrap_or_default())
    }

    /// Checks `code` for `email` and, on success, opens a session and issues its tokens
    /// (with a known-device cookie for the client, [`TokenPair::known_device`]).
    ///
    /// With the client's flow ([`ClientInfo::flow`]) only that flow's code is compared and
    /// its failures counted; without one, as `OTP_AUTH_FLOW_BINDING` says (see
    /// [`FlowBinding`](crate::config::FlowBinding)). A malformed code is refused with
    /// [`Error::InvalidRequest`] (422) and not counted. A wrong, expired or used code gives
    /// [`Error::InvalidCode`] (400); an address locked for unbound guesses
    /// [`Error::LockedOut`] (429); no flow where one is required [`Error::FlowRequired`]
    /// (400).
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
        let (email, code, flow) = match self.open_link(token) {
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
        // An administrator's sign-in carries its flow: the link itself is bound.
        let bound;
        let client = match flow {
            Some(flow) => {
                bound = ClientInfo {
                    flow: Some(flow),
                    ..client.clone()
                };
                &bound
            }
            None => client,
        };
        match self.login(&email, &code, client, LoginMethod::Link).await {
            Err(Error::InvalidCode) => Err(Error::InvalidLink),
            other => other,
        }
    }

    /// The masked address a sign-in link would sign in (for its confirmation page), and
    /// whether the link carries its own flow (an administrator's sign-in); `None` for a
    /// forged, altered or expired token. Checks nothing in the store.
    pub(crate) fn link_account(&self, token: &str) -> Option<(String, bool)> {
        (self.open_link(token).ok()).map(|(email, _, flow)| (email.masked(), flow.is_some()))
    }

    /// The address, code and (an administrator's sign-in) flow a sign-in link's token
    /// carries, or why it carries none.
    #[cfg(feature = "links")]
    fn open_link(&self, token: &str) -> Result<(Email, Code, Option<String>), Failure> {
        let i = &*self.inner;
        i.link
            .open(
                token,
                now_secs(),
                i.config.codes.expiry_seconds,
                i.config.codes.length,
            )
            .map(|o| (o.email, o.code, o.flow))
            .map_err(|e| match e {
                LinkError::Expired => Failure::ExpiredLink,
                LinkError::Invalid => Failure::InvalidLink,
            })
    }

    /// Without the `links` feature no token opens.
    #[cfg(not(feature = "links"))]
    fn open_link(&self, _token: &str) -> Result<(Email, Code, Option<String>), Failure> {
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
        let (flow, binding) = self.presented_flow(client)?;
        let req = self.verify_request(email, Purpose::Login, code, client, flow);
        let failed = Failed {
            method: method.verification(),
            binding,
            address: &req.address,
            email,
        };
        if !i.hooks.allow(email, client).await.map_err(Error::Hook)? {
            let outcome = i.store.verify(&req).await?;
            if outcome == VerifyOutcome::Verified {
                self.refused(&failed, client);
                return Err(Error::InvalidCode);
            }
            return Err(self.not_verified(outcome, &failed, client));
        }
        if i.custom_hooks {
            return self.login_with_hooks(&req, &failed, client, method).await;
        }
        let (pair, session) = self.prepare_login(email, client, method).await?;
        let login = if i.one_step_login {
            i.store.verify_and_open(&req, &session).await?
        } else {
            verify_then_open(&*i.store, &req, &session, &*i.blacklist).await?
        };
        if login.outcome != VerifyOutcome::Verified {
            return Err(self.not_verified(login.outcome, &failed, client));
        }
        Ok(self.logged_in(&failed, method, login.evicted, pair, client))
    }

    /// [`OtpAuth::login`] with the application's hooks: the code is spent first, and given
    /// back when the hooks or the session write fail.
    async fn login_with_hooks(
        &self,
        req: &VerifyRequest,
        failed: &Failed<'_>,
        client: &ClientInfo,
        method: LoginMethod,
    ) -> Result<TokenPair, Error> {
        let i = &*self.inner;
        let outcome = i.store.verify(req).await?;
        if outcome != VerifyOutcome::Verified {
            return Err(self.not_verified(outcome, failed, client));
        }
        let opened = async {
            let (pair, session) = self.prepare_login(failed.email, client, method).await?;
            let evicted = i.blacklist.create_session(&session).await?;
            Ok::<_, Error>((pair, evicted))
        };
        match opened.await {
            Ok((pair, evicted)) => Ok(self.logged_in(failed, method, evicted, pair, client)),
            Err(e) => Err(self.give_back(req, e, "login").await),
        }
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

    /// Emits the events of a login that opened its session; its tokens, with the client's
    /// known-device cookie for the address.
    fn logged_in(
        &self,
        f: &Failed<'_>,
        method: LoginMethod,
        evicted: u32,
        mut pair: TokenPair,
        client: &ClientInfo,
    ) -> TokenPair {
        if self.magic_applies(f.email) {
            self.warn_magic(f.address, "login with the magic code");
        }
        let (sub, sid) = (&pair.claims.sub, &pair.claims.sid);
        let kind = EventKind::LoginSucceeded { method };
        self.emit(&(Event::new(kind, client).of_session(sub, sid)).bound(f.binding));
        if evicted > 0 {
            let kind = EventKind::SessionsEvicted { count: evicted };
            self.emit(&Event::new(kind, client).of_session(sub, sid));
        }
        pair.known_device = self.device_cookie(f.address, client);
        pair
    }
}
