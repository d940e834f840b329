//! Cognito as it is today (issue 28): the updated issuer format, multi-Region replicated pools,
//! the second factors the `mfa` gate counts, per-session MFA from `amr`, and customised tokens.
//! Decided in-process through `ExtAuthz::decide` with keys from a script; where a Cognito API is
//! involved the fake follows the API reference's shapes (named so in each test).

use crate::common::*;
use cognito_authz::authz::error::code;
use cognito_authz::config::{Config, IssuerFormat, Settings, StoreSpec};
use cognito_authz::envoy::ext_authz::ExtAuthz;
use cognito_authz::revocation::logout_entries;
use serde_json::{Value, json};

const REPLICA: &str = "us-east-1";

fn replicated(format: Option<IssuerFormat>) -> Config {
    let settings = Settings {
        region: Some(REGION.into()),
        user_pool_id: Some(POOL.into()),
        client_id: vec![CLIENT.into()],
        replica_region: vec![REPLICA.into()],
        issuer_format: format,
        ..Settings::default()
    };
    let mut config = settings.into_config().expect("a replicated pool");
    config.revocation_store = StoreSpec::File(temp_dir("revocations").join("revocations.jsonl"));
    config
}

fn signed(claims: &Value) -> String {
    key("kid-1").sign(claims)
}

fn from(iss: &str) -> Value {
    let mut claims = access_claims();
    claims["iss"] = json!(iss);
    claims
}

async fn status(ext: &ExtAuthz, token: &str) -> i32 {
    let request = in_route(
        check_request("/api/items", &[("authorization", &format!("Bearer {token}"))]),
        &[("access", "authenticated")],
    );
    decode(&ext.decide(&request, now()).await).code
}

const PRIMARY_ISS: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool";
const REPLICA_ISS: &str = "https://cognito-idp.us-east-1.amazonaws.com/eu-west-1_TestPool";
const UPDATED_ISS: &str = "https://issuer-cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool";

#[tokio::test]
async fn a_replicated_pools_regions_each_pass_under_their_own_issuer_and_no_other_region_or_format_does() {
    let config = replicated(None);
    assert_eq!(config.pool.issuer, PRIMARY_ISS);
    let parts = scripted_parts(&config, FakeMfa::new(), &serving(&["kid-1"])).await;
    let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics);
    assert_eq!(status(&ext, &signed(&from(PRIMARY_ISS))).await, code::OK, "the primary region");
    assert_eq!(status(&ext, &signed(&from(REPLICA_ISS))).await, code::OK, "the replica region");
    let elsewhere = "https://cognito-idp.us-west-2.amazonaws.com/eu-west-1_TestPool";
    assert_eq!(status(&ext, &signed(&from(elsewhere))).await, code::UNAUTHENTICATED, "a region not replicated to");
    assert_eq!(status(&ext, &signed(&from(UPDATED_ISS))).await, code::UNAUTHENTICATED, "the other format");
}

#[tokio::test]
async fn the_updated_format_passes_its_issuer_in_every_region_and_refuses_the_original() {
    let config = replicated(Some(IssuerFormat::Updated));
    assert_eq!(config.pool.issuer, UPDATED_ISS);
    assert_eq!(config.pool.jwks_url.as_str(), format!("{UPDATED_ISS}/.well-known/jwks.json"));
    let parts = scripted_parts(&config, FakeMfa::new(), &serving(&["kid-1"])).await;
    let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics);
    assert_eq!(status(&ext, &signed(&from(UPDATED_ISS))).await, code::OK);
    for original in [PRIMARY_ISS, REPLICA_ISS] {
        assert_eq!(status(&ext, &signed(&from(original))).await, code::UNAUTHENTICATED, "{original}");
    }
}

#[tokio::test]
async fn a_logout_in_one_region_ends_the_sign_in_in_every_region() {
    let config = replicated(None);
    let parts = scripted_parts(&config, FakeMfa::new(), &serving(&["kid-1"])).await;
    let (verifier, revocations) = (parts.verifier.clone(), parts.revocations.clone());
    let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics);
    // One sign-in (one origin_jti), a token refreshed in each region.
    let in_replica = signed(&from(REPLICA_ISS));
    let mut primary_claims = from(PRIMARY_ISS);
    primary_claims["jti"] = json!("1a2b3c4d-0000-4000-8000-000000000001");
    let in_primary = signed(&primary_claims);
    assert_eq!(status(&ext, &in_primary).await, code::OK, "positive control");
    let claims = verifier.verify(&in_replica, now()).await.expect("a replica region's token");
    assert_eq!(&*claims.iss, PRIMARY_ISS, "revocations are scoped by the pool, not the region");
    let entries = logout_entries(&claims, config.auth.refresh_token_lifetime, 0, now());
    revocations.revoke(entries).await.expect("revoked");
    assert_eq!(status(&ext, &in_replica).await, code::UNAUTHENTICATED);
    assert_eq!(status(&ext, &in_primary).await, code::UNAUTHENTICATED, "the same sign-in, the other region");
}

