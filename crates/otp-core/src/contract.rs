//! The backend contract suite: every outcome of every [`OtpStore`] and [`TokenBlacklist`]
//! operation, expiry, and atomicity under concurrency. Every backend of this project runs
//! it, and a custom store should too:
//!
//! ```ignore
//! // tests/contract.rs of your crate, with otp-core's `test-util` feature and tokio
//! // (macros, rt-multi-thread) as dev-dependencies:
//! otp_core::contract::otp_store_contract!(my_store, async { std::sync::Arc::new(MyStore::connect().await) });
//! otp_core::contract::blacklist_contract!(my_blacklist, async { std::sync::Arc::new(MyStore::connect().await) });
//! // verify_and_open: the same store as both halves, as `(Arc<dyn OtpStore>, Arc<dyn TokenBlacklist>)`.
//! otp_core::contract::login_contract!(my_login, async { /* (store.clone() as _, store as _) */ });
//! ```
//!
//! A store that needs a server the machine may not have: mark the tests ignored unless
//! the build knows the server, so that a run without it says so instead of passing:
//!
//! ```ignore
//! otp_core::contract::otp_store_contract!(
//!     #[cfg_attr(not(my_server), ignore = "needs MY_SERVER_URL")]
//!     my_store,
//!     async { std::sync::Arc::new(MyStore::connect(&std::env::var("MY_SERVER_URL").unwrap()).await) }
//! );
//! ```
//!
//! Each test uses fresh random keys, so the suites can share one store and run in parallel.
//! Some tests sleep a few seconds to see entries expire.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[doc(inline)]
pub use crate::{blacklist_contract, login_contract, otp_store_contract, outbox_contract};

use std::sync::Arc;
use std::time::Duration;

use crate::code::{AddressKey, Code, CodeHasher, CodeMac, DeviceKey, FlowKey, IpKey};
use crate::email::Email;
use crate::primitives::{now_secs, random_id};
use crate::store::{
    AccessStatus, AddressLimit, AddressOp, AddressStatus, CallId, IssueOutcome, IssueRequest,
    KnownDevice, Limits, LoginMethod, NewSession, OtpStore, Renewal, Revocation, RevokedAccess,
    RotateOutcome, Rotation, SessionAuth, TokenBlacklist, VerifyOutcome, VerifyRequest,
    new_session_id,
};

/// The limits the suite runs with unless a test needs others.
pub fn limits() -> Limits {
    Limits {
        per_address: 5,
        per_address_hour: 100,
        per_address_day: 100,
        resend_cooldown: Duration::ZERO,
        per_ip: 30,
        request_window: Duration::from_secs(60),
        max_attempts: 3,
        lockout: Duration::from_secs(900),
        ip_failures: 1000,
        max_flows: 5,
        known_device_lifetime: Duration::from_secs(90 * 86_400),
    }
}

/// A code issued to a new flow, from an unknown device.
pub const ISSUED: IssueOutcome = IssueOutcome::Issued {
    resent: false,
    known_device: false,
};

/// A fresh address with its key and a code MAC maker.
pub struct Fixture {
    hasher: CodeHasher,
    email: Email,
    /// The address's store key.
    pub address: AddressKey,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("address", &self.address)
            .finish()
    }
}

impl Fixture {
    /// A random address under a random key.
    pub fn new() -> Fixture {
        let hasher = CodeHasher::new(random_id().as_bytes());
        let local = random_id().to_ascii_lowercase().replace(['-', '_'], "x");
        let email = Email::parse(&format!("{local}@contract.example.com"))
            .unwrap_or_else(|e| panic!("fixture address: {e}"));
        let address = hasher.address_key(&email);
        Fixture {
            hasher,
            email,
            address,
        }
    }

    /// The MAC of `code` (six digits) for this address.
    pub fn mac(&self, code: &str) -> CodeMac {
        let code = Code::parse(code, 6).unwrap_or_else(|| panic!("fixture code {code}"));
        self.hasher
            .code_mac(crate::code::Purpose::Login, &self.email, &code)
    }

    /// A new flow's key.
    pub fn flow(&self) -> FlowKey {
        self.hasher.flow_key(&random_id())
    }

    /// A new device's key.
    pub fn device(&self) -> DeviceKey {
        self.hasher.device_key(&random_id())
    }

    /// An issue request for `code` with `limits` from `ip`, starting a new flow from an
    /// unknown device.
    pub fn issue(&self, code: &str, ip: Option<&str>, limits: Limits) -> IssueRequest {
        IssueRequest {
            address: self.address.clone(),
            ip: ip.map(|ip| IpKey::new(ip.parse().unwrap_or_else(|e| panic!("ip {ip}: {e}")))),
            code_mac: self.mac(code),
            code_ttl: Duration::from_secs(300),
            limits,
            call: CallId::random(),
            resend: None,
            flow: self.flow(),
            device: None,
            signed_in: false,
        }
    }

    /// An issue request for `code` to `flow` (a resend when it is pending, else a new
    /// flow of that key).
    pub fn issue_to(&self, code: &str, flow: FlowKey, limits: Limits) -> IssueRequest {
        IssueRequest {
            resend: Some(flow),
            flow,
            ..self.issue(code, None, limits)
        }
    }

    /// An unbound verify request for `code` with `limits`.
    pub fn verify(&self, code: &str, limits: Limits) -> VerifyRequest {
        VerifyRequest {
            address: self.address.clone(),
            code_mac: self.mac(code),
            flow: None,
            ip: None,
            limits,
            code_ttl: Duration::from_secs(300),
            call: CallId::random(),
        }
    }

    /// A verify request for `code` bound to `flow`.
    pub fn verify_in(&self, code: &str, flow: FlowKey, limits: Limits) -> VerifyRequest {
        VerifyRequest {
            flow: Some(flow),
            ..self.verify(code, limits)
        }
    }

    /// A verify request for `code` from `ip` with `limits`.
    pub fn verify_from(&self, code: &str, ip: &str, limits: Limits) -> VerifyRequest {
        VerifyRequest {
            ip: Some(IpKey::new(
                ip.parse().unwrap_or_else(|e| panic!("ip {ip}: {e}")),
            )),
            ..self.verify(code, limits)
        }
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

/// A random IPv4 address in TEST-NET-3, so tests do not share IP buckets.
pub fn random_ip() -> String {
    let n = u32::from_be_bytes(rand::random::<[u8; 4]>());
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

macro_rules! expect {
    ($left:expr, $right:expr, $what:expr) => {{
        let l = $left;
        let r = $right;
        assert!(l == r, "{}: got {:?}, expected {:?}", $what, l, r);
    }};
}

/// A stored code verifies once; a second try finds no code.
pub async fn issue_then_verify_once(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    let ip = random_ip();
    expect!(
        store
            .issue(&f.issue("123456", Some(&ip), limits()))
            .await
            .unwrap(),
        ISSUED,
        "issue"
    );
    expect!(
        store.verify(&f.verify("123456", limits())).await.unwrap(),
        VerifyOutcome::Verified,
        "verify"
    );
    expect!(
        store.verify(&f.verify("123456", limits())).await.unwrap(),
        VerifyOutcome::NoCode { attempts_left: 2 },
        "second verify"
    );
}

/// An address with no code: `NoCode`, counted as a failure exactly like a wrong code
/// (down to a lockout), so the answers to wrong codes do not tell whether a code is pending.
pub async fn verify_without_code(store: Arc<dyn OtpStore>) {
    let (idle, pending) = (Fixture::new(), Fixture::new());
    store
        .issue(&pending.issue("111111", None, limits()))
        .await
        .unwrap();
    for left in [2, 1, 0] {
        expect!(
            store
                .verify(&idle.verify("123456", limits()))
                .await
                .unwrap(),
            VerifyOutcome::NoCode {
                attempts_left: left
            },
            "no code"
        );
        expect!(
            store
                .verify(&pending.verify("123456", limits()))
                .await
                .unwrap(),
            VerifyOutcome::Mismatch {
                attempts_left: left
            },
            "wrong code"
        );
    }
    for f in [&idle, &pending] {
        assert!(
            matches!(
                store.verify(&f.verify("111111", limits())).await.unwrap(),
                VerifyOutcome::LockedOut { .. }
            ),
            "both addresses are locked out alike"
        );
        // The lockout stops unbound guesses only: its owner still gets a code for a flow.
        let flow = f.flow();
        expect!(
            store
                .issue(&f.issue_to("222222", flow, limits()))
                .await
                .unwrap(),
            ISSUED,
            "a code for a flow while unbound verification is locked"
        );
        expect!(
            store
                .verify(&f.verify_in("222222", flow, limits()))
                .await
                .unwrap(),
            VerifyOutcome::Verified,
            "bound, past the lockout"
        );
    }
}

/// Wrong unbound codes count down to a lockout of unbound verification; the pending flow
/// itself is left as it was, and its owner verifies it bound.
pub async fn wrong_codes_lock_out(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    let owner = f.flow();
    store
        .issue(&f.issue_to("123456", owner, limits()))
        .await
        .unwrap();
    expect!(
        store.verify(&f.verify("000001", limits())).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 2 },
        "1st wrong"
    );
    expect!(
        store.verify(&f.verify("000002", limits())).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 1 },
        "2nd wrong"
    );
    expect!(
        store.verify(&f.verify("000003", limits())).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 0 },
        "3rd wrong"
    );
    match store.verify(&f.verify("123456", limits())).await.unwrap() {
        VerifyOutcome::LockedOut { retry_after } => {
            assert!(
                retry_after > Duration::from_secs(890) && retry_after <= Duration::from_secs(900),
                "{retry_after:?}"
            );
        }
        other => panic!("the right code after the cap: {other:?}"),
    }
    expect!(
        store
            .issue(&f.issue("654321", None, limits()))
            .await
            .unwrap(),
        ISSUED,
        "a new flow while unbound verification is locked"
    );
    match store.verify(&f.verify("654321", limits())).await.unwrap() {
        VerifyOutcome::LockedOut { .. } => {}
        other => panic!("an unbound code issued while locked out: {other:?}"),
    }
    expect!(
        store
            .verify(&f.verify_in("123456", owner, limits()))
            .await
            .unwrap(),
        VerifyOutcome::Verified,
        "the owner's flow, bound, untouched by the unbound guesses"
    );
}

