//! A small time-bounded cache of configuration (creditors, payment types, methods), which
//! every request reads and operators rarely change, of what never changes (whose a cart
//! is), and of the transactions this service started, until their provider's answer.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most values a cache holds: past it, expired values go, and if none has, all do.
const MAX_ENTRIES: usize = 10_000;
/// How many puts apart expired values are dropped, so that an expired value (a payer's
/// details, say) does not stay in memory until the cache fills.
const SWEEP_EVERY: usize = 256;

/// Values kept for `ttl` after they were read or written. A zero `ttl` keeps nothing.
/// Its `Debug` shows how many values it holds, not the values (payers' details among
/// them).
pub(crate) struct Cached<K, V> {
    ttl: Duration,
    map: Mutex<HashMap<K, (V, Instant)>>,
    /// Values put so far: every [`SWEEP_EVERY`] puts, expired values are dropped.
    puts: std::sync::atomic::AtomicUsize,
}

impl<K, V> std::fmt::Debug for Cached<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.map.lock().unwrap_or_else(|e| e.into_inner()).len();
        f.debug_struct("Cached")
            .field("ttl", &self.ttl)
            .field("held", &held)
            .finish()
    }
}

impl<K: Eq + Hash, V: Clone> Cached<K, V> {
    pub(crate) fn new(ttl: Duration) -> Self {
        Cached {
            ttl,
            map: Mutex::new(HashMap::new()),
            puts: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    /// The value, taken out: the next `get` or `take` of `key` finds nothing.
    pub(crate) fn take(&self, key: &K) -> Option<V> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v)
    }

    pub(crate) fn put(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let puts = self
            .puts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(1);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES || puts.is_multiple_of(SWEEP_EVERY) {
            map.retain(|_, (_, at)| at.elapsed() < self.ttl);
            // Still full of live values: start again rather than grow without bound.
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (value, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire_and_zero_keeps_nothing() {
        let c = Cached::new(Duration::from_millis(30));
        c.put(1, "a");
        assert_eq!(c.get(&1), Some("a"));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get(&1), None);
        c.put(2, "b");
        assert_eq!(c.take(&2), Some("b"));
        assert_eq!(c.take(&2), None, "taken once");
        c.put(3, "c");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.take(&3), None, "an expired value is not handed out");
        let off = Cached::new(Duration::ZERO);
        off.put(1, "a");
        assert_eq!(off.get(&1), None);
    }

    #[test]
    fn expired_values_are_dropped_every_few_puts() {
        let c = Cached::new(Duration::from_millis(30));
        for k in 0..10 {
            c.put(k, k);
        }
        std::thread::sleep(Duration::from_millis(40));
        for k in 100..100 + SWEEP_EVERY - 11 {
            c.put(k, k);
        }
        assert_eq!(c.map.lock().unwrap().len(), SWEEP_EVERY - 1, "not yet");
        c.put(1000, 1000);
        assert_eq!(
            c.map.lock().unwrap().len(),
            SWEEP_EVERY - 10,
            "the ten expired values are gone at the sweep"
        );
    }

    #[test]
    fn debug_shows_how_many_values_not_the_values() {
        let c = Cached::new(Duration::from_secs(60));
        c.put(1, "alice@example.it");
        let shown = format!("{c:?}");
        assert!(shown.contains("held: 1"), "{shown}");
        assert!(!shown.contains("alice"), "{shown}");
    }

    #[test]
    fn a_full_cache_of_live_values_starts_again_instead_of_growing() {
        let c = Cached::new(Duration::from_secs(3600));
        for k in 0..MAX_ENTRIES {
            c.put(k, k);
        }
        assert_eq!(c.get(&0), Some(0));
        c.put(MAX_ENTRIES, MAX_ENTRIES);
        assert_eq!(c.get(&0), None);
        assert_eq!(c.get(&MAX_ENTRIES), Some(MAX_ENTRIES));
        assert_eq!(c.map.lock().unwrap().len(), 1);
    }
}
