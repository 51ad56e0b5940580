//! A fixed-capacity byte FIFO: the receive and transmit buffers of the UART driver.
//!
//! ```text
//!   buf:  [ . . . h e l l o . . . ]
//!               ^head      ^head+len (mod N)
//! ```
//!
//! # Invariants
//! `head < N` and `len <= N`; the bytes in the FIFO are `buf[(head + i) % N]` for
//! `i in 0..len`, oldest first.

/// A byte FIFO holding at most `N` bytes (`N > 0`).
pub struct Ring<const N: usize> {
    buf: [u8; N],
    head: usize,
    len: usize,
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Ring<N> {
    const NONEMPTY: () = assert!(N > 0, "a ring needs room for one byte");

    /// An empty FIFO.
    pub const fn new() -> Self {
        let () = Self::NONEMPTY;
        Self {
            buf: [0; N],
            head: 0,
            len: 0,
        }
    }

    /// Bytes held.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Nothing held?
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left.
    pub const fn free(&self) -> usize {
        N - self.len
    }

    /// Capacity.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Appends `b`; false (and nothing changes) if full.
    pub fn push(&mut self, b: u8) -> bool {
        if self.len == N {
            return false;
        }
        self.buf[(self.head + self.len) % N] = b;
        self.len += 1;
        true
    }

    /// Appends as much of `bytes` as fits; returns how many were taken (a prefix).
    pub fn push_slice(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.free());
        for &b in &bytes[..n] {
            self.push(b);
        }
        n
    }

    /// Removes and returns the oldest byte.
    pub fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.head];
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(b)
    }

    /// Copies the oldest `out.len()` bytes (or all there are) into `out` without removing
    /// them; returns how many.
    pub fn peek(&self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = self.buf[(self.head + i) % N];
        }
        n
    }

    /// Drops the oldest `n` bytes (all, if fewer are held); returns how many went.
    pub fn consume(&mut self, n: usize) -> usize {
        let n = n.min(self.len);
        self.head = (self.head + n) % N;
        self.len -= n;
        n
    }

    /// Empties the FIFO.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_order_and_wrap() {
        let mut r: Ring<4> = Ring::new();
        assert!(r.is_empty());
        for round in 0..10u8 {
            assert!(r.push(round));
            assert!(r.push(round.wrapping_add(100)));
            assert_eq!(r.pop(), Some(round));
            assert_eq!(r.pop(), Some(round.wrapping_add(100)));
        }
        assert_eq!(r.pop(), None);
    }

    #[test]
    fn full_ring_refuses() {
        let mut r: Ring<3> = Ring::new();
        assert_eq!(r.push_slice(b"abcdef"), 3);
        assert!(!r.push(b'x'));
        assert_eq!(r.free(), 0);
        assert_eq!(r.pop(), Some(b'a'));
        assert!(r.push(b'x'));
        let mut out = [0; 8];
        assert_eq!(r.peek(&mut out), 3);
        assert_eq!(&out[..3], b"bcx");
    }

    #[test]
    fn peek_then_consume_keeps_order() {
        let mut r: Ring<5> = Ring::new();
        r.push_slice(b"hel");
        r.consume(2);
        r.push_slice(b"lo, w");
        let mut out = [0; 5];
        assert_eq!(r.peek(&mut out), 5);
        assert_eq!(&out, b"llo, ");
        assert_eq!(r.consume(9), 5);
        assert!(r.is_empty());
        r.push_slice(b"z");
        r.clear();
        assert_eq!(r.len(), 0);
        assert_eq!(r.capacity(), 5);
    }

    #[test]
    fn matches_a_model_queue() {
        // A deterministic pseudo-random mix of operations against VecDeque.
        let mut r: Ring<7> = Ring::new();
        let mut model = std::collections::VecDeque::new();
        let mut x: u32 = 12345;
        for _ in 0..5000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            match (x >> 16) % 4 {
                0 | 1 => {
                    let b = (x >> 8) as u8;
                    let ok = r.push(b);
                    assert_eq!(ok, model.len() < 7);
                    if ok {
                        model.push_back(b);
                    }
                }
                2 => assert_eq!(r.pop(), model.pop_front()),
                _ => {
                    let n = ((x >> 20) % 4) as usize;
                    let mut out = [0u8; 4];
                    let got = r.peek(&mut out[..n]);
                    let want: Vec<u8> = model.iter().take(n).copied().collect();
                    assert_eq!(&out[..got], &want[..]);
                    r.consume(got);
                    for _ in 0..got {
                        model.pop_front();
                    }
                }
            }
            assert_eq!(r.len(), model.len());
        }
    }
}
