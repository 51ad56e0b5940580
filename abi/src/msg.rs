//! Message words: the message tag in MR0 (§1.5), kernel-generated labels,
//! the acceptor in BR0 (§1.6) and typed items (§1.7, §1.8).
//!
//! ```text
//! MsgTag (MR0):
//!  63                                16 15 14 13 12 11      6 5       0
//! +------------------------------------+--+--+--+--+---------+---------+
//! |            label (48 bits)         | e| x| r| p|    t    |    u    |
//! +------------------------------------+--+--+--+--+---------+---------+
//! ```
//!
//! A message is MR0 = tag, then `u` untyped words MR1..MRu, then `t` typed
//! words MR(u+1)..MR(u+t), which hold typed items back to back:
//!
//! ```text
//! map/grant item (2 words)        word0: snd_base>>10 <<10 | 0 (4..9) | 1 0 g | C
//!                                 word1: send fpage
//! string item (1 + j+1 words)     word0: length <<10 | c <<9 | j <<4 | 0 h h | C
//!                                 word1..=word(j+1): substring pointers
//! ctrlxfer item (1 + n words)     word0: mask <<12 | id <<4 | 1 1 0 | C ; n = popcount(mask)
//! ```

use crate::fpage::{Fpage, Rights};

/// Labels of kernel-generated and well-known messages (48-bit values; the
/// label sits in MR0 bits 16..63). They are small negative numbers shifted
/// left by four; the low four bits may carry detail (rwx for faults).
pub mod label {
    /// Page fault (−2 << 4); rwx of the access in bits 0..2. u = 2.
    pub const PAGE_FAULT: u64 = 0xFFFF_FFFF_FFE0;
    /// Interrupt (−1 << 4). u = 0.
    pub const INTERRUPT: u64 = 0xFFFF_FFFF_FFF0;
    /// Preemption (−3 << 4). u = 2.
    pub const PREEMPTION: u64 = 0xFFFF_FFFF_FFD0;
    /// Exception, amd64 register message (−5 << 4). u = 19.
    pub const EXCEPTION: u64 = 0xFFFF_FFFF_FFB0;
    /// IO page fault (−8 << 4); rights in bits 0..2 (6 = rw). u = 2.
    pub const IO_PAGE_FAULT: u64 = 0xFFFF_FFFF_FF80;
    /// Sigma0 request (−6 << 4). u = 2 or 3.
    pub const SIGMA0: u64 = 0xFFFF_FFFF_FFA0;
    /// Sigma0 extended protocol (−1001 << 4, kept to 48 bits).
    pub const SIGMA0_EXT: u64 = ((-1001i64 << 4) as u64) & LABEL_MASK;
    /// The 48 valid label bits.
    pub const LABEL_MASK: u64 = 0xFFFF_FFFF_FFFF;
}

/// Number of untyped words of an exception message (MR1..MR19, §5.3).
pub const EXCEPTION_UNTYPED: u8 = 19;

/// MR0, the message tag.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct MsgTag(pub u64);

impl MsgTag {
    /// Label 0, no words, no flags.
    pub const NIL: Self = Self(0);
    /// Flag p (bit 12): propagated.
    pub const PROPAGATED: u8 = 1;
    /// Flag r (bit 13): redirected.
    pub const REDIRECTED: u8 = 2;
    /// Flag x (bit 14): cross-processor.
    pub const CROSS_CPU: u8 = 4;
    /// Flag e (bit 15): error.
    pub const ERROR: u8 = 8;

    /// A tag with `label` (48 bits kept), `u` untyped and `t` typed words
    /// (6 bits each kept) and no flags.
    #[inline]
    pub const fn new(label: u64, u: u8, t: u8) -> Self {
        Self((label & label::LABEL_MASK) << 16 | ((t & 0x3F) as u64) << 6 | (u & 0x3F) as u64)
    }

    /// The raw word.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// u: bits 0..5.
    #[inline]
    pub const fn untyped(self) -> u8 {
        (self.0 & 0x3F) as u8
    }

    /// t: bits 6..11.
    #[inline]
    pub const fn typed(self) -> u8 {
        ((self.0 >> 6) & 0x3F) as u8
    }

