//! Random system-call arguments, biased towards the values a kernel must get right:
//! thread ids of live threads (and their near misses), fpages around real mappings,
//! message tags at the limits, well-formed and malformed typed items, timeouts of every
//! kind. Each generator mixes plausible values with raw random words.
//!
//! Generators only *propose*; the rules that keep the fuzzer's own machinery alive
//! (`calls::Policy`) are applied afterwards, on the finished registers.

use abi::fpage::{Fpage, Rights};
use abi::msg::{MapItem, MsgTag, StringItemHeader};
use abi::thread_id::ThreadId;
use abi::time;

use crate::rng::Rng;
use crate::world::{self, Space, SHARED};

use core::sync::atomic::Ordering;

/// What a generator needs to know about the thread it runs in.
pub struct Ctx {
    pub role: usize,
    pub space: Space,
    pub rng: Rng,
}

/// Roles in `space`.
pub fn roles_in(space: Space) -> &'static [usize] {
    match space {
        Space::R => &[world::M, world::FP0, world::FP1, world::RV0, world::RV1],
        Space::U => &[world::FU0, world::FU1, world::UV0, world::UV1],
        Space::A => &[world::CA],
        Space::B => &[world::CB],
    }
}

impl Ctx {
    /// A thread id: live, nearly live, special or random.
    pub fn tid(&mut self) -> u64 {
        let r = &mut self.rng;
        match r.weighted(&[22, 14, 8, 10, 4, 4, 4, 6, 6, 8, 6, 8]) {
            0 => world::id_of(r.below(world::ROLES as u64) as usize).raw(),
            1 => pool_id(r),
            2 => {
                // A live id with another version.
                let base = if r.percent(50) { world::id_of(r.below(world::ROLES as u64) as usize) } else { ThreadId(pool_id(r)) };
                let v = match r.below(4) {
                    0 => 0,
                    1 => base.version().wrapping_add(1),
                    2 => base.version().wrapping_sub(1),
                    _ => r.next() as u32,
                };
                ThreadId::global(base.number(), v).raw()
            }
            3 => {
                let role = r.pick(roles_in(self.space));
                world::local_of(role).raw()
            }
            4 => ThreadId::NIL.raw(),
            5 => ThreadId::ANY.raw(),
            6 => ThreadId::ANY_LOCAL.raw(),
            7 => ThreadId::global(r.below(26) as u32, if r.percent(80) { 1 } else { r.below(4) as u32 }).raw(),
            8 => {
                // A local id slightly off: misaligned, outside the area, another slot.
                let base = world::local_of(r.pick(roles_in(self.space))).raw();
                match r.below(4) {
                    0 => base.wrapping_add(8 * (1 + r.below(8))),
                    1 => base.wrapping_add(world::UTCB_SIZE * (1 + r.below(300))),
                    2 => base.wrapping_sub(world::UTCB_SIZE * (1 + r.below(8))),
                    _ => (r.next() & !0x3F) | 0x200,
                }
            }
            9 => ThreadId::global(world::user_base() + r.below(120) as u32, 1).raw(),
            10 => ThreadId::global(sigma0_number(), 1).raw(),
            _ => r.next(),
        }
    }

    /// A receive specifier (mostly open or the sender we talk to).
    pub fn receive_spec(&mut self, to: u64) -> u64 {
        match self.rng.weighted(&[30, 25, 10, 5, 30]) {
            0 => ThreadId::ANY.raw(),
            1 => to,
            2 => ThreadId::ANY_LOCAL.raw(),
            3 => ThreadId::NIL.raw(),
            _ => self.tid(),
        }
    }

    /// An address inside memory that exists in this thread's space (or close to it).
    pub fn address(&mut self) -> u64 {
        let space = self.space;
        let r = &mut self.rng;
        let region = match r.weighted(&[20, 15, 8, 8, 6, 6, 12, 5, 10, 10]) {
            0 => world::image(),
            1 => world::area_range(space),
            2 => world::sink_of(space),
            3 => world::scratch_of(space),
            4 => world::shared_range(),
            5 => world::Range { start: world::UTCB_AREA, end: world::UTCB_AREA + (1 << 18) },
            6 => world::Range { start: world::SANDBOX, end: world::SANDBOX + (1 << world::SANDBOX_LOG2) },
            7 => world::Range { start: world::KIP_AREA, end: world::KIP_AREA + 0x1000 },
            8 => world::Range { start: 0, end: 1 << 47 },
            _ => return r.next(),
        };
        region.start + r.below(region.len().max(1))
    }

