//! The HTTP contract through the real routers: every scenario on the memory store through
//! both adapters, the smoke set on each Redis store and client through both (the sets are
//! listed in `otp_tests::scenario_set!`; docs/TESTING.md says why).
//!
//! A test is `target::topic::scenario`, e.g. `axum_fred_cluster::sessions::logout_all`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

mod axum_memory {
    otp_tests::http_scenarios!(full; Axum, Memory);
}

mod poem_memory {
    otp_tests::http_scenarios!(full; Poem, Memory);
}

mod axum_redis {
    otp_tests::http_scenarios!(smoke;
        #[cfg_attr(
            not(otp_test_redis),
            ignore = "needs a Redis server at OTP_TEST_REDIS_URL: run `cargo xtask test`"
        )]
        Axum, Redis);
}

mod axum_fred {
    otp_tests::http_scenarios!(smoke;
        #[cfg_attr(
            not(otp_test_redis),
            ignore = "needs a Redis server at OTP_TEST_REDIS_URL: run `cargo xtask test`"
        )]
        Axum, Fred);
}

mod axum_redis_cluster {
    otp_tests::http_scenarios!(smoke;
        #[cfg_attr(
            not(otp_test_cluster),
            ignore = "needs a Redis Cluster at OTP_TEST_REDIS_CLUSTER_URL: run `cargo xtask test`"
        )]
        Axum, RedisCluster);
}

mod axum_fred_cluster {
    otp_tests::http_scenarios!(smoke;
        #[cfg_attr(
            not(otp_test_cluster),
            ignore = "needs a Redis Cluster at OTP_TEST_REDIS_CLUSTER_URL: run `cargo xtask test`"
        )]
        Axum, FredCluster);
}

mod poem_redis {
    otp_tests::http_scenarios!(smoke;
        #[cfg_attr(
            not(otp_test_redis),
            ignore = "needs a Redis server at OTP_TEST_REDIS_URL: run `cargo xtask test`"
        )]
        Poem, Redis);
}

mod poem_fred {
    otp_tests::http_scenarios!(smoke;
        #[cfg_attr(
            not(otp_test_redis),
            ignore = "needs a Redis server at OTP_TEST_REDIS_URL: run `cargo xtask test`"
        )]
        Poem, Fred);
}

mod poem_redis_cluster {
    otp_tests::http_scenarios!(smoke;
        #[cfg_attr(
            not(otp_test_cluster),
            ignore = "needs a Redis Cluster at OTP_TEST_REDIS_CLUSTER_URL: run `cargo xtask test`"
        )]
        Poem, RedisCluster);
}

mod poem_fred_cluster {
    otp_tests::http_scenarios!(smoke;
        #[cfg_attr(
            not(otp_test_cluster),
            ignore = "needs a Redis Cluster at OTP_TEST_REDIS_CLUSTER_URL: run `cargo xtask test`"
        )]
        Poem, FredCluster);
}

/// The `topic::name` of every scenario function (`pub async fn`) of
/// `tests/src/scenarios/*.rs`, the topic being the file's name.
fn defined_scenarios() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/scenarios");
    let mut defined = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let topic = path.file_stem().unwrap().to_str().unwrap().to_owned();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            if let Some(rest) = line.strip_prefix("pub async fn ") {
                let name = rest.split(['(', '<']).next().unwrap().trim();
                defined.insert(format!("{topic}::{name}"));
            }
        }
    }
    defined
}

/// Every scenario defined in `tests/src/scenarios/` runs on some target: one left out of
/// every set, or a set no target runs, fails here instead of silently not running. The
/// metrics set runs in `tests/tests/metrics.rs`; the smoke set is part of the full set.
#[test]
fn every_scenario_runs() {
    let defined = defined_scenarios();
    assert!(
        defined.len() >= 40,
        "the scenario files were not read: {defined:?}"
    );
    let targets = [
        axum_memory::SCENARIOS,
        poem_memory::SCENARIOS,
        axum_redis::SCENARIOS,
        axum_fred::SCENARIOS,
        axum_redis_cluster::SCENARIOS,
        axum_fred_cluster::SCENARIOS,
        poem_redis::SCENARIOS,
        poem_fred::SCENARIOS,
        poem_redis_cluster::SCENARIOS,
        poem_fred_cluster::SCENARIOS,
        otp_tests::scenarios::METRICS,
    ];
    let run: BTreeSet<&str> = targets.concat().into_iter().collect();
    let nowhere: Vec<&String> = defined
        .iter()
        .filter(|s| !run.contains(s.as_str()))
        .collect();
    assert!(
        nowhere.is_empty(),
        "scenarios that run on no target: {nowhere:?}; add them to a set of \
         `scenario_set!` (tests/src/scenarios/mod.rs)"
    );
    let unknown: Vec<&&str> = run.iter().filter(|s| !defined.contains(**s)).collect();
    assert!(
        unknown.is_empty(),
        "set entries whose topic is not their file: {unknown:?}"
    );
    let full: BTreeSet<&str> = otp_tests::scenarios::FULL.iter().copied().collect();
    let outside: Vec<&&str> = otp_tests::scenarios::SMOKE
        .iter()
        .filter(|s| !full.contains(**s))
        .collect();
    assert!(
        outside.is_empty(),
        "smoke scenarios missing from the full set: {outside:?}"
    );
}
