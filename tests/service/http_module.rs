//! The companion HTTP module, in-process (`oneshot` on the router), against a fake Cognito that
//! answers on Cognito's exact paths and shapes: `/oauth2/token`, `/oauth2/userInfo`,
//! `/oauth2/revoke`, and the JSON API's `GetUser`, `GlobalSignOut`, `AdminUserGlobalSignOut`.

mod promises;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::common::*;
use axum::body::Body;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cognito_authz::aws::SdkCognito;
use cognito_authz::cognito::{CognitoError, MfaLookup, UserCalls};
use cognito_authz::config::{Endpoints, Secret};
use cognito_authz::http::admin::{self, AdminState};
use cognito_authz::http::oauth::OAuthClient;
use cognito_authz::http::{self as module, AuthState};
use cognito_authz::revocation::{Entry, RevocationStore, Revocations, StoreError, StoreFuture};
use cognito_authz::server;
use serde_json::{Value, json};
use tower::ServiceExt;

const SECRET: &str = "client-secret-0123456789";
const ORIGIN: &str = "https://app.example.com";

/// What the fake Cognito saw, and how it should behave.
#[derive(Default)]
struct Seen {
    revoked: Vec<String>,
    global_sign_outs: Vec<String>,
    admin_sign_outs: Vec<String>,
    broken: bool,
    /// `/oauth2/revoke` answers 500.
    revoke_down: bool,
    /// `/oauth2/token` answers a 302 to this URL.
    token_redirects_to: Option<String>,
}

#[derive(Clone)]
struct Fake {
    seen: Arc<Mutex<Seen>>,
}

/// Cognito-shaped access tokens, signed with the test key.
fn access_token(scope: &str, jti: &str, origin_jti: &str) -> String {
    let mut claims = access_claims();
    claims["scope"] = json!(scope);
    claims["jti"] = json!(jti);
    claims["origin_jti"] = json!(origin_jti);
    key("kid-1").sign(&claims)
}

async fn token_endpoint(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if fake.seen.lock().unwrap().broken {
        return (StatusCode::INTERNAL_SERVER_ERROR, "").into_response();
    }
    if let Some(target) = fake.seen.lock().unwrap().token_redirects_to.clone() {
        return (StatusCode::FOUND, [(header::LOCATION, target)]).into_response();
    }
    use base64::Engine;
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:{SECRET}")));
    if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    let grant = |refresh: Option<&str>| {
        let mut body = json!({
            "access_token": access_token("openid email aws.cognito.signin.user.admin", "jti-new", "origin-new"),
            "id_token": "id.token.value", "expires_in": 3600, "token_type": "Bearer"
        });
        if let Some(r) = refresh {
            body["refresh_token"] = json!(r);
        }
        axum::Json(body).into_response()
    };
    let invalid_grant = || (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"}))).into_response();
    match (form.get("grant_type").map(String::as_str), form.get("client_id").map(String::as_str)) {
        (_, Some(c)) if c != CLIENT => invalid_grant(),
        (Some("authorization_code"), _) => match (form.get("code").map(String::as_str), form.get("redirect_uri")) {
            (Some("good-code"), Some(uri)) if uri == "https://app.example.com/callback" => grant(Some("refresh-1")),
            _ => invalid_grant(),
        },
        (Some("refresh_token"), _) => match form.get("refresh_token").map(String::as_str) {
            Some(t) if fake.seen.lock().unwrap().revoked.iter().any(|r| r == t) => invalid_grant(),
            Some("refresh-1") => grant(None),
            Some("refresh-rotating") => grant(Some("refresh-2")),
            // With rotation on, each refresh returns the next refresh token (as Cognito's token
            // endpoint and GetTokensFromRefreshToken do).
            Some("refresh-2") => grant(Some("refresh-3")),
            Some("refresh-3") => grant(None),
            _ => invalid_grant(),
        },
        _ => (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "unsupported_grant_type"}))).into_response(),
    }
}

