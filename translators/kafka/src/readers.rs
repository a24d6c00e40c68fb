//! The fetch readers an instance keeps open between fetches (DESIGN.md §5, Fetch), across all
//! its Kafka connections: each (connection, partition) keeps the reader positioned at the offset
//! its client will fetch next, so sequential fetches stream without re-seeking. At most
//! `per_connection` readers per connection and `total` in all are kept; beyond either the least
//! recently used one (of that connection, or of the instance) is dropped, which closes its
//! backend subscription (a Pulsar reader's non-durable subscription goes with its consumer), and
//! a connection's readers are dropped when it closes.
//!
//! A reader in use by a fetch is taken out and put back afterwards, so it counts only while idle.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use gateway_core::Reader;

/// A reader and the offset the client is expected to fetch next from it.
pub struct CachedReader {
    pub reader: Box<dyn Reader>,
    pub next_offset: i64,
}

/// (connection, Kafka topic name, partition).
type Key = (u64, String, i32);

pub struct ReaderCache {
    per_connection: usize,
    total: usize,
    next_connection: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    readers: HashMap<Key, (u64, CachedReader)>,
    /// Every cached reader by its last use (a tick of `clock`), oldest first.
    by_use: BTreeMap<u64, Key>,
    /// Each connection's cached readers by last use.
    connections: HashMap<u64, BTreeMap<u64, (String, i32)>>,
    clock: u64,
}

