//! Unit tests: each operation, the split cases (2 MiB and 1 GiB), the
//! overmapping rules, accessed status, out-of-memory behaviour, deep trees and
//! the invariant checker itself.

use crate::testing::{MapTables, VecStore};
use crate::{Config, Error, Mdb, NodeId, PageSize, Region, Rights, SpaceId, Store, Tables};
use std::vec::Vec;

const S0: SpaceId = SpaceId(0);
const A: SpaceId = SpaceId(1);
const B: SpaceId = SpaceId(2);
const C: SpaceId = SpaceId(3);
const D: SpaceId = SpaceId(4);

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const G1: u64 = 0x4000_0000;

type Db = Mdb<VecStore, MapTables>;

fn db() -> Db {
    Mdb::new(VecStore::new(), MapTables::new(), Config { sigma0: S0, max_page: PageSize::Size1G })
}

/// A database whose σ0 owns `[0, 16M)` as eight 2 MiB roots.
fn db16() -> Db {
    let mut d = db();
    for i in 0..8 {
        d.add_root(i * M2, PageSize::Size2M, Rights::ALL).unwrap();
    }
    d
}

fn r(base: u64, log2: u8) -> Region {
    Region::new(base, log2).unwrap()
}

fn ok(d: &Db) {
    if let Err(v) = d.check_invariants() {
        panic!("invariant broken: {v:?}");
    }
}

/// (phys of `vaddr`, size, rights) of the mapping containing `vaddr`.
fn at(d: &Db, space: SpaceId, vaddr: u64) -> Option<(u64, PageSize, Rights)> {
    let (_, n) = d.lookup(space, vaddr)?;
    Some((n.phys() + (vaddr - n.vaddr()), n.size(), n.rights()))
}

/// The parent's (space, address of the same physical byte) of the mapping at
/// `vaddr`.
fn parent_of(d: &Db, space: SpaceId, vaddr: u64) -> Option<(SpaceId, u64)> {
    let (_, n) = d.lookup(space, vaddr)?;
    let p = d.node(n.parent()?);
    let phys = n.phys() + (vaddr - n.vaddr());
    Some((p.space(), p.vaddr() + (phys - p.phys())))
}

fn count(d: &Db, space: SpaceId) -> usize {
    d.tables().entries().filter(|(s, _, _)| *s == space).count()
}

/// One page-table entry with its node's parent: (space, vaddr, size, phys,
/// rights, accessed, parent's (space, vaddr)).
type Seen = (SpaceId, u64, PageSize, u64, Rights, Rights, Option<(SpaceId, u64)>);

/// Everything observable, for "nothing changed" comparisons.
fn snapshot(d: &Db) -> Vec<Seen> {
    d.tables()
        .entries()
        .map(|(s, v, e)| {
            let n = d.node(e.node);
            let p = n.parent().map(|p| (d.node(p).space(), d.node(p).vaddr()));
            (s, v, e.size, e.phys, e.rights, e.accessed, p)
        })
        .collect()
}

#[test]
fn roots() {
    let mut d = db();
    let id = d.add_root(0, PageSize::Size2M, Rights::ALL).unwrap();
    assert_eq!(d.node(id).parent(), None);
    assert_eq!(d.add_root(0x1000, PageSize::Size4K, Rights::ALL), Err(Error::RootOverlap));
    assert_eq!(d.add_root(0x1000, PageSize::Size2M, Rights::ALL), Err(Error::BadRegion));
    assert_eq!(d.add_root(M2, PageSize::Size2M, Rights::NONE), Err(Error::BadRights));
    assert_eq!(d.add_root(u64::MAX - K4 + 1, PageSize::Size4K, Rights::ALL), Err(Error::BadRegion));
    let mut small = Mdb::new(VecStore::new(), MapTables::new(), Config { sigma0: S0, max_page: PageSize::Size2M });
    assert_eq!(small.add_root(0, PageSize::Size1G, Rights::ALL), Err(Error::BadRegion));
    ok(&d);
}