    /// `u + t`: the message words after MR0.
    #[inline]
    pub const fn words(self) -> usize {
        self.untyped() as usize + self.typed() as usize
    }

    /// Do the words fit in MR1..MR63 (`u + t <= 63`)?
    #[inline]
    pub const fn fits(self) -> bool {
        self.words() < crate::utcb::MR_COUNT
    }

    /// Label: bits 16..63.
    #[inline]
    pub const fn label(self) -> u64 {
        self.0 >> 16
    }

    /// The label with its low four bits dropped: identifies the protocol
    /// of kernel messages (what sigma0 compares, §5.7).
    #[inline]
    pub const fn protocol(self) -> u64 {
        self.label() & !0xF
    }

    /// The four flags, bits 12..15 (see the `PROPAGATED`.. constants).
    #[inline]
    pub const fn flags(self) -> u8 {
        ((self.0 >> 12) & 0xF) as u8
    }

    /// Flag p.
    #[inline]
    pub const fn propagated(self) -> bool {
        self.flags() & Self::PROPAGATED != 0
    }

    /// Flag r.
    #[inline]
    pub const fn redirected(self) -> bool {
        self.flags() & Self::REDIRECTED != 0
    }

    /// Flag x.
    #[inline]
    pub const fn cross_cpu(self) -> bool {
        self.flags() & Self::CROSS_CPU != 0
    }

    /// Flag e: the IPC failed (details in the ErrorCode TCR).
    #[inline]
    pub const fn error(self) -> bool {
        self.flags() & Self::ERROR != 0
    }

    /// The same tag with the four flags replaced by `flags & 0xF`.
    #[inline]
    pub const fn with_flags(self, flags: u8) -> Self {
        Self((self.0 & !0xF000) | ((flags & 0xF) as u64) << 12)
    }

    /// The same tag with flag e set or cleared.
    #[inline]
    pub const fn with_error(self, on: bool) -> Self {
        self.with_flag(Self::ERROR, on)
    }

    /// The same tag with flag p set or cleared.
    #[inline]
    pub const fn with_propagated(self, on: bool) -> Self {
        self.with_flag(Self::PROPAGATED, on)
    }

    #[inline]
    const fn with_flag(self, flag: u8, on: bool) -> Self {
        let bit = (flag as u64) << 12;
        Self((self.0 & !bit) | (bit * on as u64))
    }

    /// The same tag with another label (48 bits kept).
    #[inline]
    pub const fn with_label(self, label: u64) -> Self {
        Self((self.0 & 0xFFFF) | (label & label::LABEL_MASK) << 16)
    }

    /// The same tag with `u` untyped words.
    #[inline]
    pub const fn with_untyped(self, u: u8) -> Self {
        Self((self.0 & !0x3F) | (u & 0x3F) as u64)
    }

    /// The same tag with `t` typed words.
    #[inline]
    pub const fn with_typed(self, t: u8) -> Self {
        Self((self.0 & !0xFC0) | ((t & 0x3F) as u64) << 6)
    }

    /// Page fault: label `PAGE_FAULT | rwx`, u = 2 (MR1 address, MR2 IP).
    #[inline]
    pub const fn page_fault(rwx: Rights) -> Self {
        Self::new(label::PAGE_FAULT | rwx.bits() as u64, 2, 0)
    }

    /// IO page fault: label `IO_PAGE_FAULT | rights`, u = 2 (MR1 IO fpage,
    /// MR2 IP). The kernel always reports rw (6).
    #[inline]
    pub const fn io_page_fault(rights: Rights) -> Self {
        Self::new(label::IO_PAGE_FAULT | rights.bits() as u64, 2, 0)
    }

    /// Interrupt: u = 0, t = 0.
    #[inline]
    pub const fn interrupt() -> Self {
        Self::new(label::INTERRUPT, 0, 0)
    }

    /// Preemption: u = 2 (MR1 time low, MR2 time high).
    #[inline]
    pub const fn preemption() -> Self {
        Self::new(label::PREEMPTION, 2, 0)
    }

    /// Exception (amd64 register message): u = 19.
    #[inline]
    pub const fn exception() -> Self {
        Self::new(label::EXCEPTION, EXCEPTION_UNTYPED, 0)
    }