impl ReaderCache {
    pub fn new(per_connection: usize, total: usize) -> ReaderCache {
        ReaderCache {
            per_connection: per_connection.max(1),
            total: total.max(1),
            next_connection: AtomicU64::new(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// An id for a new connection's readers.
    pub fn connection(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Cached readers, across all connections.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().readers.len()
    }

    /// Takes a connection's reader of a partition out of the cache.
    pub fn take(&self, connection: u64, topic: &str, partition: i32) -> Option<CachedReader> {
        let mut inner = self.lock();
        let key = (connection, topic.to_owned(), partition);
        let (tick, cached) = inner.readers.remove(&key)?;
        inner.forget(tick, connection);
        report(inner.readers.len());
        Some(cached)
    }

    /// Caches a connection's reader of a partition as the most recently used, dropping the
    /// least recently used ones beyond the caps.
    pub fn put(&self, connection: u64, topic: String, partition: i32, reader: CachedReader) {
        let mut evicted = Vec::new();
        {
            let mut inner = self.lock();
            inner.clock += 1;
            let tick = inner.clock;
            let key = (connection, topic, partition);
            if let Some((old, replaced)) = inner.readers.remove(&key) {
                inner.forget(old, connection);
                evicted.push(replaced);
            }
            inner.by_use.insert(tick, key.clone());
            inner
                .connections
                .entry(connection)
                .or_default()
                .insert(tick, (key.1.clone(), key.2));
            inner.readers.insert(key, (tick, reader));
            while inner.connections.get(&connection).map_or(0, BTreeMap::len) > self.per_connection
            {
                let oldest = inner.connections[&connection]
                    .first_key_value()
                    .map(|(tick, _)| *tick)
                    .expect("over the cap, so not empty");
                evicted.extend(inner.evict(oldest));
                metrics::counter!("kafka_fetch_readers_evicted_total", "cap" => "connection")
                    .increment(1);
            }
            while inner.readers.len() > self.total {
                let oldest = *inner.by_use.first_key_value().expect("not empty").0;
                evicted.extend(inner.evict(oldest));
                metrics::counter!("kafka_fetch_readers_evicted_total", "cap" => "instance")
                    .increment(1);
            }
            report(inner.readers.len());
        }
        // Dropped outside the lock: dropping a reader closes its subscription.
        drop(evicted);
    }

    /// Drops every reader of a connection (it closed).
    pub fn close_connection(&self, connection: u64) {
        let evicted: Vec<CachedReader> = {
            let mut inner = self.lock();
            let ticks: Vec<u64> = inner
                .connections
                .get(&connection)
                .map(|readers| readers.keys().copied().collect())
                .unwrap_or_default();
            let evicted = ticks.into_iter().filter_map(|t| inner.evict(t)).collect();
            inner.connections.remove(&connection);
            report(inner.readers.len());
            evicted
        };
        drop(evicted);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding it leaves the maps consistent (no await inside).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Removes the reader last used at `tick` from every index.
    fn evict(&mut self, tick: u64) -> Option<CachedReader> {
        let key = self.by_use.remove(&tick)?;
        if let Some(readers) = self.connections.get_mut(&key.0) {
            readers.remove(&tick);
        }
        self.readers.remove(&key).map(|(_, cached)| cached)
    }

    /// Removes a reader's use from the indexes (the reader itself is already out).
    fn forget(&mut self, tick: u64, connection: u64) {
        self.by_use.remove(&tick);
        if let Some(readers) = self.connections.get_mut(&connection) {
            readers.remove(&tick);
            if readers.is_empty() {
                self.connections.remove(&connection);
            }
        }
    }
}

fn report(cached: usize) {
    metrics::gauge!("kafka_fetch_reader_cache_size").set(cached as f64);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use gateway_core::{EntryId, Result, StoredEntry};

    use super::*;

    /// A reader that counts itself while open, as a backend subscription would.
    struct Counted(Arc<AtomicUsize>);

    impl Counted {
        fn open(open: &Arc<AtomicUsize>) -> CachedReader {
            open.fetch_add(1, Ordering::SeqCst);
            CachedReader {
                reader: Box::new(Counted(open.clone())),
                next_offset: 0,
            }
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl Reader for Counted {
        async fn read(&mut self, _: usize, _: usize, _: Duration) -> Result<Vec<StoredEntry>> {
            Ok(Vec::new())
        }
        fn position(&self) -> EntryId {
            EntryId::EARLIEST
        }
        async fn seek(&mut self, _: EntryId) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_instance_cap_closes_the_least_recently_used_reader_of_any_connection() {
        let open = Arc::new(AtomicUsize::new(0));
        let cache = ReaderCache::new(256, 3);
        let (a, b) = (cache.connection(), cache.connection());
        cache.put(a, "t".into(), 0, Counted::open(&open));
        cache.put(b, "t".into(), 0, Counted::open(&open));
        cache.put(a, "t".into(), 1, Counted::open(&open));
        // a's partition 0 is used again: b's partition 0 is now the oldest.
        let reused = cache.take(a, "t", 0).unwrap();
        cache.put(a, "t".into(), 0, reused);
        cache.put(b, "t".into(), 1, Counted::open(&open));
        assert_eq!(cache.len(), 3);
        assert_eq!(
            open.load(Ordering::SeqCst),
            3,
            "the evicted reader was closed"
        );
        assert!(
            cache.take(b, "t", 0).is_none(),
            "the least recently used went"
        );
        assert!(cache.take(a, "t", 0).is_some());
        assert!(cache.take(a, "t", 1).is_some());
    }

    #[test]
    fn the_connection_cap_closes_that_connections_oldest_reader() {
        let open = Arc::new(AtomicUsize::new(0));
        let cache = ReaderCache::new(2, 100);
        let (a, b) = (cache.connection(), cache.connection());
        cache.put(b, "t".into(), 0, Counted::open(&open));
        for p in 0..3 {
            cache.put(a, "t".into(), p, Counted::open(&open));
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(open.load(Ordering::SeqCst), 3);
        assert!(cache.take(a, "t", 0).is_none());
        assert!(
            cache.take(b, "t", 0).is_some(),
            "other connections keep theirs"
        );
    }

    #[test]
    fn a_closed_connection_closes_its_readers() {
        let open = Arc::new(AtomicUsize::new(0));
        let cache = ReaderCache::new(10, 100);
        let (a, b) = (cache.connection(), cache.connection());
        for p in 0..4 {
            cache.put(a, "t".into(), p, Counted::open(&open));
        }
        cache.put(b, "t".into(), 0, Counted::open(&open));
        cache.close_connection(a);
        assert_eq!(cache.len(), 1);
        assert_eq!(open.load(Ordering::SeqCst), 1);
    }
}
