//! The database object and its operations: σ0's roots, map, grant, unmap
//! (and flush). The tree surgery they use lives in `tree.rs`, the invariant
//! checker in `check.rs`.
//!
//! Every operation walks its region in *steps* (one hardware-page-sized
//! chunk for map/grant, one caller mapping for unmap). A step first looks,
//! counts what it will allocate and reserves it (`Store::reserve`,
//! `Tables::reserve`), and only then changes anything.

use crate::env::{Node, Store, TableNeed, Tables};
use crate::tree::Window;
use crate::types::{Error, NodeId, OutOfMemory, PageSize, Region, Rights, SpaceId, SPLIT_FANOUT};

/// Fixed parameters of a database.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Config {
    /// σ0's space: it holds the roots, and nothing can be mapped into it.
    pub sigma0: SpaceId,
    /// The largest hardware page the kernel uses (2 MiB on processors
    /// without 1 GiB pages).
    pub max_page: PageSize,
}

/// The mapping database over a kernel-supplied [`Store`] and [`Tables`].
///
/// See the crate documentation for the model, the invariants and the costs.
pub struct Mdb<S, T> {
    pub(crate) store: S,
    pub(crate) tables: T,
    pub(crate) cfg: Config,
}

/// Whether an operation copies (map) or moves (grant).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transfer {
    Map,
    Grant,
}

impl<S: Store, T: Tables> Mdb<S, T> {
    /// A database over empty storage and empty page tables.
    pub fn new(store: S, tables: T, cfg: Config) -> Self {
        Mdb { store, tables, cfg }
    }

    /// The configuration.
    pub fn config(&self) -> Config {
        self.cfg
    }

    /// The node store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The page tables.
    pub fn tables(&self) -> &T {
        &self.tables
    }

    /// The page tables, for changes the database does not track (for
    /// example hardware setting accessed bits in tests). Adding, removing or
    /// re-protecting mappings behind the database's back breaks its
    /// invariants.
    pub fn tables_mut(&mut self) -> &mut T {
        &mut self.tables
    }

    /// Take the database apart.
    pub fn into_parts(self) -> (S, T) {
        (self.store, self.tables)
    }

    /// A live node.
    pub fn node(&self, id: NodeId) -> &Node {
        self.store.node(id)
    }

    /// The mapping of `space` containing `vaddr`.
    pub fn lookup(&self, space: SpaceId, vaddr: u64) -> Option<(NodeId, Node)> {
        let id = self.node_at(space, vaddr)?;
        Some((id, self.n(id)))
    }

    /// Reserve nodes and page-table memory for one step.
    fn reserve(
        &mut self,
        splits: usize,
        new_nodes: usize,
        install: Option<(SpaceId, u64, PageSize)>,
    ) -> Result<(), OutOfMemory> {
        let per_split = (SPLIT_FANOUT - 1) as usize;
        let nodes = splits.checked_mul(per_split).and_then(|n| n.checked_add(new_nodes)).ok_or(OutOfMemory)?;
        self.store.reserve(nodes)?;
        self.tables.reserve(&TableNeed { splits, install })
    }

    /// Give σ0 the idempotent mapping `phys → phys` of `size` bytes: a root of
    /// the mapping trees. The kernel calls this at boot for the memory σ0
    /// owns; roots are never removed, split only on demand.
    ///
    /// Errors: [`Error::BadRegion`] for a misaligned or wrapping range or a
    /// size above `max_page`, [`Error::BadRights`] for empty rights,
    /// [`Error::RootOverlap`] if σ0 already holds part of the range,
    /// [`Error::OutOfMemory`].
    pub fn add_root(&mut self, phys: u64, size: PageSize, rights: Rights) -> Result<NodeId, Error> {
        if size > self.cfg.max_page || phys & (size.bytes() - 1) != 0 || phys.checked_add(size.bytes()).is_none() {
            return Err(Error::BadRegion);
        }
        if rights.is_empty() {
            return Err(Error::BadRights);
        }
        let s0 = self.cfg.sigma0;
        if self.tables.find(s0, phys, phys + size.bytes()).is_some() {
            return Err(Error::RootOverlap);
        }
        self.reserve(0, 1, Some((s0, phys, size)))
            .map_err(|OutOfMemory| Error::OutOfMemory { stopped_at: phys, accessed: Rights::NONE })?;
        let id = self.store.alloc(Node::new(s0, phys, phys, size, rights, None));
        self.tables.install(s0, phys, size, phys, rights, Rights::NONE, id);
        Ok(id)
    }

