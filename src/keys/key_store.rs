//! The signing keys in force, and how they are fetched: at start-up (retried with backoff), in the
//! background (hourly by default), and on demand when a token names a `kid` we do not know.
//!
//! On-demand fetches follow AWS's `aws-jwt-verify`: one fetch at a time (everyone waiting shares
//! it), a cooldown after a fetch that still lacks the wanted `kid` (so a flood of made-up `kid`s
//! costs Cognito one request per cooldown), and the last good keys kept when a fetch fails.
//! Fetches run in their own task, so a caller that stops waiting does not cancel one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::authz::error::{Denied, Invalid, Unavailable};
use crate::keys::key_set::{Algorithm, Key, KeySet};
use crate::keys::source::{FetchError, KeySource};

/// Timings of the key store. Defaults suit Envoy with a 2 s ext_authz timeout.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// How long unknown `kid`s are refused without fetching after a fetch that lacked one. Defaults to 10 s.
    pub cooldown: Duration,
    /// How long a request waits for an on-demand fetch before answering 503. Defaults to 1 s.
    pub fetch_wait: Duration,
    /// How often keys are refreshed in the background. Defaults to 1 h.
    pub refresh_every: Duration,
    /// After a failed fetch, requests answer 503 without fetching for this long. Defaults to 1 s.
    pub failure_backoff: Duration,
}

/// The keys in force, shared by every request.
#[derive(Clone)]
pub struct KeyStore {
    inner: Arc<Inner>,
}

crate::opaque_debug!(KeyStore);

struct Inner {
    source: Arc<dyn KeySource>,
    settings: KeySettings,
    /// An OIDC issuer's algorithms (keys usable for none of them are skipped); `None` for Cognito,
    /// whose keys are RS256 with `use` sig.
    algorithms: Option<Vec<Algorithm>>,
    keys: RwLock<Arc<KeySet>>,
    state: Mutex<FetchState>,
    /// Counts finished fetches; waiters watch it.
    finished: watch::Sender<u64>,
    loaded: watch::Sender<bool>,
    fetches: AtomicU64,
    fetch_failures: AtomicU64,
    /// Unix time of the last successful fetch (0 before the first).
    last_loaded: AtomicU64,
}

#[derive(Default)]
struct FetchState {
    in_flight: bool,
    last_failed: bool,
    unknown_until: Option<Instant>,
    failed_until: Option<Instant>,
}

impl KeyStore {
    /// An empty store fetching from `source`; nothing is fetched until asked.
    pub fn new(source: Arc<dyn KeySource>, settings: KeySettings) -> KeyStore {
        KeyStore::with(source, settings, None)
    }

    /// A store keeping the keys usable for `algorithms` (an OIDC issuer's list).
    pub fn for_algorithms(source: Arc<dyn KeySource>, settings: KeySettings, algorithms: Vec<Algorithm>) -> KeyStore {
        KeyStore::with(source, settings, Some(algorithms))
    }

    fn with(source: Arc<dyn KeySource>, settings: KeySettings, algorithms: Option<Vec<Algorithm>>) -> KeyStore {
        KeyStore {
            inner: Arc::new(Inner {
                source,
                settings,
                algorithms,
                keys: RwLock::new(Arc::new(KeySet::default())),
                state: Mutex::new(FetchState::default()),
                finished: watch::channel(0).0,
                loaded: watch::channel(false).0,
                fetches: AtomicU64::new(0),
                fetch_failures: AtomicU64::new(0),
                last_loaded: AtomicU64::new(0),
            }),
        }
    }

    /// The key for `kid`, fetching the key set once if it is unknown and no cooldown applies.
    pub async fn key(&self, kid: &str) -> Result<Arc<Key>, Denied> {
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        tracing::debug!(kid = crate::telemetry::audit::loggable(kid), "token names a key not in the current set");
        let mut finished = {
            let mut state = self.inner.state.lock().expect("key state lock");
            if !state.in_flight {
                let now = Instant::now();
                if state.failed_until.is_some_and(|t| now < t) {
                    return Err(self.fetch_failed());
                }
                if state.unknown_until.is_some_and(|t| now < t) {
                    return Err(Invalid::UnknownKey.into());
                }
                state.in_flight = true;
                self.spawn_fetch(Some(kid.to_owned()));
            }
            // Subscribed under the lock: the fetch cannot finish unseen.
            self.inner.finished.subscribe()
        };
        if tokio::time::timeout(self.inner.settings.fetch_wait, finished.changed()).await.is_err() {
            return Err(Unavailable::KeyFetchTimeout.into());
        }
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        if self.inner.state.lock().expect("key state lock").last_failed {
            return Err(self.fetch_failed());
        }
        Err(Invalid::UnknownKey.into())
    }