#[test]
fn map_from_sigma0_and_rights_shrink() {
    let mut d = db16();
    d.map(S0, r(0x40_0000, 21), A, 0x1000_0000, Rights::RW).unwrap();
    assert_eq!(at(&d, A, 0x1000_0000), Some((0x40_0000, PageSize::Size2M, Rights::RW)));
    assert_eq!(parent_of(&d, A, 0x1000_0000), Some((S0, 0x40_0000)));
    // Asking for more than the source has gives the intersection.
    d.map(A, r(0x1000_0000, 12), B, 0x5000, Rights::ALL).unwrap();
    assert_eq!(at(&d, B, 0x5000), Some((0x40_0000, PageSize::Size4K, Rights::RW)));
    // Empty effective rights map nothing.
    d.map(A, r(0x1000_1000, 12), B, 0x6000, Rights::X).unwrap();
    assert_eq!(at(&d, B, 0x6000), None);
    ok(&d);
}

#[test]
fn map_piece_of_large_source_does_not_split_it() {
    let mut d = db16();
    d.map(S0, r(0, 21), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0x3000, 12), B, 0x10_0000, Rights::R).unwrap();
    assert_eq!(count(&d, A), 1);
    assert_eq!(at(&d, A, 0), Some((0, PageSize::Size2M, Rights::ALL)));
    assert_eq!(at(&d, B, 0x10_0000), Some((0x3000, PageSize::Size4K, Rights::R)));
    assert_eq!(parent_of(&d, B, 0x10_0000), Some((A, 0x3000)));
    assert_eq!(d.tables().splits_done, 0);
    ok(&d);
}

#[test]
fn map_breaks_region_into_largest_pages() {
    let mut d = db16();
    // 8 MiB from four 2 MiB roots: four 2 MiB pages.
    d.map(S0, r(0x80_0000, 23), A, 0x80_0000, Rights::ALL).unwrap();
    assert_eq!(count(&d, A), 4);
    // A 2 MiB region whose source is made of 4 KiB pages: 4 KiB pages.
    d.map(S0, r(0, 12), B, 0, Rights::ALL).unwrap();
    d.map(S0, r(0x5000, 12), B, 0x5000, Rights::ALL).unwrap();
    d.map(B, r(0, 21), C, M2, Rights::ALL).unwrap();
    assert_eq!(count(&d, C), 2);
    assert_eq!(at(&d, C, M2 + 0x5000), Some((0x5000, PageSize::Size4K, Rights::ALL)));
    // Source holes are skipped (σ0 owns only 16 MiB).
    d.map(S0, r(0, 25), D, 0, Rights::ALL).unwrap();
    assert_eq!(count(&d, D), 8);
    ok(&d);
}

#[test]
fn max_page_limits_chunks() {
    let mut d = Mdb::new(VecStore::new(), MapTables::new(), Config { sigma0: S0, max_page: PageSize::Size2M });
    for i in 0..4 {
        d.add_root(i * M2, PageSize::Size2M, Rights::ALL).unwrap();
    }
    d.map(S0, r(0, 23), A, G1, Rights::ALL).unwrap();
    assert_eq!(d.tables().entries().filter(|(s, _, e)| *s == A && e.size == PageSize::Size2M).count(), 4);
    ok(&d);
}

#[test]
fn refused_transfers() {
    let mut d = db16();
    d.map(S0, r(0, 12), A, 0, Rights::ALL).unwrap();
    assert_eq!(d.map(A, r(0, 12), S0, 0x10_0000, Rights::ALL), Err(Error::IntoSigma0));
    assert_eq!(d.grant(A, r(0, 12), S0, 0x10_0000, Rights::ALL), Err(Error::IntoSigma0));
    assert_eq!(d.map(A, r(0, 13), B, 0x1000, Rights::ALL), Err(Error::BadRegion));
    assert_eq!(d.map(A, r(0, 12), B, !0xfff, Rights::ALL), Err(Error::BadRegion));
    // Mapping a page onto itself changes nothing.
    let before = snapshot(&d);
    d.map(A, r(0, 12), A, 0, Rights::ALL).unwrap();
    d.grant(A, r(0, 12), A, 0, Rights::R).unwrap();
    assert_eq!(snapshot(&d), before);
    ok(&d);
}

