//! Administration: the application's own calls on any subject's sessions.

use super::{NO_CLIENT, OtpAuth};
use crate::error::Error;
use crate::event::{Event, EventKind};
use crate::store::SessionInfo;

/// The application's administration of sessions: [`OtpAuth::admin`]. No access token is
/// involved, so call it only on behalf of someone allowed to.
#[derive(Debug, Clone, Copy)]
pub struct Admin<'a> {
    pub(super) auth: &'a OtpAuth,
}

impl Admin<'_> {
    /// The live sessions of `subject` (the token's `sub`, as
    /// [`Hooks::subject`](crate::Hooks::subject) gave it).
    pub async fn sessions_of(&self, subject: &str) -> Result<Vec<SessionInfo>, Error> {
        self.auth.sessions_of(subject).await
    }

    /// Ends every session of `subject` (a user banned, an account deleted); how many were
    /// live. Their refresh tokens stop working at once and their access tokens at their
    /// next check.
    pub async fn end_all_sessions_of(&self, subject: &str) -> Result<u32, Error> {
        self.auth.end_all_of(subject, None, &NO_CLIENT).await
    }

    /// Ends the session `sid` (the `sid` claim, or [`SessionInfo::sid`]), whoever it
    /// belongs to. Returns whether it was live; an id that names no live session changes
    /// nothing.
    pub async fn end_session(&self, sid: &str) -> Result<bool, Error> {
        let ended = self.auth.end_live_session(sid).await?;
        if ended {
            let mut event = Event::new(EventKind::SessionEnded, &NO_CLIENT);
            event.session_id = Some(sid.to_owned());
            self.auth.emit(&event);
        }
        Ok(ended)
    }
}
