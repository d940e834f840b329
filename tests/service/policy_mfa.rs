//! Route access levels, scopes and groups, machine tokens, and the MFA gate with its cache, decided
//! in-process through `ExtAuthz::decide` with a fake MFA source; and the real AWS SDK client
//! against a fake Cognito endpoint that throttles.

/// A user revocation resets MFA state on every replica.
mod mfa_replicas;

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use cognito_authz::authz::error::code;
use cognito_authz::authz::policy::Policy;
use cognito_authz::aws::SdkCognito;
use cognito_authz::cognito::{CognitoError, MfaLookup, MfaSource, MfaState, User};
use cognito_authz::config::Config;
use cognito_authz::envoy::ext_authz::ExtAuthz;
use cognito_authz::envoy::pb::auth::CheckRequest;
use serde_json::{Value, json};

struct Gate {
    ext: ExtAuthz,
    mfa: Arc<FakeMfa>,
    metrics: cognito_authz::telemetry::metrics::Metrics,
}

/// The decision path in-process, keys from a script: the tests may pause the clock.
async fn gate_with(mut configure: impl FnMut(&mut Config), mfa: Arc<FakeMfa>) -> Gate {
    let mut config = crate::common::config(NO_JWKS);
    configure(&mut config);
    let parts = crate::common::scripted_parts(&config, mfa.clone(), &serving(&["kid-1"])).await;
    Gate { ext: ExtAuthz::new(parts.authorizer, false, parts.metrics.clone()), mfa, metrics: parts.metrics }
}

async fn gate() -> Gate {
    gate_with(|_| {}, FakeMfa::new()).await
}

fn request(path: &str, token: Option<&str>, route: &[(&str, &str)], headers: &[(&str, &str)]) -> CheckRequest {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(a) = &auth {
        all.push(("authorization", a));
    }
    in_route(check_request(path, &all), route)
}

fn token_for(user: &str, changes: Value) -> String {
    let mut claims = access_claims();
    claims["username"] = json!(user);
    claims["sub"] = json!(sub_of(user));
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    key("kid-1").sign(&claims)
}

/// A stable UUID per username, as a pool gives each user their own `sub`.
fn sub_of(user: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    user.hash(&mut h);
    uuid::Uuid::from_u64_pair(h.finish(), 0x8000_0000_0000_0000).to_string()
}

impl Gate {
    async fn ask(&self, req: CheckRequest) -> Decided {
        decode(&self.ext.decide(&req, now()).await)
    }
}

const MFA: &[(&str, &str)] = &[("access", "mfa")];
const AUTHENTICATED: &[(&str, &str)] = &[("access", "authenticated")];
const PUBLIC: &[(&str, &str)] = &[("access", "public")];

#[tokio::test]
async fn mfa_route_without_totp_is_forbidden_and_authenticated_route_is_not() {
    let g = gate().await;
    let bob = token_for("bob", json!({}));
    let a = g.ask(request("/api/items", Some(&bob), MFA, &[])).await;
    assert_eq!((a.code, a.http_status), (code::PERMISSION_DENIED, Some(403)));
    assert_eq!(a.json(), json!({"detail": "MFA enrolment required (totp)"}));
    assert_eq!(g.ask(request("/api/mfa/status", Some(&bob), AUTHENTICATED, &[])).await.code, code::OK);
    let alice = token_for("alice", json!({}));
    assert_eq!(g.ask(request("/api/items", Some(&alice), MFA, &[])).await.code, code::OK);
}

#[tokio::test]
async fn unmatched_routes_and_unknown_access_values_need_mfa() {
    let g = gate().await;
    let bob = token_for("bob", json!({}));
    assert_eq!(g.ask(request("/anything", Some(&bob), &[], &[])).await.http_status, Some(403));
    assert_eq!(
        g.ask(request("/anything", Some(&bob), &[("access", "Authenticated")], &[])).await.http_status,
        Some(403)
    );
    assert_eq!(g.ask(request("/anything", Some(&bob), &[("access", "none")], &[])).await.http_status, Some(403));
}

