//! The one error type of the library and its mapping to HTTP problems (RFC 9457).
//!
//! Every adapter renders errors through [`Error::to_problem`], so the statuses, headers and
//! bodies are the same whichever framework serves them.

use std::time::Duration;

use serde::Serialize;

/// Why a bearer or refresh token was refused. Never shown to clients in detail beyond a
/// sentence; kept for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRejection {
    /// No token was presented.
    Missing,
    /// The token does not parse, its signature or algorithm is wrong, or a claim is invalid.
    Invalid,
    /// The token's `exp` has passed.
    Expired,
    /// The token is an access token where a refresh token was expected, or the reverse.
    WrongType,
    /// The token or its session was revoked.
    Revoked,
    /// A refresh token that was already spent was presented again: its session is now revoked.
    Reused,
}

/// Every failure an operation of the library can end in.
///
/// Each variant maps to exactly one HTTP status of the contract (see [`Error::status`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request body or a field of it is malformed (422).
    #[error("{0}")]
    InvalidRequest(String),
    /// The request's content type is not JSON (415).
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// The request body is larger than the configured limit (413).
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// Too many code requests for this address or client IP (429).
    #[error("too many requests, retry after {} seconds", retry_after_secs(*retry_after))]
    RateLimited {
        /// How long until a request may succeed again.
        retry_after: Duration,
    },
    /// The address has used up its failed verification attempts (429).
    #[error("too many failed attempts, retry after {} seconds", retry_after_secs(*retry_after))]
    LockedOut {
        /// How long until the lockout window has passed.
        retry_after: Duration,
    },
    /// No code is pending for the address, or it expired, was used, or is wrong (400).
    #[error("invalid or expired code")]
    InvalidCode,
    /// A sign-in link's token is malformed, forged or expired, or its code is no longer
    /// pending (400).
    #[error("invalid or expired sign-in link")]
    InvalidLink,
    /// Authentication failed (401, with `WWW-Authenticate: Bearer`).
    #[error("unauthorized: {0:?}")]
    Unauthorized(TokenRejection),
    /// The request's `Origin` is not among the allowed origins (403).
    #[error("origin not allowed")]
    ForbiddenOrigin,
    /// No route for this path (404).
    #[error("not found")]
    NotFound,
    /// The route exists but not for this method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The store is unreachable or timed out (503).
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    /// The mail server is unreachable, timed out or answered with a transient failure (503).
    #[error("mail server unavailable: {0}")]
    MailUnavailable(String),
    /// The mail server refused the message permanently (502).
    #[error("mail server rejected the message: {0}")]
    MailRejected(String),
    /// The configuration is invalid; raised at start-up, never by a request.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A bug or an unexpected state (500). Details go to the log, never to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

fn retry_after_secs(d: Duration) -> u64 {
    // Round up so a client that waits exactly this long is not refused again.
    d.as_millis().div_ceil(1000).max(1) as u64
}

/// An error rendered for HTTP: status, extra headers and an `application/problem+json` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status code.
    pub status: u16,
    /// Headers to add besides `Content-Type` (`Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(&'static str, String)>,
    /// The serialized problem document.
    pub body: Vec<u8>,
}