/// A resend replaces the code but keeps the failure count.
pub async fn resend_keeps_failures(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    store
        .issue(&f.issue("123456", None, limits()))
        .await
        .unwrap();
    expect!(
        store.verify(&f.verify("000001", limits())).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 2 },
        "1st wrong"
    );
    expect!(
        store.verify(&f.verify("000002", limits())).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 1 },
        "2nd wrong"
    );
    expect!(
        store
            .issue(&f.issue("222222", None, limits()))
            .await
            .unwrap(),
        ISSUED,
        "resend"
    );
    expect!(
        store.verify(&f.verify("123456", limits())).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 0 },
        "old code after resend"
    );
    match store.verify(&f.verify("222222", limits())).await.unwrap() {
        VerifyOutcome::LockedOut { .. } => {}
        other => panic!("new code after the cap: {other:?}"),
    }
}

/// A success resets the failure count.
pub async fn success_resets_failures(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    store
        .issue(&f.issue("123456", None, limits()))
        .await
        .unwrap();
    store.verify(&f.verify("000001", limits())).await.unwrap();
    store.verify(&f.verify("000002", limits())).await.unwrap();
    expect!(
        store.verify(&f.verify("123456", limits())).await.unwrap(),
        VerifyOutcome::Verified,
        "right code"
    );
    store
        .issue(&f.issue("333333", None, limits()))
        .await
        .unwrap();
    expect!(
        store.verify(&f.verify("000003", limits())).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 2 },
        "count restarted"
    );
}

/// A new code replaces the old one.
pub async fn new_code_replaces_old(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    store
        .issue(&f.issue("111111", None, limits()))
        .await
        .unwrap();
    store
        .issue(&f.issue("222222", None, limits()))
        .await
        .unwrap();
    expect!(
        store.verify(&f.verify("111111", limits())).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 2 },
        "old code"
    );
    expect!(
        store.verify(&f.verify("222222", limits())).await.unwrap(),
        VerifyOutcome::Verified,
        "new code"
    );
}

/// The per-address limit refuses the request after the limit and stores nothing.
pub async fn address_limit(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    let l = Limits {
        per_address: 2,
        ..limits()
    };
    expect!(
        store
            .issue(&f.issue("111111", Some(&random_ip()), l))
            .await
            .unwrap(),
        ISSUED,
        "1st"
    );
    expect!(
        store
            .issue(&f.issue("222222", Some(&random_ip()), l))
            .await
            .unwrap(),
        ISSUED,
        "2nd"
    );
    match store
        .issue(&f.issue("333333", Some(&random_ip()), l))
        .await
        .unwrap()
    {
        IssueOutcome::AddressLimited { retry_after, limit } => {
            assert!(
                retry_after > Duration::from_secs(50) && retry_after <= Duration::from_secs(60),
                "{retry_after:?}"
            );
            expect!(limit, AddressLimit::Minute, "the minute window refused");
        }
        other => panic!("3rd request: {other:?}"),
    }
    // The refused request stored nothing: the second code is still the pending one.
    expect!(
        store.verify(&f.verify("222222", l)).await.unwrap(),
        VerifyOutcome::Verified,
        "pending code"
    );
}

/// The per-IP limit spans addresses; no IP means no IP limit.
pub async fn ip_limit(store: Arc<dyn OtpStore>) {
    let ip = random_ip();
    let l = Limits {
        per_ip: 3,
        ..limits()
    };
    for i in 0..3 {
        let f = Fixture::new();
        expect!(
            store.issue(&f.issue("111111", Some(&ip), l)).await.unwrap(),
            ISSUED,
            format!("request {i}")
        );
    }
    let f = Fixture::new();
    match store.issue(&f.issue("111111", Some(&ip), l)).await.unwrap() {
        IssueOutcome::IpLimited { retry_after } => assert!(retry_after <= Duration::from_secs(60)),
        other => panic!("4th request from the IP: {other:?}"),
    }
    expect!(
        store.verify(&f.verify("111111", l)).await.unwrap(),
        VerifyOutcome::NoCode { attempts_left: 2 },
        "refused request stored nothing"
    );
    expect!(
        store.issue(&f.issue("111111", None, l)).await.unwrap(),
        ISSUED,
        "no IP"
    );
    expect!(
        store
            .issue(&Fixture::new().issue("111111", Some(&random_ip()), l))
            .await
            .unwrap(),
        ISSUED,
        "another IP"
    );
}

/// Request windows, codes and lockouts expire.
pub async fn windows_and_codes_expire(store: Arc<dyn OtpStore>) {
    let short = Limits {
        per_address: 1,
        per_ip: 100,
        request_window: Duration::from_secs(1),
        max_attempts: 1,
        lockout: Duration::from_secs(1),
        ..limits()
    };
    // Request window.
    let f = Fixture::new();
    store.issue(&f.issue("111111", None, short)).await.unwrap();
    assert!(matches!(
        store.issue(&f.issue("111111", None, short)).await.unwrap(),
        IssueOutcome::AddressLimited { .. }
    ));
    // Code expiry.
    let g = Fixture::new();
    let mut req = g.issue("222222", None, short);
    req.code_ttl = Duration::from_secs(1);
    store.issue(&req).await.unwrap();
    // Lockout.
    let h = Fixture::new();
    store.issue(&h.issue("333333", None, short)).await.unwrap();
    expect!(
        store.verify(&h.verify("000000", short)).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 0 },
        "wrong"
    );
    assert!(matches!(
        store.verify(&h.verify("333333", short)).await.unwrap(),
        VerifyOutcome::LockedOut { .. }
    ));

    tokio::time::sleep(Duration::from_millis(1300)).await;

    expect!(
        store.issue(&f.issue("444444", None, short)).await.unwrap(),
        ISSUED,
        "after the window"
    );
    expect!(
        store.verify(&g.verify("222222", short)).await.unwrap(),
        VerifyOutcome::NoCode { attempts_left: 0 },
        "expired code"
    );
    store.issue(&h.issue("555555", None, short)).await.unwrap();
    expect!(
        store.verify(&h.verify("555555", short)).await.unwrap(),
        VerifyOutcome::Verified,
        "after the lockout"
    );
}

/// `discard` removes the flow's pending code only if it is the given one.
pub async fn discard_only_matching(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    let (one, two) = (f.flow(), f.flow());
    store
        .issue(&f.issue_to("111111", one, limits()))
        .await
        .unwrap();
    store
        .discard(&f.address, &one, &f.mac("999999"))
        .await
        .unwrap();
    expect!(
        store.verify(&f.verify("111111", limits())).await.unwrap(),
        VerifyOutcome::Verified,
        "other code kept"
    );
    store
        .issue(&f.issue_to("222222", two, limits()))
        .await
        .unwrap();
    store
        .discard(&f.address, &one, &f.mac("222222"))
        .await
        .unwrap();
    expect!(
        store
            .verify(&f.verify_in("333333", two, limits()))
            .await
            .unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 2 },
        "another flow's discard leaves this one"
    );
    store
        .discard(&f.address, &two, &f.mac("222222"))
        .await
        .unwrap();
    expect!(
        store.verify(&f.verify("222222", limits())).await.unwrap(),
        VerifyOutcome::NoCode { attempts_left: 2 },
        "discarded"
    );
    // Discarding does not give the request back.
    let l = Limits {
        per_address: 1,
        ..limits()
    };
    let g = Fixture::new();
    let flow = g.flow();
    store.issue(&g.issue_to("111111", flow, l)).await.unwrap();
    store
        .discard(&g.address, &flow, &g.mac("111111"))
        .await
        .unwrap();
    assert!(matches!(
        store.issue(&g.issue("111111", None, l)).await.unwrap(),
        IssueOutcome::AddressLimited { .. }
    ));
}

/// 16 concurrent verifications of the right code: exactly one success.
pub async fn concurrent_verifications_one_success(store: Arc<dyn OtpStore>) {
    let f = Arc::new(Fixture::new());
    store
        .issue(&f.issue("424242", None, limits()))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (s, f) = (store.clone(), f.clone());
            tokio::spawn(async move { s.verify(&f.verify("424242", limits())).await.unwrap() })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            VerifyOutcome::Verified => wins += 1,
            // The code is spent: the others count as failures, then meet the lockout.
            VerifyOutcome::NoCode { .. } | VerifyOutcome::LockedOut { .. } => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(wins, 1, "successes among 16 concurrent verifications");
}

