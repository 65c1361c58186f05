//! The example binaries as a new user runs them: no settings at all, then the login of
//! the README with the code read from the log; and bad settings. Shared by the tests of
//! `axum-example` and `poem-example` (each passes its own binary).

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The example with a clean environment (no `OTP_AUTH_*`), plus `extra`.
pub(crate) fn example(bin: &str, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("OTP_AUTH_") || k == "APP_ADDR" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(extra.iter().copied())
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
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("the example exited before logging {needle:?}");
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
        (&[("APP_ADDR", "nowhere")], "APP_ADDR"),
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
    let mut child = example(
        bin,
        &[
            ("APP_ADDR", &addr),
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
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("otp_verifications_total{method=\"link\",outcome=\"success\"} 1"),
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
