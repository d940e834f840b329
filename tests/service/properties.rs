//! Property tests on the token parser, the verifier and the policy matcher: for inputs proptest
//! makes up, nothing panics, and each answer agrees with a simple model of the rule.

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cognito_authz::authz::error::{BadRequest, Invalid};
use cognito_authz::authz::policy::{Access, Policy, RouteContext, checked_path};
use cognito_authz::verify::token::{Jwt, MAX_HEADER_BYTES, bearer, checked_token, ensure_unique_keys};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JOSE headers near the accepted shape: each field present or not, right or wrong, plus noise.
fn jose_header() -> impl Strategy<Value = Value> {
    let alg = prop_oneof![
        Just(json!("RS256")),
        Just(json!("none")),
        Just(json!("rs256")),
        Just(json!("HS256")),
        json_value()
    ];
    let kid = prop_oneof![
        ".{1,8}".prop_map(Value::String),
        Just(json!("")),
        Just(Value::String("k".repeat(257))),
        json_value()
    ];
    (
        prop::option::of(alg),
        prop::option::of(kid),
        prop::option::of(json_value()),
        prop::collection::btree_map("[a-z]{1,4}", json_value(), 0..3),
    )
        .prop_map(|(alg, kid, crit, extra)| {
            let mut header: Map<String, Value> =
                extra.into_iter().filter(|(k, _)| !matches!(k.as_str(), "alg" | "kid" | "crit")).collect();
            for (name, value) in [("alg", alg), ("kid", kid), ("crit", crit)] {
                if let Some(value) = value {
                    header.insert(name.to_owned(), value);
                }
            }
            Value::Object(header)
        })
}

/// Object keys at any depth.
fn keys_in(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.len() + map.values().map(keys_in).sum::<usize>(),
        Value::Array(items) => items.iter().map(keys_in).sum(),
        _ => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any header value and any token text: every parsing step answers, none panics, and a token that
    /// passes the shape check is within the size bound and made of base64url characters and dots.
    #[test]
    fn the_parser_answers_every_input(input in ".{0,300}", raw_parts in prop::collection::vec("[A-Za-z0-9_-]{0,40}", 0..5)) {
        let _ = bearer(&input);
        let joined = raw_parts.join(".");
        for candidate in [input.as_str(), joined.as_str()] {
            if let Ok(token) = checked_token(candidate) {
                prop_assert!(token.len() <= 16 * 1024);
                prop_assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
                if let Ok(jwt) = Jwt::split(token) {
                    let _ = jwt.header();
                    let _ = jwt.claims();
                }
            }
        }
    }

    /// Any JSON as the header or the payload of a three-part token: parsed or refused, never a panic;
    /// and the header is accepted only when it says RS256, names a kid and has no `crit`.
    #[test]
    fn any_json_header_or_payload_is_judged(header in prop_oneof![json_value(), jose_header()], payload in json_value()) {
        let token = format!("{}.{}.c2ln", b64(header.to_string().as_bytes()), b64(payload.to_string().as_bytes()));
        let jwt = Jwt::split(&token).expect("three parts");
        let accepted = jwt.header().is_ok();
        let encoded = b64(header.to_string().as_bytes());
        let model = header.get("alg") == Some(&json!("RS256"))
            && header.get("kid").and_then(Value::as_str).is_some_and(|k| !k.is_empty() && k.len() <= 256)
            && header.get("crit").is_none()
            // Bounded before any key is read: at most 1 KiB encoded and 16 object keys in all.
            && encoded.len() <= MAX_HEADER_BYTES
            && keys_in(&header) <= 16;
        prop_assert_eq!(accepted, model, "header {}", header);
        let _ = jwt.claims();
    }

    /// Any non-empty kid up to 256 bytes comes back exactly as sent; any alg but RS256 is refused.
    #[test]
    fn kid_round_trips_and_other_algs_are_refused(kid in ".{1,64}", alg in ".{0,10}") {
        let header = json!({ "alg": "RS256", "kid": kid }).to_string();
        let token = format!("{}.e30.c2ln", b64(header.as_bytes()));
        let parsed = Jwt::split(&token).unwrap().header();
        if kid.len() <= 256 {
            prop_assert_eq!(parsed.map(|h| h.kid), Ok(kid.clone()));
        } else {
            prop_assert_eq!(parsed, Err(Invalid::BadHeader));
        }
        let header = json!({ "alg": alg, "kid": "k" }).to_string();
        let token = format!("{}.e30.c2ln", b64(header.as_bytes()));
        let parsed = Jwt::split(&token).unwrap().header();
        prop_assert_eq!(parsed.is_ok(), alg == "RS256");
    }

    /// JSON with unique keys passes the duplicate check; repeating any one key, at any depth, fails it.
    #[test]
    fn a_repeated_key_anywhere_is_refused(object in prop::collection::btree_map("[a-z\"\\\\]{1,6}", json_value(), 1..6), nest in any::<bool>(), pick in any::<prop::sample::Index>()) {
        let map: Map<String, Value> = object.into_iter().collect();
        let text = Value::Object(map.clone()).to_string();
        let wrapped = |inner: &str| if nest { format!("{{\"outer\":[1,{inner}]}}") } else { inner.to_owned() };
        prop_assert_eq!(ensure_unique_keys(wrapped(&text).as_bytes()), Ok(()));
        let (key, value) = map.iter().nth(pick.index(map.len())).unwrap();
        let repeated = format!("{},{}:{}}}", &text[..text.len() - 1], Value::from(key.as_str()), value);
        prop_assert_eq!(ensure_unique_keys(wrapped(&repeated).as_bytes()), Err(Invalid::DuplicateKey));
    }
}

