//! Our verifier against `jsonwebtoken` (the design card's JWT crate, a second opinion only) on
//! whatever header and claims the fuzzer writes, signed with the trusted RS256 key: anything it
//! refuses for signature, algorithm or time reasons, we refuse too. The converse is not asked: we
//! also refuse what Cognito's rules forbid (issuer, client, `token_use`, `crit`, duplicate keys, …).

#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use cognito_authz::dev::signing_key::SigningKey;
use cognito_authz::verify::cache::TokenCache;
use cognito_authz::verify::{Rules, Verifier};
use jsonwebtoken::errors::ErrorKind;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    rt: tokio::runtime::Runtime,
    key: SigningKey,
    verifier: Verifier,
    decoding: jsonwebtoken::DecodingKey,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let rt = common::runtime();
    let key = common::key();
    let rules = Rules {
        issuer: common::ISSUER.to_owned(),
        client_ids: vec![common::CLIENT.into()],
        leeway: 0,
        allow_machine_tokens: false,
        also: vec![],
        mfa_from_amr: false,
    };
    // No cache: every input is verified, never answered from an earlier one.
    let verifier = Verifier::new(common::keys(&rt, &key), rules, TokenCache::new(0));
    let jwk = key.jwk();
    let decoding =
        jsonwebtoken::DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .expect("the key's components");
    Fixture { rt, key, verifier, decoding }
});

const HEADER: &str = r#"{"alg":"RS256","kid":"fuzz-kid","typ":"JWT"}"#;

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let text = String::from_utf8_lossy(data);
    let (header, claims) = text.split_once('\n').unwrap_or((HEADER, &text));
    let token = f.key.sign_raw(header, claims);
    // Both read the wall clock here (jsonwebtoken cannot be given one); a time claim within two
    // seconds of it could fall either side between the two reads, so such inputs are skipped.
    let now = cognito_authz::clock::unix_now();
    let near_now = |claim: &str| {
        serde_json::from_str::<serde_json::Value>(claims)
            .ok()
            .and_then(|c| c.get(claim).and_then(serde_json::Value::as_f64))
            .is_some_and(|t| (t - now as f64).abs() <= 2.0)
    };
    if near_now("exp") || near_now("nbf") {
        return;
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.leeway = 0;
    validation.validate_aud = false;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp"]);
    let theirs = jsonwebtoken::decode::<serde_json::Value>(&token, &f.decoding, &validation).map_err(|e| e.into_kind());
    if let Err(
        kind @ (ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::ExpiredSignature
        | ErrorKind::ImmatureSignature
        | ErrorKind::MissingRequiredClaim(_)),
    ) = &theirs
    {
        let ours = f.rt.block_on(f.verifier.verify(&token, now));
        assert!(ours.is_err(), "jsonwebtoken refused ({kind:?}), we accepted: {token}");
    }
});