    /// Sigma0 request with `u` (2 or 3) untyped words.
    #[inline]
    pub const fn sigma0(u: u8) -> Self {
        Self::new(label::SIGMA0, u, 0)
    }
}

/// BR0, the acceptor: which typed items a receive accepts.
///
/// Bit 0 s (strings), bit 1 c (CtrlXfer, inert on amd64), bits 2..3 zero,
/// bits 4..63 the receive window: an fpage with its rights bits dropped.
/// A non-nil window accepts map and grant items.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Acceptor(pub u64);

impl Acceptor {
    /// Untyped words only.
    pub const UNTYPED: Self = Self(0);
    /// Untyped words and string items.
    pub const STRINGS: Self = Self(1);

    /// Map/grant items anywhere (window = complete space), no strings: what
    /// the kernel uses for page-fault replies.
    #[inline]
    pub const fn complete() -> Self {
        Self(0x10)
    }

    /// Accept mappings into `window` (its rights dropped) and, if
    /// `strings`, string items.
    #[inline]
    pub const fn new(window: Fpage, strings: bool) -> Self {
        Self((window.0 & !0xF) | strings as u64)
    }

    /// The raw word.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Bit 0: string items accepted.
    #[inline]
    pub const fn strings(self) -> bool {
        self.0 & 1 != 0
    }

    /// Bit 1: CtrlXfer items accepted (not supported on amd64).
    #[inline]
    pub const fn ctrl_xfer(self) -> bool {
        self.0 & 2 != 0
    }

    /// The receive window: `raw & !0xF` read as an fpage (no rights).
    #[inline]
    pub const fn window(self) -> Fpage {
        Fpage(self.0 & !0xF)
    }

    /// A non-nil window: map and grant items accepted.
    #[inline]
    pub const fn accepts_maps(self) -> bool {
        self.0 >> 4 != 0
    }
}

/// Word-0 type bits (1..3) of a map item.
const TYPE_MAP: u64 = 0x8;
/// Word-0 type bits (1..3) of a grant item.
const TYPE_GRANT: u64 = 0xA;
/// Word-0 type bits (1..3) of a CtrlXfer item.
const TYPE_CTRLXFER: u64 = 0xC;
/// Word-0 type bits (1..3) reserved (type 7).
const TYPE_RESERVED: u64 = 0xE;
/// Bit 0 of every item's first word: more typed items follow.
const MORE: u64 = 1;

/// A map or grant item (two words).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MapItem {
    /// Send base: where in the receive window the fpage lands (only bits
    /// 10..63 are transmitted).
    pub snd_base: u64,
    /// The fpage sent (word 1).
    pub fpage: Fpage,
    /// Grant (type 5) rather than map (type 4).
    pub grant: bool,
    /// C: more typed items follow.
    pub more: bool,
}

impl MapItem {
    /// Map `fpage` to `snd_base`.
    #[inline]
    pub const fn map(fpage: Fpage, snd_base: u64) -> Self {
        Self {
            snd_base,
            fpage,
            grant: false,
            more: false,
        }
    }

    /// Grant `fpage` to `snd_base`.
    #[inline]
    pub const fn grant(fpage: Fpage, snd_base: u64) -> Self {
        Self {
            snd_base,
            fpage,
            grant: true,
            more: false,
        }
    }

    /// The same item with C set or cleared.
    #[inline]
    pub const fn with_more(self, more: bool) -> Self {
        Self { more, ..self }
    }

    /// The two words: `snd_base & !0x3FF | 0x8 (map) or 0xA (grant) | C`,
    /// then the fpage.
    #[inline]
    pub const fn encode(self) -> [u64; 2] {
        let kind = if self.grant { TYPE_GRANT } else { TYPE_MAP };
        [
            (self.snd_base & !0x3FF) | kind | self.more as u64,
            self.fpage.0,
        ]
    }

    /// Read a map or grant item from its two words; `None` if word 0 is not
    /// a map/grant header. Word-0 bits 4..9 are ignored.
    #[inline]
    pub const fn decode(words: [u64; 2]) -> Option<Self> {
        let kind = words[0] & 0xE;
        if kind != TYPE_MAP && kind != TYPE_GRANT {
            return None;
        }
        Some(Self {
            snd_base: words[0] & !0x3FF,
            fpage: Fpage(words[1]),
            grant: kind == TYPE_GRANT,
            more: words[0] & MORE != 0,
        })
    }
}

