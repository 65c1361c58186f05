//! The poem example app: the same app as `axum-example` (login at `/auth`,
//! `GET /protected`, the login page at `GET /`, the metrics on a listener of their own),
//! the same settings, the same answers.
//!
//! It is not served by `poem::Server`, which has no header-read timeout (its idle timeout
//! starts over at every byte received, so a header sent a byte at a time holds the
//! connection for good): `example_common::serve` runs hyper's connection with the
//! deadlines, and each request reaches the endpoint with its connection's addresses, as
//! `poem::Server` would pass them.

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;

use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, EndpointExt, IntoEndpoint};
use poem_example::app;

/// mimalloc instead of the system allocator: allocation is about a fifth of the
/// server's CPU under load with glibc's (`cargo xtask bench`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let example_common::Started {
        auth,
        listener,
        addr,
        limits,
    } = match example_common::start("poem-example").await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let local = LocalAddr(addr.into());
    let endpoint = Arc::new(app(auth).into_endpoint().map_to_response());
    example_common::serve(
        listener,
        limits,
        move |req, peer| {
            let endpoint = endpoint.clone();
            let req =
                poem::Request::from((req, local.clone(), RemoteAddr(peer.into()), Scheme::HTTP));
            async move {
                // poem's answer as hyper's, its body boxed.
                let answer = poem::http::Response::from(endpoint.get_response(req).await);
                Ok::<_, Infallible>(answer)
            }
        },
        example_common::shutdown_signal(),
    )
    .await;
    ExitCode::SUCCESS
}
