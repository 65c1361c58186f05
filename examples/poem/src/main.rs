//! The poem example app: the same app as `axum-example` (login at `/auth`,
//! `GET /protected`, the login page at `GET /`), the same settings, the same answers.

use std::process::ExitCode;

use poem::Server;
use poem::listener::{Listener, TcpListener};
use poem_example::app;

/// mimalloc instead of the system allocator: allocation is about a fifth of the
/// server's CPU under load with glibc's (`cargo xtask bench`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    example_common::init_tracing();
    let (auth, addr) = match example_common::build().await {
        Ok(v) => v,
        Err(e) => return example_common::start_failed("poem-example", &e),
    };
    let acceptor = match TcpListener::bind(addr).into_acceptor().await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("poem-example: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!("listening on http://{addr}");
    let served = Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app(auth), example_common::shutdown_signal(), None)
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("poem-example: server error: {e}");
            ExitCode::from(1)
        }
    }
}
