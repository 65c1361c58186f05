//! Tokens: signing the access and refresh tokens of a session, and the record a new
//! session leaves in the store.

use serde_json::{Map, Value};

use super::{AccessToken, ClientInfo, OtpAuth, SESSION_END_CLAIM, TokenPair};
use crate::codec::{Claims, RESERVED_CLAIMS, SignedToken, TokenType};
use crate::email::Email;
use crate::error::Error;
use crate::store::{NewSession, SessionAuth, new_session_id};

impl OtpAuth {
    /// A new session of `subject` for `email`, authenticated by `auth` and ending by
    /// `session_end`: its tokens and the record the store keeps.
    pub(super) async fn new_session(
        &self,
        subject: &str,
        email: &Email,
        session_end: Option<u64>,
        auth: SessionAuth,
        client: &ClientInfo,
    ) -> Result<(TokenPair, NewSession), Error> {
        let i = &*self.inner;
        let subject_key = i.hasher.subject_key(subject);
        let sid = new_session_id(&subject_key);
        let (pair, refresh) = self
            .issue_pair(subject, email, &sid, session_end, auth)
            .await?;
        let session = NewSession {
            sid,
            subject_key,
            refresh_jti: refresh.jti,
            expires_at: refresh.exp.max(pair.claims.exp),
            user_agent: client
                .user_agent
                .as_deref()
                .map(|ua| truncate(ua, 256).to_owned()),
            ip: client.ip.map(|ip| ip.to_canonical().to_string()),
            max_sessions: i.config.sessions.max_per_user,
            auth,
        };
        Ok((pair, session))
    }

    /// Signs a new access + refresh pair for `sid`; returns the pair and the refresh claims.
    /// Both end by `session_end` (the session's absolute end) when there is one.
    async fn issue_pair(
        &self,
        subject: &str,
        email: &Email,
        sid: &str,
        session_end: Option<u64>,
        auth: SessionAuth,
    ) -> Result<(TokenPair, Claims), Error> {
        let access = self
            .sign_access(subject, email, sid, session_end, auth)
            .await?;
        let refresh = self.sign_refresh(subject, email, sid, None, session_end)?;
        Ok((Self::pair(access, &refresh), refresh.claims))
    }

    pub(super) fn pair(access: AccessToken, refresh: &SignedToken) -> TokenPair {
        TokenPair {
            access_token: access.access_token,
            expires_in: access.expires_in,
            refresh_token: refresh.token.clone(),
            refresh_expires_in: refresh.claims.exp.saturating_sub(refresh.claims.iat),
            claims: access.claims,
            known_device: None,
        }
    }

    /// The application's claims for a new access token ([`Hooks::claims`]), the library's
    /// own dropped.
    pub(super) async fn hook_claims(
        &self,
        subject: &str,
        email: &Email,
    ) -> Result<Map<String, Value>, Error> {
        let mut extra = self
            .inner
            .hooks
            .claims(subject, email)
            .await
            .map_err(Error::Hook)?;
        extra.retain(|k, _| !RESERVED_CLAIMS.contains(&k.as_str()));
        Ok(extra)
    }

    /// Signs an access token for `sid` carrying `auth`, ending by `end` when there is one.
    pub(super) async fn sign_access(
        &self,
        subject: &str,
        email: &Email,
        sid: &str,
        end: Option<u64>,
        auth: SessionAuth,
    ) -> Result<AccessToken, Error> {
        let extra = self.hook_claims(subject, email).await?;
        self.sign_access_with(subject, email, sid, end, auth, extra)
    }

    pub(super) fn sign_access_with(
        &self,
        subject: &str,
        email: &Email,
        sid: &str,
        end: Option<u64>,
        auth: SessionAuth,
        extra: Map<String, Value>,
    ) -> Result<AccessToken, Error> {
        let i = &*self.inner;
        let access_secs = i.config.tokens.access_expire_minutes * 60;
        let mut claims = i.codec.claims(
            TokenType::Access,
            subject,
            email.as_str(),
            sid,
            access_secs,
            extra,
        );
        if let Some(end) = end {
            claims.exp = claims.exp.min(end);
        }
        claims.auth_time = Some(auth.at);
        claims.amr = Some(auth.method.amr().iter().map(|m| (*m).to_owned()).collect());
        let expires_in = claims.exp.saturating_sub(claims.iat);
        let access = i.codec.sign(claims)?;
        Ok(AccessToken {
            access_token: access.token,
            expires_in,
            claims: access.claims,
        })
    }

    /// Signs a refresh token for `sid`: a new `jti`, or `jti` (the current token of the
    /// session, re-issued within the reuse interval).
    pub(super) fn sign_refresh(
        &self,
        subject: &str,
        email: &Email,
        sid: &str,
        jti: Option<&str>,
        session_end: Option<u64>,
    ) -> Result<SignedToken, Error> {
        let i = &*self.inner;
        let mut claims = i.codec.claims(
            TokenType::Refresh,
            subject,
            email.as_str(),
            sid,
            i.config.tokens.refresh_expire_days * 86_400,
            Map::new(),
        );
        if let Some(jti) = jti {
            claims.jti = jti.to_owned();
        }
        if let Some(end) = session_end {
            claims.exp = claims.exp.min(end);
            claims
                .extra
                .insert(SESSION_END_CLAIM.to_owned(), Value::from(end));
        }
        i.codec.sign(claims)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
