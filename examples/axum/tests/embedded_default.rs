//! The `axum-example` binary as a new user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../common/process_tests.rs"]
mod process_tests;
#[path = "../../common/startup_tests.rs"]
mod startup_tests;

const BIN: &str = env!("CARGO_BIN_EXE_axum-example");

#[tokio::test]
async fn embedded_default_serves_the_readme_login() {
    process_tests::embedded_default_serves_the_readme_login(BIN).await;
}

#[tokio::test]
async fn bad_settings_fail_with_a_clear_message() {
    process_tests::bad_settings_fail_with_a_clear_message(BIN).await;
}

#[tokio::test]
async fn es256_tokens_verify_from_the_jwks_alone() {
    process_tests::es256_tokens_verify_from_the_jwks_alone(BIN).await;
}

#[tokio::test]
async fn cors_for_the_allowed_origins() {
    process_tests::cors_for_the_allowed_origins(BIN).await;
}

#[tokio::test]
async fn magic_code_refuses_a_real_mailer() {
    startup_tests::magic_code_refuses_a_real_mailer(BIN).await;
}

#[tokio::test]
async fn risky_settings_warn_at_start() {
    startup_tests::risky_settings_warn_at_start(BIN).await;
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    process_tests::slow_headers_are_cut_off(BIN).await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    process_tests::idle_keep_alive_connections_are_closed(BIN).await;
}

#[tokio::test]
async fn metrics_are_not_on_the_public_port() {
    process_tests::metrics_are_not_on_the_public_port(BIN).await;
}

#[tokio::test]
async fn shutdown_is_not_held_by_a_stalled_client() {
    process_tests::shutdown_is_not_held_by_a_stalled_client(BIN).await;
}

#[tokio::test]
async fn instances_share_the_user_directory() {
    process_tests::instances_share_the_user_directory(BIN).await;
}
