//! `abi`: the L4 X.2 binary interface (AMD64 binding) as Tern implements it.
//!
//! One `no_std` crate shared by the kernel and the user library, so that both
//! sides of every encoding change in the same commit. It holds:
//!
//! | module        | what                                                        |
//! |---------------|-------------------------------------------------------------|
//! | [`thread_id`] | global / local thread ids                                   |
//! | [`fpage`]     | memory and IO flexpages, access rights                      |
//! | [`time`]      | 16-bit time values, timeouts, absolute deadlines            |
//! | [`msg`]       | message tag, acceptor, typed items (map, grant, string)     |
//! | [`error`]     | ErrorCode values for system calls and IPC                   |
//! | [`utcb`]      | the 1 KB user thread control block and its offsets          |
//! | [`kip`]       | the kernel interface page, its descriptors, a builder       |
//! | [`syscall`]   | typed views over system-call register arguments, KDB codes  |
//! | [`tern`]      | everything where Tern extends X.2                           |
//!
//! The reference for every number here is `shared/x2-amd64-abi.md` (section
//! numbers "§n" in the docs refer to it): L4 X.2 as L4Ka::Pistachio implements
//! it on amd64, which is what unmodified Pistachio user programs expect.
//!
//! # Design rules
//!
//! * A value that is one machine word is a `#[repr(transparent)]` newtype over
//!   `u64` with `const fn` accessors; those are branch-light because the
//!   kernel's IPC fast path uses them.
//! * A raw word from user space is an *allegation*. Views such as [`Fpage`]
//!   accept every bit pattern; validated types (for example
//!   [`fpage::ValidFpage`], [`fpage::IoFpage`] via `TryFrom`,
//!   [`thread_id::GlobalId`]) come from one checked constructor, and unknown
//!   values are errors, never panics.
//! * Nothing here allocates and nothing here is `unsafe`.
//!
//! [`Fpage`]: fpage::Fpage
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

pub mod error;
pub mod fpage;
pub mod kip;
pub mod msg;
pub mod syscall;
pub mod tern;
pub mod thread_id;
pub mod time;
pub mod utcb;

/// A machine word of the AMD64 binding.
pub type Word = u64;

/// Number of bits in a [`Word`].
pub const WORD_BITS: u32 = 64;
