//! Passwordless login by email one-time code, framework-agnostic.
//!
//! A user posts an address, receives a code by mail, posts it back, and gets a short-lived
//! JWT access token plus a rotating refresh token for an HttpOnly cookie. Build an
//! [`OtpAuth`] from a [`Config`], a store and a mailer, and serve it with an adapter
//! (`otp-axum` or `otp-poem`), or call it directly:
//!
//! ```
//! use otp_core::{CapturingMailer, ClientInfo, Config, MemoryStore, OtpAuth};
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
//! Application policy (who may log in, the token subject, extra claims) goes in [`Hooks`];
//! the login mail's wording and languages in [`template::MailTemplates`].
//!
//! # For implementers
//!
//! | you write | you use |
//! |---|---|
//! | a store | [`store`] (the traits, their requests and outcomes), [`policy`] (the limits and lockout arithmetic), [`contract`] (the suite your store must pass, feature `test-util`) |
//! | a mailer | [`mailer`] |
//! | a web-framework adapter | [`adapter`] and [`OtpAuth::serve`] |
//! | a Redis client backend | [`scripted`] (feature `redis-scripts`) |
//!
//! # Features
//!
//! `asymmetric` (RS256, ES256, EdDSA), `links` (sign-in links in the mail), `toml`
//! (`OTP_AUTH_CONFIG_FILE`) and `metrics` are on by default; `openapi`, `mock` (mockall
//! mocks of the traits), `test-util` and `redis-scripts` are off. Without default features
//! the crate is an HS256 engine that compiles none of rsa, p256, p384 and ed25519-dalek.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

// The modules; their layers are in docs/ARCHITECTURE.md.
pub mod adapter;
pub mod audit;
mod code;
pub mod config;
#[cfg(any(test, feature = "test-util"))]
pub mod contract;
mod dev_mailers;
mod email;
mod engine;
mod error;
mod glob;
#[cfg(feature = "asymmetric")]
mod jwk;
#[cfg(feature = "links")]
mod link;
pub mod mailer;
mod memory;
pub mod metrics;
#[cfg(feature = "openapi")]
pub mod openapi;
mod pages;
pub mod policy;
pub mod primitives;
mod problem;
#[cfg(feature = "redis-scripts")]
pub mod scripted;
pub mod store;
pub mod template;
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub mod token;
#[cfg(not(feature = "test-util"))]
#[allow(unreachable_pub)]
mod token;
mod web;

#[doc(inline)]
pub use config::{Config, ConfigError};
#[doc(inline)]
pub use dev_mailers::{CapturingMailer, ConsoleMailer};
#[doc(inline)]
pub use email::{Email, EmailError};
#[doc(inline)]
pub use engine::{
    AccessToken, ClientInfo, CurrentUser, DefaultHooks, EmailChange, Hooks, IntoShared,
    IntoSharedStores, OtpAuth, OtpAuthBuilder, TokenPair,
};
#[doc(inline)]
pub use error::{BoxError, Error, TokenRejection};
#[doc(inline)]
pub use memory::MemoryStore;
#[doc(inline)]
pub use token::{Claims, TokenType};
#[doc(inline)]
pub use web::ClientIp;

/// Re-exported for implementing the traits without a direct dependency.
pub use async_trait::async_trait;

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
