//! The HTTP scenarios of the contract (API.md), each a function of the target (adapter ×
//! store) under test, one module per topic.
//!
//! [`scenario_set!`](crate::scenario_set) is the one list of which scenario belongs to
//! which set: `full` (every HTTP scenario), `smoke` (what differs between stores and
//! clients) and `metrics` (the scenarios that count metrics).
//! [`http_scenarios!`](crate::http_scenarios) and
//! [`metrics_scenarios!`](crate::metrics_scenarios) instantiate a set as the tests of one
//! target, in a module per topic (`axum_redis::sessions::logout_all`);
//! `tests/tests/http.rs` and `tests/tests/metrics.rs` say which set runs on which target,
//! and docs/TESTING.md why.

mod common;

pub mod admin;
pub mod audit;
pub mod client_ip;
pub mod email_change;
pub mod failures;
pub mod flows;
pub mod guards;
pub mod http_surface;
pub mod jwks;
pub mod limits;
pub mod links;
pub mod login;
pub mod metrics;
pub mod refresh;
pub mod sessions;
pub mod step_up;

pub use otp_core::contract::DownStore;

/// `topic::name` of each scenario of a set, for [`FULL`], [`SMOKE`] and [`METRICS`].
macro_rules! scenario_names {
    ($($topic:ident: [$($name:ident),* $(,)?]),* $(,)?) => {
        &[$($(concat!(stringify!($topic), "::", stringify!($name))),*),*]
    };
}

/// Every HTTP scenario (`topic::name`): the set of the memory store's targets.
pub const FULL: &[&str] = crate::scenario_set!(full, [scenario_names], []);

/// The smoke set (`topic::name`): the set of every Redis target.
pub const SMOKE: &[&str] = crate::scenario_set!(smoke, [scenario_names], []);

/// The scenarios that count metrics (`topic::name`), run by `tests/tests/metrics.rs`.
pub const METRICS: &[&str] = crate::scenario_set!(metrics, [scenario_names], []);

/// The scenario sets, the one place that lists them: `scenario_set!(set, [callback],
/// [args])` calls `callback!(args topic: [name, ...], ...)` with the scenarios of `set`
/// (`full`, `smoke` or `metrics`) grouped by the module (topic) that defines them.
///
/// `full` is every HTTP scenario. `smoke` is the part of it that can behave differently
/// from one store or Redis client to another; each entry says why it is in. `metrics`
/// holds the scenarios that read counters of `GET /metrics` (one recorder per process: a
/// test binary of their own).
#[macro_export]
macro_rules! scenario_set {
    (full, [$($callback:tt)*], [$($args:tt)*]) => {
        $($callback)*!{$($args)*
            login: [
                login_flow, cookie_attributes, verify_errors, concurrent_verifications,
                no_account_enumeration, magic_code, localized_mail,
            ],
            jwks: [jwks],
            flows: [
                strangers_leave_the_owners_flow, known_device_gets_a_code_past_the_caps,
                required_binding, flow_cookies_and_resends,
            ],
            limits: [
                address_rate_limit, lockout_across_resends,
                wrong_codes_answer_alike_for_every_address, ip_limited_client_gets_one_answer,
            ],
            client_ip: [
                ip_rate_limit_ignores_spoofed_forwarded_for, trusted_proxy_forwarded_for,
                forwarded_entries_with_ports, trusted_proxy_rfc7239_forwarded,
                ipv4_mapped_clients,
            ],
            refresh: [
                refresh_rotation_and_reuse, refresh_refusals, concurrent_refreshes,
                refresh_token_in_body, refresh_token_in_cookie_and_body, racing_tabs,
            ],
            sessions: [
                logout, logout_all, administration_from_code, sessions_list_and_revoke,
                logout_others,
            ],
            step_up: [step_up_reauthentication],
            email_change: [email_change, concurrent_email_changes, email_change_needs_the_hook],
            links: [magic_link, magic_page_names_the_account],
            http_surface: [
                request_otp_bad_input, not_found_and_method, origin_check, cross_site_requests,
            ],
            guards: [
                protected_route_refusals, layer_protected_sub_router,
                role_guard_and_admin_endpoint,
            ],
            failures: [store_unavailable, mail_failures, verify_never_strands_a_code],
            audit: [audit_events],
            admin: [admin_router],
        }
    };
    (smoke, [$($callback:tt)*], [$($args:tt)*]) => {
        $($callback)*!{$($args)*
            login: [
                // A whole login on the target's store and its client: a code issued, then
                // consumed with its session opened (one script on a single server, two
                // steps on a cluster), the access check.
                login_flow,
                // 16 verifications of one code at once through the client's connections
                // (with fred a pool of two): one wins, the rest are counted up to the
                // lockout.
                concurrent_verifications,
            ],
            // Login flows in the target's store: a flow per browser in the address's
            // hash (one slot), bound and unbound verification, a known device's budget and
            // its forgetting, required binding through both adapters.
            flows: [
                strangers_leave_the_owners_flow, known_device_gets_a_code_past_the_caps,
                required_binding, flow_cookies_and_resends,
            ],
            limits: [
                // The lockout: failures kept across a new code, the address's keys in one
                // slot.
                lockout_across_resends,
                // The client IP's budget of wrong codes, checked in the store before the
                // address's keys.
                ip_limited_client_gets_one_answer,
            ],
            refresh: [
                // Rotation, and reuse ending the whole session (the session's keys).
                refresh_rotation_and_reuse,
                // Eight rotations of one token at once within the reuse interval: the
                // grant path of the rotation script, one lineage.
                racing_tabs,
            ],
            sessions: [
                // Every session of a user ended through the user's session index (keys
                // of several sessions).
                logout_all,
                // The session list (the index and each session's data), one ended, the
                // last refresh recorded.
                sessions_list_and_revoke,
            ],
            // A code under the new address's keys, every session of the old address
            // ended, the new session opened, the notice over SMTP.
            email_change: [email_change],
            failures: [
                // A mail that could not be sent: the code discarded in the store; SMTP's
                // 451 and 550 on the Redis targets.
                mail_failures,
                // The session store unavailable at login: 503, the code given back in
                // the target's store, then the same code signs in.
                verify_never_strands_a_code,
            ],
            // The target's store behind the layer: the access check failing (503) and
            // back (200), a logout seen by the next check.
            guards: [layer_protected_sub_router],
            // The admin router on the target's store: an address's state read from its
            // hash, a lock and unlock (the ADMIN script), a sign-in's flow, over SMTP.
            admin: [admin_router],
        }
    };
    (metrics, [$($callback:tt)*], [$($args:tt)*]) => {
        $($callback)*!{$($args)*
            metrics: [metrics],
            limits: [session_cap, mail_caps, ip_verification_failures],
        }
    };
}

