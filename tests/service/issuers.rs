//! Several issuers in one server (issue 13): two Cognito pools and one OIDC provider, each with
//! its own signing key from its own key script (a JWKS endpoint on loopback each for readiness),
//! decided in-process through `ExtAuthz::decide`. Every refusal is shown next to the allow it
//! would otherwise have been.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tower::ServiceExt;

use crate::common::*;
use cognito_authz::authz::error::code;
use cognito_authz::authz::policy::Policy;
use cognito_authz::cognito::{CognitoError, MfaState, UserCalls};
use cognito_authz::config::Secret;
use cognito_authz::config::issuer::{IssuerKind, IssuerTable, validate};
use cognito_authz::config::{Config, ServeArgs};
use cognito_authz::envoy::ext_authz::ExtAuthz;
use cognito_authz::envoy::pb::auth::CheckRequest;
use cognito_authz::http::admin::{self, AdminState};
use cognito_authz::testkit::scripted_keys::ScriptedKeys;
use serde_json::{Value, json};

const CUSTOMERS_POOL: &str = "eu-west-1_Customers";
const CUSTOMERS_CLIENT: &str = "client-c";
const PARTNERS_ISS: &str = "https://idp.example.com/realms/acme";
const API: &str = "https://api.example.com";

fn customers_iss() -> String {
    format!("https://cognito-idp.{REGION}.amazonaws.com/{CUSTOMERS_POOL}")
}

struct World {
    ext: ExtAuthz,
    staff: Arc<ScriptedKeys>,
    customers: Arc<ScriptedKeys>,
    partners: Arc<ScriptedKeys>,
    staff_mfa: Arc<FakeMfa>,
    customers_mfa: Arc<FakeMfa>,
    metrics: cognito_authz::telemetry::metrics::Metrics,
}

/// The staff, customers and partners tables, each with its keys at the URL given for it.
fn tables([staff, customers, partners]: [&str; 3]) -> Vec<IssuerTable> {
    vec![
        IssuerTable {
            name: "staff".into(),
            region: Some(REGION.into()),
            user_pool_id: Some(POOL.into()),
            client_id: vec![CLIENT.into()],
            jwks_url: Some(staff.into()),
            ..IssuerTable::default()
        },
        IssuerTable {
            name: "customers".into(),
            region: Some(REGION.into()),
            user_pool_id: Some(CUSTOMERS_POOL.into()),
            client_id: vec![CUSTOMERS_CLIENT.into()],
            jwks_url: Some(customers.into()),
            ..IssuerTable::default()
        },
        IssuerTable {
            name: "partners".into(),
            kind: IssuerKind::Oidc,
            issuer: Some(PARTNERS_ISS.into()),
            jwks_url: Some(partners.into()),
            audience: vec![API.into()],
            mfa_amr: Some(vec!["mfa".into(), "otp".into()]),
            mfa_acr: vec!["urn:acme:loa:2".into()],
            ..IssuerTable::default()
        },
    ]
}

async fn world_with(configure: impl FnOnce(&mut Config)) -> World {
    let staff = serving(&["staff-key"]);
    let customers = serving(&["customers-key"]);
    let partners = serving(&["partners-key"]);
    let mut config = config(NO_JWKS);
    config.issuers = validate(&tables([NO_JWKS; 3])).expect("valid tables");
    configure(&mut config);
    let staff_mfa = FakeMfa::new();
    let customers_mfa = FakeMfa::new();
    // The same username in the two pools: only the customers pool says alice has no TOTP.
    customers_mfa.set("alice", Ok(MfaState::NotEnrolled));
    let issuers = vec![
        (staff.clone(), staff_mfa.clone()),
        (customers.clone(), customers_mfa.clone()),
        (partners.clone(), FakeMfa::new()),
    ];
    let parts = scripted_issuers(&config, issuers).await;
    assert_eq!(parts.issuer_keys.len(), 3);
    let metrics = parts.metrics.clone();
    World {
        ext: ExtAuthz::new(parts.authorizer, false, parts.metrics),
        staff,
        customers,
        partners,
        staff_mfa,
        customers_mfa,
        metrics,
    }
}

