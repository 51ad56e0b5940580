//! Tests for the range set and usable-RAM computation: hand-picked edge cases, and
//! property tests against a bitmap model over a small address range.

use super::*;
use proptest::prelude::*;

const RAM: u32 = MemmapEntry::RAM;
const RESERVED: u32 = MemmapEntry::RESERVED;
const ACPI: u32 = MemmapEntry::ACPI;

fn set_of<const N: usize>(ranges: &[(u64, u64)]) -> RangeSet<N> {
    let mut set = RangeSet::new();
    for &(start, end) in ranges {
        set.insert(start, end).unwrap();
    }
    set
}

/// Checks the documented invariants.
fn assert_invariants<const N: usize>(set: &RangeSet<N>) {
    assert!(set.len() <= N);
    for &(start, end) in set.as_slice() {
        assert!(start < end, "empty range in {set:?}");
    }
    for pair in set.as_slice().windows(2) {
        assert!(
            pair[0].1 < pair[1].0,
            "unsorted, overlapping or touching: {set:?}"
        );
    }
}

#[test]
fn insert_merges_overlapping_and_adjacent() {
    let mut set = RangeSet::<8>::new();
    set.insert(10, 20).unwrap();
    set.insert(30, 40).unwrap();
    set.insert(50, 60).unwrap();
    assert_eq!(set.as_slice(), [(10, 20), (30, 40), (50, 60)]);
    // Adjacent on the left of 30..40.
    set.insert(25, 30).unwrap();
    assert_eq!(set.as_slice(), [(10, 20), (25, 40), (50, 60)]);
    // Adjacent on both sides: joins three ranges.
    set.insert(20, 25).unwrap();
    assert_eq!(set.as_slice(), [(10, 40), (50, 60)]);
    // Contained: no change.
    set.insert(12, 18).unwrap();
    assert_eq!(set.as_slice(), [(10, 40), (50, 60)]);
    // Covers everything.
    set.insert(0, 100).unwrap();
    assert_eq!(set.as_slice(), [(0, 100)]);
    // Empty ranges change nothing, reversed ones are errors.
    set.insert(200, 200).unwrap();
    assert_eq!(set.insert(300, 299), Err(MemMapError::InvalidRange));
    assert_eq!(set.as_slice(), [(0, 100)]);
    // Unsorted insertion order.
    set.insert(500, 600).unwrap();
    set.insert(300, 400).unwrap();
    assert_eq!(set.as_slice(), [(0, 100), (300, 400), (500, 600)]);
    assert_eq!(set.total(), 300);
    assert_invariants(&set);
}

#[test]
fn remove_trims_and_splits() {
    let mut set = set_of::<8>(&[(0, 100), (200, 300)]);
    set.remove(50, 60).unwrap();
    assert_eq!(set.as_slice(), [(0, 50), (60, 100), (200, 300)]);
    set.remove(90, 250).unwrap();
    assert_eq!(set.as_slice(), [(0, 50), (60, 90), (250, 300)]);
    set.remove(0, 10).unwrap();
    assert_eq!(set.as_slice(), [(10, 50), (60, 90), (250, 300)]);
    set.remove(290, 300).unwrap();
    assert_eq!(set.as_slice(), [(10, 50), (60, 90), (250, 290)]);
    // Removing a hole or outside the set is a no-op.
    set.remove(50, 60).unwrap();
    set.remove(1000, 2000).unwrap();
    set.remove(5, 5).unwrap();
    assert_eq!(set.as_slice(), [(10, 50), (60, 90), (250, 290)]);
    // Removing exactly one range, then several.
    set.remove(60, 90).unwrap();
    assert_eq!(set.as_slice(), [(10, 50), (250, 290)]);
    set.remove(0, u64::MAX).unwrap();
    assert!(set.is_empty());
    assert_eq!(set.remove(2, 1), Err(MemMapError::InvalidRange));
}