#[tokio::test]
async fn public_routes_pass_without_a_token_and_still_identify_with_one() {
    let g = gate().await;
    let anonymous = g.ask(request("/public/a.css", None, PUBLIC, &[])).await;
    assert_eq!(anonymous.code, code::OK);
    assert!(anonymous.set.is_empty());
    for h in ["x-user-id", "x-username", "x-user-groups", "x-client-id"] {
        assert!(anonymous.removed.contains(&h.to_owned()), "{h} removed for anonymous callers");
    }
    let garbage = g.ask(request("/public/a.css", Some("not.a.token"), PUBLIC, &[])).await;
    assert_eq!((garbage.code, garbage.set.len()), (code::OK, 0), "an invalid token on a public route is anonymous");
    let bob = g.ask(request("/public/a.css", Some(&token_for("bob", json!({}))), PUBLIC, &[])).await;
    assert_eq!(bob.header("x-username"), Some("bob"));
    assert_eq!(g.mfa.lookups(), 0, "public routes never ask about MFA");
}

#[tokio::test]
async fn odd_paths_are_a_bad_request() {
    let g = gate().await;
    let alice = token_for("alice", json!({}));
    for path in ["/api/../admin", "/api/%2e%2e/admin", "/a//b", "/a%2fb", "/a;jsessionid=1", "/a\\b"] {
        let a = g.ask(request(path, Some(&alice), PUBLIC, &[])).await;
        assert_eq!((a.code, a.http_status), (code::INVALID_ARGUMENT, Some(400)), "{path}");
    }
}

#[tokio::test]
async fn scopes_and_groups_from_the_route_are_required() {
    let g = gate().await;
    let alice = token_for("alice", json!({"scope": "openid reports/read"}));
    let route = |scopes, groups| vec![("access", "authenticated"), ("scopes", scopes), ("groups", groups)];
    assert_eq!(g.ask(request("/r", Some(&alice), &route("reports/read", ""), &[])).await.code, code::OK);
    assert_eq!(g.ask(request("/r", Some(&alice), &route("", "ops,admin"), &[])).await.code, code::OK);
    let a = g.ask(request("/r", Some(&alice), &route("reports/read,reports/write", ""), &[])).await;
    assert_eq!(a.http_status, Some(403));
    assert!(a.header("www-authenticate").unwrap().starts_with("Bearer error=\"insufficient_scope\""));
    assert_eq!(g.ask(request("/r", Some(&alice), &route("", "ops"), &[])).await.http_status, Some(403));
}

#[tokio::test]
async fn policy_file_rules_apply_when_envoy_sets_no_access() {
    let policy = Policy::from_toml(
        r#"
        [[rule]]
        prefix = "/api/mfa"
        access = "authenticated"
        [[rule]]
        prefix = "/api/admin"
        access = "authenticated"
        groups = ["admin"]
        "#,
    )
    .unwrap();
    let g = gate_with(|c| c.policy = policy.clone(), FakeMfa::new()).await;
    let bob = token_for("bob", json!({"cognito:groups": null}));
    assert_eq!(g.ask(request("/api/mfa/enrol", Some(&bob), &[], &[])).await.code, code::OK);
    assert_eq!(g.ask(request("/api/admin/users", Some(&bob), &[], &[])).await.http_status, Some(403));
    assert_eq!(g.ask(request("/api/other", Some(&bob), &[], &[])).await.http_status, Some(403), "unmatched is mfa");
    assert_eq!(g.ask(request("/api/other", Some(&bob), AUTHENTICATED, &[])).await.code, code::OK, "envoy wins");
}

fn machine_token(scope: &str) -> String {
    let claims = json!({
        "sub": CLIENT, "iss": issuer(), "client_id": CLIENT, "token_use": "access", "scope": scope,
        "auth_time": now(), "iat": now(), "exp": now() + 3600, "jti": "5f0c3a1e-8b7d-4c2a-9e6f-1d2c3b4a5e6f",
    });
    key("kid-1").sign(&claims)
}

