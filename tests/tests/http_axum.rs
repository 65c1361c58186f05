//! The HTTP contract through the real axum router, on the in-memory store.

use otp_tests::Adapter;

otp_tests::http_scenarios!(Adapter::Axum);
