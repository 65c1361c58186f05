//! The results printed and written: the table on standard output and the JSON of
//! `target/bench/bench.json`.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::SMTP_SOURCE_MESSAGES;
use super::options::Options;
use super::results::{Ceiling, Memory, OpenLoop, Preloaded, Row, Smtp};
use super::stats::{
    Summary, TARGET_FLOW, TARGET_MEMORY_BYTES, TARGET_PRELOADED, TARGET_PROTECTED, TARGET_REFRESH,
    TARGET_REQUEST_OTP, Verdict, median,
};

/// Everything measured, for the table and the JSON file.
#[derive(Debug)]
pub(super) struct Report {
    /// The options of the run.
    pub(super) options: Options,
    /// CPUs of the machine, shared by the load generator and the servers.
    pub(super) cpus: usize,
    /// The apps' rows, app/store by app/store, scenario by scenario; each pair holds the
    /// ceiling run just before the app's.
    pub(super) rows: Vec<Row>,
    /// One per app/store, measured in the first round.
    pub(super) memory: Vec<Memory>,
    /// The first round's open-loop runs (`--open-loop`).
    pub(super) open_loop: Vec<OpenLoop>,
    /// The first round's runs on a preloaded store (`--preload-sessions`).
    pub(super) preloaded: Vec<Preloaded>,
}

impl Report {
    /// The preloaded runs by scenario, app and store, in the order of the first round.
    fn preloaded_groups(&self) -> Vec<Vec<&Preloaded>> {
        let mut groups: Vec<Vec<&Preloaded>> = Vec::new();
        for r in &self.preloaded {
            match groups
                .iter_mut()
                .find(|g| (g[0].scenario, g[0].app, g[0].store) == (r.scenario, r.app, r.store))
            {
                Some(g) => g.push(r),
                None => groups.push(vec![r]),
            }
        }
        groups
    }
}

impl Preloaded {
    /// Preloaded ops/s over empty ops/s.
    pub(super) fn ratio(&self) -> f64 {
        if self.empty.ops_per_sec > 0.0 {
            self.preloaded.ops_per_sec / self.empty.ops_per_sec
        } else {
            0.0
        }
    }

    /// The ceiling server's preloaded ops/s over its empty ops/s, if it ran.
    pub(super) fn ceiling_ratio(&self) -> Option<f64> {
        let (empty, preloaded) = self.ceiling.as_ref()?;
        (empty.ops_per_sec > 0.0).then(|| preloaded.ops_per_sec / empty.ops_per_sec)
    }

    /// Redis bytes per preloaded session (`used_memory` growth over the sessions).
    pub(super) fn bytes_per_session(&self) -> u64 {
        let (before, after) = self.used_memory;
        after.saturating_sub(before) / u64::from(self.sessions.max(1))
    }
}

/// `x` rounded to `digits` decimals, as the file shows it.
fn round(x: f64, digits: i32) -> f64 {
    let scale = 10_f64.powi(digits);
    (x * scale).round() / scale
}

/// `x` rounded to 4 decimals, or `null`.
fn ratio(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |x| json!(round(x, 4)))
}

