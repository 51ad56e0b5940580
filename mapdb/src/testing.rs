//! Reference implementations of [`Store`] and [`Tables`] on `alloc`
//! collections, for host tests and the kernel's host fuzz build (feature
//! `testing`). They also *police* the reservation contract: allocating a
//! node, installing or splitting without a matching reservation panics, so a
//! wrong count in the database shows up as a test failure.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::env::{HwMapping, Node, Store, TableNeed, Tables};
use crate::types::{NodeId, OutOfMemory, PageSize, Rights, SpaceId, SPLIT_FANOUT};

/// A node store on a `Vec` with a free list and an optional limit on live
/// nodes (to provoke out-of-memory).
#[derive(Debug, Default)]
pub struct VecStore {
    slots: Vec<Option<Node>>,
    free: Vec<u32>,
    live: usize,
    limit: Option<usize>,
    budget: usize,
}

impl VecStore {
    /// An unlimited store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that refuses reservations that would exceed `limit` live
    /// nodes.
    pub fn with_limit(limit: usize) -> Self {
        VecStore { limit: Some(limit), ..Self::default() }
    }

    /// Change the limit (`None`: unlimited).
    pub fn set_limit(&mut self, limit: Option<usize>) {
        self.limit = limit;
    }

    /// Number of live nodes.
    pub fn live(&self) -> usize {
        self.live
    }

    fn slot(&self, id: NodeId) -> Option<&Node> {
        self.slots.get(id.index() as usize).and_then(Option::as_ref)
    }
}

impl Store for VecStore {
    fn reserve(&mut self, n: usize) -> Result<(), OutOfMemory> {
        if let Some(limit) = self.limit {
            if self.live.saturating_add(n) > limit {
                return Err(OutOfMemory);
            }
        }
        self.budget = n;
        Ok(())
    }

    fn alloc(&mut self, node: Node) -> NodeId {
        assert!(self.budget > 0, "mapdb allocated a node it had not reserved");
        self.budget -= 1;
        self.live += 1;
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(node);
                i
            }
            None => {
                self.slots.push(Some(node));
                (self.slots.len() - 1) as u32
            }
        };
        NodeId::from_index(index).expect("node index space exhausted")
    }

    fn free(&mut self, id: NodeId) {
        let slot = self.slots.get_mut(id.index() as usize).expect("free of an unknown node");
        assert!(slot.take().is_some(), "double free of {id:?}");
        self.free.push(id.index());
        self.live -= 1;
    }

    fn node(&self, id: NodeId) -> &Node {
        self.slot(id).expect("read of a dead node")
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.slots.get_mut(id.index() as usize).and_then(Option::as_mut).expect("write of a dead node")
    }

    fn contains(&self, id: NodeId) -> bool {
        self.slot(id).is_some()
    }

    fn next_node(&self, after: Option<NodeId>) -> Option<NodeId> {
        let start = after.map_or(0, |a| a.index() as usize + 1);
        let i = self.slots.get(start..)?.iter().position(Option::is_some)?;
        NodeId::from_index((start + i) as u32)
    }
}

/// One simulated page-table entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Entry {
    /// Page size.
    pub size: PageSize,
    /// Physical base.
    pub phys: u64,
    /// Rights.
    pub rights: Rights,
    /// Accessed status (R = referenced, W = dirty, X = executed).
    pub accessed: Rights,
    /// Linked node.
    pub node: NodeId,
}

/// Page tables simulated as one ordered map per `(space, vaddr)`.
#[derive(Debug, Default)]
pub struct MapTables {
    map: BTreeMap<(SpaceId, u64), Entry>,
    split_limit: Option<usize>,
    split_budget: usize,
    install: Option<(SpaceId, u64, PageSize)>,
    /// Number of splits done so far.
    pub splits_done: usize,
}

impl MapTables {
    /// Empty tables with no limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuse steps that need more than `limit` splits (`None`: no limit).
    pub fn set_split_limit(&mut self, limit: Option<usize>) {
        self.split_limit = limit;
    }

    /// The entry at exactly `(space, vaddr)`.
    pub fn entry(&self, space: SpaceId, vaddr: u64) -> Option<&Entry> {
        self.map.get(&(space, vaddr))
    }

