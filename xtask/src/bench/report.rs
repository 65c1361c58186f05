//! What the runs measured, summed up: medians and ranges, paired ratios and their verdicts
//! against the targets, the table on standard output and `target/bench/bench.json`.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use super::{Options, SMTP_SOURCE_MESSAGES};

/// The ratio to its ceiling that each scenario aims at (`refresh`, one rotation script
/// against one `EXISTS`: the flow's target).
const TARGETS: [(&str, f64); 4] = [
    ("protected", 0.9),
    ("flow", 0.7),
    ("refresh", 0.7),
    ("request-otp", 0.8),
];
/// The least ratio of a preloaded store's ops/s to the empty store's.
const TARGET_PRELOADED: f64 = 0.9;
/// The most bytes of Redis that one pending login may take.
pub(super) const TARGET_MEMORY_BYTES: u64 = 192;

/// The JSON line of an `otp-bench load` run, or the JSON of an `smtp-source` run; copied
/// into `bench.json`.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub(super) struct Load(Value);

impl Load {
    /// Reads a result line of `otp-bench load`; an error if it is not JSON or a number is
    /// missing.
    pub(super) fn parse(line: &str) -> Result<Self, String> {
        let json: Value =
            serde_json::from_str(line).map_err(|e| format!("`{line}` is not JSON: {e}"))?;
        let mut keys = "ops_per_sec p50_ms p99_ms p999_ms errors server_errors".split(' ');
        match keys.find(|k| !json.get(*k).is_some_and(Value::is_number)) {
            Some(key) => Err(format!("no number `{key}` in `{line}`")),
            None => Ok(Self(json)),
        }
    }

    /// An `smtp-source` run of [`SMTP_SOURCE_MESSAGES`] mails that took `seconds`.
    pub(super) fn smtp(seconds: f64) -> Self {
        let mails_per_sec = round(f64::from(SMTP_SOURCE_MESSAGES) / seconds, 1);
        let (mails, seconds) = (SMTP_SOURCE_MESSAGES, round(seconds, 3));
        let tool = "smtp-source";
        Self(
            json!({"tool": tool, "mails": mails, "seconds": seconds, "mails_per_sec": mails_per_sec}),
        )
    }

    /// A number of the run (0 when it has none).
    fn get(&self, key: &str) -> f64 {
        self.0[key].as_f64().unwrap_or(0.0)
    }

    /// Operations (or mails) per second.
    pub(super) fn ops(&self) -> f64 {
        self.get(if self.0["tool"].is_null() {
            "ops_per_sec"
        } else {
            "mails_per_sec"
        })
    }

    /// Records the server's CPU time over the run (`ticks` of 10 ms over `seconds`,
    /// warm-up included) as microseconds per operation, the warm-up counted at the
    /// measured rate.
    pub(super) fn add_server_cpu(&mut self, ticks: u64, seconds: u32) {
        let ops = self.ops() * f64::from(seconds);
        if ops > 0.0 {
            let us = ticks as f64 * 10_000.0 / ops;
            self.0["server_cpu_us_per_op"] = json!(round(us, 1));
        }
    }

    fn count(&self, key: &str) -> u64 {
        self.0[key].as_u64().unwrap_or(0)
    }
}

/// `a`'s ops/s over `b`'s (`None` if `b` did nothing).
pub(super) fn ratio_of(a: &Load, b: &Load) -> Option<f64> {
    (b.ops() > 0.0).then(|| a.ops() / b.ops())
}

/// One app run and the ceiling run just before it, with the same scenario and options.
#[derive(Debug, Clone)]
pub(super) struct Pair {
    pub(super) ceiling: Load,
    pub(super) app: Load,
}

/// One row of the table: a scenario against an app and store, with one pair per round.
#[derive(Debug)]
pub(super) struct Row {
    scenario: &'static str,
    app: &'static str,
    store: &'static str,
    pub(super) pairs: Vec<Pair>,
}

impl Row {
    /// Round by round, the app's ops/s over the ceiling run's just before it.
    fn ratios(&self) -> Vec<Option<f64>> {
        self.pairs
            .iter()
            .map(|p| ratio_of(&p.app, &p.ceiling))
            .collect()
    }

