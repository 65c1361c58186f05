//! Login flows and known devices (API.md "Login flows", SECURITY.md 31–34): a code
//! belongs to the browser that asked for it, strangers who know only the address can
//! neither lock its owner out nor replace the owner's code, and a known device gets codes
//! past the address-wide caps that strangers used up.

use otp_core::config::FlowBinding;
use serde_json::{Value, json};

use crate::{Reply, Target, TestServer, test_config};

/// A browser: the flow and known-device cookies it holds, sent back with every request,
/// as a real one does (the test client keeps no cookies of its own).
#[derive(Debug, Default, Clone)]
struct Browser {
    flow: Option<String>,
    device: Option<String>,
}

impl Browser {
    fn cookie_header(&self) -> Option<String> {
        let pairs: Vec<String> = [("otp_flow", &self.flow), ("otp_device", &self.device)]
            .into_iter()
            .filter_map(|(name, v)| v.as_ref().map(|v| format!("{name}={v}")))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// Keeps what the reply sets (and drops what it clears).
    fn take_cookies(&mut self, r: &Reply) {
        for c in r.set_cookies() {
            let (pair, _) = c.split_once(';').unwrap_or((&c, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let value = (!value.is_empty()).then(|| value.to_owned());
            match name {
                "otp_flow" => self.flow = value,
                "otp_device" => self.device = value,
                _ => {}
            }
        }
    }

    async fn post(&mut self, s: &TestServer, path: &str, body: Value) -> Reply {
        let mut req = s.http.post(s.url(path)).json(&body);
        if let Some(c) = self.cookie_header() {
            req = req.header("cookie", c);
        }
        let r = s.send(req).await;
        self.take_cookies(&r);
        r
    }

    async fn request_otp(&mut self, s: &TestServer, email: &str) -> Reply {
        self.post(s, "/auth/request-otp", json!({ "email": email }))
            .await
    }

    async fn verify_otp(&mut self, s: &TestServer, email: &str, otp: &str) -> Reply {
        self.post(s, "/auth/verify-otp", json!({ "email": email, "otp": otp }))
            .await
    }
}

/// A code that is not `code`.
fn wrong(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

/// The owner asks for a code in their browser; a stranger who knows the address asks for
/// codes of their own and makes eight wrong guesses (bound to their own flows, and
/// unbound until the address is locked for unbound guesses). The owner's code still
/// works in the owner's browser.
pub async fn strangers_leave_the_owners_flow(t: Target) {
    let s = TestServer::start(t, test_config()).await;
    let email = "owner@example.com";
    let mut owner = Browser::default();
    let r = owner.request_otp(&s, email).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["message"], "OTP sent successfully");
    let flow_id = v["flow_id"].as_str().unwrap().to_owned();
    assert!(flow_id.len() >= 22, "at least 128 bits: {flow_id}");
    assert_eq!(owner.flow.as_deref(), Some(flow_id.as_str()));
    let code = s.mailer.last_code(email).unwrap();

    let mut stranger = Browser::default();
    for _ in 0..2 {
        let r = stranger.request_otp(&s, email).await;
        assert_eq!(r.status, 200);
    }
    assert_ne!(s.mailer.last_code(email).as_deref(), None);
    // Three wrong guesses in the stranger's own flow, five unbound.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(stranger.verify_otp(&s, email, wrong(&code)).await.status);
    }
    let mut curl = Browser::default();
    for _ in 0..5 {
        statuses.push(curl.verify_otp(&s, email, wrong(&code)).await.status);
    }
    assert_eq!(statuses, [400; 8], "eight wrong guesses");
    let r = curl.verify_otp(&s, email, &code).await;
    assert_eq!(
        r.status,
        429,
        "unbound verification is locked: {}",
        r.text()
    );
    // The owner's flow was neither locked, replaced nor ended.
    let r = owner.verify_otp(&s, email, &code).await;
    assert_eq!(
        r.status,
        200,
        "the owner's code in the owner's browser: {}",
        r.text()
    );
    assert!(r.refresh_cookie().is_some());
    assert_eq!(owner.flow, None, "the spent flow's cookie is cleared");
    assert!(
        owner.device.is_some(),
        "the login made the browser a known device"
    );
}

/// Strangers use up the address's hourly cap; the owner's known device still gets a code
/// (its own budget) and signs in with it, while a new browser gets 429. `/logout-all`
/// forgets the device: it is a stranger again.
pub async fn known_device_gets_a_code_past_the_caps(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.limits.per_hour = 3;
        c
    })
    .await;
    let email = "known@example.com";
    let mut owner = Browser::default();
    owner.request_otp(&s, email).await;
    let code = s.mailer.last_code(email).unwrap();
    let r = owner.verify_otp(&s, email, &code).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let device = owner.device.clone().expect("a known-device cookie");
    assert!(
        !device.contains("known"),
        "the cookie holds no address: {device}"
    );

    let mut stranger = Browser::default();
    for _ in 0..2 {
        assert_eq!(stranger.request_otp(&s, email).await.status, 200);
    }
    let r = stranger.request_otp(&s, email).await;
    assert_eq!(r.status, 429, "the address's hourly cap: {}", r.text());
    let r = Browser::default().request_otp(&s, email).await;
    assert_eq!(r.status, 429, "any new browser");

    let r = owner.request_otp(&s, email).await;
    assert_eq!(r.status, 200, "the known device: {}", r.text());
    let code = s.mailer.last_code(email).unwrap();
    let r = owner.verify_otp(&s, email, &code).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let access = r.json()["access_token"].as_str().unwrap().to_owned();