/// Path segments that are plain (no dots, separators or escapes).
fn segments(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-z0-9_-]{1,5}", 0..max)
}

fn path_of(segments: &[String]) -> String {
    format!("/{}", segments.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A path the check lets through is a prefix of what was sent, with no dot segment, empty
    /// segment, backslash, `;`, encoded separator or control byte left in it.
    #[test]
    fn checked_paths_hold_nothing_ambiguous(path in "[/a-zA-Z0-9.%;\\\\?#\\x00 -]{0,40}") {
        if let Ok(checked) = checked_path(&path) {
            prop_assert!(path.starts_with(checked));
            prop_assert!(checked.starts_with('/'));
            prop_assert!(!checked.contains("//") && !checked.contains('\\') && !checked.contains(';'));
            let lower = checked.to_ascii_lowercase();
            prop_assert!(!lower.contains("%2f") && !lower.contains("%2e") && !lower.contains("%5c"));
            prop_assert!(checked.split('/').all(|s| s != "." && s != ".."));
            prop_assert!(!checked.bytes().any(|b| b.is_ascii_control() || b == b' '));
        } else {
            prop_assert_eq!(checked_path(&path), Err(BadRequest::AmbiguousPath));
        }
    }

    /// A prefix rule matches its path and whatever lies below it on whole segments, and nothing else;
    /// unmatched requests need MFA; a query string never changes the answer.
    #[test]
    fn prefix_rules_match_whole_segments(prefix in segments(4), path in segments(6), tail in "[a-z]{0,3}", query in "[a-z=&./%]{0,12}") {
        let policy = Policy::from_toml(&format!("[[rule]]\nprefix = \"{}\"\naccess = \"public\"\n", path_of(&prefix))).unwrap();
        let mut sent = path.clone();
        if let Some(last) = sent.last_mut() {
            last.push_str(&tail);
        }
        let sent_path = path_of(&sent);
        let model = sent.len() >= prefix.len() && sent[..prefix.len()] == prefix[..];
        let expected = if model { Access::Public } else { Access::Mfa };
        let access = |p: &str| policy.requirement("GET", p, RouteContext::default()).map(|r| r.access);
        prop_assert_eq!(access(&sent_path), Ok(expected), "prefix {:?} path {}", prefix, sent_path);
        prop_assert_eq!(access(&format!("{sent_path}?{query}")), Ok(expected));
    }

    /// An exact rule matches only its own path, whatever the method when it names none, and only the
    /// named methods when it does.
    #[test]
    fn exact_rules_and_methods(rule in segments(4), path in segments(4), method in prop::sample::select(vec!["GET", "POST", "DELETE"])) {
        let text = format!("[[rule]]\nmethods = [\"POST\"]\npath = \"{}\"\naccess = \"authenticated\"\n", path_of(&rule));
        let policy = Policy::from_toml(&text).unwrap();
        let access = policy.requirement(method, &path_of(&path), RouteContext::default()).map(|r| r.access);
        let expected = if rule == path && method == "POST" { Access::Authenticated } else { Access::Mfa };
        prop_assert_eq!(access, Ok(expected));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Changing any one character of a valid token, to any other token character, never yields an
    /// allow: strict base64url has one spelling per byte string, so every change reaches the
    /// signature or the parser.
    #[test]
    fn no_single_character_change_of_a_valid_token_is_accepted(position in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_.-]") {
        let (runtime, verifier, token) = &*VERIFIER;
        let mut bytes = token.clone().into_bytes();
        let at = position.index(bytes.len());
        let replacement = replacement.as_bytes()[0];
        prop_assume!(bytes[at] != replacement);
        bytes[at] = replacement;
        let changed = String::from_utf8(bytes).unwrap();
        let verdict = runtime.block_on(verifier.authenticate(&changed, now()));
        prop_assert!(verdict.is_err(), "accepted a token changed at {}", at);
    }
}

type Fixture = (tokio::runtime::Runtime, cognito_authz::authz::Authorizer, String);

/// One running verifier for the whole property (keys loaded once, from a script).
static VERIFIER: std::sync::LazyLock<Fixture> = std::sync::LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let authorizer = runtime.block_on(async {
        let parts = scripted_parts(&crate::common::config(NO_JWKS), FakeMfa::new(), &serving(&["kid-1"])).await;
        parts.authorizer
    });
    let token = key("kid-1").sign(&access_claims());
    assert!(runtime.block_on(authorizer.authenticate(&token, now())).is_ok(), "the unchanged token passes");
    (runtime, authorizer, token)
});