#[test]
fn grant_moves_node_with_children() {
    let mut d = db16();
    d.map(S0, r(0, 12), A, 0x1000, Rights::ALL).unwrap();
    d.map(A, r(0x1000, 12), C, 0x7000, Rights::RW).unwrap();
    let (id, _) = d.lookup(A, 0x1000).unwrap();
    d.grant(A, r(0x1000, 12), B, 0x9000, Rights::ALL).unwrap();
    assert_eq!(d.lookup(A, 0x1000), None);
    let (moved, n) = d.lookup(B, 0x9000).unwrap();
    assert_eq!(moved, id, "the node itself moves");
    assert_eq!(parent_of(&d, B, 0x9000), Some((S0, 0)));
    assert_eq!(n.rights(), Rights::ALL);
    assert_eq!(parent_of(&d, C, 0x7000), Some((B, 0x9000)));
    ok(&d);
}

#[test]
fn grant_with_fewer_rights_revokes_below() {
    let mut d = db16();
    d.map(S0, r(0, 12), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0, 12), C, 0, Rights::RW).unwrap();
    d.map(A, r(0, 12), D, 0, Rights::W).unwrap();
    d.map(C, r(0, 12), D, 0x1000, Rights::ALL).unwrap();
    d.grant(A, r(0, 12), B, 0, Rights::RX).unwrap();
    assert_eq!(at(&d, B, 0).map(|x| x.2), Some(Rights::RX));
    assert_eq!(at(&d, C, 0).map(|x| x.2), Some(Rights::R));
    assert_eq!(at(&d, D, 0), None, "a write-only child loses everything");
    assert_eq!(at(&d, D, 0x1000).map(|x| x.2), Some(Rights::R));
    ok(&d);
}

#[test]
fn grant_from_sigma0_acts_as_map() {
    let mut d = db16();
    d.grant(S0, r(0, 12), A, 0, Rights::ALL).unwrap();
    assert_eq!(at(&d, S0, 0).map(|x| x.1), Some(PageSize::Size2M));
    assert_eq!(parent_of(&d, A, 0), Some((S0, 0)));
    ok(&d);
}

#[test]
fn grant_part_of_large_mapping_splits_it_and_its_children() {
    let mut d = db16();
    d.map(S0, r(0, 21), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0, 21), C, M2, Rights::RW).unwrap(); // same-size child: must split too
    d.map(A, r(0x5000, 12), D, 0x3000, Rights::R).unwrap(); // smaller child in the granted page
    d.map(A, r(0x8000, 12), D, 0x4000, Rights::R).unwrap(); // smaller child elsewhere
    d.grant(A, r(0x5000, 12), B, 0x1000, Rights::ALL).unwrap();
    assert_eq!(count(&d, A), 511);
    assert_eq!(at(&d, A, 0x5000), None);
    assert_eq!(at(&d, A, 0x6000), Some((0x6000, PageSize::Size4K, Rights::ALL)));
    assert_eq!(at(&d, B, 0x1000), Some((0x5000, PageSize::Size4K, Rights::ALL)));
    assert_eq!(count(&d, C), 512);
    assert_eq!(parent_of(&d, C, M2 + 0x5000), Some((B, 0x1000)));
    assert_eq!(parent_of(&d, C, M2 + 0x6000), Some((A, 0x6000)));
    assert_eq!(parent_of(&d, D, 0x3000), Some((B, 0x1000)));
    assert_eq!(parent_of(&d, D, 0x4000), Some((A, 0x8000)));
    assert_eq!(d.tables().splits_done, 2);
    ok(&d);
}