#[test]
fn an_issuer_table_takes_the_same_two_settings() {
    use cognito_authz::config::issuer::{IssuerTable, KeysAt, validate};
    let table = |format: Option<IssuerFormat>| IssuerTable {
        name: "staff".into(),
        region: Some(REGION.into()),
        user_pool_id: Some(POOL.into()),
        client_id: vec![CLIENT.into()],
        issuer_format: format,
        replica_regions: vec![REPLICA.into()],
        ..IssuerTable::default()
    };
    let [original] = <[_; 1]>::try_from(validate(&[table(None)]).expect("valid")).unwrap();
    assert_eq!(original.iss, PRIMARY_ISS);
    let KeysAt::Regions(urls) = &original.keys else { panic!("{:?}", original.keys) };
    assert_eq!(
        urls.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
        [format!("{PRIMARY_ISS}/.well-known/jwks.json"), format!("{REPLICA_ISS}/.well-known/jwks.json")]
    );
    let [updated] = <[_; 1]>::try_from(validate(&[table(Some(IssuerFormat::Updated))]).expect("valid")).unwrap();
    assert_eq!((updated.iss.as_str(), matches!(updated.keys, KeysAt::Jwks(_))), (UPDATED_ISS, true));
}

#[tokio::test]
async fn the_403_names_the_second_factors_the_gate_counts() {
    use cognito_authz::cognito::{MfaFactor, MfaFactors, MfaState};
    for (factors, body) in [
        (vec![], "MFA enrolment required (totp)"),
        (vec![MfaFactor::Totp, MfaFactor::Sms], "MFA enrolment required (one of totp, sms)"),
        (vec![MfaFactor::Email], "MFA enrolment required (email)"),
    ] {
        let mut config = config(NO_JWKS);
        config.pool.mfa_factors = MfaFactors::of(&factors);
        let mfa = FakeMfa::new();
        let parts = scripted_parts(&config, mfa.clone(), &serving(&["kid-1"])).await;
        let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics);
        let request = |token: &str| {
            in_route(
                check_request("/api/items", &[("authorization", &format!("Bearer {token}"))]),
                &[("access", "mfa")],
            )
        };
        let token = key("kid-1").sign(&access_claims());
        assert_eq!(decode(&ext.decide(&request(&token), now()).await).code, code::OK, "positive control: enrolled");
        mfa.set("bob", Ok(MfaState::NotEnrolled));
        let mut bob = access_claims();
        bob["username"] = json!("bob");
        bob["sub"] = json!("0e0e0e0e-1111-4222-8333-444444444444");
        let denied = decode(&ext.decide(&request(&key("kid-1").sign(&bob)), now()).await);
        assert_eq!(
            (denied.code, denied.body.as_str()),
            (code::PERMISSION_DENIED, json!({"detail": body}).to_string().as_str())
        );
    }
}

#[tokio::test]
async fn with_mfa_from_amr_a_cognito_token_is_judged_by_what_its_session_used() {
    use cognito_authz::cognito::MfaState;
    for from_amr in [true, false] {
        let mut config = config(NO_JWKS);
        config.pool.mfa_from_amr = from_amr;
        let mfa = FakeMfa::new();
        let parts = scripted_parts(&config, mfa.clone(), &serving(&["kid-1"])).await;
        let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics);
        let ask = async |claims: &Value| {
            let token = key("kid-1").sign(claims);
            let request = in_route(
                check_request("/api/items", &[("authorization", &format!("Bearer {token}"))]),
                &[("access", "mfa")],
            );
            decode(&ext.decide(&request, now()).await)
        };
        let with_amr = |amr: Value| {
            let mut claims = access_claims();
            claims["amr"] = amr;
            claims
        };
        // alice is enrolled; this session used a password only.
        let password_only = ask(&with_amr(json!(["pwd"]))).await;
        if !from_amr {
            assert_eq!(password_only.code, code::OK, "by enrolment: amr is not read");
            continue;
        }
        assert_eq!(password_only.code, code::UNAUTHENTICATED, "{password_only:?}");
        assert!(
            password_only.header("www-authenticate").is_some_and(|c| c.contains("insufficient_user_authentication")),
            "the RFC 9470 step-up challenge: {password_only:?}"
        );
        // A session that used a second factor passes without asking Cognito, even for a user the
        // pool says is not enrolled (the session shows it).
        mfa.set("alice", Ok(MfaState::NotEnrolled));
        let before = mfa.lookups();
        assert_eq!(ask(&with_amr(json!(["pwd", "otp", "mfa"]))).await.code, code::OK);
        assert_eq!(mfa.lookups(), before, "no Cognito call");
        // Without amr: enrolment decides, as before (alice is now not enrolled: 403).
        let plain = ask(&access_claims()).await;
        assert_eq!((plain.code, mfa.lookups()), (code::PERMISSION_DENIED, before + 1), "{plain:?}");
        // amr that is not an array of strings refuses the token.
        assert_eq!(ask(&with_amr(json!("mfa"))).await.code, code::UNAUTHENTICATED);
    }
}

