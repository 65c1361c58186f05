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
//!
//! The scenarios, each operation repeated by every user:
//! * `protected`: log in once, then `GET /protected` with the bearer token (one request);
//! * `flow`: request-otp, verify-otp, protected, refresh, logout (the five requests);
//! * `request-otp`: for a new `@mail.bench` address each time, real mail (one request);
//! * `refresh`: log in once, then `POST /auth/refresh` with the latest cookie (one request).

use std::fmt::Display;
use std::str::FromStr;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, HeaderName, SET_COOKIE};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use pico_args::Arguments;
use serde_json::{Value, json};
use tokio::net::TcpStream;

const SCENARIOS: [&str; 4] = ["protected", "flow", "request-otp", "refresh"];

/// The code every `@magic.bench` address accepts (all zeros, `OTP_LENGTH` 6).
const MAGIC_CODE: &str = "000000";

/// Arguments of `otp-bench load`.
#[derive(Debug)]
pub(crate) struct Args {
    /// `host:port` of `--base http://host:port`.
    authority: String,
    scenario: &'static str,
    concurrency: usize,
    seconds: f64,
    warmup: f64,
    /// Total operations per second to hold (each user paced); `None`: as fast as possible.
    rate: Option<f64>,
}

/// The value of option `name`, else `default`.
fn opt<T: FromStr<Err: Display>>(
    a: &mut Arguments,
    name: &'static str,
    or: T,
) -> Result<T, String> {
    Ok(a.opt_value_from_str(name)
        .map_err(|e| e.to_string())?
        .unwrap_or(or))
}

impl Args {
    /// `--base` and `--scenario` required; `--concurrency` (32), `--seconds` (10),
    /// `--warmup` (2) and `--rate` (0: a closed loop) optional.
    pub(crate) fn parse(args: &mut Arguments) -> Result<Self, String> {
        let base: String = args.value_from_str("--base").map_err(|e| e.to_string())?;
        let scenario: String = args
            .value_from_str("--scenario")
            .map_err(|e| e.to_string())?;
        let authority = base
            .strip_prefix("http://")
            .map(|a| a.trim_end_matches('/'));
        let authority = (authority.filter(|a| a.contains(':') && !a.contains('/')))
            .ok_or_else(|| format!("`--base {base}`: expected http://host:port"))?;
        let parsed = Self {
            authority: authority.to_owned(),
            scenario: (SCENARIOS.into_iter().find(|s| *s == scenario))
                .ok_or_else(|| format!("`--scenario {scenario}`: not one of {SCENARIOS:?}"))?,
            concurrency: opt(args, "--concurrency", 32)?,
            seconds: opt(args, "--seconds", 10.0)?,
            warmup: opt(args, "--warmup", 2.0)?,
            rate: Some(opt(args, "--rate", 0.0)?).filter(|rate| *rate > 0.0),
        };
        let (seconds, warmup, rate) = (parsed.seconds, parsed.warmup, parsed.rate.unwrap_or(0.0));
        let finite = [seconds, warmup, rate].iter().all(|v| v.is_finite());
        if parsed.concurrency == 0 || seconds <= 0.0 || warmup < 0.0 || rate < 0.0 || !finite {
            let e = "`--concurrency` and `--seconds` must be positive, `--warmup` and `--rate` \
                     zero or positive";
            return Err(e.to_owned());
        }
        Ok(parsed)
    }
}

