//! Storage for mapping nodes: [`mapdb::Store`] as a slab of kernel-pool frames.
//!
//! ```text
//!  frame (4 KiB, from the kernel pool)
//!  +--------+--------+--------+-----+--------+
//!  | header | node 0 | node 1 | ... | node N |   N = SLOTS - 1 (about 100)
//!  +--------+--------+--------+-----+--------+
//!  header: list links, live count, free-slot list, live bitmap
//!
//!  NodeId index = (frame number - first pool frame) << 7 | slot
//! ```
//!
//! A node's id gives its address by arithmetic, so `node(id)` is O(1) with no table.
//! Frames sit on one of three lists by fill state (empty, partial, full); allocation
//! takes from a partial frame first. [`Store::reserve`] adds empty frames until enough
//! slots are free; frames that became empty go back to the pool at the end of the
//! operation ([`trim`]), so kernel memory returns to its start value once the mappings
//! made since are gone.
//!
//! # Invariants
//! - `free_slots` is the number of free slots in the empty and partial frames.
//! - A frame is on the list its `live` count says (0: empty, SLOTS: full, else partial).
//! - Bit `s` of a frame's bitmap is set iff slot `s` holds a live node; a free slot's
//!   first four bytes hold the next free slot (or `NONE`).

use core::mem::size_of;

use mapdb::{Node, NodeId, OutOfMemory, Store};

use crate::arch::layout::phys_to_virt;
use crate::kmem::{self, FRAME_SIZE};
use crate::util::KCell;

#[repr(C)]
struct Header {
    prev: u64,
    next: u64,
    live: u32,
    free: u32,
    list: u32,
    _pad: u32,
    bits: [u64; 2],
}

/// Node slots per frame.
const SLOTS: usize = (FRAME_SIZE as usize - size_of::<Header>()) / size_of::<Node>();
/// Bits of a NodeId index that name the slot.
const SLOT_BITS: u32 = 7;
const NONE: u32 = u32::MAX;
const EMPTY: usize = 0;
const PARTIAL: usize = 1;
const FULL: usize = 2;

const _: () = assert!(SLOTS > 0 && SLOTS <= 1 << SLOT_BITS && SLOTS <= 128);
const _: () = assert!(size_of::<Header>() % core::mem::align_of::<Node>() == 0);

struct State {
    heads: [u64; 3],
    free_slots: usize,
    live: usize,
    frames: usize,
}

static STATE: KCell<State> = KCell::new(State { heads: [0; 3], free_slots: 0, live: 0, frames: 0 });

/// A slab frame (physical address).
///
/// # Invariants
/// Only built for frames this module allocated and has not freed.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Frame(u64);

impl Frame {
    fn hdr(self) -> *mut Header {
        phys_to_virt(self.0) as *mut Header
    }

    fn slot_ptr(self, s: usize) -> *mut Node {
        (phys_to_virt(self.0) + size_of::<Header>() as u64 + (s * size_of::<Node>()) as u64) as *mut Node
    }

    fn header(self) -> &'static mut Header {
        // SAFETY: a slab frame (type invariant) starts with its header; the kernel keeps
        // such borrows short (single processor, not preemptible).
        unsafe { &mut *self.hdr() }
    }

    fn is_live(self, s: usize) -> bool {
        self.header().bits[s / 64] & (1 << (s % 64)) != 0
    }

    fn id(self, s: usize) -> NodeId {
        let (pool, _) = kmem::pool_range();
        let index = (((self.0 - pool) >> 12) << SLOT_BITS) as u32 | s as u32;
        NodeId::from_index(index).unwrap_or_else(|| panic!("node index overflow"))
    }

    fn of(id: NodeId) -> (Frame, usize) {
        let (pool, _) = kmem::pool_range();
        let index = id.index() as u64;
        (Frame(pool + ((index >> SLOT_BITS) << 12)), (index & ((1 << SLOT_BITS) - 1)) as usize)
    }
}

fn push(list: usize, f: Frame) {
    let st = STATE.get_mut();
    let h = f.header();
    h.list = list as u32;
    h.prev = 0;
    h.next = st.heads[list];
    if st.heads[list] != 0 {
        Frame(st.heads[list]).header().prev = f.0;
    }
    st.heads[list] = f.0;
}

fn unlink(f: Frame) {
    let st = STATE.get_mut();
    let h = f.header();
    let (prev, next, list) = (h.prev, h.next, h.list as usize);
    if prev != 0 {
        Frame(prev).header().next = next;
    } else {
        st.heads[list] = next;
    }
    if next != 0 {
        Frame(next).header().prev = prev;
    }
}

fn move_to(f: Frame, list: usize) {
    if f.header().list as usize != list {
        unlink(f);
        push(list, f);
    }
}

