//! The HTTP contract through the real router, for every adapter × store combination.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod axum_memory {
    otp_tests::http_scenarios!(Axum, Memory);
}

mod axum_redis {
    otp_tests::http_scenarios!(
        #[cfg_attr(
            not(otp_test_redis),
            ignore = "needs a Redis server at OTP_TEST_REDIS_URL: run `cargo xtask test`"
        )]
        Axum,
        Redis
    );
}

mod axum_fred {
    otp_tests::http_scenarios!(
        #[cfg_attr(
            not(otp_test_redis),
            ignore = "needs a Redis server at OTP_TEST_REDIS_URL: run `cargo xtask test`"
        )]
        Axum,
        Fred
    );
}

mod axum_redis_cluster {
    otp_tests::http_scenarios!(
        #[cfg_attr(
            not(otp_test_cluster),
            ignore = "needs a Redis Cluster at OTP_TEST_REDIS_CLUSTER_URL: run `cargo xtask test`"
        )]
        Axum,
        RedisCluster
    );
}

mod axum_fred_cluster {
    otp_tests::http_scenarios!(
        #[cfg_attr(
            not(otp_test_cluster),
            ignore = "needs a Redis Cluster at OTP_TEST_REDIS_CLUSTER_URL: run `cargo xtask test`"
        )]
        Axum,
        FredCluster
    );
}

mod poem_memory {
    otp_tests::http_scenarios!(Poem, Memory);
}

mod poem_redis {
    otp_tests::http_scenarios!(
        #[cfg_attr(
            not(otp_test_redis),
            ignore = "needs a Redis server at OTP_TEST_REDIS_URL: run `cargo xtask test`"
        )]
        Poem,
        Redis
    );
}

mod poem_fred {
    otp_tests::http_scenarios!(
        #[cfg_attr(
            not(otp_test_redis),
            ignore = "needs a Redis server at OTP_TEST_REDIS_URL: run `cargo xtask test`"
        )]
        Poem,
        Fred
    );
}

mod poem_redis_cluster {
    otp_tests::http_scenarios!(
        #[cfg_attr(
            not(otp_test_cluster),
            ignore = "needs a Redis Cluster at OTP_TEST_REDIS_CLUSTER_URL: run `cargo xtask test`"
        )]
        Poem,
        RedisCluster
    );
}

mod poem_fred_cluster {
    otp_tests::http_scenarios!(
        #[cfg_attr(
            not(otp_test_cluster),
            ignore = "needs a Redis Cluster at OTP_TEST_REDIS_CLUSTER_URL: run `cargo xtask test`"
        )]
        Poem,
        FredCluster
    );
}
