//! The HTTP listener (the companion module and a readiness check) and the admin listener
//! (metrics, user revocation). Every HTTP error becomes a response here, in one place.

pub mod admin;
pub mod auth;
pub mod forward_auth;
pub mod oauth;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::authz::error::Denied;
use crate::cognito::CognitoError;
use crate::http::oauth::OAuthError;
use crate::keys::key_store::KeyStore;
use crate::revocation::Revocations;

pub use auth::AuthState;

/// The HTTP listener's routes: the companion module and `GET /healthz` (waiting for every issuer's
/// keys). Every response carries `Cache-Control: no-store`; CORS is off unless origins are
/// configured.
pub fn routes(state: AuthState, keys: Vec<KeyStore>) -> Router {
    let revocations = state.revocations.clone();
    let metrics = state.metrics.clone();
    let origins: Vec<HeaderValue> =
        state.settings.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let mut router = Router::new()
        .route("/auth/sign-in", post(auth::sign_in))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/me", get(auth::me))
        .route("/auth/logout", get(auth::logout).post(auth::logout))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(metrics, count_request))
        .merge(health_routes(keys, revocations));
    if !origins.is_empty() {
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_credentials(true)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    router.layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
}

/// Counts each request to the module by route and status (the route from a fixed set, so a caller
/// cannot multiply series).
async fn count_request(
    State(metrics): State<crate::telemetry::metrics::Metrics>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = match request.uri().path() {
        "/auth/sign-in" => "sign_in",
        "/auth/refresh" => "refresh",
        "/auth/me" => "me",
        "/auth/logout" => "logout",
        _ => "other",
    };
    let span =
        crate::telemetry::traces::request_span(route, |name| request.headers().get(name).and_then(|v| v.to_str().ok()));
    let response = match span {
        Some(span) => {
            let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
            span.record("http.response.status_code", i64::from(response.status().as_u16()));
            response
        }
        None => next.run(request).await,
    };
    metrics.http_request(route, response.status().as_u16());
    response
}

/// `GET /healthz`: 200 once every issuer's signing keys and the revocation list are loaded (as gRPC
/// health says SERVING), 503 before (for HTTP-only probes).
pub fn health_routes(keys: Vec<KeyStore>, revocations: Revocations) -> Router {
    Router::new().route("/healthz", get(healthz)).with_state((keys, revocations))
}

async fn healthz(State((keys, revocations)): State<(Vec<KeyStore>, Revocations)>) -> impl IntoResponse {
    let loaded = keys.iter().all(|k| *k.loaded().borrow()) && *revocations.loaded().borrow();
    let (status, body) = if loaded {
        let count: usize = keys.iter().map(KeyStore::key_count).sum();
        (StatusCode::OK, json!({"status": "serving", "keys": count}))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "not_serving"}))
    };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body))
}

/// Why an HTTP request failed. Details the client sees are fixed strings.
#[derive(Debug)]
pub enum HttpError {
    /// 400: the body is not what the route takes.
    BadBody,
    /// 415: the body is not labelled `application/json`.
    NotJson,
    /// 403: no credentials at all (`/auth/me`, as the service it replaces answers).
    NoCredentials,
    /// The token was refused: the same answer as an ext_authz denial.
    Denied(Denied),
    /// 403: a cookie-only request from an origin that is not configured.
    OriginNotAllowed,
    /// 401: no refresh-token cookie.
    NoRefreshToken,
    /// 401: the refresh token was refused; the cookie is cleared.
    RefreshRefused(HeaderValue),
    /// 401: the authorization server refused the grant.
    Refused(&'static str),
    /// 502: Cognito (or the OAuth server) answered an error.
    Upstream,
    /// 503: Cognito (or the OAuth server) could not be reached.
    Unreachable,
    /// 503: the revocation store could not record the logout, so it is not acknowledged.
    StoreUnavailable,
    /// 501: the OAuth endpoints are not configured.
    NotConfigured,
    /// 401: the admin route's bearer token is missing or wrong.
    AdminUnauthorized,
    /// Any of the above, also clearing the refresh cookie.
    WithCookie(Box<HttpError>, HeaderValue),
}

impl HttpError {
    /// The answer for an OAuth endpoint's failure; `refused` is said when it refused the grant.
    pub fn from_oauth(error: OAuthError, refused: &'static str) -> HttpError {
        match error {
            OAuthError::Refused => HttpError::Refused(refused),
            OAuthError::Upstream => HttpError::Upstream,
            OAuthError::Unreachable => HttpError::Unreachable,
            OAuthError::NotConfigured => HttpError::NotConfigured,
        }
    }

    /// The answer for a Cognito API failure.
    pub fn from_cognito(error: CognitoError) -> HttpError {
        match error {
            CognitoError::Refused => HttpError::Refused("Could not validate credentials"),
            CognitoError::Throttled | CognitoError::Unreachable => HttpError::Unreachable,
            CognitoError::Unexpected => HttpError::Upstream,
        }
    }

    /// The same answer, also setting `cookie` (clearing a refresh cookie).
    pub fn with_cookie(self, cookie: HeaderValue) -> HttpError {
        match self {
            HttpError::WithCookie(inner, _) => HttpError::WithCookie(inner, cookie),
            other => HttpError::WithCookie(Box::new(other), cookie),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let detail = |status: StatusCode, detail: &str| (status, Json(json!({ "detail": detail }))).into_response();
        match self {
            HttpError::BadBody => detail(StatusCode::BAD_REQUEST, "Malformed request body"),
            HttpError::NotJson => detail(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Request body must be application/json"),
            HttpError::NoCredentials => detail(StatusCode::FORBIDDEN, "Not authenticated"),
            HttpError::Denied(denied) => {
                let status = denied.http_status();
                let mut response = detail(status, denied.client_message());
                if let Some(challenge) = denied.www_authenticate().and_then(|c| HeaderValue::from_str(&c).ok()) {
                    response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
                }
                response
            }
            HttpError::OriginNotAllowed => detail(StatusCode::FORBIDDEN, "Origin not allowed"),
            HttpError::NoRefreshToken => detail(StatusCode::UNAUTHORIZED, "No refresh token"),
            HttpError::RefreshRefused(clear) => {
                let mut response = detail(StatusCode::UNAUTHORIZED, "Refresh token was refused");
                response.headers_mut().insert(header::SET_COOKIE, clear);
                response
            }
            HttpError::Refused(message) => {
                let mut response = detail(StatusCode::UNAUTHORIZED, message);
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            HttpError::Upstream => detail(StatusCode::BAD_GATEWAY, "Cognito answered an error"),
            HttpError::Unreachable => detail(StatusCode::SERVICE_UNAVAILABLE, "Cognito is unreachable"),
            HttpError::StoreUnavailable => {
                detail(StatusCode::SERVICE_UNAVAILABLE, "Revocation store unavailable; logout not acknowledged")
            }
            HttpError::NotConfigured => detail(StatusCode::NOT_IMPLEMENTED, "OAuth endpoints are not configured"),
            HttpError::AdminUnauthorized => {
                let mut response = detail(StatusCode::UNAUTHORIZED, "Not authenticated");
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            HttpError::WithCookie(inner, cookie) => {
                let mut response = inner.into_response();
                response.headers_mut().insert(header::SET_COOKIE, cookie);
                response
            }
        }
    }
}