/// Adds one empty frame.
fn grow() -> Result<(), OutOfMemory> {
    let pa = kmem::alloc_frame().map_err(|_| OutOfMemory)?;
    let f = Frame(pa);
    for s in 0..SLOTS {
        let next = if s + 1 < SLOTS { (s + 1) as u32 } else { NONE };
        // SAFETY: a fresh frame of ours; slot `s` lies inside it (SLOTS fit by const).
        unsafe { (f.slot_ptr(s) as *mut u32).write(next) };
    }
    let h = f.header();
    h.live = 0;
    h.free = 0;
    h.bits = [0; 2];
    push(EMPTY, f);
    let st = STATE.get_mut();
    st.free_slots += SLOTS;
    st.frames += 1;
    Ok(())
}

/// Returns empty frames to the kernel pool (at the end of an operation).
pub fn trim() {
    loop {
        let head = STATE.get().heads[EMPTY];
        if head == 0 {
            break;
        }
        let f = Frame(head);
        unlink(f);
        // SAFETY: an empty slab frame holds no live node; unlinked, nothing refers to it.
        unsafe { kmem::free_frame(f.0) };
        let st = STATE.get_mut();
        st.free_slots -= SLOTS;
        st.frames -= 1;
    }
}

/// Live nodes and slab frames.
pub fn stats() -> (usize, usize) {
    let st = STATE.get();
    (st.live, st.frames)
}

/// The node store (stateless handle; the slab is global).
pub struct Slab;

impl Store for Slab {
    fn reserve(&mut self, n: usize) -> Result<(), OutOfMemory> {
        while STATE.get().free_slots < n {
            grow()?;
        }
        Ok(())
    }

    fn alloc(&mut self, node: Node) -> NodeId {
        let st = STATE.get();
        let head = if st.heads[PARTIAL] != 0 { st.heads[PARTIAL] } else { st.heads[EMPTY] };
        let f = if head != 0 {
            Frame(head)
        } else {
            if grow().is_err() {
                panic!("mapdb allocated a node it had not reserved, and the pool is empty");
            }
            Frame(STATE.get().heads[EMPTY])
        };
        let h = f.header();
        let s = h.free as usize;
        // SAFETY: `s` is the frame's first free slot (invariant), inside the frame; its
        // first word holds the next free slot; then the node takes the slot.
        unsafe {
            h.free = (f.slot_ptr(s) as *const u32).read();
            f.slot_ptr(s).write(node);
        }
        h.bits[s / 64] |= 1 << (s % 64);
        h.live += 1;
        let full = h.live as usize == SLOTS;
        move_to(f, if full { FULL } else { PARTIAL });
        let st = STATE.get_mut();
        st.free_slots -= 1;
        st.live += 1;
        f.id(s)
    }

    fn free(&mut self, id: NodeId) {
        let (f, s) = Frame::of(id);
        debug_assert!(f.is_live(s), "free of a dead node {:?}", id);
        let h = f.header();
        h.bits[s / 64] &= !(1 << (s % 64));
        // SAFETY: slot `s` of a slab frame (mapdb frees only live ids); it becomes free
        // and holds the free-list link.
        unsafe { (f.slot_ptr(s) as *mut u32).write(h.free) };
        h.free = s as u32;
        h.live -= 1;
        move_to(f, if h.live == 0 { EMPTY } else { PARTIAL });
        let st = STATE.get_mut();
        st.free_slots += 1;
        st.live -= 1;
    }

    fn node(&self, id: NodeId) -> &Node {
        let (f, s) = Frame::of(id);
        // SAFETY: mapdb reads only live ids (Store contract): slot `s` of a slab frame
        // holds an initialised node until freed.
        unsafe { &*f.slot_ptr(s) }
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        let (f, s) = Frame::of(id);
        // SAFETY: as in `node`; `&mut self` makes the borrow exclusive within the store.
        unsafe { &mut *f.slot_ptr(s) }
    }

    fn contains(&self, id: NodeId) -> bool {
        let (f, s) = Frame::of(id);
        s < SLOTS && is_slab_frame(f) && f.is_live(s)
    }

    fn next_node(&self, after: Option<NodeId>) -> Option<NodeId> {
        // Order: the partial list, then the full list; slots in ascending order.
        let (mut frame, mut from, mut list) = match after {
            None => (STATE.get().heads[PARTIAL], 0, PARTIAL),
            Some(id) => {
                let (f, s) = Frame::of(id);
                (f.0, s + 1, f.header().list as usize)
            }
        };
        loop {
            while frame != 0 {
                let f = Frame(frame);
                if let Some(s) = (from..SLOTS).find(|&s| f.is_live(s)) {
                    return Some(f.id(s));
                }
                frame = f.header().next;
                from = 0;
            }
            if list != PARTIAL {
                return None;
            }
            list = FULL;
            frame = STATE.get().heads[FULL];
        }
    }
}

/// Whether `f` is on one of the slab's lists (walks them: invariant checks only).
fn is_slab_frame(f: Frame) -> bool {
    let st = STATE.get();
    st.heads.iter().any(|&head| {
        let mut cur = head;
        while cur != 0 {
            if cur == f.0 {
                return true;
            }
            cur = Frame(cur).header().next;
        }
        false
    })
}
