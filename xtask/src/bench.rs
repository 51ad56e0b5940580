//! `cargo xtask bench`: exact instruction counts of Tern's system calls, IPC, page faults
//! and mappings; optionally Linux's equivalents side by side.
//!
//! ```text
//!   build (release) + target/boot/bench.cpio (boot/bench.toml: pingpong is the root task)
//!   boot Tern N times (QEMU TCG -icount shift=0,align=off,sleep=off)       -> TERN-BENCH lines
//!   boot Tern N times with `tern.syscall-floor`                            -> syscall_floor
//!   kernel_text_bytes from the kernel ELF
//!   --compare linux: Debian's kernel + static /init benchmark, N boots      -> linux_* metrics
//!   --cache: the same boots under tools/cacheplugin (see cache.rs), N runs   -> *_lines_i,
//!            *_lines_d, *_l1_misses, ... for ipc_rt_{intra,inter}_0 (and linux_futex_rt_proc)
//!   target/bench/results.json, table.md, ipc_rt.svg/.png; logs in target/bench/logs/
//! ```
//!
//! Under `-icount shift=0` the TSC advances once per guest instruction, so `rdtsc` deltas
//! are exact instruction counts and every boot must report the same numbers; any
//! difference between boots is reported (in the output and in `meta.differences`). With
//! `--accel kvm` (hardware-backed KVM only) the numbers are cycles, labelled as such.
//!
//! The pure parts (the serial protocol, merging, JSON, tables) are in `results`; the plot in
//! `plot`; fetching and booting Linux in `linux`.

mod linux;
mod plot;
mod results;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

use crate::build;
use crate::cache;
use crate::image::{self, Overrides};
use crate::log::{parse_line, Line};
use crate::manifest::Manifest;
use crate::qemu::{self, Accel, GuestExit, KvmProbe, Serial};
use crate::symbolize::Symbolizer;
use crate::toolchain::{self, Need};
use crate::workspace::{Profile, Workspace};

use self::results::{GuestReport, LinuxMeta, Meta, Mode};

/// The boot manifest of the benchmark.
pub const BENCH_MANIFEST: &str = "bench";

/// The kernel option of the bench-only syscall-floor mode.
pub const FLOOR_OPTION: &str = "tern.syscall-floor";

/// Where the documentation's table lives in docs/performance.md.
const DOC_BEGIN: &str = "<!-- bench:results:begin -->";
const DOC_END: &str = "<!-- bench:results:end -->";

/// The plot's file names under docs/ (`.svg`, `.png`).
const DOC_PLOT_STEM: &str = "performance-ipc";

/// Which other system `--compare` boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compare {
    /// Debian's stock Linux kernel with a static benchmark as /init.
    Linux,
}

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// tcg (default): QEMU TCG with -icount shift=0, exact instruction counts. kvm: cycles
    /// under hardware-backed KVM (refused when /dev/kvm is missing or paravirtualized).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    pub accel: Accel,
    /// Also boot another system in the same QEMU mode and compare: linux = Debian's stock
    /// kernel (fetched with apt-get) with a static benchmark (bench/linux) as /init.
    #[arg(long, value_enum, value_name = "OS")]
    pub compare: Option<Compare>,
    /// Boots of each configuration; under icount they must report identical numbers.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=10))]
    pub runs: u32,
    /// Seconds one boot may run before it is stopped.
    #[arg(long, value_name = "SECS", default_value_t = 1200)]
    pub timeout: u64,
    /// Also copy the plot to docs/performance-ipc.{svg,png} and the table into
    /// docs/performance.md (between its bench:results markers).
    #[arg(long)]
    pub update_docs: bool,
    /// Also run the IPC round trips (ipc_rt_{intra,inter}_0; with --compare linux the
    /// futex ping-pong) under the cache-footprint plugin (tools/cacheplugin), --runs
    /// times: distinct I and D lines, L1 and TLB misses per round trip (TCG only).
    #[arg(long)]
    pub cache: bool,
}

/// What one benchmark configuration (a kernel and its command line) produced over its boots.
#[derive(Debug, Default)]
struct ConfigOutcome {
    merged: results::Merged,
    /// Notes of the first successful boot.
    notes: Vec<(String, String)>,
    errors: Vec<String>,
    /// Boots that ended well.
    good: u32,
}