#[test]
fn unmap_revokes_derived_recursively() {
    let mut d = db16();
    d.map(S0, r(0, 12), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0, 12), B, 0, Rights::RW).unwrap();
    d.map(B, r(0, 12), C, 0, Rights::W).unwrap();
    d.map(B, r(0, 12), D, 0, Rights::ALL).unwrap();
    d.unmap(A, r(0, 12), Rights::W, false).unwrap();
    assert_eq!(at(&d, A, 0).map(|x| x.2), Some(Rights::ALL), "unmap keeps the caller's own");
    assert_eq!(at(&d, B, 0).map(|x| x.2), Some(Rights::R));
    assert_eq!(at(&d, C, 0), None);
    assert_eq!(at(&d, D, 0).map(|x| x.2), Some(Rights::R));
    d.unmap(A, r(0, 12), Rights::ALL, false).unwrap();
    assert_eq!(at(&d, B, 0), None);
    assert_eq!(at(&d, D, 0), None);
    assert_eq!(d.store().live(), 9, "8 roots + A's page");
    ok(&d);
}

#[test]
fn flush_removes_own_mapping_but_never_roots() {
    let mut d = db16();
    d.map(S0, r(0, 12), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0, 12), B, 0, Rights::ALL).unwrap();
    d.unmap(A, r(0, 12), Rights::X, true).unwrap();
    assert_eq!(at(&d, A, 0).map(|x| x.2), Some(Rights::RW));
    assert_eq!(at(&d, B, 0).map(|x| x.2), Some(Rights::RW));
    d.unmap(A, r(0, 12), Rights::ALL, true).unwrap();
    assert_eq!(at(&d, A, 0), None);
    assert_eq!(at(&d, B, 0), None);
    d.map(S0, r(0, 12), A, 0, Rights::ALL).unwrap();
    d.unmap(S0, r(0, 24), Rights::ALL, true).unwrap();
    assert_eq!(at(&d, A, 0), None);
    assert_eq!(count(&d, S0), 8, "roots stay");
    ok(&d);
}

#[test]
fn unmap_part_of_derived_large_mapping_splits_it() {
    let mut d = db16();
    d.map(S0, r(0, 21), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0, 21), B, M2, Rights::ALL).unwrap();
    d.unmap(A, r(0x4000, 14), Rights::ALL, false).unwrap(); // 16 KiB
    assert_eq!(count(&d, A), 1, "the caller's own mapping is not split");
    assert_eq!(count(&d, B), 508);
    for i in 4..8 {
        assert_eq!(at(&d, B, M2 + i * K4), None);
    }
    assert_eq!(at(&d, B, M2 + 0x8000), Some((0x8000, PageSize::Size4K, Rights::ALL)));
    ok(&d);
}

#[test]
fn flush_part_of_own_large_mapping() {
    let mut d = db16();
    d.map(S0, r(0, 21), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0, 21), B, 0, Rights::ALL).unwrap();
    d.map(A, r(0x1000, 12), C, 0, Rights::ALL).unwrap();
    d.map(A, r(0x9000, 12), C, 0x1000, Rights::ALL).unwrap();
    d.unmap(A, r(0x8000, 15), Rights::W, true).unwrap(); // 32 KiB at 32 KiB
    assert_eq!(count(&d, A), 512);
    assert_eq!(at(&d, A, 0x8000).map(|x| x.2), Some(Rights::RX));
    assert_eq!(at(&d, A, 0x10000).map(|x| x.2), Some(Rights::ALL));
    assert_eq!(at(&d, B, 0x9000).map(|x| x.2), Some(Rights::RX));
    assert_eq!(at(&d, B, 0x7000).map(|x| x.2), Some(Rights::ALL));
    assert_eq!(at(&d, C, 0).map(|x| x.2), Some(Rights::ALL));
    assert_eq!(at(&d, C, 0x1000).map(|x| x.2), Some(Rights::RX));
    assert_eq!(parent_of(&d, C, 0x1000), Some((A, 0x9000)));
    ok(&d);
}