/// Longest string length a header can carry (bits 10..63).
pub const STRING_MAX_LEN: u64 = (1 << 54) - 1;
/// Most substring pointers of one string item (j is 5 bits).
pub const STRING_MAX_SUBSTRINGS: u8 = 32;

/// Word 0 of a string item (§1.8); the substring pointers follow it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct StringItemHeader {
    /// Length in bytes of each substring (bits 10..63).
    pub length: u64,
    /// Number of substring pointers that follow, `j + 1` (1..=32).
    pub substrings: u8,
    /// c (bit 9): another string-item header continues this string.
    pub compound: bool,
    /// C (bit 0): more typed items follow.
    pub more: bool,
    /// Cache-allocation hint (bits 1..2; 0 = default).
    pub cache_hint: u8,
}

impl StringItemHeader {
    /// One substring of `length` bytes, default hint, no flags.
    #[inline]
    pub const fn simple(length: u64) -> Self {
        Self {
            length,
            substrings: 1,
            compound: false,
            more: false,
            cache_hint: 0,
        }
    }

    /// Words the item occupies: the header and its pointers.
    #[inline]
    pub const fn words(self) -> usize {
        1 + self.substrings as usize
    }

    /// The header word. Fields are cut to their widths: `length` to 54
    /// bits, `substrings` to 1..=32 (as `(substrings - 1) mod 32 + 1`),
    /// `cache_hint` to 2 bits.
    #[inline]
    pub const fn encode(self) -> u64 {
        let j = (self.substrings.wrapping_sub(1) & 0x1F) as u64;
        (self.length & STRING_MAX_LEN) << 10
            | (self.compound as u64) << 9
            | j << 4
            | ((self.cache_hint & 3) as u64) << 1
            | self.more as u64
    }

    /// Read a header word; `None` if word bit 3 is set (not a string item).
    #[inline]
    pub const fn decode(word: u64) -> Option<Self> {
        if word & 0x8 != 0 {
            return None;
        }
        Some(Self {
            length: word >> 10,
            substrings: ((word >> 4) & 0x1F) as u8 + 1,
            compound: word & (1 << 9) != 0,
            more: word & MORE != 0,
            cache_hint: ((word >> 1) & 3) as u8,
        })
    }
}

/// A CtrlXfer item header (type 6): a register set `id` and a mask saying
/// which registers follow, one word each. Not supported on amd64; it is
/// parsed so that it can be refused precisely.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CtrlXferItem {
    /// Register-set id (bits 4..11).
    pub id: u8,
    /// Register mask (bits 12..63).
    pub mask: u64,
    /// C: more typed items follow.
    pub more: bool,
}

impl CtrlXferItem {
    /// Words the item occupies.
    #[inline]
    pub const fn words(self) -> usize {
        1 + self.mask.count_ones() as usize
    }

    /// The header word.
    #[inline]
    pub const fn encode(self) -> u64 {
        (self.mask << 12) | (self.id as u64) << 4 | TYPE_CTRLXFER | self.more as u64
    }
}

/// One typed item, as found in the typed message words or the BRs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TypedItem {
    /// Map item (`grant` is false).
    Map(MapItem),
    /// Grant item (`grant` is true).
    Grant(MapItem),
    /// String item header; its pointers are in [`ParsedItem::substrings`].
    String(StringItemHeader),
    /// CtrlXfer item header; its register words follow.
    CtrlXfer(CtrlXferItem),
}

impl TypedItem {
    /// The item's C bit.
    #[inline]
    pub const fn more(self) -> bool {
        match self {
            TypedItem::Map(m) | TypedItem::Grant(m) => m.more,
            TypedItem::String(s) => s.more,
            TypedItem::CtrlXfer(c) => c.more,
        }
    }
}

