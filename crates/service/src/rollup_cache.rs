//! Decoded matrix rollups of recent reads, kept per org and date range.
//!
//! Reading and decoding the rollup rows is most of a matrix request's cost
//! (thousands of rows for a 30-day view), while a dashboard asks the same
//! range again and again. Every write to an org's rollups appends an audit
//! event of that org in the same transaction (ingestion, re-mapping, rebuild),
//! so the org's last audit sequence number tells whether cached rows are
//! still current: one indexed read instead of the whole range. The check
//! reads the sequence before the rows, so rows cached under a sequence are
//! never older than it; several `serve` processes each keep their own cache
//! and all see the shared database's sequence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use store::OrgId;
use views::RollupRow;

/// Ranges kept at most; the least recently used goes first.
const CAPACITY: usize = 64;

/// One org's read range.
type Key = (OrgId, Option<NaiveDate>, Option<NaiveDate>);

/// Rows of one range with the count of distinct alerts each stands for.
#[derive(Debug)]
pub(crate) struct CachedRollups {
    /// Decoded rows.
    pub rows: Vec<RollupRow>,
    /// Alerts behind each row, by position.
    pub alerts: Vec<i64>,
    /// The org's exclusion windows at the same audit head.
    pub exclusions: Vec<store::ExclusionRecord>,
}

struct Entry {
    head: i64,
    rollups: Arc<CachedRollups>,
    used: u64,
}

/// The cache; cheap to share.
#[derive(Default)]
pub(crate) struct RollupCache {
    entries: Mutex<(u64, HashMap<Key, Entry>)>,
}

impl RollupCache {
    /// The rows cached for `key` when they were read at audit sequence
    /// `head`.
    pub fn get(&self, key: &Key, head: i64) -> Option<Arc<CachedRollups>> {
        let mut guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (clock, map) = &mut *guard;
        *clock += 1;
        let now = *clock;
        let entry = map.get_mut(key).filter(|e| e.head == head)?;
        entry.used = now;
        Some(entry.rollups.clone())
    }

    /// Keeps rows read at audit sequence `head`, evicting the least recently
    /// used range when full.
    pub fn put(&self, key: Key, head: i64, rollups: Arc<CachedRollups>) {
        let mut guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (clock, map) = &mut *guard;
        *clock += 1;
        let used = *clock;
        let full = map.len() >= CAPACITY && !map.contains_key(&key);
        let oldest = full
            .then(|| {
                map.iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(k, _)| k.clone())
            })
            .flatten();
        if let Some(oldest) = oldest {
            map.remove(&oldest);
        }
        map.insert(
            key,
            Entry {
                head,
                rollups,
                used,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollups(n: i64) -> Arc<CachedRollups> {
        Arc::new(CachedRollups {
            rows: Vec::new(),
            alerts: vec![n],
            exclusions: Vec::new(),
        })
    }

    fn key(org: &str) -> Key {
        (OrgId(org.to_string()), None, None)
    }

    #[test]
    fn a_newer_audit_sequence_misses() {
        let cache = RollupCache::default();
        cache.put(key("a"), 7, rollups(1));
        assert_eq!(cache.get(&key("a"), 7).map(|r| r.alerts[0]), Some(1));
        assert!(cache.get(&key("a"), 8).is_none());
        assert!(cache.get(&key("b"), 7).is_none());
    }

    #[test]
    fn the_least_recently_used_range_is_evicted_first() {
        let cache = RollupCache::default();
        for i in 0..CAPACITY {
            cache.put(key(&format!("org{i}")), 1, rollups(i as i64));
        }
        // Touch the first so that the second is now the oldest.
        assert!(cache.get(&key("org0"), 1).is_some());
        cache.put(key("new"), 1, rollups(-1));
        assert!(cache.get(&key("org0"), 1).is_some());
        assert!(cache.get(&key("org1"), 1).is_none());
        assert!(cache.get(&key("new"), 1).is_some());
    }
}
