//! `drvkit`: what Tern's user-level device drivers share.
//!
//! Drivers are ordinary programs: they get their I/O ports as I/O fpages from σ0, their
//! interrupts as IPC from interrupt threads attached by a privileged thread (the root
//! task), and serve clients over IPC. This crate holds the parts that do not depend on
//! running under Tern — register models of the devices, the byte ring buffer, the
//! console line editor and command parser, and the wire formats of the driver
//! protocols — all host-tested; with the feature `l4` it adds the parts that do:
//!
//! | module       | what                                                             | needs `l4` |
//! |--------------|------------------------------------------------------------------|------------|
//! | [`ring`]     | fixed-size byte FIFO (driver buffers)                            | no |
//! | [`ns16550`]  | the 16550 UART's registers, IIR/LSR decoding                     | no |
//! | [`cmos`]     | the MC146818 CMOS real-time clock: rates, status C, BCD dates    | no |
//! | [`wire`]     | labels and message layouts of the UART, RTC and root-task protocols | no |
//! | [`line`]     | the console line editor (echo, backspace, Ctrl-C, Ctrl-U)        | no |
//! | [`cmd`]      | the monitor's command parser                                     | no |
//! | [`registry`] | the root task's registry and policy (names, lines, ports)        | no |
//! | `port`       | port I/O over a range the space was given                        | yes |
//! | `sigma0`     | I/O-fpage requests to σ0                                          | yes |
//! | `irq`        | interrupt lines: attach, detach, wait, acknowledge               | yes |
//! | `root`       | client of the root task's services (IRQ attach, names, ports, power off) | yes |
//! | `rootsrv`    | server of those services, for the root task (and the tests)      | yes |
//! | `msg`        | sending and receiving the [`wire`] messages                      | yes |
//! | `tsc`        | the time-stamp counter, for timing                               | yes |
//!
//! See `docs/drivers.md` for how a driver is written.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cmd;
pub mod cmos;
pub mod line;
pub mod ns16550;
pub mod registry;
pub mod ring;
pub mod wire;

#[cfg(feature = "l4")]
pub mod irq;
#[cfg(feature = "l4")]
pub mod msg;
#[cfg(feature = "l4")]
pub mod port;
#[cfg(feature = "l4")]
pub mod root;
#[cfg(feature = "l4")]
pub mod rootsrv;
#[cfg(feature = "l4")]
pub mod sigma0;
#[cfg(feature = "l4")]
pub mod tsc;
