//! What the memory checks use to run and report: all of it is shared with the other test
//! programs and comes from `testkit` (the `TERN-TEST` lines, failure messages kept without
//! a heap, IPC outcomes as words).

pub use testkit::{ensure, fail, ipc_code, Check, Context, Tally, Why};
