//! HTTP authorization for proxies that ask over plain HTTP, one request per proxied request:
//!
//! - **nginx** `auth_request` (and ingress-nginx's `auth-url`): the original method and URI in
//!   `X-Original-Method` and `X-Original-URI` (or `X-Original-URL`);
//! - **Traefik** `forwardAuth` and **Caddy** `forward_auth`: `X-Forwarded-Method` and
//!   `X-Forwarded-Uri`;
//! - **Envoy** `http_service` (also Envoy Gateway's and Istio's HTTP ext_authz): the request's own
//!   method and path, after the configured `path_prefix` (`--authz-http-prefix`, `/envoy`).
//!
//! Each asks at its own path (`/auth-request`, `/forward-auth`, the prefix), so which headers are
//! read never depends on which headers a client managed to add.
//!
//! The request becomes the neutral `Request`, the one decision core decides (metrics, decision
//! log, shadow mode included), and the answer is rendered: 200 with the identity headers, or the
//! denial's status, `{"detail": …}` body and challenge. Forwarded method and URI are read only from
//! the trusted proxies: a client reaching this listener directly could otherwise name any path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument as _;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::HttpError;
use crate::authz::error::{BadRequest, Denied};
use crate::authz::headers::{IdentityHeaders, identity_header_values};
use crate::authz::observed::Decider;
use crate::authz::{Allowed, Request, prefers_html};
use crate::clock::unix_now;

/// What the listener needs.
#[derive(Clone)]
pub struct ForwardAuth {
    /// The decision core.
    pub decider: Arc<Decider>,
    /// The identity headers (their values qualified as the authorizer says).
    pub identity: IdentityHeaders,
    /// The proxies allowed to ask.
    pub trusted: Arc<[ipnet::IpNet]>,
    /// Envoy `http_service`'s `path_prefix`, taken off the path (empty: none).
    pub prefix: Arc<str>,
}

crate::opaque_debug!(ForwardAuth);

/// Every path and method: the proxied request is in the headers, or is the request itself.
pub fn routes(state: ForwardAuth) -> Router {
    Router::new().fallback(decide).with_state(state)
}

/// Why a proxy's authorization request cannot be judged (HTTP 400, a fixed reason).
const UNTRUSTED: &str = "Authorization requests are answered for trusted proxies only";

async fn decide(
    State(state): State<ForwardAuth>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    if !state.trusted.iter().any(|net| net.contains(&peer.ip())) {
        tracing::debug!(peer = %peer.ip(), "authorization request from an untrusted address");
        return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({ "detail": UNTRUSTED }))).into_response();
    }
    let Some((original_method, path)) = original(&method, &uri, &headers, &state.prefix) else {
        let denied = state.decider.unreadable(BadRequest::AmbiguousPath.into(), started);
        return HttpError::Denied(denied).into_response();
    };
    let request = request_from(original_method, &path, &headers, &state.identity);
    // The proxy's trace context, when it sends one (nginx, Caddy and Traefik pass the client's or
    // their own `traceparent` on).
    let span = crate::telemetry::traces::decision_span("http", |name| headers.get(name).and_then(|v| v.to_str().ok()));
    let decided = state.decider.decide(&request, unix_now());
    let decided = match span {
        Some(span) => decided.instrument(span).await,
        None => decided.await,
    };
    match decided {
        Ok(allowed) => allow(&allowed, &state.identity),
        Err(denied) => match state.decider.sign_in_for(&request, &denied) {
            Some(url) => {
                let mut response = StatusCode::FOUND.into_response();
                if let Ok(location) = HeaderValue::from_str(url) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            None => deny(denied),
        },
    }
}

/// Where each proxy asks: the shape of the request is chosen by the path the shipped configs use,
/// never by which headers are present (a client could add those: through Caddy, a forged
/// `X-Original-URI` would otherwise pass for nginx's).
pub const NGINX_PATH: &str = "/auth-request";
/// Where Traefik and Caddy ask.
pub const FORWARD_PATH: &str = "/forward-auth";