#[test]
fn one_gig_split_is_two_levels() {
    let mut d = db();
    d.add_root(G1, PageSize::Size1G, Rights::ALL).unwrap();
    d.map(S0, r(G1, 30), A, G1, Rights::ALL).unwrap();
    d.map(A, r(G1, 30), B, 2 * G1, Rights::ALL).unwrap();
    d.map(A, r(G1 + 2 * M2, 21), C, 0, Rights::ALL).unwrap(); // a 2 MiB child in another piece
    assert_eq!(at(&d, B, 2 * G1).map(|x| x.1), Some(PageSize::Size1G));
    d.unmap(A, r(G1 + 0x3000, 12), Rights::ALL, false).unwrap();
    assert_eq!(d.tables().splits_done, 2, "1G → 2M, then one 2M → 4K");
    assert_eq!(count(&d, A), 1);
    assert_eq!(count(&d, B), 511 + 511);
    assert_eq!(at(&d, B, 2 * G1 + 0x3000), None);
    assert_eq!(at(&d, B, 2 * G1 + 0x4000).map(|x| x.1), Some(PageSize::Size4K));
    assert_eq!(at(&d, B, 2 * G1 + M2).map(|x| x.1), Some(PageSize::Size2M));
    assert_eq!(at(&d, C, 0).map(|x| x.1), Some(PageSize::Size2M));
    // Flushing a 4 KiB page of the caller's own 1 GiB mapping splits it and,
    // with it, the same-size children (C's 2 MiB child is smaller: it moves).
    d.map(A, r(G1, 30), D, 0, Rights::ALL).unwrap();
    d.unmap(A, r(G1 + 2 * M2 + 0x5000, 12), Rights::ALL, true).unwrap();
    assert_eq!(count(&d, A), 511 + 511);
    assert_eq!(count(&d, D), 511 + 511);
    assert_eq!(count(&d, C), 511, "C's 2 MiB child split under A's 2 MiB piece");
    assert_eq!(parent_of(&d, C, 0x6000), Some((A, G1 + 2 * M2 + 0x6000)));
    ok(&d);
}

#[test]
fn one_gig_grant_and_overmap_of_a_part() {
    let mut d = db();
    d.add_root(0, PageSize::Size1G, Rights::ALL).unwrap();
    d.map(S0, r(0, 30), A, G1, Rights::ALL).unwrap();
    d.map(A, r(G1, 30), B, G1, Rights::RW).unwrap();
    d.map(A, r(G1 + 5 * M2, 21), C, 0, Rights::R).unwrap();
    // Grant 4 KiB out of A's 1 GiB page: A splits twice, and so do B's
    // same-size child and C's 2 MiB child of the piece concerned.
    d.grant(A, r(G1 + 5 * M2 + 0x1000, 12), D, 0x7000, Rights::ALL).unwrap();
    assert_eq!(d.tables().splits_done, 5, "A 1G, B 1G, A 2M, B 2M, C 2M");
    assert_eq!(count(&d, A), 511 + 511);
    assert_eq!(count(&d, B), 511 + 512);
    assert_eq!(at(&d, D, 0x7000), Some((5 * M2 + 0x1000, PageSize::Size4K, Rights::ALL)));
    assert_eq!(parent_of(&d, D, 0x7000), Some((S0, 5 * M2 + 0x1000)));
    assert_eq!(parent_of(&d, B, G1 + 5 * M2 + 0x1000), Some((D, 0x7000)));
    assert_eq!(parent_of(&d, B, G1 + 7 * M2), Some((A, G1 + 7 * M2)));
    assert_eq!(count(&d, C), 512, "C's child split with A's 2 MiB piece");
    assert_eq!(parent_of(&d, C, 0x1000), Some((D, 0x7000)));
    ok(&d);
    // Overmapping 4 KiB in the middle of B's remaining 2 MiB pieces splits
    // just that piece.
    d.map(S0, r(0x3000, 12), C, 0x40_0000, Rights::ALL).unwrap();
    d.map(C, r(0x40_0000, 12), B, G1 + 9 * M2 + 0x2000, Rights::R).unwrap();
    assert_eq!(count(&d, B), 510 + 512 + 512);
    assert_eq!(at(&d, B, G1 + 9 * M2 + 0x2000), Some((0x3000, PageSize::Size4K, Rights::R)));
    assert_eq!(at(&d, B, G1 + 9 * M2 + 0x3000), Some((9 * M2 + 0x3000, PageSize::Size4K, Rights::RW)));
    ok(&d);
}