    /// X.2 map: for every page of `src` mapped in `from`, give `to` the same
    /// memory at the corresponding address of `dst .. dst + src.size()`, with
    /// rights `source rights ∩ rights`, derived from the source mapping.
    ///
    /// A page already mapped at the destination is replaced (unmapped with
    /// everything derived from it first), except when it is the same
    /// physical page derived from the same source mapping: then its rights
    /// are extended. Pages the source does not map, and pages whose
    /// effective rights are empty, are left alone; so is a page mapped onto
    /// itself.
    ///
    /// Errors: [`Error::IntoSigma0`], [`Error::BadRegion`] for a destination
    /// not aligned to the region size or wrapping, [`Error::OutOfMemory`].
    pub fn map(&mut self, from: SpaceId, src: Region, to: SpaceId, dst: u64, rights: Rights) -> Result<(), Error> {
        self.transfer(from, src, to, dst, rights, Transfer::Map)
    }

    /// X.2 grant: like [`map`](Self::map), but the source mapping *moves* to
    /// `to`: the granter loses it, the node keeps its place in the tree
    /// (same parent) and its derived mappings. If the granted rights are
    /// fewer than the source had, the difference is revoked from everything
    /// derived from it. A destination mapping is always replaced (never
    /// extended). Granting from σ0's roots (which cannot move) acts as map.
    ///
    /// Errors as for [`map`](Self::map).
    pub fn grant(&mut self, from: SpaceId, src: Region, to: SpaceId, dst: u64, rights: Rights) -> Result<(), Error> {
        self.transfer(from, src, to, dst, rights, Transfer::Grant)
    }

    /// Map or grant, chunk by chunk in address order.
    fn transfer(
        &mut self,
        from: SpaceId,
        src: Region,
        to: SpaceId,
        dst: u64,
        rights: Rights,
        how: Transfer,
    ) -> Result<(), Error> {
        if to == self.cfg.sigma0 {
            return Err(Error::IntoSigma0);
        }
        Region::new(dst, src.log2())?;
        if rights.is_empty() {
            return Ok(());
        }
        let size = src.size();
        let mut off = 0u64;
        while off < size {
            let s = src.base() + off;
            let t = dst + off;
            let Some(h) = self.tables.find(from, s, src.end()) else { break };
            if h.vaddr > s {
                off = h.vaddr - src.base();
                continue;
            }
            let done = self.transfer_chunk(from, s, to, t, size - off, h.node, rights, how)?;
            off += done;
        }
        Ok(())
    }

