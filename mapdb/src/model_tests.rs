//! Property tests: random operation sequences run against the database and
//! against a naive reference model that keeps, per space, a map
//! 4 KiB page → (physical page, rights, parent page, accessed status) and
//! implements map / grant / unmap page by page.
//!
//! After every operation the two must agree exactly on every
//! `(space, page) → (phys, rights, parent page)`; the database's invariants
//! must hold; the database's accessed status must include the model's
//! (splitting copies status to all pieces, so the database may report more,
//! never less). Random out-of-memory limits check that a failed operation did
//! exactly a prefix of its work.
//!
//! Size: `PROPTEST_CASES` cases (default 64) × 200 operations each.

use std::collections::{BTreeMap, BTreeSet};
use std::vec::Vec;

use proptest::prelude::*;

use crate::testing::{MapTables, VecStore};
use crate::{Config, Error, Mdb, PageSize, Region, Rights, SpaceId};

const S0: SpaceId = SpaceId(0);
const SPACES: u32 = 5;
const PAGE: u64 = 0x1000;
/// Every address (virtual and physical) lies in `[0, WINDOW)`.
const WINDOW: u64 = 16 << 20;
/// Most addresses fall in `[0, HOT)`.
const HOT: u64 = 64 << 10;
const OPS: usize = 200;

type Key = (SpaceId, u64);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Page {
    phys: u64,
    rights: Rights,
    parent: Option<Key>,
    accessed: Rights,
}

/// The reference model: pages and a children index.
#[derive(Default)]
struct Model {
    pages: BTreeMap<Key, Page>,
    children: BTreeMap<Key, BTreeSet<Key>>,
}

impl Model {
    fn insert(&mut self, k: Key, p: Page) {
        if let Some(par) = p.parent {
            self.children.entry(par).or_default().insert(k);
        }
        self.pages.insert(k, p);
    }

    /// Remove `k` and everything derived from it; returns their accessed
    /// status.
    fn remove_subtree(&mut self, k: Key) -> Rights {
        let mut acc = Rights::NONE;
        let Some(p) = self.pages.remove(&k) else { return acc };
        acc |= p.accessed;
        if let Some(par) = p.parent {
            if let Some(set) = self.children.get_mut(&par) {
                set.remove(&k);
            }
        }
        let mut todo: Vec<Key> = self.children.remove(&k).map(|s| s.into_iter().collect()).unwrap_or_default();
        while let Some(c) = todo.pop() {
            if let Some(cp) = self.pages.remove(&c) {
                acc |= cp.accessed;
            }
            if let Some(set) = self.children.remove(&c) {
                todo.extend(set);
            }
        }
        acc
    }