#[test]
fn overmap_replaces_different_mapping() {
    let mut d = db16();
    d.map(S0, r(0, 12), A, 0, Rights::ALL).unwrap();
    d.map(S0, r(K4, 12), C, 0, Rights::ALL).unwrap();
    d.map(A, r(0, 12), B, 0x5000, Rights::ALL).unwrap();
    d.map(B, r(0x5000, 12), D, 0, Rights::ALL).unwrap();
    d.map(C, r(0, 12), B, 0x5000, Rights::R).unwrap();
    assert_eq!(at(&d, B, 0x5000), Some((K4, PageSize::Size4K, Rights::R)));
    assert_eq!(at(&d, D, 0), None, "the old mapping's subtree went with it");
    // Same physical page, but from another source: still replaced.
    d.map(S0, r(K4, 12), A, 0x1000, Rights::ALL).unwrap();
    d.map(B, r(0x5000, 12), D, 0, Rights::ALL).unwrap();
    d.map(A, r(0x1000, 12), B, 0x5000, Rights::RW).unwrap();
    assert_eq!(parent_of(&d, B, 0x5000), Some((A, 0x1000)));
    assert_eq!(at(&d, D, 0), None);
    ok(&d);
}

#[test]
fn overmap_same_source_extends_rights() {
    let mut d = db16();
    d.map(S0, r(0, 12), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0, 12), B, 0x5000, Rights::R).unwrap();
    d.map(B, r(0x5000, 12), D, 0, Rights::R).unwrap();
    let (id, _) = d.lookup(B, 0x5000).unwrap();
    d.map(A, r(0, 12), B, 0x5000, Rights::RW).unwrap();
    let (id2, n) = d.lookup(B, 0x5000).unwrap();
    assert_eq!((id2, n.rights()), (id, Rights::RW));
    assert_eq!(at(&d, D, 0).map(|x| x.2), Some(Rights::R), "the subtree stays");
    ok(&d);
}

#[test]
fn overmap_same_source_small_pages_keep_their_place() {
    let mut d = db16();
    d.map(S0, r(0, 21), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0x3000, 12), B, 0x3000, Rights::R).unwrap();
    d.map(B, r(0x3000, 12), D, 0, Rights::R).unwrap();
    d.map(A, r(0, 21), B, 0, Rights::RW).unwrap();
    assert_eq!(at(&d, B, 0x3000), Some((0x3000, PageSize::Size4K, Rights::RW)));
    assert_eq!(at(&d, D, 0).map(|x| x.2), Some(Rights::R));
    assert_eq!(at(&d, B, 0x1f_f000), Some((0x1f_f000, PageSize::Size4K, Rights::RW)));
    // Without a same-source page, a whole large page replaces small ones.
    d.map(S0, r(M2, 12), C, M2 + 0x7000, Rights::ALL).unwrap();
    d.map(A, r(0, 21), C, M2, Rights::RW).unwrap();
    assert_eq!(at(&d, C, M2 + 0x7000), Some((0x7000, PageSize::Size2M, Rights::RW)));
    assert_eq!(count(&d, C), 1);
    ok(&d);
}

#[test]
fn overmap_part_of_larger_mapping_splits_it() {
    let mut d = db16();
    d.map(S0, r(0, 21), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0, 21), B, 0, Rights::ALL).unwrap();
    d.map(S0, r(0x40_0000, 12), C, 0, Rights::ALL).unwrap();
    d.map(C, r(0, 12), B, 0x7000, Rights::R).unwrap();
    assert_eq!(count(&d, B), 512);
    assert_eq!(at(&d, B, 0x7000), Some((0x40_0000, PageSize::Size4K, Rights::R)));
    assert_eq!(at(&d, B, 0x8000), Some((0x8000, PageSize::Size4K, Rights::ALL)));
    // Same source, larger target, more rights: only that piece is extended.
    d.map(S0, r(M2, 21), C, M2, Rights::ALL).unwrap();
    d.map(C, r(M2, 21), D, 0, Rights::R).unwrap();
    d.map(C, r(M2 + 0x1000, 12), D, 0x1000, Rights::RW).unwrap();
    assert_eq!(at(&d, D, 0x1000).map(|x| x.2), Some(Rights::RW));
    assert_eq!(at(&d, D, 0x2000).map(|x| x.2), Some(Rights::R));
    assert_eq!(parent_of(&d, D, 0x1000), Some((C, M2 + 0x1000)));
    ok(&d);
}

