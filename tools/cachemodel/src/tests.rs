//! Known access patterns with known miss counts, and the cache checked against a
//! straightforward reference LRU model on random patterns.

use super::*;

const LINE: u64 = 64;

/// The default L1 of the plugin: 32 KiB, 8 ways, 64-byte lines (64 sets).
fn l1() -> Cache<Vec<Way>> {
    let g = Geometry::new(32 * 1024, 8, LINE).unwrap();
    Cache::new(g, vec![EMPTY; g.lines()]).unwrap()
}

fn fully(size: u64) -> Cache<Vec<Way>> {
    let g = Geometry::fully_associative(size, LINE).unwrap();
    Cache::new(g, vec![EMPTY; g.lines()]).unwrap()
}

/// Misses of one pass over `addrs`.
fn pass<S: AsRef<[Way]> + AsMut<[Way]>>(c: &mut Cache<S>, addrs: impl Iterator<Item = u64>) -> u64 {
    addrs.map(|a| u64::from(c.access(a).is_miss())).sum()
}

#[test]
fn geometry_is_validated() {
    let g = Geometry::new(32768, 8, 64).unwrap();
    assert_eq!(
        (g.sets(), g.ways(), g.line_size(), g.lines()),
        (64, 8, 64, 512)
    );
    assert_eq!(Geometry::new(32768, 8, 48), Err(Error::LineNotPowerOfTwo));
    assert_eq!(Geometry::new(32768, 0, 64), Err(Error::NoWays));
    assert_eq!(Geometry::new(1000, 8, 64), Err(Error::SizeNotWholeSets));
    assert_eq!(Geometry::new(0, 1, 64), Err(Error::SizeNotWholeSets));
    assert_eq!(
        Geometry::new(3 * 8 * 64, 8, 64),
        Err(Error::SetsNotPowerOfTwo)
    );
    // 12 ways, 64 sets: a non-power-of-two associativity is fine.
    assert_eq!(Geometry::new(48 * 1024, 12, 64).unwrap().sets(), 64);
    let fa = Geometry::fully_associative(32768, 64).unwrap();
    assert_eq!((fa.sets(), fa.ways()), (1, 512));
    assert_eq!(g.lines_of(0x3F, 2), (0, 1));
    assert_eq!(g.lines_of(0x40, 64), (1, 1));
    assert_eq!(g.lines_of(0x40, 0), (1, 1));
    assert_eq!(g.lines_of(u64::MAX, 8), (u64::MAX >> 6, u64::MAX >> 6));
}

#[test]
fn storage_must_match_the_geometry() {
    let g = Geometry::new(4096, 4, 64).unwrap();
    let err = Cache::new(g, vec![EMPTY; 63]).unwrap_err();
    assert_eq!(
        err,
        Error::StorageSize {
            expected: 64,
            got: 63
        }
    );
    // Arrays work as storage too (no allocation needed).
    let mut c = Cache::new(g, [EMPTY; 64]).unwrap();
    assert!(c.access(0).is_miss());
    assert!(c.contains(0x3F));
}

#[test]
fn sequential_pattern_that_fits_misses_once_per_line() {
    let mut c = l1();
    let lines = 512; // exactly the capacity
    assert_eq!(pass(&mut c, (0..lines).map(|i| i * LINE)), lines);
    for _ in 0..3 {
        assert_eq!(pass(&mut c, (0..lines).map(|i| i * LINE)), 0);
    }
    // Every byte of a line hits once the line is in.
    assert_eq!(pass(&mut c, (0..LINE).map(|b| 5 * LINE + b)), 0);
    assert_eq!(c.stats().accesses, 4 * 512 + 64);
    assert_eq!(c.stats().misses, 512);
}

