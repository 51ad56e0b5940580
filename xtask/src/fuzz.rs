//! `cargo xtask fuzz`: boots the system-call fuzzer (user/fuzz, as root task of
//! boot/fuzz.toml) on a kernel built with its invariant checker, and reports the outcome.
//!
//! ```text
//!   build     kernel with `--features invariants` (kept as tern+invariants), programs
//!   image     the fuzz ELF with "seed=S iterations=N [trace_from=K]" embedded in its
//!             `.tern_args` section (see `embed_args`), packed as target/boot/fuzz.cpio
//!   boot      QEMU TCG (optionally -icount: then a seed replays exactly), command line
//!             `tern.mapdb-check=on` unless --no-mapdb-check; serial to
//!             target/fuzz/seed-<S>.log (+ .sym.log); fuzz:, TERN-TEST, invariant and
//!             panic lines are shown as they come
//!   verdict   TERN-TEST lines (log::judge_suite); calls per second in guest time (the
//!             guest's SystemClock; with --icount that clock counts instructions, 1 ns
//!             each) and in host wall time (from the `fuzz: start` to the `fuzz: done` line)
//! ```
//!
//! Also here, used by `test` and `soak` as well: building a kernel variant with cargo
//! features ([`build_kernel_variant`]) and embedding program arguments ([`embed_args`]).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

use crate::build;
use crate::image::{self, Overrides};
use crate::log::{judge_suite, Verdict};
use crate::manifest::Manifest;
use crate::qemu::{self, Accel, GuestExit, Serial};
use crate::symbolize::Symbolizer;
use crate::toolchain::{self, Need, Toolchain};
use crate::workspace::{Profile, Workspace, KERNEL_BIN, KERNEL_PACKAGE};

/// The manifest `fuzz` boots.
pub const MANIFEST: &str = "fuzz";

/// The kernel feature of fuzz builds.
pub const INVARIANTS: &str = "invariants";

/// Options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seed of the run (decimal or 0x hex; default: from the clock). Printed for replay.
    #[arg(long, value_parser = parse_u64)]
    pub seed: Option<u64>,
    /// System calls to make, all fuzzing threads together.
    #[arg(long, value_name = "N", default_value_t = 10_000_000)]
    pub iterations: u64,
    /// Count instructions (QEMU -icount shift=0,align=off,sleep=off): slower, but a seed
    /// then replays the same run exactly, and guest time counts instructions.
    #[arg(long)]
    pub icount: bool,
    /// Print every call from call number K on (use with --icount and the seed of a
    /// failed run to see the calls that led to the failure).
    #[arg(long, value_name = "K", value_parser = parse_u64)]
    pub trace_from: Option<u64>,
    /// Skip the mapping database's own full check after every mapping operation (kernel
    /// option tern.mapdb-check=on), which costs most of the run time.
    #[arg(long)]
    pub no_mapdb_check: bool,
    /// Keep away from the calls that trigger a known kernel bug, so that a run can go
    /// past it to find others: huge-utcb-area, migration, faulting-strings (all three
    /// fixed), or all (repeatable; see Finding in user/fuzz/src/main.rs).
    #[arg(long, value_name = "FINDING")]
    pub avoid: Vec<String>,
    /// Build the kernel without the invariant checker (to measure the fuzzer alone).
    #[arg(long)]
    pub no_invariants: bool,
    /// Use the release builds.
    #[arg(long)]
    pub release: bool,
    /// Seconds without any serial output after which the run counts as a hang.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub silence: u64,
}

/// Parses a decimal or `0x` hexadecimal number.
pub fn parse_u64(text: &str) -> Result<u64, String> {
    let t = text.replace('_', "");
    let r = match t.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    r.map_err(|e| format!("{text:?} is not a number: {e}"))
}