#[test]
fn replacing_the_source_ancestor_maps_nothing() {
    let mut d = db16();
    d.map(S0, r(0, 12), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0, 12), B, 0, Rights::ALL).unwrap();
    // B maps its page back to A at A's address: A's mapping is the source's
    // parent, not the same source, so it is replaced, and the source with it.
    d.map(B, r(0, 12), A, 0, Rights::ALL).unwrap();
    assert_eq!(at(&d, A, 0), None);
    assert_eq!(at(&d, B, 0), None);
    ok(&d);
}

#[test]
fn map_within_one_space_and_overlapping_windows() {
    let mut d = db16();
    d.map(S0, r(0, 21), A, 0, Rights::ALL).unwrap();
    // A maps its first page onto its second: the 2 MiB source splits (as
    // the destination), the new page derives from piece 0.
    d.map(A, r(0, 12), A, 0x1000, Rights::R).unwrap();
    assert_eq!(at(&d, A, 0x1000), Some((0, PageSize::Size4K, Rights::R)));
    assert_eq!(parent_of(&d, A, 0x1000), Some((A, 0)));
    // Grant a page within the same space.
    d.grant(A, r(0x2000, 12), A, 0x3000, Rights::ALL).unwrap();
    assert_eq!(at(&d, A, 0x2000), None);
    assert_eq!(at(&d, A, 0x3000), Some((0x2000, PageSize::Size4K, Rights::ALL)));
    ok(&d);
}

#[test]
fn accessed_status() {
    let mut d = db16();
    d.map(S0, r(0, 12), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0, 12), B, 0x8000, Rights::RW).unwrap();
    assert!(d.tables_mut().touch(B, 0x8000, Rights::W));
    assert!(!d.tables_mut().touch(B, 0x8000, Rights::X), "no execute right");
    assert!(d.tables_mut().touch(A, 0, Rights::X));
    assert_eq!(d.unmap(A, r(0, 12), Rights::NONE, false), Ok(Rights::W | Rights::X));
    assert_eq!(d.unmap(A, r(0, 12), Rights::NONE, false), Ok(Rights::NONE), "reset");
    assert!(d.tables_mut().touch(B, 0x8000, Rights::R));
    assert_eq!(d.unmap(A, r(0, 12), Rights::ALL, false), Ok(Rights::R), "removed mappings report too");
    // A mapping sticking out of the region is reported, not reset.
    d.map(S0, r(M2, 21), C, M2, Rights::ALL).unwrap();
    assert!(d.tables_mut().touch(C, M2 + 0x5000, Rights::R));
    assert_eq!(d.unmap(C, r(M2, 12), Rights::NONE, false), Ok(Rights::R));
    assert_eq!(d.unmap(C, r(M2, 21), Rights::NONE, false), Ok(Rights::R));
    assert_eq!(d.unmap(C, r(M2, 21), Rights::NONE, false), Ok(Rights::NONE));
    // Grant carries the status along.
    assert!(d.tables_mut().touch(C, M2, Rights::W));
    d.grant(C, r(M2, 21), D, 0, Rights::ALL).unwrap();
    assert_eq!(d.unmap(D, r(0, 21), Rights::NONE, false), Ok(Rights::W));
    ok(&d);
}

#[test]
fn out_of_memory_changes_nothing_in_the_failed_step() {
    let mut d = db16();
    d.map(S0, r(0, 21), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0, 21), B, 0, Rights::ALL).unwrap();
    let live = d.store().live();
    d.store_mut_for_tests().set_limit(Some(live + 100));
    let before = snapshot(&d);
    assert_eq!(
        d.unmap(A, r(0x1000, 12), Rights::ALL, false),
        Err(Error::OutOfMemory { stopped_at: 0x1000, accessed: Rights::NONE })
    );
    assert_eq!(snapshot(&d), before);
    ok(&d);
    // Page-table memory can run out too.
    d.store_mut_for_tests().set_limit(None);
    d.tables_mut().set_split_limit(Some(0));
    assert!(matches!(d.grant(A, r(0x1000, 12), C, 0, Rights::ALL), Err(Error::OutOfMemory { .. })));
    assert_eq!(snapshot(&d), before);
    d.tables_mut().set_split_limit(None);
    d.unmap(A, r(0x1000, 12), Rights::ALL, false).unwrap();
    assert_eq!(count(&d, B), 511);
    ok(&d);
}

