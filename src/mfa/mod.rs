//! The MFA gate: a user passes an `mfa` route only when Cognito says they have enrolled TOTP.
//! Checked here rather than at the pool, so an administrator's MFA reset takes effect at once.
//!
//! Answers are cached per user: "enrolled" for `ttl`, "not enrolled" and "gone" briefly at first
//! and longer each time the same user is found not enrolled again (doubling up to `ttl`), so a
//! user who has just enrolled is let in soon while one who keeps asking cannot keep Cognito busy.
//! One lookup per user is in flight however many requests arrive, and the whole process makes at
//! most `lookups_per_second` lookups: a few hundred self-registered accounts cannot spend the
//! account's Cognito quota, which the operator's own admin calls share. Errors are not cached:
//! the requests that waited on a failed lookup get its error, and the next one looks up again.
//!
//! The caches are quick_cache (the crate of the token cache), with expiry ours on tokio's clock:
//! a known answer is read without awaiting anything, and tests run the TTLs on a paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument as _;

use quick_cache::sync::Cache;
use tokio::time::Instant;
use uuid::Uuid;

use crate::authz::error::{Denied, Forbidden, Invalid, Unavailable};
use crate::clock::unix_now;
use crate::cognito::{CognitoError, MfaFactors, MfaSource, MfaState, User};
use crate::revocation::{Entry, Revocations};
use crate::telemetry::metrics::Metrics;
use crate::verify::claims::{Claims, Identity};

/// The scope `GetUser` needs.
pub const ADMIN_SCOPE: &str = "aws.cognito.signin.user.admin";

/// How long the gate remembers that a user was found not enrolled (for the growing negative cache
/// and for noticing an enrolment) after their last lookup.
const HISTORY_IDLE: Duration = Duration::from_secs(3600);

/// MFA gate settings.
#[derive(Debug, Clone)]
pub struct MfaSettings {
    /// When false every `mfa` route is treated as `authenticated` (development only). Defaults to true.
    pub enforce: bool,
    /// How long "enrolled" is cached, and the longest "not enrolled" is. Defaults to 60 s.
    pub ttl: Duration,
    /// How long "not enrolled" (and "disabled") is cached the first time. Defaults to 2 s.
    pub negative_ttl: Duration,
    /// How many users are cached at most. Defaults to 100,000.
    pub capacity: u64,
    /// Cognito lookups per second for the whole process; over it, 503. Defaults to 50.
    pub lookups_per_second: u32,
    /// When a user is seen going from not enrolled to enrolled, revoke their sessions that began
    /// before (so a password-only session cannot ride on the enrolment). Defaults to false.
    pub revoke_sessions_on_enrolment: bool,
}

/// A lookup's outcome and until when it is good: an answer for its TTL; a failure only for the
/// requests that waited on that lookup (it is stored already expired, so the next request looks
/// up again).
#[derive(Debug, Clone, Copy)]
struct Cached {
    outcome: Result<MfaState, NoAnswer>,
    until: Instant,
}

/// What the gate remembers of a user found not enrolled.
#[derive(Debug, Clone, Copy)]
struct NotEnrolled {
    /// Lookups in a row that found them not enrolled.
    strikes: u32,
    /// Unix time of the last of those lookups: a session that began by then began before enrolment.
    last_seen: u64,
    /// Forgotten after this (`HISTORY_IDLE` after the last lookup).
    until: Instant,
}

/// Why a lookup gives no answer to cache.
#[derive(Debug, Clone, Copy)]
enum NoAnswer {
    Cognito(CognitoError),
    /// The username names another user now: nothing is cached for the token's `sub`.
    Replaced,
    /// The process-wide lookup budget is spent.
    Budget,
    /// The enrolment was seen, and the sessions before it could not be revoked.
    RevocationFailed,
    /// The enrolment was seen, and this token's session began before it.
    SessionRevoked,
}

/// Requires TOTP enrolment of users on `mfa` routes.
#[derive(Clone)]
pub struct MfaGate {
    source: Arc<dyn MfaSource>,
    cache: Arc<Cache<Uuid, Cached>>,
    history: Arc<Cache<Uuid, NotEnrolled>>,
    budget: Arc<Budget>,
    settings: Arc<MfaSettings>,
    /// Where the sessions before an enrolment are revoked, with how long such an entry lives.
    revocations: Option<(Revocations, Duration)>,
    metrics: Metrics,
    /// The factors the source counts, named in the 403 and the lookup metrics.
    factors: MfaFactors,
}

