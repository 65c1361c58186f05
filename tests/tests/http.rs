//! The HTTP contract through the real router, for every adapter × store combination.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

otp_tests::for_every_target!(http_scenarios);