/// 50 concurrent wrong guesses: exactly `max_attempts` are compared, the rest locked out.
pub async fn concurrent_wrong_guesses_hold_the_cap(store: Arc<dyn OtpStore>) {
    let f = Arc::new(Fixture::new());
    let l = Limits {
        max_attempts: 5,
        ..limits()
    };
    store.issue(&f.issue("424242", None, l)).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (s, f) = (store.clone(), f.clone());
            tokio::spawn(async move {
                s.verify(&f.verify(&format!("{:06}", 500_000 + i), l))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let (mut compared, mut locked) = (0, 0);
    let mut left_seen = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            VerifyOutcome::Mismatch { attempts_left } => {
                compared += 1;
                left_seen.push(attempts_left);
            }
            VerifyOutcome::LockedOut { .. } => locked += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    left_seen.sort_unstable();
    assert_eq!(compared, 5, "guesses compared");
    assert_eq!(locked, 45, "guesses refused by the lockout");
    assert_eq!(left_seen, vec![0, 1, 2, 3, 4], "each count seen once");
    assert!(matches!(
        store.verify(&f.verify("424242", l)).await.unwrap(),
        VerifyOutcome::LockedOut { .. }
    ));
}

/// The hour and day caps refuse like the minute window, each named in the outcome.
pub async fn hour_and_day_caps(store: Arc<dyn OtpStore>) {
    for (l, want, window) in [
        (
            Limits {
                per_address: 100,
                per_address_hour: 2,
                ..limits()
            },
            AddressLimit::Hour,
            Duration::from_secs(3600),
        ),
        (
            Limits {
                per_address: 100,
                per_address_day: 2,
                ..limits()
            },
            AddressLimit::Day,
            Duration::from_secs(86_400),
        ),
    ] {
        let f = Fixture::new();
        for i in 0..2 {
            expect!(
                store.issue(&f.issue("111111", None, l)).await.unwrap(),
                ISSUED,
                format!("{want:?} request {i}")
            );
        }
        match store.issue(&f.issue("222222", None, l)).await.unwrap() {
            IssueOutcome::AddressLimited { retry_after, limit } => {
                expect!(limit, want, "the limit that refused");
                assert!(
                    retry_after > window - Duration::from_secs(60) && retry_after <= window,
                    "{want:?}: {retry_after:?}"
                );
            }
            other => panic!("{want:?}: third request {other:?}"),
        }
        expect!(
            store.verify(&f.verify("111111", l)).await.unwrap(),
            VerifyOutcome::Verified,
            "the refused request stored nothing"
        );
    }
}

/// A resend cooldown refuses a second code while the first is young.
pub async fn resend_cooldown(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    let l = Limits {
        resend_cooldown: Duration::from_secs(30),
        ..limits()
    };
    expect!(
        store.issue(&f.issue("111111", None, l)).await.unwrap(),
        ISSUED,
        "first"
    );
    match store.issue(&f.issue("222222", None, l)).await.unwrap() {
        IssueOutcome::AddressLimited { retry_after, limit } => {
            expect!(limit, AddressLimit::Cooldown, "the limit that refused");
            assert!(
                retry_after > Duration::from_secs(25) && retry_after <= Duration::from_secs(30),
                "{retry_after:?}"
            );
        }
        other => panic!("second request: {other:?}"),
    }
    expect!(
        store.verify(&f.verify("111111", l)).await.unwrap(),
        VerifyOutcome::Verified,
        "the first code stands"
    );
}

/// The same issue or verify call resent (a client library's retry) is answered again and
/// counted once.
pub async fn resent_calls_count_once(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    let l = Limits {
        per_address: 1,
        ..limits()
    };
    let issue = f.issue("111111", None, l);
    for what in ["issue", "issue resent"] {
        expect!(store.issue(&issue).await.unwrap(), ISSUED, what);
    }
    assert!(
        matches!(
            store.issue(&f.issue("111111", None, l)).await.unwrap(),
            IssueOutcome::AddressLimited { .. }
        ),
        "a new request is over the limit of one"
    );
    let wrong = f.verify("000000", l);
    for what in ["wrong code", "wrong code resent"] {
        expect!(
            store.verify(&wrong).await.unwrap(),
            VerifyOutcome::Mismatch { attempts_left: 2 },
            what
        );
    }
    let right = f.verify("111111", l);
    for what in ["right code", "right code resent"] {
        expect!(
            store.verify(&right).await.unwrap(),
            VerifyOutcome::Verified,
            what
        );
    }
    expect!(
        store.verify(&f.verify("111111", l)).await.unwrap(),
        VerifyOutcome::NoCode { attempts_left: 2 },
        "a new call finds the code spent"
    );
}

/// Wrong codes count against the client's IP across addresses, whether or not a code is
/// pending; past the limit the IP gets `IpLimited` for every address (pending code or not)
/// and nothing is compared or counted, while other IPs go on.
pub async fn ip_failures_span_addresses(store: Arc<dyn OtpStore>) {
    let ip = random_ip();
    let l = Limits {
        ip_failures: 2,
        ..limits()
    };
    let (a, b, c, idle) = (
        Fixture::new(),
        Fixture::new(),
        Fixture::new(),
        Fixture::new(),
    );
    for f in [&a, &c] {
        store.issue(&f.issue("111111", None, l)).await.unwrap();
    }
    // `b` has no code: its guess counts against the IP all the same.
    for (f, what) in [(&a, "a"), (&b, "b")] {
        assert!(
            store
                .verify(&f.verify_from("000000", &ip, l))
                .await
                .unwrap()
                .is_failure(),
            "wrong code for {what}"
        );
    }
    for (f, what) in [(&c, "pending"), (&idle, "idle")] {
        match store
            .verify(&f.verify_from("111111", &ip, l))
            .await
            .unwrap()
        {
            VerifyOutcome::IpLimited { retry_after } => assert!(
                retry_after > Duration::from_secs(3500) && retry_after <= Duration::from_secs(3600),
                "{retry_after:?}"
            ),
            other => panic!("{what} address from the limited IP: {other:?}"),
        }
    }
    expect!(
        store
            .verify(&idle.verify_from("000000", &random_ip(), l))
            .await
            .unwrap(),
        VerifyOutcome::NoCode { attempts_left: 2 },
        "the limited IP's guess at the idle address was not counted"
    );
    expect!(
        store
            .verify(&c.verify_from("111111", &random_ip(), l))
            .await
            .unwrap(),
        VerifyOutcome::Verified,
        "nothing was compared for the limited IP; another IP verifies"
    );
}

/// `restore` gives back the flow a verification consumed (bound: that flow; unbound: the
/// one the same call consumed), unless that flow is pending again.
pub async fn restore_unless_newer(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    let l = limits();
    store.issue(&f.issue("111111", None, l)).await.unwrap();
    let req = f.verify("111111", l);
    expect!(
        store.verify(&req).await.unwrap(),
        VerifyOutcome::Verified,
        "consume"
    );
    store.restore(&req).await.unwrap();
    expect!(
        store.verify(&f.verify("111111", l)).await.unwrap(),
        VerifyOutcome::Verified,
        "restored (unbound: the flow the call consumed)"
    );
    let flow = f.flow();
    store.issue(&f.issue_to("333333", flow, l)).await.unwrap();
    let req = f.verify_in("333333", flow, l);
    expect!(
        store.verify(&req).await.unwrap(),
        VerifyOutcome::Verified,
        "consume bound"
    );
    store.restore(&req).await.unwrap();
    expect!(
        store.verify(&f.verify_in("333333", flow, l)).await.unwrap(),
        VerifyOutcome::Verified,
        "restored (bound)"
    );
    store.issue(&f.issue_to("444444", flow, l)).await.unwrap();
    let req = f.verify_in("444444", flow, l);
    store.verify(&req).await.unwrap();
    store.issue(&f.issue_to("555555", flow, l)).await.unwrap();
    store.restore(&req).await.unwrap();
    expect!(
        store.verify(&f.verify_in("555555", flow, l)).await.unwrap(),
        VerifyOutcome::Verified,
        "the flow's newer code stayed"
    );
}

/// Availability: a stranger's wrong guesses, bound to flows of their own or to none, and
/// their code requests, leave the owner's pending flow working, and a bound verification
/// compares only its own flow's code.
pub async fn strangers_leave_the_owners_flow(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    let l = limits();
    let owner = f.flow();
    store.issue(&f.issue_to("123456", owner, l)).await.unwrap();
    // Two flows of the stranger's own (the address's code requests).
    let (s1, s2) = (f.flow(), f.flow());
    store.issue(&f.issue_to("000001", s1, l)).await.unwrap();
    store.issue(&f.issue_to("000002", s2, l)).await.unwrap();
    // Eight wrong guesses: three on each of the stranger's flows (which end them) and
    // unbound ones until the address is locked for unbound verification.
    for (flow, left) in [(s1, 2), (s1, 1), (s1, 0), (s2, 2), (s2, 1), (s2, 0)] {
        expect!(
            store.verify(&f.verify_in("999999", flow, l)).await.unwrap(),
            VerifyOutcome::Mismatch {
                attempts_left: left
            },
            "a stranger's bound guess"
        );
    }
    expect!(
        store.verify(&f.verify_in("000001", s1, l)).await.unwrap(),
        VerifyOutcome::NoCode { attempts_left: 3 },
        "a flow that used its attempts has ended"
    );
    for _ in 0..3 {
        assert!(
            store
                .verify(&f.verify("999999", l))
                .await
                .unwrap()
                .is_failure()
        );
    }
    assert!(matches!(
        store.verify(&f.verify("123456", l)).await.unwrap(),
        VerifyOutcome::LockedOut { .. }
    ));
    // The owner's code, presented with another flow, is compared with that flow's only.
    expect!(
        store
            .verify(&f.verify_in("123456", f.flow(), l))
            .await
            .unwrap(),
        VerifyOutcome::NoCode { attempts_left: 3 },
        "the right code with a flow that is not the owner's"
    );
    expect!(
        store
            .verify(&f.verify_in("123456", owner, l))
            .await
            .unwrap(),
        VerifyOutcome::Verified,
        "the owner's flow"
    );
}

/// A resend to a pending flow replaces its code and keeps its failures; other flows keep
/// their codes (a code request from elsewhere replaces nobody's code).
pub async fn flows_resend_and_coexist(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    let l = limits();
    let (a, b) = (f.flow(), f.flow());
    store.issue(&f.issue_to("111111", a, l)).await.unwrap();
    store.issue(&f.issue_to("222222", b, l)).await.unwrap();
    expect!(
        store.verify(&f.verify_in("000000", a, l)).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 2 },
        "a wrong code in flow a"
    );
    expect!(
        store.issue(&f.issue_to("333333", a, l)).await.unwrap(),
        IssueOutcome::Issued {
            resent: true,
            known_device: false
        },
        "a resend to flow a"
    );
    expect!(
        store.verify(&f.verify_in("111111", a, l)).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 1 },
        "the resend replaced a's code and kept its failure"
    );
    expect!(
        store.verify(&f.verify_in("222222", b, l)).await.unwrap(),
        VerifyOutcome::Verified,
        "b's code survived a's requests"
    );
    // Unbound verification compares the most recent flow's code.
    let c = f.flow();
    store.issue(&f.issue_to("444444", c, l)).await.unwrap();
    expect!(
        store.verify(&f.verify("333333", l)).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 2 },
        "unbound: not the older flow's code"
    );
    expect!(
        store.verify(&f.verify("444444", l)).await.unwrap(),
        VerifyOutcome::Verified,
        "unbound: the most recent flow's code"
    );
    expect!(
        store.verify(&f.verify_in("333333", a, l)).await.unwrap(),
        VerifyOutcome::Verified,
        "the unbound failure left flow a alone"
    );
}

