//! `cargo xtask test`: host unit tests, then every boot scenario of `boot/test.toml`.
//!
//! ```text
//!   host   cargo test --no-fail-fast -p abi -p bootfmt -p mapdb -p xtask
//!          (output streamed; the `test result:` lines are summed)
//!   guest  target build (kernel variants for scenarios with `features` first), boot
//!          archive (a scenario's own when it names a root task, `args` for it or its
//!          own modules), then
//!          per scenario: QEMU (TCG) with a timeout, serial captured to
//!          target/test-logs/<scenario>.log and .sym.log, judged by
//!          log::judge_suite / log::judge_panic
//!   cache  boot/cache.toml (user/cacheloop) under tools/cacheplugin: loops with known
//!          line counts must be reported as such (cache::guest_test; not with --scenario)
//! ```
//!
//! Every part yields a [`Tally`]; a part that cannot run at all (build failure, QEMU
//! missing) counts as one failed check, so the closing `N passed, M failed` line is always
//! printed. The process exits non-zero when anything failed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::build;
use crate::fuzz;
use crate::image::{self, Overrides};
use crate::log::{judge_panic, judge_suite, Verdict};
use crate::manifest::{Expect, Manifest, Scenario};
use crate::qemu::{self, Accel, Serial};
use crate::summary::{self, Tally};
use crate::symbolize::Symbolizer;
use crate::toolchain::{self, Need};
use crate::workspace::{Profile, Workspace};

/// The host crates whose unit tests `test` runs.
pub const HOST_PACKAGES: [&str; 8] =
    ["abi", "bootfmt", "mapdb", "xtask", "drvkit", "tern-bench-linux", "cachemodel", "tern-cacheplugin"];

/// The manifest whose scenarios `test` boots.
pub const TEST_MANIFEST: &str = "test";

/// How many log lines a failure report shows.
const REPORT_TAIL_LINES: usize = 40;

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Build and boot the release build of the kernel and programs.
    #[arg(long)]
    pub release: bool,
    /// Only boot the scenarios; skip the host unit tests.
    #[arg(long, conflicts_with = "host_only")]
    pub guest_only: bool,
    /// Only run the host unit tests; skip building and booting.
    #[arg(long)]
    pub host_only: bool,
    /// Seconds each scenario may run before it counts as a hang.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub timeout: u64,
    /// Boot only the named scenario (repeatable); default: every scenario.
    #[arg(long, value_name = "NAME")]
    pub scenario: Vec<String>,
}

