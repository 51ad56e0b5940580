//! `cargo xtask`: the single entry point for building, booting and testing Tern.
//!
//! Every command lives in its own module (`build`, `run`, `test`, `symbolize`, `bench`,
//! `fuzz`, `soak`, `cache`) and exposes an `Args` struct (its command-line options,
//! documented for `--help`) and a `main(&Workspace, Args) -> Result<ExitCode>` function.
//! The modules underneath them do one thing each and keep their pure parts unit-tested:
//!
//! ```text
//!   workspace  where things are: repository root, target/cross, target/boot, test logs
//!   toolchain  which compilers/linker/emulator exist; what to install when not
//!   manifest   boot/<name>.toml -> validated Manifest (programs, scenarios)
//!   image      Manifest + built ELFs -> target/boot/<name>.cpio (cpio "newc")
//!   qemu       QEMU command line, KVM detection, guest exit codes
//!   log        the serial protocol (banner, panic, user fault, TERN-TEST lines)
//!   symbolize  0x<hex> -> <function+0xoff at file:line> using the ELFs' DWARF
//!   summary    pass/fail arithmetic and cargo's `test result:` lines
//! ```

#![forbid(unsafe_code)]
#![forbid(unsafe_op_in_unsafe_fn)]

mod bench;
mod build;
mod cache;
mod fuzz;
mod image;
mod log;
mod manifest;
mod qemu;
mod run;
mod soak;
mod summary;
mod symbolize;
mod test;
mod toolchain;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::workspace::Workspace;

/// Build, boot and test the Tern microkernel.
///
/// Target programs are built for x86_64-unknown-none with Debian's Rust toolchain (or a
/// rustup nightly with rust-src), packed into a cpio boot archive described by a manifest in
/// boot/, and booted in QEMU.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the kernel and every user program named in the boot manifests.
    ///
    /// One cargo invocation builds everything, so `core` is compiled once. Output ELFs are in
    /// target/cross/x86_64-unknown-none/{debug,release}/.
    Build(build::Args),
    /// Build, pack the boot archive and boot Tern in QEMU with the serial port on this terminal.
    ///
    /// Serial output is symbolized line by line. Exits when the guest powers off: status 0 on
    /// success, non-zero when the guest reports failure or the kernel panics. Quit QEMU with
    /// Ctrl-A x.
    Run(run::Args),
    /// Run the host unit tests and every boot scenario of boot/test.toml.
    ///
    /// Prints per-part summaries and, as the last line, `N passed, M failed`. Serial logs are
    /// kept in target/test-logs/<scenario>.log (raw) and .sym.log (symbolized).
    Test(test::Args),
    /// Annotate a saved serial log with function names and source lines.
    ///
    /// Uses the kernel and program ELFs already built for the manifest (nothing is rebuilt);
    /// reads the log from FILE or standard input and prints it symbolized.
    Symbolize(symbolize::Args),
    /// Measure Tern's system calls, IPC, faults, mappings and interrupts in exact instructions.
    ///
    /// Boots the release build of boot/bench.toml (root task: user/pingpong) under QEMU TCG
    /// with -icount shift=0,align=off,sleep=off, where the TSC advances once per guest
    /// instruction: every figure is an exact instruction count, and every boot must report
    /// the same. Each configuration is booted --runs times (default 2); the kernel is also
    /// booted with `tern.syscall-floor` for syscall_floor. Writes target/bench/results.json
    /// (flat metrics + "meta"), target/bench/table.md and the plot
    /// target/bench/ipc_rt.{svg,png} (IPC round trip against message size), and prints the
    /// table. `--compare linux` also boots Debian's stock kernel with a static benchmark as
    /// /init (futex, pipe, getppid, page faults) and adds Tern/Linux ratios.
    Bench(bench::Args),
    /// Fuzz the system calls: random calls from privileged and unprivileged threads, with
    /// the kernel checking its invariants after each.
    ///
    /// Boots boot/fuzz.toml (root task: user/fuzz) on a kernel built with the `invariants`
    /// feature (and tern.mapdb-check=on unless --no-mapdb-check). Four fuzzing threads make
    /// --iterations calls in all against each other, victim threads, spaces and threads they
    /// make themselves, while a canary pair keeps a checked ping-pong going; at the end
    /// everything is deleted and kernel memory must be back at its start value. Prints the
    /// seed (replay: --seed S --icount), calls per second in guest and in host time, and
    /// keeps the log in target/fuzz/.
    Fuzz(fuzz::Args),
    /// Soak test: 10^7 IPC round trips and 10^6 map/unmap cycles across several tasks.
    ///
    /// Boots boot/soak.toml (root task: user/soak) and reports lost and corrupted messages
    /// (there must be none) and the kernel's free memory before and after (must be equal).
    Soak(soak::Args),
    /// Run any guest under the cache-footprint plugin (tools/cacheplugin) and report, per
    /// iteration of a loop, instructions, distinct cache lines and simulated L1/TLB misses.
    ///
    /// `cargo xtask cache --window-addr ADDR -- <QEMU command line>` (the options may also
    /// follow the QEMU command line): builds the plugin with the host toolchain, runs
    /// qemu-system-x86_64 with it (adding -icount shift=0,align=off,sleep=off unless the
    /// command line has an -icount), and prints each segment's per-window averages; the
    /// JSON report goes to target/cache/report.json (or --out). A window runs from one
    /// execution of ADDR to the next; windows may also be delimited by the marker no-op
    /// `nopl 0x4d43NNNN(%rax)` in the guest's code.
    Cache(cache::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Workspace::locate().and_then(|ws| match cli.command {
        Command::Build(args) => build::main(&ws, args),
        Command::Run(args) => run::main(&ws, args),
        Command::Test(args) => test::main(&ws, args),
        Command::Symbolize(args) => symbolize::main(&ws, args),
        Command::Bench(args) => bench::main(&ws, args),
        Command::Fuzz(args) => fuzz::main(&ws, args),
        Command::Soak(args) => soak::main(&ws, args),
        Command::Cache(args) => cache::main(&ws, args),
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_and_option_has_help() {
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            assert!(sub.get_about().is_some(), "subcommand {} lacks docs", sub.get_name());
            for arg in sub.get_arguments() {
                assert!(
                    arg.get_help().is_some(),
                    "option {} of {} lacks docs",
                    arg.get_id(),
                    sub.get_name()
                );
            }
        }
    }
}
