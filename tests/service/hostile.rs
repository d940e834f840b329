//! A corpus of malformed and malicious requests: each is refused with 401 (or 400 where the request
//! itself is malformed), none panics, none is slow, and no header makes the service fetch a key
//! from anywhere but its configured key source. The trusted keys come from a script; the
//! attacker's JWKS is a real one on loopback, so a fetch a token's header asked for would be seen.

use std::time::{Duration, Instant};

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cognito_authz::authz::error::code;
use cognito_authz::envoy::ext_authz::ExtAuthz;
use cognito_authz::envoy::pb::auth::{AttributeContext, CheckRequest};
use cognito_authz::envoy::pb::core::{HeaderMap, HeaderValue};
use serde_json::json;

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// A token from raw header and payload JSON, signed by the trusted key (so only the rule under test
/// can refuse it).
fn raw(header: &str, payload: &str) -> String {
    key("kid-1").sign_raw(header, payload)
}

fn claims_with(k: &str, v: serde_json::Value) -> String {
    let mut c = access_claims();
    c[k] = v;
    c.to_string()
}

const H: &str = r#"{"alg":"RS256","kid":"kid-1"}"#;

fn corpus(evil: &str) -> Vec<(&'static str, String)> {
    let good = raw(H, &access_claims().to_string());
    let parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let payload = access_claims().to_string();
    let hmac = {
        let input = format!("{}.{}", b64(r#"{"alg":"HS256","kid":"kid-1"}"#), b64(&payload));
        let secret = key("kid-1").jwk()["n"].as_str().unwrap().to_owned();
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes()),
            input.as_bytes(),
        );
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
    };
    let attacker = cognito_authz::dev::signing_key::SigningKey::generate("attacker").unwrap();
    let embedded_jwk = format!(r#"{{"alg":"RS256","kid":"attacker","jwk":{}}}"#, attacker.jwk());
    let nested = format!("{{\"deep\":{}{}}}", "[".repeat(200), "]".repeat(200));
    vec![
        ("empty token", String::new()),
        ("whitespace token", "   ".into()),
        ("truncated in the header", good[..10].to_owned()),
        ("truncated in the payload", format!("{}.{}", parts[0], &parts[1][..20])),
        ("truncated signature", format!("{}.{}.{}", parts[0], parts[1], &parts[2][..30])),
        ("signature removed", format!("{}.{}.", parts[0], parts[1])),
        ("over 16 KiB", "a".repeat(16 * 1024 + 1)),
        ("16 KiB of dots", ".".repeat(16 * 1024)),
        ("not base64", "!!!.!!!.!!!".into()),
        ("padded base64", format!("{}=.{}.{}", parts[0], parts[1], parts[2])),
        ("standard base64 alphabet", STANDARD.encode(H) + "." + &STANDARD.encode(&payload) + ".abc+/"),
        ("header not json", format!("{}.{}.{}", b64("not json"), parts[1], parts[2])),
        ("payload not json", raw(H, "not json")),
        ("header is an array", raw("[\"RS256\"]", &payload)),
        ("header is a string", raw("\"RS256\"", &payload)),
        ("header is null", raw("null", &payload)),
        ("duplicate alg", raw(r#"{"alg":"RS256","alg":"none","kid":"kid-1"}"#, &payload)),
        ("duplicate kid", raw(r#"{"alg":"RS256","kid":"kid-1","kid":"kid-2"}"#, &payload)),
        ("duplicate claim", raw(H, &payload.replacen('{', "{\"exp\":1,", 1))),
        ("huge exp", raw(H, &claims_with("exp", json!(1e308)))),
        ("negative exp", raw(H, &claims_with("exp", json!(-5)))),
        ("exp as string", raw(H, &claims_with("exp", json!("9999999999")))),
        ("exp as float", raw(H, &claims_with("exp", json!(9999999999.5)))),
        ("exp past u64", raw(H, &payload.replace("\"exp\":", "\"exp\":184467440737095516150+"))),
        ("nbf as string", raw(H, &claims_with("nbf", json!("0")))),
        ("iat as object", raw(H, &claims_with("iat", json!({"t": 1})))),
        ("token_use as number", raw(H, &claims_with("token_use", json!(1)))),
        ("token_use as array", raw(H, &claims_with("token_use", json!(["access"])))),
        ("client_id as array", raw(H, &claims_with("client_id", json!([CLIENT])))),
        ("groups as string", raw(H, &claims_with("cognito:groups", json!("admin")))),
        ("sub as number", raw(H, &claims_with("sub", json!(7)))),
        ("username as null", raw(H, &claims_with("username", json!(null)))),
        ("payload is an array", raw(H, "[1,2,3]")),
        ("payload nested 200 deep", raw(H, &nested)),
        ("nested jwt as payload", raw(H, &format!("\"{good}\""))),
        ("alg none", format!("{}.{}.", b64(r#"{"alg":"none","kid":"kid-1"}"#), b64(&payload))),
        ("alg None", raw(r#"{"alg":"None","kid":"kid-1"}"#, &payload)),
        ("alg NONE", raw(r#"{"alg":"NONE","kid":"kid-1"}"#, &payload)),
        ("alg empty", raw(r#"{"alg":"","kid":"kid-1"}"#, &payload)),
        ("alg missing", raw(r#"{"kid":"kid-1"}"#, &payload)),
        ("alg HS256 keyed with the public key", hmac),
        ("alg RS512", raw(r#"{"alg":"RS512","kid":"kid-1"}"#, &payload)),
        ("alg PS256", raw(r#"{"alg":"PS256","kid":"kid-1"}"#, &payload)),
        ("alg ES256", raw(r#"{"alg":"ES256","kid":"kid-1"}"#, &payload)),
        ("alg rs256 lower case", raw(r#"{"alg":"rs256","kid":"kid-1"}"#, &payload)),
        ("alg as number", raw(r#"{"alg":256,"kid":"kid-1"}"#, &payload)),
        ("kid path traversal", raw(r#"{"alg":"RS256","kid":"../../../etc/passwd"}"#, &payload)),
        ("kid sql", raw(r#"{"alg":"RS256","kid":"' OR 1=1 --"}"#, &payload)),
        ("kid url noise", raw(r#"{"alg":"RS256","kid":"https://evil.example/x?y=%00&z=%0d%0a"}"#, &payload)),
        ("kid with newline", raw(r#"{"alg":"RS256","kid":"a\nINFO forged log line"}"#, &payload)),
        ("kid too long", raw(&format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(300)), &payload)),
        ("kid null", raw(r#"{"alg":"RS256","kid":null}"#, &payload)),
        ("kid number", raw(r#"{"alg":"RS256","kid":7}"#, &payload)),
        ("kid missing", raw(r#"{"alg":"RS256"}"#, &payload)),
        (
            "jku to an attacker's jwks",
            attacker.sign_raw(&format!(r#"{{"alg":"RS256","kid":"attacker","jku":"{evil}"}}"#), &payload),
        ),
        (
            "x5u to an attacker's url",
            attacker.sign_raw(&format!(r#"{{"alg":"RS256","kid":"attacker","x5u":"{evil}"}}"#), &payload),
        ),
        ("embedded jwk of an attacker", attacker.sign_raw(&embedded_jwk, &payload)),
        ("crit exp", raw(r#"{"alg":"RS256","kid":"kid-1","crit":["exp"]}"#, &payload)),
        ("crit empty", raw(r#"{"alg":"RS256","kid":"kid-1","crit":[]}"#, &payload)),
        ("five parts (JWE shape)", format!("{good}.{}.{}", parts[1], parts[2])),
        ("two dots only", "..".into()),
        ("space inside", format!("{} {}", &good[..50], &good[50..])),
        ("control character", format!("{}\u{7}{}", &good[..50], &good[50..])),
        ("non-ascii", format!("{}é{}", &good[..50], &good[50..])),
        ("tampered payload", format!("{}.{}.{}", parts[0], b64(&claims_with("username", json!("root"))), parts[2])),
        (
            "signature of another token",
            format!("{}.{}.{}", parts[0], b64(&claims_with("username", json!("x"))), parts[2]),
        ),
    ]
}

/// The decision path in-process, keys from a script.
async fn service() -> ExtAuthz {
    let parts = scripted_parts(&config(NO_JWKS), FakeMfa::new(), &serving(&["kid-1"])).await;
    ExtAuthz::new(parts.authorizer, false, parts.metrics)
}

fn status(response: &cognito_authz::envoy::pb::auth::CheckResponse) -> (i32, Option<i32>) {
    let decided = decode(response);
    (decided.code, decided.http_status)
}

/// The fastest of `rounds` single Checks of `header`, and its answer.
async fn fastest(ext: &ExtAuthz, header: &str, rounds: u32) -> (Duration, (i32, Option<i32>)) {
    let request = check_request("/api/items", &[("authorization", header)]);
    let mut best = (Duration::MAX, (0, None));
    for _ in 0..rounds {
        let started = Instant::now();
        let response = ext.decide(&request, now()).await;
        best = best.min((started.elapsed(), status(&response)));
    }
    best
}

#[tokio::test]
async fn every_hostile_token_is_refused_quickly_and_no_foreign_key_is_fetched() {
    let evil =
        JwksServer::start(crate::common::jwks(&[
            &cognito_authz::dev::signing_key::SigningKey::generate("attacker").unwrap()
        ]))
        .await;
    let ext = service().await;
    // Positive control: this instance allows a valid token, so every refusal below is the token's.
    let good = raw(H, &access_claims().to_string());
    assert_eq!(status(&ext.decide(&bearer(&good), now()).await), (code::OK, None));
    // The yardstick: a plain refusal that costs a full RS256 verification (one signature
    // character changed). A hostile token may cost a few of those, not more: no input buys work.
    let mut forged = good.clone().into_bytes();
    let i = forged.len() - 40;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let (plain, answer) = fastest(&ext, &format!("Bearer {forged}"), 20).await;
    assert_eq!(answer, (code::UNAUTHENTICATED, Some(401)), "the yardstick is a refusal");
    // Fastest of 5, so a round another test slowed down is not read as the token's cost; the
    // floor keeps a scheduler slice on a loaded machine from failing a microsecond refusal.
    let bound = plain * 10 + Duration::from_millis(10);
    let cases = corpus(&evil.url());
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for (name, token) in &cases {
        for header in [format!("Bearer {token}"), format!("bearer  {token}")] {
            let (took, (code, http)) = fastest(&ext, &header, 5).await;
            assert!(code != 0, "{name}: allowed");
            assert!(matches!(http, Some(400 | 401)), "{name}: answered {http:?}");
            assert!(took < bound, "{name}: took {took:?}, a plain refusal {plain:?}");
        }
    }
    assert_eq!(evil.hits(), 0, "jku/x5u/jwk headers are never followed");
}

fn raw_header(key: &str, value: &[u8]) -> HeaderValue {
    HeaderValue { key: key.into(), value: String::new(), raw_value: value.to_vec() }
}

fn with_header_map(headers: Vec<HeaderValue>) -> CheckRequest {
    let mut request = check_request("/api/items", &[]);
    let http = request.attributes.as_mut().unwrap().request.as_mut().unwrap().http.as_mut().unwrap();
    http.header_map = Some(HeaderMap { headers });
    request
}

#[tokio::test]
async fn malformed_requests_are_refused() {
    let ext = service().await;
    let good = key("kid-1").sign(&access_claims());
    let bearer_good = format!("Bearer {good}");
    let cases: Vec<(&str, CheckRequest, i32)> = vec![
        ("no attributes", CheckRequest::default(), 400),
        ("attributes without a request", CheckRequest { attributes: Some(AttributeContext::default()) }, 400),
        (
            "two authorization headers joined",
            check_request("/", &[("authorization", &format!("{bearer_good},{bearer_good}"))]),
            400,
        ),
        (
            "two authorization headers in header_map",
            with_header_map(vec![
                raw_header("authorization", bearer_good.as_bytes()),
                raw_header("authorization", bearer_good.as_bytes()),
            ]),
            400,
        ),
        (
            "non-UTF-8 authorization bytes",
            with_header_map(vec![raw_header("authorization", b"Bearer \xff\xfe\xfd")]),
            401,
        ),
        ("Basic scheme", check_request("/", &[("authorization", "Basic YWRtaW46YWRtaW4=")]), 401),
        ("Bearer twice", check_request("/", &[("authorization", &format!("Bearer Bearer {good}"))]), 401),
        ("no space after Bearer", check_request("/", &[("authorization", &format!("Bearer{good}"))]), 401),
        ("dot-dot path", check_request("/api/../admin", &[("authorization", &bearer_good)]), 400),
        ("encoded slash path", check_request("/api%2Fadmin", &[("authorization", &bearer_good)]), 400),
    ];
    for (name, request, expected) in cases {
        let (code, http) = status(&ext.decide(&request, now()).await);
        assert!(code != 0, "{name}: allowed");
        assert_eq!(http, Some(expected), "{name}");
    }
    // The same token through header_map, once, passes: the refusals above are about the shape.
    let ok = ext.decide(&with_header_map(vec![raw_header("authorization", bearer_good.as_bytes())]), now()).await;
    assert_eq!(status(&ok).0, code::OK);
}

/// Mean time of one Check over `rounds`.
async fn mean_check(ext: &ExtAuthz, token: &str, rounds: u32) -> Duration {
    let request = check_request("/api/items", &[("authorization", &format!("Bearer {token}"))]);
    let started = Instant::now();
    for _ in 0..rounds {
        let (code, http) = status(&ext.decide(&request, now()).await);
        assert!(code != 0 && http == Some(401), "refused with 401");
    }
    started.elapsed() / rounds
}

#[tokio::test]
async fn a_header_stuffed_with_keys_costs_no_more_than_a_plain_refusal_of_its_size() {
    let ext = service().await;
    let payload = access_claims().to_string();
    // ~1,100 distinct keys: each one used to be compared with every key before it.
    let keys: String = (0..1100).map(|i| format!(",\"k{i}\":0")).collect();
    let flood = raw(&format!(r#"{{"alg":"RS256","kid":"kid-1"{keys}}}"#), &payload);
    // The same size, refused for an ordinary reason (a signature that does not match).
    let filler = "x".repeat(keys.len());
    let plain = raw(&format!(r#"{{"alg":"RS256","kid":"kid-1","x":"{filler}"}}"#), &payload);
    let plain = format!("{}.{}.{}", plain.split('.').next().unwrap(), b64("{}"), "c2ln");
    assert!(flood.len().abs_diff(plain.len()) < 4096, "{} vs {}", flood.len(), plain.len());
    let small_bad_signature = format!("{}.{}.c2ln", b64(H), b64(&payload));
    mean_check(&ext, &flood, 20).await;
    mean_check(&ext, &plain, 20).await;
    // Alternating rounds, the fastest of each kind: other tests share these cores, and a round
    // they slow down must not read as the flood's cost.
    let (mut best_flood, mut best_plain, mut best_small) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..7 {
        best_flood = best_flood.min(mean_check(&ext, &flood, 30).await);
        best_plain = best_plain.min(mean_check(&ext, &plain, 30).await);
        best_small = best_small.min(mean_check(&ext, &small_bad_signature, 30).await);
    }
    let (flood, plain, small) = (best_flood, best_plain, best_small);
    let ratio = flood.as_secs_f64() / plain.as_secs_f64().max(small.as_secs_f64());
    assert!(ratio < 3.0, "flood {flood:?} vs plain {plain:?} (small {small:?}): {ratio:.1}x");
}

#[tokio::test]
async fn identity_headers_spelled_with_underscores_are_refused_on_every_route() {
    let ext = service().await;
    let bearer_good = format!("Bearer {}", key("kid-1").sign(&access_claims()));
    let public = |headers: &[(&str, &str)]| {
        let mut request = check_request("/api/items", headers);
        let attributes = request.attributes.as_mut().unwrap();
        attributes.context_extensions.insert("access".into(), "public".into());
        request
    };
    // Positive controls: a harmless underscore header, and our own spelling (which the allow overwrites).
    for headers in [
        vec![("authorization", bearer_good.as_str()), ("x_request_trace", "1")],
        vec![("authorization", bearer_good.as_str()), ("x-user-id", "someone-else")],
    ] {
        assert_eq!(status(&ext.decide(&check_request("/api/items", &headers), now()).await).0, code::OK);
        assert_eq!(status(&ext.decide(&public(&headers), now()).await).0, code::OK);
    }
    for spoof in ["x_user_id", "x-user_id", "x_username", "x_user_groups", "x_client_id", "X_User_Id"] {
        let with_token = [("authorization", bearer_good.as_str()), (spoof, "admin")];
        assert_eq!(status(&ext.decide(&check_request("/api/items", &with_token), now()).await).1, Some(400), "{spoof}");
        assert_eq!(status(&ext.decide(&public(&[(spoof, "admin")]), now()).await).1, Some(400), "{spoof} public");
        let map =
            with_header_map(vec![raw_header("authorization", bearer_good.as_bytes()), raw_header(spoof, b"admin")]);
        assert_eq!(status(&ext.decide(&map, now()).await).1, Some(400), "{spoof} in header_map");
    }
}
