//! The options of `cargo xtask bench`: parsing, defaults and the apps and stores they
//! select.

use super::{APPS, CEILING_SCENARIOS, SCENARIOS, STORES};

/// The options of `cargo xtask bench`, as the error message and the help list them.
const OPTIONS_HELP: &str = "--seconds N (10), --concurrency N (32), --warmup N (2), \
     --rounds N (3), --only app/store[,app/store...] (every app on every store; apps: axum, poem; \
     stores: redis, fred), --scenarios name[,name...] (all: protected,flow,refresh,request-otp), \
     --open-loop P[,P...] (none; percentages of the closed loop's ops/s, such as 50,80), \
     --preload-sessions N (0)";

/// One example app on one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Target {
    /// Package and binary name.
    pub(super) package: &'static str,
    /// Short name of the app.
    pub(super) app: &'static str,
    /// `OTP_AUTH_STORE`.
    pub(super) store: &'static str,
}

impl Target {
    /// Every app on every store, in the order of the table.
    pub(super) fn all() -> Vec<Self> {
        APPS.iter()
            .flat_map(|&(package, app)| {
                STORES.iter().map(move |&store| Self {
                    package,
                    app,
                    store,
                })
            })
            .collect()
    }
}

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone)]
pub(super) struct Options {
    /// Seconds measured per run (`--seconds`, 10).
    pub(super) seconds: u32,
    /// Virtual users of `otp-bench load`, connections of `smtp-source` (`--concurrency`,
    /// 32).
    pub(super) concurrency: u32,
    /// Seconds of warm-up before each run (`--warmup`, 2).
    pub(super) warmup: u32,
    /// Rounds (`--rounds`, 3).
    pub(super) rounds: u32,
    /// The apps and stores measured (`--only`), in the order of [`Target::all`].
    pub(super) targets: Vec<Target>,
    /// The scenarios run (`--scenarios`), in the order of [`SCENARIOS`].
    pub(super) scenarios: Vec<&'static str>,
    /// In the first round, each app's `otp-bench` scenarios again at these percentages of
    /// the ops/s it just reached, in an open loop (`--open-loop 50,80`; none by default).
    pub(super) open_loop: Vec<u32>,
    /// In every round, live sessions written into Redis before `protected` and `refresh`
    /// run again on each app (`--preload-sessions`, 0: not run).
    pub(super) preload_sessions: u32,
}

impl Options {
    /// The options given in `args`, the defaults for the others; an error for an unknown
    /// option, a bad value, or a zero `--seconds`, `--concurrency` or `--rounds`.
    pub(super) fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            seconds: 10,
            concurrency: 32,
            warmup: 2,
            rounds: 3,
            targets: Target::all(),
            scenarios: SCENARIOS.to_vec(),
            open_loop: Vec::new(),
            preload_sessions: 0,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .map(String::as_str)
                    .ok_or_else(|| format!("`{arg}` needs a value"))
            };
            match arg.as_str() {
                "--seconds" => options.seconds = whole_number(arg, value()?)?,
                "--concurrency" => options.concurrency = whole_number(arg, value()?)?,
                "--warmup" => options.warmup = whole_number(arg, value()?)?,
                "--rounds" => options.rounds = whole_number(arg, value()?)?,
                "--only" => options.targets = parse_only(value()?)?,
                "--scenarios" => options.scenarios = parse_scenarios(value()?)?,
                "--open-loop" => {
                    let value = value()?;
                    options.open_loop = items(arg, value)?
                        .into_iter()
                        .map(|p| whole_number(arg, p))
                        .collect::<Result<_, _>>()?;
                    if options.open_loop.iter().any(|&p| p == 0 || p > 100) {
                        return Err(format!("`{arg} {value}`: percentages from 1 to 100"));
                    }
                }
                "--preload-sessions" => options.preload_sessions = whole_number(arg, value()?)?,
                other => {
                    return Err(format!(
                        "`bench` does not take `{other}`; options (defaults): {OPTIONS_HELP}"
                    ));
                }
            }
        }
        if options.seconds == 0 || options.concurrency == 0 || options.rounds == 0 {
            return Err("--seconds, --concurrency and --rounds must be at least 1".to_owned());
        }
        Ok(options)
    }

    /// Whether `scenario` is among the selected ones.
    pub(super) fn runs(&self, scenario: &str) -> bool {
        self.scenarios.contains(&scenario)
    }

    /// The selected scenarios that the ceiling server measures.
    pub(super) fn ceiling_scenarios(&self) -> Vec<&'static str> {
        CEILING_SCENARIOS
            .into_iter()
            .filter(|scenario| self.runs(scenario))
            .collect()
    }
}

/// The value of a numeric option.
fn whole_number(arg: &str, value: &str) -> Result<u32, String> {
    value
        .parse()
        .map_err(|e| format!("`{arg} {value}`: not a whole number ({e})"))
}

