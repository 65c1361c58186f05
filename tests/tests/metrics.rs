//! The scenarios that count metrics, for every adapter × store combination. They share
//! the process's one recorder, so they run one at a time (see
//! `otp_tests::metrics_lock`) in this binary of their own, and compare counters before
//! and after.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

otp_tests::for_every_target!(metrics_scenarios);