#[test]
fn capacity_exhaustion_leaves_the_set_unchanged() {
    let mut set = set_of::<2>(&[(0, 10), (20, 30)]);
    let before = set;
    assert_eq!(set.insert(40, 50), Err(MemMapError::CapacityExceeded));
    assert_eq!(set.remove(2, 3), Err(MemMapError::CapacityExceeded));
    assert_eq!(set, before);
    // Merging and trimming need no room.
    set.insert(10, 20).unwrap();
    assert_eq!(set.as_slice(), [(0, 30)]);
    set.remove(5, 6).unwrap();
    assert_eq!(set.as_slice(), [(0, 5), (6, 30)]);
    set.remove(0, 5).unwrap();
    set.remove(29, 30).unwrap();
    assert_eq!(set.as_slice(), [(6, 29)]);

    let mut empty = RangeSet::<0>::new();
    assert_eq!(empty.insert(1, 2), Err(MemMapError::CapacityExceeded));
    empty.remove(0, 10).unwrap();
    assert_eq!(empty.capacity(), 0);
}

#[test]
fn contains_and_extremes() {
    let set = set_of::<4>(&[(0, 1), (10, 20), (u64::MAX - 1, u64::MAX)]);
    assert!(set.contains(0));
    assert!(!set.contains(1));
    assert!(!set.contains(9));
    assert!(set.contains(10));
    assert!(set.contains(19));
    assert!(!set.contains(20));
    assert!(set.contains(u64::MAX - 1));
    assert!(!set.contains(u64::MAX));
    let full = set_of::<1>(&[(0, u64::MAX)]);
    assert_eq!(full.total(), u64::MAX);
    assert_eq!(
        format!("{set:?}"),
        format!("[0..1, 10..20, {}..{}]", u64::MAX - 1, u64::MAX)
    );
}

#[test]
fn align_inward_shrinks_and_drops() {
    let mut set = set_of::<8>(&[
        (0x0, 0x1000),
        (0x1800, 0x2800),
        (0x3001, 0x5fff),
        (0x7000, 0x8001),
    ]);
    set.align_inward(0x1000).unwrap();
    assert_eq!(
        set.as_slice(),
        [(0x0, 0x1000), (0x4000, 0x5000), (0x7000, 0x8000)]
    );
    let mut top = set_of::<1>(&[(u64::MAX - 0x10, u64::MAX)]);
    top.align_inward(0x1000).unwrap();
    assert!(top.is_empty());
    let mut top = set_of::<1>(&[(u64::MAX - 0x2fff, u64::MAX)]);
    top.align_inward(0x1000).unwrap();
    assert_eq!(top.as_slice(), [(u64::MAX - 0x2fff, u64::MAX - 0xfff)]);
    assert_eq!(set.align_inward(0), Err(MemMapError::BadPageSize));
    assert_eq!(set.align_inward(0x1800), Err(MemMapError::BadPageSize));
    set.align_inward(1).unwrap();
    assert_eq!(set.len(), 3);
}

#[test]
fn usable_ram_typical_pc() {
    // A QEMU-like map: low RAM, the legacy hole, high RAM with an ACPI area in it,
    // reserved firmware at the top of 4 GiB, RAM above 4 GiB.
    let map = [
        (0x0, 0x9fc00, RAM),
        (0x9fc00, 0x400, RESERVED),
        (0xf0000, 0x10000, RESERVED),
        (0x10_0000, 0x7fe0_0000, RAM),
        (0x7fee_0000, 0x2_0000, ACPI),
        (0xfffc_0000, 0x4_0000, RESERVED),
        (0x1_0000_0000, 0x8000_0000, RAM),
    ];
    let reserved = [
        (0x0, 0x1000),                  // real-mode IVT, never used
        (0x10_0000, 0x18_0123),         // kernel image
        (0x20_0000, 0x20_0800),         // a boot module
        (0x1_7fff_f000, 0x1_8000_0000), // something at the very end of RAM
    ];
    let set: RangeSet<16> = usable_ram(&map, &reserved).unwrap();
    assert_eq!(
        set.as_slice(),
        [
            (0x1000, 0x9f000),
            (0x18_1000, 0x20_0000),
            (0x20_1000, 0x7fee_0000),
            (0x1_0000_0000, 0x1_7fff_f000),
        ]
    );
    assert_invariants(&set);
}