    /// The median of the ratios, which decides PASS or MISS against the target.
    fn ratio(&self) -> Option<f64> {
        median(self.ratios().into_iter().flatten())
    }

    fn target(&self) -> f64 {
        TARGETS
            .iter()
            .find(|(s, _)| *s == self.scenario)
            .map_or(0.8, |(_, t)| *t)
    }

    fn pass(&self) -> bool {
        self.ratio().is_some_and(|ratio| ratio >= self.target())
    }
}

/// An app's scenario in an open loop at a share of the ops/s its closed loop reached.
#[derive(Debug, Serialize)]
pub(super) struct OpenLoop {
    pub(super) scenario: &'static str,
    pub(super) app: &'static str,
    pub(super) store: &'static str,
    pub(super) percent: u32,
    /// The rate asked for, in operations per second.
    pub(super) rate: f64,
    pub(super) run: Load,
}

/// An app's scenario on an empty store and again with sessions preloaded, each run next to
/// the ceiling server's on the same store: it tells Redis' share of a change from the app's.
#[derive(Debug, Serialize)]
pub(super) struct Preloaded {
    pub(super) scenario: &'static str,
    pub(super) app: &'static str,
    pub(super) store: &'static str,
    pub(super) sessions: u32,
    pub(super) used_memory_before: u64,
    pub(super) used_memory_after: u64,
    pub(super) bytes_per_session: u64,
    /// Preloaded ops/s over empty ops/s.
    pub(super) ratio: f64,
    pub(super) empty: Load,
    pub(super) preloaded: Load,
    pub(super) ceiling_empty: Option<Load>,
    pub(super) ceiling_preloaded: Option<Load>,
}

/// Memory of one pending login with one app and store: `MEMORY USAGE` of its code key.
#[derive(Debug, Serialize)]
pub(super) struct Memory {
    pub(super) app: &'static str,
    pub(super) store: &'static str,
    pub(super) key: String,
    pub(super) bytes: u64,
    pub(super) pass: bool,
}

/// Runs summed up: medians (of ops/s, latencies and, for `smtp-source`, seconds), the range
/// of ops/s, errors and 5xx summed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    runs: usize,
    ops: f64,
    p50: f64,
    p99: f64,
    seconds: f64,
    min: f64,
    max: f64,
    errors: u64,
    e5xx: u64,
}

impl Summary {
    fn of<'l>(loads: impl Iterator<Item = &'l Load>) -> Self {
        let loads: Vec<&Load> = loads.collect();
        let med = |key| median(loads.iter().map(|l| l.get(key))).unwrap_or(0.0);
        let ops = || loads.iter().map(|l| l.ops());
        Self {
            runs: loads.len(),
            ops: median(ops()).unwrap_or(0.0),
            p50: med("p50_ms"),
            p99: med("p99_ms"),
            seconds: med("seconds"),
            min: ops().reduce(f64::min).unwrap_or(0.0),
            max: ops().reduce(f64::max).unwrap_or(0.0),
            errors: loads.iter().map(|l| l.count("errors")).sum(),
            e5xx: loads.iter().map(|l| l.count("server_errors")).sum(),
        }
    }

    /// `fields` with the medians, errors and 5xx.
    fn json(&self, mut fields: Value) -> Value {
        let (ops, p50, p99) = (round(self.ops, 1), round(self.p50, 3), round(self.p99, 3));
        fields["median"] = json!({"ops_per_sec": ops, "p50_ms": p50, "p99_ms": p99});
        fields["errors"] = json!(self.errors);
        fields["server_errors"] = json!(self.e5xx);
        fields
    }

    /// A line of the table up to the ratio.
    fn line(&self, scenario: &str, app: &str, store: &str, ratio: &str) -> String {
        let (ops, p50, p99, errors, e5xx) = (self.ops, self.p50, self.p99, self.errors, self.e5xx);
        format!(
            "{scenario:<12} {app:<8} {store:<6} {ops:>10.1} {p50:>8.3} {p99:>8.3} {errors:>7} \
             {e5xx:>5} {ratio:>6}"
        )
    }

    /// `unit: low–high (n runs)`, the spread of a ceiling's runs.
    fn spread(&self, unit: &str) -> String {
        let Self { min, max, runs, .. } = self;
        let s = if *runs == 1 { "" } else { "s" };
        format!("{unit}: {min:.0}–{max:.0} ({runs} run{s})")
    }
}

