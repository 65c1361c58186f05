//! Which test servers this build can count on: one `cfg` per server, set when its
//! variables are in the environment of the build. `cargo xtask test` starts every server
//! and sets them all, plus `OTP_TEST_SERVERS=1`, which promises them all.
//!
//! A test that needs a server the build does not know is compiled as ignored, with the
//! reason, so a plain `cargo test` reports it as ignored instead of passing it. Under
//! `OTP_TEST_SERVERS=1` every such test is compiled to run, and fails if its server is
//! not there after all.

/// The `cfg` of each server and the variables that locate it.
const SERVERS: &[(&str, &[&str])] = &[
    ("otp_test_redis", &["OTP_TEST_REDIS_URL"]),
    ("otp_test_cluster", &["OTP_TEST_REDIS_CLUSTER_URL"]),
    ("otp_test_smtp_sink", &["OTP_TEST_SMTP_SINK"]),
    (
        "otp_test_redis_bin",
        &["OTP_TEST_REDIS_SERVER_BIN", "OTP_TEST_REDIS_CLI_BIN"],
    ),
    ("otp_test_python", &["OTP_TEST_PYTHON"]),
    (
        "otp_test_browser",
        &["OTP_TEST_CHROMEDRIVER", "OTP_TEST_CHROMIUM"],
    ),
];

fn main() {
    println!("cargo::rerun-if-env-changed=OTP_TEST_SERVERS");
    let promised = std::env::var("OTP_TEST_SERVERS").as_deref() == Ok("1");
    for (cfg, vars) in SERVERS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        for var in *vars {
            println!("cargo::rerun-if-env-changed={var}");
        }
        let known = vars
            .iter()
            .all(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
        if promised || known {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
