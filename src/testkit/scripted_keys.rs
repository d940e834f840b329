//! A key source that answers from a script instead of the network: serve a JWK Set, fail, hang,
//! answer slowly, or rotate to another set. One fake for the tests, benches and fuzz targets, so
//! none builds its own; with tokio's paused clock a test of cooldowns and deadlines needs no sleep.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::dev::signing_key::SigningKey;
use crate::keys::key_store::{FetchError, KeySource};

/// What the next fetches get.
#[derive(Debug, Clone)]
pub enum Answer {
    /// This JWK Set document.
    Serve(Vec<u8>),
    /// This failure.
    Fail(FetchError),
    /// No answer, ever (a peer that took the connection and went silent).
    Hang,
    /// This document, after this long.
    Slow(Duration, Vec<u8>),
}

/// A scripted [`KeySource`]: every fetch gets the current answer; [`ScriptedKeys::answer`] changes it.
#[derive(Debug)]
pub struct ScriptedKeys {
    answer: Mutex<Answer>,
    fetches: AtomicU64,
}

impl ScriptedKeys {
    /// Serves the public halves of `keys`.
    pub fn serving(keys: &[&SigningKey]) -> ScriptedKeys {
        ScriptedKeys { answer: Mutex::new(Answer::Serve(jwks(keys))), fetches: AtomicU64::new(0) }
    }

    /// From now on every fetch gets `answer`.
    pub fn answer(&self, answer: Answer) {
        *self.answer.lock().expect("script lock") = answer;
    }

    /// From now on every fetch gets the public halves of `keys` (a rotation).
    pub fn rotate(&self, keys: &[&SigningKey]) {
        self.answer(Answer::Serve(jwks(keys)));
    }

    /// How many fetches were asked for.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

impl KeySource for ScriptedKeys {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<u8>, FetchError>> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let answer = self.answer.lock().expect("script lock").clone();
        Box::pin(async move {
            match answer {
                Answer::Serve(document) => Ok(document),
                Answer::Fail(error) => Err(error),
                Answer::Hang => std::future::pending().await,
                Answer::Slow(delay, document) => {
                    tokio::time::sleep(delay).await;
                    Ok(document)
                }
            }
        })
    }
}

/// The JWK Set document of `keys`' public halves.
pub fn jwks(keys: &[&SigningKey]) -> Vec<u8> {
    let keys: Vec<_> = keys.iter().map(|k| k.jwk()).collect();
    serde_json::json!({ "keys": keys }).to_string().into_bytes()
}