/// The median of `values` (with an even count, the mean of the middle two).
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// `x` rounded to `digits` decimals, as the file shows it.
pub(super) fn round(x: f64, digits: i32) -> f64 {
    let scale = 10_f64.powi(digits);
    (x * scale).round() / scale
}

/// A ratio with 2 decimals, or `-`.
fn ratio_text(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "MISS" }
}

/// Everything measured, for the table and the JSON file.
#[derive(Debug, Default)]
pub(super) struct Report {
    options: Options,
    /// CPUs of the machine, shared by the load generator and the servers.
    cpus: usize,
    /// App/store by app/store, scenario by scenario.
    pub(super) rows: Vec<Row>,
    /// One per app/store, measured in the first round.
    pub(super) memory: Vec<Memory>,
    pub(super) open_loop: Vec<OpenLoop>,
    pub(super) preloaded: Vec<Preloaded>,
}

impl Report {
    /// A report with a row, and no pair yet, for each selected scenario of each target.
    pub(super) fn new(options: Options, cpus: usize) -> Self {
        let mut rows = Vec::new();
        for &(app, store) in &options.targets {
            for &scenario in &options.scenarios {
                let pairs = Vec::new();
                rows.push(Row {
                    scenario,
                    app,
                    store,
                    pairs,
                });
            }
        }
        Self {
            options,
            cpus,
            rows,
            ..Self::default()
        }
    }

    /// The targets as `app/store`.
    pub(super) fn only(&self) -> Vec<String> {
        let only = self.options.targets.iter().map(|(a, s)| format!("{a}/{s}"));
        only.collect()
    }

    /// Every ceiling run of `scenario` (`smtp-source` for `request-otp`), all apps and
    /// rounds, summed up; `None` if there was none.
    fn ceiling(&self, scenario: &str) -> Option<Summary> {
        let rows = self.rows.iter().filter(|row| row.scenario == scenario);
        let summary = Summary::of(rows.flat_map(|row| &row.pairs).map(|pair| &pair.ceiling));
        (summary.runs > 0).then_some(summary)
    }

    /// The 5xx answers of every run, the ceiling's included.
    pub(super) fn server_errors(&self) -> u64 {
        let pairs = self.rows.iter().flat_map(|row| &row.pairs);
        let loads = pairs.flat_map(|p| [&p.app, &p.ceiling]);
        loads.map(|load| load.count("server_errors")).sum()
    }