    /// One step of [`transfer`](Self::transfer): the largest chunk at source
    /// address `s` (inside source node `sid`) and destination `t` that both
    /// addresses are aligned to, fits in `left` bytes and in the source node.
    /// Returns the chunk's size.
    #[allow(clippy::too_many_arguments)]
    fn transfer_chunk(
        &mut self,
        from: SpaceId,
        s: u64,
        to: SpaceId,
        t: u64,
        left: u64,
        sid: NodeId,
        rights: Rights,
        how: Transfer,
    ) -> Result<u64, Error> {
        let sn = self.n(sid);
        let max = if sn.size < self.cfg.max_page { sn.size } else { self.cfg.max_page };
        let floor_log2 = 63 - left.leading_zeros();
        let Some(mut c) = PageSize::largest_fitting(floor_log2, s | t, max) else {
            // Unreachable for validated regions (4 KiB always fits); skip a page.
            return Ok(PageSize::Size4K.bytes());
        };
        let eff = sn.rights & rights;
        if eff.is_empty() || (from == to && s == t) {
            return Ok(c.bytes());
        }
        let as_map = how == Transfer::Map || sn.parent.is_none();
        let s_phys = sn.phys + (s - sn.vaddr);
        if as_map {
            // Smaller same-source mappings in the destination keep their
            // place (their rights get extended): map at their size.
            while let Some(smaller) = c.smaller() {
                if !self.small_same_source(to, t, c, sid, s_phys) {
                    break;
                }
                c = smaller;
            }
        }
        let cb = c.bytes();

        // Look: the destination mapping covering the whole chunk, if any.
        let cover = self
            .tables
            .find(to, t, t + cb)
            .filter(|h| h.vaddr <= t && h.vaddr + h.size.bytes() >= t + cb)
            .map(|h| (h.node, self.n(h.node)));
        let same = as_map
            && cover.is_some_and(|(_, tn)| tn.parent == Some(sid) && tn.phys + (t - tn.vaddr) == s_phys);
        let mut splits = 0;
        if let Some((tid, tn)) = cover {
            if tn.size > c && !(same && tn.rights.contains(eff)) {
                splits += self.count_carve(tid, Window::at(tn.phys + (t - tn.vaddr), cb), c, true);
            }
        }
        if !as_map && sn.size > c {
            splits += self.count_carve(sid, Window::at(s_phys, cb), c, true);
        }
        let new_nodes = usize::from(as_map && !same);
        let install = if same { None } else { Some((to, t, c)) };
        self.reserve(splits, new_nodes, install)
            .map_err(|OutOfMemory| Error::OutOfMemory { stopped_at: s, accessed: Rights::NONE })?;

        // Change.
        if same {
            if let Some((tid, tn)) = cover {
                self.extend(tid, tn, t, c, eff);
            }
            return Ok(cb);
        }
        if let Some((tid, tn)) = cover {
            if tn.size > c {
                self.carve(tid, tn.phys + (t - tn.vaddr), c);
            }
        }
        while let Some(h) = self.tables.find(to, t, t + cb) {
            self.remove_subtree(h.node);
        }
        // Clearing the destination may have removed or split the source.
        let Some(mut sid) = self.node_at(from, s) else { return Ok(cb) };
        if as_map {
            let id = self.store.alloc(Node::new(to, t, s_phys, c, eff, None));
            self.link_child(sid, id);
            self.tables.install(to, t, c, s_phys, eff, Rights::NONE, id);
        } else {
            if self.store.node(sid).size > c {
                self.carve(sid, s_phys, c);
                match self.node_at(from, s) {
                    Some(piece) => sid = piece,
                    None => return Ok(cb),
                }
            }
            self.move_node(sid, to, t, eff);
        }
        Ok(cb)
    }

    /// Whether some destination mapping smaller than `c` inside
    /// `[t, t + c)` is derived from source node `sid` at the matching
    /// physical address (source page `s_phys` sits at `t`).
    fn small_same_source(&self, to: SpaceId, t: u64, c: PageSize, sid: NodeId, s_phys: u64) -> bool {
        let end = t + c.bytes();
        let mut cur = t;
        while let Some(h) = self.tables.find(to, cur, end) {
            if h.size >= c {
                return false;
            }
            let tn = self.store.node(h.node);
            if tn.parent == Some(sid) && tn.phys == s_phys + (tn.vaddr - t) {
                return true;
            }
            cur = h.vaddr + h.size.bytes();
        }
        false
    }

