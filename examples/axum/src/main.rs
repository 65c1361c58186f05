//! The axum example app: passwordless login mounted at `/auth`, `GET /protected`, and the
//! login page at `GET /`.
//!
//! With no settings it runs on the embedded default: 127.0.0.1:3000, the in-memory store,
//! codes written to the log, a random JWT key. Settings (shared with `poem-example`, see
//! `example-common`): `APP_ADDR`, `OTP_AUTH_STORE` (`memory`, `redis`, `fred`),
//! `OTP_AUTH_MAILER` (`console`, `smtp`) and every `OTP_AUTH_*` variable of otp-core.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum_example::app;

/// mimalloc instead of the system allocator: allocation is about a fifth of the
/// server's CPU under load with glibc's (`cargo xtask bench`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    example_common::init_tracing();
    let (auth, addr) = match example_common::build().await {
        Ok(v) => v,
        Err(e) => return example_common::start_failed("axum-example", &e),
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("axum-example: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!("listening on http://{addr}");
    let served = axum::serve(
        listener,
        app(auth).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(example_common::shutdown_signal())
    .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum-example: server error: {e}");
            ExitCode::from(1)
        }
    }
}