    /// The table printed at the end: the method, then one line per ceiling and per row,
    /// scenario by scenario, then the memory of a pending login, the open loop and the
    /// preloaded store.
    pub(super) fn table(&self) -> String {
        let o = &self.options;
        let mut ceilings = Vec::new();
        if !o.ceiling_scenarios().is_empty() {
            let scenarios = o.ceiling_scenarios().join(", ");
            ceilings.push(format!("otp-bench ceiling ({scenarios}; one per round)"));
        }
        if o.runs("request-otp") {
            let n = SMTP_SOURCE_MESSAGES;
            ceilings.push(format!("smtp-source, {n} mails (request-otp)"));
        }
        let ceilings = ceilings.join(", ");
        let (rounds, users, seconds, warmup, cpus) =
            (o.rounds, o.concurrency, o.seconds, o.warmup, self.cpus);
        let mut t = format!(
            "\nBench: {rounds} round(s); {users} virtual users, {seconds} s per run after \
             {warmup} s of warm-up; client and servers share {cpus} CPUs.\nEach app run \
             follows at once its ceiling's run: {ceilings}.\nApp rows: medians over the \
             rounds; ratio: the median of the paired ratios (app / ceiling ops/s), which\n\
             decides PASS or MISS. Ceiling rows: all the ceiling runs, with their lowest and \
             highest ops/s.\n\nscenario     app      store       ops/s   p50 ms   p99 ms  \
             errors   5xx  ratio  target       ratios\n"
        );
        for &scenario in &o.scenarios {
            match self.ceiling(scenario) {
                Some(s) if scenario == "request-otp" => {
                    let (ops, spread) = (s.ops, s.spread("mails/s"));
                    let _ = writeln!(
                        t,
                        "smtp-source  postfix  -      {ops:>10.1}        -        -       -     \
                         -   1.00  (ceiling)    {spread}"
                    );
                }
                Some(s) => {
                    let line = s.line(scenario, "ceiling", "redis", "1.00");
                    let _ = writeln!(t, "{line}  (ceiling)    {}", s.spread("ops/s"));
                }
                None => {}
            }
            for row in self.rows.iter().filter(|row| row.scenario == scenario) {
                let s = Summary::of(row.pairs.iter().map(|p| &p.app));
                let line = s.line(scenario, row.app, row.store, &ratio_text(row.ratio()));
                let target = format!(">= {:.1} {}", row.target(), verdict(row.pass()));
                let ratios: Vec<String> = row.ratios().into_iter().map(ratio_text).collect();
                let _ = writeln!(t, "{line}  {target:<11}  {}", ratios.join(" "));
            }
        }
        let _ = writeln!(
            t,
            "\nServer CPU per operation (user + system time of the app process over the \
             closed-loop run, warm-up counted\nat the measured rate; median over the rounds), \
             in microseconds:"
        );
        for row in &self.rows {
            let cpu = row.pairs.iter().map(|p| p.app.get("server_cpu_us_per_op"));
            if let Some(us) = median(cpu.filter(|us| *us > 0.0)) {
                let (scenario, app, store) = (row.scenario, row.app, row.store);
                let _ = writeln!(t, "  {scenario:<12} {app:<5} {store:<6} {us:>8.1} µs");
            }
        }
        let _ = writeln!(
            t,
            "\nRedis memory per pending login (MEMORY USAGE of the code key after one \
             request-otp, first round),\ntarget <= {TARGET_MEMORY_BYTES} bytes:"
        );
        for m in &self.memory {
            let (app, store, bytes, key, pass) = (m.app, m.store, m.bytes, &m.key, m.pass);
            let pass = verdict(pass);
            let _ = writeln!(t, "  {app:<5} {store:<6} {bytes:>5} bytes  {pass}  ({key})");
        }
        if !self.open_loop.is_empty() {
            t += "\nOpen loop (first round): each scenario at a share of the ops/s its closed \
                  loop just reached,\nlatency from each operation's due time:\n\
                  scenario     app   store     %       rate      ops/s   p50 ms   p99 ms  \
                  p999 ms  errors\n";
        }
        for r in &self.open_loop {
            let (scenario, app, store) = (r.scenario, r.app, r.store);
            let (percent, rate, run) = (r.percent, r.rate, &r.run);
            let (ops, p50, p99) = (run.ops(), run.get("p50_ms"), run.get("p99_ms"));
            let (p999, errors) = (run.get("p999_ms"), run.count("errors"));
            let _ = writeln!(
                t,
                "{scenario:<12} {app:<5} {store:<6} {percent:>4} {rate:>10.1} {ops:>10.1} \
                 {p50:>8.3} {p99:>8.3} {p999:>8.3} {errors:>7}"
            );
        }
        if !self.preloaded.is_empty() {
            t += "\nPreloaded store (every round): the closed loop on the empty store, then at \
                  once again after\nwriting live sessions into Redis; ratio: the median over \
                  the rounds of preloaded / empty ops/s;\nbytes: Redis used_memory growth per \
                  session; ceiling: the same ratio for the ceiling server:\n\
                  scenario   app   store   sessions      empty  preloaded   p99 ms  ratio  \
                  target      bytes  ceiling  ratios\n";
        }
        let mut groups: Vec<Vec<&Preloaded>> = Vec::new();
        for r in &self.preloaded {
            let key = |p: &Preloaded| (p.scenario, p.app, p.store);
            match groups.iter_mut().find(|g| key(g[0]) == key(r)) {
                Some(group) => group.push(r),
                None => groups.push(vec![r]),
            }
        }
        for group in groups {
            let r = group[0];
            let (scenario, app, store) = (r.scenario, r.app, r.store);
            let (sessions, bytes) = (r.sessions, r.bytes_per_session);
            let med = |f: fn(&Preloaded) -> f64| median(group.iter().map(|r| f(r))).unwrap_or(0.0);
            let (empty, preloaded) = (med(|r| r.empty.ops()), med(|r| r.preloaded.ops()));
            let (p99, ratio) = (med(|r| r.preloaded.get("p99_ms")), med(|r| r.ratio));
            let pass = verdict(ratio >= TARGET_PRELOADED);
            let target = format!(">= {TARGET_PRELOADED} {pass}");
            let ceilings = (group.iter())
                .filter_map(|r| ratio_of(r.ceiling_preloaded.as_ref()?, r.ceiling_empty.as_ref()?));
            let ceiling = ratio_text(median(ceilings));
            let ratios: Vec<String> = group.iter().map(|r| format!("{:.2}", r.ratio)).collect();
            let ratios = ratios.join(" ");
            let _ = writeln!(
                t,
                "{scenario:<10} {app:<5} {store:<6} {sessions:>9} {empty:>10.1} {preloaded:>10.1} \
                 {p99:>8.3} {ratio:>6.2}  {target:<10}  {bytes:>5}  {ceiling:>7}  {ratios}"
            );
        }
        t
    }

