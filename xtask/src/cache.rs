//! `cargo xtask cache`: any guest under the cache-footprint plugin (tools/cacheplugin),
//! and the pieces `cargo xtask bench --cache` and `cargo xtask test` use to measure with it.
//!
//! ```text
//!   cargo build --release -p tern-cacheplugin (host toolchain, target/cacheplugin)
//!   qemu-system-x86_64 <QEMU args> [-icount shift=0,align=off,sleep=off]
//!       -plugin libtern_cacheplugin.so,out=<json>,window-addr=A:B,segment-addr=..,warmup=N,..
//!   <json>: per segment (a run of windows delimited by one anchor) the per-window averages
//!           after the warm-up windows: instructions, distinct lines, L1 and TLB misses
//! ```
//!
//! Where the windows come from:
//! - Tern's IPC benchmark (user/pingpong): `call_loop` is inlined, so it has no symbol;
//!   its loop is found in the program's ELF by its machine code, which the `asm!` template
//!   fixes byte for byte ([`CALL_LOOP`]). Every timed run of the loop is one segment.
//! - Linux's futex ping-pong (bench/linux): the parent's loop `ping`, inlined into
//!   `futex_rt_proc`, found through the DWARF line table: the first instruction of each
//!   stretch of code that the source line `word.store(CHILD_TURN, …)` in `ping` produced
//!   (one stretch per unrolled copy of the timed loop). The benchmark is linked at fixed
//!   addresses for this, so that ELF addresses are run-time addresses.
//! - Any other guest: `--window-addr ADDR` (and `--segment-addr`), or markers in its code
//!   (see tools/cacheplugin/src/decode.rs).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Deserialize;

use crate::build;
use crate::image::{self, Overrides};
use crate::manifest::Manifest;
use crate::qemu;
use crate::summary::Tally;
use crate::toolchain::{self, Need};
use crate::workspace::{Profile, Workspace};

/// The plugin's cargo package.
pub const PLUGIN_PACKAGE: &str = "tern-cacheplugin";

/// The default shape of both L1 caches (bytes:ways:line bytes).
pub const DEFAULT_L1: &str = "32768:8:64";
/// The default shape of both TLBs (entries:ways).
pub const DEFAULT_TLB: &str = "64:4";
/// Default warm-up windows per segment.
pub const DEFAULT_WARMUP: u64 = 10;

/// The machine code of user/pingpong's `call_loop` from its first instruction to the
/// `call` of the Ipc stub (see `ipc_loop!` in user/pingpong/src/sys.rs); the loop head
/// (label `2:`) is at [`CALL_LOOP_HEAD`].
pub const CALL_LOOP: [u8; 36] = [
    0x55, // push rbp
    0x53, // push rbx
    0x51, // push rcx
    0x0F, 0x31, // rdtsc
    0x48, 0xC1, 0xE2, 0x20, // shl rdx, 32
    0x48, 0x09, 0xD0, // or rax, rdx
    0x48, 0x89, 0x41, 0x20, // mov [rcx + 32], rax
    0x48, 0x8B, 0x0C, 0x24, // 2: mov rcx, [rsp]
    0x48, 0x8B, 0x31, // mov rsi, [rcx]
    0x48, 0x89, 0xF2, // mov rdx, rsi
    0x45, 0x31, 0xC0, // xor r8d, r8d
    0x4C, 0x8B, 0x49, 0x08, // mov r9, [rcx + 8]
    0xFF, 0x51, 0x10, // call qword ptr [rcx + 16]
];
/// Offset of the loop head in [`CALL_LOOP`].
pub const CALL_LOOP_HEAD: u64 = 16;

/// Timed invocations of `call_loop` per IPC metric in user/pingpong: one warm-up run and
/// three measured runs (`measure`), intra-space before inter-space, 0 words first.
const PINGPONG_RUNS: usize = 4;

