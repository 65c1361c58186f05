//! Passwordless login by email one-time code, framework-agnostic.
//!
//! A user posts an address, receives a code by mail, posts it back, and gets a short-lived
//! JWT access token plus a rotating refresh token for an HttpOnly cookie. Build an
//! [`OtpAuth`] from a [`Config`], a store and a mailer, and serve it with an adapter
//! (`otp-axum` or `otp-poem`), or call it directly:
//!
//! ```
//! use otp_core::mailer::CapturingMailer;
//! use otp_core::store::MemoryStore;
//! use otp_core::{ClientInfo, Config, OtpAuth};
//!
//! # tokio_test();
//! # fn tokio_test() {
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! # rt.block_on(async {
//! let mut config = Config::default(); // or Config::load()?: OTP_AUTH_* variables
//! config.tokens.secret = Some("8d3c0e2b6a4f4f6e9b1d7c5a3e2f1a0b9c8d7e6f".into());
//! let mailer = CapturingMailer::new(); // ConsoleMailer in development, otp-smtp in production
//! let auth = OtpAuth::builder(config)
//!     .stores(MemoryStore::new()) // otp-redis or otp-fred in production
//!     .mailer(mailer.clone())
//!     .build()?;
//!
//! let client = ClientInfo::default();
//! auth.request_code("Ada@Example.com", &client).await?;
//! let code = mailer.last_code("ada@example.com").unwrap();
//! let tokens = auth.verify_code("ada@example.com", &code, &client).await?;
//! let user = auth.authenticate(&tokens.access_token).await?;
//! assert_eq!(user.email, "ada@example.com");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! # }
//! ```
//!
//! [`OtpAuth`] holds the login itself (request a code, verify it or its link, refresh,
//! log out, authenticate); the other flows hang off it: [`OtpAuth::sessions`] (a user's
//! own sessions), [`OtpAuth::step_up`], [`OtpAuth::email_change`] and
//! [`OtpAuth::admin`]. Application policy (who may log in, the token subject, extra
//! claims, email changes) goes in [`Hooks`]; every outcome is an [`event::Event`], from
//! which the metrics and the log lines come and which [`Hooks::on_event`] receives.
//!
//! "Magic" names two things, kept apart: the **magic code**, a fixed development code
//! (`OTP_AUTH_DISABLE_LOCAL_AUTH`, never in production), and the **sign-in link** of the
//! login mail, whose confirmation page is `GET /magic` (the path is the contract's).
//!
//! # For implementers
//!
//! | you write | you use |
//! |---|---|
//! | a store | [`store`] (the traits, their requests and outcomes, [`store::policy`] for the limits and lockout arithmetic), `contract` (the suite your store must pass, feature `test-util`) |
//! | a mailer | [`mailer`] (and [`mailer::template`] for the wording) |
//! | a web-framework adapter | [`adapter`] |
//! | a Redis client backend | `store::scripted` (feature `redis-scripts`) |
//!
//! # Features
//!
//! `asymmetric` (RS256, ES256, EdDSA), `links` (sign-in links in the mail), `toml`
//! (`OTP_AUTH_CONFIG_FILE`) and `metrics` are on by default; `openapi`, `mock` (mockall
//! mocks of the traits), `test-util` and `redis-scripts` are off. Without default features
//! the crate is an HS256 engine that compiles none of rsa, p256, p384 and ed25519-dalek.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

// What an application uses: the modules below and the items re-exported at the end. The
// layers are in docs/ARCHITECTURE.md.
pub mod adapter;
pub mod config;
#[cfg(any(test, feature = "test-util"))]
pub mod contract;
pub mod event;
pub mod mailer;
pub mod store;

// The engine's own parts.
mod admin_http;
mod code;
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub mod codec;
#[cfg(not(feature = "test-util"))]
#[allow(unreachable_pub)]
mod codec;
mod dev_mailers;
mod email;
mod engine;
mod error;
mod glob;
#[cfg(feature = "asymmetric")]
mod jwk;
#[cfg(feature = "links")]
mod link;
mod memory;
pub mod outbox;
mod pages;
mod primitives;
mod problem;
mod routes;
mod web;
pub mod webhook;

/// What the application's policy code uses: [`Hooks`] and the values it is given (the
/// normalized [`Email`](crate::hooks::Email)).
pub mod hooks {
    pub use crate::email::{Email, EmailError};
    pub use crate::engine::{DefaultHooks, EmailChange, Hooks};
    pub use crate::error::BoxError;
    /// Re-exported for implementing [`Hooks`] without a direct dependency.
    pub use async_trait::async_trait;
}

/// The flows beside the login itself, each reached from [`OtpAuth`]: a user's own
/// sessions ([`OtpAuth::sessions`]), step-up ([`OtpAuth::step_up`]), email change
/// ([`OtpAuth::email_change`]) and administration ([`OtpAuth::admin`]).
pub mod flow {
    pub use crate::engine::{
        Account, AddressReport, Admin, ChangeEmail, MAX_SIGN_IN_SECS, MIN_SIGN_IN_SECS,
        RequestCounts, Sessions, SignIn, StepUp,
    };
}

/// The tokens the engine issues, their claims, and why one is refused.
pub mod token {
    pub use crate::codec::{Claims, TokenType};
    pub use crate::engine::{AccessToken, TokenPair};
    pub use crate::error::TokenRejection;
}

#[doc(inline)]
pub use config::Config;
#[doc(inline)]
pub use engine::{ClientInfo, CurrentUser, Hooks, OtpAuth, OtpAuthBuilder, Readiness};
#[doc(inline)]
pub use error::Error;

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
