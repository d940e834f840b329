//! cognito-authz: an Envoy external-authorization server for AWS Cognito access tokens.
//!
//! Data flows one way: Envoy request -> bearer token -> verified claims -> decision -> response.

pub mod answer;
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

pub mod audit;
pub mod authz;
pub mod cache;
pub mod claims;
pub mod cli;
pub mod clock;
pub mod cognito;
pub mod config;
pub mod credential;
pub mod dev;
pub mod dev_oidc;
pub mod discovery;
pub mod error;
pub mod ext_authz;
pub mod grpc;
pub mod headers;
pub mod hosted_ui;
pub mod http;
pub mod issuer;
pub mod key_set;
pub mod key_store;
pub mod loopback;
pub mod metrics;
pub mod mfa;
pub mod oauth;
pub mod oidc;
pub mod pb;
pub mod policy;
pub mod pool;
pub mod private_fs;
pub mod revocation;
pub mod run;
pub mod scripted_keys;
pub mod secret;
pub mod server;
pub mod settings;
pub mod signing_key;
pub mod tls;
pub mod token;
pub mod totp;
pub mod trace_context;
pub mod verify;
