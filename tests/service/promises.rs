//! Promises of the README that had no test: tokens nobody could revoke, `x5c` in a token's header,
//! the dev issuer in `[[issuer]]` tables, and a Cognito that takes the connection and never
//! answers. Each test shows the allowed case before the refusal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cognito_authz::authz::error::code;
use cognito_authz::cognito::MfaLookup;
use cognito_authz::config::ServeArgs;
use cognito_authz::envoy::ext_authz::ExtAuthz;
use cognito_authz::envoy::pb::auth::CheckResponse;
use cognito_authz::server;
use serde_json::{Value, json};

/// The gRPC code and, for a denial, the HTTP status (its body goes to the test's output, shown
/// when the test fails).
fn answer(response: &CheckResponse) -> (i32, Option<i32>) {
    let decided = decode(response);
    println!("body: {}", decided.body);
    (decided.code, decided.http_status)
}

async fn service(allow_unrevocable_tokens: bool) -> ExtAuthz {
    let mut config = config(NO_JWKS);
    config.allow_unrevocable_tokens = allow_unrevocable_tokens;
    let parts = scripted_parts(&config, FakeMfa::new(), &serving(&["kid-1"])).await;
    ExtAuthz::new(parts.authorizer, false, parts.metrics)
}

/// alice's access token without the claims named `absent`.
fn without(absent: &[&str]) -> String {
    let mut claims = access_claims();
    for name in absent {
        claims.as_object_mut().unwrap().remove(*name);
    }
    key("kid-1").sign(&claims)
}

#[tokio::test]
async fn a_token_no_logout_could_revoke_is_refused_unless_unrevocable_tokens_are_allowed() {
    let strict = service(false).await;
    // Positive controls: either id alone makes a token revocable, so it passes.
    for kept in [&["origin_jti"][..], &["jti"], &[]] {
        let token = without(kept);
        assert_eq!(answer(&strict.decide(&bearer(&token), now()).await), (code::OK, None), "without {kept:?}");
    }
    let unrevocable = without(&["jti", "origin_jti"]);
    assert_eq!(answer(&strict.decide(&bearer(&unrevocable), now()).await), (code::UNAUTHENTICATED, Some(401)));
    // `--allow-unrevocable-tokens` (app clients with token revocation off) lets it through.
    let lenient = service(true).await;
    assert_eq!(answer(&lenient.decide(&bearer(&unrevocable), now()).await), (code::OK, None));
}

/// A self-signed certificate for `key`, base64 DER as `x5c` carries it.
fn certificate_of(key: &cognito_authz::dev::signing_key::SigningKey) -> String {
    let der = key.pkcs8().expect("pkcs8");
    let pair = rcgen::KeyPair::try_from(der.as_slice()).expect("rsa key pair");
    let params = rcgen::CertificateParams::new(vec!["attacker.example".to_owned()]).unwrap();
    STANDARD.encode(params.self_signed(&pair).expect("self-signed").der())
}

#[tokio::test]
async fn an_x5c_header_member_is_ignored_like_jku_x5u_and_jwk() {
    let ext = service(false).await;
    let attacker = cognito_authz::dev::signing_key::SigningKey::generate("kid-1").unwrap();
    let payload = access_claims().to_string();
    let header = |member: &str, value: &Value| json!({"alg": "RS256", "kid": "kid-1", member: value}).to_string();
    // Positive control: the trusted key's token passes with any of these members in its header
    // (short values: the header is capped at 1 KiB), so each is ignored, not a reason to refuse.
    let short = json!(["MIIBszCCAVmgAwIBAgIUQ"]);
    for (member, value) in
        [("x5c", &short), ("jku", &json!("https://evil.example/jwks")), ("x5u", &json!("https://evil.example/c"))]
    {
        let trusted = key("kid-1").sign_raw(&header(member, value), &payload);
        assert_eq!(answer(&ext.decide(&bearer(&trusted), now()).await), (code::OK, None), "{member}");
    }
    // The attacker's tokens name the trusted `kid` and carry the key that signed them: a verifier
    // that took the key from `jwk`, or the certificate from `x5c`, would allow them. (A real
    // chain also overflows the 1 KiB header cap: refused either way.)
    let chain = json!([certificate_of(&attacker)]);
    for (member, value) in [("x5c", &chain), ("x5c", &short), ("jwk", &attacker.jwk())] {
        let forged = attacker.sign_raw(&header(member, value), &payload);
        assert_eq!(answer(&ext.decide(&bearer(&forged), now()).await), (code::UNAUTHENTICATED, Some(401)), "{member}");
    }
}

