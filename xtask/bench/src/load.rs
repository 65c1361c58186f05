//! The load generator: N virtual users, each on its own keep-alive HTTP/1.1 connection,
//! running one scenario for a warm-up and then a measured period: in a closed loop (each
//! user starts its next operation when the last one ends), or with `--rate`, in an open
//! loop at a fixed total rate, each user starting an operation every `concurrency / rate`
//! seconds. In the open loop a latency is measured from the time the operation was due,
//! not from when it could start, so a stalled server shows in the tail instead of slowing
//! the load down (the coordinated omission of a closed loop, as wrk2 avoids it).
//!
//! Only operations that start after the warm-up and end before the end of the measured
//! period count, for the rate, the latencies and the errors alike.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, SET_COOKIE};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::Flags;

/// The code every `@magic.bench` address accepts (all zeros, `OTP_LENGTH` 6).
const MAGIC_CODE: &str = "000000";

/// Name of the refresh cookie (the default `OTP_AUTH_COOKIE_NAME`).
const COOKIE_NAME: &str = "refresh_token";

/// Pause after a connection failure before trying again, so a dead server does not turn
/// into a busy loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

/// What each virtual user repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Log in once, then `GET /protected` with the bearer token (op: one request).
    Protected,
    /// request-otp, verify-otp, protected, refresh, logout (op: the five requests).
    Flow,
    /// request-otp for a new `@mail.bench` address each time, real mail (op: one request).
    RequestOtp,
    /// Log in once, then `POST /auth/refresh` with the latest cookie (op: one request).
    Refresh,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Protected => "protected",
            Self::Flow => "flow",
            Self::RequestOtp => "request-otp",
            Self::Refresh => "refresh",
        }
    }
}

/// Arguments of `otp-bench load`.
#[derive(Debug)]
pub(crate) struct Args {
    target: Target,
    scenario: Scenario,
    concurrency: usize,
    seconds: f64,
    warmup: f64,
    /// Total operations per second to hold (each user paced); `None`: as fast as possible.
    rate: Option<f64>,
}

impl Args {
    /// `--base` and `--scenario` required; `--concurrency` (32), `--seconds` (10) and
    /// `--warmup` (2) optional.
    pub(crate) fn from_flags(flags: &Flags) -> Result<Self, String> {
        flags.only(&[
            "base",
            "scenario",
            "concurrency",
            "seconds",
            "warmup",
            "rate",
        ])?;
        let target = Target::parse(flags.required("base")?)?;
        let scenario = match flags.required("scenario")? {
            "protected" => Scenario::Protected,
            "flow" => Scenario::Flow,
            "request-otp" => Scenario::RequestOtp,
            "refresh" => Scenario::Refresh,
            other => {
                return Err(format!(
                    "`--scenario {other}`: use protected, flow, request-otp or refresh"
                ));
            }
        };
        let concurrency = flags.parsed("concurrency", 32_usize)?;
        let seconds = flags.parsed("seconds", 10.0_f64)?;
        let warmup = flags.parsed("warmup", 2.0_f64)?;
        let rate = flags.parsed("rate", 0.0_f64)?;
        if !(rate >= 0.0 && rate.is_finite()) {
            return Err("`--rate` must be zero (no pacing) or a positive number".to_owned());
        }
        let rate = (rate > 0.0).then_some(rate);
        if concurrency == 0 {
            return Err("`--concurrency` must be at least 1".to_owned());
        }
        if !(seconds > 0.0 && seconds.is_finite()) {
            return Err("`--seconds` must be a positive number".to_owned());
        }
        if !(warmup >= 0.0 && warmup.is_finite()) {
            return Err("`--warmup` must be zero or a positive number".to_owned());
        }
        Ok(Self {
            target,
            scenario,
            concurrency,
            seconds,
            warmup,
            rate,
        })
    }
}

/// Where the requests go: `http://host:port[/prefix]`.
#[derive(Debug, Clone)]
struct Target {
    /// `host:port`, for connecting and for the `Host` header.
    authority: String,
    /// Path prefix without a trailing slash (usually empty).
    prefix: String,
}

