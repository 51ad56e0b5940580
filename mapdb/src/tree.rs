//! Tree primitives behind the operations: linking, iterative walks,
//! subtree removal, splitting a large mapping (with its same-size
//! descendants), carving a window out of a mapping, and revoking rights.
//!
//! Nothing here recurses: every walk is a loop over the parent / first-child
//! / sibling links, so the kernel stack use is constant whatever the depth
//! of the tree.
//!
//! Nothing here reserves memory either; the callers in `db.rs` count what a
//! step needs (with [`Mdb::count_carve`]) and reserve it before calling.

use crate::db::Mdb;
use crate::env::{Node, Store, Tables};
use crate::types::{NodeId, PageSize, Rights, SPLIT_FANOUT};

/// A range of physical addresses `[start, end)`: the part of a mapping an
/// operation works on, followed down the tree (children lie within their
/// parent's physical range, so a window selects the same memory at every
/// level).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Window {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl Window {
    /// `len` bytes from `start`.
    pub(crate) const fn at(start: u64, len: u64) -> Window {
        Window { start, end: start + len }
    }

    /// The whole physical range of `n`.
    pub(crate) const fn of(n: &Node) -> Window {
        Window { start: n.phys, end: n.pend() }
    }

    /// Whether `n`'s physical range meets the window.
    pub(crate) const fn intersects(&self, n: &Node) -> bool {
        n.phys < self.end && self.start < n.pend()
    }

    /// Whether `n`'s physical range lies inside the window.
    pub(crate) const fn covers(&self, n: &Node) -> bool {
        self.start <= n.phys && n.pend() <= self.end
    }
}

impl<S: Store, T: Tables> Mdb<S, T> {
    /// A copy of a live node.
    pub(crate) fn n(&self, id: NodeId) -> Node {
        *self.store.node(id)
    }

    /// The node of the mapping of `space` containing `vaddr`.
    pub(crate) fn node_at(&self, space: crate::SpaceId, vaddr: u64) -> Option<NodeId> {
        self.tables.find(space, vaddr, vaddr.saturating_add(1)).map(|h| h.node)
    }

    /// Make `child` the first child of `parent` (sets `child.parent`).
    pub(crate) fn link_child(&mut self, parent: NodeId, child: NodeId) {
        let first = self.store.node(parent).first_child;
        {
            let c = self.store.node_mut(child);
            c.parent = Some(parent);
            c.prev = None;
            c.next = first;
        }
        if let Some(f) = first {
            self.store.node_mut(f).prev = Some(child);
        }
        self.store.node_mut(parent).first_child = Some(child);
    }

    /// Take `child` out of its parent's child list (its `parent` field is
    /// left for the caller to overwrite). Roots are in no list.
    pub(crate) fn unlink(&mut self, child: NodeId) {
        let c = self.n(child);
        match (c.prev, c.parent) {
            (Some(p), _) => self.store.node_mut(p).next = c.next,
            (None, Some(parent)) => self.store.node_mut(parent).first_child = c.next,
            (None, None) => {}
        }
        if let Some(nx) = c.next {
            self.store.node_mut(nx).prev = c.prev;
        }
        let m = self.store.node_mut(child);
        m.prev = None;
        m.next = None;
    }

    /// The first node satisfying `pred` in the sibling list starting at
    /// `start`.
    fn first_sat(&self, mut cur: Option<NodeId>, pred: impl Fn(&Node) -> bool) -> Option<NodeId> {
        while let Some(id) = cur {
            let n = self.store.node(id);
            if pred(n) {
                return Some(id);
            }
            cur = n.next;
        }
        None
    }

    /// Pre-order successor of `cur` inside the subtree of `top`, visiting
    /// only children that satisfy `pred` (their subtrees are skipped
    /// otherwise). With `descend == false`, `cur`'s own subtree is skipped.
    pub(crate) fn succ(
        &self,
        cur: NodeId,
        top: NodeId,
        pred: impl Fn(&Node) -> bool + Copy,
        descend: bool,
    ) -> Option<NodeId> {
        if descend {
            if let Some(c) = self.first_sat(self.store.node(cur).first_child, pred) {
                return Some(c);
            }
        }
        let mut x = cur;
        while x != top {
            let n = self.store.node(x);
            if let Some(s) = self.first_sat(n.next, pred) {
                return Some(s);
            }
            x = n.parent?;
        }
        None
    }

    /// Remove `top` and everything derived from it: page-table entries and
    /// nodes. Returns the accessed status of all removed mappings.
    ///
    /// Post-order without a stack: always descend to the first child; a leaf
    /// is its parent's first child, so unlinking it is O(1).
    pub(crate) fn remove_subtree(&mut self, top: NodeId) -> Rights {
        self.unlink(top);
        let mut acc = Rights::NONE;
        let mut cur = top;
        loop {
            while let Some(c) = self.store.node(cur).first_child {
                cur = c;
            }
            let n = self.n(cur);
            acc |= self.tables.remove(n.space, n.vaddr, n.size);
            self.store.free(cur);
            if cur == top {
                break;
            }
            let Some(parent) = n.parent else { break };
            self.store.node_mut(parent).first_child = n.next;
            if let Some(nx) = n.next {
                self.store.node_mut(nx).prev = None;
            }
            cur = n.next.unwrap_or(parent);
        }
        acc
    }