async fn userinfo(headers: HeaderMap) -> Response {
    match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        Some(v) if v.starts_with("Bearer ey") => axum::Json(json!({
            "sub": SUB, "email": "alice@example.com", "email_verified": "true", "username": "alice"
        }))
        .into_response(),
        _ => (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_token"}))).into_response(),
    }
}

async fn revoke(State(fake): State<Fake>, Form(form): Form<HashMap<String, String>>) -> Response {
    let token = form.get("token").cloned().unwrap_or_default();
    if fake.seen.lock().unwrap().revoke_down {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    if token.starts_with("ey") {
        // Cognito's revoke endpoint takes refresh tokens only.
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "unsupported_token_type"}))).into_response();
    }
    fake.seen.lock().unwrap().revoked.push(token);
    StatusCode::OK.into_response()
}

async fn json_api(State(fake): State<Fake>, headers: HeaderMap, body: String) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let ok = |v: Value| ([(header::CONTENT_TYPE, "application/x-amz-json-1.1")], axum::Json(v)).into_response();
    match target.rsplit('.').next().unwrap_or("") {
        "GetUser" => ok(json!({
            "Username": "alice",
            "UserAttributes": [
                {"Name": "sub", "Value": SUB}, {"Name": "email", "Value": "alice@example.com"},
                {"Name": "email_verified", "Value": "false"}, {"Name": "phone_number", "Value": "+15550100"}
            ],
            "UserMFASettingList": ["SOFTWARE_TOKEN_MFA"]
        })),
        "GlobalSignOut" => {
            fake.seen.lock().unwrap().global_sign_outs.push(body["AccessToken"].as_str().unwrap_or("").to_owned());
            ok(json!({}))
        }
        "AdminUserGlobalSignOut" => {
            fake.seen.lock().unwrap().admin_sign_outs.push(body["Username"].as_str().unwrap_or("").to_owned());
            ok(json!({}))
        }
        _ => (StatusCode::BAD_REQUEST, axum::Json(json!({"__type": "InvalidParameterException"}))).into_response(),
    }
}

async fn fake_cognito() -> (String, Fake) {
    let fake = Fake { seen: Arc::default() };
    let app = axum::Router::new()
        .route("/oauth2/token", post(token_endpoint))
        .route("/oauth2/userInfo", get(userinfo))
        .route("/oauth2/revoke", post(revoke))
        .route("/", post(json_api))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), fake)
}

struct Module {
    app: axum::Router,
    admin: axum::Router,
    /// The admin router of a server started without `--admin-token`.
    admin_without_token: axum::Router,
    fake: Fake,
}

/// The module, its Cognito calls through the SDK against the fake Cognito (down when not
/// `cognito_up`), unless `calls` answers them in-process.
async fn module_with(
    store: Option<Arc<dyn RevocationStore>>,
    cognito_up: bool,
    calls: Option<Arc<dyn UserCalls>>,
) -> Module {
    let (endpoint, fake) = fake_cognito().await;
    let endpoint = if cognito_up { endpoint } else { "http://127.0.0.1:9".to_owned() };
    let mut config = crate::common::config(NO_JWKS);
    config.auth.allowed_origins = vec![ORIGIN.into()];
    config.auth.redirect_uri = Some("https://app.example.com/callback".into());
    config.auth.logout_redirect_uri = Some("https://app.example.com/bye".into());
    let mut parts = scripted_parts(&config, FakeMfa::new(), &serving(&["kid-1"])).await;
    if let Some(store) = store {
        let revocations = Revocations::new(store, false, None);
        parts = server::assemble(&config, vec![parts.keys.clone()], vec![FakeMfa::new()], revocations);
    }
    let sdk: Arc<dyn UserCalls> = Arc::new(
        SdkCognito::new(
            REGION,
            Some(&endpoint),
            POOL,
            MfaLookup::AdminGetUser,
            (Duration::from_millis(400), Duration::from_secs(1)),
            Some(test_credentials()),
        )
        .await,
    );
    let cognito = calls.unwrap_or(sdk);
    let domain: reqwest::Url = endpoint.parse().unwrap();
    let oauth = OAuthClient::new(
        Endpoints::under(&domain),
        CLIENT.into(),
        Some(Secret::new(SECRET.into())),
        Duration::from_secs(2),
    );
    let state = AuthState {
        authorizer: parts.authorizer.clone(),
        verifier: parts.verifier.clone(),
        revocations: parts.revocations.clone(),
        oauth: Some(oauth),
        cognito: Some(cognito.clone()),
        settings: Arc::new(config.auth.clone()),
        metrics: parts.metrics.clone(),
    };
    let admin_state = AdminState {
        metrics: parts.metrics.clone(),
        revocations: parts.revocations.clone(),
        mfa: parts.mfa.clone(),
        issuers: server::admin_issuers(&config, &[Some(cognito)]),
        token: Some(Secret::new("admin-token-0123456789".into())),
        refresh_token_lifetime: config.auth.refresh_token_lifetime,
    };
    let admin_without_token = admin::routes(AdminState { token: None, ..admin_state.clone() });
    Module {
        app: module::routes(state, vec![parts.keys]),
        admin: admin::routes(admin_state),
        admin_without_token,
        fake,
    }
}

