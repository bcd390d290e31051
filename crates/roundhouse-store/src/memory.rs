//! An in-memory [`StateStore`] with the embedded store's semantics, for tests of code that
//! uses a store (the executor, the CLI) without files.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use bootdata::Mac;
use roundhouse_plan::{NodeState, Timestamp};

use crate::export::{EXPORT_FORMAT, Export};
use crate::record::{Change, Event, EventQuery, FetchRecord, NodeRecord, apply_change, note_event};
use crate::{StateStore, StoreError};

#[derive(Default)]
struct Inner {
    nodes: BTreeMap<Mac, NodeRecord>,
    events: BTreeMap<(Mac, u64), Event>,
    fetches: BTreeMap<(Mac, Timestamp, u64), FetchRecord>,
    next_seq: u64,
}

/// A [`StateStore`] that lives and dies with the process.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic in another test thread must not turn every later call into a panic too.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}

impl StateStore for MemoryStore {
    fn node(&self, mac: &Mac) -> Result<Option<NodeRecord>, StoreError> {
        Ok(self.lock().nodes.get(mac).cloned())
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(self.lock().nodes.values().cloned().collect())
    }

    fn apply_batch(
        &self,
        changes: Vec<(Mac, Change)>,
        at: Timestamp,
    ) -> Result<Vec<NodeRecord>, StoreError> {
        let mut inner = self.lock();
        // Work on copies and swap them in only when every change was accepted, so a refused
        // change leaves the store as it was (the embedded store's transaction semantics).
        let mut nodes = inner.nodes.clone();
        let mut events = Vec::new();
        let mut out = Vec::with_capacity(changes.len());
        for (mac, change) in changes {
            let mut record = nodes
                .get(&mac)
                .cloned()
                .unwrap_or_else(|| NodeRecord::empty(mac, at));
            let event = apply_change(&mut record, change, at)
                .map_err(|source| StoreError::Transition { mac, source })?;
            events.push(event);
            nodes.insert(mac, record.clone());
            out.push(record);
        }
        inner.nodes = nodes;
        for mut event in events {
            event.seq = inner.seq();
            inner.events.insert((event.mac, event.seq), event);
        }
        Ok(out)
    }

    fn note(&self, mac: &Mac, message: &str, at: Timestamp) -> Result<Event, StoreError> {
        let mut inner = self.lock();
        let state = inner
            .nodes
            .get(mac)
            .map(|r| r.state.clone())
            .unwrap_or(NodeState::Unknown);
        let mut event = note_event(*mac, message, &state, at);
        event.seq = inner.seq();
        inner.events.insert((*mac, event.seq), event.clone());
        Ok(event)
    }

    fn events(&self, mac: &Mac, query: EventQuery) -> Result<Vec<Event>, StoreError> {
        let inner = self.lock();
        let end = query.before.unwrap_or(u64::MAX);
        Ok(inner
            .events
            .range((*mac, 0)..(*mac, end))
            .rev()
            .take(query.limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn record_fetch(&self, fetch: &FetchRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let seq = inner.seq();
        inner
            .fetches
            .insert((fetch.mac, fetch.at, seq), fetch.clone());
        Ok(())
    }

    fn last_fetch(&self, mac: &Mac) -> Result<Option<FetchRecord>, StoreError> {
        let inner = self.lock();
        let lo = (*mac, Timestamp::from_unix_millis(i64::MIN), 0);
        let hi = (*mac, Timestamp::from_unix_millis(i64::MAX), u64::MAX);
        Ok(inner
            .fetches
            .range(lo..=hi)
            .next_back()
            .map(|(_, f)| f.clone()))
    }

    fn last_fetches(&self) -> Result<Vec<FetchRecord>, StoreError> {
        let inner = self.lock();
        let mut last: BTreeMap<Mac, FetchRecord> = BTreeMap::new();
        for ((mac, _, _), f) in &inner.fetches {
            last.insert(*mac, f.clone());
        }
        Ok(last.into_values().collect())
    }

    fn fetches_since(&self, mac: &Mac, since: Timestamp) -> Result<Vec<FetchRecord>, StoreError> {
        let inner = self.lock();
        let hi = (*mac, Timestamp::from_unix_millis(i64::MAX), u64::MAX);
        Ok(inner
            .fetches
            .range((*mac, since, 0)..=hi)
            .map(|(_, f)| f.clone())
            .collect())
    }

    fn export(&self, at: Timestamp) -> Result<Export, StoreError> {
        let inner = self.lock();
        let mut events: Vec<Event> = inner.events.values().cloned().collect();
        events.sort_by_key(|e| e.seq);
        let mut fetches: Vec<((Timestamp, u64), FetchRecord)> = inner
            .fetches
            .iter()
            .map(|((_, at, seq), f)| ((*at, *seq), f.clone()))
            .collect();
        fetches.sort_by_key(|(k, _)| *k);
        Ok(Export {
            format: EXPORT_FORMAT.to_string(),
            exported_at: at,
            nodes: inner.nodes.values().cloned().collect(),
            events,
            fetches: fetches.into_iter().map(|(_, f)| f).collect(),
        })
    }

    fn import(&self, export: &Export) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if !inner.nodes.is_empty() || !inner.events.is_empty() {
            return Err(StoreError::NotEmpty {
                path: "(memory)".into(),
                nodes: inner.nodes.len(),
                events: inner.events.len(),
            });
        }
        for n in &export.nodes {
            inner.nodes.insert(n.mac, n.clone());
        }
        for e in &export.events {
            inner.events.insert((e.mac, e.seq), e.clone());
        }
        inner.next_seq = inner.next_seq.max(export.max_seq());
        for f in &export.fetches {
            let seq = inner.seq();
            inner.fetches.insert((f.mac, f.at, seq), f.clone());
        }
        Ok(())
    }
}
