//! The scenarios that count metrics (the `metrics` set of `otp_tests::scenario_set!`) on
//! Axum with the memory store and with otp-redis on the cluster: what they count is the
//! engine's, the same on every target, so two targets suffice (docs/TESTING.md). They
//! share the process's one recorder, so they run one at a time (see
//! `otp_tests::metrics_lock`) in this binary of their own, and compare counters before
//! and after.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod axum_memory {
    otp_tests::metrics_scenarios!(Axum, Memory);
}

mod axum_redis_cluster {
    otp_tests::metrics_scenarios!(
        #[cfg_attr(
            not(otp_test_cluster),
            ignore = "needs a Redis Cluster at OTP_TEST_REDIS_CLUSTER_URL: run `cargo xtask test`"
        )]
        Axum,
        RedisCluster
    );
}