#[tokio::test]
async fn machine_tokens_are_refused_unless_allowed() {
    let g = gate().await;
    let a = g.ask(request("/api/reports", Some(&machine_token("reports/read")), AUTHENTICATED, &[])).await;
    assert_eq!(a.http_status, Some(401));
}

#[tokio::test]
async fn allowed_machine_tokens_pass_only_scoped_non_mfa_rules() {
    let g = gate_with(|c| c.pool.allow_machine_tokens = true, FakeMfa::new()).await;
    let token = machine_token("reports/read");
    let scoped = [("access", "authenticated"), ("scopes", "reports/read")];
    let a = g.ask(request("/api/reports", Some(&token), &scoped, &[])).await;
    assert_eq!(a.code, code::OK);
    assert_eq!(a.header("x-client-id"), Some(CLIENT));
    assert!(a.header("x-user-id").is_none() && a.removed.contains(&"x-user-id".to_owned()));
    assert_eq!(
        g.ask(request("/api/reports", Some(&token), AUTHENTICATED, &[])).await.http_status,
        Some(403),
        "unscoped rule"
    );
    let mfa_scoped = [("access", "mfa"), ("scopes", "reports/read")];
    assert_eq!(g.ask(request("/api/reports", Some(&token), &mfa_scoped, &[])).await.http_status, Some(403), "mfa rule");
}

#[tokio::test]
async fn enrolled_answers_are_cached_and_concurrent_requests_share_one_lookup() {
    let mfa = FakeMfa::new();
    mfa.set_delay(Duration::from_millis(100));
    let g = Arc::new(gate_with(|_| {}, mfa.clone()).await);
    let alice = token_for("alice", json!({}));
    let mut calls = Vec::new();
    for _ in 0..50 {
        let g = g.clone();
        let t = alice.clone();
        calls.push(tokio::spawn(async move { g.ask(request("/x", Some(&t), MFA, &[])).await.code }));
    }
    for c in calls {
        assert_eq!(c.await.unwrap(), code::OK);
    }
    assert_eq!(mfa.lookups(), 1, "one lookup in flight per user");
    assert_eq!(g.ask(request("/x", Some(&alice), MFA, &[])).await.code, code::OK);
    assert_eq!(mfa.lookups(), 1, "enrolled is cached");
}

#[tokio::test(start_paused = true)]
async fn not_enrolled_is_cached_briefly_so_a_new_enrolment_is_seen_soon() {
    let mfa = FakeMfa::new();
    let g = gate_with(|c| c.mfa.negative_ttl = Duration::from_millis(300), mfa.clone()).await;
    let bob = token_for("bob", json!({}));
    assert_eq!(g.ask(request("/x", Some(&bob), MFA, &[])).await.http_status, Some(403));
    mfa.set("bob", Ok(MfaState::Enrolled));
    assert_eq!(g.ask(request("/x", Some(&bob), MFA, &[])).await.http_status, Some(403), "still cached");
    assert_eq!(mfa.lookups(), 1);
    tokio::time::advance(Duration::from_millis(299)).await;
    assert_eq!(g.ask(request("/x", Some(&bob), MFA, &[])).await.http_status, Some(403), "1 ms before the TTL ends");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(g.ask(request("/x", Some(&bob), MFA, &[])).await.code, code::OK, "enrolment seen after the short TTL");
}

#[tokio::test(start_paused = true)]
async fn an_admin_reset_is_seen_after_the_positive_ttl() {
    let mfa = FakeMfa::new();
    let g = gate_with(|c| c.mfa.ttl = Duration::from_millis(300), mfa.clone()).await;
    let alice = token_for("alice", json!({}));
    assert_eq!(g.ask(request("/x", Some(&alice), MFA, &[])).await.code, code::OK);
    mfa.set("alice", Ok(MfaState::NotEnrolled));
    tokio::time::advance(Duration::from_millis(299)).await;
    assert_eq!(g.ask(request("/x", Some(&alice), MFA, &[])).await.code, code::OK, "1 ms before the TTL ends");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(g.ask(request("/x", Some(&alice), MFA, &[])).await.http_status, Some(403));
}

