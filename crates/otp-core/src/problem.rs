//! Problem documents (RFC 9457): every refusal of the HTTP layer, the engine's
//! [`Error`]s and the contract's own (unknown path, wrong method, body too large, not
//! JSON, cross-site), with its status, headers and `application/problem+json` body.

use serde::Serialize;

use crate::error::{Error, StoreError, TokenRejection, retry_after_secs};

/// The media type of every error body.
pub(crate) const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Why the HTTP layer refuses a request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// The engine refused it.
    #[error(transparent)]
    Engine(#[from] Error),
    /// The request body is not JSON (415).
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// The request body is larger than the configured limit (413).
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// A cross-site request to a state-changing endpoint (403).
    #[error("origin not allowed")]
    ForbiddenOrigin,
    /// No endpoint at this path (404).
    #[error("not found")]
    NotFound,
    /// The endpoint exists but not for this method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The adapter found no client address, which the per-IP limit needs (500: the
    /// deployment's mistake, not the client's).
    #[error("no client address on the request")]
    NoClientAddress,
    /// A refresh token both in the body and in the cookie (400): which one the client
    /// means cannot be told.
    #[error("a refresh token in both the body and the cookie")]
    TwoRefreshTokens,
}

/// The detail of [`Refusal::NoClientAddress`], also logged: what the deployment must fix.
pub(crate) const NO_CLIENT_ADDRESS: &str = "The server cannot tell this client's address, which \
    the per-IP limit needs. This is a server configuration error: with otp-axum, serve with \
    into_make_service_with_connect_info::<SocketAddr>() (under tower's oneshot, add the \
    MockConnectInfo layer); with otp-poem, serve on a TCP listener (under TestClient, give \
    each request .data(otp_core::adapter::ClientIp(ip))); behind a Unix socket, on AWS Lambda or \
    anywhere else, put an otp_core::adapter::ClientIp in the request's extensions.";