async fn world() -> World {
    world_with(|_| {}).await
}

fn staff_token() -> String {
    key("staff-key").sign(&access_claims())
}

fn customers_claims() -> Value {
    let mut claims = access_claims();
    claims["iss"] = json!(customers_iss());
    claims["client_id"] = json!(CUSTOMERS_CLIENT);
    claims
}

fn customers_token() -> String {
    key("customers-key").sign(&customers_claims())
}

fn partners_claims(changes: Value) -> Value {
    let now = now();
    let mut claims = json!({
        "iss": PARTNERS_ISS, "sub": "00u1partner", "aud": API, "exp": now + 600, "iat": now - 5,
        "jti": "p-1", "client_id": "partner-app", "scope": "openid", "amr": ["pwd"],
        "preferred_username": "pat@partner.example", "groups": ["partner"]
    });
    for (k, v) in changes.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn partners_token(changes: Value) -> String {
    let header = json!({"alg": "RS256", "kid": "partners-key", "typ": "at+jwt"});
    key("partners-key").sign_raw(&header.to_string(), &partners_claims(changes).to_string())
}

fn request(path: &str, token: &str, route: &[(&str, &str)]) -> CheckRequest {
    in_route(check_request(path, &[("authorization", &format!("Bearer {token}"))]), route)
}

impl World {
    async fn ask(&self, path: &str, token: &str, route: &[(&str, &str)]) -> Decided {
        decode(&self.ext.decide(&request(path, token, route), now()).await)
    }

    /// On an `authenticated` route, so MFA stays out of it.
    async fn authenticated(&self, token: &str) -> Decided {
        self.ask("/api/items", token, &[("access", "authenticated")]).await
    }
}

#[tokio::test]
async fn each_issuers_tokens_pass_and_name_their_issuer() {
    let w = world().await;
    let staff = w.authenticated(&staff_token()).await;
    assert_eq!((staff.code, staff.header("x-user-issuer")), (code::OK, Some("staff")), "{staff:?}");
    // With several issuers and none named bare, every value is qualified by its issuer.
    assert_eq!(staff.header("x-user-id"), Some(format!("staff:{SUB}").as_str()));
    let customers = w.authenticated(&customers_token()).await;
    assert_eq!((customers.code, customers.header("x-user-issuer")), (code::OK, Some("customers")), "{customers:?}");
    let partners = w.authenticated(&partners_token(json!({}))).await;
    assert_eq!((partners.code, partners.header("x-user-issuer")), (code::OK, Some("partners")), "{partners:?}");
    assert_eq!(partners.header("x-user-id"), Some("partners:00u1partner"), "an OIDC sub is any string");
    assert_eq!(partners.header("x-username"), Some("partners:pat@partner.example"), "from username-claim");
    assert_eq!(partners.header("x-user-groups"), Some("partners:partner"), "from groups-claim");
}

#[tokio::test]
async fn a_provider_minting_a_staff_users_sub_and_name_gets_another_identity() {
    let w = world_with(|c| c.unqualified_issuer = Some("staff".into())).await;
    let staff = w.authenticated(&staff_token()).await;
    assert_eq!(
        (staff.code, staff.header("x-user-id"), staff.header("x-username")),
        (code::OK, Some(SUB), Some("alice")),
        "the unqualified issuer keeps the single-pool headers: {staff:?}"
    );
    let mimic = partners_token(json!({"sub": SUB, "preferred_username": "alice", "groups": ["admin"]}));
    let partner = w.authenticated(&mimic).await;
    assert_eq!(partner.code, code::OK, "{partner:?}");
    assert_eq!(partner.header("x-user-id"), Some(format!("partners:{SUB}").as_str()));
    assert_eq!(partner.header("x-username"), Some("partners:alice"));
    assert_eq!(partner.header("x-user-groups"), Some("partners:admin"));
    assert_ne!(partner.header("x-user-id"), staff.header("x-user-id"));
}

#[tokio::test]
async fn a_group_name_means_a_group_of_the_issuers_the_route_names() {
    // The README's example: the admin rule is tied to the staff pool.
    let policy = Policy::from_toml(
        "[[rule]]\nprefix = \"/api/admin\"\naccess = \"authenticated\"\ngroups = [\"admin\"]\nissuers = [\"staff\"]\n",
    )
    .expect("policy");
    let mut admin = access_claims();
    admin["cognito:groups"] = json!(["admin"]);
    let staff_admin = key("staff-key").sign(&admin);
    let w = world_with(|c| c.policy = policy).await;
    let route = [("access", "authenticated")];
    assert_eq!(w.ask("/api/admin/users", &staff_admin, &route).await.code, code::OK, "the staff pool's admin");
    let partner = w.ask("/api/admin/users", &partners_token(json!({"groups": ["admin"]})), &route).await;
    assert_eq!(
        (partner.code, partner.http_status),
        (code::PERMISSION_DENIED, Some(403)),
        "a provider's admin: {partner:?}"
    );
    // Envoy's per-route groups that name no issuer are ambiguous with several issuers: refused
    // for everyone, the staff admin too, with a reason the decision log shows.
    let loose = [("access", "authenticated"), ("groups", "admin")];
    let refused = w.ask("/other", &staff_admin, &loose).await;
    assert_eq!((refused.code, refused.http_status), (code::PERMISSION_DENIED, Some(403)), "{refused:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&refused.body).unwrap()["detail"],
        "Route names groups or scopes without their issuer"
    );
    let tied = [("access", "authenticated"), ("groups", "admin"), ("issuers", "staff")];
    assert_eq!(w.ask("/other", &staff_admin, &tied).await.code, code::OK, "tied to staff, it passes");
    assert_eq!(
        w.ask("/other", &partners_token(json!({"groups": ["admin"]})), &tied).await.code,
        code::PERMISSION_DENIED
    );
}

#[tokio::test]
async fn a_policy_rule_with_groups_but_no_issuers_stops_start_up_with_several_issuers() {
    let policy = Policy::from_toml("[[rule]]\nprefix = \"/api/admin\"\naccess = \"mfa\"\ngroups = [\"admin\"]\n")
        .expect("policy");
    let mut config = config(NO_JWKS);
    config.issuers = validate(&tables([NO_JWKS; 3])).expect("valid tables");
    config.policy = policy.clone();
    let Err(refused) = cognito_authz::server::build(&config).await else { panic!("start-up is refused") };
    assert!(refused.to_string().contains("--policy"), "{refused}");
    let chain = format!("{refused:#}");
    assert!(chain.contains("rule 1 (/api/admin)") && chain.contains("names no issuers"), "{chain}");
    // Positive control: the same rule with one issuer is fine.
    assert!(policy.check_issuers(&["default".to_owned()]).is_ok());
}

#[tokio::test]
async fn on_a_public_route_another_issuers_token_is_anonymous() {
    let w = world().await;
    let route = [("access", "public"), ("issuers", "staff")];
    let staff = w.ask("/news", &staff_token(), &route).await;
    assert_eq!((staff.code, staff.header("x-user-issuer")), (code::OK, Some("staff")), "{staff:?}");
    let partner = w.ask("/news", &partners_token(json!({})), &route).await;
    assert_eq!(partner.code, code::OK, "a public route stays open: {partner:?}");
    for header in ["x-user-id", "x-username", "x-user-groups", "x-user-issuer"] {
        assert_eq!(partner.header(header), None, "{header}: another issuer's token is anonymous here");
    }
}

#[tokio::test]
async fn an_oidc_id_token_is_refused_whatever_its_typ() {
    let w = world().await;
    let jwt = |claims: Value| {
        let header = json!({"alg": "RS256", "kid": "partners-key", "typ": "JWT"});
        key("partners-key").sign_raw(&header.to_string(), &partners_claims(claims).to_string())
    };
    assert_eq!(w.authenticated(&jwt(json!({}))).await.code, code::OK, "an access token stamped typ JWT passes");
    for marker in [json!({"nonce": "n"}), json!({"at_hash": "h"}), json!({"c_hash": "h"}), json!({"typ": "ID"})] {
        let id = w.authenticated(&jwt(marker.clone())).await;
        assert_eq!((id.code, id.http_status), (code::UNAUTHENTICATED, Some(401)), "{marker}: {id:?}");
        assert_eq!(serde_json::from_str::<Value>(&id.body).unwrap()["detail"], "Not an access token");
    }
}

#[tokio::test]
async fn a_token_naming_one_pool_but_signed_with_another_pools_key_is_refused() {
    let w = world().await;
    // Positive control: the customers pool's own token passes.
    assert_eq!(w.authenticated(&customers_token()).await.code, code::OK);
    // Signed with the staff key, naming the customers pool: the staff key's kid is unknown there.
    let forged = key("staff-key").sign(&customers_claims());
    let answer = w.authenticated(&forged).await;
    assert_eq!((answer.code, answer.http_status), (code::UNAUTHENTICATED, Some(401)), "{answer:?}");
    // Even under the customers key's own kid, the staff key's signature does not verify.
    let header = json!({"alg": "RS256", "kid": "customers-key", "typ": "JWT"});
    let same_kid = key("staff-key").sign_raw(&header.to_string(), &customers_claims().to_string());
    assert_eq!(w.authenticated(&same_kid).await.code, code::UNAUTHENTICATED);
    // And the staff pool's own token still passes: the staff key is good, only not for customers.
    assert_eq!(w.authenticated(&staff_token()).await.code, code::OK);
}

#[tokio::test]
async fn an_iss_no_issuer_has_is_refused_without_fetching_any_keys() {
    let w = world().await;
    let mut stranger = access_claims();
    stranger["iss"] = json!("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Stranger");
    let fetches = || w.staff.fetches() + w.customers.fetches() + w.partners.fetches();
    let answer = w.authenticated(&key("stranger").sign(&stranger)).await;
    assert_eq!((answer.code, answer.http_status), (code::UNAUTHENTICATED, Some(401)));
    assert_eq!(fetches(), 0, "no issuer's keys were fetched");
    // Positive control: a known iss does make its own issuer fetch, and only its own.
    assert_eq!(w.authenticated(&staff_token()).await.code, code::OK);
    assert_eq!((w.staff.fetches(), w.customers.fetches(), w.partners.fetches()), (1, 0, 0));
}

#[tokio::test]
async fn a_route_restricted_to_some_issuers_refuses_the_others_with_403() {
    let w = world().await;
    let route = [("access", "authenticated"), ("issuers", "staff, customers")];
    assert_eq!(w.ask("/api/items", &staff_token(), &route).await.code, code::OK);
    assert_eq!(w.ask("/api/items", &customers_token(), &route).await.code, code::OK);
    let partner = w.ask("/api/items", &partners_token(json!({})), &route).await;
    assert_eq!((partner.code, partner.http_status), (code::PERMISSION_DENIED, Some(403)), "{partner:?}");
    assert_eq!(
        partner.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\", error_description=\"Token issuer is not accepted on this route\"")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&partner.body).unwrap()["detail"],
        "Token issuer is not accepted on this route"
    );
}

