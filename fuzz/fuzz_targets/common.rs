//! What both fuzz targets share: a signing key, a key store that serves its JWKS from memory, and
//! a fixed clock.

use std::sync::Arc;

use cognito_authz::dev::signing_key::SigningKey;
use cognito_authz::config::Settings;
use cognito_authz::keys::key_store::KeyStore;
use cognito_authz::testkit::scripted_keys::ScriptedKeys;

pub const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Fuzz";
pub const CLIENT: &str = "fuzz-client";
pub const KID: &str = "fuzz-kid";
/// The clock the targets decide at (2027-01-15): fixed, so a finding replays the same way.
#[allow(dead_code)] // not every target decides at a fixed clock
pub const NOW: u64 = 1_800_000_000;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

pub fn key() -> SigningKey {
    SigningKey::generate(KID).expect("rsa key")
}

/// A key store holding `key`'s public half, loaded.
pub fn keys(rt: &tokio::runtime::Runtime, key: &SigningKey) -> KeyStore {
    let store = KeyStore::new(Arc::new(ScriptedKeys::serving(&[key])), Settings::default().key_settings().expect("the defaults"));
    assert!(rt.block_on(store.refresh()), "keys load");
    store
}
