//! Sessions: logout, logout-all, logout-others, the session list, and administration from
//! code.

use otp_core::flow::Account;
use otp_core::store::now_secs;
use otp_core::token::TokenType;
use serde_json::json;

use super::common::{codec, login_as, start};
use crate::{Target, TestServer};

/// Logout revokes both tokens, clears the cookie, and is idempotent.
pub async fn logout(t: Target) {
    let s = start(t).await;
    let session = s.login("out@example.com").await;
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout"))
                .bearer_auth(&session.access)
                .header("cookie", format!("refresh_token={}", session.refresh)),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"message": "Successfully logged out"}));
    assert_eq!(
        r.set_cookies(),
        vec!["refresh_token=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly; Secure; SameSite=Lax".to_owned()]
    );
    let r = s.protected(Some(&session.access)).await;
    r.assert_problem(401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    s.refresh(Some(&session.refresh)).await.assert_problem(401);
    // Again, with nothing, with garbage: still 200 and a cleared cookie.
    for req in [
        s.http
            .post(s.url("/auth/logout"))
            .bearer_auth(&session.access),
        s.http.post(s.url("/auth/logout")),
        s.http
            .post(s.url("/auth/logout"))
            .bearer_auth("garbage")
            .header("cookie", "refresh_token=garbage"),
    ] {
        let r = s.send(req).await;
        assert_eq!(r.status, 200);
        assert!(r.set_cookies()[0].contains("Max-Age=0"));
    }
    // The access token alone ends its session too.
    let other = s.login("out2@example.com").await;
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout"))
                .bearer_auth(&other.access),
        )
        .await;
    assert_eq!(r.status, 200);
    s.refresh(Some(&other.refresh)).await.assert_problem(401);
}

/// Logout-all ends every session of the user and no one else's.
pub async fn logout_all(t: Target) {
    let s = start(t).await;
    let r = s.send(s.http.post(s.url("/auth/logout-all"))).await;
    r.assert_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let a1 = s.login("all@example.com").await;
    let a2 = s.login("ALL@example.com").await;
    let b = s.login("bystander@example.com").await;
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout-all"))
                .bearer_auth(&a2.access),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"message": "Successfully logged out"}));
    for t in [&a1.access, &a2.access] {
        s.protected(Some(t)).await.assert_problem(401);
    }
    s.refresh(Some(&a1.refresh)).await.assert_problem(401);
    assert_eq!(s.protected(Some(&b.access)).await.status, 200);
    let r = s
        .send(
            s.http
                .post(s.url("/auth/logout-all"))
                .bearer_auth(&a1.access),
        )
        .await;
    r.assert_problem(401);
}

