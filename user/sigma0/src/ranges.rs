//! A map from address ranges to values in a fixed array (σ0 has no heap): the memory
//! kinds from the KIP, who owns which memory, who owns which I/O ports.
//!
//! # Invariants
//! `items[..len]` are sorted by start, non-empty (`start < end`) and disjoint; two
//! neighbours that touch (`a.end == b.start`) carry different values.

/// One range `[start, end)` and its value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Range<V> {
    pub start: u64,
    pub end: u64,
    pub value: V,
}

/// The map is full: a change would need more than `N` ranges.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Full;

/// Up to `N` ranges with values `V`.
pub struct RangeMap<V: Copy + PartialEq, const N: usize> {
    items: [Range<V>; N],
    len: usize,
}

impl<V: Copy + PartialEq, const N: usize> RangeMap<V, N> {
    /// An empty map; `fill` only initialises unused slots.
    pub const fn new(fill: V) -> Self {
        Self {
            items: [Range {
                start: 0,
                end: 0,
                value: fill,
            }; N],
            len: 0,
        }
    }

    /// The ranges in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = Range<V>> + '_ {
        self.items[..self.len].iter().copied()
    }

    /// Free slots.
    pub fn room(&self) -> usize {
        N - self.len
    }

    /// Calls `f(start, end, value)` for the pieces of `[start, end)` in ascending order:
    /// each range's part inside it, and the gaps between them with `None`. Stops early
    /// when `f` returns false; returns whether it went through.
    pub fn pieces(
        &self,
        start: u64,
        end: u64,
        mut f: impl FnMut(u64, u64, Option<V>) -> bool,
    ) -> bool {
        let mut cur = start;
        let first = self.items[..self.len].partition_point(|r| r.end <= start);
        for r in &self.items[first..self.len] {
            if cur >= end {
                break;
            }
            if r.start >= end {
                break;
            }
            if r.start > cur {
                if !f(cur, r.start, None) {
                    return false;
                }
                cur = r.start;
            }
            let e = r.end.min(end);
            if !f(cur, e, Some(r.value)) {
                return false;
            }
            cur = e;
        }
        cur >= end || f(cur, end, None)
    }

    /// Sets `[start, end)` to `value` (`None`: removes it from the map).
    pub fn set(&mut self, start: u64, end: u64, value: Option<V>) -> Result<(), Full> {
        if start >= end {
            return Ok(());
        }
        // Ranges i..j overlap [start, end).
        let i = self.items[..self.len].partition_point(|r| r.end <= start);
        let j = self.items[..self.len].partition_point(|r| r.start < end);
        let mut repl = [Range {
            start: 0,
            end: 0,
            value: self.items[0].value,
        }; 3];
        let mut k = 0;
        if i < j && self.items[i].start < start {
            repl[k] = Range {
                start: self.items[i].start,
                end: start,
                value: self.items[i].value,
            };
            k += 1;
        }
        if let Some(v) = value {
            repl[k] = Range {
                start,
                end,
                value: v,
            };
            k += 1;
        }
        if i < j && self.items[j - 1].end > end {
            repl[k] = Range {
                start: end,
                end: self.items[j - 1].end,
                value: self.items[j - 1].value,
            };
            k += 1;
        }
        let old = j - i;
        if self.len - old + k > N {
            return Err(Full);
        }
        // Move the tail, then put the replacement in.
        let tail = self.len - j;
        if k != old {
            self.items.copy_within(j..j + tail, i + k);
        }
        self.items[i..i + k].copy_from_slice(&repl[..k]);
        self.len = self.len - old + k;
        // Merge equal neighbours around the change.
        let lo = i.saturating_sub(1);
        let hi = (i + k + 1).min(self.len);
        let mut n = lo;
        while n + 1 < hi.min(self.len) {
            let (a, b) = (self.items[n], self.items[n + 1]);
            if a.end == b.start && a.value == b.value {
                self.items[n].end = b.end;
                self.items.copy_within(n + 2..self.len, n + 1);
                self.len -= 1;
            } else {
                n += 1;
            }
        }
        Ok(())
    }
}
