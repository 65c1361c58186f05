//! The example binaries as a new user runs them: no settings at all, then the login of
//! the README with the code read from the log; bad settings; the connections' deadlines
//! and the metrics listener. Shared by the tests of `axum-example` and `poem-example` (each
//! passes its own binary).

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A new empty directory under the system's temporary directory.
pub(crate) fn fresh_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "otp-example-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The example with a clean environment (no `OTP_AUTH_*`, no `APP_*`), in a fresh working
/// directory (where the user directory's default file goes), no metrics listener (`extra`
/// may say otherwise), plus `extra`.
pub(crate) fn example(bin: &str, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(fresh_dir());
    for (k, _) in std::env::vars() {
        if k.starts_with("OTP_AUTH_") || k.starts_with("APP_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    // No metrics listener unless a test asks for one: a port picked free here can be taken
    // by another test's process before this one binds it.
    cmd.env("APP_METRICS_ADDR", "off")
        .envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Reads log lines until one contains `needle`; returns it.
pub(crate) async fn wait_for_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    needle: &str,
) -> String {
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return line;
            }
            seen.push(line);
        }
        let tail = seen[seen.len().saturating_sub(5)..].join("\n");
        panic!("the example exited before logging {needle:?}; its last lines:\n{tail}");
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {needle:?} within 20 s"))
}