/// A malformed typed item.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ItemError {
    /// The item at word index `at` needs `needed` words, only `available`
    /// remain among the typed words.
    Truncated {
        /// Index of the item's first word in the slice given to the reader.
        at: usize,
        /// Words the item needs.
        needed: usize,
        /// Words left from `at` on.
        available: usize,
    },
    /// The item at `at` has the reserved type 7 (word-0 bits 1..3 = 111).
    ReservedType {
        /// Index of the item's first word.
        at: usize,
    },
}

/// An item with the words it was read from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ParsedItem<'a> {
    /// The decoded item.
    pub item: TypedItem,
    /// All words of the item, header included (`words.len()` consumed).
    pub words: &'a [u64],
}

impl<'a> ParsedItem<'a> {
    /// Words consumed.
    #[inline]
    pub const fn consumed(&self) -> usize {
        self.words.len()
    }

    /// The substring pointers of a string item (empty for other items).
    #[inline]
    pub fn substrings(&self) -> &'a [u64] {
        match self.item {
            TypedItem::String(_) => self.words.get(1..).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The register words of a CtrlXfer item (empty for other items).
    #[inline]
    pub fn ctrl_words(&self) -> &'a [u64] {
        match self.item {
            TypedItem::CtrlXfer(_) => self.words.get(1..).unwrap_or(&[]),
            _ => &[],
        }
    }
}

/// Reads typed items back to back from a slice of words (the `t` typed
/// words of a message, or the buffer registers after BR0).
///
/// The word count, not the C bit, ends the walk: every word must belong to
/// a complete item. After the first error the reader yields nothing more.
#[derive(Clone, Debug)]
pub struct TypedItemReader<'a> {
    words: &'a [u64],
    pos: usize,
    failed: bool,
}

impl<'a> TypedItemReader<'a> {
    /// A reader over `words`.
    #[inline]
    pub const fn new(words: &'a [u64]) -> Self {
        Self {
            words,
            pos: 0,
            failed: false,
        }
    }

    /// Words consumed so far.
    #[inline]
    pub const fn position(&self) -> usize {
        self.pos
    }

    /// Decode the header word `w` at index `at`: the item and its length.
    #[inline]
    fn header(w: u64, at: usize) -> Result<(TypedItem, usize), ItemError> {
        let more = w & MORE != 0;
        match w & 0xE {
            TYPE_MAP | TYPE_GRANT => {
                let item = MapItem {
                    snd_base: w & !0x3FF,
                    fpage: Fpage::NIL,
                    grant: w & 0xE == TYPE_GRANT,
                    more,
                };
                Ok((
                    if item.grant {
                        TypedItem::Grant(item)
                    } else {
                        TypedItem::Map(item)
                    },
                    2,
                ))
            }
            TYPE_CTRLXFER => {
                let item = CtrlXferItem {
                    id: (w >> 4) as u8,
                    mask: w >> 12,
                    more,
                };
                Ok((TypedItem::CtrlXfer(item), item.words()))
            }
            TYPE_RESERVED => Err(ItemError::ReservedType { at }),
            _ => match StringItemHeader::decode(w) {
                Some(s) => Ok((TypedItem::String(s), s.words())),
                None => Err(ItemError::ReservedType { at }),
            },
        }
    }
}