    /// A log2 size for an fpage.
    pub fn log2(&mut self) -> u8 {
        let r = &mut self.rng;
        match r.weighted(&[40, 20, 15, 8, 4, 13]) {
            0 => 12,
            1 => 13 + r.below(4) as u8,
            2 => 17 + r.below(8) as u8,
            3 => 25 + r.below(23) as u8,
            4 => 48 + r.below(16) as u8,
            _ => r.below(64) as u8,
        }
    }

    /// Random X.2 rights.
    pub fn rights(&mut self) -> Rights {
        Rights::from_bits_truncate(self.rng.below(8))
    }

    /// An fpage word: around real mappings, whole spaces, nil, I/O fpages, raw words.
    pub fn fpage(&mut self) -> u64 {
        match self.rng.weighted(&[70, 4, 4, 6, 16]) {
            0 => {
                let a = self.address();
                let l = self.log2();
                let rights = self.rights();
                Fpage::new(a, l, rights).raw()
            }
            1 => Fpage::complete(self.rights()).raw(),
            2 => 0,
            3 => {
                // I/O fpage: port << 16 | log2 << 10 | 2 << 4 | rights.
                let r = &mut self.rng;
                (r.below(1 << 16) << 16) | (r.below(17) << 10) | (2 << 4) | r.below(8)
            }
            _ => self.rng.next(),
        }
    }

    /// A message tag: label (kernel protocols among them), u and t near the limits,
    /// occasionally flags.
    pub fn tag(&mut self, typed_words: u8) -> MsgTag {
        let r = &mut self.rng;
        let label = match r.below(10) {
            0 => abi::msg::label::PAGE_FAULT | r.below(8),
            1 => r.pick(&[abi::msg::label::EXCEPTION, abi::msg::label::INTERRUPT, abi::msg::label::SIGMA0, abi::msg::label::IO_PAGE_FAULT, abi::msg::label::PREEMPTION]),
            2..=5 => r.below(0x100),
            _ => r.next() & abi::msg::label::LABEL_MASK,
        };
        let u = match r.weighted(&[30, 40, 15, 10, 5]) {
            0 => r.below(3) as u8,
            1 => r.below(9) as u8,
            2 => 9 + r.below(20) as u8,
            3 => 29 + r.below(35) as u8,
            _ => r.below(64) as u8,
        };
        let mut tag = MsgTag::new(label, u, typed_words);
        if r.percent(8) {
            tag = tag.with_flags(r.below(16) as u8);
        }
        tag
    }

    /// Timeouts word: each half never, zero, a short period, a point or raw bits.
    pub fn timeouts(&mut self) -> u64 {
        let s = self.time();
        let rcv = self.time();
        ((s as u64) << 16) | rcv as u64
    }

    /// One 16-bit time value.
    ///
    /// Long waits are rare: a fuzzer blocked for long stalls until M revives it.
    pub fn time(&mut self) -> u16 {
        let r = &mut self.rng;
        match r.weighted(&[5, 400, 450, 50, 80, 15]) {
            0 => time::NEVER,
            1 => time::ZERO,
            2 => time::Time::period_us(1 + r.below(3000)).unwrap_or(time::ZERO),
            3 => time::Time::point_us(l4::syscall::system_clock() + r.below(5000), l4::syscall::system_clock()).unwrap_or(time::ZERO),
            // Any period up to 65 ms (exponent up to 6), raw mantissa.
            4 => ((r.below(7) << 10) | r.below(1024)) as u16,
            _ => r.next() as u16,
        }
    }

