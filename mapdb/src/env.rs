//! The two traits through which the kernel lends the database its memory and
//! its page tables: [`Store`] (mapping nodes) and [`Tables`] (the per-space
//! hardware side), and the [`Node`] record the store keeps.
//!
//! Both follow one rule: **reserve, then change**. Every operation step first
//! asks [`Store::reserve`] and [`Tables::reserve`] for everything it will
//! allocate; only if both succeed does it change anything, and then the
//! allocating calls ([`Store::alloc`], [`Tables::install`], [`Tables::split`])
//! are infallible.

use crate::types::{NodeId, OutOfMemory, PageSize, Rights, SpaceId};

/// One mapping: `size` bytes at `vaddr` in `space`, backed by physical
/// memory at `phys`, with `rights`, derived from `parent` (σ0's roots have
/// none). Children form a doubly linked sibling list under `first_child`.
///
/// The fields are private to the database; the kernel stores nodes and reads
/// them through the accessors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Node {
    pub(crate) space: SpaceId,
    pub(crate) vaddr: u64,
    pub(crate) phys: u64,
    pub(crate) size: PageSize,
    pub(crate) rights: Rights,
    pub(crate) parent: Option<NodeId>,
    pub(crate) first_child: Option<NodeId>,
    pub(crate) prev: Option<NodeId>,
    pub(crate) next: Option<NodeId>,
}

impl Node {
    /// A node with no links yet.
    pub(crate) const fn new(
        space: SpaceId,
        vaddr: u64,
        phys: u64,
        size: PageSize,
        rights: Rights,
        parent: Option<NodeId>,
    ) -> Node {
        Node { space, vaddr, phys, size, rights, parent, first_child: None, prev: None, next: None }
    }

    /// The address space holding the mapping.
    pub const fn space(&self) -> SpaceId {
        self.space
    }

    /// Virtual base address (aligned to `size`).
    pub const fn vaddr(&self) -> u64 {
        self.vaddr
    }

    /// Physical base address (aligned to `size`).
    pub const fn phys(&self) -> u64 {
        self.phys
    }

    /// Hardware page size.
    pub const fn size(&self) -> PageSize {
        self.size
    }

    /// One past the last virtual byte.
    pub const fn vend(&self) -> u64 {
        self.vaddr + self.size.bytes()
    }

    /// One past the last physical byte.
    pub const fn pend(&self) -> u64 {
        self.phys + self.size.bytes()
    }

    /// Access rights (never empty for a live node).
    pub const fn rights(&self) -> Rights {
        self.rights
    }

    /// The mapping this one was derived from; `None` for σ0's roots.
    pub const fn parent(&self) -> Option<NodeId> {
        self.parent
    }

    /// First derived mapping.
    pub const fn first_child(&self) -> Option<NodeId> {
        self.first_child
    }

    /// Next mapping derived from the same parent.
    pub const fn next_sibling(&self) -> Option<NodeId> {
        self.next
    }

    /// Previous mapping derived from the same parent.
    pub const fn prev_sibling(&self) -> Option<NodeId> {
        self.prev
    }
}

/// Storage for nodes, owned by the kernel (a slab, a free list...).
///
/// # Contract
/// * After `reserve(n)` returned `Ok`, the next `n` calls of `alloc` succeed
///   (frees in between may only help). The database never allocates more than
///   it reserved in the same step.
/// * `node`/`node_mut`/`free` are only called with ids returned by `alloc`
///   and not yet freed; `contains` may be called with any id.
/// * Ids of freed nodes may be reused by later `alloc` calls.
pub trait Store {
    /// Make sure the next `n` allocations succeed.
    fn reserve(&mut self, n: usize) -> Result<(), OutOfMemory>;
    /// Store `node`; infallible within a reservation.
    fn alloc(&mut self, node: Node) -> NodeId;
    /// Release a node.
    fn free(&mut self, id: NodeId);
    /// Read a live node.
    fn node(&self, id: NodeId) -> &Node;
    /// Change a live node.
    fn node_mut(&mut self, id: NodeId) -> &mut Node;
    /// Whether `id` names a live node (used by [`check_invariants`]).
    ///
    /// [`check_invariants`]: crate::Mdb::check_invariants
    fn contains(&self, id: NodeId) -> bool;
    /// Live nodes one by one in a fixed order: the first after `after`
    /// (`None`: the first of all). Used only by invariant checks.
    fn next_node(&self, after: Option<NodeId>) -> Option<NodeId>;
}

/// A hardware mapping as the page tables hold it, with the node the kernel
/// stores next to it (Pistachio calls this the link node).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HwMapping {
    /// Virtual base.
    pub vaddr: u64,
    /// Page size.
    pub size: PageSize,
    /// Physical base.
    pub phys: u64,
    /// Rights the hardware grants.
    pub rights: Rights,
    /// The database node describing it.
    pub node: NodeId,
}