#[test]
fn out_of_memory_stops_between_steps() {
    let mut d = db16();
    d.map(S0, r(0, 22), A, 0, Rights::ALL).unwrap(); // two 2 MiB pages
    let live = d.store().live();
    d.store_mut_for_tests().set_limit(Some(live + 1));
    assert_eq!(
        d.map(A, r(0, 22), B, 0, Rights::ALL),
        Err(Error::OutOfMemory { stopped_at: M2, accessed: Rights::NONE })
    );
    assert!(at(&d, B, 0).is_some());
    assert!(at(&d, B, M2).is_none());
    ok(&d);
}

#[test]
fn deep_trees_need_no_recursion() {
    let mut d = db16();
    d.map(S0, r(0, 12), A, 0, Rights::ALL).unwrap();
    // A chain 20000 deep, alternating between two spaces.
    let depth = 20_000u64;
    for i in 0..depth {
        let (from, to) = if i % 2 == 0 { (A, B) } else { (B, A) };
        d.map(from, r(i * K4, 12), to, (i + 1) * K4, Rights::ALL).unwrap();
    }
    ok(&d);
    d.unmap(A, r(K4 * 10, 12), Rights::W, false).unwrap();
    assert_eq!(at(&d, B, (depth - 1) * K4).map(|x| x.2), Some(Rights::RX));
    d.unmap(S0, r(0, 24), Rights::ALL, false).unwrap();
    assert_eq!(d.store().live(), 8);
    assert!(d.tables().entries().all(|(s, _, _)| s == S0));
    ok(&d);
}

#[test]
fn flush_space_removes_everything() {
    let mut d = db16();
    d.map(S0, r(0, 23), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0, 22), B, 0, Rights::ALL).unwrap();
    d.map(B, r(0, 12), C, 0, Rights::ALL).unwrap();
    d.flush_space(A).unwrap();
    assert_eq!(d.store().live(), 8);
    ok(&d);
}

#[test]
fn checker_finds_corruption() {
    let mut d = db16();
    d.map(S0, r(0, 12), A, 0, Rights::ALL).unwrap();
    d.map(A, r(0, 12), B, 0, Rights::R).unwrap();
    ok(&d);
    // Page tables grant more than the database knows of.
    d.tables_mut().protect(B, 0, PageSize::Size4K, Rights::RW);
    assert!(d.check_invariants().is_err());
    d.tables_mut().protect(B, 0, PageSize::Size4K, Rights::R);
    ok(&d);
    // A child with more rights than its parent.
    d.unmap(A, r(0, 12), Rights::X, true).unwrap();
    let (id, _) = d.lookup(B, 0).unwrap();
    d.store_mut_for_tests().node_mut(id).rights = Rights::ALL;
    d.tables_mut().protect(B, 0, PageSize::Size4K, Rights::ALL);
    let v = d.check_invariants().unwrap_err();
    assert_eq!(v.node, Some(id));
    // A stray page-table entry.
    let mut d = db16();
    let root: NodeId = d.lookup(S0, 0).unwrap().0;
    d.tables_mut().reserve(&crate::TableNeed { splits: 0, install: Some((S0, G1, PageSize::Size4K)) }).unwrap();
    d.tables_mut().install(S0, G1, PageSize::Size4K, G1, Rights::ALL, Rights::NONE, root);
    assert!(d.check_invariants().is_err());
}

impl Db {
    /// Test-only access to the store (the kernel never needs it).
    fn store_mut_for_tests(&mut self) -> &mut VecStore {
        &mut self.store
    }
}