impl Summary {
    /// The medians, errors and 5xx, merged into `into`.
    fn json(&self, into: &mut Value) {
        into["median"] = json!({
            "ops_per_sec": round(self.ops_per_sec, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
        });
        into["errors"] = json!(self.errors);
        into["server_errors"] = json!(self.server_errors);
    }
}

impl Smtp {
    /// The run as a JSON object.
    fn json(self) -> Value {
        json!({
            "tool": "smtp-source",
            "mails": SMTP_SOURCE_MESSAGES,
            "seconds": round(self.seconds, 3),
            "mails_per_sec": round(self.mails_per_sec, 1),
        })
    }
}

impl Ceiling {
    /// The run as a JSON object: the line of `otp-bench load`, or that of `smtp-source`.
    fn json(&self) -> Value {
        match self {
            Self::Server(load) => load.json.clone(),
            Self::Smtp(smtp) => smtp.json(),
        }
    }
}

impl Verdict {
    /// The per-round ratios, such as `0.81 0.86 0.79`.
    pub(super) fn ratios_text(&self) -> String {
        let ratios: Vec<String> = self
            .ratios
            .iter()
            .map(|r| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")))
            .collect();
        ratios.join(" ")
    }
}

/// `unit: low–high (n runs)`, the spread of a ceiling's runs.
fn spread_text(unit: &str, runs: usize, min: f64, max: f64) -> String {
    let runs = match runs {
        1 => "1 run".to_owned(),
        n => format!("{n} runs"),
    };
    format!("{unit}: {min:.0}–{max:.0} ({runs})")
}

impl Report {
    /// The table printed at the end: the method, then one line per ceiling and per row,
    /// scenario by scenario, then the memory of a pending login.
    pub(super) fn table(&self) -> String {
        let o = &self.options;
        let mut t = String::new();
        let rounds = match o.rounds {
            1 => "1 round".to_owned(),
            n => format!("{n} rounds"),
        };
        let mut ceilings = Vec::new();
        if !o.ceiling_scenarios().is_empty() {
            ceilings.push(format!(
                "otp-bench ceiling for {} (one server per round, idle between runs)",
                o.ceiling_scenarios().join(", ")
            ));
        }
        if o.runs("request-otp") {
            ceilings.push(format!(
                "smtp-source ({SMTP_SOURCE_MESSAGES} mails) for request-otp"
            ));
        }
        let _ = writeln!(
            t,
            "\nBench: {rounds}; each starts every app/store afresh on an empty Redis and runs \
             each scenario\nas a pair: the ceiling's run, then at once the app's, with the same \
             options.\nCeilings: {}.\n{} virtual users, {} s per run after {} s of warm-up.\n\
             App rows: ops/s, p50 and p99: medians over the rounds; errors and 5xx: sums. ratio: \
             the median of the\npaired ratios (app ops/s / ops/s of the ceiling run just before \
             it), which decides PASS or MISS;\nratios: each round's, in order. Ceiling rows: \
             medians and sums over all the ceiling runs of the\nscenario; ratios: their lowest \
             and highest ops/s, to show the noise.\nThe load generator and the servers share \
             this machine's {} CPUs (no pinning): every run, the\nceiling's included, spends \
             part of the CPU on the client.\n",
            ceilings.join(";\n"),
            o.concurrency,
            o.seconds,
            o.warmup,
            self.cpus
        );
        let _ = writeln!(
            t,
            "{:<12} {:<8} {:<6} {:>10} {:>8} {:>8} {:>7} {:>5} {:>6}  {:<11}  ratios",
            "scenario",
            "app",
            "store",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "5xx",
            "ratio",
            "target"
        );
        let line = |t: &mut String, names: [&str; 3], s: &Summary, ratio: &str, rest: &str| {
            let _ = writeln!(
                t,
                "{:<12} {:<8} {:<6} {:>10.1} {:>8.3} {:>8.3} {:>7} {:>5} {ratio:>6}  {rest}",
                names[0],
                names[1],
                names[2],
                s.ops_per_sec,
                s.p50_ms,
                s.p99_ms,
                s.errors,
                s.server_errors,
            );
        };
        for &scenario in &o.scenarios {
            if let Some(s) = self.ceiling_summary(scenario) {
                let spread = spread_text("ops/s", s.runs, s.min_ops_per_sec, s.max_ops_per_sec);
                let rest = format!("{:<11}  {spread}", "(ceiling)");
                line(&mut t, [scenario, "ceiling", "redis"], &s, "1.00", &rest);
            }
            if scenario == "request-otp"
                && let Some(s) = self.smtp_summary()
            {
                let _ = writeln!(
                    t,
                    "{:<12} {:<8} {:<6} {:>10.1} {:>8} {:>8} {:>7} {:>5} {:>6}  {:<11}  {}",
                    "smtp-source",
                    "postfix",
                    "-",
                    s.mails_per_sec,
                    "-",
                    "-",
                    "-",
                    "-",
                    "1.00",
                    "(ceiling)",
                    spread_text("mails/s", s.runs, s.min_mails_per_sec, s.max_mails_per_sec),
                );
            }
            for row in self.rows.iter().filter(|row| row.scenario == scenario) {
                let v = row.verdict();
                let ratio = v
                    .ratio
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
                let target = format!(
                    ">= {:.1} {}",
                    v.target,
                    if v.pass() { "PASS" } else { "MISS" }
                );
                let rest = format!("{target:<11}  {}", v.ratios_text());
                line(
                    &mut t,
                    [row.scenario, row.app, row.store],
                    &row.summary(),
                    &ratio,
                    &rest,
                );
            }
        }
        let _ = writeln!(
            t,
            "\nRedis memory per pending login (MEMORY USAGE of the code key after one \
             request-otp, first round),\ntarget <= {TARGET_MEMORY_BYTES} bytes:"
        );
        for m in &self.memory {
            let verdict = if m.pass() { "PASS" } else { "MISS" };
            let _ = writeln!(
                t,
                "  {:<5} {:<6} {:>5} bytes  {verdict}  ({})",
                m.app, m.store, m.bytes, m.key
            );
        }
        if !self.open_loop.is_empty() {
            let _ = writeln!(
                t,
                "\nOpen loop (first round): each scenario at a share of the ops/s its closed \
                 loop just reached,\nlatency from each operation's due time:\n{:<12} {:<5} \
                 {:<6} {:>4} {:>10} {:>10} {:>8} {:>8} {:>8} {:>7}",
                "scenario",
                "app",
                "store",
                "%",
                "rate",
                "ops/s",
                "p50 ms",
                "p99 ms",
                "p999 ms",
                "errors"
            );
            for r in &self.open_loop {
                let _ = writeln!(
                    t,
                    "{:<12} {:<5} {:<6} {:>4} {:>10.1} {:>10.1} {:>8.3} {:>8.3} {:>8.3} {:>7}",
                    r.scenario,
                    r.app,
                    r.store,
                    r.percent,
                    r.rate,
                    r.load.ops_per_sec,
                    r.load.p50_ms,
                    r.load.p99_ms,
                    r.load.p999_ms,
                    r.load.errors
                );
            }
        }
        if !self.preloaded.is_empty() {
            let _ = writeln!(
                t,
                "\nPreloaded store (every round): the closed loop on the empty store, then at \
                 once again after\nwriting live sessions into Redis; ratio = the median over the \
                 rounds of preloaded ops/s / empty\nops/s, target >= {TARGET_PRELOADED}; bytes: \
                 Redis used_memory growth per session (first round); ceiling: the same ratio \
                 for the ceiling\nserver, run next to the app on the same store (its EXISTS \
                 on the preloaded keyspace):\n{:<10} {:<5} {:<6} \
                 {:>9} {:>10} {:>10} {:>8} {:>6}  {:<10}  {:>5}  {:>7}  ratios",
                "scenario",
                "app",
                "store",
                "sessions",
                "empty",
                "preloaded",
                "p99 ms",
                "ratio",
                "target",
                "bytes",
                "ceiling"
            );
            for group in self.preloaded_groups() {
                let first = group[0];
                let ratios: Vec<f64> = group.iter().map(|r| r.ratio()).collect();
                let ratio = median(&ratios).unwrap_or(0.0);
                let pass = if ratio >= TARGET_PRELOADED {
                    "PASS"
                } else {
                    "MISS"
                };
                let med = |f: fn(&Preloaded) -> f64| {
                    median(&group.iter().map(|r| f(r)).collect::<Vec<_>>()).unwrap_or(0.0)
                };
                let texts: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
                let ceilings: Vec<f64> = group.iter().filter_map(|r| r.ceiling_ratio()).collect();
                let ceiling =
                    median(&ceilings).map_or_else(|| "-".to_owned(), |c| format!("{c:.2}"));
                let _ = writeln!(
                    t,
                    "{:<10} {:<5} {:<6} {:>9} {:>10.1} {:>10.1} {:>8.3} {:>6.2}  {:<10}  {:>5}  {:>7}  {}",
                    first.scenario,
                    first.app,
                    first.store,
                    first.sessions,
                    med(|r| r.empty.ops_per_sec),
                    med(|r| r.preloaded.ops_per_sec),
                    med(|r| r.preloaded.p99_ms),
                    ratio,
                    format!(">= {TARGET_PRELOADED} {pass}"),
                    first.bytes_per_session(),
                    ceiling,
                    texts.join(" ")
                );
            }
        }
        t
    }