/// At `max_flows` a new flow of an unknown device ends the least recently issued flow of an
/// unknown device, never a known device's or a signed-in user's; with only those pending
/// it is refused.
pub async fn flow_cap_spares_known_devices(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    let l = Limits {
        max_flows: 2,
        ..limits()
    };
    let device = KnownDevice {
        key: f.device(),
        since: now_secs().saturating_sub(10),
    };
    let known = f.flow();
    let req = IssueRequest {
        device: Some(device),
        ..f.issue_to("111111", known, l)
    };
    expect!(
        store.issue(&req).await.unwrap(),
        IssueOutcome::Issued {
            resent: false,
            known_device: true
        },
        "a known device's flow"
    );
    let signed = f.flow();
    let req = IssueRequest {
        signed_in: true,
        ..f.issue_to("222222", signed, l)
    };
    store.issue(&req).await.unwrap();
    match store.issue(&f.issue("333333", None, l)).await.unwrap() {
        IssueOutcome::AddressLimited {
            limit: AddressLimit::Flows,
            retry_after,
        } => assert!(retry_after <= Duration::from_secs(300), "{retry_after:?}"),
        other => panic!("a stranger's flow with no room: {other:?}"),
    }
    let g = Fixture::new();
    let (old, new) = (g.flow(), g.flow());
    store.issue(&g.issue_to("444444", old, l)).await.unwrap();
    store.issue(&g.issue_to("555555", new, l)).await.unwrap();
    store.issue(&g.issue("666666", None, l)).await.unwrap();
    expect!(
        store.verify(&g.verify_in("444444", old, l)).await.unwrap(),
        VerifyOutcome::NoCode { attempts_left: 3 },
        "the oldest unknown flow was ended"
    );
    expect!(
        store.verify(&g.verify_in("555555", new, l)).await.unwrap(),
        VerifyOutcome::Verified,
        "the newer one stayed"
    );
    for (code, flow) in [("111111", known), ("222222", signed)] {
        expect!(
            store.verify(&f.verify_in(code, flow, l)).await.unwrap(),
            VerifyOutcome::Verified,
            "known and signed-in flows survive strangers"
        );
    }
}

/// A known device's requests count against its own budget, not the address's caps that
/// strangers use up; once the address forgets its devices, the device is a stranger.
pub async fn known_devices_have_their_own_budget(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    let l = Limits {
        per_address: 2,
        ..limits()
    };
    for _ in 0..2 {
        store.issue(&f.issue("000000", None, l)).await.unwrap();
    }
    assert!(matches!(
        store.issue(&f.issue("000000", None, l)).await.unwrap(),
        IssueOutcome::AddressLimited {
            limit: AddressLimit::Minute,
            ..
        }
    ));
    let device = KnownDevice {
        key: f.device(),
        since: now_secs().saturating_sub(10),
    };
    let mine = f.flow();
    for (i, expected) in [(0, false), (1, true)] {
        let req = IssueRequest {
            device: Some(device),
            ..f.issue_to(&format!("12345{i}"), mine, l)
        };
        expect!(
            store.issue(&req).await.unwrap(),
            IssueOutcome::Issued {
                resent: expected,
                known_device: true
            },
            "a known device past the address's cap"
        );
    }
    let req = IssueRequest {
        device: Some(device),
        ..f.issue_to("123452", mine, l)
    };
    assert!(
        matches!(
            store.issue(&req).await.unwrap(),
            IssueOutcome::AddressLimited {
                limit: AddressLimit::Minute,
                ..
            }
        ),
        "the device's own minute budget"
    );
    expect!(
        store.verify(&f.verify_in("123451", mine, l)).await.unwrap(),
        VerifyOutcome::Verified,
        "the known device's code"
    );
    store.forget_devices(&f.address, &l).await.unwrap();
    let req = IssueRequest {
        device: Some(device),
        ..f.issue("222222", None, l)
    };
    assert!(
        matches!(
            store.issue(&req).await.unwrap(),
            IssueOutcome::AddressLimited { .. }
        ),
        "a forgotten device counts against the address again"
    );
    let later = KnownDevice {
        since: now_secs() + 2,
        ..device
    };
    let req = IssueRequest {
        device: Some(later),
        ..f.issue("333333", None, l)
    };
    assert!(
        matches!(
            store.issue(&req).await.unwrap(),
            IssueOutcome::Issued {
                known_device: true,
                ..
            }
        ),
        "a device cookie set after the forgetting is known"
    );
}

/// A signed-in user's flow is never verified unbound.
pub async fn signed_in_flows_stay_bound(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    let l = limits();
    let session = f.flow();
    let req = IssueRequest {
        signed_in: true,
        ..f.issue_to("777777", session, l)
    };
    store.issue(&req).await.unwrap();
    expect!(
        store.verify(&f.verify("777777", l)).await.unwrap(),
        VerifyOutcome::NoCode { attempts_left: 2 },
        "unbound"
    );
    expect!(
        store
            .verify(&f.verify_in("777777", session, l))
            .await
            .unwrap(),
        VerifyOutcome::Verified,
        "bound to its session"
    );
}

/// An administrator's lock withholds codes ([`IssueOutcome::Locked`]): a request is counted
/// and refused by the limits like anyone's, its flow holds a code nobody can present; the
/// lock ends the pending flows; unlocking ends it and the lockout of unbound guesses with
/// their failures; a lock ends by itself at its time. The status reports each.
pub async fn admin_lock_and_unlock(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    let l = limits();
    let read = || store.administer(&f.address, &AddressOp::Read, &l);
    expect!(
        read().await.unwrap(),
        AddressStatus::default(),
        "a new address"
    );
    expect!(
        store.issue(&f.issue("111111", None, l)).await.unwrap(),
        ISSUED,
        "issue"
    );
    let before = crate::primitives::now_secs() * 1000;
    let lock = AddressOp::Lock {
        duration: Duration::from_secs(3600),
    };
    let locked = store.administer(&f.address, &lock, &l).await.unwrap();
    let until = locked.admin_locked_until.expect("locked");
    assert!(
        (before + 3_590_000..=before + 3_610_000).contains(&until),
        "locked for an hour from now: {until} vs {before}"
    );
    expect!(
        (locked.flows, locked.minute),
        (0, 1),
        "pending flows end; the count stays"
    );
    expect!(
        store.issue(&f.issue("222222", None, l)).await.unwrap(),
        IssueOutcome::Locked { resent: false },
        "a request while locked"
    );
    expect!(read().await.unwrap().minute, 2, "counted like anyone's");
    expect!(
        store.verify(&f.verify("111111", l)).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 2 },
        "the code pending at the lock"
    );
    expect!(
        store.verify(&f.verify("222222", l)).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 1 },
        "nor the one asked for while locked"
    );
    // Locked or not, the same answers to the same requests: the minute's cap refuses
    // the sixth of both.
    let (locked, open) = (Fixture::new(), Fixture::new());
    store.administer(&locked.address, &lock, &l).await.unwrap();
    for i in 0..6 {
        let a = store.issue(&locked.issue("333333", None, l)).await.unwrap();
        let b = store.issue(&open.issue("333333", None, l)).await.unwrap();
        match (a, b) {
            (IssueOutcome::Locked { resent: false }, ISSUED) if i < 5 => {}
            (
                IssueOutcome::AddressLimited { limit: x, .. },
                IssueOutcome::AddressLimited { limit: y, .. },
            ) if i == 5 && x == y => {}
            other => panic!("request {i}: locked and open differ: {other:?}"),
        }
    }
    let unlocked = store
        .administer(&f.address, &AddressOp::Unlock, &l)
        .await
        .unwrap();
    expect!(
        (unlocked.admin_locked_until, unlocked.failures),
        (None, 0),
        "unlocked, failures cleared"
    );
    // Lock out unbound guesses, then unlock.
    for _ in 0..3 {
        store.verify(&f.verify("000000", l)).await.unwrap();
    }
    let out = read().await.unwrap();
    assert!(out.locked_out_until.is_some(), "locked out: {out:?}");
    expect!(out.failures, 3, "three failures");
    let unlocked = store
        .administer(&f.address, &AddressOp::Unlock, &l)
        .await
        .unwrap();
    expect!(
        (unlocked.locked_out_until, unlocked.failures),
        (None, 0),
        "the lockout ends"
    );
    expect!(
        store.issue(&f.issue("333333", None, l)).await.unwrap(),
        ISSUED,
        "issue again"
    );
    expect!(
        store.verify(&f.verify("333333", l)).await.unwrap(),
        VerifyOutcome::Verified,
        "verified after unlocking"
    );
    // A short lock ends by itself.
    let short = AddressOp::Lock {
        duration: Duration::from_millis(1500),
    };
    store.administer(&f.address, &short, &l).await.unwrap();
    expect!(
        store.issue(&f.issue("444444", None, l)).await.unwrap(),
        IssueOutcome::Locked { resent: false },
        "within the short lock"
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    expect!(
        read().await.unwrap().admin_locked_until,
        None,
        "the lock ended"
    );
    expect!(
        store.issue(&f.issue("444444", None, l)).await.unwrap(),
        ISSUED,
        "after it"
    );
}

/// An administrator's sign-in starts a flow with its own lifetime, outside the request
/// windows, verified bound only; no unknown device's request ends it; a code issued
/// after it gets the usual lifetime; none is issued while the address is locked.
pub async fn admin_sign_in_flows(store: Arc<dyn OtpStore>) {
    let f = Fixture::new();
    let l = Limits {
        max_flows: 2,
        per_address: 3,
        ..limits()
    };
    let flow = f.flow();
    let issue = AddressOp::Issue {
        flow,
        code_mac: f.mac("123456"),
        ttl: Duration::from_secs(86_400),
    };
    let status = store.administer(&f.address, &issue, &l).await.unwrap();
    expect!(
        (status.issued, status.flows, status.minute),
        (true, 1, 0),
        "issued, not counted"
    );
    for code in ["000001", "000002", "000003"] {
        expect!(
            store.issue(&f.issue(code, None, l)).await.unwrap(),
            ISSUED,
            code
        );
    }
    let limited = store.issue(&f.issue("000004", None, l)).await.unwrap();
    assert!(
        matches!(
            limited,
            IssueOutcome::AddressLimited {
                limit: AddressLimit::Minute,
                ..
            }
        ),
        "the window holds for others: {limited:?}"
    );
    expect!(
        store.verify(&f.verify("123456", l)).await.unwrap(),
        VerifyOutcome::Mismatch { attempts_left: 2 },
        "never compared unbound (the latest unknown flow is)"
    );
    expect!(
        store.verify(&f.verify("000003", l)).await.unwrap(),
        VerifyOutcome::Verified,
        "the latest code keeps its place despite the sign-in's longer life"
    );
    expect!(
        store.verify(&f.verify_in("123456", flow, l)).await.unwrap(),
        VerifyOutcome::Verified,
        "bound, after three unknown flows at a cap of two"
    );
    store
        .administer(
            &f.address,
            &AddressOp::Lock {
                duration: Duration::from_secs(60),
            },
            &l,
        )
        .await
        .unwrap();
    let refused = store.administer(&f.address, &issue, &l).await.unwrap();
    expect!(
        (refused.issued, refused.flows),
        (false, 0),
        "not while locked"
    );
}

