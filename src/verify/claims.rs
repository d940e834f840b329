//! What a verified access token says: who (`Identity`), for which client, with which scopes and
//! groups, and its ids (`TokenId`). Plain data, no I/O: policy, MFA, revocation and the answers
//! read it without depending on how tokens are verified.

use std::sync::Arc;

use uuid::Uuid;

/// The name the single-pool flags give their issuer (an `[[issuer]]` table names its own).
pub const DEFAULT_ISSUER: &str = "default";

/// True for an issuer name: `[a-z0-9-]`, 1 to 32 characters (a metrics label, a policy value and
/// an identity-header prefix, so nothing that needs escaping).
pub fn valid_issuer_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A user of the pool: `sub` is their UUID.
    User {
        /// Cognito's `sub`.
        sub: Uuid,
        /// Cognito's `username`.
        username: String,
    },
    /// An app client itself (client-credentials grant): no user, `sub` is the client id.
    Machine,
    /// A user of an OIDC issuer: `sub` is whatever non-empty string it chose; `username` is its
    /// `username-claim` (the `sub` when the token has none).
    Subject {
        /// The provider's `sub`, any non-empty string.
        sub: Box<str>,
        /// From the issuer's `username-claim`.
        username: String,
    },
}

/// What a verified access token tells us. Only what decisions and identity headers need, kept
/// small: a cache holds 100,000 of these (the client id is shared with the rules, token ids are
/// 16 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Who the token speaks for.
    pub identity: Identity,
    /// The app client the token was issued to (shared with the rules, not copied).
    pub client_id: Arc<str>,
    /// `cognito:groups`; a pool has few distinct lists, so cached tokens share them.
    pub groups: Arc<[String]>,
    /// Space-separated scopes; shared like the groups.
    pub scope: Option<Arc<str>>,
    /// The token's own id (revocation of this token).
    pub jti: Option<TokenId>,
    /// The id of the sign-in it came from (revocation of the whole sign-in).
    pub origin_jti: Option<TokenId>,
    /// When it expires (Unix seconds).
    pub exp: u64,
    /// When it was issued.
    pub iat: Option<u64>,
    /// When the user signed in (user revocations compare it).
    pub auth_time: Option<u64>,
    /// Values of the claims mapped to upstream headers (`[[header]]`), in the mapping's order;
    /// `None` where the token lacks the claim or it has a type no header can carry. Empty when no
    /// mapping is configured.
    pub mapped: Box<[Option<String>]>,
    /// Which configured issuer verified the token (its position in the configuration).
    pub issuer: usize,
    /// That issuer's `name` (`default` for the single-pool flags).
    pub issuer_name: Arc<str>,
    /// That issuer's `iss`: what revocations are scoped by, since it stays when a configuration
    /// renames the issuer or moves it into an `[[issuer]]` table. Shared, not copied.
    pub iss: Arc<str>,
    /// Whether the token itself shows a second factor: for OIDC issuers, `amr`/`acr` against the
    /// issuer's `mfa-amr`/`mfa-acr`; for a Cognito pool with `mfa-from-amr`, its `amr` when it has
    /// one. `None`: the pool is asked whether the user enrolled.
    pub second_factor: Option<bool>,
}

/// A token id (`jti`, `origin_jti`). Cognito's are lower-case hyphenated UUIDs, kept as 16 bytes;
/// any other text is kept as it is. Two ids are equal exactly when their texts are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenId {
    /// A UUID (Cognito's `jti`s), kept as 16 bytes.
    Uuid(Uuid),
    /// Anything else, as sent.
    Text(Box<str>),
}

impl From<&str> for TokenId {
    fn from(text: &str) -> TokenId {
        match Uuid::try_parse(text) {
            // Only the canonical spelling: "ABC…" and "{…}" stay text, so equality stays textual.
            Ok(uuid) if uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == text => TokenId::Uuid(uuid),
            _ => TokenId::Text(text.into()),
        }
    }
}

impl From<String> for TokenId {
    fn from(text: String) -> TokenId {
        TokenId::from(text.as_str())
    }
}

impl std::fmt::Display for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenId::Uuid(uuid) => uuid.hyphenated().fmt(f),
            TokenId::Text(text) => f.write_str(text),
        }
    }
}

impl Claims {
    /// True for a token of a Cognito pool (whose `jti`s are UUIDs the pool chose).
    pub fn from_cognito(&self) -> bool {
        !matches!(self.identity, Identity::Subject { .. })
    }

    /// True when the space-separated `scope` claim holds `wanted`.
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scope.as_deref().is_some_and(|s| s.split(' ').any(|have| have == wanted))
    }
}