/// An error rendered for HTTP: status, extra headers and an `application/problem+json` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The HTTP status code.
    pub(crate) status: u16,
    /// Headers to add besides `Content-Type` (`Retry-After`, `WWW-Authenticate`).
    pub(crate) headers: Vec<(&'static str, String)>,
    /// The serialized problem document.
    pub(crate) body: Vec<u8>,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl Refusal {
    /// The HTTP status.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Refusal::Engine(e) => e.status(),
            Refusal::UnsupportedMediaType => 415,
            Refusal::PayloadTooLarge { .. } => 413,
            Refusal::ForbiddenOrigin => 403,
            Refusal::NotFound => 404,
            Refusal::MethodNotAllowed => 405,
            Refusal::NoClientAddress => 500,
            Refusal::TwoRefreshTokens => 400,
        }
    }

    fn title_and_detail(&self) -> (&'static str, String) {
        match self {
            Refusal::Engine(Error::InvalidRequest(msg)) => ("Unprocessable Content", msg.clone()),
            Refusal::UnsupportedMediaType => (
                "Unsupported Media Type",
                "The request body must be JSON (Content-Type: application/json).".to_owned(),
            ),
            Refusal::PayloadTooLarge { limit } => (
                "Content Too Large",
                format!("The request body is larger than the limit of {limit} bytes."),
            ),
            Refusal::Engine(Error::RateLimited { retry_after }) => (
                "Too Many Requests",
                format!(
                    "Too many code requests. Try again in {} seconds.",
                    retry_after_secs(*retry_after)
                ),
            ),
            Refusal::Engine(Error::LockedOut { retry_after }) => (
                "Too Many Requests",
                format!(
                    "Too many failed attempts. Try again in {} seconds.",
                    retry_after_secs(*retry_after)
                ),
            ),
            Refusal::Engine(Error::InvalidCode) => (
                "Bad Request",
                "Invalid or expired OTP. Request a new code if needed.".to_owned(),
            ),
            Refusal::Engine(Error::InvalidLink) => (
                "Bad Request",
                "Invalid, expired or already used sign-in link. Request a new code if needed."
                    .to_owned(),
            ),
            Refusal::Engine(Error::Forbidden) => (
                "Forbidden",
                "The signed-in user is not allowed to do this.".to_owned(),
            ),
            Refusal::Engine(Error::FlowRequired) => (
                "Bad Request",
                "This code works only in the browser or app that asked for it: open the \
                 sign-in link or enter the code there."
                    .to_owned(),
            ),
            Refusal::Engine(Error::Unauthorized(reason)) => (
                "Unauthorized",
                match reason {
                    TokenRejection::Missing => "Not authenticated.",
                    TokenRejection::Expired => "The token has expired.",
                    TokenRejection::Revoked => "The token has been revoked.",
                    TokenRejection::Reused => {
                        "The refresh token was already used; the session has been revoked."
                    }
                    TokenRejection::Invalid | TokenRejection::WrongType => "Invalid token.",
                }
                .to_owned(),
            ),
            Refusal::Engine(Error::InsufficientAuthentication { max_age }) => (
                "Unauthorized",
                format!(
                    "A more recent authentication is required: confirm it is you with a new \
                     code (within the last {max_age} seconds)."
                ),
            ),
            Refusal::Engine(Error::EmailChangeRefused) => (
                "Forbidden",
                "This address cannot be used for this account.".to_owned(),
            ),
            Refusal::Engine(Error::EmailChangeUnsupported) => (
                "Forbidden",
                "Changing the email address is not enabled on this service.".to_owned(),
            ),
            Refusal::ForbiddenOrigin => (
                "Forbidden",
                "Cross-site request refused: its origin is neither this site nor an allowed \
                 origin."
                    .to_owned(),
            ),
            Refusal::NotFound | Refusal::Engine(Error::NotFound) => {
                ("Not Found", "No such resource.".to_owned())
            }
            Refusal::MethodNotAllowed => (
                "Method Not Allowed",
                "This method is not allowed on this resource.".to_owned(),
            ),
            Refusal::Engine(Error::StoreUnavailable(_)) => (
                "Service Unavailable",
                "The login service is temporarily unavailable. Try again shortly.".to_owned(),
            ),
            Refusal::Engine(Error::MailUnavailable(_)) => (
                "Service Unavailable",
                "The code could not be sent right now. Try again shortly.".to_owned(),
            ),
            Refusal::Engine(Error::MailRejected(_)) => (
                "Bad Gateway",
                "The mail server refused to deliver the code to this address.".to_owned(),
            ),
            Refusal::Engine(Error::StoreFailed(_) | Error::Hook(_) | Error::Internal(_)) => (
                "Internal Server Error",
                "An internal error occurred.".to_owned(),
            ),
            Refusal::NoClientAddress => ("Internal Server Error", NO_CLIENT_ADDRESS.to_owned()),
            Refusal::TwoRefreshTokens => (
                "Bad Request",
                "Send the refresh token in the body or in the cookie, not both.".to_owned(),
            ),
        }
    }

    /// Renders the error as an RFC 9457 problem with the contract's status and headers.
    ///
    /// Internal details (store or mail errors, configuration) never reach the body.
    pub(crate) fn to_problem(&self) -> Problem {
        let status = self.status();
        let (title, detail) = self.title_and_detail();
        let mut headers = Vec::new();
        match self {
            Refusal::Engine(
                Error::RateLimited { retry_after } | Error::LockedOut { retry_after },
            ) => {
                headers.push(("retry-after", retry_after_secs(*retry_after).to_string()));
            }
            Refusal::Engine(Error::Unauthorized(TokenRejection::Missing)) => {
                headers.push(("www-authenticate", "Bearer".to_owned()));
            }
            Refusal::Engine(Error::InsufficientAuthentication { max_age }) => {
                headers.push((
                    "www-authenticate",
                    format!(
                        "Bearer error=\"insufficient_user_authentication\", \
                         error_description=\"A more recent authentication is required\", \
                         max_age={max_age}"
                    ),
                ));
            }
            Refusal::Engine(Error::Unauthorized(_)) => {
                headers.push((
                    "www-authenticate",
                    "Bearer error=\"invalid_token\"".to_owned(),
                ));
            }
            Refusal::Engine(Error::StoreUnavailable(StoreError::Full { retry_after, .. })) => {
                headers.push(("retry-after", retry_after_secs(*retry_after).to_string()));
            }
            Refusal::Engine(Error::StoreUnavailable(_) | Error::MailUnavailable(_)) => {
                headers.push(("retry-after", "5".to_owned()));
            }
            _ => {}
        }
        let body = ProblemBody {
            kind: "about:blank",
            title,
            status,
            detail: &detail,
        };
        Problem {
            status,
            headers,
            // Serializing a struct of strings and a number cannot fail.
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::mailer::MailError;
    use crate::store::StoreError;

    #[test]
    fn every_variant_renders_the_documented_shape() {
        let all = [
            Error::InvalidRequest("Bad input.".into()).into(),
            Refusal::UnsupportedMediaType,
            Refusal::PayloadTooLarge { limit: 16 },
            Error::RateLimited {
                retry_after: Duration::from_millis(1500),
            }
            .into(),
            Error::LockedOut {
                retry_after: Duration::from_secs(3),
            }
            .into(),
            Error::InvalidCode.into(),
            Error::InvalidLink.into(),
            Error::FlowRequired.into(),
            Error::Forbidden.into(),
            Error::Unauthorized(TokenRejection::Missing).into(),
            Refusal::ForbiddenOrigin,
            Error::EmailChangeRefused.into(),
            Error::EmailChangeUnsupported.into(),
            Refusal::NotFound,
            Error::NotFound.into(),
            Refusal::MethodNotAllowed,
            Error::StoreUnavailable(StoreError::unavailable("redis down at 10.0.0.1")).into(),
            Error::StoreFailed(StoreError::backend("ERR at 10.0.0.1")).into(),
            Error::MailUnavailable(MailError::Transient("smtp timeout".into())).into(),
            Error::MailRejected(MailError::Permanent("550 no such user".into())).into(),
            Error::Hook("the users table is at secret internal host".into()).into(),
            Error::Internal("secret internal state".into()).into(),
        ];
        for e in all {
            let p = e.to_problem();
            let v: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
            assert_eq!(v["status"], p.status);
            assert_eq!(v["type"], "about:blank");
            assert!(v["title"].is_string());
            let detail = v["detail"].as_str().unwrap();
            assert!(detail.ends_with('.'));
            for leak in ["10.0.0.1", "smtp timeout", "550", "secret internal"] {
                assert!(!detail.contains(leak), "{detail} leaks {leak}");
            }
        }
    }

    #[test]
    fn retry_after_rounds_up() {
        let p = Refusal::from(Error::RateLimited {
            retry_after: Duration::from_millis(1001),
        })
        .to_problem();
        assert_eq!(p.headers, vec![("retry-after", "2".to_owned())]);
    }

    #[test]
    fn unauthorized_carries_www_authenticate() {
        let p = Refusal::from(Error::Unauthorized(TokenRejection::Missing)).to_problem();
        assert_eq!(p.headers, vec![("www-authenticate", "Bearer".to_owned())]);
        let p = Refusal::from(Error::Unauthorized(TokenRejection::Expired)).to_problem();
        assert_eq!(
            p.headers,
            vec![(
                "www-authenticate",
                "Bearer error=\"invalid_token\"".to_owned()
            )]
        );
    }
}