crate::opaque_debug!(MfaGate);

impl MfaGate {
    /// A gate asking `source`, with empty caches.
    pub fn new(source: Arc<dyn MfaSource>, settings: MfaSettings, metrics: Metrics) -> MfaGate {
        let capacity = usize::try_from(settings.capacity).unwrap_or(usize::MAX).max(1);
        let (cache, history) = (Arc::new(Cache::new(capacity)), Arc::new(Cache::new(capacity)));
        metrics.set_mfa_enforced(settings.enforce);
        MfaGate {
            source,
            cache,
            history,
            budget: Arc::new(Budget::per_second(settings.lookups_per_second)),
            settings: Arc::new(settings),
            revocations: None,
            metrics,
            factors: MfaFactors::default(),
        }
    }

    /// Names the factors its source counts (TOTP alone by default) in its refusals and metrics.
    pub fn expecting(mut self, factors: MfaFactors) -> MfaGate {
        self.factors = factors;
        self
    }

    /// Where to revoke a user's earlier sessions when they are seen enrolling (with
    /// `revoke_sessions_on_enrolment`); entries live `refresh_token_lifetime`.
    pub fn revoking_through(mut self, revocations: Revocations, refresh_token_lifetime: Duration) -> MfaGate {
        self.revocations = Some((revocations, refresh_token_lifetime));
        self
    }

    /// False when `--enforce-mfa=false` lets every `mfa` route through (development only).
    pub fn enforced(&self) -> bool {
        self.settings.enforce
    }

    /// Passes users who have enrolled TOTP. `token` is the caller's access token (for `GetUser`).
    pub async fn require(&self, claims: &Claims, token: &str) -> Result<(), Denied> {
        if !self.settings.enforce {
            tracing::debug!("mfa not enforced (--enforce-mfa=false)");
            return Ok(());
        }
        let Identity::User { sub, username } = &claims.identity else {
            return Err(Forbidden::MachineTokenOnRoute.into());
        };
        if self.source.needs_admin_scope() && !claims.has_scope(ADMIN_SCOPE) {
            return Err(Forbidden::MfaScopeMissing.into());
        }
        // Warm path: a known answer, read without awaiting anything.
        let now = Instant::now();
        match self.cache.get(sub) {
            Some(cached) if now < cached.until => return answer(cached.outcome, self.factors),
            Some(_) => {
                self.cache.remove(sub);
            }
            None => {}
        }
        // One lookup per user: the first request holds the guard, the others wait for what it
        // stores (an answer, or the failure they then share).
        match self.cache.get_value_or_guard_async(sub).await {
            Ok(cached) => answer(cached.outcome, self.factors),
            Err(guard) => {
                let outcome = self.look_up(User { username, sub, access_token: token }, claims).await;
                let until = match outcome {
                    Ok(MfaState::Enrolled) => Instant::now() + self.settings.ttl,
                    Ok(_) => Instant::now() + self.negative_ttl(sub),
                    Err(_) => now,
                };
                let _ = guard.insert(Cached { outcome, until });
                answer(outcome, self.factors)
            }
        }
    }

    /// How long "not enrolled" is cached for a user found so `strikes` times in a row.
    fn negative_ttl(&self, sub: &Uuid) -> Duration {
        let strikes = self.history.get(sub).map_or(0, |h| h.strikes);
        let ttl = self.settings.negative_ttl.saturating_mul(1 << strikes.min(16)).min(self.settings.ttl);
        ttl.max(self.settings.negative_ttl)
    }

    /// One lookup at Cognito, within the budget; decides how long its answer is cached.
    async fn look_up(&self, user: User<'_>, claims: &Claims) -> Result<MfaState, NoAnswer> {
        if !self.budget.take(Instant::now()) {
            self.metrics.mfa_lookup_refused();
            return Err(NoAnswer::Budget);
        }
        let started = std::time::Instant::now();
        let span = crate::out_span!("mfa lookup", factors = self.factors.label());
        let answer = self.source.mfa_state(user).instrument(span).await;
        self.metrics.mfa_lookup(&answer, started.elapsed(), self.factors);
        let sub = *user.sub;
        match answer.map_err(NoAnswer::Cognito)? {
            MfaState::Replaced => {
                tracing::warn!(%sub, "the token's username now names another user; refused");
                Err(NoAnswer::Replaced)
            }
            MfaState::Enrolled => {
                if let Some((_, seen)) = self.history.remove(&sub).filter(|(_, h)| Instant::now() < h.until) {
                    self.revoke_sessions_before(sub, seen.last_seen, claims).await?;
                }
                Ok(MfaState::Enrolled)
            }
            state => {
                let now = Instant::now();
                let strikes =
                    self.history.get(&sub).filter(|h| now < h.until).map_or(0, |h| h.strikes.saturating_add(1));
                self.history.insert(sub, NotEnrolled { strikes, last_seen: unix_now(), until: now + HISTORY_IDLE });
                Ok(state)
            }
        }
    }