async fn module() -> Module {
    module_with(None, true, None).await
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

impl Reply {
    fn cookie(&self) -> Option<&str> {
        self.headers.get(header::SET_COOKIE).and_then(|v| v.to_str().ok())
    }
}

async fn call(app: &axum::Router, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = app.clone().oneshot(request.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), text }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn sign_in_exchanges_the_code_and_keeps_the_refresh_token_in_a_cookie() {
    let m = module().await;
    let r =
        call(&m.app, "POST", "/auth/sign-in", &[("content-type", "application/json")], r#"{"code":"good-code"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 3600);
    assert!(r.body["access_token"].as_str().unwrap().starts_with("ey"));
    assert!(r.body.get("refresh_token").is_none(), "the refresh token never goes in the body");
    let cookie = r.cookie().expect("refresh cookie");
    assert!(cookie.starts_with("cognito_refresh=refresh-1;"));
    for part in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/auth"] {
        assert!(cookie.contains(part), "{cookie} has {part}");
    }
    assert_eq!(r.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
}

#[tokio::test]
async fn sign_in_failures_are_401_and_bad_bodies_400() {
    let m = module().await;
    let r = call(&m.app, "POST", "/auth/sign-in", &[], r#"{"code":"stale-code"}"#).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::UNAUTHORIZED, json!({"detail": "Authorization code exchange failed"}))
    );
    for body in ["", "not json", r#"{"code":1}"#, r#"{"code":"x","extra":true}"#, r#"{"redirect_uri":"x"}"#] {
        assert_eq!(call(&m.app, "POST", "/auth/sign-in", &[], body).await.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let r =
        call(&m.app, "POST", "/auth/sign-in", &[], r#"{"code":"good-code","redirect_uri":"https://evil.example/cb"}"#)
            .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_in_refuses_a_foreign_origin_and_form_bodies() {
    let m = module().await;
    let code = r#"{"code":"good-code"}"#;
    let json = ("content-type", "application/json");
    // Positive controls: the app's own origin, and a client that is not a browser (no Origin).
    for headers in [vec![json, ("origin", ORIGIN)], vec![json], vec![]] {
        let r = call(&m.app, "POST", "/auth/sign-in", &headers, code).await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?}");
        assert!(r.cookie().unwrap().starts_with("cognito_refresh=refresh-1;"));
    }
    let foreign = call(&m.app, "POST", "/auth/sign-in", &[json, ("origin", "https://evil.example")], code).await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    assert!(foreign.cookie().is_none(), "no session is planted");
    for form in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let r = call(&m.app, "POST", "/auth/sign-in", &[("content-type", form), ("origin", ORIGIN)], code).await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{form}");
        assert!(r.cookie().is_none());
    }
    let charset = call(&m.app, "POST", "/auth/sign-in", &[("content-type", "application/json; charset=utf-8")], code);
    assert_eq!(charset.await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_refresh_cookie_named_twice_is_refused_as_the_ext_authz_path_refuses_it() {
    let m = module().await;
    let once = [("origin", ORIGIN), ("cookie", "cognito_refresh=refresh-1")];
    assert_eq!(call(&m.app, "POST", "/auth/refresh", &once, "").await.status, StatusCode::OK);
    let twice = [("origin", ORIGIN), ("cookie", "cognito_refresh=refresh-1; cognito_refresh=refresh-2")];
    let r = call(&m.app, "POST", "/auth/refresh", &twice, "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body, json!({"detail": "More than one credential was sent"}));
}

#[tokio::test]
async fn refresh_needs_the_cookie_and_an_allowed_origin_and_rotates_the_cookie() {
    let m = module().await;
    let ok =
        call(&m.app, "POST", "/auth/refresh", &[("origin", ORIGIN), ("cookie", "cognito_refresh=refresh-1")], "").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.body["access_token"].is_string());
    assert!(ok.cookie().is_none(), "no rotation, no new cookie");
    let rotated = call(
        &m.app,
        "POST",
        "/auth/refresh",
        &[("origin", ORIGIN), ("cookie", "cognito_refresh=refresh-rotating")],
        "",
    )
    .await;
    assert!(rotated.cookie().unwrap().starts_with("cognito_refresh=refresh-2;"));
    let no_origin = call(&m.app, "POST", "/auth/refresh", &[("cookie", "cognito_refresh=refresh-1")], "").await;
    assert_eq!(no_origin.status, StatusCode::FORBIDDEN);
    let evil = call(
        &m.app,
        "POST",
        "/auth/refresh",
        &[("origin", "https://evil.example"), ("cookie", "cognito_refresh=refresh-1")],
        "",
    )
    .await;
    assert_eq!(evil.status, StatusCode::FORBIDDEN);
    assert_eq!(call(&m.app, "POST", "/auth/refresh", &[("origin", ORIGIN)], "").await.status, StatusCode::UNAUTHORIZED);
    let refused =
        call(&m.app, "POST", "/auth/refresh", &[("origin", ORIGIN), ("cookie", "cognito_refresh=unknown")], "").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.cookie().unwrap().contains("Max-Age=0"), "a refused refresh token is cleared");
}

/// The cookie's attributes, without its value.
fn attributes(cookie: &str) -> &str {
    cookie.split_once(';').map_or("", |(_, rest)| rest)
}

/// Refresh-token rotation (issue 28). Neither moto nor cognito-local implements it: the fake token
/// endpoint answers as Cognito's does with rotation on (a `refresh_token` in the refresh grant's
/// answer; the old one refused once revoked).
#[tokio::test]
async fn a_rotated_refresh_token_takes_the_cookie_with_the_same_attributes_and_logout_revokes_it() {
    let m = module().await;
    let signed_in =
        call(&m.app, "POST", "/auth/sign-in", &[("content-type", "application/json")], r#"{"code":"good-code"}"#).await;
    let first = signed_in.cookie().expect("the sign-in cookie").to_owned();
    let rotated =
        call(&m.app, "POST", "/auth/refresh", &[("origin", ORIGIN), ("cookie", "cognito_refresh=refresh-2")], "").await;
    assert_eq!(rotated.status, StatusCode::OK);
    let second = rotated.cookie().expect("the rotated cookie");
    assert!(second.starts_with("cognito_refresh=refresh-3;"), "{second}");
    assert_eq!(attributes(second), attributes(&first), "the same attributes as at sign-in");
    // Logout with the rotated cookie: Cognito revokes it (which ends its family), and every access
    // token of the sign-in is refused here, the one refreshed before rotation too.
    let after = rotated.body["access_token"].as_str().unwrap().to_owned();
    let before = access_token("openid", "jti-before-rotation", "origin-new");
    for token in [&after, &before] {
        let me = call(&m.app, "GET", "/auth/me", &[("authorization", &bearer(token))], "").await;
        assert_eq!(me.status, StatusCode::OK, "positive control: live before the logout");
    }
    let refresh_3 = [("origin", ORIGIN), ("cookie", "cognito_refresh=refresh-3")];
    assert_eq!(call(&m.app, "POST", "/auth/refresh", &refresh_3, "").await.status, StatusCode::OK, "positive control");
    let out = call(
        &m.app,
        "GET",
        "/auth/logout",
        &[("authorization", &bearer(&after)), ("cookie", "cognito_refresh=refresh-3")],
        "",
    )
    .await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(m.fake.seen.lock().unwrap().revoked, vec!["refresh-3".to_owned()]);
    for token in [&after, &before] {
        let me = call(&m.app, "GET", "/auth/me", &[("authorization", &bearer(token))], "").await;
        assert_eq!((me.status, me.body["detail"].clone()), (StatusCode::UNAUTHORIZED, json!("Token has been revoked")));
    }
    let again = call(&m.app, "POST", "/auth/refresh", &refresh_3, "").await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "the revoked refresh token refreshes nothing");
}

#[tokio::test]
async fn me_answers_403_without_credentials_and_401_for_bad_tokens() {
    let m = module().await;
    let r = call(&m.app, "GET", "/auth/me", &[], "").await;
    assert_eq!((r.status, r.body), (StatusCode::FORBIDDEN, json!({"detail": "Not authenticated"})));
    let r = call(&m.app, "GET", "/auth/me", &[("authorization", "Bearer not-a-token")], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.headers
            .get(header::WWW_AUTHENTICATE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );
    let mut expired = access_claims();
    expired["exp"] = json!(now() - 1);
    let r = call(&m.app, "GET", "/auth/me", &[("authorization", &bearer(&key("kid-1").sign(&expired)))], "").await;
    assert_eq!((r.status, r.body["detail"].clone()), (StatusCode::UNAUTHORIZED, json!("Token has expired")));
}

#[tokio::test]
async fn me_reads_userinfo_get_user_or_the_claims_by_scope() {
    let m = module().await;
    let openid =
        call(&m.app, "GET", "/auth/me", &[("authorization", &bearer(&access_token("openid email", "j1", "o1")))], "")
            .await;
    assert_eq!(openid.status, StatusCode::OK);
    assert_eq!(
        (openid.body["source"].clone(), openid.body["email_verified"].clone()),
        (json!("userinfo"), json!(true))
    );
    assert_eq!(openid.body["sub"], SUB);
    let admin = call(
        &m.app,
        "GET",
        "/auth/me",
        &[("authorization", &bearer(&access_token("aws.cognito.signin.user.admin", "j2", "o2")))],
        "",
    )
    .await;
    assert_eq!((admin.body["source"].clone(), admin.body["email_verified"].clone()), (json!("get_user"), json!(false)));
    assert_eq!(admin.body["phone_number"], "+15550100");
    let bare =
        call(&m.app, "GET", "/auth/me", &[("authorization", &bearer(&access_token("reports/read", "j3", "o3")))], "")
            .await;
    assert_eq!(bare.body["source"], "token");
    assert_eq!(bare.body["username"], "alice");
    assert_eq!(bare.body["groups"], json!(["admin", "team a,b"]));
}

#[tokio::test]
async fn logout_revokes_the_token_and_its_siblings_and_signs_out_at_cognito() {
    let m = module().await;
    let token = access_token("openid", "jti-1", "origin-1");
    let sibling = access_token("openid", "jti-2", "origin-1");
    let other_session = access_token("openid", "jti-3", "origin-2");
    let r = call(&m.app, "GET", "/auth/logout", &[("authorization", &bearer(&token))], "").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["message"], "Logout successful");
    let url = r.body["logout_url"].as_str().unwrap();
    assert!(
        url.ends_with(&format!("/logout?client_id={CLIENT}&logout_uri=https%3A%2F%2Fapp.example.com%2Fbye")),
        "{url}"
    );
    assert!(r.cookie().unwrap().contains("Max-Age=0"), "the cookie is always cleared");
    assert_eq!(m.fake.seen.lock().unwrap().global_sign_outs, vec![token.clone()], "no cookie: GlobalSignOut");
    for revoked in [&token, &sibling] {
        let me = call(&m.app, "GET", "/auth/me", &[("authorization", &bearer(revoked))], "").await;
        assert_eq!((me.status, me.body["detail"].clone()), (StatusCode::UNAUTHORIZED, json!("Token has been revoked")));
    }
    assert_eq!(
        call(&m.app, "GET", "/auth/me", &[("authorization", &bearer(&other_session))], "").await.status,
        StatusCode::OK
    );
    let again = call(&m.app, "GET", "/auth/logout", &[("authorization", &bearer(&token))], "").await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "a revoked token cannot log out twice");
}

#[tokio::test]
async fn logout_with_the_refresh_cookie_revokes_it_instead_of_a_global_sign_out() {
    let m = module().await;
    let token = access_token("openid", "jti-9", "origin-9");
    let r = call(
        &m.app,
        "GET",
        "/auth/logout",
        &[("authorization", &bearer(&token)), ("cookie", "cognito_refresh=refresh-1")],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = m.fake.seen.lock().unwrap();
    assert_eq!(seen.revoked, vec!["refresh-1".to_owned()]);
    assert!(seen.global_sign_outs.is_empty());
}

#[tokio::test]
async fn post_logout_accepts_the_cookie_alone_from_an_allowed_origin() {
    let m = module().await;
    let r =
        call(&m.app, "POST", "/auth/logout", &[("cookie", "cognito_refresh=refresh-1"), ("origin", ORIGIN)], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(m.fake.seen.lock().unwrap().revoked, vec!["refresh-1".to_owned()]);
    let r = call(&m.app, "POST", "/auth/logout", &[("cookie", "cognito_refresh=refresh-1")], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(&m.app, "GET", "/auth/logout", &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cognito_errors_are_502_and_an_unreachable_cognito_503() {
    let m = module().await;
    m.fake.seen.lock().unwrap().broken = true;
    let r =
        call(&m.app, "POST", "/auth/refresh", &[("origin", ORIGIN), ("cookie", "cognito_refresh=refresh-1")], "").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let down = module_with(None, false, None).await;
    let r =
        call(&down.app, "GET", "/auth/logout", &[("authorization", &bearer(&access_token("openid", "j5", "o5")))], "")
            .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.cookie().unwrap().contains("Max-Age=0"));
}

fn logout_with_cookie(bearer_value: Option<&str>, refresh: &str) -> Vec<(&'static str, String)> {
    let mut headers = vec![("cookie", format!("cognito_refresh={refresh}"))];
    if let Some(value) = bearer_value {
        headers.push(("authorization", value.to_owned()));
    }
    headers
}

async fn logout_call(app: &axum::Router, headers: &[(&'static str, String)]) -> Reply {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    call(app, "GET", "/auth/logout", &headers, "").await
}

#[tokio::test]
async fn logout_revokes_the_refresh_cookie_whatever_became_of_the_bearer() {
    let m = module().await;
    // Positive control: a live bearer and its cookie.
    let live = access_token("openid", "jti-20", "origin-20");
    let r = logout_call(&m.app, &logout_with_cookie(Some(&bearer(&live)), "refresh-live")).await;
    assert_eq!(r.status, StatusCode::OK);
    let mut expired = access_claims();
    expired["exp"] = json!(now() - 10);
    expired["jti"] = json!("jti-21");
    let expired = key("kid-1").sign(&expired);
    let cases = [
        ("expired bearer", Some(bearer(&expired)), "refresh-a"),
        ("already revoked bearer", Some(bearer(&live)), "refresh-b"),
        ("malformed bearer", Some("Bearer not-a-jwt".to_owned()), "refresh-c"),
    ];
    for (name, bearer_value, refresh) in cases {
        let r = logout_call(&m.app, &logout_with_cookie(bearer_value.as_deref(), refresh)).await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {:?}", r.body);
        assert!(r.cookie().unwrap().contains("Max-Age=0"), "{name}: cleared once revoked");
    }
    let seen = m.fake.seen.lock().unwrap();
    assert_eq!(seen.revoked, ["refresh-live", "refresh-a", "refresh-b", "refresh-c"].map(String::from));
}

#[tokio::test]
async fn logout_revokes_the_refresh_cookie_when_the_store_fails_and_says_so() {
    let m = module_with(Some(Arc::new(BrokenStore)), true, None).await;
    let token = access_token("openid", "j8", "o8");
    let r = logout_call(&m.app, &logout_with_cookie(Some(&bearer(&token)), "refresh-1")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "the access token could not be revoked");
    assert_eq!(m.fake.seen.lock().unwrap().revoked, vec!["refresh-1".to_owned()], "but the refresh token was");
    assert!(r.cookie().unwrap().contains("Max-Age=0"), "and its cookie is cleared");
}

#[tokio::test]
async fn a_failed_refresh_revoke_keeps_the_cookie_so_the_client_can_retry() {
    let m = module().await;
    let token = access_token("openid", "j9", "o9");
    m.fake.seen.lock().unwrap().revoke_down = true;
    let r = logout_call(&m.app, &logout_with_cookie(Some(&bearer(&token)), "refresh-1")).await;
    assert!(r.status.is_server_error(), "{:?}", r.status);
    assert!(r.cookie().is_none(), "the cookie is kept: the refresh token is still live");
    m.fake.seen.lock().unwrap().revoke_down = false;
    let retry = logout_call(&m.app, &logout_with_cookie(Some(&bearer(&token)), "refresh-1")).await;
    assert_eq!(retry.status, StatusCode::OK, "{:?}", retry.body);
    assert!(retry.cookie().unwrap().contains("Max-Age=0"));
    assert_eq!(m.fake.seen.lock().unwrap().revoked, vec!["refresh-1".to_owned()]);
}

/// A store that cannot write.
struct BrokenStore;

impl RevocationStore for BrokenStore {
    fn load(&self, _: u64) -> StoreFuture<'_, Vec<Entry>> {
        Box::pin(async { Ok(vec![]) })
    }
    fn append<'a>(&'a self, _: &'a [Entry]) -> StoreFuture<'a, ()> {
        Box::pin(async { Err(StoreError::Redis("connection refused".into())) })
    }
    fn compact(&self, _: u64) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn logout_is_not_acknowledged_when_the_revocation_store_fails() {
    let m = module_with(Some(Arc::new(BrokenStore)), true, None).await;
    let token = access_token("openid", "j6", "o6");
    let r = call(&m.app, "GET", "/auth/logout", &[("authorization", &bearer(&token))], "").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(m.fake.seen.lock().unwrap().global_sign_outs.is_empty(), "nothing else happens before the store has it");
}

#[tokio::test]
async fn admin_revoke_user_needs_the_admin_token_and_refuses_older_sessions() {
    let m = module().await;
    let body = format!(r#"{{"sub":"{SUB}","username":"alice"}}"#);
    assert_eq!(call(&m.admin, "POST", "/admin/revoke-user", &[], &body).await.status, StatusCode::UNAUTHORIZED);
    let wrong = [("authorization", "Bearer admin-token-WRONG-456789")];
    assert_eq!(call(&m.admin, "POST", "/admin/revoke-user", &wrong, &body).await.status, StatusCode::UNAUTHORIZED);
    let token = access_token("openid", "j7", "o7");
    let right = [("authorization", "Bearer admin-token-0123456789")];
    let r = call(&m.admin, "POST", "/admin/revoke-user", &right, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(m.fake.seen.lock().unwrap().admin_sign_outs, vec!["alice".to_owned()]);
    let me = call(&m.app, "GET", "/auth/me", &[("authorization", &bearer(&token))], "").await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED, "sessions that began before the revocation are refused");
    assert_eq!(call(&m.admin, "POST", "/admin/revoke-user", &right, "{}").await.status, StatusCode::BAD_REQUEST);
}

/// Cognito's user calls answered in-process through the `UserCalls` seam: every call gets
/// `answer`; the admin sign-outs asked for are recorded.
struct ScriptedCalls {
    answer: Result<(), CognitoError>,
    admin_sign_outs: Mutex<Vec<String>>,
}

impl UserCalls for ScriptedCalls {
    fn user_attributes<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<(String, String)>, CognitoError>> {
        Box::pin(async move { self.answer.map(|()| vec![("username".to_owned(), "alice".to_owned())]) })
    }

    fn global_sign_out<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), CognitoError>> {
        Box::pin(async move { self.answer })
    }

    fn admin_global_sign_out<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<(), CognitoError>> {
        self.admin_sign_outs.lock().unwrap().push(username.to_owned());
        Box::pin(async move { self.answer })
    }
}

#[tokio::test]
async fn revoke_user_says_what_cognito_answered_and_the_revocation_holds_whatever_it_answered() {
    let cases = [
        (Ok(()), StatusCode::OK, Some(true)),
        (Err(CognitoError::Refused), StatusCode::OK, Some(false)),
        (Err(CognitoError::Throttled), StatusCode::SERVICE_UNAVAILABLE, None),
        (Err(CognitoError::Unexpected), StatusCode::BAD_GATEWAY, None),
    ];
    for (n, (answer, status, signed_out)) in cases.into_iter().enumerate() {
        let calls = Arc::new(ScriptedCalls { answer, admin_sign_outs: Mutex::new(vec![]) });
        let m = module_with(None, true, Some(calls.clone())).await;
        let token = access_token("openid", &format!("j-seam-{n}"), &format!("o-seam-{n}"));
        let authorization = bearer(&token);
        let session = [("authorization", authorization.as_str())];
        let me = || call(&m.app, "GET", "/auth/me", &session, "");
        assert_eq!(me().await.status, StatusCode::OK, "{answer:?}: the session passes before the revocation");
        let body = format!(r#"{{"sub":"{SUB}","username":"alice"}}"#);
        let right = [("authorization", "Bearer admin-token-0123456789")];
        let r = call(&m.admin, "POST", "/admin/revoke-user", &right, &body).await;
        assert_eq!(r.status, status, "{answer:?}: {:?}", r.body);
        if let Some(signed_out) = signed_out {
            assert_eq!(r.body["signed_out_at_cognito"], json!(signed_out), "{answer:?}");
        }
        assert_eq!(*calls.admin_sign_outs.lock().unwrap(), ["alice"], "{answer:?}: asked of Cognito once");
        assert_eq!(me().await.status, StatusCode::UNAUTHORIZED, "{answer:?}: the older session is refused");
    }
}

#[tokio::test]
async fn metrics_are_on_the_admin_router_only() {
    let m = module().await;
    assert_eq!(call(&m.admin, "GET", "/metrics", &[], "").await.status, StatusCode::OK);
    assert_eq!(call(&m.app, "GET", "/metrics", &[], "").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_module_counts_its_requests_by_route_and_status_and_the_admin_router_answers_livez() {
    let m = module().await;
    let token = access_token("openid", "jti-30", "origin-30");
    assert_eq!(call(&m.app, "GET", "/auth/me", &[("authorization", &bearer(&token))], "").await.status, StatusCode::OK);
    assert_eq!(call(&m.app, "GET", "/auth/me", &[], "").await.status, StatusCode::FORBIDDEN);
    assert_eq!(call(&m.app, "POST", "/auth/refresh", &[], "").await.status, StatusCode::FORBIDDEN);
    let metrics = call(&m.admin, "GET", "/metrics", &[], "").await;
    let text = metrics.text;
    for series in [
        r#"cognito_authz_http_requests_total{route="me",status="200"} 1"#,
        r#"cognito_authz_http_requests_total{route="me",status="403"} 1"#,
        r#"cognito_authz_http_requests_total{route="refresh",status="403"} 1"#,
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
    let livez = call(&m.admin, "GET", "/livez", &[], "").await;
    assert_eq!(livez.status, StatusCode::OK);
    assert_eq!(call(&m.app, "GET", "/livez", &[], "").await.status, StatusCode::NOT_FOUND, "admin listener only");
}