    /// Typed items for the MRs from `first` on, at most `room` words: map and grant items
    /// of fpages around real mappings, string items over this thread's memory, and now
    /// and then malformed words. Returns the words written into `out`.
    pub fn typed_items(&mut self, out: &mut [u64], room: usize) -> usize {
        let mut n = 0;
        let items = 1 + self.rng.below(3) as usize;
        // (Known finding: see `crate::Finding::FaultingStrings`.)
        let strings = if self.space == Space::R || !crate::avoid(crate::Finding::FaultingStrings) { 25 } else { 0 };
        for i in 0..items {
            let last = i + 1 == items;
            let more = !last || self.rng.percent(5);
            match self.rng.weighted(&[45, 15, strings, 8, 7]) {
                0 | 1 => {
                    if n + 2 > room {
                        break;
                    }
                    let fp = Fpage(self.fpage());
                    let base = self.address();
                    let item = if self.rng.percent(25) { MapItem::grant(fp, base) } else { MapItem::map(fp, base) };
                    let w = item.with_more(more).encode();
                    out[n] = w[0];
                    out[n + 1] = w[1];
                    n += 2;
                }
                2 => {
                    let subs = if self.rng.percent(80) { 1 } else { 1 + self.rng.below(4) as u8 };
                    if n + 1 + subs as usize > room {
                        break;
                    }
                    let len = match self.rng.below(5) {
                        0 => 0,
                        1 => 1 + self.rng.below(64),
                        2 => 1 + self.rng.below(4096),
                        3 => 1 + self.rng.below(20_000),
                        _ => self.rng.next() & abi::msg::STRING_MAX_LEN,
                    };
                    let h = StringItemHeader { length: len, substrings: subs, compound: self.rng.percent(10), more, cache_hint: 0 };
                    out[n] = h.encode();
                    for k in 0..subs as usize {
                        out[n + 1 + k] = self.string_source();
                    }
                    n += 1 + subs as usize;
                }
                3 => {
                    if n + 2 > room {
                        break;
                    }
                    // CtrlXfer or reserved type.
                    out[n] = (self.rng.next() & !0xF) | if self.rng.percent(50) { 0xC } else { 0xE } | more as u64;
                    out[n + 1] = self.rng.next();
                    n += 2;
                }
                _ => {
                    if n + 1 > room {
                        break;
                    }
                    out[n] = self.rng.next();
                    n += 1;
                }
            }
        }
        n
    }

    /// Where a sent string comes from: mostly memory this thread can read.
    fn string_source(&mut self) -> u64 {
        let space = self.space;
        let wild = if crate::avoid(crate::Finding::FaultingStrings) { 0 } else { 15 };
        let r = &mut self.rng;
        let region = match r.weighted(&[45, 25, 15, wild]) {
            0 => world::image(),
            1 => world::sink_of(space),
            2 => world::shared_range(),
            _ => return self.address(),
        };
        region.start + r.below(region.len())
    }

    /// A receive buffer (BR) string: in this space's sink, at its end, in the sandbox.
    pub fn string_buffer(&mut self) -> (u64, u64) {
        let sink = world::sink_of(self.space);
        let avoid = crate::avoid(crate::Finding::FaultingStrings);
        let r = &mut self.rng;
        match r.below(6) {
            4 | 5 if avoid => {
                let start = sink.start + r.below(sink.len());
                (start, r.below(sink.end - start + 1))
            }
            0..=3 => {
                let start = sink.start + r.below(sink.len());
                (start, r.below(sink.end - start + 1))
            }
            4 => (world::SANDBOX + r.below(1 << world::SANDBOX_LOG2), r.below(1 << 16)),
            _ => (sink.start, sink.len() + r.below(64)),
        }
    }

    /// A receive window inside this space's sandbox (or nil).
    pub fn window(&mut self) -> u64 {
        let r = &mut self.rng;
        if r.percent(15) {
            return 0;
        }
        let l = 12 + r.below(world::SANDBOX_LOG2 as u64 - 11) as u8;
        let base = world::SANDBOX + (r.below(1 << world::SANDBOX_LOG2) & !((1u64 << l) - 1));
        Fpage::new(base, l, Rights::NONE).raw()
    }
}

/// σ0's thread number.
pub fn sigma0_number() -> u32 {
    world::user_base()
}

/// A pool thread's id: as last recorded, or with a guessed version.
fn pool_id(r: &mut Rng) -> u64 {
    let k = r.below(world::POOL as u64) as usize;
    let known = SHARED.pool[k].load(Ordering::Relaxed);
    if known != 0 && r.percent(70) {
        return known;
    }
    ThreadId::global(world::pool_base() + k as u32, 1 + r.below(3) as u32).raw()
}