/// Runs `cargo xtask test`.
pub fn main(ws: &Workspace, args: Args) -> Result<ExitCode> {
    let mut parts: Vec<(&str, Tally)> = Vec::new();
    if !args.guest_only {
        let host = host(ws).unwrap_or_else(|err| {
            println!("host: FAILED: {err:#}");
            Tally { passed: 0, failed: 1 }
        });
        parts.push(("host", host));
    }
    if !args.host_only {
        let guest = guest(ws, &args).unwrap_or_else(|err| {
            println!("guest: FAILED: {err:#}");
            Tally { passed: 0, failed: 1 }
        });
        parts.push(("guest", guest));
    }
    // The cache-footprint plugin's guest check (boot/cache.toml, user/cacheloop under
    // tools/cacheplugin; see cache::guest_test). Skipped when scenarios are selected.
    if !args.host_only && args.scenario.is_empty() {
        let profile = Profile::from_release_flag(args.release);
        let cache = crate::cache::guest_test(ws, profile, Duration::from_secs(args.timeout)).unwrap_or_else(|err| {
            println!("cache: FAILED: {err:#}");
            Tally { passed: 0, failed: 1 }
        });
        parts.push(("cache", cache));
    }
    let mut total = Tally::default();
    println!();
    for (name, tally) in &parts {
        println!("{name}: {tally}");
        total += *tally;
    }
    println!("{total}");
    Ok(if total.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Host unit tests with the host toolchain; output streamed, result lines summed.
fn host(ws: &Workspace) -> Result<Tally> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // --no-fail-fast: a failing crate must not hide the results of the others.
    cmd.current_dir(ws.root()).args(["test", "--no-fail-fast"]);
    for package in HOST_PACKAGES {
        cmd.args(["-p", package]);
    }
    println!("xtask: host tests: cargo test --no-fail-fast -p {}", HOST_PACKAGES.join(" -p "));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start cargo test")?;
    let mut tally = Tally::default();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading cargo test output")?;
            println!("{line}");
            tally += summary::parse_test_result(&line).unwrap_or_default();
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() && tally.ok() {
        println!("host: FAILED: cargo test exited with {status} without a failed test");
        tally.failed += 1;
    }
    Ok(tally)
}

/// Builds, packs and boots every selected scenario; returns the summed checks.
fn guest(ws: &Workspace, args: &Args) -> Result<Tally> {
    let manifest = Manifest::load(ws, TEST_MANIFEST)?;
    let scenarios = select(&manifest.scenarios, &args.scenario)?;
    let profile = Profile::from_release_flag(args.release);
    let toolchain = toolchain::ensure(Need::Boot)?;
    // Kernel variants first: the plain build below links the plain kernel again.
    let mut variants: BTreeMap<Vec<String>, PathBuf> = BTreeMap::new();
    for scenario in &scenarios {
        if !scenario.features.is_empty() && !variants.contains_key(&scenario.features) {
            let path = fuzz::build_kernel_variant(ws, &toolchain, profile, &scenario.features)?;
            variants.insert(scenario.features.clone(), path);
        }
    }
    build::build(ws, &toolchain, profile, [&manifest])?;
    let archive = image::build(ws, &manifest, profile, &Overrides::default())?;
    let plain_kernel = ws.kernel_elf(profile);
    let symbolizer = Symbolizer::for_boot(ws.root(), &plain_kernel, &archive.programs);
    let log_dir = ws.test_log_dir();
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create {}", log_dir.display()))?;
    let timeout = Duration::from_secs(args.timeout);
    let mut total = Tally::default();
    for scenario in scenarios {
        println!("xtask: scenario {} (expect {})", scenario.name, scenario.expect);
        let kernel = variants.get(&scenario.features).unwrap_or(&plain_kernel).clone();
        // A scenario may boot another root task, or give it arguments, or list its own
        // modules, or boot another kernel: its own archive and symbols.
        let own = if scenario.needs_own_archive() {
            let variant = manifest.for_scenario(scenario);
            let package = scenario.roottask.as_deref().unwrap_or(&manifest.roottask.package);
            let mut root = ws.elf(profile, package);
            if let Some(args) = &scenario.args {
                let patched = ws.archive_dir().join(format!("{}-roottask.elf", variant.name));
                std::fs::create_dir_all(ws.archive_dir())?;
                fuzz::write_with_args(&root, &patched, args)?;
                root = patched;
            }
            let overrides = Overrides { sigma0: None, root_task: Some(root) };
            let a = image::build(ws, &variant, profile, &overrides)?;
            let sym = Symbolizer::for_boot(ws.root(), &kernel, &a.programs);
            Some((a, sym))
        } else {
            None
        };
        let (archive_path, symbolizer) = match &own {
            Some((a, sym)) => (&a.path, sym),
            None => (&archive.path, &symbolizer),
        };
        let boot = Boot { kernel: &kernel, archive: archive_path, symbolizer };
        let verdict = run_scenario(&boot, scenario, &log_dir, timeout).unwrap_or_else(|err| {
            let failure = format!("cannot run the scenario: {err:#}");
            println!("guest: {}: FAILED: {failure}", scenario.name);
            Verdict { passed: 0, failed: 1, failures: vec![failure] }
        });
        total += Tally { passed: verdict.passed, failed: verdict.failed };
    }
    Ok(total)
}

/// What every scenario boots.
struct Boot<'a> {
    kernel: &'a Path,
    archive: &'a Path,
    symbolizer: &'a Symbolizer,
}

/// Boots one scenario, keeps its logs, prints its result (and a report when it failed).
fn run_scenario(
    boot: &Boot<'_>,
    scenario: &Scenario,
    log_dir: &Path,
    timeout: Duration,
) -> Result<Verdict> {
    let config = qemu::Config {
        kernel: boot.kernel.to_owned(),
        initrd: boot.archive.to_owned(),
        cmdline: scenario.cmdline.clone(),
        accel: Accel::Tcg,
        icount: false,
        gdb: false,
        serial: Serial::Captured,
    };
    let run = qemu::run_captured(&config, timeout)?;
    let raw = String::from_utf8_lossy(&run.serial).into_owned();
    let symbolized = boot.symbolizer.annotate_text(&raw);
    let log_path = log_dir.join(format!("{}.log", scenario.name));
    let sym_path = log_dir.join(format!("{}.sym.log", scenario.name));
    std::fs::write(&log_path, &run.serial)
        .with_context(|| format!("cannot write {}", log_path.display()))?;
    std::fs::write(&sym_path, &symbolized)
        .with_context(|| format!("cannot write {}", sym_path.display()))?;
    let verdict = judge(scenario, &raw, &symbolized, run.exit);
    println!(
        "guest: {}: {} passed, {} failed ({:.1} s; {})",
        scenario.name,
        verdict.passed,
        verdict.failed,
        run.elapsed.as_secs_f64(),
        run.exit
    );
    if verdict.failed > 0 {
        report_failure(&verdict, &log_path, &symbolized, &run.stderr);
    }
    Ok(verdict)
}