#[tokio::test]
async fn envoys_issuers_and_a_policy_rules_issuers_are_intersected() {
    let policy = Policy::from_toml(
        r#"
        [[rule]]
        prefix = "/partners"
        access = "authenticated"
        issuers = ["partners", "customers"]
        "#,
    )
    .expect("policy");
    let w = world_with(|c| c.policy = policy).await;
    let route = [("access", "authenticated"), ("issuers", "staff,customers")];
    // Envoy allows staff and customers, the rule partners and customers: only customers pass.
    assert_eq!(w.ask("/partners/x", &customers_token(), &route).await.code, code::OK);
    assert_eq!(w.ask("/partners/x", &staff_token(), &route).await.code, code::PERMISSION_DENIED);
    assert_eq!(w.ask("/partners/x", &partners_token(json!({})), &route).await.code, code::PERMISSION_DENIED);
    // Outside the rule, Envoy's list alone applies.
    assert_eq!(w.ask("/other", &staff_token(), &route).await.code, code::OK);
}

#[tokio::test]
async fn mfa_is_asked_of_the_tokens_own_pool() {
    let w = world().await;
    let mfa = [("access", "mfa")];
    let staff = w.ask("/api/items", &staff_token(), &mfa).await;
    assert_eq!(staff.code, code::OK, "alice enrolled TOTP in the staff pool: {staff:?}");
    assert_eq!((w.staff_mfa.lookups(), w.customers_mfa.lookups()), (1, 0), "only the staff pool was asked");
    let customers = w.ask("/api/items", &customers_token(), &mfa).await;
    assert_eq!((customers.code, customers.http_status), (code::PERMISSION_DENIED, Some(403)), "{customers:?}");
    assert_eq!((w.staff_mfa.lookups(), w.customers_mfa.lookups()), (1, 1), "only the customers pool was asked");
}