/// The media type of every error body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl Error {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            Error::InvalidRequest(_) => 422,
            Error::UnsupportedMediaType => 415,
            Error::PayloadTooLarge { .. } => 413,
            Error::RateLimited { .. } | Error::LockedOut { .. } => 429,
            Error::InvalidCode | Error::InvalidLink => 400,
            Error::Unauthorized(_) => 401,
            Error::ForbiddenOrigin => 403,
            Error::NotFound => 404,
            Error::MethodNotAllowed => 405,
            Error::StoreUnavailable(_) | Error::MailUnavailable(_) => 503,
            Error::MailRejected(_) => 502,
            Error::Config(_) | Error::Internal(_) => 500,
        }
    }

    /// `true` for errors caused by an unavailable dependency (store or mail server).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::StoreUnavailable(_) | Error::MailUnavailable(_))
    }

    fn title_and_detail(&self) -> (&'static str, String) {
        match self {
            Error::InvalidRequest(msg) => ("Unprocessable Content", msg.clone()),
            Error::UnsupportedMediaType => (
                "Unsupported Media Type",
                "The request body must be JSON (Content-Type: application/json).".to_owned(),
            ),
            Error::PayloadTooLarge { limit } => (
                "Content Too Large",
                format!("The request body is larger than the limit of {limit} bytes."),
            ),
            Error::RateLimited { retry_after } => (
                "Too Many Requests",
                format!(
                    "Too many code requests. Try again in {} seconds.",
                    retry_after_secs(*retry_after)
                ),
            ),
            Error::LockedOut { retry_after } => (
                "Too Many Requests",
                format!(
                    "Too many failed attempts. Try again in {} seconds.",
                    retry_after_secs(*retry_after)
                ),
            ),
            Error::InvalidCode => (
                "Bad Request",
                "Invalid or expired OTP. Request a new code if needed.".to_owned(),
            ),
            Error::InvalidLink => (
                "Bad Request",
                "Invalid, expired or already used sign-in link. Request a new code if needed."
                    .to_owned(),
            ),
            Error::Unauthorized(reason) => (
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
            Error::ForbiddenOrigin => (
                "Forbidden",
                "Cross-site request refused: its origin is neither this site nor an allowed \
                 origin."
                    .to_owned(),
            ),
            Error::NotFound => ("Not Found", "No such resource.".to_owned()),
            Error::MethodNotAllowed => (
                "Method Not Allowed",
                "This method is not allowed on this resource.".to_owned(),
            ),
            Error::StoreUnavailable(_) => (
                "Service Unavailable",
                "The login service is temporarily unavailable. Try again shortly.".to_owned(),
            ),
            Error::MailUnavailable(_) => (
                "Service Unavailable",
                "The code could not be sent right now. Try again shortly.".to_owned(),
            ),
            Error::MailRejected(_) => (
                "Bad Gateway",
                "The mail server refused to deliver the code to this address.".to_owned(),
            ),
            Error::Config(_) | Error::Internal(_) => (
                "Internal Server Error",
                "An internal error occurred.".to_owned(),
            ),
        }
    }

    /// Renders the error as an RFC 9457 problem with the contract's status and headers.
    ///
    /// Internal details (store or mail errors, configuration) never reach the body.
    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        let (title, detail) = self.title_and_detail();
        let mut headers = Vec::new();
        match self {
            Error::RateLimited { retry_after } | Error::LockedOut { retry_after } => {
                headers.push(("retry-after", retry_after_secs(*retry_after).to_string()));
            }
            Error::Unauthorized(TokenRejection::Missing) => {
                headers.push(("www-authenticate", "Bearer".to_owned()));
            }
            Error::Unauthorized(_) => {
                headers.push((
                    "www-authenticate",
                    "Bearer error=\"invalid_token\"".to_owned(),
                ));
            }
            Error::StoreUnavailable(_) | Error::MailUnavailable(_) => {
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

/// A result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_renders_the_documented_shape() {
        let all = [
            Error::InvalidRequest("Bad input.".into()),
            Error::UnsupportedMediaType,
            Error::PayloadTooLarge { limit: 16 },
            Error::RateLimited {
                retry_after: Duration::from_millis(1500),
            },
            Error::LockedOut {
                retry_after: Duration::from_secs(3),
            },
            Error::InvalidCode,
            Error::InvalidLink,
            Error::Unauthorized(TokenRejection::Missing),
            Error::ForbiddenOrigin,
            Error::NotFound,
            Error::MethodNotAllowed,
            Error::StoreUnavailable("redis down at 10.0.0.1".into()),
            Error::MailUnavailable("smtp timeout".into()),
            Error::MailRejected("550 no such user".into()),
            Error::Internal("secret internal state".into()),
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
        let p = Error::RateLimited {
            retry_after: Duration::from_millis(1001),
        }
        .to_problem();
        assert_eq!(p.headers, vec![("retry-after", "2".to_owned())]);
    }

    #[test]
    fn unauthorized_carries_www_authenticate() {
        let p = Error::Unauthorized(TokenRejection::Missing).to_problem();
        assert_eq!(p.headers, vec![("www-authenticate", "Bearer".to_owned())]);
        let p = Error::Unauthorized(TokenRejection::Expired).to_problem();
        assert_eq!(
            p.headers,
            vec![(
                "www-authenticate",
                "Bearer error=\"invalid_token\"".to_owned()
            )]
        );
    }
}
