//! The axum example app: passwordless login mounted at `/auth`, `GET /protected`, and the
//! login page at `GET /`; its metrics on a listener of their own.
//!
//! With no settings it runs on the embedded default: 127.0.0.1:3000, the in-memory store,
//! codes written to the log, a random JWT key, metrics at 127.0.0.1:9464. Settings (shared
//! with `poem-example`, see `example-common`): `APP_ADDR`, `APP_METRICS_ADDR`,
//! `APP_HEADER_READ_TIMEOUT_SECONDS`, `APP_IDLE_TIMEOUT_SECONDS`, `OTP_AUTH_STORE`
//! (`memory`, `redis`, `fred`), `OTP_AUTH_MAILER` (`console`, `smtp`) and every
//! `OTP_AUTH_*` variable of otp-core.
//!
//! It is not served by `axum::serve`, which has no header-read timeout (a client sending
//! half a header holds its connection for good): `example_common::serve` runs hyper's
//! connection with the deadlines, and hands the router each connection's peer address as
//! `ConnectInfo<SocketAddr>`, where otp-axum finds the client IP.

use std::process::ExitCode;

use axum::extract::ConnectInfo;
use axum_example::app;
use tower_service::Service;

/// mimalloc instead of the system allocator: allocation is about a fifth of the
/// server's CPU under load with glibc's (`cargo xtask bench`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let example_common::Started {
        auth,
        listener,
        limits,
        ..
    } = match example_common::start("axum-example").await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let router = app(auth);
    example_common::serve(
        listener,
        limits,
        move |mut req, peer| {
            // What `into_make_service_with_connect_info::<SocketAddr>()` provides.
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().call(req)
        },
        example_common::shutdown_signal(),
    )
    .await;
    ExitCode::SUCCESS
}