#[tokio::test]
async fn an_oidc_token_without_a_second_factor_gets_the_step_up_challenge_and_no_cognito_call() {
    let w = world().await;
    let mfa = [("access", "mfa")];
    let one_factor = w.ask("/api/items", &partners_token(json!({"amr": ["pwd"]})), &mfa).await;
    assert_eq!((one_factor.code, one_factor.http_status), (code::UNAUTHENTICATED, Some(401)), "{one_factor:?}");
    assert_eq!(
        one_factor.header("www-authenticate"),
        Some(
            "Bearer error=\"insufficient_user_authentication\", error_description=\"Multi-factor authentication required\", acr_values=\"urn:acme:loa:2\""
        )
    );
    assert_eq!(
        serde_json::from_str::<Value>(&one_factor.body).unwrap(),
        json!({"detail": "Multi-factor authentication required"})
    );
    // The same user with a second factor, by amr or by acr, passes.
    assert_eq!(w.ask("/api/items", &partners_token(json!({"amr": ["pwd", "otp"]})), &mfa).await.code, code::OK);
    assert_eq!(w.ask("/api/items", &partners_token(json!({"acr": "urn:acme:loa:2"})), &mfa).await.code, code::OK);
    assert_eq!(w.staff_mfa.lookups() + w.customers_mfa.lookups(), 0, "no Cognito call for OIDC tokens");
}