#[test]
fn usable_ram_non_ram_wins_regardless_of_order() {
    let a = [(0x1000, 0x1000, RESERVED), (0, 0x10000, RAM)];
    let b = [(0, 0x10000, RAM), (0x1000, 0x1000, RESERVED)];
    let sa: RangeSet<4> = usable_ram(&a, &[]).unwrap();
    let sb: RangeSet<4> = usable_ram(&b, &[]).unwrap();
    assert_eq!(sa, sb);
    assert_eq!(sa.as_slice(), [(0, 0x1000), (0x2000, 0x10000)]);
    // Overlapping RAM entries merge.
    let c = [
        (0, 0x3000, RAM),
        (0x2000, 0x3000, RAM),
        (0x5000, 0x1000, RAM),
    ];
    let sc: RangeSet<4> = usable_ram(&c, &[]).unwrap();
    assert_eq!(sc.as_slice(), [(0, 0x6000)]);
    // Unknown kinds are not RAM.
    let d = [(0, 0x4000, RAM), (0x1000, 0x1000, 99)];
    let sd: RangeSet<4> = usable_ram(&d, &[]).unwrap();
    assert_eq!(sd.as_slice(), [(0, 0x1000), (0x2000, 0x4000)]);
}

#[test]
fn usable_ram_edge_entries() {
    // Zero-size entries are ignored, whatever their kind.
    let map = [(0x1000, 0, RESERVED), (0, 0x2000, RAM), (0x5000, 0, RAM)];
    let set: RangeSet<4> = usable_ram(&map, &[(0x1000, 0x1000)]).unwrap();
    assert_eq!(set.as_slice(), [(0, 0x2000)]);
    // A RAM entry wrapping past 2^64 is ignored; one ending at exactly 2^64 is kept.
    let map = [(0x1000, u64::MAX, RAM), (u64::MAX - 0x2fff, 0x3000, RAM)];
    let set: RangeSet<4> = usable_ram(&map, &[]).unwrap();
    assert_eq!(set.as_slice(), [(u64::MAX - 0x2fff, u64::MAX - 0xfff)]);
    // A non-RAM entry wrapping past 2^64 reserves everything from its start.
    let map = [(0, 0x10000, RAM), (0x4000, u64::MAX, RESERVED)];
    let set: RangeSet<4> = usable_ram(&map, &[]).unwrap();
    assert_eq!(set.as_slice(), [(0, 0x4000)]);
    // Reserved ranges at the edges and inside.
    let map = [(0x10000, 0x10000, RAM)];
    let reserved = [(0x10000, 0x11000), (0x1f000, 0x20000), (0x15800, 0x16001)];
    let set: RangeSet<4> = usable_ram(&map, &reserved).unwrap();
    assert_eq!(set.as_slice(), [(0x11000, 0x15000), (0x17000, 0x1f000)]);
    // Reversed reserved range: error.
    assert_eq!(
        usable_ram::<4, _>(&map, &[(0x2000, 0x1000)]),
        Err(MemMapError::InvalidRange)
    );
    // Capacity.
    let map = [
        (0, 0x1000, RAM),
        (0x2000, 0x1000, RAM),
        (0x4000, 0x1000, RAM),
    ];
    assert_eq!(
        usable_ram::<2, _>(&map, &[]),
        Err(MemMapError::CapacityExceeded)
    );
    assert_eq!(
        usable_ram_with_page::<4, _>(&map, &[], 3),
        Err(MemMapError::BadPageSize)
    );
}

#[test]
fn usable_ram_takes_pvh_entries() {
    let map = [
        MemmapEntry {
            addr: 0,
            size: 0x8000,
            kind: RAM,
            reserved: 0,
        },
        MemmapEntry {
            addr: 0x2000,
            size: 0x1000,
            kind: MemmapEntry::NVS,
            reserved: 0,
        },
    ];
    let set: RangeSet<4> = usable_ram(&map, &[]).unwrap();
    assert_eq!(set.as_slice(), [(0, 0x2000), (0x3000, 0x8000)]);
}

/// Size of the modelled address range.
const SPACE: usize = 128;

