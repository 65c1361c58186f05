//! The results printed and written: the table on standard output and the hand-rolled
//! JSON of `target/bench/bench.json`.

use std::fmt::Write as _;

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

impl Summary {
    /// The medians, errors and 5xx, as JSON members.
    fn json(&self) -> String {
        format!(
            "\"median\": {{\"ops_per_sec\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}}}, \
             \"errors\": {}, \"server_errors\": {}",
            self.ops_per_sec, self.p50_ms, self.p99_ms, self.errors, self.server_errors
        )
    }
}

impl Smtp {
    /// The run as a JSON object.
    fn json(self) -> String {
        format!(
            "{{\"tool\": \"smtp-source\", \"mails\": {SMTP_SOURCE_MESSAGES}, \"seconds\": {:.3}, \
             \"mails_per_sec\": {:.1}}}",
            self.seconds, self.mails_per_sec
        )
    }
}

impl Ceiling {
    /// The run as a JSON object: the line of `otp-bench load`, or that of `smtp-source`.
    fn json(&self) -> String {
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
            .map(|t| quote(&format!("{}/{}", t.app, t.store)))
            .collect();
        let scenarios: Vec<String> = o.scenarios.iter().map(|s| quote(s)).collect();
        let smtp_source = self.smtp_summary().map_or_else(
            || "null".to_owned(),
            |s| {
                format!(
                    "{{\"mails\": {SMTP_SOURCE_MESSAGES}, \"runs\": {}, \"median\": \
                     {{\"seconds\": {:.3}, \"mails_per_sec\": {:.1}}}, \"min_mails_per_sec\": \
                     {:.1}, \"max_mails_per_sec\": {:.1}}}",
                    s.runs, s.seconds, s.mails_per_sec, s.min_mails_per_sec, s.max_mails_per_sec
                )
            },
        );
        let mut j = String::new();
        let _ = write!(
            j,
            "{{\n  \"machine\": {{\"cpus\": {}, \"client_and_server_share_the_machine\": true}},\n  \
             \"options\": {{\"seconds\": {}, \"concurrency\": {}, \"warmup\": {}, \"rounds\": {}, \
             \"only\": [{}], \"scenarios\": [{}]}},\n  \
             \"method\": {},\n  \
             \"targets\": {{\"protected\": {TARGET_PROTECTED}, \"flow\": {TARGET_FLOW}, \
             \"refresh\": {TARGET_REFRESH}, \"request_otp\": {TARGET_REQUEST_OTP}, \
             \"memory_bytes\": {TARGET_MEMORY_BYTES}, \"preloaded\": {TARGET_PRELOADED}}},\n  \
             \"smtp_source\": {smtp_source},\n",
            self.cpus,
            o.seconds,
            o.concurrency,
            o.warmup,
            o.rounds,
            only.join(", "),
            scenarios.join(", "),
            quote(
                "paired: each app run follows at once a ceiling run of the same scenario \
                 (otp-bench ceiling; request-otp: smtp-source); ratio = median over the rounds \
                 of app ops/s / that ceiling's ops/s"
            ),
        );
        // Every ceiling run of each scenario summed up; the runs are in the pairs below.
        j.push_str("  \"ceiling\": [\n");
        let ceiling: Vec<String> = o
            .ceiling_scenarios()
            .into_iter()
            .filter_map(|scenario| {
                let s = self.ceiling_summary(scenario)?;
                Some(format!(
                    "    {{\"scenario\": {}, \"runs\": {}, {}, \"min_ops_per_sec\": {:.1}, \
                     \"max_ops_per_sec\": {:.1}}}",
                    quote(scenario),
                    s.runs,
                    s.json(),
                    s.min_ops_per_sec,
                    s.max_ops_per_sec
                ))
            })
            .collect();
        j.push_str(&ceiling.join(",\n"));
        j.push_str("\n  ],\n  \"runs\": [\n");
        let number = |r: Option<f64>| r.map_or_else(|| "null".to_owned(), |r| format!("{r:.4}"));
        let runs: Vec<String> = self
            .rows
            .iter()
            .map(|row| {
                let v = row.verdict();
                let ratios: Vec<String> = v.ratios.iter().map(|r| number(*r)).collect();
                let pairs: Vec<String> = row
                    .pairs
                    .iter()
                    .zip(1..)
                    .map(|(pair, round)| {
                        format!(
                            "      {{\"round\": {round}, \"ratio\": {}, \"ceiling\": {}, \
                             \"app\": {}}}",
                            number(pair.ratio()),
                            pair.ceiling.json(),
                            pair.app.json
                        )
                    })
                    .collect();
                format!(
                    "    {{\"scenario\": {}, \"app\": {}, \"store\": {}, \"ratio\": {}, \
                     \"ratios\": [{}], \"target\": {}, \"pass\": {}, {}, \"pairs\": [\n{}\n    ]}}",
                    quote(row.scenario),
                    quote(row.app),
                    quote(row.store),
                    number(v.ratio),
                    ratios.join(", "),
                    v.target,
                    v.pass(),
                    row.summary().json(),
                    pairs.join(",\n")
                )
            })
            .collect();
        j.push_str(&runs.join(",\n"));
        j.push_str("\n  ],\n  \"memory_per_pending_login\": [\n");
        let memory: Vec<String> = self
            .memory
            .iter()
            .map(|m| {
                format!(
                    "    {{\"app\": {}, \"store\": {}, \"key\": {}, \"bytes\": {}, \"pass\": {}}}",
                    quote(m.app),
                    quote(m.store),
                    quote(&m.key),
                    m.bytes,
                    m.pass()
                )
            })
            .collect();
        j.push_str(&memory.join(",\n"));
        j.push_str("\n  ],\n  \"open_loop\": [\n");
        let open: Vec<String> = self
            .open_loop
            .iter()
            .map(|r| {
                format!(
                    "    {{\"scenario\": {}, \"app\": {}, \"store\": {}, \"percent\": {}, \
                     \"rate\": {:.1}, \"run\": {}}}",
                    quote(r.scenario),
                    quote(r.app),
                    quote(r.store),
                    r.percent,
                    r.rate,
                    r.load.json
                )
            })
            .collect();
        j.push_str(&open.join(",\n"));
        j.push_str("\n  ],\n  \"preloaded\": [\n");
        let pre: Vec<String> = self
            .preloaded
            .iter()
            .map(|r| {
                format!(
                    "    {{\"scenario\": {}, \"app\": {}, \"store\": {}, \"sessions\": {}, \
                     \"used_memory_before\": {}, \"used_memory_after\": {}, \
                     \"bytes_per_session\": {}, \"ratio\": {:.4}, \"empty\": {}, \
                     \"preloaded\": {}, \"ceiling_empty\": {}, \"ceiling_preloaded\": {}}}",
                    quote(r.scenario),
                    quote(r.app),
                    quote(r.store),
                    r.sessions,
                    r.used_memory.0,
                    r.used_memory.1,
                    r.bytes_per_session(),
                    r.ratio(),
                    r.empty.json,
                    r.preloaded.json,
                    r.ceiling.as_ref().map_or("null", |c| c.0.json.as_str()),
                    r.ceiling.as_ref().map_or("null", |c| c.1.json.as_str())
                )
            })
            .collect();
        j.push_str(&pre.join(",\n"));
        let _ = write!(
            j,
            "\n  ],\n  \"server_errors\": {}\n}}\n",
            self.server_errors()
        );
        j
    }
}

