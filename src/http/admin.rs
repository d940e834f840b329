//! The admin listener (`--admin-listen`, loopback by default; never routed by Envoy):
//! `GET /metrics`, `GET /livez` (liveness: depends on nothing external), and
//! `POST /admin/revoke-user`, protected by a bearer token compared in constant time.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::HttpError;
use crate::clock::unix_now;
use crate::cognito::{CognitoError, UserCalls};
use crate::config::secret::Secret;
use crate::mfa::MfaGate;
use crate::revocation::{Entry, Revocations};
use crate::telemetry::metrics::Metrics;

/// What the admin routes need.
#[derive(Clone)]
pub struct AdminState {
    /// Rendered at `/metrics`.
    pub metrics: Metrics,
    /// Where `revoke-user` writes.
    pub revocations: Revocations,
    /// Whose cached answer `revoke-user` drops.
    pub mfa: MfaGate,
    /// The issuers whose users `revoke-user` may name, in configuration order.
    pub issuers: Arc<[AdminIssuer]>,
    /// Without a token the revoke route is off.
    pub token: Option<Secret>,
    /// How long a user revocation is kept.
    pub refresh_token_lifetime: Duration,
}

crate::opaque_debug!(AdminState);

/// An issuer as `revoke-user` sees it.
#[derive(Clone)]
pub struct AdminIssuer {
    /// Its configured name (the request's `issuer`).
    pub name: String,
    /// Its `iss` (an OIDC user's revocation is scoped by it).
    pub iss: String,
    /// True for a Cognito pool (its users' `sub` is a UUID).
    pub cognito: bool,
    /// Where its users are signed out: that pool's API, when this service has a client for it.
    pub calls: Option<Arc<dyn UserCalls>>,
}

crate::opaque_debug!(AdminIssuer);

/// `/metrics`, `/livez` and the admin routes.
pub fn routes(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        // Liveness: answers while the process can serve HTTP at all, depending on nothing
        // external, so a Cognito or JWKS outage never gets pods restarted.
        .route("/livez", get(|| async { "ok\n" }))
        .route("/admin/revoke-user", post(revoke_user))
        .with_state(state)
}

async fn render_metrics(State(state): State<AdminState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeUser {
    /// A Cognito pool's user: a UUID; an OIDC provider's: its `sub`, any non-empty text.
    sub: String,
    /// The Cognito username, for `AdminUserGlobalSignOut` (defaults to the `sub`).
    username: Option<String>,
    /// The issuer's name; may be left out when only one is configured.
    issuer: Option<String>,
}

/// Refuses every token of a user signed in before now, signs them out at Cognito and forgets
/// their cached MFA state: what an admin needs after an MFA reset.
async fn revoke_user(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, HttpError> {
    authorize(&state, &headers)?;
    let request: RevokeUser = serde_json::from_slice(&body).map_err(|_| HttpError::BadBody)?;
    // The user of the named issuer, never a same-named user of another: with several issuers the
    // request must say which.
    let issuer = match request.issuer.as_deref() {
        Some(name) => state.issuers.iter().find(|i| i.name == name),
        None if state.issuers.len() == 1 => state.issuers.first(),
        None => None,
    }
    .ok_or(HttpError::BadBody)?;
    let now = unix_now();
    let until = now + state.refresh_token_lifetime.as_secs();
    let sub = if issuer.cognito { Some(Uuid::parse_str(&request.sub).map_err(|_| HttpError::BadBody)?) } else { None };
    if request.sub.is_empty() || (sub.is_none() && request.username.is_some()) {
        return Err(HttpError::BadBody);
    }
    let entry = match sub {
        Some(sub) => Entry::User { sub, before: now, until },
        None => Entry::Subject { iss: issuer.iss.clone(), sub: request.sub.clone(), before: now, until },
    };
    state.revocations.revoke(vec![entry]).await.map_err(|error| {
        tracing::warn!(%error, "revocation store unavailable; user revocation not acknowledged");
        HttpError::StoreUnavailable
    })?;
    if let Some(sub) = &sub {
        state.mfa.forget(sub).await;
    }
    // Signed out at the user's own pool only; an OIDC provider's sessions are its own business:
    // this service refuses the user's tokens, and says it signed nobody out there.
    let mut signed_out = false;
    if let Some(calls) = issuer.calls.as_ref().filter(|_| issuer.cognito) {
        let username = request.username.clone().unwrap_or_else(|| request.sub.clone());
        match calls.admin_global_sign_out(&username).await {
            Ok(()) => signed_out = true,
            Err(CognitoError::Refused) => {}
            Err(e) => return Err(HttpError::from_cognito(e)),
        }
    }
    tracing::info!(issuer = %issuer.name, "user revoked by an administrator");
    Ok(Json(json!({
        "revoked": request.sub,
        "issuer": issuer.name,
        "before": now,
        "signed_out_at_cognito": signed_out,
    })))
}

fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), HttpError> {
    let expected = state.token.as_ref().ok_or(HttpError::AdminUnauthorized)?;
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(sent.as_bytes().ct_eq(expected.expose().as_bytes())) && !sent.is_empty() {
        Ok(())
    } else {
        Err(HttpError::AdminUnauthorized)
    }
}