/// The proxied request's method and path (query included), read as the proxy asking sends them.
fn original<'a>(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap, prefix: &str) -> Option<(&'a str, String)> {
    let text = |name: &str| -> Option<&'a str> {
        let mut values = headers.get_all(name).iter();
        let first = values.next()?;
        // Sent twice, the header cannot be told from a client's copy beside the proxy's.
        if values.next().is_some() {
            return None;
        }
        first.to_str().ok()
    };
    // An empty method or a path not starting with `/` cannot be judged.
    let judged =
        |method: &'a str, path: String| (!method.is_empty() && path.starts_with('/')).then_some((method, path));
    match uri.path() {
        // nginx `auth_request`: X-Original-URI. ingress-nginx `auth-url`: the whole X-Original-URL,
        // and it passes a client's X-Original-URI through untouched. So when both are present they
        // must name the same path, or the request cannot be judged (a forged `X-Original-URI:
        // /public` beside ingress-nginx's URL of a protected path).
        NGINX_PATH => {
            let of_url = || Some(text("x-original-url")?.parse::<Uri>().ok()?.path_and_query()?.as_str().to_owned());
            let path = match (headers.contains_key("x-original-uri"), headers.contains_key("x-original-url")) {
                (true, true) => of_url().filter(|url| Some(url.as_str()) == text("x-original-uri"))?,
                (true, false) => text("x-original-uri")?.to_owned(),
                (false, _) => of_url()?,
            };
            judged(text("x-original-method")?, path)
        }
        // Traefik `forwardAuth`, Caddy `forward_auth`.
        FORWARD_PATH => judged(text("x-forwarded-method")?, text("x-forwarded-uri")?.to_owned()),
        // Envoy `http_service`: the request itself, under its `path_prefix`.
        _ => {
            let path = uri.path_and_query().map_or("/", |p| p.as_str()).strip_prefix(prefix)?;
            judged(method.as_str(), path.to_owned())
        }
    }
}

/// The neutral request: the credential, the cookie rules' inputs, and the spoofed-identity check.
fn request_from<'a>(method: &'a str, path: &'a str, headers: &'a HeaderMap, identity: &IdentityHeaders) -> Request<'a> {
    let first = |name: HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
    let authorizations = headers.get_all(header::AUTHORIZATION).iter().count();
    Request {
        // Non-UTF-8 bytes cannot be a bearer token: refused as malformed.
        authorization: first(header::AUTHORIZATION),
        authorization_repeated: authorizations > 1,
        cookie: headers.get(header::COOKIE).and_then(|v| v.to_str().ok()),
        origin: headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        websocket: headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket")),
        spoofed_identity: headers.keys().any(|name| identity.spoofed_by(name.as_str())),
        method,
        request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()),
        path,
        route: Default::default(),
        html: headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(prefers_html),
    }
}

/// 200 with the identity headers for the proxy to pass on (`auth_request_set`, `copy_headers`,
/// `authResponseHeaders`, `allowed_upstream_headers`). Every identity header is in the answer,
/// empty where the caller has none (an anonymous allow: all of them): a proxy that copies a header
/// the answer lacks may otherwise send a client's copy, or its own placeholder text, upstream.
fn allow(allowed: &Allowed, identity: &IdentityHeaders) -> Response {
    let mut values: Vec<String> = vec![String::new(); identity.names().len()];
    if let Allowed::Verified(claims) = allowed {
        for (i, value) in identity_header_values(claims, identity.qualifiers()) {
            values[i] = value;
        }
    }
    let mut response = StatusCode::OK.into_response();
    for (name, value) in identity.names().iter().zip(values) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The denial as every HTTP answer of this service renders it.
fn deny(denied: Denied) -> Response {
    let mut response = HttpError::Denied(denied).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