#[tokio::test]
async fn disabled_users_are_unauthenticated_and_cognito_trouble_is_503() {
    let mfa = FakeMfa::new();
    mfa.set("dora", Ok(MfaState::Gone));
    mfa.set("tess", Err(CognitoError::Throttled));
    mfa.set("una", Err(CognitoError::Unreachable));
    let g = gate_with(|_| {}, mfa).await;
    let dora = g.ask(request("/x", Some(&token_for("dora", json!({}))), MFA, &[])).await;
    assert_eq!((dora.http_status, dora.json()), (Some(401), json!({"detail": "User is disabled"})));
    for user in ["tess", "una"] {
        let a = g.ask(request("/x", Some(&token_for(user, json!({}))), MFA, &[])).await;
        assert_eq!((a.code, a.http_status), (code::UNAVAILABLE, Some(503)), "{user}");
        assert_eq!(a.json(), json!({"detail": "MFA status is temporarily unavailable"}));
        let public = g.ask(request("/p", Some(&token_for(user, json!({}))), PUBLIC, &[])).await;
        assert_eq!(public.code, code::OK, "public routes are unaffected");
    }
    let lookups = g.mfa.lookups();
    let _ = g.ask(request("/x", Some(&token_for("una", json!({}))), MFA, &[])).await;
    assert_eq!(g.mfa.lookups(), lookups + 1, "errors are not cached");
}

#[tokio::test]
async fn get_user_source_needs_the_admin_scope_and_says_so() {
    let mfa = FakeMfa::needing_admin_scope();
    let g = gate_with(|_| {}, mfa.clone()).await;
    let hosted_ui = token_for("alice", json!({"scope": "openid email"}));
    let a = g.ask(request("/x", Some(&hosted_ui), MFA, &[])).await;
    assert_eq!(a.http_status, Some(403));
    assert!(a.header("www-authenticate").unwrap().contains("scope=\"aws.cognito.signin.user.admin\""));
    assert_eq!(mfa.lookups(), 0, "refused locally, not at Cognito");
    let with_scope = token_for("alice", json!({"scope": "aws.cognito.signin.user.admin"}));
    assert_eq!(g.ask(request("/x", Some(&with_scope), MFA, &[])).await.code, code::OK);
}

#[tokio::test]
async fn enforce_mfa_false_lets_unenrolled_users_through() {
    let mfa = FakeMfa::new();
    let g = gate_with(|c| c.mfa.enforce = false, mfa.clone()).await;
    assert_eq!(g.ask(request("/x", Some(&token_for("bob", json!({}))), MFA, &[])).await.code, code::OK);
    assert_eq!(mfa.lookups(), 0);
}

/// A fake Cognito endpoint speaking the JSON protocol: it throttles everything and counts calls.
async fn throttling_cognito() -> (String, Arc<std::sync::atomic::AtomicU64>) {
    use axum::http::StatusCode;
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                assert!(target.ends_with(".AdminGetUser") || target.ends_with(".GetUser"), "{target}");
                (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/x-amz-json-1.1")],
                    r#"{"__type":"TooManyRequestsException","message":"Rate exceeded"}"#,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), calls)
}

/// The real AWS SDK client against a fake Cognito endpoint, with the deadlines the service uses.
async fn sdk_against(endpoint: &str, lookup: MfaLookup) -> SdkCognito {
    let deadlines = (Duration::from_millis(400), Duration::from_secs(1));
    SdkCognito::new("us-east-1", Some(endpoint), "us-east-1_Pool", lookup, deadlines, Some(test_credentials())).await
}

#[tokio::test]
async fn throttling_by_cognito_is_retried_a_bounded_number_of_times_then_503() {
    let (endpoint, calls) = throttling_cognito().await;
    let sdk = sdk_against(&endpoint, MfaLookup::AdminGetUser).await;
    let answer = sdk.mfa_state(User { username: "alice", sub: &uuid::Uuid::nil(), access_token: "unused" }).await;
    assert_eq!(answer, Err(CognitoError::Throttled));
    let n = calls.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=2).contains(&n), "bounded retries, saw {n} calls");

    let get_user = sdk_against(&endpoint, MfaLookup::GetUser).await;
    assert_eq!(
        get_user.mfa_state(User { username: "alice", sub: &uuid::Uuid::nil(), access_token: "t" }).await,
        Err(CognitoError::Throttled)
    );
}