/// The items of a comma-separated option value, trimmed; an error for an empty item.
fn items<'v>(arg: &str, value: &'v str) -> Result<Vec<&'v str>, String> {
    value
        .split(',')
        .map(str::trim)
        .map(|item| {
            if item.is_empty() {
                Err(format!("`{arg} {value}`: empty item"))
            } else {
                Ok(item)
            }
        })
        .collect()
}

/// `--only axum/redis,poem/fred`: the selected targets, in the order of [`Target::all`].
fn parse_only(value: &str) -> Result<Vec<Target>, String> {
    let apps = APPS.map(|(_, app)| app).join(", ");
    let stores = STORES.join(", ");
    let mut chosen = Vec::new();
    for item in items("--only", value)? {
        let (app, store) = item
            .split_once('/')
            .ok_or_else(|| format!("`--only {item}`: expected app/store, such as axum/redis"))?;
        let (app, store) = (app.trim(), store.trim());
        if !APPS.iter().any(|&(_, name)| name == app) {
            return Err(format!(
                "`--only {item}`: unknown app `{app}` (apps: {apps})"
            ));
        }
        if !STORES.contains(&store) {
            return Err(format!(
                "`--only {item}`: unknown store `{store}` (stores: {stores})"
            ));
        }
        chosen.push((app, store));
    }
    Ok(Target::all()
        .into_iter()
        .filter(|t| chosen.contains(&(t.app, t.store)))
        .collect())
}

/// `--scenarios protected,flow`: the selected scenarios, in the order of [`SCENARIOS`].
fn parse_scenarios(value: &str) -> Result<Vec<&'static str>, String> {
    let chosen = items("--scenarios", value)?;
    if let Some(unknown) = chosen.iter().find(|name| !SCENARIOS.contains(name)) {
        return Err(format!(
            "`--scenarios {value}`: unknown scenario `{unknown}` (scenarios: {})",
            SCENARIOS.join(", ")
        ));
    }
    Ok(SCENARIOS
        .into_iter()
        .filter(|scenario| chosen.contains(scenario))
        .collect())
}

/// Unit tests.
#[cfg(test)]
mod tests {
    use super::{Options, SCENARIOS, Target};
    use crate::bench::fixtures::args;

    /// Defaults, numeric options, and the errors for unknown options and zero or missing values.
    #[test]
    fn options() {
        let o = Options::parse(&args(&["--seconds", "3", "--concurrency", "8"])).unwrap();
        assert_eq!((o.seconds, o.concurrency, o.warmup, o.rounds), (3, 8, 2, 3));
        assert_eq!(o.targets, Target::all());
        assert_eq!(o.scenarios, SCENARIOS);
        assert!(Options::parse(&args(&["--nope"])).is_err());
        assert!(Options::parse(&args(&["--seconds", "0"])).is_err());
        assert!(Options::parse(&args(&["--rounds", "0"])).is_err());
        assert!(Options::parse(&args(&["--rounds"])).is_err());
    }

    /// `--only` and `--scenarios` select in the order of the table, and name what is wrong.
    #[test]
    fn only_and_scenarios() {
        let o = Options::parse(&args(&[
            "--only",
            "poem/fred, axum/redis,axum/redis",
            "--scenarios",
            "request-otp,protected",
            "--rounds",
            "5",
        ]))
        .unwrap();
        let chosen: Vec<(&str, &str)> = o.targets.iter().map(|t| (t.app, t.store)).collect();
        assert_eq!(chosen, [("axum", "redis"), ("poem", "fred")]);
        assert_eq!(o.targets[1].package, "poem-example");
        assert_eq!(o.scenarios, ["protected", "request-otp"]);
        assert_eq!(o.ceiling_scenarios(), ["protected"]);
        assert_eq!(o.rounds, 5);
        for bad in ["axum", "actix/redis", "axum/postgres", "axum/redis,", ""] {
            let e = Options::parse(&args(&["--only", bad])).unwrap_err();
            assert!(e.contains("--only"), "{e}");
        }
        let e = Options::parse(&args(&["--only", "axum/mongo"])).unwrap_err();
        assert!(e.contains("redis, fred"), "{e}");
        let e = Options::parse(&args(&["--scenarios", "flow,login"])).unwrap_err();
        assert!(e.contains("`login`"), "{e}");
        let o = Options::parse(&args(&["--scenarios", "request-otp"])).unwrap();
        assert!(o.ceiling_scenarios().is_empty());
        let o = Options::parse(&args(&[
            "--open-loop",
            "50, 80",
            "--preload-sessions",
            "1000",
        ]))
        .unwrap();
        assert_eq!((o.open_loop, o.preload_sessions), (vec![50, 80], 1000));
        assert!(o.preload_sessions > 0 && Options::parse(&args(&[])).unwrap().open_loop.is_empty());
        for bad in ["0", "101", "fast", ""] {
            assert!(
                Options::parse(&args(&["--open-loop", bad])).is_err(),
                "{bad}"
            );
        }
    }
}
