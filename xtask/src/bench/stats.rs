//! Statistics over the runs: medians and ranges, paired ratios and their verdicts against
//! the targets, the summaries of the ceiling runs, and the memory target.

use super::CEILING_SCENARIOS;
use super::report::Report;
use super::results::{Ceiling, Load, Memory, Pair, Row, Smtp};

/// The ratio to its ceiling that `protected` aims at.
pub(super) const TARGET_PROTECTED: f64 = 0.9;
/// The ratio to its ceiling that `flow` aims at.
pub(super) const TARGET_FLOW: f64 = 0.7;
/// The ratio to its ceiling (`smtp-source`) that `request-otp` aims at.
pub(super) const TARGET_REQUEST_OTP: f64 = 0.8;
/// The ratio to its ceiling that `refresh` aims at (one rotation script against one
/// `EXISTS`: the flow's target).
pub(super) const TARGET_REFRESH: f64 = 0.7;
/// The least ratio of a preloaded store's ops/s to the empty store's.
pub(super) const TARGET_PRELOADED: f64 = 0.9;
/// The most bytes of Redis that one pending login may take.
pub(super) const TARGET_MEMORY_BYTES: u64 = 192;

/// Runs of `otp-bench load` summed up: medians, range of ops/s, errors and 5xx summed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Summary {
    /// How many runs.
    pub(super) runs: usize,
    /// Median ops/s.
    pub(super) ops_per_sec: f64,
    /// Median of the runs' p50 latencies.
    pub(super) p50_ms: f64,
    /// Median of the runs' p99 latencies.
    pub(super) p99_ms: f64,
    /// The lowest ops/s.
    pub(super) min_ops_per_sec: f64,
    /// The highest ops/s.
    pub(super) max_ops_per_sec: f64,
    /// Errors of all the runs.
    pub(super) errors: u64,
    /// 5xx answers of all the runs.
    pub(super) server_errors: u64,
}

impl Summary {
    /// Sums up `loads` (zeros when there are none).
    pub(super) fn of<'l>(loads: impl IntoIterator<Item = &'l Load>) -> Self {
        let loads: Vec<&Load> = loads.into_iter().collect();
        let values = |number: fn(&Load) -> f64| -> Vec<f64> {
            loads.iter().map(|load| number(load)).collect()
        };
        let ops = values(|l| l.ops_per_sec);
        let (min_ops_per_sec, max_ops_per_sec) = range(&ops).unwrap_or((0.0, 0.0));
        Self {
            runs: loads.len(),
            ops_per_sec: median(&ops).unwrap_or(0.0),
            p50_ms: median(&values(|l| l.p50_ms)).unwrap_or(0.0),
            p99_ms: median(&values(|l| l.p99_ms)).unwrap_or(0.0),
            min_ops_per_sec,
            max_ops_per_sec,
            errors: loads.iter().map(|l| l.errors).sum(),
            server_errors: loads.iter().map(|l| l.server_errors).sum(),
        }
    }
}

/// Every `smtp-source` run summed up: median seconds and mails/s, lowest and highest
/// mails/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct SmtpSummary {
    /// How many runs.
    pub(super) runs: usize,
    /// Median seconds taken.
    pub(super) seconds: f64,
    /// Median mails/s.
    pub(super) mails_per_sec: f64,
    /// The lowest mails/s.
    pub(super) min_mails_per_sec: f64,
    /// The highest mails/s.
    pub(super) max_mails_per_sec: f64,
}

/// How a row compares with its ceiling.
#[derive(Debug)]
pub(super) struct Verdict {
    /// Round by round: the app's ops/s over the ceiling run just before it (`None` if that
    /// ceiling did nothing).
    pub(super) ratios: Vec<Option<f64>>,
    /// The median of `ratios`.
    pub(super) ratio: Option<f64>,
    /// The ratio aimed at ([`target_ratio`]).
    pub(super) target: f64,
}

