//! `bootfmt`: parsers for the untrusted data a machine hands Tern at boot.
//!
//! The kernel and the user-level loaders read four formats whose bytes nobody has
//! checked yet:
//!
//! | module     | format                                                    |
//! |------------|-----------------------------------------------------------|
//! | [`elf`]    | ELF64 executables for x86_64 (the kernel, σ0, servers)    |
//! | [`cpio`]   | "newc" cpio archives (the boot module archive)            |
//! | [`pvh`]    | Xen's `hvm_start_info` handed over by a PVH boot loader   |
//! | [`memmap`] | physical memory map arithmetic (usable RAM)               |
//!
//! # Design principles
//!
//! * **Input is an allegation.** Every parser takes a byte slice (or plain values) and
//!   either returns a validated view or an error naming what was wrong. Malformed,
//!   truncated or malicious input never panics, never overflows (all offset arithmetic
//!   is checked) and never reads outside the slice (all reads go through `get`).
//! * **Views, not copies.** Parsed results borrow from the input (`&'a [u8]`), so the
//!   crate needs neither `alloc` nor a heap; fixed-capacity structures take their size as
//!   a const generic.
//! * **No unsafe.** Everything here is plain safe Rust; reading physical memory into a
//!   slice is the caller's business.
//! * **`core` only.** The crate is `no_std` outside tests and has no dependencies, so it
//!   links into the kernel unchanged. Host tests (including property tests that throw
//!   random and mutated input at every parser) run with `cargo test -p bootfmt`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

mod bytes;
pub mod cpio;
pub mod elf;
pub mod memmap;
pub mod pvh;
