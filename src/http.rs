//! The HTTP listener's routes that every mode has: a plain readiness check.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::keys::KeyStore;

/// `GET /healthz`: 200 once signing keys are loaded, 503 before (for HTTP-only probes).
pub fn health_routes(keys: KeyStore) -> Router {
    Router::new().route("/healthz", get(healthz)).with_state(keys)
}

async fn healthz(State(keys): State<KeyStore>) -> impl IntoResponse {
    let loaded = *keys.loaded().borrow();
    let (status, body) = if loaded {
        (StatusCode::OK, serde_json::json!({"status": "serving", "keys": keys.key_count()}))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"status": "not_serving"}))
    };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body))
}

/// The admin listener: `GET /metrics` (Prometheus text format).
pub fn admin_routes(metrics: crate::metrics::Metrics) -> Router {
    Router::new().route("/metrics", get(render_metrics)).with_state(metrics)
}

async fn render_metrics(State(metrics): State<crate::metrics::Metrics>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.render())
}