/// Runs the scenario and prints the JSON line.
pub(crate) async fn run(args: Args) -> Result<(), String> {
    // Makes the addresses of this run differ from those of earlier runs on the same Redis.
    let run_id = UNIX_EPOCH
        .elapsed()
        .map_or(0, |d| d.as_millis() % 1_000_000_000);

    // Connections (and logins) before the clock starts.
    let mut users = Vec::with_capacity(args.concurrency);
    for vu in 0..args.concurrency {
        let mut user = User::default();
        (user.vu, user.run_id, user.authority) = (vu, run_id, args.authority.clone());
        let connected = user.connect().await;
        connected.map_err(|e| format!("virtual user {vu}: {e}"))?;
        if matches!(args.scenario, "protected" | "refresh") {
            let email = format!("p{run_id}-{vu}@magic.bench");
            (user.login(&email).await)
                .map_err(|(_, e)| format!("virtual user {vu} cannot log in as {email}: {e}"))?;
        }
        users.push(user);
    }

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.seconds);
    let pace = (args.rate).map(|rate| Duration::from_secs_f64(args.concurrency as f64 / rate));
    let mut tasks = Vec::new();
    for user in users {
        // In the open loop the users' schedules are spread over one pace, so the
        // operations arrive evenly instead of in bursts of `concurrency`.
        let offset = |p: Duration| p * user.vu as u32 / args.concurrency as u32;
        let offset = pace.map_or(Duration::ZERO, offset);
        let window = (measure_from, end, pace, start + offset);
        tasks.push(tokio::spawn(user.run(args.scenario, window)));
    }
    let mut total = Stats::default();
    for task in tasks {
        let stats = task
            .await
            .map_err(|e| format!("a virtual user panicked: {e}"))?;
        total.latencies_us.extend(stats.latencies_us);
        total.errors += stats.errors;
        total.server_errors += stats.server_errors;
        total.transport_errors += stats.transport_errors;
    }

    total.latencies_us.sort_unstable();
    let ops = total.latencies_us.len();
    let percentile = |q| percentile_ms(&total.latencies_us, q);
    let line = json!({
        "scenario": args.scenario,
        "ops": ops,
        "seconds": args.seconds,
        "ops_per_sec": round(ops as f64 / args.seconds, 1),
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "p999_ms": percentile(0.999),
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
    let rank = (q * sorted_us.len() as f64).ceil() as usize;
    let us = sorted_us.get(rank.clamp(1, sorted_us.len().max(1)) - 1);
    us.map_or(0.0, |&us| round(us as f64 / 1000.0, 3))
}

/// What one virtual user counted in the measured window.
#[derive(Debug, Default)]
struct Stats {
    /// Duration of each successful op.
    latencies_us: Vec<u64>,
    /// Answers other than 2xx, plus transport failures.
    errors: u64,
    server_errors: u64,
    /// Connection failures (no answer at all); also counted in `errors`.
    transport_errors: u64,
}

/// Why an op failed: the status of an answer that is not 2xx (the op stops at the first
/// one), or `None` for no answer (connection refused, reset or closed; or an answer that
/// makes no sense); and what happened.
type OpError = (Option<StatusCode>, String);

/// One virtual user: a keep-alive connection (reopened after a failure), and its tokens
/// once logged in.
#[derive(Debug, Default)]
struct User {
    vu: usize,
    run_id: u128,
    authority: String,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// The latest access token.
    token: String,
    /// The latest `refresh_token=...` pair, as sent back in `Cookie`.
    cookie: String,
}

impl User {
    async fn connect(&mut self) -> Result<(), String> {
        let authority = &self.authority;
        let stream = (TcpStream::connect(authority).await)
            .map_err(|e| format!("connecting to {authority}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY on {authority}: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {authority}: {e}"))?;
        // Ends when the sender is dropped or the server closes the connection; a failure
        // shows on the next request.
        tokio::spawn(connection);
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends one request (`GET /protected`, else a POST) and reads the whole answer (so the
    /// connection can be reused); an error unless it is 2xx.
    async fn send(
        &mut self,
        path: &str,
        headers: &[(HeaderName, &str)],
        body: Option<Value>,
    ) -> Result<(HeaderMap, Bytes), OpError> {
        let transport = |e: String| (None, format!("{path}: {e}"));
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            self.connect().await.map_err(transport)?;
        }
        let method = if path == "/protected" {
            Method::GET
        } else {
            Method::POST
        };
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in [(HOST, self.authority.as_str())].iter().chain(headers) {
            request = request.header(name, *value);
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let body = Full::new(body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())));
        let request = request.body(body).map_err(|e| transport(e.to_string()))?;
        let Some(sender) = self.sender.as_mut() else {
            return Err(transport("no connection".to_owned()));
        };
        let exchange = async {
            sender
                .ready()
                .await
                .map_err(|e| format!("connection lost: {e}"))?;
            let response = sender.send_request(request).await;
            let (parts, body) = response
                .map_err(|e| format!("no answer: {e}"))?
                .into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?;
            Ok((parts, body.to_bytes()))
        };
        match exchange.await {
            Ok((parts, body)) if parts.status.is_success() => Ok((parts.headers, body)),
            Ok((parts, _)) => Err((
                Some(parts.status),
                format!("{path} answered {}", parts.status),
            )),
            Err(e) => {
                self.sender = None;
                Err(transport(e))
            }
        }
    }

    /// Repeats the scenario until `end`, counting what runs from `measure_from` on; with
    /// `pace`, one operation due every `pace` from `first`.
    async fn run(
        mut self,
        scenario: &str,
        (measure_from, end, pace, first): (Instant, Instant, Option<Duration>, Instant),
    ) -> Stats {
        let mut stats = Stats::default();
        let mut next = first;
        for n in 0_u64.. {
            // In the open loop, an operation's latency runs from when it was due; late
            // ones start at once.
            let due = match pace {
                Some(pace) => {
                    tokio::time::sleep_until(next.into()).await;
                    next += pace;
                    next - pace
                }
                None => Instant::now(),
            };
            if Instant::now() >= end {
                break;
            }
            let outcome = match scenario {
                "protected" => self.protected().await,
                "flow" => self.flow(n).await,
                "request-otp" => {
                    let email = format!("m{}-{}-{n}@mail.bench", self.run_id, self.vu);
                    self.request_otp(&email).await
                }
                _ => self.refresh().await,
            };
            let done = Instant::now();
            let counted = due >= measure_from && done <= end;
            match outcome {
                Ok(()) if counted => {
                    let us = done.duration_since(due).as_micros();
                    stats
                        .latencies_us
                        .push(u64::try_from(us).unwrap_or(u64::MAX));
                }
                Err((Some(status), _)) if counted => {
                    stats.errors += 1;
                    stats.server_errors += u64::from(status.is_server_error());
                }
                Err((None, e)) => {
                    stats.errors += u64::from(counted);
                    stats.transport_errors += u64::from(counted);
                    if stats.transport_errors <= 3 {
                        eprintln!("otp-bench: virtual user {}: {e}", self.vu);
                    }
                    // So that a dead server does not turn into a busy loop.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => {}
            }
        }
        stats
    }

    /// request-otp then verify-otp with the magic code; keeps the token and cookie.
    async fn login(&mut self, email: &str) -> Result<(), OpError> {
        self.request_otp(email).await?;
        let body = json!({ "email": email, "otp": MAGIC_CODE });
        let reply = self.send("/auth/verify-otp", &[], Some(body)).await?;
        self.take_tokens(reply, "verify-otp")
    }

    async fn request_otp(&mut self, email: &str) -> Result<(), OpError> {
        let body = json!({ "email": email });
        self.send("/auth/request-otp", &[], Some(body))
            .await
            .map(drop)
    }

    async fn protected(&mut self) -> Result<(), OpError> {
        let bearer = format!("Bearer {}", self.token);
        self.send("/protected", &[(AUTHORIZATION, &bearer)], None)
            .await
            .map(drop)
    }

    /// The five requests of a whole login session.
    async fn flow(&mut self, n: u64) -> Result<(), OpError> {
        let email = format!("u{}-{}-{n}@magic.bench", self.run_id, self.vu);
        self.login(&email).await?;
        self.protected().await?;
        self.refresh().await?;
        let (bearer, cookie) = (format!("Bearer {}", self.token), self.cookie.clone());
        let headers = [(AUTHORIZATION, bearer.as_str()), (COOKIE, cookie.as_str())];
        self.send("/auth/logout", &headers, None).await.map(drop)
    }

    /// `POST /auth/refresh` with the latest cookie; keeps the new token and cookie.
    async fn refresh(&mut self) -> Result<(), OpError> {
        let cookie = self.cookie.clone();
        let reply = self
            .send("/auth/refresh", &[(COOKIE, &cookie)], None)
            .await?;
        self.take_tokens(reply, "refresh")
    }

    /// Keeps the access token of a verify-otp or refresh answer and its refresh cookie.
    fn take_tokens(
        &mut self,
        (headers, body): (HeaderMap, Bytes),
        what: &str,
    ) -> Result<(), OpError> {
        let failed = |e: &str| (None, format!("{what}: {e}"));
        let body: Value = serde_json::from_slice(&body).map_err(|_| failed("not JSON"))?;
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| failed("no access_token"))?;
        self.token = token.to_owned();
        self.cookie = refresh_cookie(&headers).ok_or_else(|| failed("no refresh_token cookie"))?;
        Ok(())
    }
}

/// The `refresh_token=<value>` pair of the `Set-Cookie` headers.
fn refresh_cookie(headers: &HeaderMap) -> Option<String> {
    (headers.get_all(SET_COOKIE).iter())
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .map(str::trim)
        .find(|pair| pair.starts_with("refresh_token="))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_cookies() {
        let us: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(
            (percentile_ms(&us, 0.50), percentile_ms(&us, 0.99)),
            (50.0, 99.0)
        );
        assert_eq!(
            (percentile_ms(&[], 0.99), percentile_ms(&[1500], 0.5)),
            (0.0, 1.5)
        );
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, "other=1; Path=/".parse().unwrap());
        let set = "refresh_token=abc.def; Max-Age=604800; Path=/; HttpOnly";
        headers.append(SET_COOKIE, set.parse().unwrap());
        assert_eq!(
            refresh_cookie(&headers).as_deref(),
            Some("refresh_token=abc.def")
        );
        assert_eq!(refresh_cookie(&HeaderMap::new()), None);
    }
}
