//! What the runs measure: the result of each load run, the pairs of ceiling and app runs,
//! the rows of the table, and the memory of a pending login.

use serde_json::Value;

/// The JSON line printed by `otp-bench load`, and the numbers read from it.
#[derive(Debug, Clone)]
pub(super) struct Load {
    /// The line itself, copied into `bench.json`.
    pub(super) json: Value,
    /// Operations per second.
    pub(super) ops_per_sec: f64,
    /// Median latency, in milliseconds.
    pub(super) p50_ms: f64,
    /// 99th percentile of the latency, in milliseconds.
    pub(super) p99_ms: f64,
    /// 99.9th percentile of the latency, in milliseconds.
    pub(super) p999_ms: f64,
    /// Answers other than 2xx, and connection failures.
    pub(super) errors: u64,
    /// Answers with a 5xx status.
    pub(super) server_errors: u64,
}

impl Load {
    /// Reads a result line of `otp-bench load`; an error if it is not JSON or a number is
    /// missing.
    pub(super) fn parse(line: &str) -> Result<Self, String> {
        let json: Value =
            serde_json::from_str(line).map_err(|e| format!("`{line}` is not JSON: {e}"))?;
        let number = |key: &str| {
            json.get(key)
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("no number `{key}` in `{line}`"))
        };
        let count = |key: &str| {
            json.get(key)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("no count `{key}` in `{line}`"))
        };
        Ok(Self {
            ops_per_sec: number("ops_per_sec")?,
            p50_ms: number("p50_ms")?,
            p99_ms: number("p99_ms")?,
            p999_ms: number("p999_ms")?,
            errors: count("errors")?,
            server_errors: count("server_errors")?,
            json,
        })
    }
}

/// One run of `smtp-source`: seconds taken, mails per second.
#[derive(Debug, Clone, Copy)]
pub(super) struct Smtp {
    /// Wall-clock seconds for all the mails.
    pub(super) seconds: f64,
    /// Mails per second.
    pub(super) mails_per_sec: f64,
}

/// The ceiling run just before an app's run of the same scenario.
#[derive(Debug, Clone)]
pub(super) enum Ceiling {
    /// `otp-bench load` against `otp-bench ceiling` (`protected`, `flow`).
    Server(Load),
    /// `smtp-source` against smtp-sink (`request-otp`).
    Smtp(Smtp),
}

impl Ceiling {
    /// Operations (or mails) per second.
    pub(super) fn ops_per_sec(&self) -> f64 {
        match self {
            Self::Server(load) => load.ops_per_sec,
            Self::Smtp(smtp) => smtp.mails_per_sec,
        }
    }
}

/// One app run and the ceiling run just before it, with the same scenario and options.
#[derive(Debug, Clone)]
pub(super) struct Pair {
    /// The ceiling's run.
    pub(super) ceiling: Ceiling,
    /// The app's run, right after.
    pub(super) app: Load,
}

/// One row of the table: a scenario against an app and store, with one pair per round.
#[derive(Debug)]
pub(super) struct Row {
    /// The scenario of `otp-bench load`.
    pub(super) scenario: &'static str,
    /// Short name of the app.
    pub(super) app: &'static str,
    /// `OTP_AUTH_STORE`.
    pub(super) store: &'static str,
    /// Round by round.
    pub(super) pairs: Vec<Pair>,
}

/// An app's scenario in an open loop at a share of the ops/s its closed loop reached.
#[derive(Debug, Clone)]
pub(super) struct OpenLoop {
    /// The scenario of `otp-bench load`.
    pub(super) scenario: &'static str,
    /// Short name of the app.
    pub(super) app: &'static str,
    /// `OTP_AUTH_STORE`.
    pub(super) store: &'static str,
    /// The percentage of the closed loop's ops/s.
    pub(super) percent: u32,
    /// The rate asked for, in operations per second.
    pub(super) rate: f64,
    /// The run.
    pub(super) load: Load,
}

/// An app's scenario on an empty store and again with sessions preloaded.
#[derive(Debug, Clone)]
pub(super) struct Preloaded {
    /// The scenario of `otp-bench load`.
    pub(super) scenario: &'static str,
    /// Short name of the app.
    pub(super) app: &'static str,
    /// `OTP_AUTH_STORE`.
    pub(super) store: &'static str,
    /// Sessions preloaded.
    pub(super) sessions: u32,
    /// Redis' `used_memory` before and after the preload.
    pub(super) used_memory: (u64, u64),
    /// The run on the empty store (the app's closed-loop run of the round).
    pub(super) empty: Load,
    /// The run after the preload.
    pub(super) preloaded: Load,
    /// The ceiling server's run of the scenario on the empty store and after the preload,
    /// each next to the app's: it tells Redis' share of a change from the app's.
    pub(super) ceiling: Option<(Load, Load)>,
}

/// Memory of one pending login with one app and store.
#[derive(Debug)]
pub(super) struct Memory {
    /// Short name of the app.
    pub(super) app: &'static str,
    /// `OTP_AUTH_STORE`.
    pub(super) store: &'static str,
    /// The Redis key of the pending code.
    pub(super) key: String,
    /// `MEMORY USAGE` of that key.
    pub(super) bytes: u64,
}

/// Unit tests.
#[cfg(test)]
mod tests {
    use super::Load;

    /// Numbers are read by key; a missing key, a string or a line that is not JSON is an
    /// error naming it.
    #[test]
    fn a_result_line() {
        let line = r#"{"errors":3,"ops_per_sec":1234.5,"p50_ms":0.25,"p99_ms":1,"p999_ms":2,"server_errors":0,"scenario":"flow"}"#;
        let load = Load::parse(line).unwrap();
        assert_eq!((load.errors, load.server_errors), (3, 0));
        assert_eq!(
            (load.ops_per_sec, load.p50_ms, load.p99_ms),
            (1234.5, 0.25, 1.0)
        );
        assert_eq!(load.json["scenario"], "flow");
        let missing = line.replace("\"p50_ms\":0.25,", "");
        assert!(Load::parse(&missing).unwrap_err().contains("p50_ms"));
        let string = line.replace("\"p50_ms\":0.25", "\"p50_ms\":\"x\"");
        assert!(Load::parse(&string).unwrap_err().contains("p50_ms"));
        assert!(
            Load::parse("ops_per_sec: 1")
                .unwrap_err()
                .contains("not JSON")
        );
    }
}
