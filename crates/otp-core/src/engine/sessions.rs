//! Sessions: refresh-token rotation, logout, and a user's own sessions.

use std::time::Duration;

use serde_json::Value;

use super::{ClientInfo, CurrentUser, OtpAuth, SESSION_END_CLAIM, TokenPair, token_email};
use crate::codec::TokenType;
use crate::error::{Error, TokenRejection};
use crate::event::{Event, EventKind};
use crate::primitives::now_secs;
use crate::store::{
    Revocation, RevokedAccess, RotateOutcome, Rotation, SessionInfo, session_subject_key,
};

impl OtpAuth {
    /// Exchanges a refresh token for a new pair, spending it (rotation). A spent token
    /// presented again revokes its whole session, except the immediate parent of the
    /// current token within `OTP_AUTH_REFRESH_REUSE_INTERVAL_SECONDS` of the rotation
    /// (racing tabs, a retry after a timeout): that gets the current token re-issued.
    ///
    /// `client` is the request's (for [`Hooks::allow`](crate::Hooks::allow) and the
    /// events); `&ClientInfo::default()` when there is none.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> Result<TokenPair, Error> {
        let result = self.refresh_inner(refresh_token, client).await;
        match &result {
            Ok((pair, reissued)) => {
                let kind = if *reissued {
                    EventKind::ReuseGranted
                } else {
                    EventKind::Refreshed
                };
                let event = Event::new(kind, client);
                self.emit(&event.of_session(&pair.claims.sub, &pair.claims.sid));
            }
            // Reuse has its own event, with the session.
            Err(Error::Unauthorized(TokenRejection::Reused)) => {}
            Err(Error::Unauthorized(_)) => {
                self.emit(&Event::new(EventKind::RefreshRefused, client));
            }
            Err(_) => {}
        }
        result.map(|(pair, _)| pair)
    }

    /// The new pair, and whether it re-issued the current token (reuse interval).
    async fn refresh_inner(
        &self,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> Result<(TokenPair, bool), Error> {
        let i = &*self.inner;
        let claims = i
            .codec
            .verify(refresh_token, TokenType::Refresh)
            .map_err(Error::Unauthorized)?;
        let email = token_email(&claims.email)?;
        if !i.hooks.allow(&email, client).await.map_err(Error::Hook)? {
            i.blacklist
                .revoke(&Revocation {
                    access: None,
                    sessions: vec![claims.sid.clone()],
                })
                .await?;
            return Err(Error::Unauthorized(TokenRejection::Revoked));
        }
        // A session from before OTP_AUTH_SESSION_MAX_DAYS was set starts its clock now.
        let session_end = claims
            .extra
            .get(SESSION_END_CLAIM)
            .and_then(Value::as_u64)
            .or_else(|| i.config.sessions.end_from(now_secs()));
        if session_end.is_some_and(|end| end <= now_secs()) {
            return Err(Error::Unauthorized(TokenRejection::Revoked));
        }
        // The application's claims first (a failing hook spends nothing), then the
        // rotation, which answers the session's last authentication for the access token.
        let extra = self.hook_claims(&claims.sub, &email).await?;
        let new_refresh = self.sign_refresh(&claims.sub, &email, &claims.sid, None, session_end)?;
        let access_secs = i.config.tokens.access_expire_minutes * 60;
        let access_end = session_end.map_or(now_secs() + access_secs, |end| {
            end.min(now_secs() + access_secs)
        });
        let outcome = i
            .blacklist
            .rotate_refresh(&Rotation {
                sid: claims.sid.clone(),
                presented_jti: claims.jti.clone(),
                new_jti: new_refresh.claims.jti.clone(),
                new_expires_at: new_refresh.claims.exp.max(access_end),
                reuse_interval: Duration::from_secs(i.config.sessions.reuse_interval_seconds),
            })
            .await?;
        let access = |auth| {
            self.sign_access_with(&claims.sub, &email, &claims.sid, session_end, auth, extra)
        };
        match outcome {
            RotateOutcome::Rotated { auth } => Ok((Self::pair(access(auth)?, &new_refresh), false)),
            RotateOutcome::Reissued { current_jti, auth } => {
                // The same lineage: the current token again, never a second branch.
                let current = self.sign_refresh(
                    &claims.sub,
                    &email,
                    &claims.sid,
                    Some(&current_jti),
                    session_end,
                )?;
                Ok((Self::pair(access(auth)?, &current), true))
            }
            RotateOutcome::Reused => {
                let event = Event::new(EventKind::ReuseDetected, client);
                self.emit(&event.of_session(&claims.sub, &claims.sid));
                Err(Error::Unauthorized(TokenRejection::Reused))
            }
            RotateOutcome::Unknown => Err(Error::Unauthorized(TokenRejection::Revoked)),
        }
    }

    /// Revokes the access token and ends the sessions of both tokens. Invalid, expired or
    /// missing tokens are skipped: logging out always succeeds unless the store is down.
    pub async fn logout(
        &self,
        access_token: Option<&str>,
        refresh_token: Option<&str>,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        let i = &*self.inner;
        let mut revocation = Revocation::default();
        let mut subjects = Vec::new();
        if let Some(Ok(c)) = access_token.map(|t| i.codec.verify(t, TokenType::Access)) {
            subjects.push(c.sub.clone());
            revocation.sessions.push(c.sid.clone());
            revocation.access = Some(RevokedAccess {
                sid: c.sid,
                jti: c.jti,
                expires_at: c.exp,
            });
        }
        if let Some(Ok(c)) = refresh_token.map(|t| i.codec.verify(t, TokenType::Refresh))
            && !revocation.sessions.contains(&c.sid)
        {
            subjects.push(c.sub);
            revocation.sessions.push(c.sid);
        }
        if revocation != Revocation::default() {
            i.blacklist.revoke(&revocation).await?;
        }
        if revocation.sessions.is_empty() {
            // Nothing to end (no valid token): the call is still a logout.
            self.emit(&Event::new(EventKind::LoggedOut, client));
        }
        for (sid, sub) in revocation.sessions.iter().zip(subjects) {
            self.emit(&Event::new(EventKind::LoggedOut, client).of_session(&sub, sid));
        }
        Ok(())
    }

    /// Ends every session of `subject`; how many were live. The event carries the session
    /// of the request, if any.
    pub(super) async fn end_all_of(
        &self,
        subject: &str,
        sid: Option<&str>,
        client: &ClientInfo,
    ) -> Result<u32, Error> {
        let key = self.inner.hasher.subject_key(subject);
        let n = self.inner.blacklist.revoke_all(&key).await?;
        let mut event = Event::new(EventKind::LoggedOutAll { sessions: n }, client);
        event.subject = Some(subject.to_owned());
        event.session_id = sid.map(str::to_owned);
        self.emit(&event);
        Ok(n)
    }

    /// Ends `sid` if it is one of its subject's live sessions; whether it was.
    pub(super) async fn end_live_session(&self, sid: &str) -> Result<bool, Error> {
        let subject_key = session_subject_key(sid);
        if subject_key.is_empty() {
            return Ok(false);
        }
        let live = self.inner.blacklist.list_sessions(subject_key).await?;
        if !live.iter().any(|s| s.sid == sid) {
            return Ok(false);
        }
        self.inner
            .blacklist
            .revoke(&Revocation {
                access: None,
                sessions: vec![sid.to_owned()],
            })
            .await?;
        Ok(true)
    }

    /// The live sessions of `subject`.
    pub(super) async fn sessions_of(&self, subject: &str) -> Result<Vec<SessionInfo>, Error> {
        let key = self.inner.hasher.subject_key(subject);
        Ok(self.inner.blacklist.list_sessions(&key).await?)
    }
}

