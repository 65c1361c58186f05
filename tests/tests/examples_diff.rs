//! The two example apps answer identically: the same script of requests, good and bad,
//! against `axum-example` and `poem-example`, compared status by status, header by header,
//! byte by byte (tokens and codes, which are random, replaced by placeholders).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use otp_core::{OtpAuth, mailer::CapturingMailer, store::MemoryStore};
use otp_tests::test_config;
use serde_json::json;

struct App {
    base: String,
    mailer: CapturingMailer,
    hooks: example_common::ExampleHooks,
    _task: tokio::task::JoinHandle<()>,
}

/// The engine the example binaries build, on the memory store and a capturing mailer;
/// `diff@example.com` is an administrator (`APP_ADMINS`).
fn engine(mailer: &CapturingMailer, hooks: &example_common::ExampleHooks) -> OtpAuth {
    OtpAuth::builder(test_config())
        .stores(MemoryStore::new())
        .mailer(mailer.clone())
        .hooks(hooks.clone())
        .build()
        .unwrap()
}

fn admin_hooks() -> example_common::ExampleHooks {
    example_common::ExampleHooks::new(["Diff@Example.com"])
}

async fn start_axum() -> App {
    let mailer = CapturingMailer::new();
    let hooks = admin_hooks();
    let app = axum_example::app(engine(&mailer, &hooks));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    App {
        base,
        mailer,
        hooks,
        _task: task,
    }
}

async fn start_poem() -> App {
    let mailer = CapturingMailer::new();
    let hooks = admin_hooks();
    let app = poem_example::app(engine(&mailer, &hooks));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let task = tokio::spawn(async move {
        poem::Server::new_with_acceptor(acceptor)
            .run(app)
            .await
            .unwrap();
    });
    App {
        base,
        mailer,
        hooks,
        _task: task,
    }
}

/// One step of the script: method, path, headers, body. `{code}`, `{access}` and
/// `{refresh}` are filled from the app's own state.
struct Step(
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<String>,
);

