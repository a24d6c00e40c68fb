//! A small map of values looked up recently, each trusted for a fixed time. The gateway uses it
//! in front of lookups that are slow on Pulsar (admin REST) and asked on every Kafka produce or
//! fetch: partition counts, log starts, watermarks. `get_or_stale` also hands out an expired
//! value, once per time-to-live, for a caller that refreshes it in the background: a lookup
//! that stalls while Pulsar is unreachable then holds up nobody.

use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Entries kept before expired ones are dropped.
const SWEEP_AT: usize = 10_000;

pub struct Recent<V> {
    ttl: Duration,
    entries: DashMap<String, (Instant, V)>,
}

impl<V: Clone> Recent<V> {
    pub fn new(ttl: Duration) -> Self {
        Recent {
            ttl,
            entries: DashMap::new(),
        }
    }

    /// The value, if it was put less than the time-to-live ago.
    pub fn get(&self, key: &str) -> Option<V> {
        self.entries
            .get(key)
            .filter(|e| e.0.elapsed() < self.ttl)
            .map(|e| e.1.clone())
    }

    /// The value and whether it expired. An expired one is handed out with `true` once, to the
    /// caller that should refresh it; until that refresh lands (or for another time-to-live if
    /// it fails), everyone else gets it as if fresh.
    pub fn get_or_stale(&self, key: &str) -> Option<(V, bool)> {
        let mut entry = self.entries.get_mut(key)?;
        if entry.0.elapsed() < self.ttl {
            return Some((entry.1.clone(), false));
        }
        entry.0 = Instant::now();
        Some((entry.1.clone(), true))
    }

    pub fn put(&self, key: String, value: V) {
        if self.entries.len() >= SWEEP_AT {
            self.entries.retain(|_, e| e.0.elapsed() < self.ttl);
        }
        self.entries.insert(key, (Instant::now(), value));
    }

    /// Changes a value that is still fresh, keeping the time it was put: what a caller learned
    /// on the way (a watermark that grew) is kept without extending the trust in the rest.
    pub fn update_fresh(&self, key: &str, update: impl FnOnce(&mut V)) {
        if let Some(mut entry) = self.entries.get_mut(key) {
            if entry.0.elapsed() < self.ttl {
                update(&mut entry.1);
            }
        }
    }

    /// Drops the entries whose key `forget` accepts.
    pub fn forget(&self, forget: impl Fn(&str) -> bool) {
        self.entries.retain(|k, _| !forget(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire_and_can_be_forgotten() {
        let recent = Recent::new(Duration::from_millis(50));
        recent.put("a".into(), 1);
        recent.put("b".into(), 2);
        assert_eq!(recent.get("a"), Some(1));
        recent.forget(|k| k == "a");
        assert_eq!(recent.get("a"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(recent.get("b"), None);
    }

    #[test]
    fn an_expired_value_is_handed_out_for_one_refresh_at_a_time() {
        let recent = Recent::new(Duration::from_millis(50));
        assert_eq!(recent.get_or_stale("a"), None);
        recent.put("a".into(), 1);
        assert_eq!(recent.get_or_stale("a"), Some((1, false)));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            recent.get_or_stale("a"),
            Some((1, true)),
            "expired: refresh it"
        );
        assert_eq!(
            recent.get_or_stale("a"),
            Some((1, false)),
            "one refresher at a time"
        );
        recent.put("a".into(), 2);
        assert_eq!(recent.get_or_stale("a"), Some((2, false)));
    }

    #[test]
    fn an_update_changes_only_a_fresh_value_and_keeps_its_age() {
        let recent = Recent::new(Duration::from_millis(50));
        recent.update_fresh("a", |v| *v = 5);
        assert_eq!(recent.get("a"), None, "nothing to update");
        recent.put("a".into(), 1);
        std::thread::sleep(Duration::from_millis(30));
        recent.update_fresh("a", |v| *v = 2);
        assert_eq!(recent.get("a"), Some(2));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(recent.get("a"), None, "expired as put, not as updated");
        recent.update_fresh("a", |v| *v = 3);
        assert_eq!(
            recent.get_or_stale("a"),
            Some((2, true)),
            "an expired one stays"
        );
    }

    #[test]
    fn expired_entries_are_swept_when_the_map_is_full() {
        let recent = Recent::new(Duration::ZERO);
        for i in 0..SWEEP_AT + 1 {
            recent.put(i.to_string(), i);
        }
        assert!(recent.entries.len() <= 2);
    }
}
