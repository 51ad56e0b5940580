//! `l4`: Tern's safe, typed Rust library over the L4 X.2 AMD64 binary interface.
//!
//! It provides the program runtime (entry point, stack, panic handler), the kernel
//! debugger console, KernelInterface, and typed wrappers for the system calls, calling
//! through the stub addresses the KIP publishes — the same binary interface that
//! Pistachio's C library uses, so Tern's servers and unmodified X.2 programs meet the
//! kernel in the same way.

#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod kdb;
pub mod kip;
pub mod rt;
pub mod syscall;
pub mod utcb;

pub use abi;
