//! The module's promises that had no test: the admin route without `--admin-token`, an OAuth client
//! that follows no redirect, CORS for allowed origins only, and a logout that revokes a token
//! carrying only a `jti`. Each shows the allowed case first.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

#[tokio::test]
async fn without_an_admin_token_revoke_user_refuses_every_request_and_signs_nobody_out() {
    let m = module().await;
    let token = access_token("openid", "j-no-admin", "o-no-admin");
    let session = [("authorization", bearer(&token))];
    let session: Vec<(&str, &str)> = session.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = format!(r#"{{"sub":"{SUB}","username":"alice"}}"#);
    assert_eq!(call(&m.app, "GET", "/auth/me", &session, "").await.status, StatusCode::OK, "alice is signed in");
    // Positive control: a server with the token accepts it (on another user, so alice stays in).
    let right = [("authorization", "Bearer admin-token-0123456789")];
    let other = r#"{"sub":"00000000-0000-4000-8000-000000000001","username":"bob"}"#;
    assert_eq!(call(&m.admin, "POST", "/admin/revoke-user", &right, other).await.status, StatusCode::OK);
    assert_eq!(m.fake.seen.lock().unwrap().admin_sign_outs, ["bob"]);
    // Without one: no header, an empty bearer, and any bearer at all (the other server's included).
    let refused: [&[(&str, &str)]; 5] = [
        &[],
        &[("authorization", "Bearer ")],
        &[("authorization", "Bearer")],
        &[("authorization", "Bearer anything-at-all-0123456789")],
        &right,
    ];
    for headers in refused {
        let r = call(&m.admin_without_token, "POST", "/admin/revoke-user", headers, &body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{headers:?}");
    }
    assert_eq!(m.fake.seen.lock().unwrap().admin_sign_outs, ["bob"], "nobody else was signed out at Cognito");
    assert_eq!(call(&m.app, "GET", "/auth/me", &session, "").await.status, StatusCode::OK, "alice is still in");
}

/// A server that counts the requests it gets: where a redirect would lead.
async fn counting_target() -> (String, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let seen = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            axum::Json(json!({"access_token": "stolen", "expires_in": 3600, "token_type": "Bearer"}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/oauth2/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

#[tokio::test]
async fn the_oauth_client_follows_no_redirect_from_the_token_endpoint() {
    let m = module().await;
    let code = r#"{"code":"good-code"}"#;
    // Positive control: the same exchange succeeds while the token endpoint answers itself.
    assert_eq!(call(&m.app, "POST", "/auth/sign-in", &[], code).await.status, StatusCode::OK);
    let (target, hits) = counting_target().await;
    m.fake.seen.lock().unwrap().token_redirects_to = Some(target);
    let r = call(&m.app, "POST", "/auth/sign-in", &[], code).await;
    assert!(r.status.is_client_error() || r.status.is_server_error(), "sign-in failed: {}", r.status);
    assert!(r.cookie().is_none() && r.body.get("access_token").is_none(), "{:?}", r.body);
    // The code and the client secret would travel with a followed redirect.
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect target was never asked");
}

#[tokio::test]
async fn cors_headers_answer_an_allowed_origin_only() {
    let m = module().await;
    let preflight = |origin: &'static str| {
        let headers = [
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ];
        let app = m.app.clone();
        async move { call(&app, "OPTIONS", "/auth/refresh", &headers, "").await }
    };
    // Positive control: the configured origin gets its own origin back, with credentials.
    let allowed = preflight(ORIGIN).await;
    assert_eq!(allowed.headers.get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some(ORIGIN));
    assert_eq!(allowed.headers.get("access-control-allow-credentials").map(|v| v.to_str().unwrap()), Some("true"));
    // A foreign origin gets no `access-control-allow-origin`, so its browser refuses the call
    // (tower-http still sends the other CORS headers, which a browser reads only with that one).
    let foreign = preflight("https://evil.example").await;
    assert!(foreign.headers.get("access-control-allow-origin").is_none(), "{:?}", foreign.headers);
    // And on an ordinary request.
    let token = access_token("openid", "j-cors", "o-cors");
    let me = |origin: &'static str| {
        let (app, authorization) = (m.app.clone(), bearer(&token));
        async move { call(&app, "GET", "/auth/me", &[("origin", origin), ("authorization", &authorization)], "").await }
    };
    let own = me(ORIGIN).await;
    assert_eq!(own.headers.get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some(ORIGIN));
    let foreign = me("https://evil.example").await;
    assert!(foreign.headers.get("access-control-allow-origin").is_none(), "{:?}", foreign.headers);
}

#[tokio::test]
async fn a_logout_revokes_a_token_that_carries_only_a_jti() {
    let m = module().await;
    let mut claims = access_claims();
    claims["jti"] = json!("j-only");
    claims.as_object_mut().unwrap().remove("origin_jti");
    let token = key("kid-1").sign(&claims);
    let session = [("authorization", bearer(&token))];
    let session: Vec<(&str, &str)> = session.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Positive control: the token passes (it is revocable, so no flag is needed).
    assert_eq!(call(&m.app, "GET", "/auth/me", &session, "").await.status, StatusCode::OK);
    let out = call(&m.app, "GET", "/auth/logout", &session, "").await;
    assert!(out.status.is_success(), "{}: {:?}", out.status, out.body);
    assert_eq!(call(&m.app, "GET", "/auth/me", &session, "").await.status, StatusCode::UNAUTHORIZED);
}