impl Target {
    fn parse(base: &str) -> Result<Self, String> {
        let rest = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("`--base {base}`: only http:// URLs are supported"))?;
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() {
            return Err(format!("`--base {base}` has no host"));
        }
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            authority,
            prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }
}

/// The measured window, shared by every virtual user.
#[derive(Debug, Clone, Copy)]
struct Clock {
    measure_from: Instant,
    end: Instant,
}

/// Runs the scenario and prints the JSON line.
pub(crate) async fn run(args: Args) -> Result<(), String> {
    // Makes the addresses of this run differ from those of earlier runs on the same Redis.
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() % 1_000_000_000);

    // Connections (and, for `protected`, logins) before the clock starts.
    let mut users = Vec::with_capacity(args.concurrency);
    for vu in 0..args.concurrency {
        let mut user = User {
            vu,
            run_id,
            conn: Conn::new(args.target.clone()),
            token: String::new(),
            cookie: String::new(),
        };
        user.conn
            .connect()
            .await
            .map_err(|e| format!("virtual user {vu}: {e}"))?;
        if matches!(args.scenario, Scenario::Protected | Scenario::Refresh) {
            let email = format!("p{run_id}-{vu}@magic.bench");
            user.login(&email)
                .await
                .map_err(|e| format!("virtual user {vu} cannot log in as {email}: {e}"))?;
        }
        users.push(user);
    }

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let clock = Clock {
        measure_from,
        end: measure_from + Duration::from_secs_f64(args.seconds),
    };
    let pace = args
        .rate
        .map(|rate| Duration::from_secs_f64(args.concurrency as f64 / rate));
    let tasks: Vec<_> = users
        .into_iter()
        .map(|user| {
            // In the open loop the users' schedules are spread over one pace, so the
            // operations arrive evenly instead of in bursts of `concurrency`.
            let first = start
                + pace.map_or(Duration::ZERO, |p| {
                    p * user.vu as u32 / args.concurrency as u32
                });
            tokio::spawn(user.run(args.scenario, clock, pace, first))
        })
        .collect();
    let mut total = Stats::default();
    for task in tasks {
        let stats = task
            .await
            .map_err(|e| format!("a virtual user panicked: {e}"))?;
        total.merge(stats);
    }

    total.latencies_us.sort_unstable();
    let ops = total.latencies_us.len();
    let line = json!({
        "scenario": args.scenario.name(),
        "ops": ops,
        "seconds": args.seconds,
        "ops_per_sec": round(ops as f64 / args.seconds, 1),
        "p50_ms": percentile_ms(&total.latencies_us, 0.50),
        "p99_ms": percentile_ms(&total.latencies_us, 0.99),
        "p999_ms": percentile_ms(&total.latencies_us, 0.999),
        "rate": args.rate,
        "errors": total.errors,
        "server_errors": total.server_errors,
        "transport_errors": total.transport_errors,
        "concurrency": args.concurrency,
    });
    println!("{line}");
    Ok(())
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10_f64.powi(decimals);
    (value * scale).round() / scale
}

/// The `q` quantile (nearest rank) of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted_us.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_us.len()) - 1;
    round(sorted_us[index] as f64 / 1000.0, 3)
}

/// What one virtual user counted in the measured window.
#[derive(Debug, Default)]
struct Stats {
    /// Duration of each successful op.
    latencies_us: Vec<u64>,
    /// Answers other than 2xx, plus transport failures.
    errors: u64,
    /// 5xx answers.
    server_errors: u64,
    /// Connection failures (no answer at all); also counted in `errors`.
    transport_errors: u64,
}

impl Stats {
    fn merge(&mut self, other: Self) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        self.server_errors += other.server_errors;
        self.transport_errors += other.transport_errors;
    }
}

/// Why an op failed.
#[derive(Debug)]
enum OpError {
    /// An answer that is not 2xx (the op stops at the first one).
    Status(StatusCode, &'static str),
    /// No answer: connection refused, reset or closed; or an answer that makes no sense.
    Transport(String),
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(status, what) => write!(f, "{what} answered {status}"),
            Self::Transport(e) => f.write_str(e),
        }
    }
}