/// Options of `cargo xtask cache`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// Guest virtual address of an instruction executed once per iteration (hex with 0x, or
    /// decimal; repeatable). Windows run from one execution to the next; another address
    /// starts another segment.
    #[arg(long = "window-addr", value_name = "ADDR", value_parser = parse_addr)]
    pub window_addr: Vec<u64>,
    /// Executing this address ends the current segment (repeatable).
    #[arg(long = "segment-addr", value_name = "ADDR", value_parser = parse_addr)]
    pub segment_addr: Vec<u64>,
    /// Windows at the start of each segment left out of the averages (default 10).
    #[arg(long, value_name = "N")]
    pub warmup: Option<u64>,
    /// Stop QEMU once this many segments have ended (default: run to the end).
    #[arg(long, value_name = "K")]
    pub stop_after: Option<u64>,
    /// Both L1 caches as SIZE:WAYS:LINE in bytes (default 32768:8:64).
    #[arg(long, value_name = "SIZE:WAYS:LINE")]
    pub l1: Option<String>,
    /// Both first-level TLBs as ENTRIES:WAYS, 4 KiB pages (default 64:4).
    #[arg(long, value_name = "ENTRIES:WAYS")]
    pub tlb: Option<String>,
    /// Where the JSON report goes (default target/cache/report.json).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Seconds QEMU may run before it is stopped.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub timeout: u64,
    /// The QEMU command line after `--` (without the program name). `-icount
    /// shift=0,align=off,sleep=off` is added unless it has an -icount. The options above may
    /// also follow it.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "QEMU ARGS"
    )]
    pub qemu: Vec<String>,
}

/// Parses `--window-addr` and friends given after the QEMU command line.
#[derive(Debug, Parser)]
#[command(name = "cache")]
struct Trailing {
    #[command(flatten)]
    args: Args,
}

/// The options of [`Args`] that may follow the QEMU command line (with a value each).
const OWN_OPTIONS: [&str; 8] = [
    "--window-addr",
    "--segment-addr",
    "--warmup",
    "--stop-after",
    "--l1",
    "--tlb",
    "--out",
    "--timeout",
];

/// Splits our own options (`--name value` or `--name=value`) off a QEMU command line.
pub fn split_own_options(args: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut own, mut rest) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let name = a.split_once('=').map_or(a.as_str(), |(n, _)| n);
        if OWN_OPTIONS.contains(&name) {
            own.push(a.clone());
            if !a.contains('=') {
                if let Some(value) = args.get(i + 1) {
                    own.push(value.clone());
                    i += 1;
                }
            }
        } else {
            rest.push(a.clone());
        }
        i += 1;
    }
    (own, rest)
}

/// A decimal or `0x` hexadecimal address.
pub fn parse_addr(text: &str) -> Result<u64, String> {
    let t = text.trim().replace('_', "");
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    parsed.map_err(|_| format!("not an address: {text}"))
}

/// What one plugin run measures and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginArgs {
    pub out: PathBuf,
    pub window_addrs: Vec<u64>,
    pub segment_addrs: Vec<u64>,
    pub warmup: u64,
    pub stop_after: Option<u64>,
    pub l1: String,
    pub tlb: String,
}

impl PluginArgs {
    /// Defaults with the report at `out`.
    pub fn new(out: PathBuf) -> Self {
        PluginArgs {
            out,
            window_addrs: Vec::new(),
            segment_addrs: Vec::new(),
            warmup: DEFAULT_WARMUP,
            stop_after: None,
            l1: DEFAULT_L1.to_owned(),
            tlb: DEFAULT_TLB.to_owned(),
        }
    }

