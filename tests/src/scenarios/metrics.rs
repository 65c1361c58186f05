//! The `otp_*` metrics of `GET /metrics`.

use otp_core::mailer::MailError;
use serde_json::json;

use super::common::start;
use crate::Target;

/// The `otp_*` metrics count what happened, with no address or token in them.
pub async fn metrics(t: Target) {
    let s = start(t).await;
    let before = s.metrics().await;
    let email = "metrics@example.com";
    s.request_otp(email).await;
    let code = s.mailer.last_code(email).unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    s.verify_otp(email, wrong).await.assert_problem(400);
    let r = s.verify_otp(email, &code).await;
    assert_eq!(r.status, 200);
    let refresh = r.refresh_cookie().unwrap();
    let r = s.refresh(Some(&refresh)).await;
    assert_eq!(r.status, 200);
    // The parent again, within the reuse interval: re-issued.
    assert_eq!(s.refresh(Some(&refresh)).await.status, 200);
    let current = r.refresh_cookie().unwrap();
    assert_eq!(s.refresh(Some(&current)).await.status, 200);
    // Now a grandparent: reuse.
    s.refresh(Some(&refresh)).await.assert_problem(401);
    s.send(s.http.post(s.url("/auth/logout"))).await;
    for _ in 0..5 {
        s.request_otp(email).await;
    }
    s.mailer.fail_next(MailError::Permanent("550".into()));
    s.request_otp("bounce@example.com")
        .await
        .assert_problem(502);
    // Answers given before any endpoint runs.
    s.send(s.http.get(s.url("/auth/no-such-path")))
        .await
        .assert_problem(404);
    s.send(s.http.delete(s.url("/auth/request-otp")))
        .await
        .assert_problem(405);
    s.send(
        s.http
            .post(s.url("/auth/request-otp"))
            .header("content-type", "application/json")
            .body(vec![b' '; 20_000]),
    )
    .await
    .assert_problem(413);
    // A login bound to its flow (a native app's `flow_id`).
    let bound = "bound@example.com";
    let r = s.request_otp(bound).await;
    let flow_id = r.json()["flow_id"].as_str().unwrap().to_owned();
    let bound_code = s.mailer.last_code(bound).unwrap();
    let body = json!({ "email": bound, "otp": bound_code, "flow_id": flow_id });
    assert_eq!(s.post_json("/auth/verify-otp", &body).await.status, 200);

    let m = |name: &'static str, labels: &'static str| s.metric_since(&before, name, labels);
    assert_eq!(m("otp_codes_requested_total", "").await, 8.0);
    assert_eq!(m("otp_mails_sent_total", "").await, 6.0);
    assert_eq!(
        m(
            "otp_verifications_total",
            "method=\"code\",outcome=\"success\",binding=\"bound\""
        )
        .await,
        1.0
    );
    assert_eq!(
        m("otp_mails_failed_total", "reason=\"rejected\"").await,
        1.0
    );
    assert_eq!(
        m(
            "otp_verifications_total",
            "method=\"code\",outcome=\"mismatch\",binding=\"unbound\""
        )
        .await,
        1.0
    );
    assert_eq!(
        m(
            "otp_verifications_total",
            "method=\"code\",outcome=\"success\",binding=\"unbound\""
        )
        .await,
        1.0
    );
    assert_eq!(m("otp_rate_limited_total", "scope=\"address\"").await, 1.0);
    assert_eq!(m("otp_refreshes_total", "outcome=\"success\"").await, 2.0);
    assert_eq!(m("otp_refreshes_total", "outcome=\"reissued\"").await, 1.0);
    assert_eq!(m("otp_refreshes_total", "outcome=\"reused\"").await, 1.0);
    assert_eq!(m("otp_refresh_reuse_detected_total", "").await, 1.0);
    assert_eq!(m("otp_logouts_total", "scope=\"session\"").await, 1.0);
    for status in ["404", "405", "413"] {
        let labels = format!("status=\"{status}\"");
        let n = s
            .metric_since(&before, "otp_refused_requests_total", &labels)
            .await;
        assert_eq!(n, 1.0, "refused {status}");
    }
    assert_eq!(
        m(
            "otp_request_duration_seconds_count",
            "endpoint=\"verify_otp\",status=\"200\""
        )
        .await,
        2.0
    );
    assert_eq!(
        m(
            "otp_request_duration_seconds_count",
            "endpoint=\"request_otp\",status=\"429\""
        )
        .await,
        1.0
    );
    let text = s.send(s.http.get(s.url("/metrics"))).await.text();
    assert!(
        text.contains("otp_request_duration_seconds_bucket{"),
        "a histogram"
    );
    for leak in ["example.com", "metrics@", code.as_str(), refresh.as_str()] {
        assert!(!text.contains(leak), "/metrics shows {leak}");
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("otp_"), "{line}");
    }
}
