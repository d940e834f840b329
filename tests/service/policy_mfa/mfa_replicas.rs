//! A user revocation resets MFA state on every replica: replica A's admin route revokes alice
//! (after an administrator reset her MFA at Cognito); replica B, which had cached "enrolled",
//! learns the revocation through the shared store — a publish, a resync after resubscribing, or
//! a reload — and asks the MFA source again for her next sign-in instead of answering from cache.
//! Two replicas in one process over an in-memory store; decisions through `ExtAuthz::decide`.

use std::sync::{Arc, Mutex};

use crate::common::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use cognito_authz::cognito::MfaState;
use cognito_authz::envoy::ext_authz::ExtAuthz;
use cognito_authz::envoy::pb::auth::check_response::HttpResponse;
use cognito_authz::http::admin::{self, AdminState};
use cognito_authz::revocation::{Entry, RevocationStore, Revocations, StoreFuture};
use cognito_authz::secret::Secret;
use cognito_authz::server;
use serde_json::json;
use tower::ServiceExt;

const ADMIN_TOKEN: &str = "test-admin-token";

/// The shared store (Redis, in production): every entry appended, and the ones published since
/// the test last delivered them.
#[derive(Default)]
struct SharedStore {
    entries: Mutex<Vec<Entry>>,
    published: Mutex<Vec<Entry>>,
}

impl SharedStore {
    fn take_published(&self) -> Vec<Entry> {
        std::mem::take(&mut self.published.lock().unwrap())
    }
}

impl RevocationStore for SharedStore {
    fn load(&self, now: u64) -> StoreFuture<'_, Vec<Entry>> {
        let live = self.entries.lock().unwrap().iter().filter(|e| e.until() > now).cloned().collect();
        Box::pin(async move { Ok(live) })
    }

    fn append<'a>(&'a self, entries: &'a [Entry]) -> StoreFuture<'a, ()> {
        self.entries.lock().unwrap().extend_from_slice(entries);
        self.published.lock().unwrap().extend_from_slice(entries);
        Box::pin(async { Ok(()) })
    }

    fn compact(&self, _now: u64) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

struct Replica {
    ext: ExtAuthz,
    admin: axum::Router,
    revocations: Revocations,
    mfa: Arc<FakeMfa>,
}

async fn replica(store: Arc<SharedStore>) -> Replica {
    let config = crate::common::config(NO_JWKS);
    let mfa = FakeMfa::new();
    let built = scripted_parts(&config, mfa.clone(), &serving(&["kid-1"])).await;
    let revocations = Revocations::new(store, false, None);
    let parts = server::assemble(&config, vec![built.keys.clone()], vec![mfa.clone()], revocations.clone());
    let admin = admin::routes(AdminState {
        metrics: parts.metrics.clone(),
        revocations: revocations.clone(),
        mfa: parts.mfa.clone(),
        issuers: server::admin_issuers(&config, &[]),
        token: Some(Secret::new(ADMIN_TOKEN.into())),
        refresh_token_lifetime: config.auth.refresh_token_lifetime,
    });
    Replica { ext: ExtAuthz::new(parts.authorizer, false, parts.metrics), admin, revocations, mfa }
}

impl Replica {
    /// The HTTP status Envoy would answer alice's request to an `mfa` route with.
    async fn mfa_route(&self, token: &str) -> i32 {
        let mut req = bearer(token);
        req.attributes.as_mut().unwrap().context_extensions = [("access".to_owned(), "mfa".to_owned())].into();
        match self.ext.decide(&req, now()).await.http_response.expect("an http response") {
            HttpResponse::OkResponse(_) => 200,
            HttpResponse::DeniedResponse(denied) => denied.status.expect("a status").code,
            HttpResponse::ErrorResponse(_) => panic!("never used"),
        }
    }

    async fn revoke_user(&self, sub: &str) -> StatusCode {
        let request = Request::post("/admin/revoke-user")
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::from(json!({ "sub": sub }).to_string()))
            .unwrap();
        self.admin.clone().oneshot(request).await.unwrap().status()
    }
}

/// Alice's access token from a sign-in at `auth_time`.
fn alice_signed_in_at(auth_time: u64) -> String {
    let mut claims = access_claims();
    claims["auth_time"] = json!(auth_time);
    claims["jti"] = json!(uuid::Uuid::new_v4().to_string());
    claims["origin_jti"] = json!(uuid::Uuid::new_v4().to_string());
    key("kid-1").sign(&claims)
}

/// The whole story, with `learn` being how replica B hears of A's revocation.
async fn revoked_user_is_asked_again(learn: impl AsyncFnOnce(&Replica, &SharedStore)) {
    let store = Arc::new(SharedStore::default());
    let (a, b) = (replica(store.clone()).await, replica(store.clone()).await);
    let old = alice_signed_in_at(now() - 60);
    assert_eq!(b.mfa_route(&old).await, 200, "alice is enrolled");
    // An administrator resets alice's MFA at Cognito; B still answers from its cache.
    b.mfa.set("alice", Ok(MfaState::NotEnrolled));
    assert_eq!(b.mfa_route(&old).await, 200, "positive control: B's cached answer is in use");
    assert_eq!(b.mfa.lookups(), 1);

    assert_eq!(a.revoke_user(SUB).await, StatusCode::OK);
    learn(&b, &store).await;
    assert_eq!(b.mfa_route(&old).await, 401, "B refuses the sessions the revocation covers");
    // Alice signs in again (a second later: the revocation covers its own second).
    let new = alice_signed_in_at(now() + 1);
    assert_eq!(b.mfa_route(&new).await, 403, "B asks again and learns she is no longer enrolled");
    assert_eq!(b.mfa.lookups(), 2);
}

#[tokio::test]
async fn a_user_revocation_published_by_another_replica_resets_the_cached_mfa_answer() {
    revoked_user_is_asked_again(async |b, store| b.revocations.apply(store.take_published()).await).await;
}

#[tokio::test]
async fn a_user_revocation_merged_by_a_resync_resets_the_cached_mfa_answer() {
    revoked_user_is_asked_again(async |b, _| {
        b.revocations.resync(now()).await.expect("resync");
    })
    .await;
}

#[tokio::test]
async fn a_user_revocation_loaded_by_a_reload_resets_the_cached_mfa_answer() {
    revoked_user_is_asked_again(async |b, _| {
        b.revocations.reload(now()).await.expect("reload");
    })
    .await;
}