/// What one step will do to the page tables, announced before it does it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TableNeed {
    /// Number of [`Tables::split`] calls (each replaces one large entry by a
    /// table of 512 smaller ones, so it needs one page-table page).
    pub splits: usize,
    /// The one [`Tables::install`] the step may make, if any: space, virtual
    /// address and size (intermediate tables may have to be created for it).
    pub install: Option<(SpaceId, u64, PageSize)>,
}

/// The kernel's per-space hardware side: page tables plus, for every present
/// entry, the [`NodeId`] that describes it.
///
/// # Contract
/// * After `reserve(need)` returned `Ok`, the `install` announced in `need`
///   and up to `need.splits` splits succeed without allocating. The database
///   announces every install and split of a step before making it.
/// * `find` sees every change at once (no caching across calls).
/// * Rights reductions and removals take effect in every TLB before the
///   call returns (or before the operation returns to user mode; the kernel
///   chooses, the database never depends on it).
/// * The database only removes, protects, splits or relinks entries it
///   installed, and only installs where nothing is mapped.
pub trait Tables {
    /// Prepare for one step (see [`TableNeed`]).
    fn reserve(&mut self, need: &TableNeed) -> Result<(), OutOfMemory>;
    /// The lowest-addressed mapping of `space` that intersects
    /// `[start, end)`, if any.
    fn find(&self, space: SpaceId, start: u64, end: u64) -> Option<HwMapping>;
    /// Enter a mapping into an empty place, with initial accessed status
    /// `accessed` (kept when a mapping moves or splits).
    #[allow(clippy::too_many_arguments)]
    fn install(
        &mut self,
        space: SpaceId,
        vaddr: u64,
        size: PageSize,
        phys: u64,
        rights: Rights,
        accessed: Rights,
        node: NodeId,
    );
    /// Remove a mapping; returns its accessed status.
    fn remove(&mut self, space: SpaceId, vaddr: u64, size: PageSize) -> Rights;
    /// Set a mapping's rights (up or down); accessed status is kept.
    fn protect(&mut self, space: SpaceId, vaddr: u64, size: PageSize, rights: Rights);
    /// Read a mapping's accessed status, and reset it if `clear`.
    fn accessed(&mut self, space: SpaceId, vaddr: u64, size: PageSize, clear: bool) -> Rights;
    /// Replace the mapping of `size` at `vaddr` by 512 mappings of the next
    /// smaller size covering the same physical range, each with the same
    /// rights, the same accessed status and (until relinked) the same node.
    fn split(&mut self, space: SpaceId, vaddr: u64, size: PageSize);
    /// Change the node stored with an existing mapping.
    fn relink(&mut self, space: SpaceId, vaddr: u64, size: PageSize, node: NodeId);
}

impl<S: Store + ?Sized> Store for &mut S {
    fn reserve(&mut self, n: usize) -> Result<(), OutOfMemory> {
        (**self).reserve(n)
    }
    fn alloc(&mut self, node: Node) -> NodeId {
        (**self).alloc(node)
    }
    fn free(&mut self, id: NodeId) {
        (**self).free(id)
    }
    fn node(&self, id: NodeId) -> &Node {
        (**self).node(id)
    }
    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        (**self).node_mut(id)
    }
    fn contains(&self, id: NodeId) -> bool {
        (**self).contains(id)
    }
    fn next_node(&self, after: Option<NodeId>) -> Option<NodeId> {
        (**self).next_node(after)
    }
}

impl<T: Tables + ?Sized> Tables for &mut T {
    fn reserve(&mut self, need: &TableNeed) -> Result<(), OutOfMemory> {
        (**self).reserve(need)
    }
    fn find(&self, space: SpaceId, start: u64, end: u64) -> Option<HwMapping> {
        (**self).find(space, start, end)
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
        (**self).install(space, vaddr, size, phys, rights, accessed, node)
    }
    fn remove(&mut self, space: SpaceId, vaddr: u64, size: PageSize) -> Rights {
        (**self).remove(space, vaddr, size)
    }
    fn protect(&mut self, space: SpaceId, vaddr: u64, size: PageSize, rights: Rights) {
        (**self).protect(space, vaddr, size, rights)
    }
    fn accessed(&mut self, space: SpaceId, vaddr: u64, size: PageSize, clear: bool) -> Rights {
        (**self).accessed(space, vaddr, size, clear)
    }
    fn split(&mut self, space: SpaceId, vaddr: u64, size: PageSize) {
        (**self).split(space, vaddr, size)
    }
    fn relink(&mut self, space: SpaceId, vaddr: u64, size: PageSize, node: NodeId) {
        (**self).relink(space, vaddr, size, node)
    }
}