    /// The contents of `bench.json`: options, method, targets, the ceiling summaries, every
    /// row with its raw pairs, and the memory of a pending login.
    pub(super) fn json(&self) -> String {
        let o = &self.options;
        let only: Vec<String> = o
            .targets
            .iter()
            .map(|t| format!("{}/{}", t.app, t.store))
            .collect();
        let smtp_source = self.smtp_summary().map_or(Value::Null, |s| {
            json!({
                "mails": SMTP_SOURCE_MESSAGES,
                "runs": s.runs,
                "median": {
                    "seconds": round(s.seconds, 3),
                    "mails_per_sec": round(s.mails_per_sec, 1),
                },
                "min_mails_per_sec": round(s.min_mails_per_sec, 1),
                "max_mails_per_sec": round(s.max_mails_per_sec, 1),
            })
        });
        // Every ceiling run of each scenario summed up; the runs are in the pairs below.
        let ceiling: Vec<Value> = o
            .ceiling_scenarios()
            .into_iter()
            .filter_map(|scenario| {
                let s = self.ceiling_summary(scenario)?;
                let mut c = json!({
                    "scenario": scenario,
                    "runs": s.runs,
                    "min_ops_per_sec": round(s.min_ops_per_sec, 1),
                    "max_ops_per_sec": round(s.max_ops_per_sec, 1),
                });
                s.json(&mut c);
                Some(c)
            })
            .collect();
        let runs: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let v = row.verdict();
                let pairs: Vec<Value> = row
                    .pairs
                    .iter()
                    .zip(1..)
                    .map(|(pair, round)| {
                        json!({
                            "round": round,
                            "ratio": ratio(pair.ratio()),
                            "ceiling": pair.ceiling.json(),
                            "app": pair.app.json,
                        })
                    })
                    .collect();
                let mut r = json!({
                    "scenario": row.scenario,
                    "app": row.app,
                    "store": row.store,
                    "ratio": ratio(v.ratio),
                    "ratios": v.ratios.iter().map(|r| ratio(*r)).collect::<Vec<_>>(),
                    "target": v.target,
                    "pass": v.pass(),
                    "pairs": pairs,
                });
                row.summary().json(&mut r);
                r
            })
            .collect();
        let memory: Vec<Value> = self
            .memory
            .iter()
            .map(|m| {
                json!({
                    "app": m.app,
                    "store": m.store,
                    "key": m.key,
                    "bytes": m.bytes,
                    "pass": m.pass(),
                })
            })
            .collect();
        let open_loop: Vec<Value> = self
            .open_loop
            .iter()
            .map(|r| {
                json!({
                    "scenario": r.scenario,
                    "app": r.app,
                    "store": r.store,
                    "percent": r.percent,
                    "rate": round(r.rate, 1),
                    "run": r.load.json,
                })
            })
            .collect();
        let preloaded: Vec<Value> = self
            .preloaded
            .iter()
            .map(|r| {
                json!({
                    "scenario": r.scenario,
                    "app": r.app,
                    "store": r.store,
                    "sessions": r.sessions,
                    "used_memory_before": r.used_memory.0,
                    "used_memory_after": r.used_memory.1,
                    "bytes_per_session": r.bytes_per_session(),
                    "ratio": round(r.ratio(), 4),
                    "empty": r.empty.json,
                    "preloaded": r.preloaded.json,
                    "ceiling_empty": r.ceiling.as_ref().map(|c| &c.0.json),
                    "ceiling_preloaded": r.ceiling.as_ref().map(|c| &c.1.json),
                })
            })
            .collect();
        let report = json!({
            "machine": {"cpus": self.cpus, "client_and_server_share_the_machine": true},
            "options": {
                "seconds": o.seconds,
                "concurrency": o.concurrency,
                "warmup": o.warmup,
                "rounds": o.rounds,
                "only": only,
                "scenarios": o.scenarios,
            },
            "method": "paired: each app run follows at once a ceiling run of the same scenario \
                       (otp-bench ceiling; request-otp: smtp-source); ratio = median over the \
                       rounds of app ops/s / that ceiling's ops/s",
            "targets": {
                "protected": TARGET_PROTECTED,
                "flow": TARGET_FLOW,
                "refresh": TARGET_REFRESH,
                "request_otp": TARGET_REQUEST_OTP,
                "memory_bytes": TARGET_MEMORY_BYTES,
                "preloaded": TARGET_PRELOADED,
            },
            "smtp_source": smtp_source,
            "ceiling": ceiling,
            "runs": runs,
            "memory_per_pending_login": memory,
            "open_loop": open_loop,
            "preloaded": preloaded,
            "server_errors": self.server_errors(),
        });
        // A tree of maps, strings and finite numbers: it always serializes.
        let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// Unit tests.
#[cfg(test)]
mod tests {
    use crate::bench::fixtures::report;