/// The scenarios named in `wanted` (all when empty); unknown names are errors.
fn select<'m>(all: &'m [Scenario], wanted: &[String]) -> Result<Vec<&'m Scenario>> {
    if all.is_empty() {
        anyhow::bail!("boot/{TEST_MANIFEST}.toml has no [[scenario]]");
    }
    if wanted.is_empty() {
        return Ok(all.iter().collect());
    }
    wanted
        .iter()
        .map(|name| {
            all.iter().find(|s| &s.name == name).with_context(|| {
                let names: Vec<_> = all.iter().map(|s| s.name.as_str()).collect();
                format!("no scenario {name:?} (have: {})", names.join(", "))
            })
        })
        .collect()
}

/// Judges one scenario's log and exit.
/// Required texts are looked for in the symbolized log, so they may name functions.
fn judge(scenario: &Scenario, log: &str, symbolized: &str, exit: qemu::GuestExit) -> Verdict {
    let mut verdict = match &scenario.expect {
        Expect::Suite => judge_suite(log, exit),
        Expect::Panic { containing } => judge_panic(log, exit, containing.as_deref()),
    };
    judge_required(&scenario.require, symbolized, &mut verdict);
    verdict
}

/// Each required text is one check: it must appear in the log after the previous one.
fn judge_required(required: &[String], log: &str, verdict: &mut Verdict) {
    let mut from = 0;
    for text in required {
        match log[from..].find(text.as_str()) {
            Some(at) => {
                verdict.passed += 1;
                from += at + text.len();
            }
            None => {
                verdict.failed += 1;
                verdict
                    .failures
                    .push(format!("the log lacks {text:?} (after the previous required text)"));
            }
        }
    }
}

/// Prints the failed checks, where the log is, and the end of the symbolized log.
fn report_failure(verdict: &Verdict, log_path: &Path, symbolized: &str, qemu_stderr: &str) {
    for failure in &verdict.failures {
        println!("  FAILED: {failure}");
    }
    println!("  log: {} (symbolized: .sym.log)", log_path.display());
    if !qemu_stderr.trim().is_empty() {
        println!("  QEMU said:");
        for line in qemu_stderr.lines() {
            println!("  | {line}");
        }
    }
    println!("  last {REPORT_TAIL_LINES} lines:");
    for line in tail(symbolized, REPORT_TAIL_LINES) {
        println!("  | {line}");
    }
}

/// The last `n` lines of `text` (without `\r`).
fn tail(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenarios() -> Vec<Scenario> {
        ["suite", "panic"]
            .map(|name| Scenario {
                name: name.into(),
                cmdline: String::new(),
                expect: Expect::Suite,
                require: Vec::new(),
                roottask: None,
                args: None,
                features: Vec::new(),
                modules: None,
            })
            .into()
    }

    #[test]
    fn scenarios_are_selected_by_name() {
        let all = scenarios();
        assert_eq!(select(&all, &[]).unwrap().len(), 2);
        let picked = select(&all, &["panic".to_owned()]).unwrap();
        assert_eq!(picked[0].name, "panic");
        let err = select(&all, &["nope".to_owned()]).unwrap_err().to_string();
        assert!(err.contains("have: suite, panic"), "{err}");
        assert!(select(&[], &[]).is_err());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\r\nb\nc\n", 2), ["b", "c"]);
        assert_eq!(tail("a\n", 5), ["a"]);
        assert!(tail("", 3).is_empty());
    }

    #[test]
    fn judging_follows_the_expectation() {
        let panic = Scenario {
            name: "p".into(),
            cmdline: String::new(),
            expect: Expect::Panic { containing: Some("overflow".into()) },
            require: Vec::new(),
            roottask: None,
            args: None,
            features: Vec::new(),
            modules: None,
        };
        let log = "KERNEL PANIC: kernel stack overflow\n";
        assert_eq!(judge(&panic, log, log, qemu::GuestExit::Panic).passed, 1);
        assert_eq!(judge(&scenarios()[0], log, log, qemu::GuestExit::Panic).failed, 1);
    }

    #[test]
    fn required_texts_must_appear_in_order() {
        let mut v = Verdict::default();
        judge_required(&["a".into(), "b".into()], "x a y b", &mut v);
        assert_eq!((v.passed, v.failed), (2, 0));
        let mut v = Verdict::default();
        judge_required(&["b".into(), "a".into()], "x a y b", &mut v);
        assert_eq!((v.passed, v.failed), (1, 1));
    }
}
