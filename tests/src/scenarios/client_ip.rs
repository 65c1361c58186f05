//! The client's address: the per-IP limit, trusted proxies and their forwarded headers,
//! IPv4-mapped peers.

use otp_core::OtpAuth;
use otp_core::config::ForwardedHeader;
use serde_json::json;

use crate::{Target, TestServer, test_config};

/// The per-IP limit, which a forged `X-Forwarded-For` from an untrusted peer cannot bypass.
pub async fn ip_rate_limit_ignores_spoofed_forwarded_for(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.limits.per_ip_per_minute = 3;
        c
    })
    .await;
    for i in 0..3 {
        let r = s
            .send(
                s.http
                    .post(s.url("/auth/request-otp"))
                    .header("x-forwarded-for", format!("203.0.113.{i}"))
                    .json(&json!({"email": format!("ip{i}@example.com")})),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let r = s
        .send(
            s.http
                .post(s.url("/auth/request-otp"))
                .header("x-forwarded-for", "198.51.100.77")
                .json(&json!({"email": "ip9@example.com"})),
        )
        .await;
    r.assert_problem(429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(s.mailer.count(), 3);
}

/// Behind a trusted proxy, `X-Forwarded-For` names the client.
pub async fn trusted_proxy_forwarded_for(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.limits.per_ip_per_minute = 2;
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
        c
    })
    .await;
    let send = |xff: &'static str, n: u32| {
        s.send(
            s.http
                .post(s.url("/auth/request-otp"))
                .header("x-forwarded-for", xff)
                .json(&json!({"email": format!("p{n}@example.com")})),
        )
    };
    assert_eq!(send("203.0.113.1", 1).await.status, 200);
    assert_eq!(send("203.0.113.1", 2).await.status, 200);
    send("203.0.113.1", 3).await.assert_problem(429);
    // Another client behind the same proxy has its own bucket.
    assert_eq!(send("203.0.113.2", 4).await.status, 200);
    // A forged leftmost entry does not help: the proxy appended the real client.
    send("198.51.100.1, 203.0.113.1", 5)
        .await
        .assert_problem(429);
}

