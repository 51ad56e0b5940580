//! The measurement proper, free of QEMU: instructions and memory accesses go in, windows
//! and segments come out, and the JSON report is written from them. The plugin glue
//! (lib.rs) only forwards QEMU's callbacks here, so this module is tested on synthetic
//! streams.
//!
//! ```text
//!   anchor a ──┬── same anchor as the current segment: the open window closes (one
//!              │   iteration) and the next opens
//!              └── another anchor (or none open): the open window is dropped, the
//!                  current segment ends, a new segment for `a` begins
//!   segment address: the open window is dropped and the current segment ends
//!   a segment's first `warmup` windows are not averaged (the caches warm up);
//!   after `stop-after` segments have ended the meter reports Stop
//! ```
//!
//! Per window it counts instructions (user/kernel by address), distinct lines fetched
//! (virtually tagged) and accessed (physically tagged: two spaces' private pages at the
//! same virtual address are different lines) — user or kernel by the virtual address — misses of the L1 I- and D-cache
//! models, of fully-associative models of the same size (conflict vs capacity), and of
//! the I- and D-TLB models. Consecutive accesses to the line (page) just accessed are
//! not passed to the models again: they hit, and the LRU order does not change, so the
//! counts are exact and the models run several times less often.

use std::fmt::Write as _;

use cachemodel::{Cache, Footprint, Geometry, Insert, Slot, Tlb, Way, EMPTY, EMPTY_SLOT};

use crate::config::{Arm, Config, PAGE};

/// What delimits windows: an address from `window-addr`, or a marker id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Addr(u64),
    Marker(u16),
}

impl Anchor {
    fn describe(self) -> String {
        match self {
            Anchor::Addr(a) => format!("{a:#x}"),
            Anchor::Marker(id) => format!("marker:{id}"),
        }
    }
}

/// The counters of a window, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    InsnsUser,
    InsnsKernel,
    LinesIUser,
    LinesIKernel,
    LinesDUser,
    LinesDKernel,
    L1iMisses,
    L1dMisses,
    L1iMissesFa,
    L1dMissesFa,
    ItlbMisses,
    DtlbMisses,
    MemAccesses,
}

/// How many counters there are.
pub const COUNTERS: usize = 13;

/// The counters' names in the report, indexed by `Counter as usize`.
pub const NAMES: [&str; COUNTERS] = [
    "insns_user",
    "insns_kernel",
    "lines_i_user",
    "lines_i_kernel",
    "lines_d_user",
    "lines_d_kernel",
    "l1i_misses",
    "l1d_misses",
    "l1i_misses_fa",
    "l1d_misses_fa",
    "itlb_misses",
    "dtlb_misses",
    "mem_accesses",
];

/// One value per [`Counter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts(pub [u64; COUNTERS]);

impl Counts {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    fn bump(&mut self, c: Counter) {
        self.0[c as usize] += 1;
    }

    fn add(&mut self, other: &Counts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

/// The windows one anchor delimited without interruption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub anchor: Anchor,
    /// Windows closed (complete iterations).
    pub windows: u64,
    /// Windows averaged (those after the warm-up).
    pub measured: u64,
    /// Sums over the averaged windows.
    pub sum: Counts,
    /// The segment's first window.
    pub first: Option<Counts>,
}

/// What the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// `stop-after` segments have ended: write the report and end the run.
    Stop,
}

/// Distinct lines per window are counted in tables of this many slots (half usable).
const FOOTPRINT_SLOTS: usize = 1 << 20;

/// The meter: models, the open window, the segments.
pub struct Meter {
    kernel_base: u64,
    warmup: u64,
    stop_after: Option<u64>,
    line_shift: u32,
    armed: bool,
    l1i: Cache<Vec<Way>>,
    l1d: Cache<Vec<Way>>,
    l1i_fa: Cache<Vec<Way>>,
    l1d_fa: Cache<Vec<Way>>,
    itlb: Tlb<Vec<Way>>,
    dtlb: Tlb<Vec<Way>>,
    lines_i: Footprint<Vec<Slot>>,
    lines_d: Footprint<Vec<Slot>>,
    last_iline: Option<u64>,
    last_ipage: Option<u64>,
    last_dline: Option<u64>,
    last_dpage: Option<u64>,
    window: Counts,
    /// The open window belongs to `segments[current]`.
    current: Option<usize>,
    segments: Vec<Segment>,
    ended: u64,
    /// Sums over every window, dropped ones included.
    total: Counts,
    overflow: bool,
}

