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
//!
//! The views computed from a range's rows are kept with them: a dashboard
//! asking the same view again then costs the two checks and no computing.
//! A view is a pure function of the rows (and the exclusion windows read
//! with them), the active release, the filter and the day its anomaly
//! window ends; the rows come and go with their audit sequence, and the
//! other three are the view's key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use store::{DatasetId, OrgId};
use views::{MatrixFilter, MatrixView, RollupRow};

/// Ranges kept at most; the least recently used goes first.
const CAPACITY: usize = 64;

/// Views kept per range, the most recently computed ones: a 30-day view
/// holds about 0.4 MB, so the whole cache holds at most about 50 MB of
/// views.
const VIEWS_PER_RANGE: usize = 2;

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
    /// Views computed from these rows, oldest first.
    pub views: Mutex<Vec<(ViewKey, Arc<MatrixView>)>>,
}

/// What a view computed from a range's rows depends on beside them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ViewKey {
    /// The active dataset whose release lays the matrix out.
    pub dataset: DatasetId,
    /// The filter as asked for (before the exclusion windows are added).
    pub filter: MatrixFilter,
    /// The first day after the anomaly window: it moves with the date when
    /// the range has no end.
    pub anomaly_end: NaiveDate,
}

impl CachedRollups {
    /// Rows with no view computed yet.
    pub fn new(
        rows: Vec<RollupRow>,
        alerts: Vec<i64>,
        exclusions: Vec<store::ExclusionRecord>,
    ) -> Self {
        Self {
            rows,
            alerts,
            exclusions,
            views: Mutex::default(),
        }
    }

    /// The view computed from these rows under `key`, if kept.
    pub fn view(&self, key: &ViewKey) -> Option<Arc<MatrixView>> {
        // A poisoned lock only means a panic elsewhere mid-push; the list
        // still holds whole views.
        let views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        views.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    /// Keeps a view computed from these rows, dropping the oldest beyond
    /// [`VIEWS_PER_RANGE`].
    pub fn keep_view(&self, key: ViewKey, view: Arc<MatrixView>) {
        let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        views.retain(|(k, _)| *k != key);
        if views.len() >= VIEWS_PER_RANGE {
            views.remove(0);
        }
        views.push((key, view));
    }
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
        Arc::new(CachedRollups::new(Vec::new(), vec![n], Vec::new()))
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

    fn view(release: &str) -> Arc<MatrixView> {
        Arc::new(MatrixView {
            formula: String::new(),
            domain: "enterprise-attack".into(),
            release: release.into(),
            filter: MatrixFilter::default(),
            tactics: Vec::new(),
            cells: Vec::new(),
            techniques: Vec::new(),
            exclusions_applied: Vec::new(),
            unplaced: Vec::new(),
        })
    }

    fn view_key(dataset: &str, connector: &str, day: u32) -> ViewKey {
        ViewKey {
            dataset: DatasetId(dataset.into()),
            filter: MatrixFilter {
                connectors: vec![connector.into()],
                ..MatrixFilter::default()
            },
            anomaly_end: NaiveDate::from_ymd_opt(2026, 1, day).unwrap(),
        }
    }

    #[test]
    fn a_view_is_found_by_its_whole_key_only() {
        let rows = rollups(1);
        rows.keep_view(view_key("d1", "sysmon", 2), view("a"));
        let found = |k: &ViewKey| rows.view(k).map(|v| v.release.clone());
        assert_eq!(found(&view_key("d1", "sysmon", 2)).as_deref(), Some("a"));
        assert_eq!(found(&view_key("d2", "sysmon", 2)), None, "another release");
        assert_eq!(found(&view_key("d1", "okta", 2)), None, "another filter");
        assert_eq!(found(&view_key("d1", "sysmon", 3)), None, "another day");
    }

    #[test]
    fn the_oldest_view_of_a_range_goes_first() {
        let rows = rollups(1);
        for (i, connector) in ["a", "b", "c"].iter().enumerate() {
            rows.keep_view(view_key("d1", connector, 2), view(&i.to_string()));
        }
        assert_eq!(rows.views.lock().unwrap().len(), VIEWS_PER_RANGE);
        assert!(rows.view(&view_key("d1", "a", 2)).is_none());
        assert!(rows.view(&view_key("d1", "c", 2)).is_some());
        // Keeping a key again replaces its view instead of adding one.
        rows.keep_view(view_key("d1", "c", 2), view("new"));
        assert_eq!(rows.views.lock().unwrap().len(), VIEWS_PER_RANGE);
        let again = rows
            .view(&view_key("d1", "c", 2))
            .map(|v| v.release.clone());
        assert_eq!(again.as_deref(), Some("new"));
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