#[test]
fn serve_refuses_the_dev_issuers_in_oidc_issuer_tables() {
    let dir = temp_dir("dev-issuer-tables");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("serve.toml");
    let table = |issuer: &str| {
        format!(
            "[[issuer]]\nname = \"partners\"\nkind = \"oidc\"\nissuer = \"{issuer}\"\n\
             audience = [\"https://api.example.com\"]\njwks-url = \"https://idp.example.com/keys\"\n"
        )
    };
    let config_of = |issuer: &str| {
        std::fs::write(&path, table(issuer)).unwrap();
        ServeArgs::parse(["--config", path.to_str().unwrap()]).expect("the file reads").into_config()
    };
    // Positive control: the same table with a real provider's issuer is accepted.
    let accepted = config_of("https://idp.example.com/realms/acme").expect("a provider's issuer");
    assert_eq!(accepted.issuers[0].iss, "https://idp.example.com/realms/acme");
    for dev in [
        cognito_authz::dev::DEV_ISSUER,
        cognito_authz::dev::oidc::DEV_OIDC_ISSUER,
        "https://COGNITO-AUTHZ.invalid/anything",
    ] {
        let line = config_of(dev).expect_err("the dev issuer is refused").to_string();
        assert!(line.contains("development issuer") && line.contains("partners"), "{dev}: {line}");
    }
}

/// A Cognito JSON API on loopback that takes every request and, while `silent`, never answers it;
/// otherwise it answers `GetUser` with TOTP enrolled.
struct Cognito {
    endpoint: String,
    requests: Arc<AtomicU64>,
    silent: Arc<std::sync::atomic::AtomicBool>,
}

async fn cognito() -> Cognito {
    let requests = Arc::new(AtomicU64::new(0));
    let silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (seen, quiet) = (requests.clone(), silent.clone());
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move || {
            let (seen, quiet) = (seen.clone(), quiet.clone());
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                if quiet.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                let body = json!({
                    "Username": "alice", "UserAttributes": [{"Name": "sub", "Value": SUB}],
                    "UserMFASettingList": ["SOFTWARE_TOKEN_MFA"]
                });
                ([("content-type", "application/x-amz-json-1.1")], body.to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Cognito { endpoint, requests, silent }
}

#[tokio::test]
async fn a_cognito_that_never_answers_gives_503_within_the_cognito_timeout() {
    let cognito = cognito().await;
    let keys = JwksServer::start(jwks(&[&key("kid-1")])).await;
    let mut config = config(&keys.url());
    // As `serve` wires it: the SDK client made from the configuration, the caller's token asking
    // (`get-user` needs no AWS credentials), short MFA caches so each decision asks again.
    config.pool.cognito_endpoint = Some(cognito.endpoint.clone());
    config.pool.mfa_source = MfaLookup::GetUser;
    config.cognito_timeout = Duration::from_millis(600);
    config.mfa.ttl = Duration::ZERO;
    config.mfa.negative_ttl = Duration::ZERO;
    let parts = server::build(&config).await.expect("parts");
    assert!(parts.keys.refresh().await, "keys load");
    let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics);
    let token = key("kid-1").sign(&access_claims());
    // Positive control: an answering Cognito lets alice through on an mfa route (the default).
    assert_eq!(answer(&ext.decide(&bearer(&token), now()).await), (code::OK, None));
    let before = cognito.requests.load(Ordering::SeqCst);
    assert!(before >= 1, "the lookup went to this Cognito");
    cognito.silent.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let silent = ext.decide(&bearer(&token), now()).await;
    let took = started.elapsed();
    assert_eq!(answer(&silent), (code::UNAVAILABLE, Some(503)));
    let attempts = cognito.requests.load(Ordering::SeqCst) - before;
    assert!((1..=2).contains(&attempts), "{attempts} attempts: asked, and retried at most once");
    // The 600 ms deadline bounds the whole lookup, retries included (slack for a loaded machine),
    // far inside the seconds an Envoy ext_authz timeout would take.
    assert!(took >= Duration::from_millis(200) && took < Duration::from_millis(1100), "gave up after {took:?}");
}