    /// The table's layout and order, and a valid JSON file with every pair.
    #[test]
    fn table_and_json() {
        let report = report();
        let table = report.table();
        assert!(table.contains("3 rounds"), "{table}");
        assert!(table.contains("paired ratios"), "{table}");
        assert!(table.contains("ops/s: 50–400 (6 runs)"), "{table}");
        assert!(table.contains("mails/s: 50–125 (6 runs)"), "{table}");
        assert!(table.contains("0.90 0.75 0.93"), "{table}");
        assert!(table.contains(">= 0.9 MISS  0.75 0.90 0.50"), "{table}");
        assert!(
            table.lines().all(|line| line.chars().count() <= 130),
            "{table}"
        );
        // Ceiling, then smtp-source, then the apps, scenario by scenario.
        let first = |prefix: &str| table.lines().position(|l| l.starts_with(prefix)).unwrap();
        assert!(first("protected    ceiling") < first("protected    axum"));
        assert!(first("flow         axum") > first("flow         ceiling"));
        assert!(first("smtp-source") < first("request-otp  axum"));
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(json["options"]["rounds"], 3);
        let runs = json["runs"].as_array().unwrap();
        let ratios = |i: usize| runs[i]["ratios"].clone();
        assert!(
            (0..runs.len()).any(|i| ratios(i) == serde_json::json!([0.9, 0.75, 0.9333])),
            "{json}"
        );
        assert!(
            (0..runs.len()).any(|i| ratios(i) == serde_json::json!([null, 0.5, 0.75])),
            "{json}"
        );
        let pairs: Vec<&serde_json::Value> = runs
            .iter()
            .flat_map(|r| r["pairs"].as_array().unwrap())
            .collect();
        assert_eq!(pairs.len(), 18, "{json}");
        assert!(
            pairs.iter().any(|p| p["round"] == 3 && p["ratio"] == 0.2),
            "{json}"
        );
        assert!(
            pairs.iter().any(|p| p["ceiling"]["tool"] == "smtp-source"),
            "{json}"
        );
        // The open loop and the preloaded store, in the table and in the JSON.
        assert!(
            table.contains("protected    axum  redis    80       72.0"),
            "{table}"
        );
        assert!(
            table.contains("0.95  >= 0.9 PASS    250     0.80  0.95"),
            "{table}"
        );
        assert!(
            json["open_loop"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["percent"] == 80 && r["rate"] == 72.0),
            "{json}"
        );
        let preloaded = &json["preloaded"][0];
        assert_eq!(preloaded["bytes_per_session"], 250, "{json}");
        assert_eq!(preloaded["ratio"], 0.95, "{json}");
        assert!(preloaded["ceiling_preloaded"].is_object(), "{json}");

        // Without the ceiling scenarios or request-otp, their rows and sections are empty.
        let mut only_request_otp = report;
        only_request_otp.options.scenarios = vec!["request-otp"];
        only_request_otp
            .rows
            .retain(|row| row.scenario == "request-otp");
        let table = only_request_otp.table();
        assert!(!table.contains("otp-bench ceiling"), "{table}");
        assert!(table.contains("smtp-source ("), "{table}");
        let json: serde_json::Value = serde_json::from_str(&only_request_otp.json()).unwrap();
        assert_eq!(json["ceiling"], serde_json::json!([]), "{json}");
    }
}
