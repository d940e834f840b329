//! The HTTP authorization listener in-process (`http::forward_auth`): the same decision as the gRPC
//! path, asked the way nginx, Traefik and Caddy, and Envoy's `http_service` ask; forwarded
//! method and URI believed from the trusted proxies only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use cognito_authz::authz::headers::IdentityHeaders;
use cognito_authz::authz::observed::Decider;
use cognito_authz::http::forward_auth::{self, ForwardAuth};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::*;

const PROXY: &str = "127.0.0.1:40000";

async fn listener() -> axum::Router {
    listener_and_metrics().await.0
}

async fn listener_and_metrics() -> (axum::Router, cognito_authz::telemetry::metrics::Metrics) {
    listener_with(None).await
}

async fn listener_with(sign_in: Option<&str>) -> (axum::Router, cognito_authz::telemetry::metrics::Metrics) {
    let config = config(NO_JWKS);
    let parts = scripted_parts(&config, FakeMfa::new(), &serving(&["kid-1"])).await;
    let metrics = parts.metrics.clone();
    let app = forward_auth::routes(ForwardAuth {
        identity: IdentityHeaders::default().qualified(parts.authorizer.qualifiers().clone()),
        decider: Arc::new(
            Decider::new(parts.authorizer, parts.metrics, "http").sending_browsers_to(sign_in.map(str::to_owned)),
        ),
        trusted: Arc::from(["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]),
        prefix: Arc::from("/envoy"),
    });
    (app, metrics)
}

struct Reply {
    status: StatusCode,
    location: Option<String>,
    user: Option<String>,
    challenge: Option<String>,
    body: Value,
}

async fn ask(app: &axum::Router, from: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut request = request.body(Body::empty()).unwrap();
    request.extensions_mut().insert(ConnectInfo(from.parse::<SocketAddr>().unwrap()));
    let response = app.clone().oneshot(request).await.unwrap();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let (status, user, challenge, location) =
        (response.status(), header("x-user-id"), header("www-authenticate"), header("location"));
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    Reply { status, location, user, challenge, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

fn valid() -> String {
    format!("Bearer {}", key("kid-1").sign(&access_claims()))
}

#[tokio::test]
async fn nginx_traefik_caddy_and_envoy_shapes_get_the_same_decision() {
    let (app, metrics) = listener_and_metrics().await;
    let token = valid();
    // (the proxy's method, where it asks, the headers it sets)
    type Shape<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let shapes: [Shape<'_>; 4] = [
        ("GET", "/auth-request", vec![("x-original-method", "GET"), ("x-original-uri", "/api/mfa/status?x=1")]),
        (
            "GET",
            "/auth-request",
            vec![("x-original-method", "GET"), ("x-original-url", "https://app.example/api/mfa/status")],
        ),
        ("GET", "/forward-auth", vec![("x-forwarded-method", "GET"), ("x-forwarded-uri", "/api/mfa/status")]),
        ("GET", "/envoy/api/mfa/status", vec![]),
    ];
    for (method, path, mut headers) in shapes {
        let allowed = {
            let mut with_token = headers.clone();
            with_token.push(("authorization", &token));
            ask(&app, PROXY, method, path, &with_token).await
        };
        assert_eq!((allowed.status, allowed.user.as_deref()), (StatusCode::OK, Some(SUB)), "{path} {headers:?}");
        headers.push(("x-request-id", "r-1"));
        let refused = ask(&app, PROXY, method, path, &headers).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{path} {headers:?}");
        assert_eq!(
            (refused.challenge.as_deref(), refused.body.clone()),
            (Some("Bearer"), json!({"detail": "Not authenticated"}))
        );
        assert_eq!(refused.user, None);
    }
    // Counted as the gRPC path counts, under its own transport.
    let shown = metrics.render();
    for series in [
        r#"cognito_authz_decisions_total{outcome="allow",reason="none",mode="enforce",transport="http"} 4"#,
        r#"cognito_authz_decisions_total{outcome="unauthenticated",reason="missing_token",mode="enforce",transport="http"} 4"#,
    ] {
        assert!(shown.contains(series), "{series} in {shown}");
    }
}

#[tokio::test]
async fn forwarded_headers_are_believed_from_trusted_proxies_only() {
    let app = listener().await;
    let token = valid();
    let forwarded = [("x-forwarded-method", "GET"), ("x-forwarded-uri", "/api/mfa/status"), ("authorization", &token)];
    assert_eq!(ask(&app, PROXY, "GET", "/forward-auth", &forwarded).await.status, StatusCode::OK, "positive control");
    // Not a connection made here: an address the listener is told it came from.
    let untrusted = ask(&app, "10.9.8.7:5000", "GET", "/forward-auth", &forwarded).await;
    assert_eq!(untrusted.status, StatusCode::BAD_REQUEST);
    assert_eq!(untrusted.body["detail"], "Authorization requests are answered for trusted proxies only");
    // A forwarded URI sent twice (a client's copy beside the proxy's) cannot be told apart.
    let twice = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/public"),
        ("x-forwarded-uri", "/api/mfa/status"),
        ("authorization", token.as_str()),
    ];
    assert_eq!(ask(&app, PROXY, "GET", "/forward-auth", &twice).await.status, StatusCode::BAD_REQUEST);
    // Which headers are read depends on where the proxy asks, never on which a client added: a
    // forged nginx header on Caddy's path names nothing.
    let forged = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/api/../admin"),
        ("x-original-method", "GET"),
        ("x-original-uri", "/api/mfa/status"),
        ("authorization", token.as_str()),
    ];
    let refused = ask(&app, PROXY, "GET", "/forward-auth", &forged).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "Caddy's path was judged, not the forged one");
}

#[tokio::test]
async fn ingress_nginx_url_and_a_client_sent_original_uri_must_agree() {
    // ingress-nginx sets X-Original-URL and passes a client's X-Original-URI through as sent.
    let app = listener().await;
    let token = valid();
    let url = ("x-original-url", "https://app.example/api/mfa/status?x=1");
    let with = |uri| [("x-original-method", "GET"), url, ("x-original-uri", uri), ("authorization", token.as_str())];
    let agreeing = with("/api/mfa/status?x=1");
    assert_eq!(ask(&app, PROXY, "GET", "/auth-request", &agreeing).await.status, StatusCode::OK, "positive control");
    for forged in ["/healthz", "/api/mfa/status", "/api/mfa/status?x=2"] {
        let reply = ask(&app, PROXY, "GET", "/auth-request", &with(forged)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{forged}");
    }
}

#[tokio::test]
async fn the_grpc_paths_rules_hold_over_http() {
    let app = listener().await;
    let token = valid();
    let at = |uri: &'static str| [("x-original-method", "GET"), ("x-original-uri", uri)];
    // An odd path is refused, not guessed at.
    for odd in ["/a/../b", "/a%2fb", "/a%252e", "api"] {
        let mut headers = at(odd).to_vec();
        headers.push(("authorization", &token));
        let reply = ask(&app, PROXY, "GET", "/auth-request", &headers).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{odd}");
    }
    // A client-sent identity header under another spelling is refused, as on the gRPC path.
    let mut spoof = at("/api/mfa/status").to_vec();
    spoof.extend([("authorization", token.as_str()), ("x_user_id", "someone")]);
    let reply = ask(&app, PROXY, "GET", "/auth-request", &spoof).await;
    assert_eq!(
        (reply.status, reply.body["detail"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Request carries a reserved header"))
    );
    // Two credentials are one too many.
    let mut two = at("/api/mfa/status").to_vec();
    two.extend([("authorization", token.as_str()), ("authorization", token.as_str())]);
    assert_eq!(ask(&app, PROXY, "GET", "/auth-request", &two).await.status, StatusCode::BAD_REQUEST);
    // The route's level: an unmatched path is `mfa`, and this alice has enrolled (the fake pool).
    let mut mfa = at("/reports").to_vec();
    mfa.push(("authorization", &token));
    assert_eq!(ask(&app, PROXY, "GET", "/auth-request", &mfa).await.status, StatusCode::OK);
    // Envoy's shape outside the configured prefix cannot be judged.
    assert_eq!(
        ask(&app, PROXY, "GET", "/elsewhere/api", &[("authorization", &token)]).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_browser_without_credentials_is_sent_to_sign_in_and_an_api_call_gets_401() {
    let (app, _) = listener_with(Some("/auth/login")).await;
    let page = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let at = |method: &'static str, accept: &'static str| {
        [("x-forwarded-method", method), ("x-forwarded-uri", "/reports"), ("accept", accept)]
    };
    let browser = ask(&app, PROXY, "GET", "/forward-auth", &at("GET", page)).await;
    assert_eq!((browser.status, browser.location.as_deref()), (StatusCode::FOUND, Some("/auth/login")));
    // API calls, other methods and other denials keep their answer.
    for (method, accept) in [("GET", "application/json"), ("GET", "*/*"), ("POST", page)] {
        let reply = ask(&app, PROXY, "GET", "/forward-auth", &at(method, accept)).await;
        assert_eq!((reply.status, reply.location), (StatusCode::UNAUTHORIZED, None), "{method} {accept}");
    }
    let token = valid();
    let mut with_token = at("GET", page).to_vec();
    with_token.push(("authorization", &token));
    assert_eq!(ask(&app, PROXY, "GET", "/forward-auth", &with_token).await.status, StatusCode::OK, "signed in");
    // Without --sign-in-url, a browser gets the 401 too.
    let (plain, _) = listener_with(None).await;
    assert_eq!(ask(&plain, PROXY, "GET", "/forward-auth", &at("GET", page)).await.status, StatusCode::UNAUTHORIZED);
}
