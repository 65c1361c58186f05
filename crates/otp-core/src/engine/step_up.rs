//! Step-up: a signed-in user proves the address again, which renews the session's
//! `auth_time` (RFC 9470).

use super::{AccessToken, ClientInfo, OtpAuth, token_email};
use crate::code::Purpose;
use crate::error::{Error, TokenRejection};
use crate::event::{Event, EventKind, LoginMethod, Verification};
use crate::primitives::now_secs;
use crate::store::{Renewal, SessionAuth};

/// A signed-in user's re-authentication: [`OtpAuth::step_up`].
#[derive(Debug, Clone, Copy)]
pub struct StepUp<'a> {
    pub(super) auth: &'a OtpAuth,
}

impl StepUp<'_> {
    /// Sends a fresh code to the address of the signed-in user of `access_token`, under
    /// the same limits as [`OtpAuth::request_code`] (one budget per address, whatever the
    /// purpose), in the session's own flow: a new one replaces the session's pending code
    /// and nobody else's. Fails like
    /// `request_code`, and with [`Error::Unauthorized`] (401) without a valid access token.
    pub async fn request(&self, access_token: &str, client: &ClientInfo) -> Result<(), Error> {
        let user = self.auth.authenticate(access_token).await?;
        let email = token_email(&user.email)?;
        let purpose = Purpose::Reauthentication {
            subject: &user.subject,
        };
        let sid = Some(user.session_id.as_str());
        self.auth.send_code(&email, purpose, client, sid).await?;
        Ok(())
    }

    /// Checks a re-authentication code of the signed-in user of `access_token` and, on
    /// success, records the authentication on the session (its `auth_time` is now) and
    /// signs a new access token on the same session that carries it. The refresh token is
    /// unchanged, and later refreshes keep the new `auth_time`.
    ///
    /// A login code (or one sent for another user) never passes. Fails with
    /// [`Error::InvalidCode`] (400), [`Error::LockedOut`] (429), [`Error::InvalidRequest`]
    /// (422) for a malformed code, [`Error::Unauthorized`] (401) without a valid access
    /// token.
    pub async fn verify(
        &self,
        access_token: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<AccessToken, Error> {
        let auth = self.auth;
        let i = &*auth.inner;
        let user = auth.authenticate(access_token).await?;
        let code = auth.parse_code(code)?;
        let email = token_email(&user.email)?;
        let purpose = Purpose::Reauthentication {
            subject: &user.subject,
        };
        let req = auth
            .verify_signed_in(
                &email,
                purpose,
                &code,
                client,
                (Verification::Reauthentication, &user.session_id),
            )
            .await?;
        let proof = SessionAuth {
            at: now_secs(),
            method: LoginMethod::Code,
        };
        let renewed = async {
            let renewal = Renewal {
                sid: user.session_id.clone(),
                auth: proof,
                expires_at: 0,
            };
            if !i.blacklist.renew_session(&renewal).await? {
                return Err(Error::Unauthorized(TokenRejection::Revoked));
            }
            // With an absolute session end the new token may not outlive the old one: the
            // end is not known here (only refresh tokens carry it).
            let cap = (i.config.sessions.max_days > 0).then_some(user.claims.exp);
            auth.sign_access(&user.subject, &email, &user.session_id, cap, proof)
                .await
        };
        match renewed.await {
            Ok(access) => {
                let event = Event::new(EventKind::Reauthenticated, client);
                auth.emit(&event.of_session(&user.subject, &user.session_id));
                Ok(access)
            }
            Err(e) => Err(auth.give_back(&req, e, "re-authentication").await),
        }
    }
}
