//! The 16550 UART driver of Tern (COM1): the driver itself ([`driver`]), which the `uart`
//! program runs in its own address space, and the client side of its IPC protocol
//! ([`client`]), which the monitor and the tests use.
//!
//! The protocol is [`drvkit::wire::uart`]: WRITE queues bytes (the reply comes once they
//! are all in the transmit buffer), READ takes received bytes (waiting up to a given time
//! for the first), CONTROL switches loopback mode, STATS reads the counters.

#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod client;
pub mod driver;

pub use client::Uart;