    /// The value of QEMU's `-plugin` option for the plugin at `so`.
    pub fn qemu_value(&self, so: &Path) -> Result<String> {
        let hex = |v: &[u64]| {
            v.iter()
                .map(|a| format!("{a:#x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let (so, out) = (so.to_string_lossy(), self.out.to_string_lossy());
        if so.contains(',') || out.contains(',') {
            bail!("QEMU cannot take a plugin path or report path with a comma: {so} / {out}");
        }
        let mut v = format!(
            "{so},out={out},warmup={},l1={},tlb={}",
            self.warmup, self.l1, self.tlb
        );
        if !self.window_addrs.is_empty() {
            v.push_str(&format!(",window-addr={}", hex(&self.window_addrs)));
        }
        if !self.segment_addrs.is_empty() {
            v.push_str(&format!(",segment-addr={}", hex(&self.segment_addrs)));
        }
        if let Some(k) = self.stop_after {
            v.push_str(&format!(",stop-after={k}"));
        }
        Ok(v)
    }
}

/// The plugin's report (the parts xtask reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Report {
    /// `stop-after` or `exit`.
    pub stopped: String,
    pub footprint_overflow: bool,
    pub segments: Vec<Segment>,
}

/// One segment of the report.
#[derive(Debug, Clone, Deserialize)]
pub struct Segment {
    pub anchor: String,
    pub windows: u64,
    pub measured: u64,
    /// Sums over the measured windows, by counter name.
    pub sum: BTreeMap<String, u64>,
}

impl Report {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("no plugin report {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("malformed plugin report {}", path.display()))
    }
}

/// The per-window average of the sum of `counters` over `segments` (weighted by their
/// measured windows); `None` when nothing was measured.
pub fn average(segments: &[&Segment], counters: &[&str]) -> Option<f64> {
    let windows: u64 = segments.iter().map(|s| s.measured).sum();
    let total: u64 = segments
        .iter()
        .flat_map(|s| counters.iter().map(|c| s.sum.get(*c).copied().unwrap_or(0)))
        .sum();
    (windows > 0).then(|| total as f64 / windows as f64)
}

/// The metrics `bench --cache` reports per measured loop, as (suffix, counters summed).
pub const FOOTPRINT_METRICS: [(&str, &[&str]); 7] = [
    ("lines_i", &["lines_i_user", "lines_i_kernel"]),
    ("lines_d", &["lines_d_user", "lines_d_kernel"]),
    ("l1_misses", &["l1i_misses", "l1d_misses"]),
    ("l1_misses_fa", &["l1i_misses_fa", "l1d_misses_fa"]),
    ("tlb_misses", &["itlb_misses", "dtlb_misses"]),
    ("lines_i_kernel", &["lines_i_kernel"]),
    ("lines_d_kernel", &["lines_d_kernel"]),
];

/// `<prefix>_<suffix>` for every [`FOOTPRINT_METRICS`] entry, rounded to hundredths.
pub fn footprint_metrics(prefix: &str, segments: &[&Segment]) -> BTreeMap<String, f64> {
    FOOTPRINT_METRICS
        .iter()
        .filter_map(|(suffix, counters)| {
            let v = average(segments, counters)?;
            Some((format!("{prefix}_{suffix}"), (v * 100.0).round() / 100.0))
        })
        .collect()
}

/// Builds the plugin with the host toolchain; returns the shared library.
pub fn build_plugin(ws: &Workspace) -> Result<PathBuf> {
    let target_dir = ws.root().join("target").join("cacheplugin");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(ws.root())
        .args(["build", "--release", "-p", PLUGIN_PACKAGE, "--target-dir"])
        .arg(&target_dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot start cargo for the cache plugin")?;
    if !output.status.success() {
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        bail!("building {PLUGIN_PACKAGE} failed ({})", output.status);
    }
    Ok(target_dir.join("release").join("libtern_cacheplugin.so"))
}

/// How a plugin run ended.
#[derive(Debug)]
pub struct Run {
    pub report: Report,
    /// QEMU's exit status (`None`: stopped by xtask or a signal).
    pub status: Option<i32>,
    pub serial: Vec<u8>,
    pub elapsed: Duration,
}

/// Runs `qemu` (a complete QEMU command) with the plugin at `so` as `args` say, output
/// captured, for at most `timeout`; reads the report.
pub fn run_captured(
    mut qemu: Command,
    so: &Path,
    args: &PluginArgs,
    timeout: Duration,
) -> Result<Run> {
    let _ = std::fs::remove_file(&args.out);
    qemu.arg("-plugin").arg(args.qemu_value(so)?);
    let started = Instant::now();
    let mut child = qemu
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", qemu::QEMU))?;
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                // A read error only shortens the captured output.
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if started.elapsed() >= timeout {
            child.kill().context("cannot stop QEMU")?;
            child.wait()?;
            bail!(
                "QEMU under the cache plugin ran longer than {} s",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let serial = stdout.join().unwrap_or_default();
    let errors = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    let report = Report::read(&args.out)
        .with_context(|| format!("QEMU exited with {status:?}: {}", errors.trim()))?;
    Ok(Run {
        report,
        status,
        serial,
        elapsed: started.elapsed(),
    })
}

/// Addresses where `code` occurs in the executable segments of `elf`.
pub fn find_code(elf: &[u8], code: &[u8]) -> Result<Vec<u64>> {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let file = ElfFile64::<object::Endianness>::parse(elf).context("not an ELF64 file")?;
    let endian = file.endian();
    let mut found = Vec::new();
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) != object::elf::PT_LOAD
            || !ph.p_flags(endian).contains(object::elf::PF_X)
        {
            continue;
        }
        let Ok(bytes) = ph.data(endian, elf) else {
            continue;
        };
        let base = ph.p_vaddr(endian);
        found.extend(
            bytes
                .windows(code.len())
                .enumerate()
                .filter(|(_, w)| *w == code)
                .map(|(i, _)| base + i as u64),
        );
    }
    Ok(found)
}

/// The windows of Tern's IPC benchmark: every copy of `call_loop` in the pingpong ELF
/// (segment addresses: their first instruction; window addresses: their loop heads).
pub fn pingpong_plugin_args(elf: &[u8], out: PathBuf) -> Result<PluginArgs> {
    let starts = find_code(elf, &CALL_LOOP)?;
    if starts.is_empty() {
        bail!("the pingpong ELF holds no copy of call_loop's code (user/pingpong/src/sys.rs changed? update xtask/src/cache.rs CALL_LOOP)");
    }
    let mut args = PluginArgs::new(out);
    args.window_addrs = starts.iter().map(|a| a + CALL_LOOP_HEAD).collect();
    args.segment_addrs = starts;
    // ipc_rt_intra_0 and ipc_rt_inter_0 are the first two metrics measured with call_loop.
    args.stop_after = Some(2 * PINGPONG_RUNS as u64);
    Ok(args)
}

/// The measured run with the fewest instructions per window (the timing benchmarks report
/// the best of their runs, so this is the run their figure comes from); the first of equals.
pub fn best_run<'s>(runs: &[&'s Segment]) -> Option<&'s Segment> {
    let insns =
        |s: &Segment| average(&[s], &["insns_user", "insns_kernel"]).unwrap_or(f64::INFINITY);
    runs.iter()
        .copied()
        .filter(|s| s.measured > 0)
        .reduce(|best, s| if insns(s) < insns(best) { s } else { best })
}