#[tokio::test]
async fn an_oidc_token_for_another_audience_or_of_another_type_is_refused() {
    let w = world().await;
    assert_eq!(w.authenticated(&partners_token(json!({}))).await.code, code::OK, "positive control");
    let other_aud = w.authenticated(&partners_token(json!({"aud": "https://other.example.com"}))).await;
    assert_eq!((other_aud.code, other_aud.http_status), (code::UNAUTHENTICATED, Some(401)));
    let id_token_header = json!({"alg": "RS256", "kid": "partners-key", "typ": "id+jwt"});
    let id_token = key("partners-key").sign_raw(&id_token_header.to_string(), &partners_claims(json!({})).to_string());
    assert_eq!(w.authenticated(&id_token).await.code, code::UNAUTHENTICATED);
    let hs = json!({"alg": "HS256", "kid": "partners-key", "typ": "at+jwt"});
    let hmac = key("partners-key").sign_raw(&hs.to_string(), &partners_claims(json!({})).to_string());
    assert_eq!(w.authenticated(&hmac).await.code, code::UNAUTHENTICATED, "never HMAC");
}

#[tokio::test]
async fn one_issuers_keys_down_makes_only_its_own_tokens_503() {
    let w = world().await;
    assert_eq!(w.authenticated(&partners_token(json!({}))).await.code, code::OK, "partners' keys loaded once");
    assert_eq!(w.authenticated(&staff_token()).await.code, code::OK);
    // The partners rotate to a key we have not seen, and their JWKS goes down.
    w.partners.rotate(&[&key("partners-key-2")]);
    w.partners.answer(fetch_fails());
    let header = json!({"alg": "RS256", "kid": "partners-key-2", "typ": "at+jwt"});
    let rotated = key("partners-key-2").sign_raw(&header.to_string(), &partners_claims(json!({})).to_string());
    let down = w.authenticated(&rotated).await;
    assert_eq!((down.code, down.http_status), (code::UNAVAILABLE, Some(503)), "{down:?}");
    // Every other issuer's tokens, new ones included, are decided as before.
    assert_eq!(w.authenticated(&customers_token()).await.code, code::OK);
    let mut fresh = access_claims();
    fresh["jti"] = json!("0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9");
    assert_eq!(w.authenticated(&key("staff-key").sign(&fresh)).await.code, code::OK);
}

