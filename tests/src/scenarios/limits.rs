//! The limits: per address, the lockout, the mail caps and cooldown, the session cap, and
//! the client IP's budget of wrong codes.

use serde_json::{Value, json};

use super::common::start;
use crate::{Target, TestServer, test_config};

/// The per-address limit: 429 with `Retry-After`, no mail, across spellings of the address.
pub async fn address_rate_limit(t: Target) {
    let s = start(t).await;
    let spellings = [
        "Lim@Example.com",
        "lim@example.com",
        " LIM@EXAMPLE.COM ",
        "lim@Example.Com",
        "lim@example.com",
    ];
    for e in spellings {
        assert_eq!(s.request_otp(e).await.status, 200, "{e}");
    }
    assert_eq!(s.mailer.count(), 5);
    let r = s.request_otp("LIM@example.com").await;
    r.assert_problem(429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(s.mailer.count(), 5, "a limited request sends no mail");
    // Another address is not affected.
    assert_eq!(s.request_otp("other@example.com").await.status, 200);
}

/// Five unbound failures lock unbound verification of the address across resends; 429 with
/// `Retry-After` even for the right code. A code request still gets a code, which works
/// bound to its flow and not unbound.
pub async fn lockout_across_resends(t: Target) {
    let s = start(t).await;
    s.request_otp("lock@example.com").await;
    let first = s.mailer.last_code("lock@example.com").unwrap();
    for w in wrong_codes(&first).take(3) {
        s.verify_otp("lock@example.com", &w)
            .await
            .assert_problem(400);
    }
    s.request_otp("lock@example.com").await;
    let second = s.mailer.last_code("lock@example.com").unwrap();
    for w in wrong_codes(&second).take(2) {
        s.verify_otp("lock@example.com", &w)
            .await
            .assert_problem(400);
    }
    let r = s.verify_otp("lock@example.com", &second).await;
    r.assert_problem(429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((890..=900).contains(&retry), "{retry}");
    let r = s.request_otp("lock@example.com").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let flow_id = r.json()["flow_id"].as_str().unwrap().to_owned();
    let third = s.mailer.last_code("lock@example.com").unwrap();
    s.verify_otp("lock@example.com", &third)
        .await
        .assert_problem(429);
    let body = serde_json::json!({ "email": "lock@example.com", "otp": third, "flow_id": flow_id });
    let r = s.post_json("/auth/verify-otp", &body).await;
    assert_eq!(r.status, 200, "bound to its flow: {}", r.text());
}

fn wrong_codes(right: &str) -> impl Iterator<Item = String> + '_ {
    (0..)
        .map(|i| format!("{:06}", 100_000 + i * 7919))
        .filter(move |c| c != right)
}

/// Sessions per user are capped: the sixth login of an address with a cap of 3 leaves 3,
/// the least recently refreshed ones ended.
pub async fn session_cap(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.sessions.max_per_user = 3;
        c
    })
    .await;
    let before = s.metrics().await;
    let email = "many@example.com";
    let mut sessions = Vec::new();
    for _ in 0..5 {
        sessions.push(s.login(email).await);
    }
    let listed = s
        .send(
            s.http
                .get(s.url("/auth/sessions"))
                .bearer_auth(&sessions[4].access),
        )
        .await
        .json();
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 3, "{listed}");
    // The two oldest are gone; the three latest work.
    let mut live = 0;
    for session in &sessions {
        if s.protected(Some(&session.access)).await.status == 200 {
            live += 1;
        }
    }
    assert_eq!(live, 3);
    for session in &sessions[3..] {
        assert_eq!(s.protected(Some(&session.access)).await.status, 200);
    }
    assert_eq!(
        s.metric_since(&before, "otp_sessions_evicted_total", "")
            .await,
        2.0
    );
}

/// The hour and day caps and the resend cooldown answer 429 with `Retry-After`, and send
/// no mail.
pub async fn mail_caps(t: Target) {
    for (config, refused_after, min_wait, scope) in [
        (
            {
                let mut c = test_config();
                c.limits.per_hour = 3;
                c
            },
            3,
            3000,
            "address_hour",
        ),
        (
            {
                let mut c = test_config();
                c.limits.per_day = 2;
                c
            },
            2,
            80_000,
            "address_day",
        ),
        (
            {
                let mut c = test_config();
                c.limits.resend_cooldown_seconds = 30;
                c
            },
            1,
            20,
            "cooldown",
        ),
    ] {
        let s = TestServer::start(t, config).await;
        let before = s.metrics().await;
        let email = "bombed@example.com";
        for i in 0..refused_after {
            assert_eq!(s.request_otp(email).await.status, 200, "request {i}");
        }
        let sent = s.mailer.count();
        let r = s.request_otp(email).await;
        r.assert_problem(429);
        let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!(wait >= min_wait, "Retry-After {wait} < {min_wait}");
        assert_eq!(s.mailer.count(), sent, "a refused request sends no mail");
        let labels = format!("scope=\"{scope}\"");
        assert_eq!(
            s.metric_since(&before, "otp_rate_limited_total", &labels)
                .await,
            1.0,
            "{scope}"
        );
        // Other addresses are not affected.
        assert_eq!(s.request_otp("other@example.com").await.status, 200);
    }
}

