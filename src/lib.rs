//! cognito-authz: an Envoy external-authorization server for AWS Cognito access tokens.
//!
//! Data flows one way: proxy request -> neutral `Request` -> credential -> verified claims (keys)
//! -> policy (route level, issuers, revocation, MFA) -> decision -> rendered answer. The folders
//! follow that flow; each says in its first lines what it holds.

/// `Debug` that names the type only, for parts holding shared state, keys or caches: nothing in
/// them is worth a log line, and some of it must never be in one.
macro_rules! opaque_debug {
    ($ty:ident $(<$g:ident>)?) => {
        impl$(<$g>)? std::fmt::Debug for $ty$(<$g>)? {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty)).finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use opaque_debug;

// Low: pure rules and their state. None of these imports configuration, a transport, the wiring
// or the AWS SDK (tests/service/layout.rs keeps that true).
pub mod authz;
pub mod clock;
pub mod cognito;
pub mod keys;
pub mod mfa;
pub mod private_fs;
pub mod revocation;
pub mod telemetry;
pub mod verify;

// Configuration, the transports (Envoy, HTTP), the wiring, and the commands.
pub mod cmd;
pub mod config;
pub mod envoy;
pub mod http;
pub mod server;

// Development mode and test support.
pub mod dev;
pub mod testkit;