/// A JSON string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Unit tests.
#[cfg(test)]
mod tests {
    use super::quote;
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
        let json = report.json();
        assert_eq!(valid_json(&json), Ok(()), "{json}");
        assert!(json.contains("\"rounds\": 3"), "{json}");
        assert!(
            json.contains("\"ratios\": [0.9000, 0.7500, 0.9333]"),
            "{json}"
        );
        assert!(
            json.contains("\"ratios\": [null, 0.5000, 0.7500]"),
            "{json}"
        );
        assert!(json.contains("\"round\": 3, \"ratio\": 0.2000"), "{json}");
        assert!(json.contains("\"tool\": \"smtp-source\""), "{json}");
        assert_eq!(json.matches("\"round\": ").count(), 18, "{json}");
        // The open loop and the preloaded store, in the table and in the JSON.
        assert!(
            table.contains("protected    axum  redis    80       72.0"),
            "{table}"
        );
        assert!(
            table.contains("0.95  >= 0.9 PASS    250     0.80  0.95"),
            "{table}"
        );
        assert!(json.contains("\"percent\": 80, \"rate\": 72.0"), "{json}");
        assert!(
            json.contains("\"bytes_per_session\": 250, \"ratio\": 0.9500"),
            "{json}"
        );
        assert!(json.contains("\"ceiling_preloaded\": {"), "{json}");