fn cache(g: Geometry) -> Cache<Vec<Way>> {
    Cache::new(g, vec![EMPTY; g.lines()])
        .unwrap_or_else(|_| unreachable!("storage sized from the geometry"))
}

fn footprint() -> Footprint<Vec<Slot>> {
    Footprint::new(vec![EMPTY_SLOT; FOOTPRINT_SLOTS])
        .unwrap_or_else(|_| unreachable!("a power of two"))
}

impl Meter {
    pub fn new(config: &Config) -> Self {
        let g = config.l1;
        let fa = Geometry::fully_associative(g.size(), g.line_size())
            .unwrap_or_else(|_| unreachable!("a valid cache has a valid fully-associative twin"));
        let tlb = || {
            Tlb::new(
                config.tlb_entries,
                config.tlb_ways,
                PAGE,
                vec![EMPTY; config.tlb_entries as usize],
            )
            .unwrap_or_else(|_| unreachable!("checked by Config"))
        };
        Meter {
            kernel_base: config.kernel_base,
            warmup: config.warmup,
            stop_after: config.stop_after,
            line_shift: g.line_size().trailing_zeros(),
            armed: config.arm == Arm::Start,
            l1i: cache(g),
            l1d: cache(g),
            l1i_fa: cache(fa),
            l1d_fa: cache(fa),
            itlb: tlb(),
            dtlb: tlb(),
            lines_i: footprint(),
            lines_d: footprint(),
            last_iline: None,
            last_ipage: None,
            last_dline: None,
            last_dpage: None,
            window: Counts::default(),
            current: None,
            segments: Vec::new(),
            ended: 0,
            total: Counts::default(),
            overflow: false,
        }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// An instruction of `len` bytes at `vaddr` executes.
    pub fn insn(&mut self, vaddr: u64, len: u64) {
        let kernel = vaddr >= self.kernel_base;
        self.window.bump(if kernel {
            Counter::InsnsKernel
        } else {
            Counter::InsnsUser
        });
        if !self.armed {
            return;
        }
        let (first, last) = self.l1i.geometry().lines_of(vaddr, len);
        for line in first..=last {
            if self.last_iline == Some(line) {
                continue;
            }
            self.last_iline = Some(line);
            let user_kernel = self.split(line, Counter::LinesIUser, Counter::LinesIKernel);
            self.count_line(line, true, user_kernel);
        }
        let (first, last) = (vaddr / PAGE, vaddr.saturating_add(len.max(1) - 1) / PAGE);
        for page in first..=last {
            if self.last_ipage != Some(page) {
                self.last_ipage = Some(page);
                if self.itlb.access(page * PAGE).is_miss() {
                    self.window.bump(Counter::ItlbMisses);
                }
            }
        }
    }

    /// Whether the models run (a caller may skip work the meter would ignore).
    pub fn armed(&self) -> bool {
        self.armed
    }

    /// The instruction executing accesses `len` bytes of memory at virtual address
    /// `vaddr`, physical address `paddr` (the caches are physically tagged, the TLB is
    /// virtual; user or kernel goes by the virtual address).
    pub fn mem(&mut self, vaddr: u64, paddr: u64, len: u64) {
        if !self.armed {
            return;
        }
        self.window.bump(Counter::MemAccesses);
        let kernel = vaddr >= self.kernel_base;
        let lines = if kernel {
            Counter::LinesDKernel
        } else {
            Counter::LinesDUser
        };
        let (first, last) = self.l1d.geometry().lines_of(paddr, len);
        for line in first..=last {
            if self.last_dline == Some(line) {
                continue;
            }
            self.last_dline = Some(line);
            self.count_line(line, false, lines);
        }
        let (first, last) = (vaddr / PAGE, vaddr.saturating_add(len.max(1) - 1) / PAGE);
        for page in first..=last {
            if self.last_dpage != Some(page) {
                self.last_dpage = Some(page);
                if self.dtlb.access(page * PAGE).is_miss() {
                    self.window.bump(Counter::DtlbMisses);
                }
            }
        }
    }

    /// The user or the kernel counter, by the line's address.
    fn split(&self, line: u64, user: Counter, kernel: Counter) -> Counter {
        if (line << self.line_shift) >= self.kernel_base {
            kernel
        } else {
            user
        }
    }

    /// Passes a line to the footprint and the two cache models of its side.
    fn count_line(&mut self, line: u64, instruction: bool, lines: Counter) {
        let (fp, sa, fa, sa_miss, fa_miss) = if instruction {
            (
                &mut self.lines_i,
                &mut self.l1i,
                &mut self.l1i_fa,
                Counter::L1iMisses,
                Counter::L1iMissesFa,
            )
        } else {
            (
                &mut self.lines_d,
                &mut self.l1d,
                &mut self.l1d_fa,
                Counter::L1dMisses,
                Counter::L1dMissesFa,
            )
        };
        match fp.insert(line) {
            Insert::New => self.window.bump(lines),
            Insert::Seen => {}
            Insert::Full => self.overflow = true,
        }
        if sa.access_line(line).is_miss() {
            self.window.bump(sa_miss);
        }
        if fa.access_line(line).is_miss() {
            self.window.bump(fa_miss);
        }
    }

    /// `mov %reg, %cr3`: the TLB models lose their non-global (user) entries.
    pub fn cr3_write(&mut self) {
        self.itlb.flush_below(self.kernel_base);
        self.dtlb.flush_below(self.kernel_base);
        self.last_ipage = None;
        self.last_dpage = None;
    }

    /// Ends the open window: its counts go to the total and are returned; the footprint
    /// starts afresh.
    fn take_window(&mut self) -> Counts {
        let w = std::mem::take(&mut self.window);
        self.total.add(&w);
        self.lines_i.clear();
        self.lines_d.clear();
        self.last_iline = None;
        self.last_dline = None;
        w
    }

    /// Ends the current segment (if any); `Stop` once `stop-after` segments have ended.
    fn end_segment(&mut self) -> Next {
        if self.current.take().is_some() {
            self.ended += 1;
        }
        match self.stop_after {
            Some(k) if self.ended >= k => Next::Stop,
            _ => Next::Continue,
        }
    }

    /// An anchor instruction is about to execute.
    pub fn anchor(&mut self, a: Anchor) -> Next {
        self.armed = true;
        match self.current {
            Some(i) if self.segments[i].anchor == a => {
                let w = self.take_window();
                let warmup = self.warmup;
                let s = &mut self.segments[i];
                s.windows += 1;
                if s.windows == 1 {
                    s.first = Some(w);
                }
                if s.windows > warmup {
                    s.measured += 1;
                    s.sum.add(&w);
                }
                Next::Continue
            }
            _ => {
                self.take_window();
                if self.end_segment() == Next::Stop {
                    return Next::Stop;
                }
                self.segments.push(Segment {
                    anchor: a,
                    windows: 0,
                    measured: 0,
                    sum: Counts::default(),
                    first: None,
                });
                self.current = Some(self.segments.len() - 1);
                Next::Continue
            }
        }
    }

    /// A segment address is about to execute.
    pub fn segment_address(&mut self) -> Next {
        self.armed = true;
        self.take_window();
        self.end_segment()
    }

    /// The JSON report. `stopped` says how the run ended (`stop-after` or `exit`).
    pub fn report(&self, config: &Config, stopped: &str) -> String {
        let mut out = String::new();
        let hex_list = |v: &[u64]| {
            v.iter()
                .map(|a| format!("\"{a:#x}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "{{");
        let _ = writeln!(out, "  \"tool\": \"tern-cacheplugin\",");
        let _ = writeln!(out, "  \"stopped\": \"{stopped}\",");
        let _ = writeln!(out, "  \"footprint_overflow\": {},", self.overflow);
        let _ = writeln!(out, "  \"config\": {{");
        let _ = writeln!(
            out,
            "    \"l1_size\": {}, \"l1_ways\": {}, \"line\": {}, \"tlb_entries\": {}, \"tlb_ways\": {}, \"page\": {PAGE},",
            config.l1.size(),
            config.l1.ways(),
            config.l1.line_size(),
            config.tlb_entries,
            config.tlb_ways
        );
        let _ = writeln!(
            out,
            "    \"kernel_base\": \"{:#x}\", \"warmup\": {}, \"stop_after\": {},",
            config.kernel_base,
            config.warmup,
            config
                .stop_after
                .map_or("null".to_owned(), |k| k.to_string())
        );
        let _ = writeln!(
            out,
            "    \"window_addrs\": [{}], \"segment_addrs\": [{}]",
            hex_list(&config.window_addrs),
            hex_list(&config.segment_addrs)
        );
        let _ = writeln!(out, "  }},");
        let _ = writeln!(out, "  \"total\": {},", counts_json(&self.total));
        let _ = writeln!(out, "  \"segments\": [");
        for (i, s) in self.segments.iter().enumerate() {
            let per = if s.measured == 0 {
                "null".to_owned()
            } else {
                let fields: Vec<String> = NAMES
                    .iter()
                    .zip(s.sum.0)
                    .map(|(n, v)| format!("\"{n}\": {}", decimal(v, s.measured)))
                    .collect();
                format!("{{{}}}", fields.join(", "))
            };
            let first = s.first.as_ref().map_or("null".to_owned(), counts_json);
            let _ = writeln!(
                out,
                "    {{\"index\": {i}, \"anchor\": \"{}\", \"windows\": {}, \"measured\": {},\n      \"per_window\": {per},\n      \"sum\": {},\n      \"first_window\": {first}}}{}",
                s.anchor.describe(),
                s.windows,
                s.measured,
                counts_json(&s.sum),
                if i + 1 < self.segments.len() { "," } else { "" }
            );
        }
        let _ = writeln!(out, "  ]");
        let _ = writeln!(out, "}}");
        out
    }
}

fn counts_json(c: &Counts) -> String {
    let fields: Vec<String> = NAMES
        .iter()
        .zip(c.0)
        .map(|(n, v)| format!("\"{n}\": {v}"))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

/// `sum / n` as a JSON number with at most four decimals (exact when whole).
fn decimal(sum: u64, n: u64) -> String {
    if sum.is_multiple_of(n) {
        return (sum / n).to_string();
    }
    let text = format!("{:.4}", sum as f64 / n as f64);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(warmup: u64, stop_after: Option<u64>) -> Config {
        Config {
            warmup,
            stop_after,
            ..Config::default()
        }
    }

    /// One iteration of a loop: the anchor, then `k` loads from `k` lines `stride` apart
    /// (and one kernel instruction touching a kernel line).
    fn iteration(m: &mut Meter, anchor: Anchor, k: u64, stride: u64) -> Next {
        let next = m.anchor(anchor);
        m.insn(0x1000, 4);
        for i in 0..k {
            m.insn(0x1004 + i * 4, 4);
            m.mem(0x10_0000 + i * stride, 0x10_0000 + i * stride, 8);
        }
        m.insn(0xFFFF_FFFF_8000_0000, 2);
        // A kernel line in set 1 (the strided user lines all fall into set 0).
        m.mem(0xFFFF_FFFF_8010_0040, 0x8010_0040, 8);
        next
    }

    fn per(m: &Meter, seg: usize, c: Counter) -> f64 {
        let s = &m.segments()[seg];
        s.sum.get(c) as f64 / s.measured as f64
    }

    #[test]
    fn a_loop_touching_k_lines_reports_k() {
        let mut m = Meter::new(&config(2, None));
        let a = Anchor::Addr(0x1000);
        for _ in 0..12 {
            iteration(&mut m, a, 5, 64);
        }
        m.anchor(Anchor::Marker(1)); // ends the segment's last window... and the segment
        let s = &m.segments()[0];
        assert_eq!((s.windows, s.measured), (11, 9));
        assert_eq!(per(&m, 0, Counter::LinesDUser), 5.0);
        assert_eq!(per(&m, 0, Counter::LinesDKernel), 1.0);
        assert_eq!(per(&m, 0, Counter::InsnsUser), 6.0);
        assert_eq!(per(&m, 0, Counter::InsnsKernel), 1.0);
        // 6 user instructions of 4 bytes from 0x1000: one line; the kernel one: another.
        assert_eq!(per(&m, 0, Counter::LinesIUser), 1.0);
        assert_eq!(per(&m, 0, Counter::LinesIKernel), 1.0);
        // Steady state: everything fits, nothing misses.
        assert_eq!(per(&m, 0, Counter::L1dMisses), 0.0);
        assert_eq!(per(&m, 0, Counter::L1iMisses), 0.0);
        // The first window took the compulsory misses: 5 + 1 data lines, 2 code lines.
        let first = s.first.unwrap();
        assert_eq!(first.get(Counter::L1dMisses), 6);
        assert_eq!(first.get(Counter::L1iMisses), 2);
        assert_eq!(first.get(Counter::DtlbMisses), 2);
    }

    #[test]
    fn conflict_misses_show_against_the_fully_associative_twin() {
        // 9 lines 4 KiB apart share one set of the 8-way L1: LRU misses all 9 every time;
        // the fully-associative cache of the same size holds them.
        let mut m = Meter::new(&config(3, None));
        let a = Anchor::Marker(9);
        for _ in 0..10 {
            iteration(&mut m, a, 9, 4096);
        }
        m.segment_address();
        assert_eq!(per(&m, 0, Counter::LinesDUser), 9.0);
        assert_eq!(per(&m, 0, Counter::L1dMisses), 9.0);
        assert_eq!(per(&m, 0, Counter::L1dMissesFa), 0.0);
        // 9 pages in 9 of the TLB's 16 sets: no TLB misses in the steady state.
        assert_eq!(per(&m, 0, Counter::DtlbMisses), 0.0);
    }

    #[test]
    fn segments_change_with_the_anchor_and_stop_after_k() {
        let mut m = Meter::new(&config(0, Some(2)));
        for _ in 0..3 {
            assert_eq!(
                iteration(&mut m, Anchor::Addr(0x1000), 1, 64),
                Next::Continue
            );
        }
        assert_eq!(m.segment_address(), Next::Continue);
        for _ in 0..4 {
            assert_eq!(
                iteration(&mut m, Anchor::Addr(0x1000), 1, 64),
                Next::Continue
            );
        }
        // A third segment would begin: two have ended, so the meter says stop.
        assert_eq!(m.anchor(Anchor::Addr(0x2000)), Next::Stop);
        let windows: Vec<u64> = m.segments().iter().map(|s| s.windows).collect();
        assert_eq!(windows, vec![2, 3]);
        let report = m.report(&config(0, Some(2)), "stop-after");
        let v: serde_json::Value = serde_json::from_str(&report).unwrap();
        assert_eq!(v["segments"][1]["windows"], 3);
        assert_eq!(v["segments"][1]["per_window"]["lines_d_user"], 1);
        assert_eq!(v["segments"][0]["anchor"], "0x1000");
        assert_eq!(v["stopped"], "stop-after");
    }

    #[test]
    fn before_the_first_window_only_instructions_count() {
        let mut m = Meter::new(&config(0, None));
        m.insn(0x1000, 4);
        m.mem(0x2000, 0x2000, 8);
        assert_eq!(m.window.get(Counter::InsnsUser), 1);
        assert_eq!(m.window.get(Counter::MemAccesses), 0);
        let mut armed = Meter::new(&Config {
            arm: Arm::Start,
            ..config(0, None)
        });
        armed.mem(0x2000, 0x2000, 8);
        assert_eq!(armed.window.get(Counter::LinesDUser), 1);
    }

    #[test]
    fn data_lines_are_physical() {
        // Two spaces' stacks at the same virtual address in different frames: two lines.
        let mut m = Meter::new(&Config {
            arm: Arm::Start,
            ..config(0, None)
        });
        m.mem(0x7FFF_0000, 0x10_0000, 8);
        m.mem(0x7FFF_0000, 0x20_0000, 8);
        m.mem(0x7FFF_0000, 0x10_0000, 8);
        assert_eq!(m.window.get(Counter::LinesDUser), 2);
        assert_eq!(m.window.get(Counter::DtlbMisses), 1);
    }

    #[test]
    fn cr3_writes_flush_user_tlb_entries() {
        let mut m = Meter::new(&Config {
            arm: Arm::Start,
            ..config(0, None)
        });
        m.mem(0x2000, 0x2000, 8);
        m.mem(0xFFFF_FFFF_8000_0000, 0x100_0000, 8);
        m.cr3_write();
        m.mem(0x2000, 0x2000, 8);
        m.mem(0xFFFF_FFFF_8000_0000, 0x100_0000, 8);
        assert_eq!(m.window.get(Counter::DtlbMisses), 3);
    }

    #[test]
    fn averages_are_printed_exactly_or_to_four_places() {
        assert_eq!(decimal(10, 5), "2");
        assert_eq!(decimal(10, 4), "2.5");
        assert_eq!(decimal(1, 3), "0.3333");
    }
}