/// One QEMU configuration to boot.
struct BootSpec<'a> {
    /// Name in logs and messages (`tern`, `tern-floor`, `linux`).
    name: &'a str,
    config: qemu::Config,
    symbolizer: Option<&'a Symbolizer>,
}

/// Runs `cargo xtask bench`.
pub fn main(ws: &Workspace, args: Args) -> Result<ExitCode> {
    let mode = match args.accel {
        Accel::Tcg => Mode::Icount,
        Accel::Kvm => {
            if let Err(why) = qemu::check_kvm(&KvmProbe::read(Path::new("/"))) {
                bail!("refusing --accel kvm: {why}");
            }
            if args.cache {
                bail!("--cache needs --accel tcg (QEMU plugins instrument TCG code)");
            }
            Mode::Kvm
        }
    };
    let manifest = Manifest::load(ws, BENCH_MANIFEST)?;
    let toolchain = toolchain::ensure(Need::Boot)?;
    build::build(ws, &toolchain, Profile::Release, [&manifest])?;
    let archive = image::build(ws, &manifest, Profile::Release, &Overrides::default())?;
    let kernel = ws.kernel_elf(Profile::Release);
    let symbolizer = Symbolizer::for_boot(ws.root(), &kernel, &archive.programs);
    let out_dir = ws.root().join("target").join("bench");
    let log_dir = out_dir.join("logs");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;
    let timeout = Duration::from_secs(args.timeout);
    let qemu_config = |kernel: &Path, initrd: &Path, cmdline: &str| qemu::Config {
        kernel: kernel.to_owned(),
        initrd: initrd.to_owned(),
        cmdline: cmdline.to_owned(),
        accel: args.accel,
        icount: mode == Mode::Icount,
        gdb: false,
        serial: Serial::Captured,
    };

    let mut metrics = BTreeMap::new();
    let mut meta_notes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut differences = Vec::new();
    let mut errors = Vec::new();
    let mut tern_failed = false;
    for (name, cmdline) in [("tern", ""), ("tern-floor", FLOOR_OPTION)] {
        let spec = BootSpec { name, config: qemu_config(&kernel, &archive.path, cmdline), symbolizer: Some(&symbolizer) };
        let outcome = run_config(&spec, args.runs, timeout, &log_dir);
        tern_failed |= outcome.good == 0 || !outcome.errors.is_empty();
        absorb(outcome, &mut metrics, &mut meta_notes, &mut differences, &mut errors);
    }
    if args.cache {
        match cache_tern(ws, &qemu_config(&kernel, &archive.path, ""), args.runs, timeout, &out_dir) {
            Ok(merged) => {
                metrics.extend(merged.metrics);
                differences.extend(merged.differences);
            }
            Err(err) => {
                tern_failed = true;
                errors.push(format!("cache: {err:#}"));
            }
        }
    }
    match kernel_text_bytes(&kernel) {
        Ok(bytes) => {
            metrics.insert("kernel_text_bytes".to_owned(), bytes as f64);
        }
        Err(err) => errors.push(format!("kernel_text_bytes: {err:#}")),
    }

    let linux = match args.compare {
        None => LinuxMeta { status: "not run".into(), ..LinuxMeta::default() },
        Some(Compare::Linux) => {
            let mut linux_metrics = BTreeMap::new();
            let mut linux_errors = Vec::new();
            let result = run_linux(ws, args.runs, timeout, &log_dir, &qemu_config).map(|(outcome, boot)| {
                let good = outcome.good;
                absorb(outcome, &mut linux_metrics, &mut meta_notes, &mut differences, &mut linux_errors);
                (good, boot)
            });
            if args.cache {
                match cache_linux(ws, args.runs, timeout, &out_dir, &qemu_config) {
                    Ok(merged) => {
                        linux_metrics.extend(merged.metrics);
                        differences.extend(merged.differences);
                    }
                    Err(err) => linux_errors.push(format!("cache: {err:#}")),
                }
            }
            let meta = match result {
                Ok((good, boot)) if good > 0 && linux_errors.is_empty() => LinuxMeta {
                    status: "ok".into(),
                    error: None,
                    package: Some(boot.package),
                    cmdline: Some(linux::CMDLINE.into()),
                },
                Ok((_, boot)) => LinuxMeta {
                    status: "failed".into(),
                    error: Some(linux_errors.join("; ")),
                    package: Some(boot.package),
                    cmdline: Some(linux::CMDLINE.into()),
                },
                Err(err) => LinuxMeta { status: "failed".into(), error: Some(format!("{err:#}")), ..LinuxMeta::default() },
            };
            metrics.extend(linux_metrics);
            errors.extend(linux_errors.iter().cloned());
            meta
        }
    };

    let mut not_yet_measurable = BTreeMap::new();
    let expected = results::TERN_METRICS.iter().chain(if args.compare.is_some() { &results::LINUX_METRICS[..] } else { &[] });
    for name in expected {
        if !metrics.contains_key(*name) {
            let why = meta_notes.get(*name).map_or_else(
                || "not reported by the benchmark program (see meta.errors and the logs)".to_owned(),
                |notes| notes.join("; "),
            );
            not_yet_measurable.insert((*name).to_owned(), why);
        }
    }
    let meta = Meta {
        mode,
        unit: mode.unit().to_owned(),
        qemu: qemu_version(),
        cpu: host_cpu_model(),
        guest_cpu: match mode {
            Mode::Icount => "QEMU TCG -cpu max".to_owned(),
            Mode::Kvm => "KVM -cpu host".to_owned(),
        },
        commit: git_commit(ws),
        runs: args.runs,
        repeatable: !differences.iter().any(|d| !d.is_linux()),
        differences: differences.clone(),
        method: method(mode),
        definitions: definitions(),
        notes: meta_notes,
        not_yet_measurable: not_yet_measurable.clone(),
        errors: errors.clone(),
        linux: linux.clone(),
    };

    let json_path = out_dir.join("results.json");
    let json = results::to_json(&metrics, &meta).context("writing results.json")?;
    std::fs::write(&json_path, json).with_context(|| format!("cannot write {}", json_path.display()))?;
    let markdown = docs_block(&metrics, &meta);
    std::fs::write(out_dir.join("table.md"), &markdown)?;

    println!();
    println!("Tern benchmark ({}; {}; commit {})", mode.unit(), meta.guest_cpu, meta.commit);
    println!();
    print!("{}", results::report(&metrics, mode, false));
    if !not_yet_measurable.is_empty() {
        println!();
        println!("not measured:");
        for (name, why) in &not_yet_measurable {
            println!("  {name}: {why}");
        }
    }
    println!("\nxtask: bench: {}", results::agreement(&differences, args.runs));
    if !meta.repeatable {
        println!("xtask: bench: WARNING: under icount every boot must report the same; these differ:");
        for d in differences.iter().filter(|d| !d.is_linux()) {
            let values: Vec<String> =
                d.values.iter().map(|v| v.map_or("-".to_owned(), results::format_value)).collect();
            println!("  {}: {}", d.metric, values.join(" / "));
        }
    }
    let plot_data = plot::PlotData {
        intra: results::series(&metrics, "intra"),
        inter: results::series(&metrics, "inter"),
        lines: [
            ("linux_futex_rt_proc", "Linux futex, two processes"),
            ("linux_futex_rt_thread", "Linux futex, two threads"),
            ("linux_pipe_rt", "Linux pipe, two processes"),
        ]
        .iter()
        .filter_map(|(k, label)| metrics.get(*k).map(|v| ((*label).to_owned(), *v)))
        .collect(),
        unit: mode.unit().to_owned(),
        subtitle: match mode {
            Mode::Icount => format!("guest instructions, QEMU TCG -icount shift=0 (commit {})", meta.commit),
            Mode::Kvm => format!("CPU cycles under KVM (commit {})", meta.commit),
        },
    };
    let plots = draw_plots(&out_dir.join("ipc_rt"), &plot_data);
    println!("xtask: bench: results: {}", json_path.display());
    match &plots {
        Ok((svg, png)) => println!("xtask: bench: plot: {} and {}", svg.display(), png.display()),
        Err(err) => println!("xtask: bench: no plot: {err:#}"),
    }
    if args.update_docs {
        update_docs(ws, &markdown, plots.as_ref().ok())?;
    }
    if linux.status == "failed" {
        println!(
            "xtask: bench: THE LINUX SIDE FAILED: {} (Tern's results above are complete)",
            linux.error.as_deref().unwrap_or("unknown error")
        );
    }
    for e in &errors {
        println!("xtask: bench: error: {e}");
    }
    let ok = !tern_failed && linux.status != "failed" && plots.is_ok();
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Adds a configuration's outcome to the run's results.
fn absorb(
    outcome: ConfigOutcome,
    metrics: &mut BTreeMap<String, f64>,
    notes: &mut BTreeMap<String, Vec<String>>,
    differences: &mut Vec<results::Difference>,
    errors: &mut Vec<String>,
) {
    metrics.extend(outcome.merged.metrics);
    differences.extend(outcome.merged.differences);
    for (metric, text) in outcome.notes {
        notes.entry(metric).or_default().push(text);
    }
    errors.extend(outcome.errors);
}

/// Boots `spec` `runs` times; keeps each log; merges the boots that ended well.
fn run_config(spec: &BootSpec<'_>, runs: u32, timeout: Duration, log_dir: &Path) -> ConfigOutcome {
    let mut outcome = ConfigOutcome::default();
    let mut reports: Vec<BTreeMap<String, f64>> = Vec::new();
    for run in 1..=runs {
        print!("xtask: bench: {} boot {run}/{runs} ... ", spec.name);
        let _ = std::io::Write::flush(&mut std::io::stdout());
        match boot_once(spec, run, timeout, log_dir) {
            Ok((report, exit, seconds)) => {
                let how = match exit {
                    // Linux powers off through ACPI: QEMU then exits with status 0.
                    GuestExit::Reset if report.done => "powered off".to_owned(),
                    other => other.to_string(),
                };
                println!("{} metrics, {how} ({seconds:.1} s)", report.metrics.len());
                for bad in &report.malformed {
                    outcome.errors.push(format!("{} boot {run}: malformed line: {bad}", spec.name));
                }
                let ended_well = matches!(exit, GuestExit::Success | GuestExit::Reset) && report.done;
                if !ended_well {
                    outcome.errors.push(format!(
                        "{} boot {run}: {exit}{}; log: {}",
                        spec.name,
                        if report.done { "" } else { ", no `TERN-BENCH done`" },
                        log_dir.join(format!("{}-{run}.log", spec.name)).display()
                    ));
                    continue;
                }
                if outcome.good == 0 {
                    outcome.notes = report.notes.clone();
                }
                outcome.good += 1;
                reports.push(report.metrics);
            }
            Err(err) => {
                println!("failed");
                outcome.errors.push(format!("{} boot {run}: {err:#}", spec.name));
            }
        }
    }
    outcome.merged = results::merge_runs(&reports);
    outcome
}

/// Boots once, writes `<name>-<run>.log` (and `.sym.log` for Tern), parses the report.
fn boot_once(spec: &BootSpec<'_>, run: u32, timeout: Duration, log_dir: &Path) -> Result<(GuestReport, GuestExit, f64)> {
    let captured = qemu::run_captured(&spec.config, timeout)?;
    let raw = String::from_utf8_lossy(&captured.serial).into_owned();
    let log = log_dir.join(format!("{}-{run}.log", spec.name));
    std::fs::write(&log, &captured.serial).with_context(|| format!("cannot write {}", log.display()))?;
    if let Some(sym) = spec.symbolizer {
        let path = log_dir.join(format!("{}-{run}.sym.log", spec.name));
        std::fs::write(&path, sym.annotate_text(&raw)).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut report = results::parse_report(&raw);
    if let Some(message) = raw.lines().find_map(|l| match parse_line(l) {
        Line::KernelPanic { message } => Some(message.to_owned()),
        _ => None,
    }) {
        report.malformed.push(format!("KERNEL PANIC: {message}"));
    }
    if !captured.stderr.trim().is_empty() && !matches!(captured.exit, GuestExit::Success | GuestExit::Reset) {
        report.malformed.push(format!("QEMU: {}", captured.stderr.trim()));
    }
    Ok((report, captured.exit, captured.elapsed.as_secs_f64()))
}

/// Prepares and boots Linux `runs` times.
fn run_linux(
    ws: &Workspace,
    runs: u32,
    timeout: Duration,
    log_dir: &Path,
    qemu_config: &dyn Fn(&Path, &Path, &str) -> qemu::Config,
) -> Result<(ConfigOutcome, linux::LinuxBoot)> {
    let boot = linux::prepare(ws).context("preparing the Linux boot")?;
    println!("xtask: bench: Linux: {} ({})", boot.kernel.display(), boot.package);
    let spec = BootSpec { name: "linux", config: qemu_config(&boot.kernel, &boot.initramfs, linux::CMDLINE), symbolizer: None };
    Ok((run_config(&spec, runs, timeout, log_dir), boot))
}

/// One program to run under the cache plugin by [`cache_runs`].
struct CacheSpec<'a> {
    /// Name in messages and file names (`tern`, `linux`).
    name: &'a str,
    config: qemu::Config,
    /// The plugin.
    so: PathBuf,
    runs: u32,
    timeout: Duration,
    /// Where reports and serial logs go.
    dir: PathBuf,
}

/// Runs `spec`'s program `runs` times under the cache plugin (`plugin(run)` gives each
/// run's plugin arguments, `metrics` reads a report); merges the runs, so that runs that
/// disagree show up as differences.
fn cache_runs(
    spec: &CacheSpec<'_>,
    plugin: &dyn Fn(u32) -> Result<cache::PluginArgs>,
    metrics: &dyn Fn(&cache::Report) -> Result<BTreeMap<String, f64>>,
) -> Result<results::Merged> {
    let (name, runs, dir) = (spec.name, spec.runs, &spec.dir);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut all = Vec::new();
    for run in 1..=runs {
        print!("xtask: bench: {name} under the cache plugin, run {run}/{runs} ... ");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let result = cache::run_captured(qemu::command(&spec.config), &spec.so, &plugin(run)?, spec.timeout);
        let done = result.and_then(|r| {
            let log = dir.join(format!("{name}-{run}.log"));
            std::fs::write(&log, &r.serial).with_context(|| format!("cannot write {}", log.display()))?;
            Ok((metrics(&r.report)?, r.elapsed.as_secs_f64(), r.report.segments.len(), r.status))
        });
        match done {
            Ok((m, seconds, segments, status)) => {
                let how = status.map_or("stopped by a signal".to_owned(), |s| format!("QEMU exit status {s}"));
                println!("{segments} segments, {how} ({seconds:.1} s)");
                all.push(m);
            }
            Err(err) => {
                println!("failed");
                return Err(err.context(format!("{name} run {run} under the cache plugin")));
            }
        }
    }
    Ok(results::merge_runs(&all))
}

/// `--cache` for Tern: the pingpong boot under the plugin, windows at `call_loop`'s head.
fn cache_tern(ws: &Workspace, config: &qemu::Config, runs: u32, timeout: Duration, out_dir: &Path) -> Result<results::Merged> {
    let so = cache::build_plugin(ws)?;
    let elf_path = ws.elf(Profile::Release, "pingpong");
    let elf = std::fs::read(&elf_path).with_context(|| format!("cannot read {}", elf_path.display()))?;
    let dir = out_dir.join("cache");
    let plugin = |run: u32| cache::pingpong_plugin_args(&elf, dir.join(format!("tern-{run}.json")));
    let spec = CacheSpec { name: "tern", config: config.clone(), so, runs, timeout, dir: dir.clone() };
    cache_runs(&spec, &plugin, &cache::pingpong_metrics)
}

/// `--cache` for Linux: the futex ping-pong of the benchmark linked at fixed addresses.
fn cache_linux(
    ws: &Workspace,
    runs: u32,
    timeout: Duration,
    out_dir: &Path,
    qemu_config: &dyn Fn(&Path, &Path, &str) -> qemu::Config,
) -> Result<results::Merged> {
    let so = cache::build_plugin(ws)?;
    let (boot, elf) = linux::prepare_linked(ws, linux::Link::Fixed)?;
    let source_path = ws.root().join("bench").join("linux").join("src").join("main.rs");
    let source = std::fs::read_to_string(&source_path).with_context(|| format!("cannot read {}", source_path.display()))?;
    let dir = out_dir.join("cache");
    let plugin = |run: u32| cache::linux_plugin_args(&elf, &source, dir.join(format!("linux-{run}.json")));
    let config = qemu_config(&boot.kernel, &boot.initramfs, linux::CMDLINE);
    let spec = CacheSpec { name: "linux", config, so, runs, timeout, dir: dir.clone() };
    cache_runs(&spec, &plugin, &cache::linux_metrics)
}

/// Writes the plots, installing the font first if it is missing and we may.
fn draw_plots(stem: &Path, data: &plot::PlotData) -> Result<(PathBuf, PathBuf)> {
    if data.intra.is_empty() && data.inter.is_empty() {
        bail!("no IPC series was measured");
    }
    match plot::write(stem, data) {
        Ok(paths) => Ok(paths),
        Err(first) if toolchain::is_root() => {
            println!("xtask: bench: plot failed ({first:#}); installing {}", plot::FONT_PACKAGE);
            toolchain::install_packages(&[plot::FONT_PACKAGE])?;
            plot::write(stem, data)
        }
        Err(err) => Err(err),
    }
}

/// The Markdown block docs/performance.md carries: how the numbers were made, the table.
fn docs_block(metrics: &BTreeMap<String, f64>, meta: &Meta) -> String {
    let mut out = format!(
        "Measured by `cargo xtask bench{}` at commit `{}`: {} ({}), {} on a host {}. {}.\n\n",
        if meta.linux.status == "not run" { "" } else { " --compare linux" },
        meta.commit,
        meta.unit,
        meta.guest_cpu,
        meta.qemu,
        meta.cpu,
        results::agreement(&meta.differences, meta.runs),
    );
    out.push_str(&results::report(metrics, meta.mode, true));
    if !meta.not_yet_measurable.is_empty() {
        out.push_str("\nNot measured yet:\n\n");
        for (name, why) in &meta.not_yet_measurable {
            out.push_str(&format!("- `{name}`: {why}\n"));
        }
    }
    if let Some(err) = &meta.linux.error {
        out.push_str(&format!("\nThe Linux side failed: {err}\n"));
    }
    out
}

/// Replaces the text between `begin` and `end` (markers kept) in `doc`.
fn replace_between(doc: &str, begin: &str, end: &str, body: &str) -> Option<String> {
    let start = doc.find(begin)? + begin.len();
    let stop = start + doc[start..].find(end)?;
    Some(format!("{}\n{}{}", &doc[..start], body.trim_end().to_owned() + "\n", &doc[stop..]))
}

/// Copies the plots into docs/ and the table into docs/performance.md.
fn update_docs(ws: &Workspace, markdown: &str, plots: Option<&(PathBuf, PathBuf)>) -> Result<()> {
    let docs = ws.root().join("docs");
    if let Some((svg, png)) = plots {
        for (from, ext) in [(svg, "svg"), (png, "png")] {
            let to = docs.join(format!("{DOC_PLOT_STEM}.{ext}"));
            std::fs::copy(from, &to).with_context(|| format!("cannot copy to {}", to.display()))?;
        }
    }
    let path = docs.join("performance.md");
    let doc = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let Some(updated) = replace_between(&doc, DOC_BEGIN, DOC_END, markdown) else {
        bail!("{} lacks the markers {DOC_BEGIN} … {DOC_END}", path.display());
    };
    std::fs::write(&path, updated).with_context(|| format!("cannot write {}", path.display()))?;
    println!("xtask: bench: updated {} and docs/{DOC_PLOT_STEM}.{{svg,png}}", path.display());
    Ok(())
}

/// Bytes of executable code in an ELF: the sizes of its allocated executable sections
/// (or, without section headers, of its executable PT_LOAD segments).
pub fn executable_bytes(elf: &[u8]) -> Result<u64> {
    use object::read::elf::{ElfFile64, FileHeader, ProgramHeader, SectionHeader};
    let file = ElfFile64::<object::Endianness>::parse(elf).context("not an ELF64 file")?;
    let endian = file.endian();
    let header = file.elf_header();
    let sections = header.sections(endian, elf).context("bad section headers")?;
    let flags = object::elf::SHF_ALLOC | object::elf::SHF_EXECINSTR;
    let from_sections: u64 = sections
        .iter()
        .filter(|s| s.sh_flags(endian).contains(flags) && s.sh_type(endian) != object::elf::SHT_NOBITS)
        .map(|s| s.sh_size(endian))
        .sum();
    if from_sections > 0 {
        return Ok(from_sections);
    }
    Ok(file
        .elf_program_headers()
        .iter()
        .filter(|p| p.p_type(endian) == object::elf::PT_LOAD && p.p_flags(endian).contains(object::elf::PF_X))
        .map(|p| p.p_memsz(endian))
        .sum())
}

/// `kernel_text_bytes`: the executable bytes of the kernel ELF (boot code included: it is
/// linked into the same image).
fn kernel_text_bytes(kernel: &Path) -> Result<u64> {
    let data = std::fs::read(kernel).with_context(|| format!("cannot read {}", kernel.display()))?;
    executable_bytes(&data)
}

/// The first line of `qemu-system-x86_64 --version`.
fn qemu_version() -> String {
    Command::new(qemu::QEMU)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The host CPU's model name (from /proc/cpuinfo).
fn host_cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| cpu_model(&text).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The first `model name` of /proc/cpuinfo text.
fn cpu_model(cpuinfo: &str) -> Option<&str> {
    cpuinfo.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim())
    })
}