/// A user's own sessions, through their access token: [`OtpAuth::sessions`].
#[derive(Debug, Clone, Copy)]
pub struct Sessions<'a> {
    pub(super) auth: &'a OtpAuth,
}

impl Sessions<'_> {
    /// The live sessions of the user of `access_token`, with that user.
    pub async fn list(&self, access_token: &str) -> Result<(CurrentUser, Vec<SessionInfo>), Error> {
        let user = self.auth.authenticate(access_token).await?;
        let sessions = self.auth.sessions_of(&user.subject).await?;
        Ok((user, sessions))
    }

    /// Ends one session of the user of `access_token`. A session that is not one of the
    /// user's live sessions is [`Error::NotFound`] (404), whoever it belongs to. Returns
    /// whether it was the token's own session.
    pub async fn end(
        &self,
        access_token: &str,
        sid: &str,
        client: &ClientInfo,
    ) -> Result<bool, Error> {
        let auth = self.auth;
        let user = auth.authenticate(access_token).await?;
        if session_subject_key(sid) != auth.inner.hasher.subject_key(&user.subject) {
            return Err(Error::NotFound);
        }
        if !auth.end_live_session(sid).await? {
            return Err(Error::NotFound);
        }
        let event = Event::new(EventKind::SessionEnded, client);
        auth.emit(&event.of_session(&user.subject, sid));
        Ok(sid == user.session_id)
    }

    /// Ends every session of the user of `access_token` (all devices) and forgets the
    /// address's known devices; how many sessions were live.
    pub async fn end_all(&self, access_token: &str, client: &ClientInfo) -> Result<u32, Error> {
        let user = self.auth.authenticate(access_token).await?;
        self.auth.forget_devices(&token_email(&user.email)?).await?;
        self.auth
            .end_all_of(&user.subject, Some(&user.session_id), client)
            .await
    }

    /// Ends every session of the user of `access_token` except its own; how many.
    pub async fn end_others(&self, access_token: &str, client: &ClientInfo) -> Result<u32, Error> {
        let (user, sessions) = self.list(access_token).await?;
        let others: Vec<String> = sessions
            .into_iter()
            .map(|s| s.sid)
            .filter(|sid| *sid != user.session_id)
            .collect();
        let n = others.len() as u32;
        if n > 0 {
            self.auth
                .inner
                .blacklist
                .revoke(&Revocation {
                    access: None,
                    sessions: others,
                })
                .await?;
        }
        let event = Event::new(EventKind::LoggedOutOthers { sessions: n }, client);
        self.auth
            .emit(&event.of_session(&user.subject, &user.session_id));
        Ok(n)
    }
}