fn terminate(child: &Child) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Starts `bin` with no settings and logs in as the README says.
pub(crate) async fn embedded_default_serves_the_readme_login(bin: &str) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = example(bin, &[("APP_ADDR", &addr)]).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let warn = wait_for_line(&mut lines, "OTP_AUTH_JWT_SECRET is not set").await;
    assert!(warn.contains("WARN"), "{warn}");
    wait_for_line(&mut lines, "listening on").await;

    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let r = http
        .post(format!("{base}/auth/request-otp"))
        .json(&json!({"email": "reader@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let line = wait_for_line(&mut lines, "login code for reader@example.com: ").await;
    let code = line.rsplit(' ').next().unwrap().to_owned();
    assert_eq!(code.len(), 6, "{line}");

    let r = http
        .post(format!("{base}/auth/verify-otp"))
        .json(&json!({"email": "reader@example.com", "otp": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();

    let r = http
        .get(format!("{base}/protected"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"message": "Hello, reader@example.com!"}));

    // The login page.
    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Sign in with a code"));

    // SIGTERM: graceful shutdown, exit 0.
    terminate(&child);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// Starts `bin` with bad settings: exit status 2 and a message naming the setting.
pub(crate) async fn bad_settings_fail_with_a_clear_message(bin: &str) {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("OTP_AUTH_REDIS_URL", "http://not-redis")],
            "OTP_AUTH_STORE=redis",
        ),
        (&[("OTP_AUTH_STORE", "postgres")], "is not a store"),
        (
            &[
                ("OTP_AUTH_MAILER", "smtp"),
                ("OTP_AUTH_SMTP_USERNAME", "half"),
            ],
            "OTP_AUTH_MAILER=smtp",
        ),
        (&[("OTP_AUTH_MAILER", "pigeon")], "is not a mailer"),
        (
            &[("OTP_AUTH_OTP_LENGTH", "4")],
            "OTP_AUTH_OTP_LENGTH must be between 6 and 10",
        ),
        (
            &[("OTP_AUTH_JWT_SECRET", "short")],
            "OTP_AUTH_JWT_SECRET is 5 bytes long",
        ),
        (
            &[("OTP_AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef")],
            "OTP_AUTH_JWT_SECRET is a short unit repeated",
        ),
        (&[("APP_ADDR", "nowhere")], "APP_ADDR"),
        (
            &[("APP_METRICS_ADDR", "9464")],
            "APP_METRICS_ADDR=\"9464\" is not a socket address",
        ),
        (
            &[("APP_HEADER_READ_TIMEOUT_SECONDS", "31")],
            "APP_HEADER_READ_TIMEOUT_SECONDS=\"31\" is not a whole number of seconds from 1 to 30",
        ),
        (
            &[("APP_IDLE_TIMEOUT_SECONDS", "0")],
            "APP_IDLE_TIMEOUT_SECONDS=\"0\" is not a whole number of seconds from 1 to 3600",
        ),
    ];
    for (vars, expect) in cases {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = example(bin, &[("APP_ADDR", &addr)]);
        cmd.envs(vars.iter().copied());
        let out = cmd.output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{vars:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{vars:?}: {stderr}");
    }
}

/// Starts `bin` with ES256 and a public URL: signs in through the mailed link, then
/// verifies the access token with another JWT library (jwt-compact) from `/auth/jwks.json`
/// alone; the metrics count the login.
pub(crate) async fn es256_tokens_verify_from_the_jwks_alone(bin: &str) {
    use jwt_compact::alg::Es256;
    use jwt_compact::jwk::JsonWebKey;
    use jwt_compact::{Algorithm, AlgorithmExt, UntrustedToken};

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let base = format!("http://{addr}");
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../crates/otp-core/testdata/keys/ec-a.pem"
    );
    let public_url = format!("{base}/auth");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut child = example(
        bin,
        &[
            ("APP_ADDR", &addr),
            ("APP_METRICS_ADDR", &metrics_addr),
            ("OTP_AUTH_JWT_ALGORITHM", "ES256"),
            ("OTP_AUTH_JWT_PRIVATE_KEY_FILE", key),
            (
                "OTP_AUTH_CODE_SECRET",
                "5b0e7c2d9f8a4b3c1d6e0f2a7b9c8d1e3f5a7b9c",
            ),
            ("OTP_AUTH_PUBLIC_URL", &public_url),
        ],
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_for_line(&mut lines, "listening on").await;

    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/auth/request-otp"))
        .json(&json!({"email": "jwks@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let line = wait_for_line(&mut lines, "sign-in link for jwks@example.com: ").await;
    let link = line.rsplit(' ').next().unwrap().to_owned();
    assert!(
        link.starts_with(&format!("{public_url}/magic?token=")),
        "{line}"
    );
    let token = link.split_once("token=").unwrap().1;

    // The page a mail scanner would open, then the button's request.
    let page = http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains(token));
    let r = http
        .post(format!("{base}/auth/verify-link"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();

    // Another service: only the JWKS, no secret, another library.
    let jwks: Value = http
        .get(format!("{base}/auth/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    assert!(keys[0].get("d").is_none(), "no private part: {jwks}");
    let jwk: JsonWebKey<'_> = serde_json::from_value(keys[0].clone()).unwrap();
    let verifying_key = <Es256 as Algorithm>::VerifyingKey::try_from(&jwk).unwrap();
    let untrusted = UntrustedToken::new(&access).unwrap();
    assert_eq!(
        untrusted.header().key_id.as_deref(),
        keys[0]["kid"].as_str()
    );
    let verified = Es256
        .validator::<Value>(&verifying_key)
        .validate(&untrusted)
        .expect("the token verifies with the published key");
    let claims = verified.claims();
    assert_eq!(claims.custom["email"], "jwks@example.com");
    assert_eq!(claims.custom["type"], "access");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(claims.expiration.unwrap().timestamp() > now);
    // An altered token does not.
    let mut forged = access.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let forged = UntrustedToken::new(&forged).unwrap();
    assert!(
        Es256
            .validator::<Value>(&verifying_key)
            .validate(&forged)
            .is_err()
    );

    let metrics = http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "otp_verifications_total{method=\"link\",outcome=\"success\",binding=\"unbound\"} 1"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("jwks@example.com"));

    terminate(&child);
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
}

/// With `OTP_AUTH_ALLOWED_ORIGINS`, a front end on that origin gets CORS answers with
/// credentials (preflight and the request itself); another origin gets none, and its
/// state-changing request is refused by the Origin check.
pub(crate) async fn cors_for_the_allowed_origins(bin: &str) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let front = "https://app.example.com";
    let mut child = example(
        bin,
        &[("APP_ADDR", &addr), ("OTP_AUTH_ALLOWED_ORIGINS", front)],
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_for_line(&mut lines, "listening on").await;
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let preflight = |origin: &'static str, path: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{base}{path}"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .send()
    };
    for path in ["/auth/request-otp", "/auth/refresh", "/auth/logout"] {
        let r = preflight(front, path).await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let h = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        };
        assert_eq!(
            h("access-control-allow-origin").as_deref(),
            Some(front),
            "{path}"
        );
        assert_eq!(
            h("access-control-allow-credentials").as_deref(),
            Some("true")
        );
        let methods = h("access-control-allow-methods").unwrap();
        for m in ["get", "post", "delete"] {
            assert!(methods.contains(m), "{methods}");
        }
        let headers = h("access-control-allow-headers").unwrap();
        for name in ["content-type", "authorization"] {
            assert!(headers.contains(name), "{headers}");
        }
    }
    // Another origin: no CORS grant on the preflight, and the Origin check refuses the
    // request itself (403).
    let r = preflight("https://evil.example", "/auth/request-otp")
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = http
        .post(format!("{base}/auth/request-otp"))
        .header("origin", "https://evil.example")
        .json(&json!({"email": "cors@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The allowed origin's request itself carries the grant and the exposed headers.
    let r = http
        .post(format!("{base}/auth/request-otp"))
        .header("origin", front)
        .json(&json!({"email": "cors@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let allow = r.headers().get("access-control-allow-origin").unwrap();
    assert_eq!(allow.to_str().unwrap(), front);
    let exposed = r.headers().get("access-control-expose-headers").unwrap();
    assert!(
        exposed
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("retry-after"),
        "{exposed:?}"
    );
    terminate(&child);
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
}

/// A started example: the process, its log, its address.
struct Started {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    addr: String,
}

/// Starts `bin` on a free port with `extra` and waits until it listens.
async fn start(bin: &str, extra: &[(&str, &str)]) -> Started {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = example(bin, &[("APP_ADDR", &addr)])
        .envs(extra.iter().copied())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_for_line(&mut lines, "listening on").await;
    Started { child, lines, addr }
}

/// Reads until the server closes the connection (end of stream, or reset), at most
/// `within`; returns when that was, measured from `since`, and what was read.
async fn closed_after(
    mut stream: TcpStream,
    since: Instant,
    within: Duration,
) -> (Duration, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .map(|at| (at, got.clone()))
    .unwrap_or_else(|_| {
        panic!(
            "still open after {within:?}; read {:?}",
            String::from_utf8_lossy(&got)
        )
    })
}

/// Whether the server still holds `stream` open: nothing to read within 100 ms, and no end.
async fn still_open(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf))
        .await
        .is_err()
}

/// Sends `request` on `stream` and reads one whole answer (head and a `Content-Length`
/// body); returns the head.
async fn exchange(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while got.len() < head_end + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed mid-body");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got.len(), head_end + length, "more than one answer");
    head
}

/// The TCP ports the process `pid` listens on (Linux: its socket descriptors matched
/// against /proc/net/tcp and tcp6).
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, st (0A: LISTEN), inode.
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// A request head cut off before its end: the server waits for the rest.
const HALF_HEAD: &str = "POST /auth/request-otp HTTP/1.1\r\nHost: x\r\n";

/// With `APP_HEADER_READ_TIMEOUT_SECONDS=2`: connections that send half a request head (51
/// of them, and one that trickles its head a byte every 200 ms) hold no resources for long.
/// While they hang, a normal client is served; each is closed by the server after the
/// timeout (not before 1.5 s: the timeout closed it, nothing else), within 6 s. A
/// kept-alive connection that sends nothing after its answer is closed after it too.
pub(crate) async fn slow_headers_are_cut_off(bin: &str) {
    let timeout = Duration::from_secs(2);
    let mut app = start(bin, &[("APP_HEADER_READ_TIMEOUT_SECONDS", "2")]).await;
    let addr = app.addr.clone();

    let mut halves = Vec::new();
    for _ in 0..51 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(HALF_HEAD.as_bytes()).await.unwrap();
        halves.push((s, Instant::now()));
    }
    // A head that keeps coming, too slowly: the timeout is for the whole head, not between
    // bytes.
    let trickle = tokio::spawn({
        let addr = addr.clone();
        async move {
            let s = TcpStream::connect(&addr).await.unwrap();
            let since = Instant::now();
            let (mut read, mut write) = s.into_split();
            let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let writing = tokio::spawn({
                let sent = sent.clone();
                async move {
                    let head = format!(
                        "GET /openapi.json HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
                        "a".repeat(200)
                    );
                    for b in head.bytes() {
                        if write.write_all(&[b]).await.is_err() {
                            break;
                        }
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            });
            let mut buf = [0u8; 1024];
            let closed = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match read.read(&mut buf).await {
                        Ok(0) | Err(_) => return since.elapsed(),
                        Ok(_) => {}
                    }
                }
            })
            .await
            .expect("the trickling connection is still open after 10 s");
            writing.abort();
            (closed, sent.load(std::sync::atomic::Ordering::Relaxed))
        }
    });

    // Meanwhile, a normal client is served, and the first half-sent connection is still
    // open (so it was waiting while the server answered).
    let http = reqwest::Client::new();
    let served_at = halves[0].1.elapsed();
    let r = http
        .get(format!("http://{addr}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(still_open(&mut halves[0].0).await);
    assert!(
        halves[0].1.elapsed() < Duration::from_millis(1500),
        "too slow to show anything"
    );

    // Each connection watched from now on, side by side.
    let watched: Vec<_> = halves
        .into_iter()
        .map(|(s, since)| tokio::spawn(closed_after(s, since, Duration::from_secs(8))))
        .collect();

    // A kept-alive connection, quiet after its answer.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    let head = exchange(&mut kept, "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let kept = tokio::spawn(closed_after(kept, Instant::now(), Duration::from_secs(8)));

    let mut closes = Vec::new();
    for watch in watched {
        let (at, got) = watch.await.unwrap();
        let got = String::from_utf8_lossy(&got).into_owned();
        assert!(!got.starts_with("HTTP/1.1 2"), "{got}");
        closes.push((at, got));
    }
    let (first, last) = (
        closes.iter().map(|c| c.0).min().unwrap(),
        closes.iter().map(|c| c.0).max().unwrap(),
    );
    assert!(
        first >= Duration::from_millis(1500),
        "closed too early: {first:?}"
    );
    assert!(
        last <= timeout + Duration::from_secs(4),
        "closed too late: {last:?}"
    );
    let (trickled, trickled_bytes) = trickle.await.unwrap();
    assert!(trickled_bytes >= 5, "{trickled_bytes} bytes trickled");
    assert!(
        trickled >= Duration::from_millis(1500) && trickled <= timeout + Duration::from_secs(4),
        "trickling head closed after {trickled:?}"
    );
    let (kept_closed, _) = kept.await.unwrap();
    assert!(
        kept_closed >= Duration::from_millis(1500)
            && kept_closed <= timeout + Duration::from_secs(4),
        "kept-alive connection closed after {kept_closed:?}"
    );
    eprintln!(
        "slow headers: {} half heads closed after {first:?} to {last:?} (what they read: {:?}); \
         the normal request was sent {served_at:?} after the first; the trickling head closed \
         after {trickled:?} ({trickled_bytes} bytes sent); the quiet kept-alive connection after {kept_closed:?}",
        closes.len(),
        closes.iter().map(|c| c.1.clone()).collect::<BTreeSet<_>>(),
    );

    // Still serving.
    let r = http
        .get(format!("http://{addr}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    terminate(&app.child);
    let status = tokio::time::timeout(Duration::from_secs(10), app.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    drop(app.lines);
}

/// With `APP_IDLE_TIMEOUT_SECONDS=2` (and the header timeout at its default, 10 s): a
/// kept-alive connection quiet after its answer, and a request whose body stops coming,
/// are closed by the server after about 2 s; a connection that keeps asking, a request a
/// second, stays open past it.
pub(crate) async fn idle_keep_alive_connections_are_closed(bin: &str) {
    let idle = Duration::from_secs(2);
    let mut app = start(bin, &[("APP_IDLE_TIMEOUT_SECONDS", "2")]).await;
    let addr = app.addr.clone();
    let get = "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n";

    let mut quiet = TcpStream::connect(&addr).await.unwrap();
    let head = exchange(&mut quiet, get).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let quiet = tokio::spawn(closed_after(quiet, Instant::now(), Duration::from_secs(8)));

    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            b"POST /auth/request-otp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 60\r\n\r\n{\"email\": ",
        )
        .await
        .unwrap();
    let stalled = tokio::spawn(closed_after(
        stalled,
        Instant::now(),
        Duration::from_secs(8),
    ));

    // A busy connection: four requests a second apart, each on the same connection.
    let mut busy = TcpStream::connect(&addr).await.unwrap();
    let busy_since = Instant::now();
    for _ in 0..4 {
        let head = exchange(&mut busy, get).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let head = exchange(&mut busy, get).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let busy_for = busy_since.elapsed();
    assert!(busy_for > idle + Duration::from_secs(1), "{busy_for:?}");

    let (quiet_closed, _) = quiet.await.unwrap();
    let (stalled_closed, got) = stalled.await.unwrap();
    for (what, at) in [("quiet", quiet_closed), ("stalled body", stalled_closed)] {
        assert!(
            at >= Duration::from_millis(1500) && at <= idle + Duration::from_secs(3),
            "{what}: closed after {at:?}"
        );
    }
    eprintln!(
        "idle: quiet kept-alive connection closed after {quiet_closed:?}; stalled body after \
         {stalled_closed:?} (read {:?}); a busy connection served 5 requests over {busy_for:?}",
        String::from_utf8_lossy(&got)
    );
    terminate(&app.child);
    let _ = tokio::time::timeout(Duration::from_secs(10), app.child.wait()).await;
    drop(app.lines);
}

/// `GET /metrics` is not on the public port (404); the metrics listener of
/// `APP_METRICS_ADDR` serves it (and nothing else), and counts a code request there;
/// `APP_METRICS_ADDR=off` starts no second listener; a metrics address in use stops the
/// start with a message naming it.
pub(crate) async fn metrics_are_not_on_the_public_port(bin: &str) {
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = example(
        bin,
        &[("APP_ADDR", &addr), ("APP_METRICS_ADDR", &metrics_addr)],
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_for_line(&mut lines, "ready: store: ok; mail server: ok").await;
    wait_for_line(
        &mut lines,
        &format!("metrics on http://{metrics_addr}/metrics"),
    )
    .await;
    wait_for_line(&mut lines, "listening on").await;
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");

    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // The readiness probe, on the metrics listener only.
    let r = http
        .get(format!("http://{metrics_addr}/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "store: ok; mail server: ok\n");
    let r = http.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .post(format!("{base}/auth/request-otp"))
        .json(&json!({"email": "metrics@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        example_common::METRICS_CONTENT_TYPE
    );
    let text = r.text().await.unwrap();
    assert!(text.contains("otp_codes_requested_total"), "{text}");
    assert!(
        text.contains(
            "otp_request_duration_seconds_count{endpoint=\"request_otp\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(!text.contains("metrics@example.com"));
    // Nothing else there.
    let r = http
        .get(format!("http://{metrics_addr}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .post(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    if cfg!(target_os = "linux") {
        let ports = listening_ports(child.id().unwrap());
        assert_eq!(
            ports,
            BTreeSet::from([port_of(&addr), port_of(&metrics_addr)])
        );
    }
    terminate(&child);
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;

    // A Redis nobody listens on: the start says so (and still serves), the probe is 503.
    let (metrics_addr, addr) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let redis = format!("redis://127.0.0.1:{}/0", free_port());
    let mut child = example(
        bin,
        &[
            ("APP_ADDR", &addr),
            ("APP_METRICS_ADDR", &metrics_addr),
            ("OTP_AUTH_REDIS_URL", &redis),
            ("OTP_AUTH_REDIS_TIMEOUT_MS", "300"),
        ],
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_for_line(&mut lines, "not ready at start").await;
    wait_for_line(&mut lines, "listening on").await;
    let r = http
        .get(format!("http://{metrics_addr}/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    assert!(
        text.starts_with("store: ") && !text.starts_with("store: ok"),
        "{text}"
    );
    terminate(&child);
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;

    // Off: the app alone.
    let mut app = start(bin, &[("APP_METRICS_ADDR", "off")]).await;
    let r = http
        .get(format!("http://{}/metrics", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    if cfg!(target_os = "linux") {
        let ports = listening_ports(app.child.id().unwrap());
        assert_eq!(ports, BTreeSet::from([port_of(&app.addr)]));
    }
    terminate(&app.child);
    let _ = tokio::time::timeout(Duration::from_secs(10), app.child.wait()).await;
    drop(app.lines);

    // Taken: exit status 1, the setting named.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let out = example(
        bin,
        &[
            ("APP_ADDR", &format!("127.0.0.1:{}", free_port())),
            ("APP_METRICS_ADDR", &taken_addr),
        ],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {taken_addr} (APP_METRICS_ADDR)")),
        "{stderr}"
    );
}

/// SIGTERM with a request whose body stops coming (the idle limit at its default, 60 s):
/// the example waits for it no longer than `example_common::SHUTDOWN_GRACE` (10 s), then
/// closes it and exits 0; a quiet kept-alive connection does not hold it at all.
pub(crate) async fn shutdown_is_not_held_by_a_stalled_client(bin: &str) {
    let grace = example_common::SHUTDOWN_GRACE;
    let mut app = start(bin, &[]).await;
    let mut kept = TcpStream::connect(&app.addr).await.unwrap();
    let head = exchange(&mut kept, "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut stalled = TcpStream::connect(&app.addr).await.unwrap();
    stalled
        .write_all(
            b"POST /auth/request-otp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 60\r\n\r\n{\"email\": ",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let since = Instant::now();
    terminate(&app.child);
    let kept = tokio::spawn(closed_after(kept, since, Duration::from_secs(5)));
    let stalled = tokio::spawn(closed_after(stalled, since, grace + Duration::from_secs(5)));
    let status = tokio::time::timeout(grace + Duration::from_secs(5), app.child.wait())
        .await
        .expect("still running 5 s after the grace")
        .unwrap();
    let exited = since.elapsed();
    assert!(status.success(), "{status:?}");
    let (kept_closed, _) = kept.await.unwrap();
    let (stalled_closed, _) = stalled.await.unwrap();
    assert!(kept_closed < Duration::from_secs(1), "{kept_closed:?}");
    assert!(
        stalled_closed >= grace - Duration::from_secs(1)
            && stalled_closed <= grace + Duration::from_secs(3),
        "{stalled_closed:?}"
    );
    eprintln!(
        "shutdown: the quiet kept-alive connection closed after {kept_closed:?}, the stalled \
         request after {stalled_closed:?}; exit 0 after {exited:?}"
    );
    drop(app.lines);
}

/// Logs `email` in on the example at `base` with the code from its log; the access token.
async fn login_on(
    http: &reqwest::Client,
    base: &str,
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    email: &str,
) -> String {
    let r = http
        .post(format!("{base}/auth/request-otp"))
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let normalized = email.to_ascii_lowercase();
    let line = wait_for_line(lines, &format!("login code for {normalized}: ")).await;
    let code = line.rsplit(' ').next().unwrap().to_owned();
    let r = http
        .post(format!("{base}/auth/verify-otp"))
        .json(&json!({ "email": email, "otp": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// `GET /app/me` on `base` with `token`: status and body.
async fn me(http: &reqwest::Client, base: &str, token: &str) -> (u16, Value) {
    let r = http
        .get(format!("{base}/app/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Two instances of the example on one user directory (`APP_USERS_DB`, one SQLite file)
/// and one store (Redis at `OTP_TEST_REDIS_URL` when the test servers run, under key
/// prefixes of the test's own; otherwise each instance's memory): one address gets one
/// subject on both, and again after an instance restarts; the administrator of
/// `APP_ADMINS` is one on both. With Redis, a token of one instance is good on the other,
/// and the admin router lists the sessions opened on both.
pub(crate) async fn instances_share_the_user_directory(bin: &str) {
    let dir = fresh_dir();
    let db = dir.join("users.sqlite3").to_string_lossy().into_owned();
    let tag = format!("t{}", rand_suffix());
    let (otp_prefix, bl_prefix) = (format!("{tag}_otp_"), format!("{tag}_bl_"));
    let redis = std::env::var("OTP_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let mut env: Vec<(&str, &str)> = vec![
        ("APP_USERS_DB", &db),
        ("APP_ADMINS", "boss@example.com"),
        (
            "OTP_AUTH_JWT_SECRET",
            "9c1f4e7a2b8d3f6a0e5c7b9d1a4f8e2c6b0d3a7f",
        ),
    ];
    if let Some(url) = &redis {
        env.extend([
            ("OTP_AUTH_STORE", "redis"),
            ("OTP_AUTH_REDIS_URL", url.as_str()),
            ("OTP_AUTH_OTP_KEY_PREFIX", otp_prefix.as_str()),
            ("OTP_AUTH_BLACKLIST_KEY_PREFIX", bl_prefix.as_str()),
        ]);
    }
    let http = reqwest::Client::new();
    let mut a = start(bin, &env).await;
    let mut b = start(bin, &env).await;
    let (base_a, base_b) = (format!("http://{}", a.addr), format!("http://{}", b.addr));

    let on_a = login_on(&http, &base_a, &mut a.lines, "shared@example.com").await;
    let on_b = login_on(&http, &base_b, &mut b.lines, "Shared@Example.com").await;
    let (status, me_a) = me(&http, &base_a, &on_a).await;
    assert_eq!(status, 200, "{me_a}");
    let subject = me_a["subject"].as_str().unwrap().to_owned();
    assert!(subject.starts_with("user_"), "{subject}");
    assert_eq!(
        me(&http, &base_b, &on_b).await.1["subject"],
        subject.as_str(),
        "one subject"
    );

    // Restarted, an instance finds the user where it left them.
    terminate(&a.child);
    a.child.wait().await.unwrap();
    let mut a = start(bin, &env).await;
    let base_a = format!("http://{}", a.addr);
    let again = login_on(&http, &base_a, &mut a.lines, "shared@example.com").await;
    assert_eq!(
        me(&http, &base_a, &again).await.1["subject"],
        subject.as_str(),
        "after a restart"
    );

    // The administrator is one on both instances.
    let boss = login_on(&http, &base_b, &mut b.lines, "boss@example.com").await;
    let roles = me(&http, &base_a, &boss).await;
    if redis.is_some() {
        assert_eq!(roles.1["roles"], json!(["member", "admin"]), "{roles:?}");
        // Sessions live in Redis: a token of one instance is good on the other, and the
        // admin router on one lists the sessions opened on both.
        assert_eq!(me(&http, &base_b, &on_a).await.0, 200);
        let r = http
            .get(format!(
                "{base_a}/admin/sessions?email=shared%40example.com"
            ))
            .bearer_auth(&boss)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let listed: Value = r.json().await.unwrap();
        assert_eq!(listed["sessions"].as_array().unwrap().len(), 3, "{listed}");
    } else {
        // Each instance's memory holds its own sessions: B's token is unknown to A.
        assert_eq!(roles.0, 401, "{roles:?}");
        let (_, on_b_me) = me(&http, &base_b, &boss).await;
        assert_eq!(on_b_me["roles"], json!(["member", "admin"]), "{on_b_me}");
    }
    terminate(&a.child);
    terminate(&b.child);
}
