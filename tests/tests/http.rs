//! The HTTP contract through the real router, for every adapter × store combination.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use otp_tests::{Adapter, Store, Target};

mod axum_memory {
    use super::*;
    otp_tests::http_scenarios!(Target {
        adapter: Adapter::Axum,
        store: Store::Memory
    });
}

mod axum_redis {
    use super::*;
    otp_tests::http_scenarios!(Target {
        adapter: Adapter::Axum,
        store: Store::Redis
    });
}

mod axum_fred {
    use super::*;
    otp_tests::http_scenarios!(Target {
        adapter: Adapter::Axum,
        store: Store::Fred
    });
}

mod axum_redis_cluster {
    use super::*;
    otp_tests::http_scenarios!(Target {
        adapter: Adapter::Axum,
        store: Store::RedisCluster
    });
}

mod axum_fred_cluster {
    use super::*;
    otp_tests::http_scenarios!(Target {
        adapter: Adapter::Axum,
        store: Store::FredCluster
    });
}

mod poem_memory {
    use super::*;
    otp_tests::http_scenarios!(Target {
        adapter: Adapter::Poem,
        store: Store::Memory
    });
}

mod poem_redis {
    use super::*;
    otp_tests::http_scenarios!(Target {
        adapter: Adapter::Poem,
        store: Store::Redis
    });
}

mod poem_fred {
    use super::*;
    otp_tests::http_scenarios!(Target {
        adapter: Adapter::Poem,
        store: Store::Fred
    });
}

mod poem_redis_cluster {
    use super::*;
    otp_tests::http_scenarios!(Target {
        adapter: Adapter::Poem,
        store: Store::RedisCluster
    });
}

mod poem_fred_cluster {
    use super::*;
    otp_tests::http_scenarios!(Target {
        adapter: Adapter::Poem,
        store: Store::FredCluster
    });
}