/// The commit checked out, `-dirty` when tracked files differ from it (read-only git
/// commands only).
fn git_commit(ws: &Workspace) -> String {
    let git = |args: &[&str]| Command::new("git").current_dir(ws.root()).args(args).stdin(Stdio::null()).output().ok();
    let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]).filter(|o| o.status.success()) else {
        return "unknown".to_owned();
    };
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    let dirty = git(&["diff-index", "--quiet", "HEAD", "--"]).is_some_and(|o| !o.status.success());
    if dirty {
        format!("{head}-dirty")
    } else {
        head
    }
}

/// How the numbers are made (meta.method).
fn method(mode: Mode) -> String {
    let clock = match mode {
        Mode::Icount => "Under QEMU TCG with -icount shift=0,align=off,sleep=off the TSC advances once per \
                         guest instruction, so the values are exact instruction counts.",
        Mode::Kvm => "Under KVM the TSC counts CPU cycles; values vary from boot to boot.",
    };
    format!(
        "rdtsc around loops of many iterations; the best of 3 runs in the guest; the cost of the \
         same loop without the system call (empty loop) subtracted where one exists; each \
         configuration booted several times and compared. {clock}"
    )
}

/// What each metric's iteration is (meta.definitions).
fn definitions() -> BTreeMap<String, String> {
    [
        ("syscall_null", "a call of the SystemClock stub (call, syscall, kernel fast exit, sysretq, ret): the cheapest complete X.2 system call"),
        ("syscall_null_full_path", "a call of the bench-only null stub, which enters and leaves the kernel through the full system-call path doing nothing"),
        ("syscall_floor", "the same loop as syscall_null, booted with tern.syscall-floor: syscall goes straight to sysretq"),
        ("ipc_rt_intra_<n>", "call to a thread of the same space that replies with the same message (reply-and-wait), n untyped words each way; the client's register setup is subtracted, the server's loop is included"),
        ("ipc_rt_inter_<n>", "the same with the server in a second address space"),
        ("pagefault_rt", "a write to a fresh page in the second space: the fault IPC to the pager (the root task), its reply with a map item, the restart; the same writes to the mapped pages subtracted"),
        ("map_unmap_4k", "a call to a thread in the second space carrying a map item of one 4 KiB page; the receiver flushes the page from its space with Unmap and replies (empty); no empty loop subtracted"),
        ("string_ipc_4k", "a call to a thread in the second space carrying one 4 KiB string item, copied into the receiver's buffer, and its empty reply"),
        ("string_ipc_64k", "the same with 64 KiB"),
        ("unmap_chain_1000", "Unmap without flush, by the root task, of a page it mapped into the first of a chain of 1000 spaces, each of which mapped it on to the next: revoking the 1000 derived mappings, per Unmap"),
        ("irq_rt", "the keyboard controller (i8042) raises IRQ 1 on two port writes (included); the kernel sends the interrupt IPC to the handler thread (higher priority than the trigger), which reads the data port and acknowledges with the send phase of its next reply-and-wait; the trigger loop without the port writes subtracted"),
        ("kernel_text_bytes", "sum of the sizes of the allocated executable sections of the kernel ELF (boot code, stub page and alignment padding inside .text included)"),
        ("linux_syscall_null", "getppid through the syscall instruction, empty loop subtracted"),
        ("linux_futex_rt_proc", "futex ping-pong round trip between two processes through a shared page, one CPU"),
        ("linux_futex_rt_thread", "the same between two threads of one process (private futex)"),
        ("linux_pipe_rt", "1-byte pipe ping-pong round trip between two processes"),
        ("linux_pagefault", "a write to fresh anonymous memory (minor fault, no huge pages); the same writes to the mapped pages subtracted"),
        ("<m>_lines_i, <m>_lines_d", "(--cache) distinct 64-byte lines fetched (virtual) / read or written (physical) per round trip of <m> (ipc_rt_intra_0, ipc_rt_inter_0, linux_futex_rt_proc), user and kernel; _lines_i_kernel and _lines_d_kernel: the kernel's part; averages over the round trips of the best measured run (fewest instructions, as the timing figure), after 10 warm-up round trips"),
        ("<m>_l1_misses", "(--cache) misses of a simulated 32 KiB 8-way L1 I-cache plus D-cache (64-byte lines, LRU) per round trip in the steady state; _l1_misses_fa: the same with fully-associative caches of the same size (the difference is conflict misses); _tlb_misses: 64-entry 4-way I- and D-TLB models, user entries flushed on CR3 writes"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_markers_are_replaced_in_place() {
        let doc = "# P\n\nintro\n<!-- bench:results:begin -->\nold\ntable\n<!-- bench:results:end -->\nafter\n";
        let new = replace_between(doc, DOC_BEGIN, DOC_END, "| new |\n\n").unwrap();
        assert_eq!(new, "# P\n\nintro\n<!-- bench:results:begin -->\n| new |\n<!-- bench:results:end -->\nafter\n");
        assert!(replace_between("no markers", DOC_BEGIN, DOC_END, "x").is_none());
    }

    #[test]
    fn cpu_model_is_read_from_cpuinfo() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n";
        assert_eq!(cpu_model(text), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor: 0\n"), None);
    }

    #[test]
    fn executable_bytes_of_this_test_binary() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let bytes = executable_bytes(&me).unwrap();
        assert!(bytes > 4096 && bytes < me.len() as u64, "{bytes}");
        assert!(executable_bytes(b"\x7fELF").is_err());
    }

    #[test]
    fn docs_block_names_the_method_and_the_missing() {
        let mut metrics = BTreeMap::new();
        metrics.insert("ipc_rt_inter_0".to_owned(), 174.0);
        let meta = Meta {
            mode: Mode::Icount,
            unit: "instructions".into(),
            qemu: "QEMU 7.2".into(),
            cpu: "EPYC".into(),
            guest_cpu: "QEMU TCG -cpu max".into(),
            commit: "abc".into(),
            runs: 2,
            repeatable: true,
            differences: vec![],
            method: method(Mode::Icount),
            definitions: definitions(),
            notes: BTreeMap::new(),
            not_yet_measurable: BTreeMap::from([("irq_rt".to_owned(), "no interrupt IPC".to_owned())]),
            errors: vec![],
            linux: LinuxMeta { status: "not run".into(), ..LinuxMeta::default() },
        };
        let block = docs_block(&metrics, &meta);
        assert!(block.starts_with("Measured by `cargo xtask bench` at commit `abc`"));
        assert!(block.contains("reported identical numbers"));
        assert!(block.contains("| ipc_rt_inter_0 "));
        assert!(block.contains("- `irq_rt`: no interrupt IPC"));
    }
}