    /// A user found not enrolled at `before` is enrolled now: with `revoke_sessions_on_enrolment`,
    /// every session of theirs that began by then is revoked (this one too, if it did).
    async fn revoke_sessions_before(&self, sub: Uuid, before: u64, claims: &Claims) -> Result<(), NoAnswer> {
        let Some((revocations, lifetime)) =
            self.revocations.as_ref().filter(|_| self.settings.revoke_sessions_on_enrolment)
        else {
            return Ok(());
        };
        let entry = Entry::User { sub, before, until: before.saturating_add(lifetime.as_secs()) };
        if let Err(error) = revocations.revoke(vec![entry]).await {
            tracing::warn!(%error, "could not revoke the sessions before an mfa enrolment");
            // Seen again at the next lookup: the enrolment is not forgotten.
            self.history
                .insert(sub, NotEnrolled { strikes: 0, last_seen: before, until: Instant::now() + HISTORY_IDLE });
            return Err(NoAnswer::RevocationFailed);
        }
        tracing::info!(%sub, "user enrolled mfa; sessions that began before were revoked");
        if claims.auth_time.or(claims.iat).unwrap_or(0) <= before {
            return Err(NoAnswer::SessionRevoked);
        }
        Ok(())
    }

    /// Drops a user's cached answer (after an admin action on them).
    pub async fn forget(&self, sub: &Uuid) {
        self.cache.remove(sub);
    }
}

fn answer(outcome: Result<MfaState, NoAnswer>, factors: MfaFactors) -> Result<(), Denied> {
    match outcome {
        Ok(MfaState::Enrolled) => Ok(()),
        Ok(MfaState::NotEnrolled) => Err(Forbidden::MfaRequired(factors).into()),
        Ok(MfaState::Gone) => Err(Invalid::UserDisabled.into()),
        Ok(MfaState::Replaced) | Err(NoAnswer::Replaced) => Err(Invalid::UserReplaced.into()),
        Err(NoAnswer::Cognito(CognitoError::Throttled)) => Err(Unavailable::CognitoThrottled.into()),
        Err(NoAnswer::Cognito(_) | NoAnswer::RevocationFailed) => Err(Unavailable::Cognito.into()),
        Err(NoAnswer::Budget) => Err(Unavailable::MfaLookupBudget.into()),
        Err(NoAnswer::SessionRevoked) => Err(Invalid::Revoked.into()),
    }
}

/// A token bucket: `per_second` lookups each second, up to one second's worth at once. Time is
/// tokio's, so tests run it on a paused clock.
struct Budget {
    per_second: f64,
    /// Tokens left, and when they were counted.
    state: Mutex<(f64, Option<Instant>)>,
}

impl Budget {
    fn per_second(per_second: u32) -> Budget {
        Budget { per_second: f64::from(per_second), state: Mutex::new((f64::from(per_second), None)) }
    }

    fn take(&self, now: Instant) -> bool {
        let mut state = self.state.lock().expect("budget lock");
        let (tokens, last) = *state;
        let refilled = last.map_or(tokens, |last| {
            (tokens + now.saturating_duration_since(last).as_secs_f64() * self.per_second).min(self.per_second)
        });
        let (left, ok) = if refilled >= 1.0 { (refilled - 1.0, true) } else { (refilled, false) };
        *state = (left, Some(now));
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_admits_its_rate_and_refills_with_time() {
        let budget = Budget::per_second(3);
        let now = Instant::now();
        assert!((0..3).all(|_| budget.take(now)));
        assert!(!budget.take(now), "the fourth in the same instant is refused");
        tokio::time::advance(Duration::from_millis(340)).await;
        assert!(budget.take(Instant::now()), "a third of a second buys one more");
        assert!(!budget.take(Instant::now()));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!((0..3).all(|_| budget.take(Instant::now())), "refilled, but never past one second's worth");
        assert!(!budget.take(Instant::now()));
    }
}