    // Logging out everywhere forgets the device.
    let r = s
        .send(s.http.post(s.url("/auth/logout-all")).bearer_auth(&access))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = owner.request_otp(&s, email).await;
    assert_eq!(r.status, 429, "a forgotten device: {}", r.text());
}

/// `OTP_AUTH_FLOW_BINDING=required`: the right code, or the sign-in link, from another
/// browser is refused and changes nothing; then both work in the owner's browser. A
/// native client passes the flow as `flow_id` in the body.
pub async fn required_binding(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.flows.binding = FlowBinding::Required;
        c.http.public_url = Some("http://127.0.0.1:9/auth".into());
        c
    })
    .await;
    let email = "bound@example.com";
    let mut owner = Browser::default();
    owner.request_otp(&s, email).await;
    let code = s.mailer.last_code(email).unwrap();
    let link = s.mailer.last_link(email).unwrap();
    let token = link.split_once("token=").unwrap().1.to_owned();

    let mut other = Browser::default();
    for _ in 0..6 {
        let r = other.verify_otp(&s, email, &code).await;
        let p = r.assert_problem(400);
        assert!(
            p["detail"].as_str().unwrap().contains("asked for it"),
            "{p}"
        );
    }
    let r = other
        .post(&s, "/auth/verify-link", json!({ "token": token }))
        .await;
    r.assert_problem(400);
    // The page opened elsewhere says where to open it and offers no button.
    let page = s
        .send(s.http.get(s.url(&format!("/auth/magic?token={token}"))))
        .await
        .text();
    assert!(page.contains("id=\"elsewhere\""), "{page}");
    assert!(
        !page.contains("id=\"confirm\""),
        "a button that spends the link"
    );
    // In the owner's browser the page has its button, and the link signs in.
    let mut req = s.http.get(s.url(&format!("/auth/magic?token={token}")));
    req = req.header("cookie", owner.cookie_header().unwrap());
    let page = s.send(req).await.text();
    assert!(page.contains("id=\"confirm\""), "{page}");
    let r = owner
        .post(&s, "/auth/verify-link", json!({ "token": token }))
        .await;
    assert_eq!(
        r.status,
        200,
        "the link in the owner's browser: {}",
        r.text()
    );

    // A native client: the flow in the body, no cookies.
    let r = s.request_otp(email).await;
    let flow_id = r.json()["flow_id"].as_str().unwrap().to_owned();
    let code = s.mailer.last_code(email).unwrap();
    let r = s
        .post_json(
            "/auth/verify-otp",
            &json!({ "email": email, "otp": code, "flow_id": "not a flow" }),
        )
        .await;
    r.assert_problem(422);
    let r = s
        .post_json(
            "/auth/verify-otp",
            &json!({ "email": email, "otp": code, "flow_id": flow_id }),
        )
        .await;
    assert_eq!(r.status, 200, "flow_id in the body: {}", r.text());
}

/// The flow and known-device cookies' attributes; a resend in the same browser keeps its
/// flow (and its failures), and a request from another browser replaces nobody's code.
pub async fn flow_cookies_and_resends(t: Target) {
    let s = TestServer::start(t, test_config()).await;
    let email = "cookies@example.com";
    let mut owner = Browser::default();
    let r = owner.request_otp(&s, email).await;
    let set = r.set_cookies();
    assert_eq!(set.len(), 1, "{set:?}");
    let c = &set[0];
    assert!(c.starts_with("otp_flow="), "{c}");
    for attr in [
        "; Max-Age=300",
        "; Path=/auth;",
        "; HttpOnly",
        "; Secure",
        "; SameSite=Lax",
    ] {
        assert!(c.contains(attr), "{c} lacks {attr}");
    }
    let first = owner.flow.clone().unwrap();
    let old = s.mailer.last_code(email).unwrap();
    // Two wrong codes in this flow, then a resend: same flow, failures kept (5 in all).
    for _ in 0..2 {
        owner
            .verify_otp(&s, email, wrong(&old))
            .await
            .assert_problem(400);
    }
    let r = owner.request_otp(&s, email).await;
    assert_eq!(
        r.json()["flow_id"].as_str(),
        Some(first.as_str()),
        "a resend"
    );
    let code = s.mailer.last_code(email).unwrap();
    // Another browser's request starts another flow and leaves this one's code.
    let r = Browser::default().request_otp(&s, email).await;
    assert_ne!(r.json()["flow_id"].as_str(), Some(first.as_str()));
    for _ in 0..2 {
        owner
            .verify_otp(&s, email, wrong(&code))
            .await
            .assert_problem(400);
    }
    let r = owner.verify_otp(&s, email, &code).await;
    assert_eq!(r.status, 200, "the fifth attempt of the flow: {}", r.text());
    let cookies = r.set_cookies();
    let cleared = cookies.iter().find(|c| c.starts_with("otp_flow=")).unwrap();
    assert!(cleared.starts_with("otp_flow=; Max-Age=0"), "{cleared}");
    let device = cookies
        .iter()
        .find(|c| c.starts_with("otp_device="))
        .unwrap();
    for attr in [
        "; Max-Age=7776000",
        "; HttpOnly",
        "; Secure",
        "; SameSite=Lax",
    ] {
        assert!(device.contains(attr), "{device} lacks {attr}");
    }
    assert!(
        !device.contains("cookies"),
        "no address in the cookie: {device}"
    );
}