/// Administration from code, with no access token: list a subject's sessions, end one by
/// id, end them all; other users keep theirs.
pub async fn administration_from_code(t: Target) {
    let s = start(t).await;
    let a1 = s.login("admin-a@example.com").await;
    let a2 = s.login("admin-a@example.com").await;
    let b = s.login("admin-b@example.com").await;
    let subject = &Account::subject("admin-a@example.com");
    let sid_of = |access: &str| codec().verify(access, TokenType::Access).unwrap().sid;
    // By address, however it is written (normalized as at login), or by subject: one list.
    let by_address = &Account::email(" Admin-A@Example.COM").unwrap();
    let listed = s.auth.admin().sessions_of(by_address).await.unwrap();
    assert_eq!(listed, s.auth.admin().sessions_of(subject).await.unwrap());
    let mut sids: Vec<String> = listed.iter().map(|x| x.sid.clone()).collect();
    sids.sort();
    let mut expected = vec![sid_of(&a1.access), sid_of(&a2.access)];
    expected.sort();
    assert_eq!(sids, expected);

    // One session by id: its tokens stop working, the other session lives on.
    assert!(
        s.auth
            .admin()
            .end_session(&sid_of(&a1.access))
            .await
            .unwrap()
    );
    s.protected(Some(&a1.access)).await.assert_problem(401);
    s.refresh(Some(&a1.refresh)).await.assert_problem(401);
    assert_eq!(s.protected(Some(&a2.access)).await.status, 200);
    // Again, or an id that names nothing: no change, and no error.
    assert!(
        !s.auth
            .admin()
            .end_session(&sid_of(&a1.access))
            .await
            .unwrap()
    );
    assert!(!s.auth.admin().end_session("not-a-session").await.unwrap());
    assert!(!s.auth.admin().end_session("").await.unwrap());
    assert_eq!(s.auth.admin().sessions_of(subject).await.unwrap().len(), 1);

    // Every session of the subject; the bystander keeps hers.
    assert_eq!(
        s.auth.admin().end_all_sessions_of(subject).await.unwrap(),
        1
    );
    s.protected(Some(&a2.access)).await.assert_problem(401);
    s.refresh(Some(&a2.refresh)).await.assert_problem(401);
    assert!(
        s.auth
            .admin()
            .sessions_of(subject)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.auth.admin().end_all_sessions_of(subject).await.unwrap(),
        0
    );
    assert_eq!(s.protected(Some(&b.access)).await.status, 200);
    assert_eq!(
        s.auth
            .admin()
            .sessions_of(&Account::subject("admin-b@example.com"))
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn list_sessions(s: &TestServer, access: &str) -> Vec<serde_json::Value> {
    let r = s
        .send(s.http.get(s.url("/auth/sessions")).bearer_auth(access))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json()["sessions"].as_array().unwrap().clone()
}

async fn delete_session(s: &TestServer, access: &str, id: &str) -> crate::Reply {
    s.send(
        s.http
            .delete(s.url(&format!("/auth/sessions/{id}")))
            .bearer_auth(access),
    )
    .await
}

/// `GET /sessions` lists the user's sessions with what was seen at login;
/// `DELETE /sessions/{id}` ends one, only the user's own.
pub async fn sessions_list_and_revoke(t: Target) {
    let s = start(t).await;
    let laptop = login_as(&s, "sess@example.com", "Laptop/1.0").await;
    let phone = login_as(&s, "SESS@example.com", "Phone/2.0").await;
    let other = login_as(&s, "other@example.com", "Other/3.0").await;
    let r = s.send(s.http.get(s.url("/auth/sessions"))).await;
    r.assert_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));

    let list = list_sessions(&s, &laptop.access).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[0]["user_agent"], "Laptop/1.0");
    assert_eq!(list[0]["ip"], "127.0.0.1");
    assert_eq!(list[1]["current"], false);
    assert_eq!(list[1]["user_agent"], "Phone/2.0");
    let now = now_secs();
    for e in &list {
        let created = e["created_at"].as_u64().unwrap();
        assert!(created <= now && created + 60 > now, "{e}");
        assert_eq!(e["last_refreshed_at"].as_u64().unwrap(), created);
        assert!(e["expires_at"].as_u64().unwrap() > now + 86_400);
    }
    let phone_id = list[1]["id"].as_str().unwrap().to_owned();

    // A refresh moves the phone's last refresh and keeps its session.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = s.refresh(Some(&phone.refresh)).await;
    assert_eq!(r.status, 200);
    let phone_access = r.json()["access_token"].as_str().unwrap().to_owned();
    let list = list_sessions(&s, &phone_access).await;
    assert_eq!(list[0]["id"], phone_id.as_str());
    assert!(list[0]["last_refreshed_at"].as_u64() > list[0]["created_at"].as_u64());

    // Another user's session, or no session at all: 404, and nothing happens.
    let other_id = list_sessions(&s, &other.access).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    delete_session(&s, &laptop.access, &other_id)
        .await
        .assert_problem(404);
    assert_eq!(s.protected(Some(&other.access)).await.status, 200);
    delete_session(&s, &laptop.access, "no-such-session")
        .await
        .assert_problem(404);
    delete_session(&s, "not-a-token", &phone_id)
        .await
        .assert_problem(401);

    // The laptop ends the phone's session.
    let r = delete_session(&s, &laptop.access, &phone_id).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"message": "Session revoked"}));
    assert!(
        r.set_cookies().is_empty(),
        "another session: the cookie stays"
    );
    s.protected(Some(&phone_access)).await.assert_problem(401);
    s.refresh(Some(&phone.refresh)).await.assert_problem(401);
    assert_eq!(list_sessions(&s, &laptop.access).await.len(), 1);
    delete_session(&s, &laptop.access, &phone_id)
        .await
        .assert_problem(404);

    // Methods: the list is GET only, one session DELETE only.
    let r = s
        .send(
            s.http
                .post(s.url("/auth/sessions"))
                .bearer_auth(&laptop.access),
        )
        .await;
    r.assert_problem(405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = s
        .send(
            s.http
                .get(s.url(&format!("/auth/sessions/{phone_id}")))
                .bearer_auth(&laptop.access),
        )
        .await;
    r.assert_problem(405);
    assert_eq!(r.header("allow"), Some("DELETE"));

    // Ending its own session logs the laptop out and clears its cookie.
    let own = list_sessions(&s, &laptop.access).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = delete_session(&s, &laptop.access, &own).await;
    assert_eq!(r.status, 200);
    assert!(
        r.set_cookies()[0].contains("Max-Age=0"),
        "{:?}",
        r.set_cookies()
    );
    s.protected(Some(&laptop.access)).await.assert_problem(401);
    assert_eq!(s.protected(Some(&other.access)).await.status, 200);
}

/// `POST /logout-others` keeps only the current session.
pub async fn logout_others(t: Target) {
    let s = start(t).await;
    let a = login_as(&s, "many@example.com", "A").await;
    let b = login_as(&s, "many@example.com", "B").await;
    let c = login_as(&s, "many@example.com", "C").await;
    let d = s.login("bystander@example.com").await;
    let post = |token: Option<&str>| {
        let r = s.http.post(s.url("/auth/logout-others"));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    };
    s.send(post(None)).await.assert_problem(401);
    let r = s.send(post(Some(&b.access))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"message": "Other sessions logged out", "revoked": 2})
    );
    assert!(r.set_cookies().is_empty());
    for gone in [&a, &c] {
        s.protected(Some(&gone.access)).await.assert_problem(401);
        s.refresh(Some(&gone.refresh)).await.assert_problem(401);
    }
    assert_eq!(s.protected(Some(&b.access)).await.status, 200);
    assert_eq!(s.protected(Some(&d.access)).await.status, 200);
    let r = s.send(post(Some(&b.access))).await;
    assert_eq!(r.json()["revoked"], 0);
    let r = s.refresh(Some(&b.refresh)).await;
    assert_eq!(r.status, 200, "the current session still refreshes");
}