/// Runs every [`OtpStore`] test in sequence (the macro runs them as separate tests).
pub async fn otp_store_all(store: Arc<dyn OtpStore>) {
    issue_then_verify_once(store.clone()).await;
    verify_without_code(store.clone()).await;
    wrong_codes_lock_out(store.clone()).await;
    resend_keeps_failures(store.clone()).await;
    success_resets_failures(store.clone()).await;
    new_code_replaces_old(store.clone()).await;
    address_limit(store.clone()).await;
    ip_limit(store.clone()).await;
    windows_and_codes_expire(store.clone()).await;
    discard_only_matching(store.clone()).await;
    concurrent_verifications_one_success(store.clone()).await;
    concurrent_wrong_guesses_hold_the_cap(store.clone()).await;
    hour_and_day_caps(store.clone()).await;
    resend_cooldown(store.clone()).await;
    resent_calls_count_once(store.clone()).await;
    ip_failures_span_addresses(store.clone()).await;
    restore_unless_newer(store.clone()).await;
    strangers_leave_the_owners_flow(store.clone()).await;
    flows_resend_and_coexist(store.clone()).await;
    flow_cap_spares_known_devices(store.clone()).await;
    known_devices_have_their_own_budget(store.clone()).await;
    signed_in_flows_stay_bound(store.clone()).await;
    admin_lock_and_unlock(store.clone()).await;
    admin_sign_in_flows(store).await;
}

fn session(subject_key: &str, lifetime: u64) -> NewSession {
    NewSession {
        sid: new_session_id(subject_key),
        subject_key: subject_key.to_owned(),
        refresh_jti: random_id(),
        expires_at: now_secs() + lifetime,
        user_agent: Some("contract-suite/1.0".to_owned()),
        ip: Some("192.0.2.1".to_owned()),
        max_sessions: 1000,
        auth: *LOGIN,
    }
}

/// The login authentication of the suite's sessions: a code, when the process first
/// asked (a session's creation time is its login's).
static LOGIN: std::sync::LazyLock<SessionAuth> = std::sync::LazyLock::new(|| SessionAuth {
    at: now_secs(),
    method: LoginMethod::Code,
});

/// A renewal of `sid` with `auth`.
fn renewal(sid: &str, auth: SessionAuth) -> Renewal {
    Renewal {
        sid: sid.to_owned(),
        auth,
        expires_at: now_secs() + 60,
    }
}

/// A session keeps its login's authentication through rotations; a renewal replaces it
/// (rotations and reissues then answer the new one), keeping the rest of the session. An
/// ended or unknown session is not renewed.
pub async fn renewal_records_the_authentication(bl: Arc<dyn TokenBlacklist>) {
    let s = session(&random_id(), 3600);
    bl.create_session(&s).await.unwrap();
    let b = random_id();
    expect!(
        bl.rotate_refresh(&rotation(&s.sid, &s.refresh_jti, &b, 5))
            .await
            .unwrap(),
        RotateOutcome::Rotated { auth: *LOGIN },
        "the login's authentication"
    );
    let again = SessionAuth {
        at: LOGIN.at + 600,
        method: LoginMethod::Link,
    };
    expect!(
        bl.renew_session(&renewal(&s.sid, again)).await.unwrap(),
        true,
        "renew a live session"
    );
    expect!(
        bl.rotate_refresh(&rotation(&s.sid, &s.refresh_jti, &random_id(), 5))
            .await
            .unwrap(),
        RotateOutcome::Reissued {
            current_jti: b.clone(),
            auth: again,
        },
        "a reissue answers the renewed authentication"
    );
    let c = random_id();
    expect!(
        bl.rotate_refresh(&rotation(&s.sid, &b, &c, 5))
            .await
            .unwrap(),
        RotateOutcome::Rotated { auth: again },
        "a rotation answers the renewed authentication"
    );
    let listed = bl.list_sessions(&s.subject_key).await.unwrap();
    expect!(listed.len(), 1, "one session listed");
    expect!(
        listed[0].user_agent.as_deref(),
        Some("contract-suite/1.0"),
        "the renewal keeps the user agent"
    );
    expect!(
        listed[0].ip.as_deref(),
        Some("192.0.2.1"),
        "the renewal keeps the IP"
    );
    expect!(
        listed[0].created_at,
        LOGIN.at,
        "the creation time is the login's, kept by the renewal"
    );

    // An ended session is not renewed.
    let third = SessionAuth {
        at: LOGIN.at + 900,
        method: LoginMethod::Code,
    };
    let t = session(&random_id(), 3600);
    bl.create_session(&t).await.unwrap();
    bl.revoke(&Revocation {
        access: None,
        sessions: vec![t.sid.clone()],
    })
    .await
    .unwrap();
    expect!(
        bl.renew_session(&renewal(&t.sid, third)).await.unwrap(),
        false,
        "an ended session is not renewed"
    );
    expect!(
        bl.renew_session(&renewal(&new_session_id(&random_id()), third))
            .await
            .unwrap(),
        false,
        "an unknown session is not renewed"
    );
}

/// A rotation of `presented` to `new` in session `sid`, an hour's life, with a reuse
/// interval of `interval` seconds.
pub fn rotation(sid: &str, presented: &str, new: &str, interval: u64) -> Rotation {
    Rotation {
        sid: sid.to_owned(),
        presented_jti: presented.to_owned(),
        new_jti: new.to_owned(),
        new_expires_at: now_secs() + 3600,
        reuse_interval: Duration::from_secs(interval),
    }
}

/// Create, check, rotate, reuse detection, and the end of a session.
pub async fn session_rotation_and_reuse(bl: Arc<dyn TokenBlacklist>) {
    let s = session(&random_id(), 3600);
    bl.create_session(&s).await.unwrap();
    let access = random_id();
    expect!(
        bl.check_access(&s.sid, &access).await.unwrap(),
        AccessStatus::Active,
        "fresh session"
    );
    let second = random_id();
    expect!(
        bl.rotate_refresh(&rotation(&s.sid, &s.refresh_jti, &second, 0))
            .await
            .unwrap(),
        RotateOutcome::Rotated { auth: *LOGIN },
        "rotate"
    );
    let third = random_id();
    expect!(
        bl.rotate_refresh(&rotation(&s.sid, &second, &third, 0))
            .await
            .unwrap(),
        RotateOutcome::Rotated { auth: *LOGIN },
        "rotate again"
    );
    // The first token again: reuse, the session dies.
    expect!(
        bl.rotate_refresh(&rotation(&s.sid, &s.refresh_jti, &random_id(), 0))
            .await
            .unwrap(),
        RotateOutcome::Reused,
        "reuse"
    );
    expect!(
        bl.check_access(&s.sid, &access).await.unwrap(),
        AccessStatus::Revoked,
        "access after reuse"
    );
    expect!(
        bl.rotate_refresh(&rotation(&s.sid, &third, &random_id(), 0))
            .await
            .unwrap(),
        RotateOutcome::Unknown,
        "current token after reuse"
    );
}

/// Unknown sessions are revoked for access and unknown for rotation.
pub async fn unknown_session(bl: Arc<dyn TokenBlacklist>) {
    let sid = new_session_id(&random_id());
    expect!(
        bl.check_access(&sid, &random_id()).await.unwrap(),
        AccessStatus::Revoked,
        "check"
    );
    expect!(
        bl.rotate_refresh(&rotation(&sid, &random_id(), &random_id(), 0))
            .await
            .unwrap(),
        RotateOutcome::Unknown,
        "rotate"
    );
}

/// Revoking one access token leaves its session's other tokens alone; revoking the
/// session ends them all.
pub async fn revoke_access_and_session(bl: Arc<dyn TokenBlacklist>) {
    let s = session(&random_id(), 3600);
    bl.create_session(&s).await.unwrap();
    let (a1, a2) = (random_id(), random_id());
    bl.revoke(&Revocation {
        access: Some(RevokedAccess {
            sid: s.sid.clone(),
            jti: a1.clone(),
            expires_at: now_secs() + 60,
        }),
        sessions: vec![],
    })
    .await
    .unwrap();
    expect!(
        bl.check_access(&s.sid, &a1).await.unwrap(),
        AccessStatus::Revoked,
        "revoked jti"
    );
    expect!(
        bl.check_access(&s.sid, &a2).await.unwrap(),
        AccessStatus::Active,
        "other jti"
    );
    bl.revoke(&Revocation {
        access: None,
        sessions: vec![s.sid.clone()],
    })
    .await
    .unwrap();
    expect!(
        bl.check_access(&s.sid, &a2).await.unwrap(),
        AccessStatus::Revoked,
        "after session revoked"
    );
    expect!(
        bl.rotate_refresh(&rotation(&s.sid, &s.refresh_jti, &random_id(), 0))
            .await
            .unwrap(),
        RotateOutcome::Unknown,
        "rotate after revoke"
    );
    // Revoking twice, or unknown sessions, is fine.
    bl.revoke(&Revocation {
        access: None,
        sessions: vec![s.sid.clone(), new_session_id(&random_id())],
    })
    .await
    .unwrap();
}

/// `revoke_all` ends every session of one subject and no other; `list_sessions` lists them.
pub async fn revoke_all_and_list(bl: Arc<dyn TokenBlacklist>) {
    let (alice, bob) = (random_id(), random_id());
    let a1 = session(&alice, 3600);
    let a2 = session(&alice, 3600);
    let b1 = session(&bob, 3600);
    for s in [&a1, &a2, &b1] {
        bl.create_session(s).await.unwrap();
    }
    let listed = bl.list_sessions(&alice).await.unwrap();
    let mut sids: Vec<_> = listed.iter().map(|s| s.sid.clone()).collect();
    sids.sort();
    let mut want = vec![a1.sid.clone(), a2.sid.clone()];
    want.sort();
    assert_eq!(sids, want, "alice's sessions");
    let first = &listed[0];
    assert_eq!(first.user_agent.as_deref(), Some("contract-suite/1.0"));
    assert_eq!(first.ip.as_deref(), Some("192.0.2.1"));
    expect!(first.created_at, LOGIN.at, "created at the login's time");
    assert!(first.expires_at > now_secs());

    expect!(bl.revoke_all(&alice).await.unwrap(), 2, "sessions ended");
    expect!(
        bl.check_access(&a1.sid, &random_id()).await.unwrap(),
        AccessStatus::Revoked,
        "a1"
    );
    expect!(
        bl.check_access(&a2.sid, &random_id()).await.unwrap(),
        AccessStatus::Revoked,
        "a2"
    );
    expect!(
        bl.check_access(&b1.sid, &random_id()).await.unwrap(),
        AccessStatus::Active,
        "bob untouched"
    );
    assert!(bl.list_sessions(&alice).await.unwrap().is_empty());
    expect!(bl.revoke_all(&alice).await.unwrap(), 0, "nothing left");
}

