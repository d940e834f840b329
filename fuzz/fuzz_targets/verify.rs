//! The verifier on any input. The first byte picks what the rest is: a whole token (which must never
//! pass: the fuzzer holds no key), or claims (or a header and claims) signed with the trusted key,
//! which reach the claim rules; whatever passes them must satisfy every rule.

#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use cognito_authz::dev::signing_key::SigningKey;
use cognito_authz::verify::cache::TokenCache;
use cognito_authz::verify::{Identity, Rules, Verifier};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    rt: tokio::runtime::Runtime,
    key: SigningKey,
    verifier: Verifier,
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
    let verifier = Verifier::new(common::keys(&rt, &key), rules, TokenCache::new(10_000));
    Fixture { rt, key, verifier }
});

const HEADER: &str = r#"{"alg":"RS256","kid":"fuzz-kid"}"#;

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let Some((&mode, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let (token, signed) = match mode % 4 {
        0 | 1 => (text.into_owned(), false),
        2 => (f.key.sign_raw(HEADER, &text), true),
        _ => {
            let (header, claims) = text.split_once('\n').unwrap_or((HEADER, &text));
            (f.key.sign_raw(header, claims), true)
        }
    };
    if let Ok(claims) = f.rt.block_on(f.verifier.verify(&token, common::NOW)) {
        assert!(signed, "a token the fuzzer made up without the key was accepted");
        assert_eq!(&*claims.client_id, common::CLIENT);
        assert!(claims.exp > common::NOW);
        assert!(matches!(claims.identity, Identity::User { ref username, .. } if !username.is_empty()));
    }
});