/// Tern's footprint metrics from a pingpong report: `ipc_rt_{intra,inter}_0_*` of the
/// best of the three measured runs of each (the warm-up run's segment is left out).
pub fn pingpong_metrics(report: &Report) -> Result<BTreeMap<String, f64>> {
    let segs = &report.segments;
    if segs.len() < 2 * PINGPONG_RUNS {
        bail!(
            "the plugin saw {} runs of call_loop, expected at least {}",
            segs.len(),
            2 * PINGPONG_RUNS
        );
    }
    let mut metrics = BTreeMap::new();
    for (k, kind) in ["intra", "inter"].iter().enumerate() {
        let runs: Vec<&Segment> = segs[k * PINGPONG_RUNS + 1..(k + 1) * PINGPONG_RUNS]
            .iter()
            .collect();
        if runs.iter().any(|s| s.measured == 0) {
            bail!("a run of ipc_rt_{kind}_0 had no window after the warm-up");
        }
        let best = best_run(&runs).context("no measured run")?;
        metrics.extend(footprint_metrics(&format!("ipc_rt_{kind}_0"), &[best]));
    }
    Ok(metrics)
}

/// The demangled names and (address, size) of an ELF's function symbols.
fn function_symbols(elf: &[u8]) -> Result<Vec<(String, u64, u64)>> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let file = object::File::parse(elf).context("not an object file")?;
    Ok(file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text)
        .filter_map(|s| {
            let name = addr2line::demangle_auto(Cow::from(s.name().ok()?), None).into_owned();
            Some((name, s.address(), s.size()))
        })
        .collect())
}

/// The 1-based line of `needle` in the body of `fn <function>(` in `source`.
pub fn line_in_function(source: &str, function: &str, needle: &str) -> Option<u32> {
    let start = source
        .lines()
        .position(|l| l.trim_start().starts_with(&format!("fn {function}(")))?;
    let offset = source
        .lines()
        .skip(start)
        .position(|l| l.contains(needle))?;
    u32::try_from(start + offset + 1).ok()
}