#[tokio::test]
async fn an_unreachable_cognito_endpoint_is_unreachable_within_the_deadline() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let sdk = sdk_against(&endpoint, MfaLookup::GetUser).await;
    let started = std::time::Instant::now();
    assert_eq!(
        sdk.mfa_state(User { username: "alice", sub: &uuid::Uuid::nil(), access_token: "t" }).await,
        Err(CognitoError::Unreachable)
    );
    assert!(started.elapsed() < Duration::from_millis(1500));
}

/// A Cognito that knows one user, `alice`, enrolled, whose `sub` is `SUB_NOW`.
async fn cognito_with_alice(sub_now: &'static str) -> String {
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move || async move {
            let body = json!({
                "Username": "alice", "Enabled": true, "UserStatus": "CONFIRMED",
                "UserAttributes": [{"Name": "sub", "Value": sub_now}, {"Name": "email", "Value": "a@example.com"}],
                "UserMFASettingList": ["SOFTWARE_TOKEN_MFA"]
            });
            ([("content-type", "application/x-amz-json-1.1")], body.to_string())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn cognito_answers_for_a_username_now_held_by_another_sub_are_not_the_tokens() {
    const NOW_SUB: &str = "7d0c8a2e-1111-4f6b-9d55-000000000001";
    let endpoint = cognito_with_alice(NOW_SUB).await;
    for lookup in [MfaLookup::AdminGetUser, MfaLookup::GetUser] {
        let sdk = sdk_against(&endpoint, lookup).await;
        let same: uuid::Uuid = NOW_SUB.parse().unwrap();
        let user = |sub| User { username: "alice", sub, access_token: "t" };
        assert_eq!(sdk.mfa_state(user(&same)).await, Ok(MfaState::Enrolled), "{lookup:?}: the same user");
        let old = uuid::Uuid::from_u128(42);
        assert_eq!(sdk.mfa_state(user(&old)).await, Ok(MfaState::Replaced), "{lookup:?}: the name was re-created");
    }
}

#[tokio::test]
async fn a_replaced_user_is_unauthenticated_and_nothing_is_cached_for_the_tokens_sub() {
    let mfa = FakeMfa::new();
    mfa.set("zed", Ok(MfaState::Replaced));
    let g = gate_with(|_| {}, mfa.clone()).await;
    let zed = token_for("zed", json!({}));
    let a = g.ask(request("/x", Some(&zed), MFA, &[])).await;
    assert_eq!((a.code, a.http_status), (code::UNAUTHENTICATED, Some(401)));
    assert_eq!(a.json(), json!({"detail": "Could not validate credentials"}));
    assert_eq!(g.ask(request("/x", Some(&zed), MFA, &[])).await.http_status, Some(401));
    assert_eq!(mfa.lookups(), 2, "asked again: the other user's answer was not cached for this sub");
    mfa.set("zed", Ok(MfaState::Enrolled));
    assert_eq!(g.ask(request("/x", Some(&zed), MFA, &[])).await.code, code::OK, "the same token once it is theirs");
}

#[tokio::test]
async fn the_process_spends_at_most_its_budget_of_lookups_and_cached_answers_still_pass() {
    let mfa = FakeMfa::new();
    let g = gate_with(|c| c.mfa.lookups_per_second = 3, mfa.clone()).await;
    let alice = token_for("alice", json!({}));
    assert_eq!(g.ask(request("/x", Some(&alice), MFA, &[])).await.code, code::OK);
    // Self-registered accounts, each asking once: two more fit in this second's budget.
    let mut statuses = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..6 {
        let answer = g.ask(request("/x", Some(&token_for(&format!("mallory{i}"), json!({}))), MFA, &[])).await;
        statuses.push(answer.http_status);
        bodies.push(answer.json());
    }
    // The bucket refills at 3 a second: a slow machine may let one more through, never more.
    assert_eq!(statuses[..2], [Some(403), Some(403)], "looked up: not enrolled");
    let refused = statuses.iter().filter(|s| **s == Some(503)).count();
    assert!(refused >= 3, "over the budget: {statuses:?}");
    assert!(mfa.lookups() <= 4, "no lookup past the budget: {}", mfa.lookups());
    let (over, _) = bodies.iter().zip(&statuses).find(|(_, s)| **s == Some(503)).unwrap();
    assert_eq!(*over, json!({"detail": "MFA status is temporarily unavailable"}));
    assert_eq!(g.ask(request("/x", Some(&alice), MFA, &[])).await.code, code::OK, "a cached answer is unaffected");
    let metrics = g.metrics.render();
    assert!(metrics.contains(&format!("cognito_authz_mfa_lookups_refused_total {refused}")), "{metrics}");
    assert!(metrics.contains(r#"reason="mfa_lookup_budget""#));
}

#[tokio::test(start_paused = true)]
async fn a_user_who_keeps_asking_is_looked_up_less_and_less_often() {
    let mfa = FakeMfa::new();
    let g = gate_with(
        |c| {
            c.mfa.negative_ttl = Duration::from_millis(100);
            c.mfa.ttl = Duration::from_secs(10);
        },
        mfa.clone(),
    )
    .await;
    let bob = token_for("bob", json!({}));
    // Ask every 50 ms for 1.5 s: lookups at 0, 100, 300, 700 and 1500 ms (the cache doubling).
    for _ in 0..30 {
        assert_eq!(g.ask(request("/x", Some(&bob), MFA, &[])).await.http_status, Some(403));
        tokio::time::advance(Duration::from_millis(50)).await;
    }
    assert_eq!(mfa.lookups(), 4, "four lookups in 1.5 s; a fixed 100 ms cache would make 15");
    // Once enrolled, the streak ends: the next answer is the long positive one.
    mfa.set("bob", Ok(MfaState::Enrolled));
    tokio::time::advance(Duration::from_millis(1700)).await;
    assert_eq!(g.ask(request("/x", Some(&bob), MFA, &[])).await.code, code::OK);
}

#[tokio::test(start_paused = true)]
async fn sessions_before_an_observed_enrolment_are_revoked_when_asked_to() {
    for revoke in [false, true] {
        let mfa = FakeMfa::new();
        let g = gate_with(
            |c| {
                c.mfa.negative_ttl = Duration::from_millis(50);
                c.mfa.revoke_sessions_on_enrolment = revoke;
            },
            mfa.clone(),
        )
        .await;
        let password_only = token_for("bob", json!({"auth_time": now() - 100, "iat": now() - 100}));
        assert_eq!(g.ask(request("/x", Some(&password_only), MFA, &[])).await.http_status, Some(403));
        mfa.set("bob", Ok(MfaState::Enrolled));
        tokio::time::advance(Duration::from_millis(100)).await;
        let after = g.ask(request("/x", Some(&password_only), MFA, &[])).await;
        if revoke {
            assert_eq!((after.http_status, after.json()), (Some(401), json!({"detail": "Token has been revoked"})));
            let again = g.ask(request("/y", Some(&password_only), AUTHENTICATED, &[])).await;
            assert_eq!(again.http_status, Some(401), "revoked everywhere, not only on mfa routes");
            let with_mfa = token_for("bob", json!({"auth_time": now() + 1, "jti": "j-new", "origin_jti": "o-new"}));
            assert_eq!(g.ask(request("/x", Some(&with_mfa), MFA, &[])).await.code, code::OK, "a new sign-in passes");
        } else {
            assert_eq!(after.code, code::OK, "off by default: the earlier session rides on the enrolment");
        }
    }
}