/// Sessions and revocations expire.
pub async fn sessions_expire(bl: Arc<dyn TokenBlacklist>) {
    let s = session(&random_id(), 2);
    bl.create_session(&s).await.unwrap();
    let t = session(&random_id(), 3600);
    bl.create_session(&t).await.unwrap();
    let jti = random_id();
    bl.revoke(&Revocation {
        access: Some(RevokedAccess {
            sid: t.sid.clone(),
            jti: jti.clone(),
            expires_at: now_secs() + 2,
        }),
        sessions: vec![],
    })
    .await
    .unwrap();
    expect!(
        bl.check_access(&t.sid, &jti).await.unwrap(),
        AccessStatus::Revoked,
        "revoked jti"
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    expect!(
        bl.check_access(&s.sid, &random_id()).await.unwrap(),
        AccessStatus::Revoked,
        "expired session"
    );
    expect!(
        bl.rotate_refresh(&rotation(&s.sid, &s.refresh_jti, &random_id(), 0))
            .await
            .unwrap(),
        RotateOutcome::Unknown,
        "rotate expired"
    );
    // The revocation entry is gone once the token it blocked has expired (that token can no
    // longer pass the signature check anyway): the jti reads as usable again.
    expect!(
        bl.check_access(&t.sid, &jti).await.unwrap(),
        AccessStatus::Active,
        "revocation expired with its token"
    );
    assert!(bl.list_sessions(&s.subject_key).await.unwrap().is_empty());
}

/// 20 concurrent rotations of one refresh token, strict (no reuse interval): at most one
/// succeeds, and the rest see reuse (which ends the session) or an ended session.
pub async fn concurrent_rotations_at_most_one(bl: Arc<dyn TokenBlacklist>) {
    let s = Arc::new(session(&random_id(), 3600));
    bl.create_session(&s).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (bl, s) = (bl.clone(), s.clone());
            tokio::spawn(async move {
                bl.rotate_refresh(&rotation(&s.sid, &s.refresh_jti, &random_id(), 0))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut rotated = 0;
    for t in tasks {
        if t.await.unwrap() == (RotateOutcome::Rotated { auth: *LOGIN }) {
            rotated += 1;
        }
    }
    assert!(rotated <= 1, "{rotated} concurrent rotations succeeded");
    assert_eq!(rotated, 1, "the first rotation must succeed");
    // Reuse was detected by the others: the session is gone.
    expect!(
        bl.check_access(&s.sid, &random_id()).await.unwrap(),
        AccessStatus::Revoked,
        "session after reuse"
    );
}

/// 20 concurrent refreshes of one token within the reuse interval: one rotates, the rest
/// get the same current token re-issued; the session lives on one lineage.
pub async fn concurrent_rotations_one_lineage(bl: Arc<dyn TokenBlacklist>) {
    let s = Arc::new(session(&random_id(), 3600));
    bl.create_session(&s).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (bl, s) = (bl.clone(), s.clone());
            tokio::spawn(async move {
                let new = random_id();
                let out = bl
                    .rotate_refresh(&rotation(&s.sid, &s.refresh_jti, &new, 10))
                    .await
                    .unwrap();
                (new, out)
            })
        })
        .collect();
    let (mut rotated, mut current) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            (new, RotateOutcome::Rotated { auth }) if auth == *LOGIN => rotated.push(new),
            (_, RotateOutcome::Reissued { current_jti, auth }) if auth == *LOGIN => {
                current.push(current_jti)
            }
            (_, other) => panic!("a refresh within the interval got {other:?}"),
        }
    }
    assert_eq!(rotated.len(), 1, "exactly one rotation");
    assert_eq!(current.len(), 19);
    assert!(
        current.iter().all(|c| *c == rotated[0]),
        "every reissue names the one current token"
    );
    expect!(
        bl.check_access(&s.sid, &random_id()).await.unwrap(),
        AccessStatus::Active,
        "the session lives"
    );
    expect!(
        bl.rotate_refresh(&rotation(&s.sid, &rotated[0], &random_id(), 10))
            .await
            .unwrap(),
        RotateOutcome::Rotated { auth: *LOGIN },
        "the lineage refreshes on"
    );
}

/// Within the interval only the immediate parent is accepted; a grandparent, or the
/// parent after the interval, is reuse and ends the session.
pub async fn reuse_interval_parent_only(bl: Arc<dyn TokenBlacklist>) {
    let s = session(&random_id(), 3600);
    bl.create_session(&s).await.unwrap();
    let (b, c) = (random_id(), random_id());
    bl.rotate_refresh(&rotation(&s.sid, &s.refresh_jti, &b, 5))
        .await
        .unwrap();
    expect!(
        bl.rotate_refresh(&rotation(&s.sid, &s.refresh_jti, &random_id(), 5))
            .await
            .unwrap(),
        RotateOutcome::Reissued {
            current_jti: b.clone(),
            auth: *LOGIN,
        },
        "the parent within the interval"
    );
    expect!(
        bl.rotate_refresh(&rotation(&s.sid, &b, &c, 5))
            .await
            .unwrap(),
        RotateOutcome::Rotated { auth: *LOGIN },
        "the current token rotates"
    );
    expect!(
        bl.rotate_refresh(&rotation(&s.sid, &s.refresh_jti, &random_id(), 5))
            .await
            .unwrap(),
        RotateOutcome::Reused,
        "a grandparent is reuse"
    );
    expect!(
        bl.check_access(&s.sid, &random_id()).await.unwrap(),
        AccessStatus::Revoked,
        "session ended"
    );

    let t = session(&random_id(), 3600);
    bl.create_session(&t).await.unwrap();
    bl.rotate_refresh(&rotation(&t.sid, &t.refresh_jti, &random_id(), 1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    expect!(
        bl.rotate_refresh(&rotation(&t.sid, &t.refresh_jti, &random_id(), 1))
            .await
            .unwrap(),
        RotateOutcome::Reused,
        "the parent after the interval"
    );
}

/// The same rotation resent answers `Rotated` again, even when strict; the same session
/// created twice is one session.
pub async fn resent_session_calls_change_nothing(bl: Arc<dyn TokenBlacklist>) {
    let s = session(&random_id(), 3600);
    expect!(bl.create_session(&s).await.unwrap(), 0, "create");
    expect!(bl.create_session(&s).await.unwrap(), 0, "create resent");
    expect!(
        bl.list_sessions(&s.subject_key).await.unwrap().len(),
        1,
        "one session"
    );
    let r = rotation(&s.sid, &s.refresh_jti, &random_id(), 0);
    for what in ["rotate", "rotate resent"] {
        expect!(
            bl.rotate_refresh(&r).await.unwrap(),
            RotateOutcome::Rotated { auth: *LOGIN },
            what
        );
    }
    expect!(
        bl.rotate_refresh(&rotation(&s.sid, &r.new_jti, &random_id(), 0))
            .await
            .unwrap(),
        RotateOutcome::Rotated { auth: *LOGIN },
        "the new token is current"
    );
}

/// Opening a session past the cap ends the least recently refreshed ones.
pub async fn session_cap_ends_least_recently_refreshed(bl: Arc<dyn TokenBlacklist>) {
    let subject = random_id();
    let capped = |s: NewSession| NewSession {
        max_sessions: 3,
        ..s
    };
    let (s1, s2, s3) = (
        capped(session(&subject, 3600)),
        capped(session(&subject, 3600)),
        capped(session(&subject, 3600)),
    );
    for s in [&s1, &s2, &s3] {
        expect!(bl.create_session(s).await.unwrap(), 0, "within the cap");
    }
    // Refresh times are kept in seconds: let one pass so s1's refresh is the latest.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    bl.rotate_refresh(&rotation(&s1.sid, &s1.refresh_jti, &random_id(), 0))
        .await
        .unwrap();
    let s4 = capped(session(&subject, 3600));
    expect!(bl.create_session(&s4).await.unwrap(), 1, "one ended");
    let live: Vec<String> = bl
        .list_sessions(&subject)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.sid)
        .collect();
    assert_eq!(live.len(), 3, "{live:?}");
    assert!(live.contains(&s1.sid) && live.contains(&s4.sid), "{live:?}");
    let ended = if live.contains(&s2.sid) { &s3 } else { &s2 };
    expect!(
        bl.check_access(&ended.sid, &random_id()).await.unwrap(),
        AccessStatus::Revoked,
        "the ended session"
    );
    let s5 = capped(session(&subject, 3600));
    expect!(
        bl.create_session(&s5).await.unwrap(),
        1,
        "the next one ended"
    );
    let mut live: Vec<String> = bl
        .list_sessions(&subject)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.sid)
        .collect();
    live.sort();
    let mut want = vec![s1.sid.clone(), s4.sid.clone(), s5.sid.clone()];
    want.sort();
    assert_eq!(live, want, "the most recently refreshed stay");
}

/// Runs every [`TokenBlacklist`] test in sequence.
pub async fn blacklist_all(bl: Arc<dyn TokenBlacklist>) {
    session_rotation_and_reuse(bl.clone()).await;
    unknown_session(bl.clone()).await;
    revoke_access_and_session(bl.clone()).await;
    revoke_all_and_list(bl.clone()).await;
    sessions_expire(bl.clone()).await;
    concurrent_rotations_at_most_one(bl.clone()).await;
    concurrent_rotations_one_lineage(bl.clone()).await;
    reuse_interval_parent_only(bl.clone()).await;
    resent_session_calls_change_nothing(bl.clone()).await;
    session_cap_ends_least_recently_refreshed(bl.clone()).await;
    renewal_records_the_authentication(bl).await;
}