/// Runs `cargo xtask fuzz`.
pub fn main(ws: &Workspace, args: Args) -> Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        (now.as_nanos() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16
    });
    let profile = Profile::from_release_flag(args.release);
    let manifest = Manifest::load(ws, MANIFEST)?;
    let toolchain = toolchain::ensure(Need::Boot)?;
    let features: Vec<String> = if args.no_invariants { Vec::new() } else { vec![INVARIANTS.to_owned()] };
    let kernel = build_kernel_variant(ws, &toolchain, profile, &features)?;
    build::build(ws, &toolchain, profile, [&manifest])?;
    let mut text = format!("seed={seed:#x} iterations={}", args.iterations);
    if !args.no_mapdb_check {
        text.push_str(" mapdb=on");
    }
    if let Some(k) = args.trace_from {
        text.push_str(&format!(" trace_from={k}"));
    }
    if !args.avoid.is_empty() {
        text.push_str(&format!(" avoid={}", args.avoid.join(",")));
    }
    let out_dir = ws.root().join("target").join("fuzz");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let elf = out_dir.join(format!("fuzz-{seed:#x}.elf"));
    write_with_args(&ws.elf(profile, &manifest.roottask.package), &elf, &text)?;
    let overrides = Overrides { sigma0: None, root_task: Some(elf) };
    let archive = image::build(ws, &manifest, profile, &overrides)?;
    let symbolizer = Symbolizer::for_boot(ws.root(), &kernel, &archive.programs);
    let config = qemu::Config {
        kernel: kernel.clone(),
        initrd: archive.path.clone(),
        cmdline: if args.no_mapdb_check { String::new() } else { "tern.mapdb-check=on".into() },
        accel: Accel::Tcg,
        icount: args.icount,
        gdb: false,
        serial: Serial::Captured,
    };
    println!(
        "xtask: fuzz: seed {seed:#x}, {} calls, kernel {}{}{}",
        args.iterations,
        kernel.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()),
        if args.icount { ", -icount (exact replay)" } else { "" },
        if args.no_mapdb_check { "" } else { ", tern.mapdb-check=on" }
    );
    let mut marks = Marks::default();
    let tracing = args.trace_from.is_some();
    let run = run_streamed(&config, Duration::from_secs(args.silence), |line, at| {
        if line.contains("fuzz: start") {
            marks.start = Some(at);
        }
        if line.contains("fuzz: done") {
            marks.done = Some(at);
        }
        interesting(line) || (tracing && line.contains("fuzz: #"))
    })?;
    let raw = String::from_utf8_lossy(&run.serial).into_owned();
    let log = out_dir.join(format!("seed-{seed:#x}.log"));
    std::fs::write(&log, &run.serial).with_context(|| format!("cannot write {}", log.display()))?;
    std::fs::write(log.with_extension("sym.log"), symbolizer.annotate_text(&raw))?;
    let verdict = judge_suite(&raw, run.exit);
    report(&args, seed, &raw, &verdict, &run, &marks, &log);
    Ok(if verdict.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Host times of the guest's start and done lines.
#[derive(Default)]
struct Marks {
    start: Option<Instant>,
    done: Option<Instant>,
}

/// Lines shown while the fuzzer runs (everything goes to the log file).
fn interesting(line: &str) -> bool {
    ["fuzz:", "TERN-TEST", "KERNEL PANIC", "invariant", "backtrace", "  #", "xtask"].iter().any(|m| line.contains(m))
        && !line.contains("fuzz: #")
}

fn report(args: &Args, seed: u64, raw: &str, verdict: &Verdict, run: &Streamed, marks: &Marks, log: &Path) {
    let result = raw.lines().find_map(|l| l.find("FUZZ-RESULT").map(|i| &l[i..]));
    let field = |name: &str| -> Option<u64> {
        result?.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    let faults = raw.lines().filter(|l| l.contains("USER FAULT:")).count();
    println!();
    if let (Some(calls), Some(guest_us)) = (field("calls"), field("guest_us")) {
        let guest = calls as f64 / (guest_us.max(1) as f64 / 1e6);
        let clock = if args.icount { "guest clock = instructions (icount, 1 ns each)" } else { "guest clock (TCG, follows host time)" };
        println!("xtask: fuzz: {calls} calls; {guest:.0} calls/s by the {clock}");
        if let (Some(s), Some(d)) = (marks.start, marks.done) {
            let host = d.duration_since(s).as_secs_f64();
            println!("xtask: fuzz: {:.0} calls/s by host wall time ({host:.1} s, QEMU TCG on this machine)", calls as f64 / host.max(1e-3));
        }
    }
    println!("xtask: fuzz: {faults} user-fault reports (victims and pool threads sent astray: expected)");
    println!("xtask: fuzz: log {} (symbolized: .sym.log)", log.display());
    println!("xtask: fuzz: {} passed, {} failed ({:.1} s; {})", verdict.passed, verdict.failed, run.elapsed.as_secs_f64(), run.exit);
    if verdict.failed > 0 {
        for f in &verdict.failures {
            println!("  FAILED: {f}");
        }
        let mut replay = format!("cargo xtask fuzz --seed {seed:#x} --iterations {}", args.iterations);
        if args.no_mapdb_check {
            replay.push_str(" --no-mapdb-check");
        }
        for f in &args.avoid {
            replay.push_str(&format!(" --avoid {f}"));
        }
        if args.icount {
            replay.push_str(" --icount   (add --trace-from K to print the calls from K on)");
        } else {
            replay.push_str("   (without --icount the interleaving differs from run to run)");
        }
        println!("xtask: fuzz: replay with: {replay}");
    }
}

// ---------------------------------------------------------------------------------------
// Kernel variants and embedded arguments (also used by `test` and `soak`)

/// Where the kernel built with `features` is kept: `tern+<f1>+<f2>` next to `tern`
/// (plain `tern` for no features).
pub fn kernel_variant_path(ws: &Workspace, profile: Profile, features: &[String]) -> PathBuf {
    if features.is_empty() {
        return ws.kernel_elf(profile);
    }
    let mut name = KERNEL_BIN.to_owned();
    for f in features {
        name.push('+');
        name.push_str(f);
    }
    ws.elf(profile, &name)
}

/// Builds the kernel with the cargo `features` of tern-kernel and keeps a copy under
/// [`kernel_variant_path`]. Call it *before* the plain build of the same profile: cargo
/// links the plain `tern` again on every build, so the variant must be copied first.
pub fn build_kernel_variant(ws: &Workspace, toolchain: &Toolchain, profile: Profile, features: &[String]) -> Result<PathBuf> {
    let path = kernel_variant_path(ws, profile, features);
    if features.is_empty() {
        return Ok(path);
    }
    for f in features {
        if f.is_empty() || !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            bail!("bad kernel feature name {f:?}");
        }
    }
    let list: Vec<String> = features.iter().map(|f| format!("{KERNEL_PACKAGE}/{f}")).collect();
    println!("xtask: build: kernel with {}", features.join(", "));
    let packages = [KERNEL_PACKAGE.to_owned()].into_iter().collect();
    let output = toolchain
        .cargo()
        .current_dir(ws.root())
        .env("RUSTFLAGS", build::TARGET_RUSTFLAGS)
        .args(build::cargo_args(ws, profile, &packages))
        .args(["--features", &list.join(",")])
        .stdin(Stdio::null())
        .output()
        .context("cannot start cargo for the kernel variant")?;
    if !output.status.success() {
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        bail!("kernel build with {} failed ({})", features.join(", "), output.status);
    }
    std::fs::copy(ws.kernel_elf(profile), &path).with_context(|| format!("cannot copy the kernel to {}", path.display()))?;
    Ok(path)
}

/// Section that carries a program's arguments (see user/fuzz/src/args.rs).
pub const ARGS_SECTION: &str = ".tern_args";
/// What the section starts with.
pub const ARGS_MAGIC: &[u8] = b"TERN-ARGS:";

/// Writes `text` behind the magic of an arguments section's bytes, NUL-terminated.
pub fn patch_args(section: &mut [u8], text: &str) -> Result<()> {
    if !section.starts_with(ARGS_MAGIC) {
        bail!("the {ARGS_SECTION} section does not start with {:?}", String::from_utf8_lossy(ARGS_MAGIC));
    }
    if text.bytes().any(|b| b == 0 || b.is_ascii_control()) {
        bail!("program arguments contain a control character");
    }
    let room = section.len() - ARGS_MAGIC.len();
    if text.len() + 1 > room {
        bail!("program arguments are {} bytes; the section holds {}", text.len(), room - 1);
    }
    let dst = &mut section[ARGS_MAGIC.len()..];
    dst[..text.len()].copy_from_slice(text.as_bytes());
    dst[text.len()..].fill(0);
    Ok(())
}

/// The ELF file `elf` with `text` embedded as its arguments.
pub fn embed_args(elf: &[u8], text: &str) -> Result<Vec<u8>> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(elf).context("not an ELF file")?;
    let section = file
        .section_by_name(ARGS_SECTION)
        .with_context(|| format!("the program has no {ARGS_SECTION} section (it takes no arguments)"))?;
    let (offset, size) = section.file_range().with_context(|| format!("{ARGS_SECTION} has no file contents"))?;
    let (offset, size) = (usize::try_from(offset)?, usize::try_from(size)?);
    let mut out = elf.to_vec();
    let bytes = out.get_mut(offset..offset + size).context("section beyond the end of the file")?;
    patch_args(bytes, text)?;
    Ok(out)
}