fn script() -> Vec<Step> {
    let j = |v: serde_json::Value| Some(v.to_string());
    let ct: &[(&str, &str)] = &[("content-type", "application/json")];
    vec![
        Step("GET", "/", &[], None),
        Step("GET", "/openapi.json", &[], None),
        Step("GET", "/docs", &[], None),
        Step(
            "POST",
            "/auth/request-otp",
            ct,
            j(json!({"email": "Diff@Example.com"})),
        ),
        Step("POST", "/auth/request-otp", ct, j(json!({"email": "nope"}))),
        Step("POST", "/auth/request-otp", ct, j(json!({"email": 5}))),
        Step(
            "POST",
            "/auth/request-otp",
            ct,
            j(json!(["diff@example.com"])),
        ),
        Step("POST", "/auth/request-otp", ct, Some("{".into())),
        Step(
            "POST",
            "/auth/request-otp",
            &[("content-type", "text/plain")],
            Some("x".into()),
        ),
        Step(
            "POST",
            "/auth/request-otp",
            ct,
            Some(format!("{{\"email\":\"{}\"}}", "a".repeat(20_000))),
        ),
        Step(
            "POST",
            "/auth/verify-otp",
            ct,
            j(json!({"email": "diff@example.com", "otp": "12345"})),
        ),
        Step(
            "POST",
            "/auth/verify-otp",
            ct,
            j(json!({"email": "other@example.com", "otp": "123456"})),
        ),
        Step(
            "POST",
            "/auth/verify-otp",
            ct,
            Some(r#"{"email":"diff@example.com","otp":"{code}"}"#.into()),
        ),
        Step("GET", "/protected", &[], None),
        Step(
            "GET",
            "/protected",
            &[("authorization", "Bearer garbage")],
            None,
        ),
        Step(
            "GET",
            "/protected",
            &[("authorization", "Bearer {access}")],
            None,
        ),
        Step("GET", "/app/me", &[], None),
        Step(
            "GET",
            "/app/me",
            &[("authorization", "Bearer garbage")],
            None,
        ),
        Step(
            "GET",
            "/app/me",
            &[("authorization", "Bearer {access}")],
            None,
        ),
        Step(
            "GET",
            "/app/me",
            &[("authorization", "Bearer {access}")],
            None,
        ),
        // The admin router (diff@example.com is an administrator): the guard, a listing,
        // a bad address, an address's state.
        Step(
            "GET",
            "/admin/sessions?email=nobody%40example.com",
            &[],
            None,
        ),
        Step(
            "GET",
            "/admin/sessions?email=Nobody%40Example.com",
            &[("authorization", "Bearer {access}")],
            None,
        ),
        Step(
            "GET",
            "/admin/sessions?email=not-an-address",
            &[("authorization", "Bearer {access}")],
            None,
        ),
        Step(
            "GET",
            "/admin/addresses/nobody%40example.com",
            &[("authorization", "Bearer {access}")],
            None,
        ),
        Step("POST", "/auth/refresh", &[], None),
        Step(
            "POST",
            "/auth/refresh",
            &[("cookie", "refresh_token=garbage")],
            None,
        ),
        Step(
            "POST",
            "/auth/refresh",
            &[("cookie", "refresh_token={refresh}")],
            None,
        ),
        Step(
            "POST",
            "/auth/refresh",
            &[("cookie", "refresh_token={refresh}")],
            None,
        ),
        Step("GET", "/auth/refresh", &[], None),
        Step("DELETE", "/auth/logout", &[], None),
        Step("POST", "/auth/nope", &[], None),
        Step("POST", "/auth/logout-all", &[], None),
        Step(
            "POST",
            "/auth/logout",
            &[("authorization", "Bearer {access}")],
            None,
        ),
        Step(
            "GET",
            "/protected",
            &[("authorization", "Bearer {access}")],
            None,
        ),
        Step(
            "GET",
            "/app/me",
            &[("authorization", "Bearer {access}")],
            None,
        ),
    ]
}

#[derive(Debug, PartialEq)]
struct Seen {
    step: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn mask(s: &str, secrets: &[(&str, &str)]) -> String {
    let mut out = s.to_owned();
    for (secret, name) in secrets {
        if !secret.is_empty() {
            out = out.replace(secret, name);
        }
    }
    out
}

async fn run(app: &App) -> Vec<Seen> {
    let http = reqwest::Client::new();
    let (mut access, mut refresh, mut code) = (String::new(), String::new(), String::new());
    let (mut flow, mut device) = (String::new(), String::new());
    let mut out = Vec::new();
    for Step(method, path, headers, body) in script() {
        let fill = |s: &str| {
            s.replace("{code}", &code)
                .replace("{access}", &access)
                .replace("{refresh}", &refresh)
        };
        let mut req = http.request(method.parse().unwrap(), format!("{}{path}", app.base));
        for (k, v) in headers {
            req = req.header(*k, fill(v));
        }
        if let Some(b) = &body {
            req = req.body(fill(b));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let mut hs: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str() != "date")
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        hs.sort();
        let text = resp.text().await.unwrap();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(t) = v["access_token"].as_str()
        {
            access = t.to_owned();
        }
        // The cookies' values are random: each is kept to be masked where it appears.
        let cookie = |name: &str| {
            hs.iter()
                .filter(|(k, _)| k == "set-cookie")
                .find_map(|(_, v)| v.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.split(';').next())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        for (name, slot) in [
            ("refresh_token", &mut refresh),
            ("otp_flow", &mut flow),
            ("otp_device", &mut device),
        ] {
            if let Some(v) = cookie(name) {
                *slot = v;
            }
        }
        if let Some(c) = app.mailer.last_code("diff@example.com") {
            code = c;
        }
        // The user id is random too (the examples' user directory).
        let user = app
            .hooks
            .user_of("diff@example.com")
            .await
            .unwrap_or_default();
        let secrets = [
            (access.as_str(), "<access>"),
            (refresh.as_str(), "<refresh>"),
            (code.as_str(), "<code>"),
            (user.as_str(), "<user>"),
            (flow.as_str(), "<flow>"),
            (device.as_str(), "<device>"),
        ];
        out.push(Seen {
            step: format!(
                "{method} {path} {}",
                body.as_deref().map(|b| &b[..b.len().min(60)]).unwrap_or("")
            ),
            status,
            headers: hs
                .into_iter()
                .map(|(k, v)| (k, mask(&v, &secrets)))
                .collect(),
            body: mask(&text, &secrets),
        });
    }
    out
}

#[tokio::test]
async fn axum_and_poem_examples_answer_identically() {
    let axum = run(&start_axum().await).await;
    let poem = run(&start_poem().await).await;
    assert_eq!(axum.len(), poem.len());
    for (a, p) in axum.iter().zip(&poem) {
        assert_eq!(a, p, "the examples differ at {}", a.step);
    }
    // The script did reach every state: a login, a refresh, a rejected reuse.
    let statuses: Vec<u16> = axum.iter().map(|s| s.status).collect();
    assert!(statuses.contains(&200) && statuses.contains(&401) && statuses.contains(&413));
    let login = axum.iter().find(|s| s.step.contains("{code}")).unwrap();
    assert_eq!(login.status, 200, "the login step logged in: {login:?}");
    // The admin router: guarded, listing, refusing a bad address, an address's state.
    let admin: Vec<(u16, &str)> = (axum.iter())
        .filter(|s| s.step.contains("/admin/"))
        .map(|s| (s.status, s.body.as_str()))
        .collect();
    assert_eq!(admin.len(), 4, "{admin:?}");
    assert_eq!(admin[0].0, 401, "{admin:?}");
    assert_eq!(admin[1], (200, r#"{"sessions":[]}"#), "{admin:?}");
    assert_eq!(admin[2].0, 422, "{admin:?}");
    assert_eq!(admin[3].0, 200, "{admin:?}");
    assert!(admin[3].1.contains(r#""locked":false"#), "{admin:?}");
    assert!(
        axum.iter()
            .any(|s| s.step.starts_with("GET /protected") && s.status == 200),
        "the protected route let the user in"
    );
    // The sub-router behind the layer: refused without a user, then the typed claims and
    // the app's own counter, then refused after the logout.
    let me: Vec<&Seen> = axum
        .iter()
        .filter(|s| s.step.starts_with("GET /app/me"))
        .collect();
    let me_statuses: Vec<u16> = me.iter().map(|s| s.status).collect();
    assert_eq!(me_statuses, [401, 401, 200, 200, 401]);
    let body = |i: usize| serde_json::from_str::<serde_json::Value>(&me[i].body).unwrap();
    assert_eq!(
        body(2),
        json!({"email": "diff@example.com", "subject": "<user>",
               "roles": ["member", "admin"], "visits": 1})
    );
    assert_eq!(
        body(3)["visits"],
        2,
        "the app's own state is shared across requests"
    );
}

/// poem-example's `/protected` is a poem-openapi operation taking the user as a security
/// scheme: its generated document (`/api.json`) shows the bearer requirement, and the
/// operation answers the contract's 401 without a token and the greeting with one.
#[tokio::test]
async fn poem_openapi_operation_requires_the_bearer_scheme() {
    let app = start_poem().await;
    let http = reqwest::Client::new();
    let doc: serde_json::Value = http
        .get(format!("{}/api.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["paths"]["/protected"]["get"]["security"],
        json!([{"bearer": []}]),
        "{doc}"
    );
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");

    let r = http
        .get(format!("{}/protected", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{}{path}", app.base)).json(&body).send()
    };
    assert_eq!(
        post("/auth/request-otp", json!({"email": "api@example.com"}))
            .await
            .unwrap()
            .status(),
        200
    );
    let code = app.mailer.last_code("api@example.com").unwrap();
    let login: serde_json::Value = post(
        "/auth/verify-otp",
        json!({"email": "api@example.com", "otp": code}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let r = http
        .get(format!("{}/protected", app.base))
        .bearer_auth(login["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"message": "Hello, api@example.com!"})
    );
}

/// The OpenAPI document lists exactly the routes served: every documented operation
/// exists (no 404/405) and answers a bare request with a status the document lists; every
/// auth endpoint is documented; other methods on those paths are refused.
async fn document_matches_routes(app: &App) {
    let http = reqwest::Client::new();
    let doc: serde_json::Value = http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    let mut want: Vec<String> = otp_core::adapter::Endpoint::ALL
        .iter()
        .map(|e| format!("/auth{}", e.path()))
        .collect();
    want.push("/protected".into());
    want.push("/app/me".into());
    for e in otp_core::adapter::AdminEndpoint::ALL {
        let path = format!("/admin{}", e.path());
        if !want.contains(&path) {
            want.push(path);
        }
    }
    let mut have: Vec<String> = paths.keys().cloned().collect();
    want.sort();
    have.sort();
    assert_eq!(have, want, "documented paths");
    assert!(doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer");
    for (path, item) in paths {
        let item = item.as_object().unwrap();
        for (method, op) in item {
            let r = http
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{path}", app.base),
                )
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            assert!(
                status != 404 && status != 405,
                "{method} {path} is documented but answers {status}"
            );
            assert!(
                op["responses"].get(status.to_string()).is_some(),
                "{method} {path} answered {status}, which the document does not list"
            );
            for schema in [
                "RequestOtpBody",
                "VerifyOtpBody",
                "TokenResponse",
                "MessageResponse",
                "ProblemDetails",
            ] {
                assert!(
                    doc["components"]["schemas"].get(schema).is_some(),
                    "{schema}"
                );
            }
        }
        for other in ["get", "post", "put", "delete", "patch"] {
            if item.contains_key(other) || !path.starts_with("/auth") {
                continue;
            }
            let r = http
                .request(
                    other.to_uppercase().parse().unwrap(),
                    format!("{}{path}", app.base),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status().as_u16(),
                405,
                "{other} {path} is not documented but served"
            );
        }
    }
    let docs = http.get(format!("{}/docs", app.base)).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("openapi.json"));
}

#[tokio::test]
async fn openapi_document_matches_the_axum_routes() {
    document_matches_routes(&start_axum().await).await;
}

#[tokio::test]
async fn openapi_document_matches_the_poem_routes() {
    document_matches_routes(&start_poem().await).await;
}
