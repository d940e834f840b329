//! Signing keys: a key set parsed from a JWK Set (pure), the store that refreshes it (single
//! flight, cooldown, backoff) over a key source, and OpenID discovery of where the keys are.

pub mod discovery;
pub mod key_set;
pub mod key_store;