/// Wrong codes count against the client IP across addresses: past the limit, 429 and no
/// comparison, even for the right code; another client goes on.
pub async fn ip_verification_failures(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.limits.verify_failures_per_ip_per_hour = 3;
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
        c
    })
    .await;
    let before = s.metrics().await;
    let verify = |client: &'static str, email: String, otp: String| {
        s.send(
            s.http
                .post(s.url("/auth/verify-otp"))
                .header("x-forwarded-for", client)
                .json(&json!({"email": email, "otp": otp})),
        )
    };
    let mut codes = Vec::new();
    for i in 0..4 {
        let email = format!("spread{i}@example.com");
        assert_eq!(s.request_otp(&email).await.status, 200);
        codes.push((email.clone(), s.mailer.last_code(&email).unwrap()));
    }
    for (email, code) in &codes[..3] {
        let wrong = if code == "000000" { "111111" } else { "000000" };
        verify("203.0.113.50", email.clone(), wrong.to_owned())
            .await
            .assert_problem(400);
    }
    let (email, code) = codes[3].clone();
    let r = verify("203.0.113.50", email.clone(), code.clone()).await;
    r.assert_problem(429);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait > 3000, "{wait}");
    let r = verify("203.0.113.51", email, code).await;
    assert_eq!(
        r.status,
        200,
        "nothing was compared for the limited IP: {}",
        r.text()
    );
    assert_eq!(
        s.metric_since(&before, "otp_rate_limited_total", "scope=\"ip_failures\"")
            .await,
        1.0
    );
}

/// The answers to wrong codes do not tell whether an address has a login in progress:
/// seven wrong codes get the same statuses and bodies for an idle address as for one with
/// a pending code (400 five times, then 429 for the lockout, with the same wait).
pub async fn wrong_codes_answer_alike_for_every_address(t: Target) {
    let s = start(t).await;
    s.request_otp("pending@example.com").await;
    let code = s.mailer.last_code("pending@example.com").unwrap();
    let mut answers = Vec::new();
    for email in ["idle@example.com", "pending@example.com"] {
        let mut seen = Vec::new();
        for w in wrong_codes(&code).take(7) {
            let r = s.verify_otp(email, &w).await;
            let retry = r.header("retry-after").map(|v| v.parse::<u64>().unwrap());
            seen.push((r.status, r.text(), retry.map(|v| v / 5)));
        }
        answers.push(seen);
    }
    let statuses: Vec<u16> = answers[0].iter().map(|a| a.0).collect();
    assert_eq!(
        statuses,
        [400, 400, 400, 400, 400, 429, 429],
        "idle address"
    );
    // Retry-After compared in 5 s steps: the two lockouts started a few ms apart.
    assert_eq!(
        answers[0], answers[1],
        "idle and pending addresses answer alike"
    );
    // The pending code died with the lockout, as it always has.
    s.verify_otp("pending@example.com", &code)
        .await
        .assert_problem(429);
}

/// A client past its IP budget of wrong codes gets one answer for every address: the same
/// 429, `Retry-After` and body whether or not the address has a pending code, at
/// `/verify-otp` and `/verify-reauthentication`; and nothing is counted for those
/// addresses (another client's right code still works).
pub async fn ip_limited_client_gets_one_answer(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.limits.verify_failures_per_ip_per_hour = 3;
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
        c
    })
    .await;
    let from = |client: &'static str, path: &'static str, body: Value, token: Option<String>| {
        let mut r = s
            .http
            .post(s.url(path))
            .header("x-forwarded-for", client)
            .json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        s.send(r)
    };
    let user = s.login("signed.in@example.com").await;
    s.request_otp("pending@example.com").await;
    let code = s.mailer.last_code("pending@example.com").unwrap();
    // Three wrong codes for addresses with no code spend the budget.
    for i in 0..3 {
        let r = from(
            "203.0.113.60",
            "/auth/verify-otp",
            json!({"email": format!("nobody{i}@example.com"), "otp": "123456"}),
            None,
        )
        .await;
        r.assert_problem(400);
    }
    let mut answers = Vec::new();
    for email in ["pending@example.com", "idle@example.com"] {
        for otp in [code.as_str(), "123456"] {
            let r = from(
                "203.0.113.60",
                "/auth/verify-otp",
                json!({"email": email, "otp": otp}),
                None,
            )
            .await;
            r.assert_problem(429);
            let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
            answers.push((r.text(), retry / 5));
        }
    }
    let r = from(
        "203.0.113.60",
        "/auth/verify-reauthentication",
        json!({"otp": "123456"}),
        Some(user.access.clone()),
    )
    .await;
    r.assert_problem(429);
    answers.push((
        r.text(),
        r.header("retry-after").unwrap().parse::<u64>().unwrap() / 5,
    ));
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "one answer for every address and endpoint: {answers:?}"
    );
    // Nothing was compared or counted: four wrong codes from other clients leave the
    // pending address one attempt, and its code still works.
    for (w, client) in wrong_codes(&code).zip(["203.0.113.61", "203.0.113.63", "203.0.113.64"]) {
        from(
            client,
            "/auth/verify-otp",
            json!({"email": "pending@example.com", "otp": w}),
            None,
        )
        .await
        .assert_problem(400);
    }
    let r = from(
        "203.0.113.65",
        "/auth/verify-otp",
        json!({"email": "pending@example.com", "otp": wrong_codes(&code).nth(3).unwrap()}),
        None,
    )
    .await;
    assert_eq!(
        r.json()["detail"],
        s.verify_otp("idle2@example.com", "123456").await.json()["detail"]
    );
    let r = from(
        "203.0.113.62",
        "/auth/verify-otp",
        json!({"email": "pending@example.com", "otp": code}),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}