/// The Linux futex ping-pong's windows, in the benchmark ELF at `path` (linked at fixed
/// addresses) whose source is `source`: the first address of each stretch of
/// `futex_rt_proc` generated for `ping`'s `word.store(CHILD_TURN, …)`; segments end at the
/// benchmarks that follow it.
pub fn linux_plugin_args(path: &Path, source: &str, out: PathBuf) -> Result<PluginArgs> {
    let elf = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let line = line_in_function(source, "ping", "word.store(CHILD_TURN")
        .context("bench/linux/src/main.rs: no `word.store(CHILD_TURN` in `fn ping(`")?;
    let symbols = function_symbols(&elf)?;
    let find = |name: &str| {
        symbols
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, a, s)| (*a, *s))
    };
    let (start, size) = find("tern_bench_linux::futex_rt_proc")
        .context("no symbol tern_bench_linux::futex_rt_proc")?;
    let loader = addr2line::Loader::new(path)
        .map_err(|e| anyhow::anyhow!("cannot load DWARF of {}: {e}", path.display()))?;
    let rows = loader
        .find_location_range(start, start + size)
        .map_err(|e| anyhow::anyhow!("DWARF: {e}"))?;
    let mut stretches: Vec<(u64, u64)> = Vec::new();
    for (addr, len, _) in rows {
        let mut frames = loader
            .find_frames(addr)
            .map_err(|e| anyhow::anyhow!("DWARF: {e}"))?;
        let mut from_line = false;
        while let Ok(Some(frame)) = frames.next() {
            if let Some(loc) = &frame.location {
                from_line |= loc.line == Some(line)
                    && loc
                        .file
                        .is_some_and(|f| f.ends_with("bench/linux/src/main.rs"));
            }
        }
        if !from_line {
            continue;
        }
        match stretches.last_mut() {
            Some((_, end)) if *end == addr => *end = addr + len,
            _ => stretches.push((addr, addr + len)),
        }
    }
    if stretches.is_empty() {
        bail!("no code of bench/linux/src/main.rs:{line} in futex_rt_proc (DWARF)");
    }
    let mut args = PluginArgs::new(out);
    args.window_addrs = stretches.iter().map(|(a, _)| *a).collect();
    args.segment_addrs = [
        "tern_bench_linux::pipe_rt",
        "tern_bench_linux::pagefault",
        "tern_bench_linux::futex_rt_thread",
    ]
    .iter()
    .filter_map(|n| find(n).map(|(a, _)| a))
    .collect();
    args.stop_after = Some(stretches.len() as u64);
    Ok(args)
}

/// Linux's footprint metrics (`linux_futex_rt_proc_*`): the best of the measured runs
/// after the warm-up run (the only segment when the loop was not unrolled into copies).
pub fn linux_metrics(report: &Report) -> Result<BTreeMap<String, f64>> {
    let segs: Vec<&Segment> = report.segments.iter().collect();
    let runs = if segs.len() > 1 {
        &segs[1..]
    } else {
        &segs[..]
    };
    let best =
        best_run(runs).context("the plugin measured no round trip of the Linux futex ping-pong")?;
    Ok(footprint_metrics("linux_futex_rt_proc", &[best]))
}

/// The boot manifest of the guest test.
pub const TEST_MANIFEST: &str = "cache";

/// The symbol of user/cacheloop's fourth loop head (delimited by address, not marker).
const CACHELOOP_SYMBOL: &str = "cacheloop_window4";

/// What user/cacheloop's loops must show: (anchor, counter, per-iteration value).
const CACHELOOP_EXPECT: [(&str, &str, f64); 9] = [
    ("marker:1", "lines_d_user", 16.0),
    ("marker:1", "l1d_misses", 0.0),
    ("marker:2", "lines_d_user", 8.0),
    ("marker:2", "l1d_misses", 0.0),
    ("marker:3", "lines_d_user", 9.0),
    ("marker:3", "l1d_misses", 9.0),
    ("marker:3", "l1d_misses_fa", 0.0),
    ("window4", "lines_d_user", 5.0),
    ("window4", "l1d_misses", 0.0),
];

/// Judges a cacheloop report: one check per expectation, plus one for the segments'
/// order; prints every failure.
pub fn judge_cacheloop(report: &Report, window4: u64) -> Tally {
    let mut tally = Tally::default();
    let w4 = format!("{window4:#x}");
    let anchors: Vec<&str> = report.segments.iter().map(|s| s.anchor.as_str()).collect();
    let want = ["marker:1", "marker:2", "marker:3", w4.as_str()];
    if anchors == want {
        tally.passed += 1;
    } else {
        println!("cache: FAILED: segments {anchors:?}, expected {want:?}");
        tally.failed += 1;
    }
    for (anchor, counter, value) in CACHELOOP_EXPECT {
        let anchor = if anchor == "window4" {
            w4.as_str()
        } else {
            anchor
        };
        let got = report
            .segments
            .iter()
            .find(|s| s.anchor == anchor)
            .and_then(|s| average(&[s], &[counter]));
        if got == Some(value) {
            tally.passed += 1;
        } else {
            println!("cache: FAILED: {anchor} {counter}: {got:?} per iteration, expected {value}");
            tally.failed += 1;
        }
    }
    tally
}