    /// The contents of `bench.json`: options, method, targets, the ceiling summaries, every
    /// row with its raw pairs, the memory of a pending login, the open loop and the
    /// preloaded store.
    pub(super) fn json(&self) -> String {
        let o = &self.options;
        let smtp_source = self.ceiling("request-otp").map(|s| {
            let median = json!({"seconds": round(s.seconds, 3), "mails_per_sec": round(s.ops, 1)});
            let (min, max) = (round(s.min, 1), round(s.max, 1));
            json!({"mails": SMTP_SOURCE_MESSAGES, "runs": s.runs, "median": median,
                "min_mails_per_sec": min, "max_mails_per_sec": max})
        });
        // Every ceiling run of each scenario summed up; the runs are in the pairs below.
        let ceiling: Vec<Value> = (o.ceiling_scenarios().into_iter())
            .filter_map(|scenario| {
                let s = self.ceiling(scenario)?;
                let (min, max) = (round(s.min, 1), round(s.max, 1));
                Some(s.json(json!({"scenario": scenario, "runs": s.runs,
                    "min_ops_per_sec": min, "max_ops_per_sec": max})))
            })
            .collect();
        let ratio = |x: Option<f64>| x.map(|x| round(x, 4));
        let mut runs = Vec::new();
        for row in &self.rows {
            let pairs: Vec<Value> = (row.pairs.iter().zip(1..))
                .map(|(p, round)| {
                    json!({"round": round, "ratio": ratio(ratio_of(&p.app, &p.ceiling)),
                        "ceiling": p.ceiling, "app": p.app})
                })
                .collect();
            let ratios: Vec<_> = row.ratios().into_iter().map(ratio).collect();
            let summary = Summary::of(row.pairs.iter().map(|p| &p.app));
            runs.push(
                summary.json(json!({"scenario": row.scenario, "app": row.app,
                "store": row.store, "ratio": ratio(row.ratio()), "ratios": ratios,
                "target": row.target(), "pass": row.pass(), "pairs": pairs})),
            );
        }
        let [protected, flow, refresh, request_otp] = TARGETS.map(|(_, t)| t);
        let report = json!({
            "machine": {"cpus": self.cpus, "client_and_server_share_the_machine": true},
            "options": {
                "seconds": o.seconds,
                "concurrency": o.concurrency,
                "warmup": o.warmup,
                "rounds": o.rounds,
                "only": self.only(),
                "scenarios": o.scenarios,
            },
            "method": "paired: each app run follows at once a ceiling run of the same scenario \
                       (otp-bench ceiling; request-otp: smtp-source); ratio = median over the \
                       rounds of app ops/s / that ceiling's ops/s",
            "targets": {
                "protected": protected,
                "flow": flow,
                "refresh": refresh,
                "request_otp": request_otp,
                "memory_bytes": TARGET_MEMORY_BYTES,
                "preloaded": TARGET_PRELOADED,
            },
            "smtp_source": smtp_source,
            "ceiling": ceiling,
            "runs": runs,
            "memory_per_pending_login": self.memory,
            "open_loop": self.open_loop,
            "preloaded": self.preloaded,
            "server_errors": self.server_errors(),
        });
        // A tree of maps, strings and finite numbers: it always serializes.
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three rounds of axum and poem on Redis where the ceiling moves from run to run:
    /// (ceiling, app) ops/s (mails/s for the request-otp ceiling); one 5xx.
    fn report() -> Report {
        const PAIRS: [[(f64, f64); 3]; 6] = [
            [(100.0, 90.0), (200.0, 150.0), (150.0, 140.0)],
            [(100.0, 60.0), (100.0, 70.0), (100.0, 80.0)],
            [(100.0, 80.0), (125.0, 100.0), (50.0, 10.0)],
            [(400.0, 300.0), (50.0, 45.0), (120.0, 60.0)],
            [(0.0, 10.0), (90.0, 45.0), (80.0, 60.0)],
            [(75.0, 30.0), (100.0, 20.0), (125.0, 25.0)],
        ];
        let load = |ops| {
            let line = r#"{"p50_ms":1.5,"p99_ms":9,"p999_ms":12,"errors":1,"server_errors":0,"#;
            Load::parse(&format!(r#"{line}"ops_per_sec":{ops}}}"#)).unwrap()
        };
        let args = "--only axum/redis,poem/redis --scenarios protected,flow,request-otp";
        let options = Options::parse(args.split(' ').map(str::to_owned).collect()).unwrap();
        let mut report = Report::new(options, 2);
        for (row, pairs) in report.rows.iter_mut().zip(PAIRS) {
            for (ceiling, app) in pairs {
                let ceiling = match row.scenario {
                    "request-otp" => Load::smtp(5000.0 / ceiling),
                    _ => load(ceiling),
                };
                row.pairs.push(Pair {
                    ceiling,
                    app: load(app),
                });
            }
        }
        report.rows[2].pairs[1].app.0["server_errors"] = json!(2);
        report
    }

    /// Each app run is divided by the ceiling run just before it; the verdict is on the
    /// median; a ceiling row sums up every ceiling run of its scenario; the table and the
    /// JSON file show them.
    #[test]
    fn paired_ratios_and_ceiling_rows() {
        let r = report();
        let ratios = |i: usize| {
            r.rows[i]
                .ratios()
                .into_iter()
                .map(ratio_text)
                .collect::<Vec<_>>()
        };
        assert_eq!(ratios(0), ["0.90", "0.75", "0.93"]);
        assert_eq!(ratios(4), ["-", "0.50", "0.75"]);
        let verdicts: Vec<_> = r.rows.iter().map(|row| (row.ratio(), row.pass())).collect();
        assert_eq!(
            verdicts[..3],
            [(Some(0.9), true), (Some(0.7), true), (Some(0.8), true)]
        );
        assert_eq!(verdicts[3..5], [(Some(0.75), false), (Some(0.625), false)]);
        assert_eq!(r.server_errors(), 2);
        let c = r.ceiling("protected").unwrap();
        assert_eq!(
            (c.runs, c.ops, c.min, c.max, c.p99),
            (6, 135.0, 50.0, 400.0, 9.0)
        );
        let smtp = r.ceiling("request-otp").unwrap();
        assert_eq!(
            (smtp.ops, smtp.seconds, smtp.min, smtp.max),
            (100.0, 50.0, 50.0, 125.0)
        );

        let table = r.table();
        for text in [
            "ops/s: 50–400 (6 runs)",
            "mails/s: 50–125 (6 runs)",
            "MISS  0.75 0.90 0.50",
        ] {
            assert!(table.contains(text), "{text} in {table}");
        }
        let first = |prefix: &str| table.lines().position(|l| l.starts_with(prefix));
        assert!(first("protected    ceiling") < first("protected    axum"));
        assert!(first("smtp-source") < first("request-otp  axum"));
        let json: Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(json["runs"][0]["ratios"], json!([0.9, 0.75, 0.9333]));
        assert_eq!(
            json["runs"][2]["pairs"][0]["ceiling"]["tool"],
            "smtp-source"
        );
        assert_eq!(json["runs"][2]["server_errors"], 2);
        assert_eq!(json["smtp_source"]["median"]["seconds"], 50.0);
        assert_eq!(json["ceiling"][0]["median"]["ops_per_sec"], 135.0);
        assert!(Load::parse(r#"{"ops_per_sec":1,"p50_ms":"x"}"#).is_err());
    }
}