#[tokio::test]
async fn the_issue_toml_is_read_and_flags_with_tables_are_refused_in_one_line() {
    let dir = temp_dir("issuers-toml");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    let toml = r#"
[[issuer]]
name = "staff"
kind = "cognito"
region = "eu-west-2"
user-pool-id = "eu-west-2_AbC123"
client-id = ["4f2", "7k9"]

[[issuer]]
name = "partners"
kind = "oidc"
issuer = "https://idp.example.com/realms/acme"
audience = ["https://api.example.com"]
mfa-amr = ["mfa", "otp", "hwk", "swk"]
algorithms = ["RS256", "PS256", "ES256"]
username-claim = "email"
groups-claim = "roles"
mfa-acr = ["urn:acme:loa:2"]
"#;
    std::fs::write(&path, toml).unwrap();
    let file = path.to_str().unwrap();
    let config = ServeArgs::parse(["--config", file]).expect("file read").into_config().expect("valid");
    let names: Vec<&str> = config.issuers.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["staff", "partners"]);
    assert_eq!(
        config.pool.user_pool_id, "eu-west-2_AbC123",
        "the only Cognito issuer is the one the HTTP module serves"
    );
    let both = ServeArgs::parse(["--config", file, "--user-pool-id", "eu-west-1_X"]).unwrap().into_config();
    let line = both.expect_err("refused").to_string();
    assert!(!line.contains('\n') && line.contains("user-pool-id and [[issuer]] tables"), "{line}");
    // The single-pool `issuer` key is still a string in the same file format.
    std::fs::write(&path, "region = \"us-east-1\"\nuser-pool-id = \"us-east-1_Q\"\nclient-id = [\"x\"]\nissuer = \"https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Q\"\n").unwrap();
    let single = ServeArgs::parse(["--config", file]).unwrap().into_config().expect("single pool");
    assert!(single.issuers.is_empty() && single.pool.issuer.ends_with("us-east-1_Q"));
}

