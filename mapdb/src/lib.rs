//! `mapdb`: Tern's mapping database — L4's recursive address spaces
//! (Liedtke 1995; L4 X.2 *map*, *grant*, *unmap* / *flush*).
//!
//! # The model
//!
//! σ0's space holds the physical memory as idempotent mappings
//! (`vaddr == phys`), the *roots*, registered by the kernel at boot with
//! [`Mdb::add_root`]. Every other mapping is *derived* from exactly one
//! mapping, its parent:
//!
//! * **map** makes a child mapping in the receiver; its rights are the
//!   source's rights ∩ the requested rights (rights only shrink);
//! * **grant** moves the mapping to the receiver: the granter loses it, the
//!   node keeps its parent and its children;
//! * **unmap** `(fpage, rights, flush_self)` revokes `rights` from everything
//!   derived (recursively) from the caller's mappings in the fpage, and with
//!   `flush_self` (X.2's *flush*) from those mappings too; a mapping left
//!   with no rights disappears with its whole subtree. It returns the
//!   accessed status (referenced / written / executed) gathered from the
//!   page tables of the mappings it visited, and resets it.
//!
//! The tree for one 2 MiB root, after σ0 mapped it to A, A mapped a 4 KiB
//! piece of it to B and C, and C mapped that on to D:
//!
//! ```text
//!   σ0  [phys 0x200000, 2M, rwx]          root: parent = none
//!     │ first_child
//!     ▼
//!   A   [va 0x40200000, 2M, rw-]          map σ0 → A  (rights ∩ rw-)
//!     │ first_child
//!     ▼
//!   B   [va 0x1000, 4K, r--] ◄──prev/next──► C [va 0x8000, 4K, rw-]
//!                                           │ first_child
//!                                           ▼
//!                                           D [va 0x3000, 4K, r--]
//!
//!   every node: space, vaddr, phys, size, rights,
//!               parent, first_child, prev, next   (NodeId = u32 handles)
//! ```
//!
//! A child may be smaller than its parent (B, C are 4 KiB pieces of A's
//! 2 MiB page; their `phys` lies inside A's), never larger.
//!
//! # Kernel integration
//!
//! The database owns no memory and no page tables. The kernel implements:
//!
//! * [`Store`]: node storage (`reserve(n)`, then infallible `alloc`, `free`,
//!   access by [`NodeId`]);
//! * [`Tables`]: the per-space hardware side: find the mapping at an address
//!   (with its linked node), install / remove / protect / split a hardware
//!   mapping, read and reset accessed bits, and `reserve` page-table memory
//!   for a step.
//!
//! Module `testing` (feature `testing`, and in this crate's tests) has simple
//! `alloc`-based implementations of both.
//!
//! The kernel does the X.2 decoding first: it turns a send fpage, receive
//! window and send base into a source [`Region`] and a destination address,
//! clips fpages to the user area, keeps the KIP and UTCB areas out, and
//! turns the X.2 "complete address space" fpage into a region.
//!
//! # Page sizes and splitting
//!
//! Mappings are hardware pages: 4 KiB, 2 MiB or 1 GiB (at most
//! [`Config::max_page`]). Map and grant break a region into the largest
//! pages that the source and destination alignment, the rest of the region
//! and the source mapping allow. When an operation covers only part of a
//! large mapping, that mapping is **split**: 1 GiB → 512 × 2 MiB, 2 MiB →
//! 512 × 4 KiB, down to the size needed and only along the covered part. Each
//! piece keeps the parent and rights; derived mappings go under the piece
//! that contains them, and derived mappings of the *same* size split with
//! it. Splits happen when
//!
//! * unmap revokes rights from part of a derived mapping (or, with
//!   `flush_self`, of the caller's own);
//! * grant moves part of a mapping (the granter keeps the rest);
//! * map or grant replaces, or extends the rights of, part of a mapping the
//!   receiver already has.
//!
//! Mapping a 4 KiB piece of a 2 MiB source does **not** split the source:
//! the new 4 KiB mapping is simply a smaller child. (Splitting would let a
//! receiver's choice of window cost the sender's tree 512 nodes, and is not
//! needed for any invariant.) σ0's roots therefore never split: nothing is
//! mapped into σ0, a grant from σ0 acts as map, and roots are never
//! revoked.
//!
//! # Semantics in detail
//!
//! * **Overmapping.** When the receiver already has a mapping at a
//!   destination page, it is unmapped with everything derived from it
//!   first — unless it is the same physical page derived from the same source
//!   mapping (only for map), in which case its rights are extended by the
//!   new effective rights and its subtree stays. If replacing removes the
//!   source itself (the receiver's old mapping was the source's ancestor),
//!   nothing is mapped for that page.
//! * A page mapped or granted onto itself (same space, same address), and a
//!   page whose effective rights are empty, is left unchanged.
//! * **Grant with fewer rights** revokes the difference from the granted
//!   mapping's subtree (like an unmap of those rights).
//! * **σ0.** Nothing can be mapped or granted into σ0's space
//!   ([`Error::IntoSigma0`]). Roots cannot move: granting from σ0 acts as
//!   map. Roots are never revoked: flush by σ0 only revokes derived mappings.
//! * **Accessed status.** Unmap reports the OR of the accessed bits of the
//!   caller's mappings in the region and of every mapping derived from them,
//!   and resets those bits — except on a mapping that sticks out of the
//!   region, which is reported but not reset (it also covers memory outside
//!   the region). Splitting copies a page's status to all pieces, grant
//!   carries it along, so the report may be larger than exact, never
//!   smaller.
//!
//! # Out of memory
//!
//! An operation is a sequence of steps in ascending address order (one
//! hardware-page-sized chunk for map/grant, one caller mapping for unmap).
//! Each step computes exactly the nodes and page-table memory it will
//! allocate, reserves them through [`Store::reserve`] and
//! [`Tables::reserve`], and only then changes anything; after that nothing
//! can fail. Out of memory therefore stops an operation *between* steps:
//! [`Error::OutOfMemory`] tells where, the part below was done completely,
//! the part above not at all, and all invariants hold.
//!
//! # Costs
//!
//! Costs grow with the number of mappings touched, never with memory size or
//! the number of spaces:
//!
//! * map / grant of one chunk: O(1) plus removal of what the destination
//!   held there (its subtrees) plus splits;
//! * unmap: O(caller's mappings in the region + their children lists + the
//!   revoked subtrees);
//! * a split: 512 node operations and page-table entries per split node —
//!   **splitting a 1 GiB page down to 4 KiB is 2 × 512** (1 GiB → 2 MiB, then
//!   the one 2 MiB piece needed → 4 KiB), for each same-size descendant too;
//! * no walk recurses: stack use is constant whatever the tree depth.
//!
//! # Invariants
//!
//! [`Mdb::check_invariants`] verifies all of these:
//!
//! 1. Every mapping is aligned to its size (virtual and physical), has
//!    non-empty rights and a size no larger than `max_page`.
//! 2. A mapping without a parent is a root: an idempotent mapping in σ0's
//!    space; σ0's space holds nothing else.
//! 3. Every non-root mapping has a live parent whose rights include its own,
//!    whose size is at least its own, and whose physical range contains its
//!    own. Parent chains end in a root (no cycles).
//! 4. Sibling lists are consistent (`prev`/`next`/`first_child`/`parent`
//!    agree).
//! 5. No two mappings of one space overlap.
//! 6. The page tables agree with the database: every node has exactly its
//!    entry (address, size, physical address, rights, linked node) and every
//!    entry in a space that holds nodes has its node.
//!
//! # Testing
//!
//! Host unit tests cover each operation, the 2 MiB and 1 GiB split cases,
//! overmapping, accessed status and out-of-memory stops. Property tests run
//! random sequences of map / grant / unmap / flush / accesses over five
//! spaces in a 16 MiB window against a naive 4 KiB-granular reference model
//! and compare every page (physical page, rights, parent) after every
//! operation, plus a variant with tight memory limits
//! (`PROPTEST_CASES`, default 64, × 200 operations). The `testing` stores
//! panic if the database allocates, installs or splits beyond what it
//! reserved, so the reservation counts are checked as well. The crate is
//! also built for `x86_64-unknown-none` to catch `no_std` breakage.
//!
//! # Safety
//!
//! No `unsafe` code.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

#[cfg(any(test, feature = "testing"))]
extern crate alloc;

mod check;
mod db;
mod env;
mod tree;
mod types;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod model_tests;

pub use check::Violation;
pub use db::{Config, Mdb};
pub use env::{HwMapping, Node, Store, TableNeed, Tables};
pub use types::{Error, NodeId, OutOfMemory, PageSize, Region, Rights, SpaceId, SPLIT_FANOUT};