impl Verdict {
    /// Whether the median ratio reaches the target.
    pub(super) fn pass(&self) -> bool {
        self.ratio.is_some_and(|ratio| ratio >= self.target)
    }
}

impl Pair {
    /// The app's ops/s over the ceiling's (`None` if the ceiling did nothing).
    pub(super) fn ratio(&self) -> Option<f64> {
        let ceiling = self.ceiling.ops_per_sec();
        (ceiling > 0.0).then(|| self.app.ops_per_sec / ceiling)
    }
}

impl Row {
    /// The app's side of the pairs.
    pub(super) fn summary(&self) -> Summary {
        Summary::of(self.pairs.iter().map(|pair| &pair.app))
    }

    /// The paired ratios, round by round, their median and the target.
    pub(super) fn verdict(&self) -> Verdict {
        let ratios: Vec<Option<f64>> = self.pairs.iter().map(Pair::ratio).collect();
        let known: Vec<f64> = ratios.iter().flatten().copied().collect();
        Verdict {
            ratio: median(&known),
            ratios,
            target: target_ratio(self.scenario),
        }
    }
}

impl Memory {
    /// Whether the pending login takes at most [`TARGET_MEMORY_BYTES`].
    pub(super) fn pass(&self) -> bool {
        self.bytes <= TARGET_MEMORY_BYTES
    }
}

impl Report {
    /// Every pair of `scenario`, all apps and rounds.
    fn pairs(&self, scenario: &str) -> impl Iterator<Item = &Pair> {
        self.rows
            .iter()
            .filter(move |row| row.scenario == scenario)
            .flat_map(|row| &row.pairs)
    }

    /// Every `otp-bench ceiling` run of `scenario` in the run, in order (none for
    /// `request-otp`).
    fn ceiling_loads(&self, scenario: &str) -> Vec<&Load> {
        self.pairs(scenario)
            .filter_map(|pair| match &pair.ceiling {
                Ceiling::Server(load) => Some(load),
                Ceiling::Smtp(_) => None,
            })
            .collect()
    }

    /// Every `smtp-source` run in the run, in order.
    fn smtp_runs(&self) -> Vec<Smtp> {
        self.pairs("request-otp")
            .filter_map(|pair| match pair.ceiling {
                Ceiling::Smtp(smtp) => Some(smtp),
                Ceiling::Server(_) => None,
            })
            .collect()
    }

    /// The ceiling row of `scenario` (`protected`, `flow`), if it ran.
    pub(super) fn ceiling_summary(&self, scenario: &str) -> Option<Summary> {
        let loads = self.ceiling_loads(scenario);
        (!loads.is_empty()).then(|| Summary::of(loads))
    }

    /// The `smtp-source` row, if it ran.
    pub(super) fn smtp_summary(&self) -> Option<SmtpSummary> {
        let runs = self.smtp_runs();
        let seconds: Vec<f64> = runs.iter().map(|s| s.seconds).collect();
        let rates: Vec<f64> = runs.iter().map(|s| s.mails_per_sec).collect();
        let (min_mails_per_sec, max_mails_per_sec) = range(&rates)?;
        Some(SmtpSummary {
            runs: runs.len(),
            seconds: median(&seconds)?,
            mails_per_sec: median(&rates)?,
            min_mails_per_sec,
            max_mails_per_sec,
        })
    }

    /// The 5xx answers of every run, the ceiling's included.
    pub(super) fn server_errors(&self) -> u64 {
        self.rows
            .iter()
            .map(|row| row.summary().server_errors)
            .chain(
                CEILING_SCENARIOS
                    .iter()
                    .filter_map(|scenario| self.ceiling_summary(scenario))
                    .map(|summary| summary.server_errors),
            )
            .sum()
    }
}

/// The median of `values` (with an even count, the mean of the middle two); `None` when
/// there are none.
pub(super) fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The lowest and highest of `values`; `None` when there are none.
fn range(values: &[f64]) -> Option<(f64, f64)> {
    let min = values.iter().copied().reduce(f64::min)?;
    let max = values.iter().copied().reduce(f64::max)?;
    Some((min, max))
}

