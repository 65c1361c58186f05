//! Start-up refusals and warnings of the example binaries, as an operator meets them.
//! Shared by the tests of `axum-example` and `poem-example` (each passes its own binary).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::process_tests::{example, free_port};

const SECRET: &str = "3f9c2a7e5b1d8f4a6c0e2b9d7f5a3c1e8b6d4f2a";

/// The settings of a production start: a real secret and the SMTP mailer (nothing needs
/// to listen there: the mailer connects on first use).
fn production(port: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTP_AUTH_JWT_SECRET", SECRET.to_owned()),
        ("OTP_AUTH_MAILER", "smtp".to_owned()),
        ("OTP_AUTH_SMTP_SERVER", "127.0.0.1".to_owned()),
        ("OTP_AUTH_SMTP_PORT", port.to_owned()),
    ]
}

/// Starts `bin` with `vars` and waits until it listens; returns the log lines before that.
async fn starts(bin: &str, vars: &[(&str, String)]) -> Vec<String> {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = example(bin, &[("APP_ADDR", &addr)]);
    cmd.envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("listening on") {
                return;
            }
            seen.push(line);
        }
        panic!("{vars:?}: exited before listening: {seen:#?}");
    })
    .await
    .unwrap_or_else(|_| panic!("{vars:?}: not listening within 20 s"));
    child.kill().await.unwrap();
    seen
}

/// The all-zeros code next to a mailer that delivers: exit status 2 and a message naming
/// `OTP_AUTH_MAGIC_OTP_EMAILS`, unless the allow-list is narrow; with the console mailer
/// it starts, as the seed does for local development.
pub(crate) async fn magic_code_refuses_a_real_mailer(bin: &str) {
    let port = free_port().to_string();
    for patterns in [None, Some("*"), Some("*@*"), Some("*@*.com")] {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = example(bin, &[("APP_ADDR", &addr)]);
        cmd.envs(production(&port).iter().map(|(k, v)| (*k, v.as_str())))
            .env("OTP_AUTH_DISABLE_LOCAL_AUTH", "true");
        if let Some(p) = patterns {
            cmd.env("OTP_AUTH_MAGIC_OTP_EMAILS", p);
        }
        let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{patterns:?}: still running after 20 s"))
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{patterns:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("OTP_AUTH_MAGIC_OTP_EMAILS"),
            "{patterns:?}: {stderr}"
        );
    }
    let mut narrow = production(&port);
    narrow.push(("OTP_AUTH_DISABLE_LOCAL_AUTH", "true".to_owned()));
    narrow.push(("OTP_AUTH_MAGIC_OTP_EMAILS", "*@test.example.com".to_owned()));
    starts(bin, &narrow).await;
    starts(bin, &[("OTP_AUTH_DISABLE_LOCAL_AUTH", "true".to_owned())]).await;
}

/// Each risky setting is one warning line at start, naming its variable.
pub(crate) async fn risky_settings_warn_at_start(bin: &str) {
    let port = free_port().to_string();
    let mut vars = production(&port);
    vars.extend([
        ("OTP_AUTH_TRUSTED_PROXIES", "0.0.0.0/0".to_owned()),
        ("OTP_AUTH_COOKIE_SECURE", "false".to_owned()),
        (
            "OTP_AUTH_PUBLIC_URL",
            "https://app.example.com/auth".to_owned(),
        ),
        ("OTP_AUTH_OTP_MAX_VERIFY_ATTEMPTS", "50".to_owned()),
    ]);
    let lines = starts(bin, &vars).await;
    for var in [
        "OTP_AUTH_TRUSTED_PROXIES",
        "OTP_AUTH_COOKIE_SECURE",
        "OTP_AUTH_OTP_MAX_VERIFY_ATTEMPTS",
    ] {
        let found: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("WARN") && l.contains(var))
            .collect();
        assert_eq!(found.len(), 1, "{var}: {lines:#?}");
    }
    // The same start without them: none of those warnings.
    let quiet = starts(bin, &production(&port)).await;
    assert!(
        !quiet.iter().any(|l| l.contains("OTP_AUTH_TRUSTED_PROXIES")
            || l.contains("OTP_AUTH_COOKIE_SECURE")
            || l.contains("OTP_AUTH_OTP_MAX_VERIFY_ATTEMPTS")),
        "{quiet:#?}"
    );
}