impl<'a> Iterator for TypedItemReader<'a> {
    type Item = Result<ParsedItem<'a>, ItemError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let at = self.pos;
        let rest = self.words.get(at..)?;
        let &w = rest.first()?;
        let parsed = Self::header(w, at).and_then(|(mut item, needed)| {
            let words = rest.get(..needed).ok_or(ItemError::Truncated {
                at,
                needed,
                available: rest.len(),
            })?;
            if let TypedItem::Map(m) | TypedItem::Grant(m) = &mut item {
                m.fpage = Fpage(words[1]);
            }
            Ok(ParsedItem { item, words })
        });
        match &parsed {
            Ok(p) => self.pos += p.consumed(),
            Err(_) => self.failed = true,
        }
        Some(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tag_fields() {
        let t = MsgTag::new(0x1234, 3, 2);
        assert_eq!(t.raw(), 0x1234 << 16 | 2 << 6 | 3);
        assert_eq!(
            (t.label(), t.untyped(), t.typed(), t.words(), t.flags()),
            (0x1234, 3, 2, 5, 0)
        );
        assert!(t.fits());
        assert!(!MsgTag::new(0, 63, 1).fits());
        assert!(MsgTag::new(0, 32, 31).fits());
        let e = t.with_error(true);
        assert!(e.error() && !e.propagated() && e.flags() == 8);
        assert_eq!(e.with_error(false), t);
        let p = t.with_propagated(true);
        assert!(p.propagated() && p.raw() & 1 << 12 != 0);
        let all = t.with_flags(0xFF);
        assert!(all.propagated() && all.redirected() && all.cross_cpu() && all.error());
        assert_eq!(all.with_flags(0), t);
        assert_eq!(t.with_label(!0).label(), label::LABEL_MASK);
        assert_eq!(t.with_untyped(7).with_typed(9).words(), 16);
        assert_eq!(MsgTag::new(!0, 0xFF, 0xFF).raw(), !0xF000);
    }

    #[test]
    fn kernel_tags() {
        assert_eq!(MsgTag::page_fault(Rights::W).raw(), 0xFFFF_FFFF_FFE2_0002);
        assert_eq!(MsgTag::interrupt().raw(), 0xFFFF_FFFF_FFF0_0000);
        assert_eq!(MsgTag::preemption().raw(), 0xFFFF_FFFF_FFD0_0002);
        assert_eq!(MsgTag::exception().raw(), 0xFFFF_FFFF_FFB0_0013);
        assert_eq!(
            MsgTag::io_page_fault(Rights::RW).raw(),
            0xFFFF_FFFF_FF86_0002
        );
        assert_eq!(MsgTag::sigma0(3).raw(), 0xFFFF_FFFF_FFA0_0003);
        assert_eq!(label::SIGMA0_EXT, 0xFFFF_FFFF_C170);
        assert_eq!(
            MsgTag::page_fault(Rights::RWX).protocol(),
            label::PAGE_FAULT
        );
    }

    #[test]
    fn acceptor() {
        assert!(!Acceptor::UNTYPED.strings() && !Acceptor::UNTYPED.accepts_maps());
        assert!(Acceptor::STRINGS.strings() && !Acceptor::STRINGS.accepts_maps());
        let c = Acceptor::complete();
        assert!(c.accepts_maps() && c.window().is_complete() && c.raw() == 0x10);
        let w = Fpage::new(0x4000_0000, 30, Rights::RWX);
        let a = Acceptor::new(w, true);
        assert_eq!(a.raw(), 0x4000_0000 | 30 << 4 | 1);
        assert_eq!(a.window(), w.with_rights(Rights::NONE));
        assert!(a.strings() && !a.ctrl_xfer());
        assert!(Acceptor(2).ctrl_xfer());
    }

    #[test]
    fn map_items() {
        let f = Fpage::new(0x7000, 12, Rights::RW);
        let m = MapItem::map(f, 0x1234_5678);
        assert_eq!(m.encode(), [0x1234_5400 | 8, f.0]);
        let g = MapItem::grant(f, 0).with_more(true);
        assert_eq!(g.encode(), [0xB, f.0]);
        assert_eq!(MapItem::decode(g.encode()), Some(g));
        assert_eq!(MapItem::decode([0x3F0 | 8, 0]).map(|m| m.snd_base), Some(0));
        assert_eq!(MapItem::decode([0, 0]), None);
        assert_eq!(MapItem::decode([0xC, 0]), None);
    }

    #[test]
    fn string_headers() {
        let s = StringItemHeader {
            length: 100,
            substrings: 3,
            compound: true,
            more: true,
            cache_hint: 2,
        };
        let w = s.encode();
        assert_eq!(w, 100 << 10 | 1 << 9 | 2 << 4 | 2 << 1 | 1);
        assert_eq!(StringItemHeader::decode(w), Some(s));
        assert_eq!(s.words(), 4);
        assert_eq!(StringItemHeader::decode(8), None);
        let max = StringItemHeader {
            length: STRING_MAX_LEN,
            substrings: 32,
            ..StringItemHeader::simple(0)
        };
        assert_eq!(StringItemHeader::decode(max.encode()), Some(max));
        assert_eq!(
            StringItemHeader::decode(StringItemHeader::simple(1).encode())
                .unwrap()
                .substrings,
            1
        );
    }

    #[test]
    fn reader_walks_items() {
        let f = Fpage::new(0x2000, 12, Rights::R);
        let map = MapItem::map(f, 0x10_0000).with_more(true).encode();
        let s = StringItemHeader {
            substrings: 2,
            more: true,
            ..StringItemHeader::simple(64)
        };
        let x = CtrlXferItem {
            id: 1,
            mask: 0b101,
            more: false,
        };
        let words = [map[0], map[1], s.encode(), 0xAAAA, 0xBBBB, x.encode(), 1, 2];
        let items: Vec<_> = TypedItemReader::new(&words)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[0].item,
            TypedItem::Map(MapItem::map(f, 0x10_0000).with_more(true))
        );
        assert_eq!(items[0].consumed(), 2);
        assert!(items[0].substrings().is_empty());
        assert_eq!(items[1].item, TypedItem::String(s));
        assert_eq!(items[1].substrings(), &[0xAAAA, 0xBBBB]);
        assert_eq!(items[2].item, TypedItem::CtrlXfer(x));
        assert_eq!(items[2].ctrl_words(), &[1, 2]);
        assert!(!items[2].item.more());

        let grant = MapItem::grant(f, 0).encode();
        let one: Vec<_> = TypedItemReader::new(&grant).collect();
        assert!(matches!(
            one[..],
            [Ok(ParsedItem {
                item: TypedItem::Grant(_),
                ..
            })]
        ));
        assert_eq!(TypedItemReader::new(&[]).next(), None);
    }