    /// Split `top` one level (1 GiB → 512 × 2 MiB, or 2 MiB → 512 × 4 KiB),
    /// together with every descendant of the same size reachable through
    /// same-size nodes (those must split too: a child may not be larger than
    /// its parent). Smaller descendants move under the piece that contains
    /// them. Needs `511 ×` (number of nodes split) nodes and one page-table
    /// page per split node.
    ///
    /// Every node keeps piece 0 of itself, so `top` stays the node at its
    /// virtual base. Pre-order over the same-size nodes guarantees a node's
    /// parent is split before it, so the parent's piece `i` exists (found
    /// through the page tables) when the node's piece `i` is made.
    pub(crate) fn split(&mut self, top: NodeId) {
        let big = self.store.node(top).size;
        let Some(small) = big.smaller() else { return };
        let is_big = move |n: &Node| n.size == big;
        let mut cur = Some(top);
        while let Some(x) = cur {
            self.split_one(x, top, big, small);
            cur = self.succ(x, top, is_big, true);
        }
    }

    /// One node of [`split`](Self::split).
    fn split_one(&mut self, x: NodeId, top: NodeId, big: PageSize, small: PageSize) {
        let n = self.n(x);
        let step = small.bytes();
        self.tables.split(n.space, n.vaddr, big);
        self.store.node_mut(x).size = small;
        // The parent's pieces, if the parent was split before us.
        let parent_base = match (x == top, n.parent) {
            (false, Some(p)) => Some(self.n(p)),
            _ => None,
        };
        for i in 1..SPLIT_FANOUT {
            let parent = match parent_base {
                Some(p) => self.node_at(p.space, p.vaddr + i * step).or(n.parent),
                None => n.parent,
            };
            let vaddr = n.vaddr + i * step;
            let id = self.store.alloc(Node::new(n.space, vaddr, n.phys + i * step, small, n.rights, None));
            if let Some(p) = parent {
                self.link_child(p, id);
            }
            self.tables.relink(n.space, vaddr, small, id);
        }
        // Children smaller than `big` go under the piece that holds them;
        // same-size children stay (they are piece 0's) and split next.
        let mut c = self.store.node(x).first_child;
        while let Some(ch) = c {
            let cn = self.n(ch);
            c = cn.next;
            if cn.size < big {
                let j = (cn.phys - n.phys) / step;
                if j != 0 {
                    if let Some(piece) = self.node_at(n.space, n.vaddr + j * step) {
                        self.unlink(ch);
                        self.link_child(piece, ch);
                    }
                }
            }
        }
    }

    /// Split `top` and then, level by level, the piece containing physical
    /// address `wstart`, until that piece is no larger than `to`.
    /// `wstart` must lie inside `top`.
    pub(crate) fn carve(&mut self, top: NodeId, wstart: u64, to: PageSize) {
        let mut x = top;
        while self.store.node(x).size > to {
            self.split(x);
            let n = self.n(x);
            if n.size <= to {
                break;
            }
            let off = (wstart - n.phys) / n.size.bytes() * n.size.bytes();
            match self.node_at(n.space, n.vaddr + off) {
                Some(piece) => x = piece,
                None => break,
            }
        }
    }

    /// Number of single-level splits that carving window `w` down to size
    /// `to` does in the subtree of `top` (counting `top` itself only if
    /// `include_top`): every node meeting `w` that is larger than `to`
    /// splits once per level above `to`. `w` must be smaller than every node
    /// larger than `to` that it meets, so that it lies in one piece per level
    /// (true for all callers: `to` is the largest page size not above `w`).
    pub(crate) fn count_carve(&self, top: NodeId, w: Window, to: PageSize, include_top: bool) -> usize {
        let pred = move |n: &Node| n.size > to && w.intersects(n);
        let mut splits = 0usize;
        let mut cur = if pred(self.store.node(top)) { Some(top) } else { None };
        while let Some(x) = cur {
            if x != top || include_top {
                splits += self.store.node(x).size.levels_above(to) as usize;
            }
            cur = self.succ(x, top, pred, true);
        }
        splits
    }

    /// Carve window `w` down to size `to` in every child of `m` that meets
    /// it (not in `m` itself).
    pub(crate) fn carve_children(&mut self, m: NodeId, w: Window, to: PageSize) {
        let mut c = self.store.node(m).first_child;
        while let Some(ch) = c {
            let cn = self.n(ch);
            c = cn.next;
            if cn.size > to && w.intersects(&cn) {
                self.carve(ch, w.start, to);
            }
        }
    }

    /// Revoke `rights` from every node of `top`'s subtree lying inside window
    /// `w` (`top` itself only if `include_top`); a node left with no rights
    /// disappears with its subtree. With `gather`, the accessed status of
    /// every visited node is read (and reset for nodes inside `w`) and
    /// returned; otherwise accessed bits are left alone.
    ///
    /// Nodes that meet `w` without lying inside it are only visited, never
    /// changed: callers carve first when rights are to be revoked.
    pub(crate) fn revoke(&mut self, top: NodeId, w: Window, rights: Rights, include_top: bool, gather: bool) -> Rights {
        let meets = move |n: &Node| w.intersects(n);
        let mut acc = Rights::NONE;
        let mut cur = Some(top);
        while let Some(x) = cur {
            let n = self.n(x);
            let inside = w.covers(&n);
            let cut = if inside && (x != top || include_top) { n.rights.intersect(rights) } else { Rights::NONE };
            if !cut.is_empty() {
                let left = n.rights.minus(rights);
                if left.is_empty() {
                    let next = self.succ(x, top, meets, false);
                    acc |= self.remove_subtree(x);
                    cur = next;
                    continue;
                }
                if gather {
                    acc |= self.tables.accessed(n.space, n.vaddr, n.size, true);
                }
                self.store.node_mut(x).rights = left;
                self.tables.protect(n.space, n.vaddr, n.size, left);
            } else if gather {
                acc |= self.tables.accessed(n.space, n.vaddr, n.size, inside);
            }
            cur = self.succ(x, top, meets, true);
        }
        if gather {
            acc
        } else {
            Rights::NONE
        }
    }
}