    /// Extend the rights of the part `[t, t + c)` of same-source destination
    /// mapping `tid` by `eff` (carving it out first if `tid` is larger).
    fn extend(&mut self, tid: NodeId, tn: Node, t: u64, c: PageSize, eff: Rights) {
        if tn.rights.contains(eff) {
            return;
        }
        let mut x = tid;
        if tn.size > c {
            self.carve(tid, tn.phys + (t - tn.vaddr), c);
            match self.node_at(tn.space, t) {
                Some(piece) => x = piece,
                None => return,
            }
        }
        let n = self.n(x);
        let rights = n.rights | eff;
        self.store.node_mut(x).rights = rights;
        self.tables.protect(n.space, n.vaddr, n.size, rights);
    }

    /// Move node `x` to `(to, t)` with rights `eff` (grant), keeping its
    /// parent, children and accessed status; revoke lost rights below it.
    fn move_node(&mut self, x: NodeId, to: SpaceId, t: u64, eff: Rights) {
        let n = self.n(x);
        let acc = self.tables.remove(n.space, n.vaddr, n.size);
        {
            let m = self.store.node_mut(x);
            m.space = to;
            m.vaddr = t;
            m.rights = eff;
        }
        self.tables.install(to, t, n.size, n.phys, eff, acc, x);
        let lost = n.rights.minus(eff);
        if !lost.is_empty() {
            self.revoke(x, Window::of(&n), lost, false, false);
        }
    }

    /// X.2 unmap (`flush_self == false`) and flush (`true`): revoke `rights`
    /// from every mapping derived, directly or indirectly, from the caller's
    /// mappings inside `region`, and with `flush_self` from those mappings
    /// too (σ0's roots excepted). A mapping left without rights disappears
    /// with everything derived from it.
    ///
    /// Returns the accessed status (referenced / written / executed) of the
    /// caller's mappings in the region and all mappings derived from them,
    /// and resets it — except on mappings that stick out of the region,
    /// whose status is reported but kept. Empty `rights` just reads the
    /// status.
    ///
    /// Errors: [`Error::OutOfMemory`] (splitting a large mapping that the
    /// region covers only in part needs nodes).
    pub fn unmap(&mut self, space: SpaceId, region: Region, rights: Rights, flush_self: bool) -> Result<Rights, Error> {
        let mut acc = Rights::NONE;
        let mut cursor = region.base();
        let end = region.end();
        while cursor < end {
            let Some(h) = self.tables.find(space, cursor, end) else { break };
            let m = h.node;
            let mn = self.n(m);
            let vstart = if mn.vaddr > cursor { mn.vaddr } else { cursor };
            let vend = if mn.vend() < end { mn.vend() } else { end };
            let w = Window::at(mn.phys + (vstart - mn.vaddr), vend - vstart);
            let include_self = flush_self && mn.parent.is_some();
            if rights.is_empty() {
                acc |= self.revoke(m, w, rights, include_self, true);
                cursor = vend;
                continue;
            }
            let g = PageSize::largest_fitting(63 - (vend - vstart).leading_zeros(), 0, PageSize::Size1G)
                .unwrap_or(PageSize::Size4K);
            let splits = self.count_carve(m, w, g, include_self);
            if self.reserve(splits, 0, None).is_err() {
                return Err(Error::OutOfMemory { stopped_at: vstart, accessed: acc });
            }
            if include_self && mn.size > g {
                self.carve(m, w.start, g);
                let mut cur = vstart;
                while let Some(h) = self.tables.find(space, cur, vend) {
                    let xn = self.n(h.node);
                    acc |= self.revoke(h.node, Window::of(&xn), rights, true, true);
                    cur = xn.vend();
                }
            } else {
                self.carve_children(m, w, g);
                acc |= self.revoke(m, w, rights, include_self, true);
            }
            cursor = vend;
        }
        Ok(acc)
    }

    /// Flush every mapping of `space` (for deleting a space): unmap of the
    /// whole lower half with all rights and `flush_self`. Never needs
    /// memory: no mapping is covered only in part.
    pub fn flush_space(&mut self, space: SpaceId) -> Result<(), Error> {
        let all = Region::new(0, Region::MAX_LOG2)?;
        self.unmap(space, all, Rights::ALL, true).map(|_| ())
    }
}
