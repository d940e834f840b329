//! Resident memory of the verified-token cache and the revocation list, filled directly with
//! Cognito-shaped entries (benchmarks only; `bench/run.sh` measures the same through real Checks).
//!
//! `cargo run --release --example cache_memory -- [TOKENS] [REVOCATIONS]`   (defaults 100000 each)

use std::sync::Arc;

use cognito_authz::dev::signing_key::SigningKey;
use cognito_authz::keys::key_set::KeySet;
use cognito_authz::revocation::{Entry, RevocationList};
use cognito_authz::verify::cache::TokenCache;
use cognito_authz::verify::token::RawClaims;
use cognito_authz::verify::{Rules, Verified};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEfGhI";
const CLIENT: &str = "4f2kq8v1n3m5p7r9t0w2y4z6b8";
const KID: &str = "Xk3mQ9pL2vN8rT5wY1zA4bC7dE0fG6hJ+iK=";
const NOW: u64 = 1_800_000_000;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn uuid(i: u64, salt: u64) -> String {
    uuid::Uuid::from_u64_pair(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt, i ^ (salt << 7)).to_string()
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let tokens = args.first().copied().unwrap_or(100_000);
    let revocations = args.get(1).copied().unwrap_or(100_000);
    let key = SigningKey::generate(KID).expect("key");
    let jwks = serde_json::json!({ "keys": [key.jwk()] }).to_string();
    let keys = KeySet::from_jwks(jwks.as_bytes()).expect("key set");
    let key = keys.get(KID).expect("the key").clone();
    let rules = Rules {
        issuer: ISSUER.into(),
        also: vec![],
        client_ids: vec![CLIENT.into()],
        leeway: 0,
        allow_machine_tokens: false,
        mfa_from_amr: false,
    };

    // The verifier shares equal scope strings and group lists between cached tokens; so does this.
    let scope: Arc<str> = Arc::from("aws.cognito.signin.user.admin openid profile");
    let groups: Arc<[String]> = vec!["admin".to_owned()].into();
    let start = rss_kib();
    let cache = TokenCache::<Verified>::new(tokens.max(1));
    for i in 0..tokens {
        let raw = RawClaims {
            iss: Some(ISSUER.into()),
            sub: Some(uuid(i, 1)),
            token_use: Some("access".into()),
            client_id: Some(CLIENT.into()),
            username: Some(uuid(i, 1)),
            exp: Some(NOW + 3600),
            iat: Some(NOW - 5),
            auth_time: Some(NOW - 5),
            jti: Some(uuid(i, 2)),
            origin_jti: Some(uuid(i, 3)),
            scope: Some("aws.cognito.signin.user.admin openid profile".into()),
            groups: Some(vec!["admin".into()]),
            ..RawClaims::default()
        };
        let mut claims = rules.check(raw, NOW).expect("valid claims");
        (claims.scope, claims.groups) = (Some(scope.clone()), groups.clone());
        let claims = Arc::new(claims);
        let mut digest = [0u8; 32];
        digest[..8].copy_from_slice(&i.to_le_bytes());
        cache.insert(digest, Verified::new(claims, key.clone()));
    }
    let entries = cache.len();
    let after_cache = rss_kib();

    let mut list = RevocationList::default();
    for i in 0..revocations {
        let until = NOW + 30 * 86400;
        list.apply(if i % 2 == 0 {
            Entry::Jti { id: uuid(i, 4), until, issuer: None, iss: None }
        } else {
            Entry::Origin { id: uuid(i, 5), until, issuer: None, iss: None }
        });
    }
    let after_revocations = rss_kib();
    let per = |kib: u64, n: u64| if n == 0 { 0.0 } else { kib as f64 * 1024.0 / n as f64 };
    println!(
        "token cache: {entries} entries, {:.1} MiB, {:.0} bytes each",
        (after_cache - start) as f64 / 1024.0,
        per(after_cache - start, entries)
    );
    println!(
        "revocations: {} entries, {:.1} MiB, {:.0} bytes each",
        list.len(),
        (after_revocations - after_cache) as f64 / 1024.0,
        per(after_revocations - after_cache, list.len() as u64)
    );
    println!("resident in all: {:.1} MiB", after_revocations as f64 / 1024.0);
    std::hint::black_box((cache, list));
}