    /// Fetches the key set now (joining a fetch under way) and waits for it. True when it loaded.
    pub async fn refresh(&self) -> bool {
        let mut finished = {
            let mut state = self.inner.state.lock().expect("key state lock");
            if !state.in_flight {
                state.in_flight = true;
                self.spawn_fetch(None);
            }
            self.inner.finished.subscribe()
        };
        let _ = finished.changed().await;
        !self.inner.state.lock().expect("key state lock").last_failed
    }

    /// Loads the keys until it works, then refreshes them on schedule. Runs until the process ends.
    pub async fn run_refresh(self) {
        let mut failures = 0u32;
        loop {
            let delay = if self.refresh().await {
                failures = 0;
                self.inner.settings.refresh_every
            } else {
                failures = failures.saturating_add(1);
                retry_in(failures, self.inner.settings.refresh_every)
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// Becomes true once a key set has been loaded; it never goes back.
    pub fn loaded(&self) -> watch::Receiver<bool> {
        self.inner.loaded.subscribe()
    }

    /// How many fetches have been started.
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// How many fetches have failed (transport, status, size or document).
    pub fn fetch_failure_count(&self) -> u64 {
        self.inner.fetch_failures.load(Ordering::Relaxed)
    }

    /// Unix time of the last successful fetch (0 before the first).
    pub fn last_loaded(&self) -> u64 {
        self.inner.last_loaded.load(Ordering::Relaxed)
    }

    /// How many keys are in force.
    pub fn key_count(&self) -> usize {
        self.inner.keys.read().expect("keys lock").len()
    }

    /// True while `key` is the key in force for its `kid` (the same instance: refreshes keep
    /// unchanged keys, and a changed or removed key is a different one or none).
    pub fn is_current(&self, key: &Arc<Key>) -> bool {
        self.inner.keys.read().expect("keys lock").get(key.kid()).is_some_and(|k| Arc::ptr_eq(k, key))
    }

    fn lookup(&self, kid: &str) -> Option<Arc<Key>> {
        self.inner.keys.read().expect("keys lock").get(kid).cloned()
    }

    fn fetch_failed(&self) -> Denied {
        if *self.inner.loaded.borrow() { Unavailable::KeyFetchFailed.into() } else { Unavailable::NoKeys.into() }
    }

    fn spawn_fetch(&self, wanted: Option<String>) {
        let inner = self.inner.clone();
        inner.fetches.fetch_add(1, Ordering::Relaxed);
        // The fetch runs apart (its waiters share it, and it outlives a caller who gives up), but
        // in the trace it is the child of the decision that asked for it.
        let asked_by = if crate::telemetry::traces::in_traced_decision() {
            tracing::Span::current()
        } else {
            tracing::Span::none()
        };
        let fetch = async move {
            let result = match inner.source.fetch().await {
                Ok(bytes) => match &inner.algorithms {
                    None => KeySet::from_jwks(&bytes),
                    Some(algs) => KeySet::from_jwks_for(&bytes, algs),
                }
                .map_err(FetchError::from),
                Err(e) => Err(e),
            };
            let now = Instant::now();
            let mut state = inner.state.lock().expect("key state lock");
            match result {
                Ok(mut set) => {
                    set.keep_unchanged(&inner.keys.read().expect("keys lock"));
                    let lacks_wanted = wanted.as_deref().is_some_and(|kid| set.get(kid).is_none());
                    tracing::debug!(keys = set.len(), "signing keys loaded");
                    *inner.keys.write().expect("keys lock") = Arc::new(set);
                    inner.loaded.send_replace(true);
                    inner.last_loaded.store(crate::clock::unix_now(), Ordering::Relaxed);
                    state.last_failed = false;
                    state.failed_until = None;
                    if lacks_wanted {
                        state.unknown_until = Some(now + inner.settings.cooldown);
                    }
                }
                Err(error) => {
                    inner.fetch_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "fetching signing keys failed; keeping the last good keys");
                    state.last_failed = true;
                    state.failed_until = Some(now + inner.settings.failure_backoff);
                }
            }
            state.in_flight = false;
            drop(state);
            inner.finished.send_modify(|n| *n += 1);
        };
        tokio::spawn(tracing::Instrument::instrument(fetch, asked_by));
    }
}

/// Backoff after `failures` failed loads in a row: 250 ms doubling, at most 30 s (and never longer
/// than the refresh interval).
pub fn retry_in(failures: u32, refresh_every: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(10);
    Duration::from_millis(250u64 << exp).min(Duration::from_secs(30)).min(refresh_every)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::signing_key::SigningKey;
    use crate::testkit::scripted_keys::{Answer, ScriptedKeys};

    fn settings() -> KeySettings {
        crate::config::Settings::default().key_settings().expect("the defaults")
    }

    fn key(kid: &str) -> SigningKey {
        SigningKey::generate(kid).expect("rsa key")
    }

    async fn loaded(source: &Arc<ScriptedKeys>) -> KeyStore {
        let store = KeyStore::new(source.clone(), settings());
        assert!(store.refresh().await, "the first load");
        store
    }

    fn is_unknown_key(result: Result<Arc<Key>, Denied>) -> bool {
        matches!(result, Err(Denied::Unauthenticated(Invalid::UnknownKey)))
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_kid_costs_one_fetch_per_cooldown_and_a_rotation_is_seen_after_it() {
        let source = Arc::new(ScriptedKeys::serving(&[&key("a")]));
        let store = loaded(&source).await;
        assert!(store.key("a").await.is_ok(), "positive control: a known kid");
        assert!(is_unknown_key(store.key("b").await));
        assert_eq!(source.fetches(), 2, "the unknown kid fetched once");
        source.rotate(&[&key("a"), &key("b")]);
        for _ in 0..100 {
            assert!(is_unknown_key(store.key("b").await), "refused without fetching during the cooldown");
        }
        assert_eq!(source.fetches(), 2);
        tokio::time::advance(settings().cooldown - Duration::from_millis(1)).await;
        assert!(is_unknown_key(store.key("b").await), "still within the cooldown");
        assert_eq!(source.fetches(), 2);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(store.key("b").await.is_ok(), "after the cooldown the rotated key is fetched");
        assert_eq!(source.fetches(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_fetch_answers_503_at_the_wait_deadline_and_waiters_share_it() {
        let source = Arc::new(ScriptedKeys::serving(&[&key("a")]));
        let store = loaded(&source).await;
        source.answer(Answer::Hang);
        let started = Instant::now();
        let waiters: Vec<_> = (0..20)
            .map(|_| {
                tokio::spawn({
                    let store = store.clone();
                    async move { store.key("b").await }
                })
            })
            .collect();
        for waiter in waiters {
            let answer = waiter.await.unwrap();
            assert!(matches!(answer, Err(Denied::Unavailable(Unavailable::KeyFetchTimeout))), "{:?}", answer.err());
        }
        assert_eq!(started.elapsed(), settings().fetch_wait, "answered at the deadline, on the paused clock");
        assert_eq!(source.fetches(), 2, "twenty waiters, one fetch");
        assert!(store.key("a").await.is_ok(), "known keys keep working while a fetch hangs");
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_failed_fetch_unknown_kids_get_503_without_fetching_for_the_backoff() {
        let source = Arc::new(ScriptedKeys::serving(&[&key("a")]));
        let store = loaded(&source).await;
        source.answer(Answer::Fail(FetchError::Status(500)));
        let failed = |r: Result<Arc<Key>, Denied>| matches!(r, Err(Denied::Unavailable(Unavailable::KeyFetchFailed)));
        assert!(failed(store.key("b").await));
        assert_eq!(source.fetches(), 2);
        assert!(failed(store.key("c").await), "within the backoff: 503 at once");
        assert_eq!(source.fetches(), 2, "and no fetch");
        assert!(store.key("a").await.is_ok(), "the last good keys are kept");
        tokio::time::advance(settings().failure_backoff).await;
        source.rotate(&[&key("a"), &key("c")]);
        assert!(store.key("c").await.is_ok(), "after the backoff a fetch is tried again");
        assert_eq!(source.fetches(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_refreshed_on_schedule_and_a_failing_start_is_retried_with_backoff() {
        let source = Arc::new(ScriptedKeys::serving(&[&key("a")]));
        source.answer(Answer::Fail(FetchError::Transport));
        let store = KeyStore::new(source.clone(), settings());
        let mut loaded = store.loaded();
        tokio::spawn(store.clone().run_refresh());
        // Failures at 0, then 250 ms, 500 ms, 1 s later: four fetches by 1.75 s, none loaded.
        tokio::time::sleep(Duration::from_millis(1750) + Duration::from_millis(1)).await;
        assert_eq!(source.fetches(), 4);
        assert!(!*loaded.borrow(), "not loaded while every fetch fails");
        source.rotate(&[&key("a")]);
        // The next try is 2 s after the fourth.
        loaded.changed().await.unwrap();
        assert_eq!(source.fetches(), 5);
        assert!(store.key("a").await.is_ok());
        // Then once per refresh interval.
        tokio::time::sleep(settings().refresh_every - Duration::from_secs(1)).await;
        assert_eq!(source.fetches(), 5, "nothing before the interval");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(source.fetches(), 6, "one refresh at the interval");
    }

    #[test]
    fn retry_backs_off_to_thirty_seconds() {
        let hour = Duration::from_secs(3600);
        assert_eq!(retry_in(1, hour), Duration::from_millis(250));
        assert_eq!(retry_in(2, hour), Duration::from_millis(500));
        assert_eq!(retry_in(50, hour), Duration::from_secs(30));
        assert_eq!(retry_in(50, Duration::from_secs(5)), Duration::from_secs(5));
    }
}