    /// All entries in address order.
    pub fn entries(&self) -> impl Iterator<Item = (SpaceId, u64, &Entry)> {
        self.map.iter().map(|(&(s, v), e)| (s, v, e))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Simulate the processor accessing `vaddr` in `space` with `kind`
    /// (R = read, W = write, X = execute): sets the accessed status if the
    /// entry allows it. Returns whether the access succeeded.
    pub fn touch(&mut self, space: SpaceId, vaddr: u64, kind: Rights) -> bool {
        let Some(key) = self.key_containing(space, vaddr) else { return false };
        let Some(e) = self.map.get_mut(&key) else { return false };
        if !e.rights.contains(kind) {
            return false;
        }
        e.accessed |= kind;
        true
    }

    fn key_containing(&self, space: SpaceId, vaddr: u64) -> Option<(SpaceId, u64)> {
        let (&key, e) = self.map.range(..=(space, vaddr)).next_back()?;
        (key.0 == space && key.1 + e.size.bytes() > vaddr).then_some(key)
    }

    fn entry_mut(&mut self, space: SpaceId, vaddr: u64, size: PageSize) -> &mut Entry {
        let e = self.map.get_mut(&(space, vaddr)).expect("mapdb touched a missing page-table entry");
        assert_eq!(e.size, size, "mapdb used a wrong page size");
        e
    }
}

impl Tables for MapTables {
    fn reserve(&mut self, need: &TableNeed) -> Result<(), OutOfMemory> {
        if self.split_limit.is_some_and(|l| need.splits > l) {
            return Err(OutOfMemory);
        }
        self.split_budget = need.splits;
        self.install = need.install;
        Ok(())
    }

    fn find(&self, space: SpaceId, start: u64, end: u64) -> Option<HwMapping> {
        if start >= end {
            return None;
        }
        let hw = |(&(_, vaddr), e): (&(SpaceId, u64), &Entry)| HwMapping {
            vaddr,
            size: e.size,
            phys: e.phys,
            rights: e.rights,
            node: e.node,
        };
        if let Some(key) = self.key_containing(space, start) {
            return self.map.get_key_value(&key).map(hw);
        }
        self.map.range((space, start)..(space, end)).next().map(hw)
    }

    fn install(
        &mut self,
        space: SpaceId,
        vaddr: u64,
        size: PageSize,
        phys: u64,
        rights: Rights,
        accessed: Rights,
        node: NodeId,
    ) {
        assert_eq!(self.install.take(), Some((space, vaddr, size)), "mapdb installed a mapping it had not announced");
        assert!(self.find(space, vaddr, vaddr + size.bytes()).is_none(), "mapdb installed over a mapping");
        self.map.insert((space, vaddr), Entry { size, phys, rights, accessed, node });
    }

    fn remove(&mut self, space: SpaceId, vaddr: u64, size: PageSize) -> Rights {
        let e = self.map.remove(&(space, vaddr)).expect("mapdb removed a missing mapping");
        assert_eq!(e.size, size, "mapdb removed with a wrong page size");
        e.accessed
    }

    fn protect(&mut self, space: SpaceId, vaddr: u64, size: PageSize, rights: Rights) {
        self.entry_mut(space, vaddr, size).rights = rights;
    }

    fn accessed(&mut self, space: SpaceId, vaddr: u64, size: PageSize, clear: bool) -> Rights {
        let e = self.entry_mut(space, vaddr, size);
        let a = e.accessed;
        if clear {
            e.accessed = Rights::NONE;
        }
        a
    }

    fn split(&mut self, space: SpaceId, vaddr: u64, size: PageSize) {
        assert!(self.split_budget > 0, "mapdb split a page it had not announced");
        self.split_budget -= 1;
        self.splits_done += 1;
        let e = self.map.remove(&(space, vaddr)).expect("mapdb split a missing mapping");
        assert_eq!(e.size, size, "mapdb split with a wrong page size");
        let small = size.smaller().expect("mapdb split a 4 KiB page");
        for i in 0..SPLIT_FANOUT {
            let off = i * small.bytes();
            self.map.insert((space, vaddr + off), Entry { size: small, phys: e.phys + off, ..e });
        }
    }

    fn relink(&mut self, space: SpaceId, vaddr: u64, size: PageSize, node: NodeId) {
        self.entry_mut(space, vaddr, size).node = node;
    }
}