/// Copies the ELF file `src` to `dst` with `text` embedded as its arguments.
pub fn write_with_args(src: &Path, dst: &Path, text: &str) -> Result<()> {
    let data = std::fs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
    let patched = embed_args(&data, text).with_context(|| format!("embedding arguments in {}", src.display()))?;
    std::fs::write(dst, patched).with_context(|| format!("cannot write {}", dst.display()))
}

// ---------------------------------------------------------------------------------------
// A run with the serial output followed live

/// The outcome of [`run_streamed`].
pub struct Streamed {
    pub exit: GuestExit,
    pub serial: Vec<u8>,
    pub elapsed: Duration,
}

/// Runs QEMU, handing every serial line to `on_line` (with its host arrival time) as it
/// comes and printing it when `on_line` says so; stops QEMU when nothing arrives for
/// `silence` (a hang).
pub fn run_streamed(config: &qemu::Config, silence: Duration, mut on_line: impl FnMut(&str, Instant) -> bool) -> Result<Streamed> {
    config.check()?;
    let started = Instant::now();
    let mut child = qemu::command(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", qemu::QEMU))?;
    let Some(stdout) = child.stdout.take() else { bail!("QEMU's output is not piped") };
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut serial = Vec::new();
    let mut last = Instant::now();
    let exit = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                last = Instant::now();
                let text = String::from_utf8_lossy(&line);
                if on_line(text.trim_end(), last) {
                    println!("{}", text.trim_end());
                }
                serial.extend_from_slice(&line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = child.try_wait()? {
                    break GuestExit::from_status(status.code());
                }
                if last.elapsed() >= silence {
                    child.kill().context("cannot stop QEMU")?;
                    child.wait()?;
                    break GuestExit::TimedOut;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait()?;
                break GuestExit::from_status(status.code());
            }
        }
    };
    // Whatever is still buffered.
    while let Ok(line) = rx.try_recv() {
        serial.extend_from_slice(&line);
    }
    let _ = reader.join();
    Ok(Streamed { exit, serial, elapsed: started.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> Vec<u8> {
        let mut s = ARGS_MAGIC.to_vec();
        s.resize(32, 0xAA);
        s
    }

    #[test]
    fn arguments_go_behind_the_magic() {
        let mut s = section();
        patch_args(&mut s, "seed=1 n=2").unwrap();
        assert_eq!(&s[..ARGS_MAGIC.len()], ARGS_MAGIC);
        assert_eq!(&s[ARGS_MAGIC.len()..ARGS_MAGIC.len() + 11], b"seed=1 n=2\0");
        assert!(s[ARGS_MAGIC.len() + 10..].iter().all(|&b| b == 0));
    }

    #[test]
    fn bad_sections_and_texts_are_refused() {
        let mut s = section();
        assert!(patch_args(&mut s, &"x".repeat(22)).unwrap_err().to_string().contains("holds 21"));
        assert!(patch_args(&mut s, &"x".repeat(21)).is_ok());
        assert!(patch_args(&mut s, "a\nb").is_err());
        let mut wrong = b"NOT-ARGS:.......".to_vec();
        assert!(patch_args(&mut wrong, "x").unwrap_err().to_string().contains("does not start"));
    }

    #[test]
    fn numbers_parse_in_decimal_and_hex() {
        assert_eq!(parse_u64("42"), Ok(42));
        assert_eq!(parse_u64("0x2a"), Ok(42));
        assert_eq!(parse_u64("1_000"), Ok(1000));
        assert!(parse_u64("x").is_err());
    }

    #[test]
    fn variant_paths_name_their_features() {
        let ws = Workspace::locate().unwrap();
        let p = kernel_variant_path(&ws, Profile::Debug, &["invariants".to_owned()]);
        assert!(p.ends_with("debug/tern+invariants"), "{}", p.display());
        assert_eq!(kernel_variant_path(&ws, Profile::Debug, &[]), ws.kernel_elf(Profile::Debug));
    }

    #[test]
    fn shown_lines() {
        assert!(interesting("fuzz: start"));
        assert!(interesting("TERN-TEST ok x"));
        assert!(interesting("KERNEL PANIC: boom"));
        assert!(!interesting("fuzz: #12 1 Ipc rax=0x1"));
        assert!(!interesting("USER FAULT: thread 0x1 (task) page fault"));
    }
}
