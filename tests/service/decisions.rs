//! Every token rule, decided in-process through `ExtAuthz::decide` and read back from the encoded
//! `CheckResponse` exactly as Envoy would receive it. The keys come from a script (`ScriptedKeys`).

use std::sync::Arc;

use crate::common::*;
use cognito_authz::authz::error::code;
use cognito_authz::envoy::ext_authz::ExtAuthz;
use cognito_authz::testkit::scripted_keys::ScriptedKeys;
use serde_json::{Value, json};

struct Harness {
    ext: ExtAuthz,
    keys: Arc<ScriptedKeys>,
}

async fn harness() -> Harness {
    let keys = serving(&["kid-1"]);
    let parts = scripted_parts(&crate::common::config(NO_JWKS), FakeMfa::new(), &keys).await;
    // With the claims as metadata (off by default since `--emit-claims-metadata`), so the tests
    // read everything an allow can say.
    Harness { ext: ExtAuthz::new(parts.authorizer, false, parts.metrics).claims_metadata(true), keys }
}

impl Harness {
    async fn token(&self, token: &str) -> Decided {
        decode(&self.ext.decide(&bearer(token), now()).await)
    }
}

fn signed(claims: &Value) -> String {
    key("kid-1").sign(claims)
}

fn with(changes: Value) -> Value {
    let mut claims = access_claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn assert_unauthenticated(d: &Decided, description: &str) {
    assert_eq!(d.code, code::UNAUTHENTICATED, "status code");
    assert_eq!(d.http_status, Some(401));
    let challenge = d.header("www-authenticate").expect("a www-authenticate challenge");
    assert_eq!(challenge, format!("Bearer error=\"invalid_token\", error_description=\"{description}\""));
    assert_eq!(serde_json::from_str::<Value>(&d.body).unwrap(), json!({ "detail": description }));
}

#[tokio::test]
async fn valid_access_token_is_allowed_with_identity_headers() {
    let h = harness().await;
    let d = h.token(&signed(&access_claims())).await;
    assert_eq!(d.code, code::OK);
    assert_eq!(d.header("x-user-id"), Some(SUB));
    assert_eq!(d.header("x-username"), Some("alice"));
    assert_eq!(d.header("x-user-groups"), Some("admin,team%20a%2Cb"));
    assert_eq!(d.removed, ["x-client-id"]);
    for (name, _) in &d.set {
        assert!(!d.removed.contains(name), "{name} is both set and removed");
    }
    let metadata = d.metadata.expect("claims as dynamic metadata");
    assert!(metadata.fields.contains_key("sub") && metadata.fields.contains_key("client_id"));
}

#[tokio::test]
async fn user_without_groups_gets_the_groups_header_removed() {
    let h = harness().await;
    let d = h.token(&signed(&with(json!({"cognito:groups": null})))).await;
    assert_eq!(d.code, code::OK);
    assert_eq!(d.header("x-user-groups"), None);
    assert!(d.removed.contains(&"x-user-groups".to_owned()));
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_unauthenticated() {
    let h = harness().await;
    let n = now();
    assert_unauthenticated(&h.token(&signed(&with(json!({"exp": n - 1})))).await, "Token has expired");
    assert_unauthenticated(&h.token(&signed(&with(json!({"exp": n})))).await, "Token has expired");
    assert_unauthenticated(&h.token(&signed(&with(json!({"exp": null})))).await, "Could not validate credentials");
    assert_unauthenticated(&h.token(&signed(&with(json!({"nbf": n + 60})))).await, "Token is not yet valid");
    assert_unauthenticated(&h.token(&signed(&with(json!({"iat": n + 600})))).await, "Could not validate credentials");
}

#[tokio::test]
async fn wrong_issuer_client_or_token_use_is_unauthenticated() {
    let h = harness().await;
    let bad = "Could not validate credentials";
    assert_unauthenticated(&h.token(&signed(&with(json!({"iss": issuer() + "x"})))).await, bad);
    assert_unauthenticated(&h.token(&signed(&with(json!({"client_id": "client-evil"})))).await, bad);
    assert_unauthenticated(&h.token(&signed(&with(json!({"token_use": null})))).await, "Not an access token");
    assert_unauthenticated(&h.token(&signed(&with(json!({"sub": "alice"})))).await, bad);
    assert_unauthenticated(&h.token(&signed(&with(json!({"username": null})))).await, bad);
    assert_eq!(h.token(&signed(&with(json!({"client_id": "client-two"})))).await.code, code::OK);
}

#[tokio::test]
async fn id_token_is_refused() {
    let h = harness().await;
    let mut id = with(json!({"token_use": "id", "aud": CLIENT, "client_id": null, "username": null}));
    id["cognito:username"] = json!("alice");
    assert_unauthenticated(&h.token(&signed(&id)).await, "Not an access token");
}

#[tokio::test]
async fn duplicated_claim_is_refused() {
    let h = harness().await;
    let payload = access_claims().to_string().replacen('{', r#"{"client_id":"client-evil","#, 1);
    let token = key("kid-1").sign_raw(r#"{"alg":"RS256","kid":"kid-1"}"#, &payload);
    assert_unauthenticated(&h.token(&token).await, "Could not validate credentials");
}

#[tokio::test]
async fn tampered_payload_or_signature_is_refused() {
    let h = harness().await;
    let token = signed(&access_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        b64.encode(with(json!({"username": "mallory"})).to_string())
    };
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_unauthenticated(&h.token(&tampered).await, "Could not validate credentials");
    let mut sig = parts[2].as_bytes().to_vec();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    let flipped = format!("{}.{}.{}", parts[0], parts[1], String::from_utf8(sig).unwrap());
    assert_unauthenticated(&h.token(&flipped).await, "Could not validate credentials");
}

#[tokio::test]
async fn another_key_with_the_same_kid_is_refused() {
    let h = harness().await;
    let impostor = cognito_authz::dev::signing_key::SigningKey::generate("kid-1").unwrap();
    assert_unauthenticated(&h.token(&impostor.sign(&access_claims())).await, "Could not validate credentials");
}

#[tokio::test]
async fn unknown_kid_is_refused() {
    let h = harness().await;
    let token = key("kid-unknown").sign(&access_claims());
    assert_unauthenticated(&h.token(&token).await, "Could not validate credentials");
}

#[tokio::test]
async fn other_algorithms_are_refused() {
    let h = harness().await;
    let claims = access_claims().to_string();
    let k = key("kid-1");
    let bad = "Could not validate credentials";
    // alg none with an empty signature, and with the real one.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!("{}.{}.", b64.encode(r#"{"alg":"none","kid":"kid-1"}"#), b64.encode(&claims));
    assert_unauthenticated(&h.token(&none).await, bad);
    assert_unauthenticated(&h.token(&k.sign_raw(r#"{"alg":"none","kid":"kid-1"}"#, &claims)).await, bad);
    // HS256 keyed with the public key (the classic algorithm-confusion forgery).
    let input = format!("{}.{}", b64.encode(r#"{"alg":"HS256","kid":"kid-1"}"#), b64.encode(&claims));
    let public = k.jwk()["n"].as_str().unwrap().to_owned();
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, public.as_bytes()),
        input.as_bytes(),
    );
    let hs256 = format!("{input}.{}", b64.encode(mac.as_ref()));
    assert_unauthenticated(&h.token(&hs256).await, bad);
    // RS512, and RS256 in the header over an RS512 signature.
    assert_unauthenticated(&h.token(&k.sign_raw(r#"{"alg":"RS512","kid":"kid-1"}"#, &claims)).await, bad);
    assert_unauthenticated(&h.token(&k.sign_raw(r#"{"alg":"RS256"}"#, &claims)).await, bad);
    assert_eq!(
        h.token(&k.sign_raw(r#"{"alg":"RS256","kid":"kid-1","jku":"https://evil.example/jwks"}"#, &claims)).await.code,
        code::OK
    );
}

#[tokio::test]
async fn oversized_garbage_and_missing_tokens_are_refused_without_a_fetch() {
    let h = harness().await;
    let before = h.keys.fetches();
    let bad = "Could not validate credentials";
    assert_unauthenticated(&h.token(&"a".repeat(16 * 1024 + 1)).await, bad);
    for garbage in ["garbage", "a.b.c", "....", "e30.e30.e30", "ey!.ey.ey", "\u{1F600}.a.b"] {
        assert_unauthenticated(&h.token(garbage).await, bad);
    }
    assert_eq!(h.keys.fetches(), before, "no JWKS fetch for malformed tokens");

    let d = decode(&h.ext.decide(&check_request("/", &[]), now()).await);
    assert_eq!((d.code, d.http_status), (code::UNAUTHENTICATED, Some(401)));
    assert_eq!(d.header("www-authenticate"), Some("Bearer"));
    let d = decode(&h.ext.decide(&check_request("/", &[("authorization", "Basic dXNlcjpwYXNz")]), now()).await);
    assert_eq!(d.http_status, Some(401));
}

#[tokio::test]
async fn repeated_authorization_headers_are_a_bad_request() {
    let h = harness().await;
    let t = signed(&access_claims());
    let joined = format!("Bearer {t},Bearer {t}");
    let d = decode(&h.ext.decide(&check_request("/", &[("authorization", &joined)]), now()).await);
    assert_eq!((d.code, d.http_status), (code::INVALID_ARGUMENT, Some(400)));
    assert!(d.header("www-authenticate").unwrap().starts_with("Bearer error=\"invalid_request\""));
}

#[tokio::test]
async fn check_request_without_http_attributes_is_a_bad_request() {
    let h = harness().await;
    let d = decode(&h.ext.decide(&Default::default(), now()).await);
    assert_eq!((d.code, d.http_status), (code::INVALID_ARGUMENT, Some(400)));
}

#[tokio::test]
async fn unreachable_keys_give_503_not_401() {
    let keys = serving(&["kid-1"]);
    keys.answer(fetch_fails());
    let parts = scripted_issuers(&crate::common::config(NO_JWKS), vec![(keys, FakeMfa::new())]).await;
    let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics);
    let d = decode(&ext.decide(&bearer(&signed(&access_claims())), now()).await);
    assert_eq!((d.code, d.http_status), (code::UNAVAILABLE, Some(503)));
    assert_eq!(d.header("www-authenticate"), None);
    assert_eq!(serde_json::from_str::<Value>(&d.body).unwrap()["detail"], "Authorization is temporarily unavailable");
}

#[tokio::test]
async fn strip_authorization_removes_the_header_on_allow() {
    let parts = scripted_parts(&crate::common::config(NO_JWKS), FakeMfa::new(), &serving(&["kid-1"])).await;
    let ext = ExtAuthz::new(parts.authorizer, true, parts.metrics);
    let d = decode(&ext.decide(&bearer(&signed(&access_claims())), now()).await);
    assert_eq!(d.code, code::OK);
    assert!(d.removed.contains(&"authorization".to_owned()));
}

#[tokio::test]
async fn token_cookie_is_read_when_no_header_is_sent() {
    let mut config = crate::common::config(NO_JWKS);
    config.token_cookie = Some("access_token".into());
    let parts = scripted_parts(&config, FakeMfa::new(), &serving(&["kid-1"])).await;
    let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics);
    let t = signed(&access_claims());
    let cookie = format!("theme=dark; access_token={t}");
    let d = decode(&ext.decide(&check_request("/ws", &[("cookie", &cookie)]), now()).await);
    assert_eq!(d.code, code::OK);
    let twice = format!("access_token={t}; access_token={t}");
    let d = decode(&ext.decide(&check_request("/ws", &[("cookie", &twice)]), now()).await);
    assert_eq!(d.http_status, Some(400));
}

#[tokio::test]
async fn a_cookie_credential_needs_a_same_site_request() {
    let mut config = crate::common::config(NO_JWKS);
    config.token_cookie = Some("access_token".into());
    config.auth.allowed_origins = vec!["https://app.example.com".into()];
    let parts = scripted_parts(&config, FakeMfa::new(), &serving(&["kid-1"])).await;
    let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics);
    let cookie = format!("access_token={}", signed(&access_claims()));
    let request = |method: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![("cookie", cookie.as_str())];
        headers.extend_from_slice(extra);
        with_method(check_request("/api/items", &headers), method)
    };
    let (app, evil) = (("origin", "https://app.example.com"), ("origin", "https://evil.example"));
    let upgrade = ("upgrade", "websocket");
    let allowed = [
        ("GET", vec![]),
        ("HEAD", vec![evil]),
        ("POST", vec![app]),
        ("DELETE", vec![app]),
        ("GET", vec![upgrade, app]),
        ("GET", vec![upgrade]),
    ];
    for (method, extra) in allowed {
        assert_eq!(decode(&ext.decide(&request(method, &extra), now()).await).code, code::OK, "{method} {extra:?}");
    }
    let refused = [("POST", vec![]), ("POST", vec![evil]), ("PUT", vec![evil]), ("GET", vec![upgrade, evil])];
    for (method, extra) in refused {
        let d = decode(&ext.decide(&request(method, &extra), now()).await);
        assert_eq!(d.http_status, Some(403), "{method} {extra:?}");
        assert_eq!(d.body, json!({"detail": "Cookie credentials need a request from an allowed origin"}).to_string());
    }
    // A bearer header is not a cookie: other sites cannot set it.
    let bearer_post = with_method(bearer(&signed(&access_claims())), "POST");
    assert_eq!(decode(&ext.decide(&bearer_post, now()).await).code, code::OK);
}

#[tokio::test]
async fn a_cached_token_is_dropped_when_its_key_leaves_the_jwks() {
    let script = serving(&["kid-1", "kid-2"]);
    let parts = scripted_parts(&crate::common::config(NO_JWKS), FakeMfa::new(), &script).await;
    let cache = parts.verifier.cache().clone();
    let keys = parts.keys.clone();
    let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics);
    let token = key("kid-2").sign(&access_claims());
    for _ in 0..3 {
        assert_eq!(decode(&ext.decide(&bearer(&token), now()).await).code, code::OK);
    }
    assert_eq!(cache.len(), 1, "verified once, then served from the cache");
    // A refresh that keeps kid-2 unchanged keeps the entry good.
    assert!(keys.refresh().await);
    assert_eq!(decode(&ext.decide(&bearer(&token), now()).await).code, code::OK);
    // kid-2 is rotated out: the cached verification no longer counts.
    script.rotate(&[&key("kid-1")]);
    assert!(keys.refresh().await);
    assert_eq!(decode(&ext.decide(&bearer(&token), now()).await).code, code::UNAUTHENTICATED);
}

#[tokio::test]
async fn a_cached_token_still_expires_at_its_exp() {
    let h = harness().await;
    let n = now();
    let token = signed(&with(json!({"exp": n + 2})));
    assert_eq!(decode(&h.ext.decide(&bearer(&token), n).await).code, code::OK);
    assert_unauthenticated(&decode(&h.ext.decide(&bearer(&token), n + 2).await), "Token has expired");
}

fn mapping(name: &str, claim: &str) -> cognito_authz::authz::headers::HeaderClaim {
    cognito_authz::authz::headers::HeaderClaim { name: name.into(), claim: claim.into() }
}

#[tokio::test]
async fn mapped_claims_become_headers_and_are_removed_when_absent() {
    let mut config = crate::common::config(NO_JWKS);
    config.header_claims = vec![
        mapping("x-user-email", "email"),
        mapping("x-tenant", "custom:tenant"),
        mapping("x-level", "level"),
        mapping("x-beta", "beta"),
        mapping("x-teams", "teams"),
        mapping("x-profile", "profile"),
    ];
    let parts = scripted_parts(&config, FakeMfa::new(), &serving(&["kid-1"])).await;
    let identity = cognito_authz::authz::headers::IdentityHeaders::with_mapped(&config.header_claims);
    let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics).identity_headers(identity);
    let rich = with(json!({
        "email": "alice@example.com", "custom:tenant": "acme\r\nx-evil: 1", "level": 3, "beta": true,
        "teams": ["a,b", "c d"], "profile": {"nested": 1}, "jti": "mapped-1"
    }));
    let d = decode(&ext.decide(&bearer(&signed(&rich)), now()).await);
    assert_eq!(d.code, code::OK);
    assert_eq!(d.header("x-user-email"), Some("alice@example.com"));
    assert_eq!(d.header("x-tenant"), Some("acme%0D%0Ax-evil: 1"), "control characters cannot break the header");
    assert_eq!(d.header("x-level"), Some("3"));
    assert_eq!(d.header("x-beta"), Some("true"));
    assert_eq!(d.header("x-teams"), Some("a%2Cb,c%20d"), "array items escaped as groups are, comma-joined");
    assert_eq!(d.header("x-profile"), None, "an object is no header value");
    assert!(d.removed.contains(&"x-profile".to_owned()), "so a client-sent x-profile is removed");
    // A token without the claims: every mapped header is removed, none set.
    let plain = decode(&ext.decide(&bearer(&signed(&access_claims())), now()).await);
    assert_eq!(plain.code, code::OK);
    for name in ["x-user-email", "x-tenant", "x-level", "x-beta", "x-teams", "x-profile"] {
        assert!(plain.header(name).is_none() && plain.removed.contains(&name.to_owned()), "{name}");
    }
    // A mapped header under another spelling is refused like the fixed ones.
    let token = format!("Bearer {}", signed(&rich));
    let spoof =
        decode(&ext.decide(&check_request("/api/items", &[("authorization", &token), ("x_tenant", "x")]), now()).await);
    assert_eq!(spoof.http_status, Some(400));
}

#[tokio::test]
async fn shadow_mode_decides_logs_and_counts_but_lets_the_request_through() {
    let mfa = FakeMfa::new();
    let parts = scripted_parts(&crate::common::config(NO_JWKS), mfa, &serving(&["kid-1"])).await;
    let metrics = parts.metrics.clone();
    let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics);
    let mut bob = access_claims();
    bob["username"] = json!("bob");
    let bob = signed(&bob);
    fn mfa_route(mode: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
        let mut route = vec![("access", "mfa")];
        route.extend(mode.map(|m| ("mode", m)));
        route
    }
    // Enforced: bob has not enrolled.
    let enforced = decode(&ext.decide(&in_route(bearer(&bob), &mfa_route(None)), now()).await);
    assert_eq!(enforced.http_status, Some(403));
    // Shadow: the same decision, counted as such, and the request goes on with bob's identity.
    let shadow = decode(&ext.decide(&in_route(bearer(&bob), &mfa_route(Some("shadow"))), now()).await);
    assert_eq!(shadow.code, code::OK);
    assert_eq!(shadow.header("x-user-id"), Some(SUB));
    assert_eq!(shadow.header("x-username"), Some("bob"));
    // An invalid token in shadow: through, but with no identity at all.
    let invalid = decode(&ext.decide(&in_route(bearer("not.a.token"), &mfa_route(Some("shadow"))), now()).await);
    assert_eq!(invalid.code, code::OK);
    assert!(invalid.header("x-user-id").is_none() && invalid.removed.contains(&"x-user-id".to_owned()));
    // Anything but `shadow` enforces.
    let unknown = decode(&ext.decide(&in_route(bearer(&bob), &mfa_route(Some("Shadow"))), now()).await);
    assert_eq!(unknown.http_status, Some(403));
    let text = metrics.render();
    for series in [
        r#"cognito_authz_decisions_total{outcome="forbidden",reason="mfa_required",mode="enforce",transport="grpc"} 2"#,
        r#"cognito_authz_decisions_total{outcome="forbidden",reason="mfa_required",mode="shadow",transport="grpc"} 1"#,
        r#"cognito_authz_decisions_total{outcome="unauthenticated",reason="malformed",mode="shadow",transport="grpc"} 1"#,
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
}

#[tokio::test]
async fn shadow_everywhere_yields_to_a_route_or_rule_that_says_enforce() {
    let mut config = crate::common::config(NO_JWKS);
    config.shadow = true;
    config.policy = cognito_authz::authz::policy::Policy::from_toml(
        "[[rule]]\nprefix = \"/billing\"\naccess = \"mfa\"\nmode = \"enforce\"\n\n[[rule]]\nprefix = \"/beta\"\naccess = \"mfa\"\n",
    )
    .unwrap();
    let parts = scripted_parts(&config, FakeMfa::new(), &serving(&["kid-1"])).await;
    let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics);
    let mut bob = access_claims();
    bob["username"] = json!("bob");
    let bob = format!("Bearer {}", signed(&bob));
    let at = |path: &str, route: &[(&str, &str)]| in_route(check_request(path, &[("authorization", &bob)]), route);
    assert_eq!(decode(&ext.decide(&at("/beta/x", &[]), now()).await).code, code::OK, "--shadow: observed");
    assert_eq!(decode(&ext.decide(&at("/billing/x", &[]), now()).await).http_status, Some(403), "the rule enforces");
    let envoy_enforces = at("/beta/x", &[("access", "mfa"), ("mode", "enforce")]);
    assert_eq!(decode(&ext.decide(&envoy_enforces, now()).await).http_status, Some(403), "the route enforces");
    let disagree = at("/billing/x", &[("access", "mfa"), ("mode", "shadow")]);
    assert_eq!(decode(&ext.decide(&disagree, now()).await).http_status, Some(403), "enforce, the stricter, wins");
}

#[tokio::test]
async fn with_a_sign_in_url_a_browser_is_sent_there_and_an_api_call_gets_401() {
    let parts = scripted_parts(&crate::common::config(NO_JWKS), FakeMfa::new(), &serving(&["kid-1"])).await;
    let ext = ExtAuthz::new(parts.authorizer, false, parts.metrics).sending_browsers_to(Some("/auth/login".into()));
    let page = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8";
    let browser = decode(&ext.decide(&check_request("/reports", &[("accept", page)]), now()).await);
    assert_eq!((browser.code, browser.http_status), (code::UNAUTHENTICATED, Some(302)), "still a denial");
    assert_eq!(browser.header("location"), Some("/auth/login"));
    let api = decode(&ext.decide(&check_request("/reports", &[("accept", "application/json")]), now()).await);
    assert_eq!((api.http_status, api.header("location")), (Some(401), None));
    let post = with_method(check_request("/reports", &[("accept", page)]), "POST");
    assert_eq!(decode(&ext.decide(&post, now()).await).http_status, Some(401), "only a GET is redirected");
    let token = format!("Bearer {}", signed(&access_claims()));
    let signed_in =
        decode(&ext.decide(&check_request("/reports", &[("accept", page), ("authorization", &token)]), now()).await);
    assert_eq!(signed_in.code, code::OK, "positive control: with a token the page is served");
}
