//! What a web-framework adapter uses. An adapter hands each request under its mount
//! point to [`OtpAuth::serve`](crate::OtpAuth::serve) with the client's socket address and
//! writes the `http::Response` back; its current-user extractor calls
//! [`OtpAuth::current_user`](crate::OtpAuth::current_user) and answers a refusal with
//! [`error_response`]. Routers that register paths one by one take them from
//! [`Endpoint::ALL`]. Nothing else: routing, limits, cookies and problem documents are the
//! engine's, so every adapter answers byte for byte alike.

pub use crate::web::{Endpoint, Method, error_response};