#[tokio::test]
async fn metrics_carry_the_configured_issuer_name() {
    let w = world().await;
    assert_eq!(w.authenticated(&staff_token()).await.code, code::OK);
    assert_eq!(w.ask("/api/items", &customers_token(), &[("access", "mfa")]).await.code, code::PERMISSION_DENIED);
    let mut stranger = access_claims();
    stranger["iss"] = json!("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Stranger");
    assert_eq!(w.authenticated(&key("stranger").sign(&stranger)).await.code, code::UNAUTHENTICATED);
    let text = w.metrics.render();
    for line in [
        r#"cognito_authz_issuer_decisions_total{issuer="staff",outcome="allow"} 1"#,
        r#"cognito_authz_issuer_decisions_total{issuer="customers",outcome="forbidden"} 1"#,
        r#"cognito_authz_issuer_jwks_keys{issuer="staff"} 1"#,
        r#"cognito_authz_issuer_jwks_keys{issuer="partners"} 0"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert!(!text.contains("Stranger"), "an iss no issuer has never becomes a label");
}

#[tokio::test]
async fn readiness_waits_until_every_issuer_has_loaded_its_keys() {
    use cognito_authz::server::{self, AUTHZ_SERVICE};
    use std::time::Duration;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let staff = JwksServer::start(jwks(&[&key("staff-key")])).await;
    let customers = JwksServer::start(jwks(&[&key("customers-key")])).await;
    let partners = JwksServer::start(jwks(&[&key("partners-key")])).await;
    partners.set_mode(Mode::Fail);
    let mut config = config(&staff.url());
    config.issuers = validate(&tables([&staff.url(), &customers.url(), &partners.url()])).expect("valid tables");
    let listeners = server::Listeners {
        grpc: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        authz_http: None,
    };
    let url = format!("http://{}", listeners.grpc.local_addr().unwrap());
    let healthz = format!("http://{}/healthz", listeners.http.local_addr().unwrap());
    let http_status = || {
        let healthz = healthz.clone();
        async move { reqwest::get(healthz).await.expect("healthz answers").status().as_u16() }
    };
    let sources: Vec<Arc<dyn cognito_authz::cognito::MfaSource>> = vec![FakeMfa::new(), FakeMfa::new(), FakeMfa::new()];
    let parts = server::build_with(&config, sources, None).await.expect("parts");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        server::serve(&config, parts, listeners, axum::Router::new(), async {
            let _ = stopped.await;
        })
        .await
    });
    let channel = tonic::transport::Channel::from_shared(url).unwrap().connect().await.expect("connects");
    let health = || {
        let mut client = HealthClient::new(channel.clone());
        async move {
            let request = HealthCheckRequest { service: AUTHZ_SERVICE.to_owned() };
            ServingStatus::try_from(client.check(request).await.expect("health answers").into_inner().status).unwrap()
        }
    };
    let waited = tokio::time::Instant::now();
    while partners.hits() < 2 && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(staff.hits() >= 1 && customers.hits() >= 1 && partners.hits() >= 2, "the failing issuer is retried");
    assert_eq!(health().await, ServingStatus::NotServing, "two of three issuers loaded is not ready");
    assert_eq!(http_status().await, 503, "nor for HTTP-only probes");
    partners.set_mode(Mode::Serve);
    let waited = tokio::time::Instant::now();
    while health().await != ServingStatus::Serving {
        assert!(waited.elapsed() < Duration::from_secs(10), "serving once the last issuer loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http_status().await, 200);
    let _ = stop.send(());
    done.await.unwrap().expect("clean shutdown");
}

#[tokio::test]
async fn only_the_served_issuers_tokens_may_reach_its_cognito_or_oauth_endpoints() {
    // The single-pool fields name the staff pool (as `oauth-issuer = "staff"` makes them).
    let mut config = config(NO_JWKS);
    config.issuers = validate(&tables([NO_JWKS; 3])).expect("valid tables");
    let kids = ["staff-key", "customers-key", "partners-key"];
    let parts = scripted_issuers(&config, kids.map(|kid| (serving(&[kid]), FakeMfa::new())).into()).await;
    let verifier = parts.verifier;
    let staff_claims = verifier.verify(&staff_token(), now()).await.expect("staff token");
    assert!(verifier.serves(&staff_claims), "the served pool's own token");
    for other in [customers_token(), partners_token(json!({}))] {
        let claims = verifier.verify(&other, now()).await.expect("a valid token");
        assert!(!verifier.serves(&claims), "{} is not the served issuer", claims.issuer_name);
    }
    // With only OIDC issuers, no issuer is served.
    config.issuers.retain(|i| i.name == "partners");
    let parts = scripted_issuers(&config, vec![(serving(&["partners-key"]), FakeMfa::new())]).await;
    let claims = parts.verifier.verify(&partners_token(json!({})), now()).await.expect("partners token");
    assert!(!parts.verifier.serves(&claims));
}

/// One pool's Cognito API answered in-process: the admin sign-outs asked of it are recorded.
#[derive(Default)]
struct PoolCalls {
    admin_sign_outs: std::sync::Mutex<Vec<String>>,
}

impl UserCalls for PoolCalls {
    fn user_attributes<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<(String, String)>, CognitoError>> {
        Box::pin(async { Err(CognitoError::Refused) })
    }

    fn global_sign_out<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), CognitoError>> {
        Box::pin(async { Ok(()) })
    }

    fn admin_global_sign_out<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<(), CognitoError>> {
        self.admin_sign_outs.lock().unwrap().push(username.to_owned());
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn revoke_user_signs_out_the_user_of_the_named_pool_only() {
    const CUSTOMER: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let mut config = config(NO_JWKS);
    config.issuers = validate(&tables([NO_JWKS; 3])).expect("valid tables");
    let kids = ["staff-key", "customers-key", "partners-key"];
    let parts = scripted_issuers(&config, kids.map(|kid| (serving(&[kid]), FakeMfa::new())).into()).await;
    let (staff_pool, customers_pool) = (Arc::new(PoolCalls::default()), Arc::new(PoolCalls::default()));
    let calls: [Option<Arc<dyn UserCalls>>; 3] = [Some(staff_pool.clone()), Some(customers_pool.clone()), None];
    let admin = admin::routes(AdminState {
        metrics: parts.metrics.clone(),
        revocations: parts.revocations.clone(),
        mfa: parts.mfa.clone(),
        issuers: cognito_authz::server::admin_issuers(&config, &calls),
        token: Some(Secret::new("admin-token-0123456789".into())),
        refresh_token_lifetime: config.auth.refresh_token_lifetime,
    });
    let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics);
    let ask = |token: String| {
        let ext = &ext;
        async move { ext.decide(&request("/api/items", &token, &[("access", "authenticated")]), now()).await }
    };
    let mut customer = customers_claims();
    customer["sub"] = json!(CUSTOMER);
    let (staff, customer) = (staff_token(), key("customers-key").sign(&customer));
    let partner = partners_token(json!({}));
    for token in [&staff, &customer, &partner] {
        assert_eq!(decode(&ask(token.clone()).await).code, code::OK, "every session passes before");
    }
    let revoke = |body: Value| {
        let admin = admin.clone();
        async move {
            let request = axum::http::Request::post("/admin/revoke-user")
                .header("authorization", "Bearer admin-token-0123456789")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            let response = admin.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
        }
    };
    // With several issuers, a request that names none (or an unknown one) is refused: which
    // pool's alice would it be?
    for body in [
        json!({"sub": CUSTOMER, "username": "alice"}),
        json!({"sub": CUSTOMER, "username": "alice", "issuer": "nobody"}),
        json!({"sub": "not-a-uuid", "username": "alice", "issuer": "customers"}),
    ] {
        assert_eq!(revoke(body.clone()).await.0, axum::http::StatusCode::BAD_REQUEST, "{body}");
    }
    assert!(
        staff_pool.admin_sign_outs.lock().unwrap().is_empty()
            && customers_pool.admin_sign_outs.lock().unwrap().is_empty()
    );
    // The customers pool's alice: signed out there, and only there.
    let (status, body) = revoke(json!({"sub": CUSTOMER, "username": "alice", "issuer": "customers"})).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{body}");
    assert_eq!((body["issuer"].as_str(), body["signed_out_at_cognito"].as_bool()), (Some("customers"), Some(true)));
    assert_eq!(*customers_pool.admin_sign_outs.lock().unwrap(), ["alice"]);
    assert!(staff_pool.admin_sign_outs.lock().unwrap().is_empty(), "the staff pool's alice is not signed out");
    assert_eq!(decode(&ask(customer.clone()).await).code, code::UNAUTHENTICATED, "her older session is refused");
    assert_eq!(decode(&ask(staff.clone()).await).code, code::OK, "the staff pool's alice still passes");
    // A provider's user: refused here, and the answer says nobody was signed out upstream.
    let (status, body) = revoke(json!({"sub": "00u1partner", "issuer": "partners"})).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{body}");
    assert_eq!(body["signed_out_at_cognito"], json!(false));
    assert_eq!(decode(&ask(partner).await).code, code::UNAUTHENTICATED);
    let other_partner = partners_token(json!({"sub": "00u1other", "jti": "p-2"}));
    assert_eq!(decode(&ask(other_partner).await).code, code::OK, "another of its users passes");
    assert_eq!(customers_pool.admin_sign_outs.lock().unwrap().len(), 1, "no Cognito call for a provider's user");
}
