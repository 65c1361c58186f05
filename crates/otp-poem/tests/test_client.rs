//! The routes under poem's own testing tool, `poem::test::TestClient`, which has no
//! connection: the client address comes from an [`otp_core::adapter::ClientIp`] given as request data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use otp_core::{Config, OtpAuth, adapter::ClientIp, mailer::CapturingMailer};
use poem::Route;
use poem::test::TestClient;

fn auth(mailer: &CapturingMailer) -> OtpAuth {
    let mut c = Config::default();
    c.tokens.secret = Some("c2f6e0a9b8d74e1f9a3b5c7d9e1f2a4b6c8d0e2f".into());
    c.limits.per_ip_per_minute = 1;
    OtpAuth::builder(c)
        .memory_store()
        .mailer(mailer.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn client_ip_as_data_gives_the_client_address() {
    let mailer = CapturingMailer::new();
    let cli = TestClient::new(Route::new().nest("/auth", otp_poem::routes(auth(&mailer))));
    let request = |email: &str, ip: [u8; 4]| {
        cli.post("/auth/request-otp")
            .content_type("application/json")
            .body(format!("{{\"email\":\"{email}\"}}"))
            .data(ClientIp(ip.into()))
    };
    request("a@example.com", [192, 0, 2, 1])
        .send()
        .await
        .assert_status_is_ok();
    assert_eq!(mailer.count(), 1);
    // The given address is the one the limit counts (1 per minute here): the same address
    // is refused, another one is not.
    let r = request("b@example.com", [192, 0, 2, 1]).send().await;
    r.assert_status(poem::http::StatusCode::TOO_MANY_REQUESTS);
    request("c@example.com", [192, 0, 2, 2])
        .send()
        .await
        .assert_status_is_ok();
    assert_eq!(mailer.count(), 2);
}

#[tokio::test]
async fn without_a_client_address_the_answer_says_how_to_fix_it() {
    let mailer = CapturingMailer::new();
    let cli = TestClient::new(Route::new().nest("/auth", otp_poem::routes(auth(&mailer))));
    let r = cli
        .post("/auth/request-otp")
        .content_type("application/json")
        .body("{\"email\":\"a@example.com\"}")
        .send()
        .await;
    r.assert_status(poem::http::StatusCode::INTERNAL_SERVER_ERROR);
    r.assert_content_type("application/problem+json");
    let body: serde_json::Value = r.0.into_body().into_json().await.unwrap();
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("otp_core::adapter::ClientIp"), "{detail}");
    assert!(detail.contains("TestClient"), "{detail}");
    assert_eq!(mailer.count(), 0);
}

/// `RecentBearerUser` as a poem-openapi operation's security scheme: a fresh sign-in passes,
/// an older one gets RFC 9470's challenge.
#[cfg(feature = "poem-openapi")]
#[tokio::test]
async fn recent_bearer_user_demands_a_recent_sign_in() {
    use otp_poem::api::RecentBearerUser;
    use poem::EndpointExt;
    use poem_openapi::{OpenApi, OpenApiService, payload::PlainText};

    struct Api;

    #[OpenApi]
    impl Api {
        #[oai(path = "/sensitive", method = "post")]
        async fn sensitive(&self, user: RecentBearerUser<1>) -> PlainText<String> {
            PlainText(user.email.clone())
        }
    }

    let mailer = CapturingMailer::new();
    let auth = auth(&mailer);
    let client = otp_core::ClientInfo {
        ip: Some([192, 0, 2, 9].into()),
        ..Default::default()
    };
    auth.request_code("recent@example.com", &client)
        .await
        .unwrap();
    let code = mailer.last_code("recent@example.com").unwrap();
    let pair = auth
        .verify_code("recent@example.com", &code, &client)
        .await
        .unwrap();
    let service = OpenApiService::new(Api, "test", "1");
    assert!(service.spec().contains("\"bearer\""));
    let cli = TestClient::new(Route::new().nest("/", service).data(auth));
    let call = || {
        cli.post("/sensitive")
            .header("authorization", format!("Bearer {}", pair.access_token))
            .send()
    };
    let r = call().await;
    r.assert_status_is_ok();
    r.assert_text("recent@example.com").await;
    // `auth_time` is in whole seconds: 2.1 s is more than 1 s whatever the rounding.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = call().await;
    r.assert_status(poem::http::StatusCode::UNAUTHORIZED);
    r.assert_header(
        "www-authenticate",
        "Bearer error=\"insufficient_user_authentication\", error_description=\"A more recent authentication is required\", max_age=1",
    );
}
