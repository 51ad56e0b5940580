//! `check_invariants`: verifies every invariant listed in the crate
//! documentation, for tests and for the kernel's fuzz build.
//!
//! It walks all live nodes through [`Store::next_node`] and the page tables
//! of every space that holds a node; the cost is O(nodes × depth + entries).

use crate::db::Mdb;
use crate::env::{HwMapping, Store, Tables};
use crate::types::NodeId;

/// The first broken invariant found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Violation {
    /// The node concerned, if one is.
    pub node: Option<NodeId>,
    /// Which rule is broken.
    pub what: &'static str,
}

fn fail(node: NodeId, what: &'static str) -> Result<(), Violation> {
    Err(Violation { node: Some(node), what })
}

impl<S: Store, T: Tables> Mdb<S, T> {
    /// Check all invariants (see the crate documentation, `# Invariants`).
    pub fn check_invariants(&self) -> Result<(), Violation> {
        let mut count = 0usize;
        let mut cur = self.store.next_node(None);
        while let Some(id) = cur {
            count += 1;
            cur = self.store.next_node(Some(id));
        }
        let mut cur = self.store.next_node(None);
        let mut entries = 0usize;
        while let Some(id) = cur {
            self.check_node(id, count)?;
            entries += self.check_space_if_lowest(id)?;
            cur = self.store.next_node(Some(id));
        }
        if entries != count {
            return Err(Violation { node: None, what: "page tables hold a different number of mappings than the database" });
        }
        Ok(())
    }

    /// The per-node rules.
    fn check_node(&self, id: NodeId, count: usize) -> Result<(), Violation> {
        let n = self.n(id);
        let bytes = n.size.bytes();
        if n.vaddr & (bytes - 1) != 0 || n.phys & (bytes - 1) != 0 {
            return fail(id, "misaligned mapping");
        }
        if n.vaddr.checked_add(bytes).is_none() || n.phys.checked_add(bytes).is_none() {
            return fail(id, "mapping wraps around");
        }
        if n.size > self.cfg.max_page {
            return fail(id, "mapping larger than max_page");
        }
        if n.rights.is_empty() {
            return fail(id, "mapping without rights");
        }
        let want = HwMapping { vaddr: n.vaddr, size: n.size, phys: n.phys, rights: n.rights, node: id };
        if self.tables.find(n.space, n.vaddr, n.vaddr + 1) != Some(want) {
            return fail(id, "page tables disagree with the node (or mappings overlap)");
        }
        match n.parent {
            None => {
                if n.space != self.cfg.sigma0 || n.vaddr != n.phys {
                    return fail(id, "a root that is not an idempotent mapping of sigma0");
                }
                if n.prev.is_some() || n.next.is_some() {
                    return fail(id, "a root in a sibling list");
                }
            }
            Some(p) => {
                if !self.store.contains(p) {
                    return fail(id, "dangling parent");
                }
                if n.space == self.cfg.sigma0 {
                    return fail(id, "a derived mapping in sigma0's space");
                }
                let pn = self.n(p);
                if !pn.rights.contains(n.rights) {
                    return fail(id, "rights exceed the parent's");
                }
                if n.size > pn.size || n.phys < pn.phys || n.pend() > pn.pend() {
                    return fail(id, "physical range outside the parent's");
                }
                match n.prev {
                    Some(pr) => {
                        if !self.store.contains(pr) {
                            return fail(id, "dangling previous sibling");
                        }
                        let prn = self.store.node(pr);
                        if prn.next != Some(id) || prn.parent != Some(p) {
                            return fail(id, "sibling links disagree");
                        }
                    }
                    None => {
                        if pn.first_child != Some(id) {
                            return fail(id, "first sibling is not the parent's first child");
                        }
                    }
                }
                // Acyclic: the root is reached within `count` steps.
                let mut up = p;
                let mut steps = 0usize;
                while let Some(q) = self.store.node(up).parent {
                    steps += 1;
                    if steps > count || !self.store.contains(q) {
                        return fail(id, "parent chain does not end in a root");
                    }
                    up = q;
                }
            }
        }
        if let Some(nx) = n.next {
            if !self.store.contains(nx) || self.store.node(nx).prev != Some(id) {
                return fail(id, "sibling links disagree");
            }
        }
        if let Some(c) = n.first_child {
            if !self.store.contains(c) {
                return fail(id, "dangling first child");
            }
            let cn = self.store.node(c);
            if cn.parent != Some(id) || cn.prev.is_some() {
                return fail(id, "first child does not point back");
            }
        }
        Ok(())
    }

    /// If `id` is the lowest mapping of its space, check every page-table
    /// entry of that space against the store and return how many there are;
    /// otherwise 0. Each space is thus walked once.
    fn check_space_if_lowest(&self, id: NodeId) -> Result<usize, Violation> {
        let n = self.n(id);
        if n.vaddr != 0 && self.tables.find(n.space, 0, n.vaddr).is_some() {
            return Ok(0);
        }
        let mut entries = 0usize;
        let mut cur = 0u64;
        while let Some(h) = self.tables.find(n.space, cur, u64::MAX) {
            entries += 1;
            if !self.store.contains(h.node) {
                return Err(Violation { node: Some(h.node), what: "page-table entry without a live node" });
            }
            let hn = self.store.node(h.node);
            if hn.space != n.space || hn.vaddr != h.vaddr {
                return Err(Violation { node: Some(h.node), what: "page-table entry linked to another mapping's node" });
            }
            match h.vaddr.checked_add(h.size.bytes()) {
                Some(next) => cur = next,
                None => break,
            }
        }
        Ok(entries)
    }
}
