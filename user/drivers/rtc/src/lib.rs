//! The CMOS real-time clock time/alarm service of Tern: the service itself
//! ([`service`]), which the `rtc` program runs in its own address space, and the client
//! side of its IPC protocol ([`client`]).
//!
//! The protocol is [`drvkit::wire::rtc`]: NOW reads the date and time, TICKS the
//! periodic-interrupt count, SLEEP answers after the given time has passed in ticks.

#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod client;
pub mod service;

pub use client::Rtc;