/// Instantiates the [`OtpStore`] contract as one test per case, in a module named `$name`.
/// `$make` is an async expression giving an `Arc` of the store. Attributes written before
/// the name go on every test, for example
/// `#[cfg_attr(not(has_my_server), ignore = "needs my server")]`.
#[doc(hidden)] // shown in this module (`contract::…!`)
#[macro_export]
macro_rules! otp_store_contract {
    ($(#[$attr:meta])* $name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn make() -> ::std::sync::Arc<dyn $crate::store::OtpStore> {
                $make.await
            }
            $crate::otp_store_contract!(@tests [$(#[$attr])*]
                issue_then_verify_once, verify_without_code, wrong_codes_lock_out,
                resend_keeps_failures, success_resets_failures, new_code_replaces_old,
                address_limit, ip_limit, windows_and_codes_expire, discard_only_matching,
                concurrent_verifications_one_success, concurrent_wrong_guesses_hold_the_cap,
                hour_and_day_caps, resend_cooldown, resent_calls_count_once,
                ip_failures_span_addresses, restore_unless_newer,
                strangers_leave_the_owners_flow, flows_resend_and_coexist,
                flow_cap_spares_known_devices, known_devices_have_their_own_budget,
                signed_in_flows_stay_bound, admin_lock_and_unlock, admin_sign_in_flows);
        }
    };
    (@tests [$($attr:tt)*] $t:ident $(, $rest:ident)*) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $($attr)*
        async fn $t() {
            $crate::contract::$t(make().await).await;
        }
        $crate::otp_store_contract!(@tests [$($attr)*] $($rest),*);
    };
    (@tests [$($attr:tt)*]) => {};
}

/// Instantiates the [`TokenBlacklist`] contract as one test per case, in a module named
/// `$name`. `$make` is an async expression giving an `Arc` of the store; attributes as in
/// [`otp_store_contract!`](crate::contract::otp_store_contract).
#[doc(hidden)] // shown in this module (`contract::…!`)
#[macro_export]
macro_rules! blacklist_contract {
    ($(#[$attr:meta])* $name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn make() -> ::std::sync::Arc<dyn $crate::store::TokenBlacklist> {
                $make.await
            }
            $crate::blacklist_contract!(@tests [$(#[$attr])*]
                session_rotation_and_reuse, unknown_session, revoke_access_and_session,
                revoke_all_and_list, sessions_expire, concurrent_rotations_at_most_one,
                concurrent_rotations_one_lineage, reuse_interval_parent_only,
                resent_session_calls_change_nothing, session_cap_ends_least_recently_refreshed,
                renewal_records_the_authentication);
        }
    };
    (@tests [$($attr:tt)*] $t:ident $(, $rest:ident)*) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $($attr)*
        async fn $t() {
            $crate::contract::$t(make().await).await;
        }
        $crate::blacklist_contract!(@tests [$($attr)*] $($rest),*);
    };
    (@tests [$($attr:tt)*]) => {};
}

/// Limits for the outbox tests: a lease of one second, room for `capacity` items.
fn outbox_limits(capacity: u32) -> crate::outbox::OutboxLimits {
    crate::outbox::OutboxLimits {
        capacity,
        lease: Duration::from_secs(1),
        dead_capacity: 3,
    }
}

/// Appends `n` events with ids `<tag>-<i>` and payload `p<i>`; their ids.
async fn append_events(o: &dyn crate::outbox::Outbox, tag: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{tag}-{i}");
        let appended = o
            .append(
                crate::outbox::OutboxKind::Event,
                &id,
                format!("p{i}").as_bytes(),
                &outbox_limits(1000),
            )
            .await
            .unwrap();
        assert!(appended, "append {id}");
        ids.push(id);
    }
    ids
}

/// Appended items are claimed in order, each once, with their kind, id, payload (any
/// bytes), no attempts and their creation time; acknowledged, they are gone.
pub async fn outbox_claims_in_order_once(o: Arc<dyn crate::outbox::Outbox>) {
    use crate::outbox::OutboxKind;
    let l = outbox_limits(1000);
    let before = now_secs() * 1000;
    let ids = append_events(&*o, "a", 3).await;
    let binary: Vec<u8> = (0..=255u8).collect();
    assert!(
        o.append(OutboxKind::Mail, "mail-1", &binary, &l)
            .await
            .unwrap()
    );
    let first = o.claim("one", 2, &l).await.unwrap();
    let got: Vec<&str> = first.iter().map(|c| c.item.id.as_str()).collect();
    expect!(
        got,
        vec![ids[0].as_str(), ids[1].as_str()],
        "the first two, in order"
    );
    let c = &first[0].item;
    expect!(
        (c.kind, c.payload.as_slice(), c.attempts),
        (OutboxKind::Event, &b"p0"[..], 0),
        "item"
    );
    assert!(
        (before..=before + 5_000).contains(&c.created_ms),
        "created {} vs {before}",
        c.created_ms
    );
    let rest = o.claim("two", 10, &l).await.unwrap();
    let got: Vec<&str> = rest.iter().map(|c| c.item.id.as_str()).collect();
    expect!(
        got,
        vec![ids[2].as_str(), "mail-1"],
        "the rest, to another instance"
    );
    expect!(
        (rest[1].item.kind, rest[1].item.payload.clone()),
        (OutboxKind::Mail, binary),
        "binary payload"
    );
    let stats = o.stats().await.unwrap();
    expect!((stats.depth, stats.claimed), (4, 4), "all claimed");
    for c in first.iter().chain(&rest) {
        o.ack(c).await.unwrap();
        o.ack(c).await.unwrap(); // twice changes nothing
    }
    expect!(
        o.claim("one", 10, &l).await.unwrap(),
        vec![],
        "nothing left"
    );
    let stats = o.stats().await.unwrap();
    expect!(
        (stats.depth, stats.claimed, stats.oldest_created_ms),
        (0, 0, None),
        "empty"
    );
}