/// A client-credentials token as a pre-token-generation trigger (V3) customises it: custom claims
/// of every JSON type, a scope added and the default one suppressed.
fn customised_machine_token(scope: &str) -> String {
    let now = now();
    key("kid-1").sign(&json!({
        "sub": CLIENT, "iss": issuer(), "client_id": CLIENT, "token_use": "access", "scope": scope,
        "auth_time": now, "iat": now, "exp": now + 3600, "jti": "7e1d2c3b-4a5f-4e6d-8c7b-6a5f4e3d2c1b",
        "tenant_tier": 3, "beta": true, "regions": ["eu", "us"], "limits": {"rps": 10}
    }))
}

#[tokio::test]
async fn customised_tokens_keep_the_rules_machine_tokens_pass_only_where_allowed_and_trigger_scopes_count() {
    use cognito_authz::authz::headers::{HeaderClaim, IdentityHeaders};
    for allow_machine in [false, true] {
        let mut config = config(NO_JWKS);
        config.pool.allow_machine_tokens = allow_machine;
        config.header_claims =
            [("x-tier", "tenant_tier"), ("x-beta", "beta"), ("x-regions", "regions"), ("x-limits", "limits")]
                .into_iter()
                .map(|(header, claim)| HeaderClaim { name: header.into(), claim: claim.into() })
                .collect();
        let parts = scripted_parts(&config, FakeMfa::new(), &serving(&["kid-1"])).await;
        let identity = IdentityHeaders::with_mapped(&config.header_claims);
        let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics).identity_headers(identity);
        let ask = async |token: &str, route: &[(&str, &str)]| {
            let request =
                in_route(check_request("/api/reports", &[("authorization", &format!("Bearer {token}"))]), route);
            decode(&ext.decide(&request, now()).await)
        };
        let scoped = [("access", "authenticated"), ("scopes", "reports/export")];
        let machine = customised_machine_token("reports/export");
        let d = ask(&machine, &scoped).await;
        if !allow_machine {
            assert_eq!(d.code, code::UNAUTHENTICATED, "custom claims change nothing: machine tokens are off");
            continue;
        }
        assert_eq!(d.code, code::OK, "{d:?}");
        assert_eq!(
            (d.header("x-tier"), d.header("x-beta"), d.header("x-regions")),
            (Some("3"), Some("true"), Some("eu,us"))
        );
        assert_eq!(d.header("x-limits"), None, "an object is no header value");
        assert!(d.removed.contains(&"x-limits".to_owned()));
        let unscoped = ask(&machine, &[("access", "authenticated")]).await;
        assert_eq!(unscoped.code, code::PERMISSION_DENIED, "a machine token only where a route asks for scopes");
        // The trigger suppressed reports/export: the same route refuses.
        let suppressed = customised_machine_token("reports/read");
        assert_eq!(ask(&suppressed, &scoped).await.code, code::PERMISSION_DENIED);
        // A user's token with a scope the trigger added passes a route that asks for it.
        let mut user = access_claims();
        user["scope"] = json!("aws.cognito.signin.user.admin reports/export");
        assert_eq!(ask(&key("kid-1").sign(&user), &scoped).await.code, code::OK);
        user["scope"] = json!("aws.cognito.signin.user.admin");
        assert_eq!(ask(&key("kid-1").sign(&user), &scoped).await.code, code::PERMISSION_DENIED);
    }
}

/// Each region's keys over real HTTP (two JWKS endpoints on loopback standing in for the regional
/// issuers): a replicated pool's tokens verify against their own region's key, and a region whose
/// JWK Set cannot be fetched makes an unknown `kid` 503, never 401.
#[tokio::test]
async fn each_regions_keys_are_fetched_over_http_and_merged() {
    let primary = JwksServer::start(jwks(&[&key("primary-key")])).await;
    let replica = JwksServer::start(jwks(&[&key("replica-key")])).await;
    let mut config = replicated(None);
    config.pool.jwks_url = primary.url().parse().unwrap();
    config.pool.regional[0].1 = replica.url().parse().unwrap();
    let parts = parts(&config, FakeMfa::new()).await;
    assert!(parts.keys.refresh().await, "both regions' sets load");
    let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics);
    assert_eq!(status(&ext, &key("primary-key").sign(&from(PRIMARY_ISS))).await, code::OK);
    assert_eq!(status(&ext, &key("replica-key").sign(&from(REPLICA_ISS))).await, code::OK);
    assert_eq!((primary.hits(), replica.hits()), (1, 1), "one fetch of each region");
    // The replica's endpoint goes down and a key nobody has seen comes along: the merged set cannot
    // be refreshed, so the answer is 503 (cannot decide), not 401.
    replica.set_mode(Mode::Fail);
    let unseen = key("replica-key-2").sign(&from(REPLICA_ISS));
    assert_eq!(status(&ext, &unseen).await, code::UNAVAILABLE);
    assert!(replica.hits() >= 2, "the unknown kid asked for a refresh");
    assert_eq!(status(&ext, &key("primary-key").sign(&from(PRIMARY_ISS))).await, code::OK, "the last good set stays");
}