        // Without the ceiling scenarios or request-otp, their rows and sections are empty.
        let mut only_request_otp = report;
        only_request_otp.options.scenarios = vec!["request-otp"];
        only_request_otp
            .rows
            .retain(|row| row.scenario == "request-otp");
        let table = only_request_otp.table();
        assert!(!table.contains("otp-bench ceiling"), "{table}");
        assert!(table.contains("smtp-source ("), "{table}");
        let json = only_request_otp.json();
        assert_eq!(valid_json(&json), Ok(()), "{json}");
        assert!(json.contains("\"ceiling\": [\n\n  ]"), "{json}");
    }

    /// Checks that `text` is one JSON value (RFC 8259 grammar; strings not unescaped).
    fn valid_json(text: &str) -> Result<(), String> {
        /// Skips white space.
        fn ws(b: &[u8], i: &mut usize) {
            while b.get(*i).is_some_and(|c| b" \t\r\n".contains(c)) {
                *i += 1;
            }
        }
        /// Skips white space, then `c`; an error if something else is there.
        fn expect(b: &[u8], i: &mut usize, c: u8) -> Result<(), String> {
            ws(b, i);
            if b.get(*i) == Some(&c) {
                *i += 1;
                Ok(())
            } else {
                Err(format!("expected `{}` at byte {i}", char::from(c)))
            }
        }
        /// Skips a string (escapes skipped, not checked).
        fn string(b: &[u8], i: &mut usize) -> Result<(), String> {
            expect(b, i, b'"')?;
            loop {
                match b.get(*i) {
                    None => return Err("unterminated string".to_owned()),
                    Some(b'"') => break,
                    Some(b'\\') => *i += 2,
                    Some(c) if *c < 0x20 => return Err(format!("control in string at {i}")),
                    Some(_) => *i += 1,
                }
            }
            *i += 1;
            Ok(())
        }
        /// Skips one value: object, array, string, number, `true`, `false` or `null`.
        fn value(b: &[u8], i: &mut usize) -> Result<(), String> {
            ws(b, i);
            let (open, close) = match b.get(*i) {
                Some(b'{') => (b'{', b'}'),
                Some(b'[') => (b'[', b']'),
                Some(b'"') => return string(b, i),
                _ => {
                    let start = *i;
                    while b
                        .get(*i)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c))
                    {
                        *i += 1;
                    }
                    let word = std::str::from_utf8(&b[start..*i]).unwrap();
                    let number = word.parse::<f64>().is_ok_and(f64::is_finite)
                        && !word.starts_with(['+', '.'])
                        && !word.contains("inf")
                        && !word.contains("NaN");
                    return if number || ["true", "false", "null"].contains(&word) {
                        Ok(())
                    } else {
                        Err(format!("bad value `{word}` at byte {start}"))
                    };
                }
            };
            *i += 1;
            ws(b, i);
            if b.get(*i) == Some(&close) {
                *i += 1;
                return Ok(());
            }
            loop {
                if open == b'{' {
                    ws(b, i);
                    string(b, i)?;
                    expect(b, i, b':')?;
                }
                value(b, i)?;
                ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(c) if *c == close => {
                        *i += 1;
                        return Ok(());
                    }
                    _ => {
                        return Err(format!(
                            "expected `,` or `{}` at byte {i}",
                            char::from(close)
                        ));
                    }
                }
            }
        }
        let b = text.as_bytes();
        let mut i = 0;
        value(b, &mut i)?;
        ws(b, &mut i);
        if i == b.len() {
            Ok(())
        } else {
            Err(format!("trailing text at byte {i}"))
        }
    }

    /// The checker of [`valid_json`] accepts JSON and refuses near misses.
    #[test]
    fn json_checker() {
        assert_eq!(
            valid_json(r#"{"a": [1, -2.5e3, null, "x\"y"], "b": {}}"#),
            Ok(())
        );
        for bad in [
            "{\"a\": 1,}",
            "[1 2]",
            "{\"a\" 1}",
            "[NaN]",
            "[inf]",
            "{} x",
            "[.5]",
        ] {
            assert!(valid_json(bad).is_err(), "{bad}");
        }
    }

    /// Quotes and backslashes are escaped.
    #[test]
    fn quoting() {
        assert_eq!(quote("otp_{ab\"c}"), "\"otp_{ab\\\"c}\"");
    }
}