/// An item whose instance died (its lease ran out) goes to the next claim, of any
/// instance, with its id; within the lease nobody else gets it.
pub async fn outbox_lease_runs_out(o: Arc<dyn crate::outbox::Outbox>) {
    let l = outbox_limits(1000);
    let ids = append_events(&*o, "b", 1).await;
    let held = o.claim("dies", 5, &l).await.unwrap();
    expect!(held.len(), 1, "claimed");
    expect!(
        o.claim("other", 5, &l).await.unwrap(),
        vec![],
        "within the lease"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let taken = o.claim("other", 5, &l).await.unwrap();
    expect!(
        taken.iter().map(|c| c.item.id.clone()).collect::<Vec<_>>(),
        ids,
        "taken over"
    );
    o.ack(&taken[0]).await.unwrap();
    // The dead instance's late acknowledgement changes nothing.
    o.ack(&held[0]).await.unwrap();
    expect!(o.stats().await.unwrap().depth, 0, "delivered once");
}

/// A retry keeps the item out of claims for its delay, then gives it back with its id
/// and one more attempt.
pub async fn outbox_retry_waits_and_keeps_the_id(o: Arc<dyn crate::outbox::Outbox>) {
    let l = outbox_limits(1000);
    let ids = append_events(&*o, "c", 1).await;
    let c = o.claim("w", 5, &l).await.unwrap().remove(0);
    o.retry(&c, Duration::from_millis(1000)).await.unwrap();
    let stats = o.stats().await.unwrap();
    expect!(
        (stats.depth, stats.delayed, stats.claimed),
        (1, 1, 0),
        "delayed"
    );
    assert!(
        stats.oldest_created_ms.is_some(),
        "a delayed item is the oldest"
    );
    expect!(
        o.claim("w", 5, &l).await.unwrap(),
        vec![],
        "not before its time"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let again = o.claim("w", 5, &l).await.unwrap();
    expect!(again.len(), 1, "due");
    expect!(
        (again[0].item.id.clone(), again[0].item.attempts),
        (ids[0].clone(), 1),
        "same id, one attempt"
    );
    o.retry(&again[0], Duration::ZERO).await.unwrap();
    let third = o.claim("w", 5, &l).await.unwrap();
    expect!(third[0].item.attempts, 2, "two attempts");
    o.ack(&third[0]).await.unwrap();
    expect!(o.stats().await.unwrap().depth, 0, "delivered");
}

/// The outbox refuses appends at its capacity (waiting, claimed and delayed items
/// count), and takes them again once one is delivered.
pub async fn outbox_is_bounded(o: Arc<dyn crate::outbox::Outbox>) {
    use crate::outbox::OutboxKind;
    let l = outbox_limits(2);
    assert!(o.append(OutboxKind::Event, "d-1", b"x", &l).await.unwrap());
    assert!(o.append(OutboxKind::Event, "d-2", b"x", &l).await.unwrap());
    assert!(
        !o.append(OutboxKind::Event, "d-3", b"x", &l).await.unwrap(),
        "full"
    );
    let c = o.claim("w", 1, &l).await.unwrap().remove(0);
    o.retry(&c, Duration::from_secs(60)).await.unwrap();
    assert!(
        !o.append(OutboxKind::Event, "d-3", b"x", &l).await.unwrap(),
        "a delayed one counts"
    );
    let c = o.claim("w", 1, &l).await.unwrap().remove(0);
    o.ack(&c).await.unwrap();
    assert!(
        o.append(OutboxKind::Event, "d-3", b"x", &l).await.unwrap(),
        "room again"
    );
}

/// A buried item is a dead letter (one more attempt), readable, kept up to its cap, and
/// replayed with its id and attempts reset.
pub async fn outbox_dead_letters_replay(o: Arc<dyn crate::outbox::Outbox>) {
    let l = outbox_limits(1000);
    let ids = append_events(&*o, "e", 5).await;
    for c in o.claim("w", 5, &l).await.unwrap() {
        o.bury(&c, &l).await.unwrap();
    }
    let stats = o.stats().await.unwrap();
    expect!((stats.depth, stats.dead), (0, 3), "the last three kept");
    let dead = o.dead_letters(10).await.unwrap();
    let got: Vec<(String, u32)> = dead.iter().map(|d| (d.id.clone(), d.attempts)).collect();
    let want: Vec<(String, u32)> = ids[2..].iter().map(|i| (i.clone(), 1)).collect();
    expect!(got, want, "oldest first");
    expect!(o.dead_letters(1).await.unwrap().len(), 1, "at most max");
    expect!(o.replay_dead().await.unwrap(), 3, "replayed");
    let back = o.claim("w", 10, &l).await.unwrap();
    let got: Vec<(String, u32)> = back
        .iter()
        .map(|c| (c.item.id.clone(), c.item.attempts))
        .collect();
    let want: Vec<(String, u32)> = ids[2..].iter().map(|i| (i.clone(), 0)).collect();
    expect!(got, want, "back, attempts reset");
    expect!(o.stats().await.unwrap().dead, 0, "no dead letters left");
}

/// Instances claiming at once share the items: each is claimed exactly once.
pub async fn outbox_concurrent_claims_share(o: Arc<dyn crate::outbox::Outbox>) {
    let l = outbox_limits(1000);
    let ids = append_events(&*o, "f", 40).await;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let o = o.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = o.claim(&format!("w{w}"), 3, &l).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                for c in batch {
                    got.push(c.item.id.clone());
                    o.ack(&c).await.unwrap();
                }
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let mut want = ids.clone();
    want.sort();
    expect!(all, want, "each once");
}

/// Instantiates the [`Outbox`](crate::outbox::Outbox) contract as one test per case, in a
/// module named `$name`. `$make` is an async expression giving an
/// `Arc<dyn Outbox>` of its own (an empty outbox each time: the tests count its items).
#[doc(hidden)] // shown in this module (`contract::…!`)
#[macro_export]
macro_rules! outbox_contract {
    ($(#[$attr:meta])* $name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn make() -> ::std::sync::Arc<dyn $crate::outbox::Outbox> {
                $make.await
            }
            $crate::outbox_contract!(@tests [$(#[$attr])*]
                outbox_claims_in_order_once, outbox_lease_runs_out,
                outbox_retry_waits_and_keeps_the_id, outbox_is_bounded,
                outbox_dead_letters_replay, outbox_concurrent_claims_share);
        }
    };
    (@tests [$($attr:tt)*] $t:ident $(, $rest:ident)*) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $($attr)*
        async fn $t() {
            $crate::contract::$t(make().await).await;
        }
        $crate::outbox_contract!(@tests [$($attr)*] $($rest),*);
    };
    (@tests [$($attr:tt)*]) => {};
}

/// A store that is down: every [`OtpStore`] and [`TokenBlacklist`] call fails as
/// unavailable. As the sessions of a login it makes the second step fail, for
/// [`login_restores_the_code_when_the_session_fails`].
#[derive(Debug)]
pub struct DownStore;

#[async_trait::async_trait]
impl OtpStore for DownStore {
    async fn issue(&self, _: &IssueRequest) -> Result<IssueOutcome, crate::store::StoreError> {
        Err(unavailable())
    }
    async fn verify(&self, _: &VerifyRequest) -> Result<VerifyOutcome, crate::store::StoreError> {
        Err(unavailable())
    }
    async fn discard(
        &self,
        _: &AddressKey,
        _: &FlowKey,
        _: &CodeMac,
    ) -> Result<(), crate::store::StoreError> {
        Err(unavailable())
    }
    async fn restore(&self, _: &VerifyRequest) -> Result<(), crate::store::StoreError> {
        Err(unavailable())
    }
    async fn forget_devices(
        &self,
        _: &AddressKey,
        _: &Limits,
    ) -> Result<(), crate::store::StoreError> {
        Err(unavailable())
    }
    async fn administer(
        &self,
        _: &AddressKey,
        _: &AddressOp,
        _: &Limits,
    ) -> Result<AddressStatus, crate::store::StoreError> {
        Err(unavailable())
    }
    async fn ready(&self) -> Result<(), crate::store::StoreError> {
        Err(unavailable())
    }
}

#[async_trait::async_trait]
impl TokenBlacklist for DownStore {
    async fn create_session(&self, _: &NewSession) -> Result<u32, crate::store::StoreError> {
        Err(unavailable())
    }
    async fn rotate_refresh(
        &self,
        _: &Rotation,
    ) -> Result<RotateOutcome, crate::store::StoreError> {
        Err(unavailable())
    }
    async fn renew_session(&self, _: &Renewal) -> Result<bool, crate::store::StoreError> {
        Err(unavailable())
    }
    async fn check_access(
        &self,
        _: &str,
        _: &str,
    ) -> Result<AccessStatus, crate::store::StoreError> {
        Err(unavailable())
    }
    async fn revoke(&self, _: &Revocation) -> Result<(), crate::store::StoreError> {
        Err(unavailable())
    }
    async fn revoke_all(&self, _: &str) -> Result<u32, crate::store::StoreError> {
        Err(unavailable())
    }
    async fn list_sessions(
        &self,
        _: &str,
    ) -> Result<Vec<crate::store::SessionInfo>, crate::store::StoreError> {
        Err(unavailable())
    }
}

fn unavailable() -> crate::store::StoreError {
    crate::store::StoreError::unavailable("connection refused")
}

/// A login as the engine makes it with one value for both stores: one operation when the
/// store says it opens sessions ([`OtpStore::opens_sessions`]), else two steps.
async fn login(
    store: &dyn OtpStore,
    sessions: &dyn TokenBlacklist,
    req: &crate::store::VerifyRequest,
    session: &NewSession,
) -> Result<crate::store::Login, crate::store::StoreError> {
    if store.opens_sessions() {
        store.verify_and_open(req, session).await
    } else {
        crate::store::verify_then_open(store, req, session, sessions).await
    }
}

/// A login: the right code opens the session in the same operation, a wrong one opens
/// nothing, and the same call resent is one login.
pub async fn login_opens_the_session_with_the_code(
    store: Arc<dyn OtpStore>,
    sessions: Arc<dyn TokenBlacklist>,
) {
    let f = Fixture::new();
    let l = limits();
    store.issue(&f.issue("111111", None, l)).await.unwrap();
    let s = session(&random_id(), 3600);
    let wrong = login(
        &*store,
        &*sessions,
        &f.verify_from("000000", &random_ip(), l),
        &s,
    )
    .await
    .unwrap();
    expect!(
        wrong.outcome,
        VerifyOutcome::Mismatch { attempts_left: 2 },
        "wrong code"
    );
    expect!(
        sessions.check_access(&s.sid, &random_id()).await.unwrap(),
        AccessStatus::Revoked,
        "no session for a wrong code"
    );
    let right = f.verify_from("111111", &random_ip(), l);
    for what in ["right code", "right code resent"] {
        let done = login(&*store, &*sessions, &right, &s).await.unwrap();
        expect!(done.outcome, VerifyOutcome::Verified, what);
    }
    expect!(
        sessions.check_access(&s.sid, &random_id()).await.unwrap(),
        AccessStatus::Active,
        "the session is open"
    );
    expect!(
        sessions.list_sessions(&s.subject_key).await.unwrap().len(),
        1,
        "one session"
    );
    expect!(
        store.verify(&f.verify("111111", l)).await.unwrap(),
        VerifyOutcome::NoCode { attempts_left: 2 },
        "the code is spent"
    );
}

/// When the session cannot be recorded, the login fails and the code is pending again.
pub async fn login_restores_the_code_when_the_session_fails(
    store: Arc<dyn OtpStore>,
    sessions: Arc<dyn TokenBlacklist>,
) {
    let f = Fixture::new();
    let l = limits();
    store.issue(&f.issue("111111", None, l)).await.unwrap();
    let s = session(&random_id(), 3600);
    // Sessions kept elsewhere, and down: the two-step login gives the code back.
    let err = crate::store::verify_then_open(&*store, &f.verify("111111", l), &s, &DownStore)
        .await
        .unwrap_err();
    assert!(
        matches!(err, crate::store::StoreError::Unavailable(_)),
        "{err:?}"
    );
    let done = login(&*store, &*sessions, &f.verify("111111", l), &s)
        .await
        .unwrap();
    expect!(
        done.outcome,
        VerifyOutcome::Verified,
        "the code was given back"
    );
    expect!(
        sessions.check_access(&s.sid, &random_id()).await.unwrap(),
        AccessStatus::Active,
        "and opens its session"
    );
}

/// A login past the session cap ends the oldest session and says so.
pub async fn login_ends_sessions_past_the_cap(
    store: Arc<dyn OtpStore>,
    sessions: Arc<dyn TokenBlacklist>,
) {
    let subject = random_id();
    let l = limits();
    let mut sids = Vec::new();
    for i in 0..2 {
        let f = Fixture::new();
        store.issue(&f.issue("111111", None, l)).await.unwrap();
        let s = NewSession {
            max_sessions: 1,
            ..session(&subject, 3600)
        };
        let done = login(&*store, &*sessions, &f.verify("111111", l), &s)
            .await
            .unwrap();
        expect!(done.outcome, VerifyOutcome::Verified, format!("login {i}"));
        expect!(done.evicted, i, format!("sessions ended at login {i}"));
        sids.push(s.sid);
    }
    let live: Vec<String> = sessions
        .list_sessions(&subject)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.sid)
        .collect();
    assert_eq!(live, vec![sids[1].clone()]);
}

/// Instantiates the login contract ([`OtpStore::verify_and_open`], or the two steps) as one
/// test per case,
/// in a module named `$name`. `$make` is an async expression giving
/// `(Arc<dyn OtpStore>, Arc<dyn TokenBlacklist>)`: the same store as both, as an
/// application builds it; attributes as in [`otp_store_contract!`](crate::contract::otp_store_contract).
#[doc(hidden)] // shown in this module (`contract::…!`)
#[macro_export]
macro_rules! login_contract {
    ($(#[$attr:meta])* $name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn make() -> (
                ::std::sync::Arc<dyn $crate::store::OtpStore>,
                ::std::sync::Arc<dyn $crate::store::TokenBlacklist>,
            ) {
                $make.await
            }
            $crate::login_contract!(@tests [$(#[$attr])*]
                login_opens_the_session_with_the_code,
                login_restores_the_code_when_the_session_fails,
                login_ends_sessions_past_the_cap);
        }
    };
    (@tests [$($attr:tt)*] $t:ident $(, $rest:ident)*) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $($attr)*
        async fn $t() {
            let (store, sessions) = make().await;
            $crate::contract::$t(store, sessions).await;
        }
        $crate::login_contract!(@tests [$($attr)*] $($rest),*);
    };
    (@tests [$($attr:tt)*]) => {};
}