#[test]
fn sequential_pattern_one_line_too_big_always_misses_under_lru() {
    // 513 lines cycled through 512: set 0 sees 9 lines in turn for 8 ways, and LRU always
    // evicts the one needed next — but only in set 0; the other sets hold their 8.
    let mut c = l1();
    let lines = 513;
    assert_eq!(pass(&mut c, (0..lines).map(|i| i * LINE)), 513);
    for _ in 0..3 {
        assert_eq!(pass(&mut c, (0..lines).map(|i| i * LINE)), 9);
    }
    // Fully associative, the same pattern misses every time (the classic LRU cliff).
    let mut f = fully(32 * 1024);
    assert_eq!(pass(&mut f, (0..lines).map(|i| i * LINE)), 513);
    assert_eq!(pass(&mut f, (0..lines).map(|i| i * LINE)), 513);
}

#[test]
fn conflict_pattern_fits_the_ways_and_not_one_more() {
    // A stride of sets × line (4 KiB here) puts every access into the same set.
    let stride = 64 * LINE;
    for ways in [8u64, 9, 16] {
        let mut c = l1();
        assert_eq!(pass(&mut c, (0..ways).map(|i| i * stride)), ways);
        let steady = pass(&mut c, (0..ways).map(|i| i * stride));
        assert_eq!(
            steady,
            if ways <= 8 { 0 } else { ways },
            "{ways} lines in one 8-way set"
        );
        // Fully associative of the same size: no conflict, so no steady misses.
        let mut f = fully(32 * 1024);
        pass(&mut f, (0..ways).map(|i| i * stride));
        assert_eq!(pass(&mut f, (0..ways).map(|i| i * stride)), 0);
    }
}

#[test]
fn strided_pattern_uses_a_fraction_of_the_sets() {
    // A stride of two lines touches only the even sets: 32 sets × 8 ways = 256 lines fit.
    let mut c = l1();
    assert_eq!(pass(&mut c, (0..256).map(|i| i * 2 * LINE)), 256);
    assert_eq!(pass(&mut c, (0..256).map(|i| i * 2 * LINE)), 0);
    // 264 lines: every even set holds 8.25 on average; 8 sets get a ninth line and thrash.
    let mut c = l1();
    pass(&mut c, (0..264).map(|i| i * 2 * LINE));
    assert_eq!(pass(&mut c, (0..264).map(|i| i * 2 * LINE)), 8 * 9);
}

#[test]
fn lru_keeps_the_recently_used() {
    // A 2-way set: a, b, a, c evicts b (LRU), so a hits and b misses.
    let g = Geometry::new(2 * LINE, 2, LINE).unwrap();
    let mut c = Cache::new(g, [EMPTY; 2]).unwrap();
    let (a, b, d) = (0, LINE, 2 * LINE);
    c.access(a);
    c.access(b);
    c.access(a);
    assert_eq!(c.access(d), Access::Miss { evicted: Some(1) });
    assert_eq!(c.access(a), Access::Hit);
    assert!(c.access(b).is_miss());
}

#[test]
fn ranges_touch_every_line_they_span() {
    let mut c = l1();
    assert_eq!(c.access_range(60, 8), 2);
    assert_eq!(c.access_range(0, 128), 0);
    assert_eq!(c.access_range(128, 1), 1);
    assert_eq!(c.stats().accesses, 5);
}

#[test]
fn invalidation_drops_what_it_is_told() {
    let mut c = l1();
    pass(&mut c, [0x1000, 0x2000, 0xFFFF_8000_0000_0000].into_iter());
    assert_eq!(c.invalidate_if(|a| a < 0x8000_0000_0000_0000), 2);
    assert!(!c.contains(0x1000));
    assert!(c.contains(0xFFFF_8000_0000_0000));
    c.invalidate_all();
    assert!(!c.contains(0xFFFF_8000_0000_0000));
}