/// The ratio to its ceiling that a scenario aims at.
fn target_ratio(scenario: &str) -> f64 {
    match scenario {
        "protected" => TARGET_PROTECTED,
        "flow" => TARGET_FLOW,
        "refresh" => TARGET_REFRESH,
        _ => TARGET_REQUEST_OTP,
    }
}

/// Unit tests.
#[cfg(test)]
mod tests {
    use super::{median, range};
    use crate::bench::fixtures::report;

    /// Medians of none, an odd and an even count of values.
    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    /// Each app run is divided by the ceiling run just before it; the verdict is on the median.
    #[test]
    fn verdicts_on_paired_ratios() {
        let report = report();
        let protected = report.rows[0].verdict();
        assert_eq!(protected.ratios_text(), "0.90 0.75 0.93");
        assert_eq!(protected.ratio, Some(0.9));
        assert!(protected.pass());
        let flow = report.rows[1].verdict();
        assert_eq!(flow.ratio, Some(0.7));
        assert!(flow.pass());
        // request-otp is divided by the smtp-source run just before it: 0.8 0.8 0.2.
        let request_otp = report.rows[2].verdict();
        assert_eq!(request_otp.ratios_text(), "0.80 0.80 0.20");
        assert_eq!(request_otp.ratio, Some(0.8));
        assert!(request_otp.pass());
        // Pairs with the ceiling far apart: 0.75 0.90 0.50, median 0.75.
        let poem = report.rows[3].verdict();
        assert_eq!(poem.ratio, Some(0.75));
        assert!(!poem.pass());
        // A ceiling run that did nothing gives no ratio; the median is of the others.
        let poem_flow = report.rows[4].verdict();
        assert_eq!(poem_flow.ratios_text(), "- 0.50 0.75");
        assert_eq!(poem_flow.ratio, Some(0.625));
        assert!(!poem_flow.pass());
        // The app side of the row: medians over the rounds, errors and 5xx summed.
        let summary = report.rows[2].summary();
        assert_eq!(summary.runs, 3);
        assert_eq!(summary.ops_per_sec, 80.0);
        assert_eq!((summary.errors, summary.server_errors), (3, 2));
        assert_eq!(report.server_errors(), 2);
    }

    /// A ceiling row sums up every ceiling run of its scenario, all apps and rounds.
    #[test]
    fn ceiling_rows_summarize_every_paired_run() {
        let report = report();
        let loads: Vec<f64> = report
            .ceiling_loads("protected")
            .iter()
            .map(|l| l.ops_per_sec)
            .collect();
        assert_eq!(loads, [100.0, 200.0, 150.0, 400.0, 50.0, 120.0]);
        assert!(report.ceiling_loads("request-otp").is_empty());
        let protected = report.ceiling_summary("protected").unwrap();
        assert_eq!(protected.runs, 6);
        assert_eq!(protected.ops_per_sec, 135.0);
        assert_eq!(
            (protected.min_ops_per_sec, protected.max_ops_per_sec),
            (50.0, 400.0)
        );
        assert_eq!((protected.p50_ms, protected.p99_ms), (1.5, 9.0));
        assert_eq!(protected.errors, 6);
        let flow = report.ceiling_summary("flow").unwrap();
        assert_eq!((flow.min_ops_per_sec, flow.max_ops_per_sec), (0.0, 100.0));
        assert_eq!(report.ceiling_summary("request-otp"), None);
        let smtp = report.smtp_summary().unwrap();
        assert_eq!(smtp.runs, 6);
        assert_eq!(smtp.mails_per_sec, 100.0);
        assert_eq!(smtp.seconds, 50.0);
        assert_eq!(
            (smtp.min_mails_per_sec, smtp.max_mails_per_sec),
            (50.0, 125.0)
        );
        assert_eq!(range(&[]), None);
        assert_eq!(range(&[2.0, -1.0, 5.0]), Some((-1.0, 5.0)));
    }
}
