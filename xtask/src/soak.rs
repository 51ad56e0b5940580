//! `cargo xtask soak`: boots the soak test (user/soak, as root task of boot/soak.toml):
//! 10^7 IPC round trips between clients and servers in several spaces and 10^6
//! map/unmap cycles between mapper and receiver spaces, then compares the kernel's free
//! memory before and after and counts lost and corrupted messages.
//!
//! ```text
//!   build    kernel (plain, or with --invariants: the fuzz builds' checker), programs
//!   image    the soak ELF with "ipcs=N maps=M" embedded (see fuzz::embed_args)
//!   boot     QEMU TCG; serial to target/soak/soak.log, soak: and TERN-TEST lines shown
//!   verdict  TERN-TEST lines (log::judge_suite) and the SOAK-RESULT line's numbers
//! ```

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::build;
use crate::fuzz::{self, build_kernel_variant, run_streamed, write_with_args};
use crate::image::{self, Overrides};
use crate::log::judge_suite;
use crate::manifest::Manifest;
use crate::qemu::{self, Accel, Serial};
use crate::symbolize::Symbolizer;
use crate::toolchain::{self, Need};
use crate::workspace::{Profile, Workspace};

/// The manifest `soak` boots.
pub const MANIFEST: &str = "soak";

/// Options of `cargo xtask soak`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// IPC round trips (two messages each), all clients together.
    #[arg(long, value_name = "N", default_value_t = 10_000_000, value_parser = fuzz::parse_u64)]
    pub ipcs: u64,
    /// Map/unmap cycles, all mappers together.
    #[arg(long, value_name = "M", default_value_t = 1_000_000, value_parser = fuzz::parse_u64)]
    pub maps: u64,
    /// Run the kernel's invariant checker after every system call (much slower).
    #[arg(long)]
    pub invariants: bool,
    /// Use the release builds.
    #[arg(long)]
    pub release: bool,
    /// Seconds without any serial output after which the run counts as a hang.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub silence: u64,
}

/// Runs `cargo xtask soak`.
pub fn main(ws: &Workspace, args: Args) -> Result<ExitCode> {
    let profile = Profile::from_release_flag(args.release);
    let manifest = Manifest::load(ws, MANIFEST)?;
    let toolchain = toolchain::ensure(Need::Boot)?;
    let features: Vec<String> = if args.invariants { vec![fuzz::INVARIANTS.to_owned()] } else { Vec::new() };
    let kernel = build_kernel_variant(ws, &toolchain, profile, &features)?;
    build::build(ws, &toolchain, profile, [&manifest])?;
    let out_dir = ws.root().join("target").join("soak");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let elf = out_dir.join("soak.elf");
    write_with_args(&ws.elf(profile, &manifest.roottask.package), &elf, &format!("ipcs={} maps={}", args.ipcs, args.maps))?;
    let archive = image::build(ws, &manifest, profile, &Overrides { sigma0: None, root_task: Some(elf) })?;
    let symbolizer = Symbolizer::for_boot(ws.root(), &kernel, &archive.programs);
    let config = qemu::Config {
        kernel,
        initrd: archive.path.clone(),
        cmdline: String::new(),
        accel: Accel::Tcg,
        icount: false,
        gdb: false,
        serial: Serial::Captured,
    };
    println!("xtask: soak: {} IPC round trips, {} map/unmap cycles{}", args.ipcs, args.maps, if args.invariants { ", invariant checker on" } else { "" });
    let run = run_streamed(&config, Duration::from_secs(args.silence), |line, _| {
        ["soak:", "SOAK-RESULT", "TERN-TEST", "KERNEL PANIC", "invariant", "backtrace", "USER FAULT"].iter().any(|m| line.contains(m))
    })?;
    let raw = String::from_utf8_lossy(&run.serial).into_owned();
    let log = out_dir.join("soak.log");
    std::fs::write(&log, &run.serial).with_context(|| format!("cannot write {}", log.display()))?;
    std::fs::write(log.with_extension("sym.log"), symbolizer.annotate_text(&raw))?;
    let verdict = judge_suite(&raw, run.exit);
    summarize(&raw, &log);
    println!("xtask: soak: {} passed, {} failed ({:.1} s; {})", verdict.passed, verdict.failed, run.elapsed.as_secs_f64(), run.exit);
    for f in &verdict.failures {
        println!("  FAILED: {f}");
    }
    Ok(if verdict.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The numbers of the `SOAK-RESULT key=value ...` line, in order.
pub fn result_fields(log: &str) -> Vec<(String, u64)> {
    let Some(line) = log.lines().find_map(|l| l.find("SOAK-RESULT").map(|i| &l[i..])) else { return Vec::new() };
    line.split_whitespace()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn summarize(raw: &str, log: &Path) {
    let fields = result_fields(raw);
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|&(_, v)| v);
    println!();
    if let (Some(before), Some(after)) = (get("kmem_before"), get("kmem_after")) {
        println!("xtask: soak: kernel memory: {before} free frames before, {after} after{}", if before == after { " (equal)" } else { " (DIFFERENT)" });
    }
    if let (Some(m), Some(lost), Some(bad)) = (get("messages"), get("lost"), get("corrupted")) {
        println!("xtask: soak: {m} messages, {lost} lost, {bad} corrupted");
    }
    if let (Some(c), Some(e), Some(p), Some(f)) = (get("map_cycles"), get("map_errors"), get("probes"), get("probe_faults")) {
        println!("xtask: soak: {c} map/unmap cycles, {e} errors; {f} of {p} probes of revoked pages faulted");
    }
    if let Some(us) = get("guest_us") {
        println!("xtask: soak: {:.1} s guest time", us as f64 / 1e6);
    }
    println!("xtask: soak: log {} (symbolized: .sym.log)", log.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_is_read() {
        let log = "x\nSOAK-RESULT round_trips=4 messages=8 lost=0 kmem_before=10 kmem_after=10\nTERN-TEST end: 1 passed, 0 failed\n";
        let f = result_fields(log);
        assert_eq!(f[0], ("round_trips".to_owned(), 4));
        assert_eq!(f.iter().find(|(k, _)| k == "kmem_after").map(|x| x.1), Some(10));
        assert!(result_fields("nothing").is_empty());
    }
}
