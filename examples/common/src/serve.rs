//! Serving HTTP/1.1 with deadlines: what `axum::serve` and `poem::Server` leave out.
//!
//! Neither of them bounds how long a client may take to send a request head: a connection
//! that sends half a header stays open for good, and a few hundred of those use up the
//! process's file descriptors. [`serve`] runs hyper's HTTP/1 connection with
//!
//! - a **header-read timeout** (hyper's own, on tokio's timer): the whole request head must
//!   arrive within it, however slowly it trickles in. hyper also runs it while a connection
//!   waits for its first request and between requests, so a kept-alive connection that
//!   sends nothing is closed after it too;
//! - an **idle limit**: a connection on which no byte moves, either way, for that long is
//!   closed, whatever it is in the middle of (a request body that stopped coming, an answer
//!   the client does not read). It is also the longest a handler may work without the
//!   connection moving: keep it above the slowest answer (an SMTP send with its timeouts);
//! - **graceful shutdown**: once `shutdown` resolves no connection is accepted, idle ones
//!   close, and requests under way are answered before [`serve`] returns; a connection still
//!   open [`SHUTDOWN_GRACE`] later (a head or a body that is not coming) is closed then.
//!
//! Every connection hands its peer address to the handler, which the apps pass on as
//! connect info (axum's `ConnectInfo<SocketAddr>`, poem's remote address): the per-IP
//! limits need it.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long [`serve`] waits, once told to shut down, for the requests under way.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The deadlines of a connection (`APP_HEADER_READ_TIMEOUT_SECONDS`,
/// `APP_IDLE_TIMEOUT_SECONDS`; see [`crate::ServeSettings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// The time a client has to send a whole request head (hyper's header-read timeout);
    /// it also bounds the wait for the first request and between requests.
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ServeLimits {
    /// 10 s to send a request head, 60 s without a byte moving.
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(crate::DEFAULT_HEADER_READ_TIMEOUT_SECONDS),
            idle_timeout: Duration::from_secs(crate::DEFAULT_IDLE_TIMEOUT_SECONDS),
        }
    }
}

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves, then waits for the requests
/// under way, at most [`SHUTDOWN_GRACE`] (see the module documentation for the deadlines). `handler` answers each
/// request, with the peer address of its connection.
///
/// Accepting never ends the loop: a refused or reset connection is skipped, and another
/// error (out of file descriptors) is logged and retried a second later.
pub async fn serve<H, Fut, B, E>(
    listener: TcpListener,
    limits: ServeLimits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    E: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let handler = Arc::new(handler);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // Each connection holds a clone of `stop` (told to finish its requests by its receiver's
    // drop), of `kill` (told to close now, likewise) and of `open`'s receiver (all of them
    // dropped: every connection is done).
    let (stop, stop_rx) = watch::channel(());
    let (kill, kill_rx) = watch::channel(());
    let (open, open_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req| handler(req, peer));
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let conn = http.serve_connection(io, service).with_upgrades();
        let (stop, kill) = (stop.clone(), kill.clone());
        let done = open_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    served = conn.as_mut() => {
                        if let Err(e) = served {
                            tracing::debug!(%peer, error = %e, "connection ended");
                        }
                        break;
                    }
                    () = activity.quiet_for(limits.idle_timeout) => {
                        tracing::debug!(%peer, "closing a connection idle for {:?}", limits.idle_timeout);
                        break;
                    }
                    () = stop.closed(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    () = kill.closed() => break,
                }
            }
            drop(done);
        });
    }
    drop(listener);
    drop(stop_rx);
    drop(open_rx);
    if tokio::time::timeout(SHUTDOWN_GRACE, open.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = open.receiver_count(),
            "closing the connections still open {SHUTDOWN_GRACE:?} after shutdown began"
        );
        drop(kill_rx);
        open.closed().await;
    }
}

/// An accept that failed: nothing to do for a connection refused or reset before it was
/// taken; otherwise (out of file descriptors) the error is logged and the loop pauses a
/// second, as hyper's server used to.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// When a byte last moved on a connection.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last read or write that moved a byte.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once no byte has moved for `limit`.
    async fn quiet_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let quiet = self.start.elapsed().saturating_sub(last);
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(limit - quiet).await;
        }
    }
}

/// A TCP stream that records when a byte last moved.
#[derive(Debug)]
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Binds the metrics listener at `addr` and serves `GET /metrics` and `GET /ready` there
/// (and nothing else) with the same deadlines, for the life of the process; `None`
/// (`APP_METRICS_ADDR=off`) starts none. Logs where the metrics are; the error names
/// `APP_METRICS_ADDR`.
pub async fn start_metrics(
    addr: Option<SocketAddr>,
    limits: ServeLimits,
    auth: otp_core::OtpAuth,
) -> Result<(), String> {
    let Some(addr) = addr else {
        tracing::info!("metrics listener off (APP_METRICS_ADDR=off)");
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (APP_METRICS_ADDR): {e}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    if !bound.ip().is_loopback() {
        tracing::warn!(
            "metrics listener on {bound}, not a loopback address: whoever reaches it reads \
             the counters"
        );
    }
    tracing::info!("metrics on http://{bound}/metrics");
    tokio::spawn(serve(
        listener,
        limits,
        move |req, _peer| {
            let auth = auth.clone();
            async move {
                if req.uri().path() == "/ready" && req.method() == Method::GET {
                    return Ok::<_, Infallible>(ready_answer(&auth).await);
                }
                Ok(metrics_answer(&req))
            }
        },
        std::future::pending(),
    ));
    Ok(())
}

/// `GET /ready`: 200 `ready` when the store and the mail server answer, else 503 with
/// what did not (a probe's answer, on the loopback listener: it names the servers' errors).
pub(crate) async fn ready_answer(auth: &otp_core::OtpAuth) -> Response<String> {
    let readiness = auth.check().await;
    let mut answer = Response::new(format!("{readiness}\n"));
    if !readiness.is_ready() {
        *answer.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    answer.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

/// The metrics listener's answer: the metrics to `GET` (and `HEAD`) `/metrics`, 405 with
/// `Allow` to another method there, 404 elsewhere.
pub fn metrics_answer<B>(req: &Request<B>) -> Response<String> {
    if req.uri().path() != "/metrics" {
        return status(StatusCode::NOT_FOUND);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut answer = status(StatusCode::METHOD_NOT_ALLOWED);
        answer
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return answer;
    }
    let mut answer = Response::new(crate::metrics_text());
    answer.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::METRICS_CONTENT_TYPE),
    );
    answer
}

fn status(code: StatusCode) -> Response<String> {
    let mut answer = Response::new(String::new());
    *answer.status_mut() = code;
    answer
}