    /// All keys derived (transitively) from `k`.
    fn descendants(&self, k: Key) -> Vec<Key> {
        let mut out = Vec::new();
        let mut todo = vec![k];
        while let Some(x) = todo.pop() {
            if let Some(set) = self.children.get(&x) {
                for &c in set {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
        out
    }

    /// Revoke `r` from `k` (rights) — removing it with its subtree when none
    /// are left.
    fn revoke_one(&mut self, k: Key, r: Rights) {
        let Some(p) = self.pages.get_mut(&k) else { return };
        p.rights = p.rights.minus(r);
        if p.rights.is_empty() {
            self.remove_subtree(k);
        }
    }

    fn add_root(&mut self, phys: u64, size: u64) {
        for i in 0..size / PAGE {
            let a = phys + i * PAGE;
            self.insert((S0, a), Page { phys: a, rights: Rights::ALL, parent: None, accessed: Rights::NONE });
        }
    }

    /// Map or grant page by page; pages with source address `>= stop` are
    /// not processed.
    #[allow(clippy::too_many_arguments)]
    fn transfer(&mut self, from: SpaceId, src: u64, to: SpaceId, dst: u64, size: u64, rights: Rights, grant: bool, stop: u64) {
        if to == S0 || rights.is_empty() {
            return;
        }
        for i in 0..size / PAGE {
            let (s, t) = (src + i * PAGE, dst + i * PAGE);
            if s >= stop {
                break;
            }
            let Some(sp) = self.pages.get(&(from, s)).copied() else { continue };
            let eff = sp.rights & rights;
            if eff.is_empty() || (from == to && s == t) {
                continue;
            }
            let as_map = !grant || sp.parent.is_none();
            if let Some(tp) = self.pages.get_mut(&(to, t)) {
                if as_map && tp.parent == Some((from, s)) && tp.phys == sp.phys {
                    tp.rights |= eff;
                    continue;
                }
                self.remove_subtree((to, t));
            }
            let Some(sp) = self.pages.get(&(from, s)).copied() else { continue };
            if as_map {
                self.insert((to, t), Page { phys: sp.phys, rights: eff, parent: Some((from, s)), accessed: Rights::NONE });
                continue;
            }
            // Grant: the page moves, keeping parent and children.
            self.pages.remove(&(from, s));
            if let Some(par) = sp.parent {
                if let Some(set) = self.children.get_mut(&par) {
                    set.remove(&(from, s));
                }
            }
            let kids = self.children.remove(&(from, s)).unwrap_or_default();
            for &c in &kids {
                if let Some(cp) = self.pages.get_mut(&c) {
                    cp.parent = Some((to, t));
                }
            }
            if !kids.is_empty() {
                self.children.insert((to, t), kids);
            }
            self.insert((to, t), Page { rights: eff, ..sp });
            let lost = sp.rights.minus(eff);
            if !lost.is_empty() {
                for d in self.descendants((to, t)) {
                    self.revoke_one(d, lost);
                }
            }
        }
    }

    /// Unmap / flush page by page up to `stop`; returns the accessed status
    /// gathered.
    fn unmap(&mut self, space: SpaceId, base: u64, size: u64, rights: Rights, flush: bool, stop: u64) -> Rights {
        let mut acc = Rights::NONE;
        for i in 0..size / PAGE {
            let v = base + i * PAGE;
            if v >= stop {
                break;
            }
            let Some(own) = self.pages.get_mut(&(space, v)) else { continue };
            acc |= own.accessed;
            own.accessed = Rights::NONE;
            let is_root = own.parent.is_none();
            let desc = self.descendants((space, v));
            for &d in &desc {
                if let Some(p) = self.pages.get_mut(&d) {
                    acc |= p.accessed;
                    p.accessed = Rights::NONE;
                }
            }
            if !rights.is_empty() {
                for d in desc {
                    self.revoke_one(d, rights);
                }
                if flush && !is_root {
                    self.revoke_one((space, v), rights);
                }
            }
        }
        acc
    }

    fn touch(&mut self, space: SpaceId, vaddr: u64, kind: Rights) -> bool {
        match self.pages.get_mut(&(space, vaddr & !(PAGE - 1))) {
            Some(p) if p.rights.contains(kind) => {
                p.accessed |= kind;
                true
            }
            _ => false,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Map { from: u32, src: u64, to: u32, dst: u64, log2: u8, rights: u8, grant: bool },
    Unmap { space: u32, base: u64, log2: u8, rights: u8, flush: bool },
    Touch { space: u32, vaddr: u64, kind: u8 },
}

fn log2_strategy() -> impl Strategy<Value = u8> {
    prop_oneof![5 => Just(12u8), 1 => Just(13u8), 1 => Just(14u8), 1 => Just(16u8), 2 => Just(21u8), 1 => Just(22u8)]
}

/// An address aligned to `2^log2`. Small regions mostly fall in the hot
/// first part of the window (so that operations meet each other's
/// mappings and trees grow deep); large ones anywhere.
fn addr(log2: u8) -> impl Strategy<Value = u64> {
    let hot = if log2 < 21 { 3 } else { 0 };
    let page = prop_oneof![hot => 0..HOT / PAGE, 1 => 0..WINDOW / PAGE];
    page.prop_map(move |p| (p * PAGE) & !((1u64 << log2) - 1))
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // Sources are mostly other spaces (to grow deep trees), sometimes σ0.
    let from = prop_oneof![1 => Just(0u32), 4 => 1..SPACES];
    let map = (from, 1..SPACES, log2_strategy(), 0u8..8, prop::bool::weighted(0.3), 0u32..20)
        .prop_flat_map(|(from, to, log2, rights, grant, into_s0)| {
            // Now and then try to map into σ0 (must be refused).
            let to = if into_s0 == 0 { 0 } else { to };
            (addr(log2), addr(log2)).prop_map(move |(src, dst)| Op::Map { from, src, to, dst, log2, rights, grant })
        });
    // Unmaps are mostly small and rarely σ0's, so trees get the time to grow.
    let space = prop_oneof![1 => Just(0u32), 8 => 1..SPACES];
    let unmap_log2 = prop_oneof![12 => log2_strategy(), 1 => Just(23u8), 1 => Just(24u8)];
    let unmap = (space, unmap_log2, 0u8..8, any::<bool>())
        .prop_flat_map(|(space, log2, rights, flush)| addr(log2).prop_map(move |base| Op::Unmap { space, base, log2, rights, flush }));
    let touch = (0..SPACES, 0..WINDOW, 0u8..3).prop_map(|(space, vaddr, kind)| Op::Touch { space, vaddr, kind });
    prop_oneof![8 => map, 3 => unmap, 2 => touch]
}

/// The database and the model side by side.
struct Pair {
    db: Mdb<VecStore, MapTables>,
    model: Model,
}

impl Pair {
    fn new() -> Pair {
        let mut db = Mdb::new(VecStore::new(), MapTables::new(), Config { sigma0: S0, max_page: PageSize::Size1G });
        let mut model = Model::default();
        for i in 0..WINDOW / PageSize::Size2M.bytes() {
            let phys = i * PageSize::Size2M.bytes();
            db.add_root(phys, PageSize::Size2M, Rights::ALL).unwrap();
            model.add_root(phys, PageSize::Size2M.bytes());
        }
        Pair { db, model }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Map { from, src, to, dst, log2, rights, grant } => {
                let (from, to) = (SpaceId(from), SpaceId(to));
                let region = Region::new(src, log2).unwrap();
                let rights = Rights::try_from(rights).unwrap();
                let got = if grant {
                    self.db.grant(from, region, to, dst, rights)
                } else {
                    self.db.map(from, region, to, dst, rights)
                };
                let stop = match got {
                    Ok(()) => u64::MAX,
                    Err(Error::OutOfMemory { stopped_at, .. }) => stopped_at,
                    Err(Error::IntoSigma0) => {
                        prop_assert_eq!(to, S0);
                        u64::MAX
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("{op:?}: {e:?}"))),
                };
                self.model.transfer(from, src, to, dst, region.size(), rights, grant, stop);
            }
            Op::Unmap { space, base, log2, rights, flush } => {
                let space = SpaceId(space);
                let region = Region::new(base, log2).unwrap();
                let rights = Rights::try_from(rights).unwrap();
                let (got, stop) = match self.db.unmap(space, region, rights, flush) {
                    Ok(acc) => (acc, u64::MAX),
                    Err(Error::OutOfMemory { stopped_at, accessed }) => (accessed, stopped_at),
                    Err(e) => return Err(TestCaseError::fail(format!("{op:?}: {e:?}"))),
                };
                let want = self.model.unmap(space, base, region.size(), rights, flush, stop);
                prop_assert!(got.contains(want), "{:?}: accessed {:?} misses {:?}", op, got, want);
            }
            Op::Touch { space, vaddr, kind } => {
                let kind = [Rights::R, Rights::W, Rights::X][kind as usize];
                let a = self.db.tables_mut().touch(SpaceId(space), vaddr, kind);
                let b = self.model.touch(SpaceId(space), vaddr, kind);
                prop_assert_eq!(a, b, "{:?}", op);
            }
        }
        Ok(())
    }

    /// Compare everything observable.
    fn compare(&self, op: &Op) -> Result<(), TestCaseError> {
        if let Err(v) = self.db.check_invariants() {
            return Err(TestCaseError::fail(format!("after {op:?}: {v:?}")));
        }
        let mut model = self.model.pages.iter();
        for (space, vaddr, e) in self.db.tables().entries() {
            let n = self.db.node(e.node);
            let parent = n.parent().map(|p| self.db.node(p));
            for k in 0..e.size.bytes() / PAGE {
                let v = vaddr + k * PAGE;
                let phys = e.phys + k * PAGE;
                let par = parent.map(|p| (p.space(), p.vaddr() + (phys - p.phys())));
                let Some((&mk, mp)) = model.next() else {
                    return Err(TestCaseError::fail(format!("after {op:?}: db has extra page {space:?} {v:#x}")));
                };
                let got = ((space, v), phys, e.rights, par);
                let want = (mk, mp.phys, mp.rights, mp.parent);
                prop_assert_eq!(got, want, "after {:?}", op);
                prop_assert!(e.accessed.contains(mp.accessed), "after {:?}: accessed lost at {:?}", op, mk);
            }
        }
        if let Some((k, _)) = model.next() {
            return Err(TestCaseError::fail(format!("after {op:?}: model has extra page {k:?}")));
        }
        Ok(())
    }
}

/// 64 cases and at most 1000 shrink steps unless `PROPTEST_CASES` /
/// `PROPTEST_MAX_SHRINK_ITERS` say otherwise.
fn config() -> ProptestConfig {
    let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u32>().ok());
    ProptestConfig {
        cases: env("PROPTEST_CASES").unwrap_or(64),
        max_shrink_iters: env("PROPTEST_MAX_SHRINK_ITERS").unwrap_or(1000),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Unlimited memory: the database behaves exactly like the model.
    #[test]
    fn matches_model(ops in prop::collection::vec(op_strategy(), OPS)) {
        let mut pair = Pair::new();
        pair.compare(&ops[0])?;
        for op in &ops {
            pair.apply(op)?;
            pair.compare(op)?;
        }
    }

    /// Tight memory: every failed operation did exactly a prefix of its
    /// work, and the database stays consistent.
    #[test]
    fn out_of_memory_does_a_prefix(
        ops in prop::collection::vec(op_strategy(), OPS),
        spare in 0usize..2000,
        split_limit in prop::option::weighted(0.2, 0usize..3),
    ) {
        let mut pair = Pair::new();
        let limit = pair.db.store().live() + spare;
        pair.db.tables_mut().set_split_limit(split_limit);
        pair.db.store_mut_for_model().set_limit(Some(limit));
        for op in &ops {
            pair.apply(op)?;
            pair.compare(op)?;
        }
    }
}

impl Mdb<VecStore, MapTables> {
    fn store_mut_for_model(&mut self) -> &mut VecStore {
        &mut self.store
    }
}
