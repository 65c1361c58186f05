//! Passwordless login by email one-time code, framework-agnostic.
//!
//! A user posts an address, receives a code by mail, posts it back, and gets a short-lived
//! JWT access token plus a rotating refresh token for an HttpOnly cookie. This crate holds
//! the whole domain: configuration, codes, tokens, the storage and mail traits, the
//! in-memory store and development mailers, and the HTTP contract over the [`http`]
//! crate's types ([`OtpAuth::serve`]). Web frameworks plug in through thin adapters
//! (`otp-axum`, `otp-poem`).
//!
//! ```
//! use std::sync::Arc;
//! use otp_core::{CapturingMailer, ClientInfo, Config, MemoryStore, OtpAuth};
//!
//! # tokio_test();
//! # fn tokio_test() {
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! # rt.block_on(async {
//! let config = Config {
//!     jwt_secret: Some("8d3c0e2b6a4f4f6e9b1d7c5a3e2f1a0b9c8d7e6f".into()),
//!     ..Config::default()
//! };
//! let mailer = CapturingMailer::new();
//! let auth = OtpAuth::builder(config)
//!     .stores(MemoryStore::new())
//!     .mailer(Arc::new(mailer.clone()))
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
//! Your own store or mailer: implement [`OtpStore`] + [`TokenBlacklist`] or [`Mailer`] and
//! pass it to the builder.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod code;
pub mod config;
#[cfg(any(test, feature = "test-util"))]
pub mod contract;
pub mod email;
mod engine;
pub mod error;
mod glob;
#[cfg(feature = "asymmetric")]
pub mod jwk;
#[cfg(feature = "links")]
pub mod link;
pub mod mailer;
pub mod memory;
pub mod metrics;
#[cfg(feature = "openapi")]
pub mod openapi;
mod pages;
pub mod primitives;
mod problem;
#[cfg(feature = "redis-scripts")]
pub mod scripted;
pub mod state;
pub mod store;
pub mod template;
pub mod token;
pub mod web;

pub use code::{AddressKey, Code, CodeHasher, CodeMac, IpKey};
pub use config::{Config, ConfigError, JwtAlgorithm, SameSite, SmtpTls};
pub use email::{Email, EmailError};
pub use engine::{
    ClientInfo, CurrentUser, DefaultHooks, Hooks, OtpAuth, OtpAuthBuilder, TokenPair, bearer_token,
};
pub use error::{BoxError, Error, Result, TokenRejection};
pub use mailer::{CapturingMailer, ConsoleMailer, MailError, Mailer, MailerFn, Message, mailer_fn};
pub use memory::MemoryStore;
pub use store::{OtpStore, StoreError, TokenBlacklist};
pub use template::{MailTemplates, Templates};
pub use web::{Endpoint, Method, error_response};

/// Re-exported for implementing the traits without a direct dependency.
pub use async_trait::async_trait;

#[cfg(feature = "mock")]
pub use mailer::MockMailer;
#[cfg(feature = "mock")]
pub use store::{MockOtpStore, MockTokenBlacklist};