/// The guest test of `cargo xtask test`: boots boot/cache.toml (root task user/cacheloop)
/// under the plugin and checks the report against the loops' known line counts.
pub fn guest_test(ws: &Workspace, profile: Profile, timeout: Duration) -> Result<Tally> {
    let manifest = Manifest::load(ws, TEST_MANIFEST)?;
    let toolchain = toolchain::ensure(Need::Boot)?;
    build::build(ws, &toolchain, profile, [&manifest])?;
    let archive = image::build(ws, &manifest, profile, &Overrides::default())?;
    println!("xtask: cache: building {PLUGIN_PACKAGE}");
    let so = build_plugin(ws)?;
    let elf =
        std::fs::read(ws.elf(profile, "cacheloop")).context("cannot read the cacheloop ELF")?;
    let window4 = function_symbols(&elf)
        .ok()
        .and_then(|syms| {
            syms.iter()
                .find(|(n, _, _)| n == CACHELOOP_SYMBOL)
                .map(|(_, a, _)| *a)
        })
        .or_else(|| symbol_address(&elf, CACHELOOP_SYMBOL))
        .with_context(|| format!("the cacheloop ELF has no symbol {CACHELOOP_SYMBOL}"))?;
    let log_dir = ws.test_log_dir();
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create {}", log_dir.display()))?;
    let mut plugin = PluginArgs::new(std::path::absolute(log_dir.join("cache.json"))?);
    plugin.window_addrs = vec![window4];
    let config = qemu::Config {
        kernel: ws.kernel_elf(profile),
        initrd: archive.path.clone(),
        cmdline: String::new(),
        accel: qemu::Accel::Tcg,
        icount: true,
        gdb: false,
        serial: qemu::Serial::Captured,
    };
    println!(
        "xtask: cache: boot/cache.toml under the plugin (window-addr {window4:#x} and markers)"
    );
    let run = run_captured(qemu::command(&config), &so, &plugin, timeout)?;
    std::fs::write(log_dir.join("cache.log"), &run.serial)?;
    print!("{}", summary(&run.report));
    let mut tally = judge_cacheloop(&run.report, window4);
    if String::from_utf8_lossy(&run.serial).contains("cacheloop: done") {
        tally.passed += 1;
    } else {
        println!(
            "cache: FAILED: the guest did not print `cacheloop: done` (log: {})",
            log_dir.join("cache.log").display()
        );
        tally.failed += 1;
    }
    println!("cache: {tally}");
    Ok(tally)
}

/// The address of any symbol (not only functions) named `name`.
fn symbol_address(elf: &[u8], name: &str) -> Option<u64> {
    use object::{Object, ObjectSymbol};
    let file = object::File::parse(elf).ok()?;
    let found = file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address());
    found
}