/// The scenarios of one set as tests against one adapter and store: `http_scenarios!(full;
/// Axum, Memory)`, `http_scenarios!(smoke; #[ignore] Axum, Redis)`. Attributes written
/// before the target go on every test (the Redis targets are ignored unless the build
/// knows their server). Each topic is a module (`axum_memory::login::login_flow`), and
/// `SCENARIOS` lists the `topic::name` of the tests.
#[macro_export]
macro_rules! http_scenarios {
    ($set:ident; $(#[$attr:meta])* $adapter:ident, $store:ident) => {
        fn target() -> $crate::Target {
            $crate::Target {
                adapter: $crate::Adapter::$adapter,
                store: $crate::Store::$store,
            }
        }
        $crate::scenario_set!($set, [$crate::http_scenarios], [@tests [$(#[$attr])*]]);
    };
    (@tests $attrs:tt $($topic:ident: [$($name:ident),* $(,)?]),* $(,)?) => {
        /// The scenarios run on this target (`topic::name`).
        pub const SCENARIOS: &[&str] =
            &[$($(concat!(stringify!($topic), "::", stringify!($name))),*),*];
        $(
            mod $topic {
                $($crate::http_scenarios!(@test $attrs $topic $name);)*
            }
        )*
    };
    (@test [$($attr:tt)*] $topic:ident $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $name() {
            $crate::scenarios::$topic::$name(super::target()).await;
        }
    };
}

/// The scenarios that read counters of `GET /metrics` (the `metrics` set), as tests against
/// one adapter and store, like [`http_scenarios!`](crate::http_scenarios). The process has
/// one recorder, so each test holds [`crate::metrics_lock`] throughout and compares the
/// counters before and after: instantiate them in a test binary of their own (no other
/// test moves the counters).
#[macro_export]
macro_rules! metrics_scenarios {
    ($(#[$attr:meta])* $adapter:ident, $store:ident) => {
        fn target() -> $crate::Target {
            $crate::Target {
                adapter: $crate::Adapter::$adapter,
                store: $crate::Store::$store,
            }
        }
        $crate::scenario_set!(metrics, [$crate::metrics_scenarios], [@tests [$(#[$attr])*]]);
    };
    (@tests $attrs:tt $($topic:ident: [$($name:ident),* $(,)?]),* $(,)?) => {
        $(
            mod $topic {
                $($crate::metrics_scenarios!(@test $attrs $topic $name);)*
            }
        )*
    };
    (@test [$($attr:tt)*] $topic:ident $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $name() {
            let _only_test_counting = $crate::metrics_lock().await;
            $crate::scenarios::$topic::$name(super::target()).await;
        }
    };
}