#[test]
fn tlb_of_64_entries_4_ways() {
    let mut t = Tlb::new(64, 4, 4096, vec![EMPTY; 64]).unwrap();
    assert_eq!(t.geometry().sets(), 16);
    let pages = |n: u64| (0..n).map(|i| i * 4096);
    let run = |t: &mut Tlb<Vec<Way>>, n| {
        pages(n)
            .map(|a| u64::from(t.access(a).is_miss()))
            .sum::<u64>()
    };
    assert_eq!(run(&mut t, 64), 64);
    assert_eq!(run(&mut t, 64), 0);
    // 65 pages: set 0 gets five for four ways and thrashes; the rest hit.
    assert_eq!(run(&mut t, 65), 1);
    assert_eq!(run(&mut t, 65), 5);
    // An address-space switch keeps the global (kernel) entries.
    let kernel = 0xFFFF_FFFF_8000_0000;
    t.flush_all();
    assert!(t.access(kernel).is_miss());
    assert!(t.access(0x1000).is_miss());
    assert_eq!(t.flush_below(0xFFFF_8000_0000_0000), 1);
    assert_eq!(t.access(kernel), Access::Hit);
    assert!(t.access(0x1000).is_miss());
    assert_eq!(t.access_range(0x1FFF, 2), 1);
}

#[test]
fn footprint_counts_distinct_lines() {
    let mut f = Footprint::new(vec![EMPTY_SLOT; 64]).unwrap();
    for line in [1, 2, 3, 2, 1, 1000, u64::MAX - 1] {
        f.insert(line);
    }
    assert_eq!(f.len(), 5);
    assert_eq!(f.insert(3), Insert::Seen);
    f.clear();
    assert!(f.is_empty());
    assert_eq!(f.insert(3), Insert::New);
    // At most half full: 32 lines fit, the 33rd is refused and flagged.
    f.clear();
    for line in 0..32 {
        assert_eq!(f.insert(line * 7919), Insert::New);
    }
    assert_eq!(f.insert(1), Insert::Full);
    assert!(f.overflowed());
    assert_eq!(f.len(), 32);
    f.clear();
    assert!(!f.overflowed());
    assert_eq!(
        Footprint::new(vec![EMPTY_SLOT; 48]).unwrap_err(),
        Error::TableSize
    );
    assert_eq!(
        Footprint::new([EMPTY_SLOT; 1]).unwrap_err(),
        Error::TableSize
    );
}

#[test]
fn footprint_survives_generation_wrap() {
    let mut f = Footprint::new([EMPTY_SLOT; 8]).unwrap();
    f.insert(5);
    f.generation = u32::MAX;
    f.insert(6);
    f.clear();
    assert_eq!(f.insert(5), Insert::New);
    assert_eq!(f.insert(6), Insert::New);
    assert_eq!(f.len(), 2);
}

/// The reference: per set, a list of lines, most recently used last.
struct Reference {
    sets: Vec<Vec<u64>>,
    ways: usize,
}

impl Reference {
    fn access(&mut self, line: u64) -> bool {
        let n = self.sets.len() as u64;
        let set = &mut self.sets[(line % n) as usize];
        if let Some(i) = set.iter().position(|&l| l == line) {
            set.remove(i);
            set.push(line);
            false
        } else {
            if set.len() == self.ways {
                set.remove(0);
            }
            set.push(line);
            true
        }
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn cache_matches_the_reference_lru(
            shape in (0u32..4, 1u32..5),
            lines in proptest::collection::vec(0u64..64, 1..400),
        ) {
            let (log_sets, ways) = shape;
            let sets = 1u64 << log_sets;
            let g = Geometry::new(sets * u64::from(ways) * 64, ways, 64).unwrap();
            let mut c = Cache::new(g, vec![EMPTY; g.lines()]).unwrap();
            let mut r = Reference { sets: vec![Vec::new(); sets as usize], ways: ways as usize };
            for line in lines {
                prop_assert_eq!(c.access(line * 64 + 5).is_miss(), r.access(line));
            }
        }

        #[test]
        fn footprint_matches_a_set(lines in proptest::collection::vec(0u64..1000, 0..200)) {
            let mut f = Footprint::new(vec![EMPTY_SLOT; 1024]).unwrap();
            let mut s = std::collections::BTreeSet::new();
            for line in lines {
                let new = f.insert(line) == Insert::New;
                prop_assert_eq!(new, s.insert(line));
            }
            prop_assert_eq!(f.len(), s.len());
        }
    }
}
