//! The MFA gate: a user passes an `mfa` route only when Cognito says they have enrolled TOTP.
//! Checked here rather than at the pool, so an administrator's MFA reset takes effect at once.
//!
//! Answers are cached per user: "enrolled" for `ttl` (60 s), "not enrolled" and "gone" only
//! briefly (2 s) — long enough that one user's request loop cannot spend the account's Cognito
//! quota, short enough that a user who has just enrolled is let in at once. One lookup per user is
//! in flight however many requests arrive; errors are not cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use uuid::Uuid;

use crate::cognito::{CognitoError, MfaSource, MfaState, User};
use crate::error::{Denied, Forbidden, Invalid, Unavailable};
use crate::metrics::Metrics;
use crate::verify::{Claims, Identity};

/// The scope `GetUser` needs.
pub const ADMIN_SCOPE: &str = "aws.cognito.signin.user.admin";

/// MFA gate settings.
#[derive(Debug, Clone)]
pub struct MfaSettings {
    /// When false every `mfa` route is treated as `authenticated` (development only). Defaults to true.
    pub enforce: bool,
    /// How long "enrolled" is cached. Defaults to 60 s.
    pub ttl: Duration,
    /// How long "not enrolled" (and "disabled") is cached. Defaults to 2 s.
    pub negative_ttl: Duration,
    /// How many users are cached at most. Defaults to 100,000.
    pub capacity: u64,
}

impl Default for MfaSettings {
    fn default() -> Self {
        MfaSettings {
            enforce: true,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(2),
            capacity: 100_000,
        }
    }
}

/// Requires TOTP enrolment of users on `mfa` routes.
#[derive(Clone)]
pub struct MfaGate {
    source: Arc<dyn MfaSource>,
    cache: Cache<Uuid, MfaState>,
    enforce: bool,
    metrics: Metrics,
}

struct ByAnswer {
    ttl: Duration,
    negative_ttl: Duration,
}

impl moka::Expiry<Uuid, MfaState> for ByAnswer {
    fn expire_after_create(&self, _: &Uuid, state: &MfaState, _: Instant) -> Option<Duration> {
        Some(if *state == MfaState::Enrolled { self.ttl } else { self.negative_ttl })
    }
}

impl MfaGate {
    pub fn new(source: Arc<dyn MfaSource>, settings: MfaSettings, metrics: Metrics) -> MfaGate {
        let cache = Cache::builder()
            .max_capacity(settings.capacity)
            .expire_after(ByAnswer { ttl: settings.ttl, negative_ttl: settings.negative_ttl })
            .build();
        metrics.set_mfa_enforced(settings.enforce);
        MfaGate { source, cache, enforce: settings.enforce, metrics }
    }

    /// Passes users who have enrolled TOTP. `token` is the caller's access token (for `GetUser`).
    pub async fn require(&self, claims: &Claims, token: &str) -> Result<(), Denied> {
        if !self.enforce {
            tracing::debug!("mfa not enforced (--enforce-mfa=false)");
            return Ok(());
        }
        let Identity::User { sub, username } = &claims.identity else {
            return Err(Forbidden::MachineToken.into());
        };
        if self.source.needs_admin_scope() && !claims.has_scope(ADMIN_SCOPE) {
            return Err(Forbidden::MfaScopeMissing.into());
        }
        // Fast path: a cached answer, without building the lookup future.
        if let Some(state) = self.cache.get(sub).await {
            return answer(state);
        }
        let lookup = async {
            let started = Instant::now();
            let answer = self.source.mfa_state(User { username, access_token: token }).await;
            self.metrics.mfa_lookup(&answer, started.elapsed());
            answer
        };
        match self.cache.try_get_with(*sub, lookup).await {
            Ok(state) => answer(state),
            Err(error) => Err(match *error {
                CognitoError::Throttled => Unavailable::CognitoThrottled,
                CognitoError::Refused | CognitoError::Unreachable | CognitoError::Unexpected => Unavailable::Cognito,
            }
            .into()),
        }
    }

    /// Drops a user's cached answer (after an admin action on them).
    pub async fn forget(&self, sub: &Uuid) {
        self.cache.invalidate(sub).await;
    }
}

fn answer(state: MfaState) -> Result<(), Denied> {
    match state {
        MfaState::Enrolled => Ok(()),
        MfaState::NotEnrolled => Err(Forbidden::MfaRequired.into()),
        MfaState::Gone => Err(Invalid::UserDisabled.into()),
    }
}