/// What `jsonwebtoken` (the design card's JWT crate, here a second opinion only) says of a token,
/// with Cognito's settings: RS256 only, no `aud`, `exp` required, `nbf` checked, no leeway.
fn jsonwebtoken_verdict(token: &str) -> Result<(), jsonwebtoken::errors::ErrorKind> {
    let jwk = key("kid-1").jwk();
    let decoding =
        jsonwebtoken::DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.leeway = 0;
    validation.validate_aud = false;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<Value>(token, &decoding, &validation).map(|_| ()).map_err(|e| e.into_kind())
}

/// A token with the header's `alg` as given, signed the way that `alg` would be by someone holding
/// only the public key (HS256 keyed with it, `none` unsigned) or by our RS256 key otherwise.
fn forged(alg: &str, claims: &Value, tamper: bool) -> String {
    let header = json!({"alg": alg, "kid": "kid-1", "typ": "JWT"}).to_string();
    let mut token = match alg {
        "none" => format!("{}.{}.", b64(header.as_bytes()), b64(claims.to_string().as_bytes())),
        "HS256" => {
            let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.to_string().as_bytes()));
            let secret = key("kid-1").jwk()["n"].as_str().unwrap().to_owned();
            let mac = aws_lc_rs::hmac::sign(
                &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes()),
                input.as_bytes(),
            );
            format!("{input}.{}", b64(mac.as_ref()))
        }
        _ => key("kid-1").sign_raw(&header, &claims.to_string()),
    };
    if tamper {
        let last = token.pop().unwrap();
        token.push(if last == 'A' { 'B' } else { 'A' });
    }
    token
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Cross-check against `jsonwebtoken`: whatever it refuses for signature, algorithm or time
    /// reasons, we refuse too; and a token it accepts (these claims are a valid Cognito access
    /// token) we accept. Offsets keep clear of the current second, so the two clocks agree.
    /// Known difference, not exercised here: we also refuse `crit`, oversized or crowded headers,
    /// duplicate JSON keys and padded base64, which it accepts.
    #[test]
    fn we_refuse_whatever_jsonwebtoken_refuses_for_signature_algorithm_or_time(
        alg in prop_oneof![Just("RS256"), Just("RS384"), Just("RS512"), Just("PS256"), Just("HS256"), Just("none")],
        exp in prop::option::of(prop_oneof![Just(-3600i64), Just(-30), Just(30), Just(3600)]),
        nbf in prop::option::of(prop_oneof![Just(-60i64), Just(60)]),
        tamper in any::<bool>(),
    ) {
        let (runtime, verifier, _) = &*VERIFIER;
        let at = now() as i64;
        let mut claims = access_claims();
        match exp {
            Some(offset) => claims["exp"] = json!(at + offset),
            None => { claims.as_object_mut().unwrap().remove("exp"); }
        }
        if let Some(offset) = nbf {
            claims["nbf"] = json!(at + offset);
        }
        let token = forged(alg, &claims, tamper);
        let theirs = jsonwebtoken_verdict(&token);
        let ours = runtime.block_on(verifier.authenticate(&token, now()));
        use jsonwebtoken::errors::ErrorKind::*;
        match &theirs {
            Err(InvalidSignature | InvalidAlgorithm | InvalidAlgorithmName | ExpiredSignature | ImmatureSignature
                | MissingRequiredClaim(_) | InvalidToken | Base64(_)) => {
                prop_assert!(ours.is_err(), "jsonwebtoken refused ({:?}), we allowed: {}", theirs, token);
            }
            Err(other) => prop_assert!(ours.is_err(), "jsonwebtoken refused ({:?}), we allowed", other),
            Ok(()) => prop_assert!(ours.is_ok(), "jsonwebtoken accepted, we refused: {:?}", ours.err()),
        }
    }
}