/// The maximal runs of set bits in `bits`, as ranges.
fn runs(bits: &[bool]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = None;
    for (addr, &bit) in bits.iter().chain([false].iter()).enumerate() {
        match (bit, start) {
            (true, None) => start = Some(addr),
            (false, Some(s)) => {
                out.push((s as u64, addr as u64));
                start = None;
            }
            _ => {}
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, u64),
    Remove(u64, u64),
    Align(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let bound = 0..=SPACE as u64;
    prop_oneof![
        4 => (bound.clone(), bound.clone()).prop_map(|(s, e)| Op::Insert(s, e)),
        4 => (bound.clone(), bound).prop_map(|(s, e)| Op::Remove(s, e)),
        1 => (0u32..5).prop_map(Op::Align),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn range_set_matches_bitmap_model(ops in proptest::collection::vec(op(), 0..40)) {
        let mut set = RangeSet::<4>::new();
        let mut model = [false; SPACE];
        for op in ops {
            let before = set;
            let mut next = model;
            let reversed = matches!(op, Op::Insert(s, e) | Op::Remove(s, e) if s > e);
            let result = match op {
                Op::Insert(s, e) => {
                    for bit in next.iter_mut().take(e as usize).skip(s as usize) {
                        *bit = true;
                    }
                    set.insert(s, e)
                }
                Op::Remove(s, e) => {
                    for bit in next.iter_mut().take(e as usize).skip(s as usize) {
                        *bit = false;
                    }
                    set.remove(s, e)
                }
                Op::Align(shift) => {
                    let page = 1usize << shift;
                    for chunk in next.chunks_mut(page) {
                        if chunk.iter().any(|&b| !b) {
                            chunk.fill(false);
                        }
                    }
                    set.align_inward(page as u64)
                }
            };
            match result {
                Ok(()) => {
                    prop_assert!(!reversed, "{:?} accepted a reversed range", op);
                    model = next;
                }
                Err(MemMapError::InvalidRange) => {
                    prop_assert!(reversed);
                    prop_assert_eq!(set, before);
                }
                Err(MemMapError::CapacityExceeded) => {
                    prop_assert!(runs(&next).len() > 4, "{:?} refused though it fits", op);
                    prop_assert_eq!(set, before);
                }
                Err(MemMapError::BadPageSize) => prop_assert!(false, "power of two refused"),
            }
            assert_invariants(&set);
            prop_assert_eq!(set.as_slice(), &runs(&model)[..]);
            prop_assert_eq!(set.total(), model.iter().filter(|&&b| b).count() as u64);
            for addr in 0..=SPACE {
                prop_assert_eq!(set.contains(addr as u64), model.get(addr) == Some(&true));
            }
        }
    }

    #[test]
    fn usable_ram_matches_bitmap_model(
        map in proptest::collection::vec(
            (0u64..1024, 0u64..300, prop_oneof![3 => Just(RAM), 1 => 2u32..=8]),
            0..10,
        ),
        reserved in proptest::collection::vec((0u64..1400, 0u64..100), 0..5),
    ) {
        const PAGE: usize = 16;
        const TOP: usize = 1024 + 300;
        let reserved: Vec<(u64, u64)> = reserved.iter().map(|&(s, len)| (s, s + len)).collect();
        let mut model = [false; TOP];
        for &(addr, size, kind) in &map {
            if kind == RAM {
                model[addr as usize..(addr + size) as usize].fill(true);
            }
        }
        for &(addr, size, kind) in &map {
            if kind != RAM {
                model[addr as usize..(addr + size) as usize].fill(false);
            }
        }
        for &(start, end) in &reserved {
            let end = (end as usize).min(TOP);
            if (start as usize) < end {
                model[start as usize..end].fill(false);
            }
        }
        for chunk in model.chunks_mut(PAGE) {
            if chunk.len() < PAGE || chunk.iter().any(|&b| !b) {
                chunk.fill(false);
            }
        }
        let set: RangeSet<64> = usable_ram_with_page(&map, &reserved, PAGE as u64).unwrap();
        assert_invariants(&set);
        prop_assert_eq!(set.as_slice(), &runs(&model)[..]);
    }
}