/// Runs `cargo xtask cache`.
pub fn main(ws: &Workspace, args: Args) -> Result<ExitCode> {
    let (own, qemu_args) = split_own_options(&args.qemu);
    let mut args = args;
    if !own.is_empty() {
        let more = Trailing::try_parse_from(std::iter::once("cache".to_owned()).chain(own))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .args;
        args.window_addr.extend(more.window_addr);
        args.segment_addr.extend(more.segment_addr);
        args.warmup = args.warmup.or(more.warmup);
        args.stop_after = args.stop_after.or(more.stop_after);
        args.l1 = args.l1.or(more.l1);
        args.tlb = args.tlb.or(more.tlb);
        args.out = args.out.or(more.out);
        if more.timeout != Args::default_timeout() {
            args.timeout = more.timeout;
        }
    }
    if qemu_args.is_empty() {
        bail!("give the QEMU command line after `--`, e.g. cargo xtask cache --window-addr 0x401000 -- -kernel bzImage ...");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| ws.root().join("target").join("cache").join("report.json"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let out = std::path::absolute(&out).unwrap_or(out);
    let plugin = PluginArgs {
        out: out.clone(),
        window_addrs: args.window_addr.clone(),
        segment_addrs: args.segment_addr.clone(),
        warmup: args.warmup.unwrap_or(DEFAULT_WARMUP),
        stop_after: args.stop_after,
        l1: args.l1.clone().unwrap_or_else(|| DEFAULT_L1.to_owned()),
        tlb: args.tlb.clone().unwrap_or_else(|| DEFAULT_TLB.to_owned()),
    };
    println!("xtask: cache: building {PLUGIN_PACKAGE}");
    let so = build_plugin(ws)?;
    let mut cmd = Command::new(qemu::QEMU);
    cmd.args(&qemu_args);
    if !qemu_args.iter().any(|a| a == "-icount" || a == "--icount") {
        cmd.args(["-icount", "shift=0,align=off,sleep=off"]);
    }
    cmd.arg("-plugin").arg(plugin.qemu_value(&so)?);
    let timeout = Duration::from_secs(args.timeout);
    let mut child = cmd
        .stdin(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", qemu::QEMU))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() >= timeout {
            child.kill().context("cannot stop QEMU")?;
            child.wait()?;
            bail!("QEMU ran longer than {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let report = Report::read(&out).with_context(|| format!("QEMU ended with {status}"))?;
    println!();
    print!("{}", summary(&report));
    println!(
        "xtask: cache: report {} (QEMU {status}, ended by {})",
        out.display(),
        report.stopped
    );
    Ok(if report.segments.iter().any(|s| s.measured > 0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

impl Args {
    fn default_timeout() -> u64 {
        1800
    }
}

/// A table of the segments' per-window averages.
pub fn summary(report: &Report) -> String {
    let cols = [
        ("insns", &["insns_user", "insns_kernel"][..]),
        ("kernel", &["insns_kernel"][..]),
        ("lines_i", &["lines_i_user", "lines_i_kernel"][..]),
        ("lines_d", &["lines_d_user", "lines_d_kernel"][..]),
        ("l1i", &["l1i_misses"][..]),
        ("l1d", &["l1d_misses"][..]),
        ("l1_fa", &["l1i_misses_fa", "l1d_misses_fa"][..]),
        ("tlb", &["itlb_misses", "dtlb_misses"][..]),
    ];
    let mut out = format!(
        "{:>3} {:>20} {:>8} {:>8}",
        "seg", "anchor", "windows", "measured"
    );
    for (name, _) in &cols {
        out.push_str(&format!(" {name:>8}"));
    }
    out.push('\n');
    for (i, s) in report.segments.iter().enumerate() {
        out.push_str(&format!(
            "{i:>3} {:>20} {:>8} {:>8}",
            s.anchor, s.windows, s.measured
        ));
        for (_, counters) in &cols {
            let v = average(&[s], counters).map_or("-".to_owned(), |v| format!("{v:.2}"));
            out.push_str(&format!(" {v:>8}"));
        }
        out.push('\n');
    }
    if report.footprint_overflow {
        out.push_str("(a window touched more than 2^19 lines: its line counts are lower bounds)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn own_options_are_split_off_the_qemu_command_line() {
        let (own, rest) = split_own_options(&strings(&[
            "-kernel",
            "bz",
            "--window-addr",
            "0x401000",
            "-append",
            "console=ttyS0",
            "--warmup=3",
            "-m",
            "512M",
        ]));
        assert_eq!(own, strings(&["--window-addr", "0x401000", "--warmup=3"]));
        assert_eq!(
            rest,
            strings(&["-kernel", "bz", "-append", "console=ttyS0", "-m", "512M"])
        );
        let parsed = Trailing::try_parse_from(std::iter::once("cache".to_owned()).chain(own))
            .unwrap()
            .args;
        assert_eq!(parsed.window_addr, vec![0x401000]);
        assert_eq!(parsed.warmup, Some(3));
    }

    #[test]
    fn addresses_parse_in_hex_and_decimal() {
        assert_eq!(
            parse_addr("0xffff_8000_0000_0000"),
            Ok(0xFFFF_8000_0000_0000)
        );
        assert_eq!(parse_addr("4096"), Ok(4096));
        assert!(parse_addr("0xz").is_err());
    }

    #[test]
    fn plugin_option_value() {
        let mut a = PluginArgs::new("/t/r.json".into());
        a.window_addrs = vec![0x10, 0x20];
        a.segment_addrs = vec![0x8];
        a.stop_after = Some(8);
        assert_eq!(
            a.qemu_value(Path::new("/t/p.so")).unwrap(),
            "/t/p.so,out=/t/r.json,warmup=10,l1=32768:8:64,tlb=64:4,window-addr=0x10:0x20,segment-addr=0x8,stop-after=8"
        );
        assert!(PluginArgs::new("/t/a,b.json".into())
            .qemu_value(Path::new("/p.so"))
            .is_err());
    }

    fn segment(measured: u64, sums: &[(&str, u64)]) -> Segment {
        Segment {
            anchor: "0x10".into(),
            windows: measured + 10,
            measured,
            sum: sums.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }

    #[test]
    fn averages_are_weighted_by_measured_windows() {
        let a = segment(10, &[("lines_i_user", 20), ("lines_i_kernel", 100)]);
        let b = segment(30, &[("lines_i_user", 60), ("lines_i_kernel", 300)]);
        assert_eq!(
            average(&[&a, &b], &["lines_i_user", "lines_i_kernel"]),
            Some(12.0)
        );
        assert_eq!(average(&[&segment(0, &[])], &["x"]), None);
        let m = footprint_metrics("ipc_rt_inter_0", &[&a, &b]);
        assert_eq!(m["ipc_rt_inter_0_lines_i"], 12.0);
        assert_eq!(m["ipc_rt_inter_0_lines_i_kernel"], 10.0);
        assert_eq!(m["ipc_rt_inter_0_l1_misses"], 0.0);
    }

    #[test]
    fn pingpong_metrics_skip_the_warm_up_runs() {
        let run = |insns: u64, lines: u64| {
            segment(
                10,
                &[("insns_kernel", insns * 10), ("lines_d_user", lines * 10)],
            )
        };
        let mut segs: Vec<Segment> = (0..8).map(|_| run(200, 5)).collect();
        segs[0] = run(100, 100); // intra warm-up run: left out even though it is cheapest
        segs[5] = run(300, 9); // a slower inter run: the best (another) is reported
        segs[6] = run(150, 6);
        let report = Report {
            stopped: "stop-after".into(),
            footprint_overflow: false,
            segments: segs,
        };
        let m = pingpong_metrics(&report).unwrap();
        assert_eq!(m["ipc_rt_intra_0_lines_d"], 5.0);
        assert_eq!(m["ipc_rt_inter_0_lines_d"], 6.0);
        let linux = linux_metrics(&report).unwrap();
        assert_eq!(linux["linux_futex_rt_proc_lines_d"], 6.0);
        let short = Report {
            segments: report.segments[..7].to_vec(),
            ..report
        };
        assert!(pingpong_metrics(&short).is_err());
    }

    #[test]
    fn code_search_reads_executable_segments() {
        // This test binary holds no copy of call_loop; a non-ELF is refused. (The search
        // on the real pingpong ELF runs in `bench --cache` and the guest test.)
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(find_code(&me, &CALL_LOOP).unwrap().is_empty());
        assert!(find_code(b"\x7fELF", &CALL_LOOP).is_err());
        assert_eq!(
            CALL_LOOP[CALL_LOOP_HEAD as usize..][..4],
            [0x48, 0x8B, 0x0C, 0x24]
        );
    }

    #[test]
    fn cacheloop_reports_are_judged() {
        let seg = |anchor: &str, lines: u64, misses: u64| Segment {
            anchor: anchor.into(),
            windows: 99,
            measured: 10,
            sum: [
                ("lines_d_user", lines * 10),
                ("l1d_misses", misses * 10),
                ("l1d_misses_fa", 0),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
        };
        let good = Report {
            stopped: "exit".into(),
            footprint_overflow: false,
            segments: vec![
                seg("marker:1", 16, 0),
                seg("marker:2", 8, 0),
                seg("marker:3", 9, 9),
                seg("0x1000", 5, 0),
            ],
        };
        assert_eq!(
            judge_cacheloop(&good, 0x1000),
            Tally {
                passed: 10,
                failed: 0
            }
        );
        let mut bad = good.clone();
        bad.segments[0] = seg("marker:1", 17, 0);
        assert_eq!(
            judge_cacheloop(&bad, 0x1000),
            Tally {
                passed: 9,
                failed: 1
            }
        );
        bad.segments.pop();
        assert_eq!(
            judge_cacheloop(&bad, 0x1000),
            Tally {
                passed: 6,
                failed: 4
            }
        );
    }

    #[test]
    fn source_lines_are_found_inside_their_function() {
        let src = "fn other() {\n    word.store(CHILD_TURN, x);\n}\n\nfn ping(word: &W) {\n    for _ in 0..n {\n        word.store(CHILD_TURN, SeqCst);\n    }\n}\n";
        assert_eq!(
            line_in_function(src, "ping", "word.store(CHILD_TURN"),
            Some(7)
        );
        assert_eq!(line_in_function(src, "pong", "word.store"), None);
    }
}
