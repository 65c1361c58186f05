//! Test data shared by the unit tests of the `bench` modules.

use super::SMTP_SOURCE_MESSAGES;
use super::options::Options;
use super::report::Report;
use super::results::{Ceiling, Load, OpenLoop, Pair, Preloaded, Row, Smtp};

/// `list` as owned command-line arguments.
pub(super) fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A result line of `otp-bench load` with `ops` ops/s, p50 1.5 ms, p99 9 ms, 1 error and
/// `server_errors` 5xx.
fn load(ops: f64, server_errors: u64) -> Load {
    Load::parse(&format!(
        "{{\"ops_per_sec\":{ops},\"p50_ms\":1.5,\"p99_ms\":9,\"p999_ms\":12,\"errors\":1,\
         \"server_errors\":{server_errors}}}"
    ))
    .unwrap()
}

/// Round by round, `(ceiling ops/s, app ops/s)` for an `otp-bench ceiling` scenario.
fn row(scenario: &'static str, app: &'static str, pairs: &[(f64, f64)]) -> Row {
    Row {
        scenario,
        app,
        store: "redis",
        pairs: pairs
            .iter()
            .map(|&(ceiling, app)| Pair {
                ceiling: Ceiling::Server(load(ceiling, 0)),
                app: load(app, 0),
            })
            .collect(),
    }
}

/// An `smtp-source` ceiling run at `mails_per_sec`.
fn smtp(mails_per_sec: f64) -> Ceiling {
    Ceiling::Smtp(Smtp {
        seconds: f64::from(SMTP_SOURCE_MESSAGES) / mails_per_sec,
        mails_per_sec,
    })
}

/// Three rounds of axum and poem on Redis where the ceiling moves from run to run: each
/// app run is divided by the ceiling run just before it, and the verdict is on the
/// median of those ratios.
pub(super) fn report() -> Report {
    let options = Options::parse(&args(&["--only", "axum/redis,poem/redis"])).unwrap();
    Report {
        options,
        cpus: 2,
        rows: vec![
            row(
                "protected",
                "axum",
                &[(100.0, 90.0), (200.0, 150.0), (150.0, 140.0)],
            ),
            row(
                "flow",
                "axum",
                &[(100.0, 60.0), (100.0, 70.0), (100.0, 80.0)],
            ),
            Row {
                scenario: "request-otp",
                app: "axum",
                store: "redis",
                pairs: vec![
                    Pair {
                        ceiling: smtp(100.0),
                        app: load(80.0, 0),
                    },
                    Pair {
                        ceiling: smtp(125.0),
                        app: load(100.0, 2),
                    },
                    Pair {
                        ceiling: smtp(50.0),
                        app: load(10.0, 0),
                    },
                ],
            },
            row(
                "protected",
                "poem",
                &[(400.0, 300.0), (50.0, 45.0), (120.0, 60.0)],
            ),
            row("flow", "poem", &[(0.0, 10.0), (90.0, 45.0), (80.0, 60.0)]),
            Row {
                scenario: "request-otp",
                app: "poem",
                store: "redis",
                pairs: vec![
                    Pair {
                        ceiling: smtp(75.0),
                        app: load(30.0, 0),
                    },
                    Pair {
                        ceiling: smtp(100.0),
                        app: load(20.0, 0),
                    },
                    Pair {
                        ceiling: Ceiling::Smtp(Smtp {
                            seconds: 40.0,
                            mails_per_sec: 125.0,
                        }),
                        app: load(25.0, 0),
                    },
                ],
            },
        ],
        memory: Vec::new(),
        open_loop: vec![OpenLoop {
            scenario: "protected",
            app: "axum",
            store: "redis",
            percent: 80,
            rate: 72.0,
            load: load(71.5, 0),
        }],
        preloaded: vec![Preloaded {
            scenario: "refresh",
            app: "poem",
            store: "redis",
            sessions: 1000,
            used_memory: (1_000_000, 1_250_000),
            empty: load(100.0, 0),
            preloaded: load(95.0, 0),
            ceiling: Some((load(200.0, 0), load(160.0, 0))),
        }],
    }
}