/// Forwarded entries as proxies write them (`IP:port` as Azure Application Gateway does,
/// `[IPv6]:port`, a trailing comma, blanks) name their client, in both header modes: each
/// client keeps its own bucket instead of all sharing the proxy's.
pub async fn forwarded_entries_with_ports(t: Target) {
    for mode in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
        let s = TestServer::start(t, {
            let mut c = test_config();
            c.limits.per_ip_per_minute = 1;
            c.http.trusted_proxies = vec!["127.0.0.1".into()];
            c.http.forwarded_header = mode;
            c
        })
        .await;
        let (name, wrap): (&str, fn(&str) -> String) = match mode {
            ForwardedHeader::XForwardedFor => ("x-forwarded-for", |v| v.to_owned()),
            ForwardedHeader::Forwarded => ("forwarded", |v| {
                v.split(',')
                    .map(|e| {
                        let e = e.trim();
                        if e.is_empty() {
                            String::new()
                        } else {
                            format!("for=\"{e}\"")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
        };
        let mut n = 0;
        let mut send = |entry: &'static str| {
            n += 1;
            let value = wrap(entry);
            let email = format!("port{n}@example.com");
            let r = s
                .http
                .post(s.url("/auth/request-otp"))
                .header(name, value)
                .json(&json!({ "email": email }));
            s.send(r)
        };
        // Four clients with a port each: four buckets of one request.
        for entry in [
            "198.51.100.10:1234",
            "198.51.100.11:1234,",
            "[2001:db8::5]:443",
            " 198.51.100.12:80 , ",
        ] {
            let r = send(entry).await;
            assert_eq!(r.status, 200, "{mode:?} {entry}: {}", r.text());
        }
        // The same clients again, written another way: their buckets are full.
        for entry in ["198.51.100.10", "[2001:db8::5]", "198.51.100.11:9"] {
            send(entry).await.assert_problem(429);
        }
    }
}

/// `OTP_AUTH_FORWARDED_HEADER=forwarded`: behind a trusted proxy the per-IP limit buckets
/// by the RFC 7239 `for=` the proxy appended (quoted IPv6 with a port included), a forged
/// leftmost element does not help, and `X-Forwarded-For` is not read at all.
pub async fn trusted_proxy_rfc7239_forwarded(t: Target) {
    let s = TestServer::start(t, {
        let mut c = test_config();
        c.limits.per_ip_per_minute = 2;
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
        c.http.forwarded_header = ForwardedHeader::Forwarded;
        c
    })
    .await;
    let send = |name: &'static str, value: &'static str, n: u32| {
        s.send(
            s.http
                .post(s.url("/auth/request-otp"))
                .header(name, value)
                .json(&json!({"email": format!("f{n}@example.com")})),
        )
    };
    let fwd = "forwarded";
    assert_eq!(
        send(fwd, "for=203.0.113.1;proto=https", 1).await.status,
        200
    );
    assert_eq!(send(fwd, "for=\"203.0.113.1:4711\"", 2).await.status, 200);
    send(fwd, "for=203.0.113.1", 3).await.assert_problem(429);
    // Another client behind the same proxy has its own bucket, IPv6 too.
    assert_eq!(send(fwd, "for=\"[2001:db8::7]:443\"", 4).await.status, 200);
    assert_eq!(send(fwd, "for=203.0.113.2", 5).await.status, 200);
    // A forged leftmost element does not help: the proxy appended the real client.
    send(fwd, "for=198.51.100.1, for=203.0.113.1", 6)
        .await
        .assert_problem(429);
    // X-Forwarded-For is not the configured header: every request is the proxy's own
    // address, whose bucket (127.0.0.1) fills like any other.
    assert_eq!(
        send("x-forwarded-for", "198.51.100.50", 7).await.status,
        200
    );
    assert_eq!(
        send("x-forwarded-for", "198.51.100.51", 8).await.status,
        200
    );
    send("x-forwarded-for", "198.51.100.52", 9)
        .await
        .assert_problem(429);
}

/// Behind a proxy on a dual-stack socket, IPv4 peers arrive as `::ffff:a.b.c.d`: they still
/// match `OTP_AUTH_TRUSTED_PROXIES`, so each client behind the proxy has its own bucket and
/// its own address in the session list.
pub async fn ipv4_mapped_clients(t: Target) {
    let backends = crate::Backends::for_store(t.store).await;
    let config = {
        let mut c = test_config();
        c.limits.per_ip_per_minute = 1;
        c.http.trusted_proxies = vec!["127.0.0.0/8".into()];
        c
    };
    let auth = backends
        .stores(OtpAuth::builder(config))
        .mailer(backends.mailer)
        .build()
        .unwrap();
    let s = TestServer::start_auth_at(t.adapter, auth, backends.mailbox, "[::]:0").await;
    let request = |client: &'static str, email: &'static str| {
        s.send(
            s.http
                .post(s.url("/auth/request-otp"))
                .header("x-forwarded-for", client)
                .json(&json!({"email": email})),
        )
    };
    assert_eq!(request("203.0.113.7", "m1@example.com").await.status, 200);
    assert_eq!(
        request("203.0.113.8", "m2@example.com").await.status,
        200,
        "another client behind the proxy has its own bucket"
    );
    request("203.0.113.7", "m3@example.com")
        .await
        .assert_problem(429);
    let code = s.mailer.last_code("m1@example.com").unwrap();
    let r = s
        .send(
            s.http
                .post(s.url("/auth/verify-otp"))
                .header("x-forwarded-for", "203.0.113.7")
                .json(&json!({"email": "m1@example.com", "otp": code})),
        )
        .await;
    assert_eq!(r.status, 200);
    let access = r.json()["access_token"].as_str().unwrap().to_owned();
    let listed = s
        .send(s.http.get(s.url("/auth/sessions")).bearer_auth(&access))
        .await
        .json();
    assert_eq!(listed["sessions"][0]["ip"], "203.0.113.7", "{listed}");
}