    #[test]
    fn reader_rejects_malformed() {
        let map = MapItem::map(Fpage::NIL, 0).encode();
        let mut r = TypedItemReader::new(&map[..1]);
        assert_eq!(
            r.next(),
            Some(Err(ItemError::Truncated {
                at: 0,
                needed: 2,
                available: 1
            }))
        );
        assert_eq!(r.next(), None);

        let s = StringItemHeader {
            substrings: 4,
            ..StringItemHeader::simple(8)
        }
        .encode();
        let words = [map[0], map[1], s, 1, 2];
        let mut r = TypedItemReader::new(&words);
        assert!(r.next().unwrap().is_ok());
        assert_eq!(r.position(), 2);
        assert_eq!(
            r.next(),
            Some(Err(ItemError::Truncated {
                at: 2,
                needed: 5,
                available: 3
            }))
        );
        assert_eq!(r.next(), None);

        let mut r = TypedItemReader::new(&[0xE, 0]);
        assert_eq!(r.next(), Some(Err(ItemError::ReservedType { at: 0 })));
        assert_eq!(r.next(), None);
    }

    proptest! {
        #[test]
        fn tag_round_trip(label in 0u64..(1 << 48), u in 0u8..64, t in 0u8..64, flags in 0u8..16) {
            let tag = MsgTag::new(label, u, t).with_flags(flags);
            prop_assert_eq!((tag.label(), tag.untyped(), tag.typed(), tag.flags()), (label, u, t, flags));
        }

        #[test]
        fn map_round_trip(base: u64, fpage: u64, grant: bool, more: bool) {
            let m = MapItem { snd_base: base & !0x3FF, fpage: Fpage(fpage), grant, more };
            prop_assert_eq!(MapItem::decode(m.encode()), Some(m));
            let w = m.encode();
            let p = TypedItemReader::new(&w).next().unwrap().unwrap();
            let expect = if grant { TypedItem::Grant(m) } else { TypedItem::Map(m) };
            prop_assert_eq!(p.item, expect);
        }

        #[test]
        fn string_round_trip(length in 0..=STRING_MAX_LEN, n in 1u8..=32, compound: bool, more: bool, hint in 0u8..4) {
            let s = StringItemHeader { length, substrings: n, compound, more, cache_hint: hint };
            prop_assert_eq!(StringItemHeader::decode(s.encode()), Some(s));
        }

        #[test]
        fn reader_never_overruns(words in proptest::collection::vec(any::<u64>(), 0..64)) {
            let mut total = 0;
            for item in TypedItemReader::new(&words) {
                match item {
                    Ok(p) => total += p.consumed(),
                    Err(_) => break,
                }
            }
            prop_assert!(total <= words.len());
        }
    }
}
