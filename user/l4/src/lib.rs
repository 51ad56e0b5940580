//! `l4`: Tern's safe, typed Rust library over the L4 X.2 AMD64 binary interface.
//!
//! It provides the program runtime (entry point, stack, panic handler), the kernel
//! debugger console, KernelInterface, and typed wrappers for every system call, calling
//! through the stub addresses the KIP publishes — the same binary interface that
//! Pistachio's C library uses, so Tern's servers and unmodified X.2 programs meet the
//! kernel in the same way.
//!
//! | module      | what                                                              |
//! |-------------|-------------------------------------------------------------------|
//! | [`syscall`] | the raw calls: registers in, registers out (one `asm!` per call)  |
//! | [`ipc`]     | messages, send / receive / call / reply / reply-wait, sleep       |
//! | [`thread`]  | ThreadControl, ExchangeRegisters, start helpers, Schedule, ThreadSwitch, ProcessorControl |
//! | [`space`]   | SpaceControl, Unmap, MemoryControl                                |
//! | [`utcb`]    | the running thread's MRs, BRs and TCRs                            |
//! | [`kip`]     | KernelInterface and the KIP                                       |
//! | [`kdb`]     | console output, power off, kernel memory info (Tern extensions)   |
//! | [`rt`]      | `_start`, the initial stack, the panic handler                    |
//!
//! Typed wrappers take and return the `abi` crate's types; a failed non-IPC call is an
//! [`Error`] read from the ErrorCode TCR, a failed IPC an [`ipc::IpcFailure`].

#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod error;
pub mod ipc;
pub mod kdb;
pub mod kip;
pub mod rt;
pub mod space;
pub mod syscall;
pub mod thread;
pub mod utcb;

pub use abi;
pub use error::Error;
