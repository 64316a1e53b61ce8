//! Rows resolved to cells once per distinct (technique, tactic) spelling.
//!
//! A 30-day matrix reads thousands of rollup rows but they name only a few
//! hundred distinct (technique, tactic) pairs. Looking every row up in the
//! release again (upper-casing the ID, searching the technique's tactics,
//! building string keys for ordered maps) was most of a matrix request's
//! cost; here each pair is resolved on first sight and later rows with the
//! same spelling reuse its answer, so the per-row work is one hash lookup of
//! two borrowed strings. The maps use the Fx hash: keys are short IDs from
//! our own store, not attacker-chosen in bulk, and SipHash was the largest
//! single cost left.

use rustc_hash::FxHashMap;
use taxonomy::{Tactic, Technique};

use crate::matrix::Placer;
use crate::rollup::RollupRow;

/// What one (technique, tactic) spelling resolves to.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// Index of the per-technique total the rows count in (one per exact
    /// technique ID, however its rows spell it).
    pub total: usize,
    /// Cell slots the rows count in, or why no cell takes them.
    pub cells: Result<Vec<usize>, String>,
}

/// A cell slot: the tactic (with its position in matrix order) and the
/// technique.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot<'r> {
    pub order: usize,
    pub tactic: &'r Tactic,
    pub technique: &'r Technique,
}

/// Resolves rows against one release, remembering every spelling seen.
pub(crate) struct CellIndex<'a, 'p, 'r> {
    placer: &'p Placer<'r>,
    spellings: FxHashMap<(&'a str, &'a str), usize>,
    resolved: Vec<Resolved>,
    /// Exact technique ID of each total, by total index.
    totals: Vec<String>,
    total_of: FxHashMap<String, usize>,
    slots: Vec<Slot<'r>>,
    slot_of: FxHashMap<(usize, &'r str), usize>,
}

impl<'a, 'p, 'r> CellIndex<'a, 'p, 'r> {
    pub(crate) fn new(placer: &'p Placer<'r>) -> Self {
        CellIndex {
            placer,
            spellings: FxHashMap::default(),
            resolved: Vec::new(),
            totals: Vec::new(),
            total_of: FxHashMap::default(),
            slots: Vec::new(),
            slot_of: FxHashMap::default(),
        }
    }

    /// The index of the row's resolution (see [`CellIndex::resolved`]).
    pub(crate) fn resolve(&mut self, row: &'a RollupRow) -> usize {
        let key = (row.technique.as_str(), row.tactic.as_str());
        if let Some(&index) = self.spellings.get(&key) {
            return index;
        }
        let placed = self.placer.place(row);
        // Totals count at the release's spelling of the ID; a technique the
        // release does not know keeps its stored ID, upper-cased.
        let technique_id = match &placed {
            Ok((technique, _)) => technique.id.clone(),
            Err(_) => row.technique.trim().to_ascii_uppercase(),
        };
        let total = match self.total_of.get(&technique_id) {
            Some(&total) => total,
            None => {
                self.totals.push(technique_id.clone());
                self.total_of.insert(technique_id, self.totals.len() - 1);
                self.totals.len() - 1
            }
        };
        let cells = placed.map(|(technique, tactics)| {
            tactics
                .into_iter()
                .map(|tactic| self.slot(tactic, technique))
                .collect()
        });
        self.resolved.push(Resolved { total, cells });
        self.spellings.insert(key, self.resolved.len() - 1);
        self.resolved.len() - 1
    }

    fn slot(&mut self, tactic: &'r Tactic, technique: &'r Technique) -> usize {
        let order = self.placer.order(&tactic.id);
        let key = (order, technique.id.as_str());
        if let Some(&slot) = self.slot_of.get(&key) {
            return slot;
        }
        self.slots.push(Slot {
            order,
            tactic,
            technique,
        });
        self.slot_of.insert(key, self.slots.len() - 1);
        self.slots.len() - 1
    }

    /// A resolution by index.
    pub(crate) fn resolved(&self, index: usize) -> &Resolved {
        &self.resolved[index]
    }

    /// Every cell slot, by slot index.
    pub(crate) fn slots(&self) -> &[Slot<'r>] {
        &self.slots
    }

    /// The exact technique ID of each total, by total index.
    pub(crate) fn totals(&self) -> &[String] {
        &self.totals
    }

    /// Slot indices in matrix order: tactic column, then tactic ID (two
    /// tactics of one position cannot happen in a release, but the order
    /// stays total), then technique ID, so a sub-technique follows its
    /// parent.
    pub(crate) fn slots_in_matrix_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.slots.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&self.slots[a], &self.slots[b]);
            (a.order, &a.tactic.id, &a.technique.id).cmp(&(b.order, &b.tactic.id, &b.technique.id))
        });
        order
    }
}