/// One answer, body read to the end (so the connection can be reused).
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// One keep-alive connection, reopened after a failure.
#[derive(Debug)]
struct Conn {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(target: Target) -> Self {
        Self {
            target,
            sender: None,
        }
    }

    async fn connect(&mut self) -> Result<(), String> {
        let authority = &self.target.authority;
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connecting to {authority}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY on {authority}: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {authority}: {e}"))?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes the connection; a
            // failure shows on the next request.
            let _ = connection.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends one request and reads the whole answer.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(hyper::header::HeaderName, &str)],
        body: Option<&Value>,
    ) -> Result<Reply, OpError> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            self.connect().await.map_err(OpError::Transport)?;
        }
        let uri = format!("{}{path}", self.target.prefix);
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, self.target.authority.as_str());
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let body = match body {
            Some(value) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(value.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request
            .body(body)
            .map_err(|e| OpError::Transport(format!("building a request for {path}: {e}")))?;
        let result = self.exchange(request).await;
        if result.is_err() {
            self.sender = None;
        }
        result.map_err(|e| OpError::Transport(format!("{path}: {e}")))
    }

    async fn exchange(&mut self, request: Request<Full<Bytes>>) -> Result<Reply, String> {
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| "no connection".to_owned())?;
        sender
            .ready()
            .await
            .map_err(|e| format!("connection lost: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// One virtual user: a connection, and its tokens once logged in.
#[derive(Debug)]
struct User {
    vu: usize,
    run_id: u128,
    conn: Conn,
    /// The latest access token.
    token: String,
    /// The latest `refresh_token=...` pair, as sent back in `Cookie`.
    cookie: String,
}

impl User {
    /// Repeats the scenario until the end of the clock; with `pace`, one operation due
    /// every `pace` from `first`.
    async fn run(
        mut self,
        scenario: Scenario,
        clock: Clock,
        pace: Option<Duration>,
        first: Instant,
    ) -> Stats {
        let mut stats = Stats::default();
        let mut n: u64 = 0;
        let mut next = first;
        loop {
            // In the open loop, an operation's latency runs from when it was due.
            let due = match pace {
                Some(pace) => {
                    // A steady rate: each user starts an operation every `pace`, late ones
                    // at once.
                    let due = next;
                    tokio::time::sleep_until(due.into()).await;
                    next += pace;
                    due
                }
                None => Instant::now(),
            };
            if Instant::now() >= clock.end {
                break;
            }
            let outcome = match scenario {
                Scenario::Protected => self.protected().await,
                Scenario::Flow => self.flow(n).await,
                Scenario::RequestOtp => {
                    let email = format!("m{}-{}-{n}@mail.bench", self.run_id, self.vu);
                    self.request_otp(&email).await
                }
                Scenario::Refresh => self.refresh().await,
            };
            n += 1;
            let done = Instant::now();
            let counted = due >= clock.measure_from && done <= clock.end;
            match outcome {
                Ok(()) if counted => {
                    let us = done.duration_since(due).as_micros();
                    stats
                        .latencies_us
                        .push(u64::try_from(us).unwrap_or(u64::MAX));
                }
                Ok(()) => {}
                Err(OpError::Status(status, _)) => {
                    if counted {
                        stats.errors += 1;
                        if status.is_server_error() {
                            stats.server_errors += 1;
                        }
                    }
                }
                Err(OpError::Transport(e)) => {
                    if counted {
                        stats.errors += 1;
                        stats.transport_errors += 1;
                    }
                    if stats.transport_errors <= 3 {
                        eprintln!("otp-bench: virtual user {}: {e}", self.vu);
                    }
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
        }
        stats
    }

    /// request-otp then verify-otp with the magic code; keeps the token and cookie.
    async fn login(&mut self, email: &str) -> Result<(), OpError> {
        self.request_otp(email).await?;
        let reply = self
            .conn
            .send(
                Method::POST,
                "/auth/verify-otp",
                &[],
                Some(&json!({ "email": email, "otp": MAGIC_CODE })),
            )
            .await?;
        ok(&reply, "verify-otp")?;
        self.take_tokens(&reply, "verify-otp")
    }

    async fn request_otp(&mut self, email: &str) -> Result<(), OpError> {
        let reply = self
            .conn
            .send(
                Method::POST,
                "/auth/request-otp",
                &[],
                Some(&json!({ "email": email })),
            )
            .await?;
        ok(&reply, "request-otp")
    }

    async fn protected(&mut self) -> Result<(), OpError> {
        let bearer = format!("Bearer {}", self.token);
        let reply = self
            .conn
            .send(
                Method::GET,
                "/protected",
                &[(AUTHORIZATION, bearer.as_str())],
                None,
            )
            .await?;
        ok(&reply, "protected")
    }

    /// The five requests of a whole login session.
    async fn flow(&mut self, n: u64) -> Result<(), OpError> {
        let email = format!("u{}-{}-{n}@magic.bench", self.run_id, self.vu);
        self.login(&email).await?;
        self.protected().await?;

        self.refresh().await?;

        let bearer = format!("Bearer {}", self.token);
        let cookie = self.cookie.clone();
        let reply = self
            .conn
            .send(
                Method::POST,
                "/auth/logout",
                &[(AUTHORIZATION, bearer.as_str()), (COOKIE, cookie.as_str())],
                None,
            )
            .await?;
        ok(&reply, "logout")
    }

    /// `POST /auth/refresh` with the latest cookie; keeps the new token and cookie.
    async fn refresh(&mut self) -> Result<(), OpError> {
        let cookie = self.cookie.clone();
        let reply = self
            .conn
            .send(
                Method::POST,
                "/auth/refresh",
                &[(COOKIE, cookie.as_str())],
                None,
            )
            .await?;
        ok(&reply, "refresh")?;
        self.take_tokens(&reply, "refresh")
    }

    /// Keeps the access token of a verify-otp or refresh answer and its refresh cookie.
    fn take_tokens(&mut self, reply: &Reply, what: &'static str) -> Result<(), OpError> {
        let body: Value = serde_json::from_slice(&reply.body)
            .map_err(|e| OpError::Transport(format!("{what}: the answer is not JSON: {e}")))?;
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| OpError::Transport(format!("{what}: no access_token in the answer")))?;
        self.token = token.to_owned();
        self.cookie = refresh_cookie(&reply.headers)
            .ok_or_else(|| OpError::Transport(format!("{what}: no {COOKIE_NAME} cookie set")))?;
        Ok(())
    }
}

/// `Ok` for a 2xx answer.
fn ok(reply: &Reply, what: &'static str) -> Result<(), OpError> {
    if reply.status.is_success() {
        Ok(())
    } else {
        Err(OpError::Status(reply.status, what))
    }
}

/// The `refresh_token=<value>` pair of the `Set-Cookie` headers.
fn refresh_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .find(|pair| {
            pair.strip_prefix(COOKIE_NAME)
                .is_some_and(|rest| rest.starts_with('='))
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let us: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&us, 0.50), 50.0);
        assert_eq!(percentile_ms(&us, 0.99), 99.0);
        assert_eq!(percentile_ms(&[], 0.99), 0.0);
        assert_eq!(percentile_ms(&[1500], 0.5), 1.5);
    }

    #[test]
    fn base_urls() {
        let t = Target::parse("http://127.0.0.1:3000").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.prefix.as_str()),
            ("127.0.0.1:3000", "")
        );
        let t = Target::parse("http://localhost/app/").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.prefix.as_str()),
            ("localhost:80", "/app")
        );
        assert!(Target::parse("https://x").is_err());
    }

    #[test]
    fn cookie_pair_from_set_cookie() {
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, "other=1; Path=/".parse().unwrap());
        headers.append(
            SET_COOKIE,
            "refresh_token=abc.def; Max-Age=604800; Path=/; HttpOnly"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            refresh_cookie(&headers).as_deref(),
            Some("refresh_token=abc.def")
        );
        assert_eq!(refresh_cookie(&HeaderMap::new()), None);
    }
}
