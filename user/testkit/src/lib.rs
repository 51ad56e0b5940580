//! `testkit`: what Tern's in-guest test programs (`tests`, `ipctests`, `memtests`,
//! `irqtests`) share — the report protocol, failure messages, bounded waiting and the
//! words a check shares with its threads. Each program keeps its own specialities (check
//! groups, progress watching, output hooks, its waiting pace) in its `harness` module,
//! which re-exports what it uses from here.
//!
//! | module     | what                                                               |
//! |------------|--------------------------------------------------------------------|
//! | [`why`]    | [`Why`] (a failure message in a fixed buffer), [`Check`], [`fail!`], [`ensure!`], [`Context`] |
//! | [`tally`]  | [`Tally`]: counts checks, prints their lines and the end line, powers off |
//! | [`wait`]   | [`now`], [`sleep_us`], [`Pace`]: waiting that always ends            |
//! | [`cells`]  | [`Cells`]: atomic words shared between a check and its threads      |
//! | [`codes`]  | [`ipc_code`], [`sys_code`], [`expect_sys`]: outcomes as words, expected errors |
//!
//! The protocol (parsed by `xtask/src/log.rs`; the format must not change):
//!
//! ```text
//! TERN-TEST ok <name>
//! TERN-TEST FAIL <name>: <why>
//! TERN-TEST end: <N> passed, <M> failed
//! ```
//!
//! Dependency rule: `testkit` depends on `l4` and `abi` only; only test programs depend on it.

#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// A failed check carries its message in a fixed buffer (there is no heap), so every
// `Check` has a large error type by design.
#![allow(clippy::result_large_err)]

pub mod cells;
pub mod codes;
pub mod tally;
pub mod wait;
pub mod why;

pub use cells::Cells;
pub use codes::{expect_sys, ipc_code, sys_code};
pub use tally::Tally;
pub use wait::{now, sleep_us, Pace};
pub use why::{Check, Context, Why};
