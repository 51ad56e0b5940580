//! `cargo xtask run`: build, pack the boot archive and boot Tern in QEMU interactively.
//!
//! The serial port is on this terminal (`-serial mon:stdio`; Ctrl-A x quits, Ctrl-A c is the
//! monitor). QEMU's output passes through a symbolizer line by line; a partial line (a
//! prompt) is shown as-is once output pauses, and its annotations follow when it completes.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::build;
use crate::image::{self, Overrides};
use crate::manifest::Manifest;
use crate::qemu::{self, Accel, GuestExit, KvmProbe, Serial};
use crate::symbolize::{Annotator, Symbolizer};
use crate::toolchain::{self, Need};
use crate::workspace::{Profile, Workspace};

/// How long output must pause before a partial line is shown.
const PARTIAL_LINE_DELAY: Duration = Duration::from_millis(100);

/// Options of `cargo xtask run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// CPU emulation: tcg (software, default) or kvm (hardware-backed KVM only; refused
    /// when /dev/kvm is missing or paravirtualized).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    pub accel: Accel,
    /// Count instructions deterministically (QEMU -icount shift=0,align=off,sleep=off; TCG only).
    #[arg(long)]
    pub icount: bool,
    /// Use the release build of the kernel and programs.
    #[arg(long)]
    pub release: bool,
    /// Start QEMU halted with a gdb server on :1234 (-s -S) and print the gdb command to attach.
    #[arg(long)]
    pub gdb: bool,
    /// Kernel command line (QEMU -append).
    #[arg(long, value_name = "STR", default_value = "")]
    pub cmdline: String,
    /// Put this x86-64 ELF64 executable in the archive as sigma0 instead of the manifest's.
    #[arg(long, value_name = "FILE")]
    pub sigma0: Option<PathBuf>,
    /// Put this x86-64 ELF64 executable in the archive as the root task instead of the manifest's.
    #[arg(long, value_name = "FILE")]
    pub root_task: Option<PathBuf>,
    /// Boot manifest to use: boot/<NAME>.toml.
    #[arg(long, value_name = "NAME", default_value = "run")]
    pub manifest: String,
    /// Give every user thread IOPL 3, as L4Ka::Pistachio does by default, so that
    /// unmodified Pistachio programs can drive the serial port directly (kernel option
    /// `tern.x2-compat-io`; off by default: ports are granted as I/O fpages).
    #[arg(long)]
    pub x2_compat_io: bool,
}

/// The kernel command line for `args`: `--cmdline` plus the options flags imply.
fn kernel_cmdline(args: &Args) -> String {
    let mut words: Vec<&str> = args.cmdline.split_whitespace().collect();
    if args.x2_compat_io {
        words.push("tern.x2-compat-io");
    }
    words.join(" ")
}

/// Runs `cargo xtask run`.
pub fn main(ws: &Workspace, args: Args) -> Result<ExitCode> {
    let manifest = Manifest::load(ws, &args.manifest)?;
    if args.accel == Accel::Kvm {
        if let Err(why) = qemu::check_kvm(&KvmProbe::read(Path::new("/"))) {
            bail!("refusing --accel kvm: {why}");
        }
    }
    let profile = Profile::from_release_flag(args.release);
    let cmdline = kernel_cmdline(&args);
    let overrides = Overrides { sigma0: args.sigma0, root_task: args.root_task };
    let config = qemu::Config {
        kernel: ws.kernel_elf(profile),
        initrd: ws.archive_dir().join(format!("{}.cpio", manifest.name)),
        cmdline,
        accel: args.accel,
        icount: args.icount,
        gdb: args.gdb,
        serial: Serial::Interactive,
    };
    config.check()?;
    let toolchain = toolchain::ensure(Need::Boot)?;
    build::build(ws, &toolchain, profile, [&manifest])?;
    let archive = image::build(ws, &manifest, profile, &overrides)?;
    println!("xtask: image: {} ({} programs)", archive.path.display(), archive.programs.len());
    let symbolizer = Symbolizer::for_boot(ws.root(), &config.kernel, &archive.programs);
    if args.gdb {
        println!(
            "xtask: QEMU waits for gdb; attach with:\n  {}",
            gdb_command(&config.kernel, &archive.programs)
        );
    }
    println!("xtask: qemu: {} (Ctrl-A x quits)", shell_words(&config));
    let exit = boot(&config, &symbolizer)?;
    println!("xtask: run: {exit}");
    Ok(match exit {
        GuestExit::Success | GuestExit::Reset => ExitCode::SUCCESS,
        GuestExit::Failure => ExitCode::from(1),
        GuestExit::Panic => ExitCode::from(2),
        GuestExit::Other(_) | GuestExit::Killed | GuestExit::TimedOut => ExitCode::from(3),
    })
}

/// The gdb command that attaches to QEMU's gdb server with every ELF's symbols.
pub fn gdb_command(kernel: &Path, programs: &[(String, PathBuf)]) -> String {
    let mut cmd = format!("gdb -ex 'target remote :1234' -ex 'symbol-file {}'", kernel.display());
    for (_, path) in programs {
        cmd.push_str(&format!(" -ex 'add-symbol-file {}'", path.display()));
    }
    cmd
}

/// The QEMU command line as one string, for display.
fn shell_words(config: &qemu::Config) -> String {
    let mut words = vec![qemu::QEMU.to_owned()];
    for arg in config.args() {
        let arg = arg.to_string_lossy().into_owned();
        let plain = !arg.is_empty()
            && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_=,.:/+@".contains(c));
        words.push(if plain { arg } else { format!("'{}'", arg.replace('\'', r"'\''")) });
    }
    words.join(" ")
}

/// Starts QEMU with the terminal as serial console and symbolizes its output until it exits.
fn boot(config: &qemu::Config, symbolizer: &Symbolizer) -> Result<GuestExit> {
    let mut child = qemu::command(config)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", qemu::QEMU))?;
    let Some(mut stdout) = child.stdout.take() else { bail!("QEMU's output is not piped") };
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let out = std::io::stdout();
    let mut printer = LivePrinter::new(symbolizer.annotator(), out.is_terminal());
    let mut out = out.lock();
    loop {
        match rx.recv_timeout(PARTIAL_LINE_DELAY) {
            Ok(chunk) => printer.push(&chunk, &mut out)?,
            Err(RecvTimeoutError::Timeout) => printer.show_partial(&mut out)?,
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    printer.finish(&mut out)?;
    drop(out);
    // The reader only ends at EOF or on a closed channel; it cannot panic.
    let _ = reader.join();
    let status = child.wait().context("waiting for QEMU")?;
    Ok(GuestExit::from_status(status.code()))
}

/// Prints serial output line by line with annotations.
///
/// # Invariants
/// `pending` holds the bytes of the current, incomplete line; its first `shown` bytes have
/// already been printed raw.
struct LivePrinter<'a> {
    annotator: Annotator<'a>,
    /// Terminal in raw mode (QEMU's stdio): end lines with "\r\n".
    terminal: bool,
    pending: Vec<u8>,
    shown: usize,
}

impl<'a> LivePrinter<'a> {
    fn new(annotator: Annotator<'a>, terminal: bool) -> Self {
        LivePrinter { annotator, terminal, pending: Vec::new(), shown: 0 }
    }

    /// Adds output; prints every line it completes.
    fn push(&mut self, chunk: &[u8], out: &mut impl Write) -> Result<()> {
        self.pending.extend_from_slice(chunk);
        while let Some(newline) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=newline).collect();
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            self.print_line(body, out)?;
            self.shown = 0;
        }
        out.flush()?;
        Ok(())
    }

    fn print_line(&mut self, body: &[u8], out: &mut impl Write) -> Result<()> {
        let text = String::from_utf8_lossy(body);
        if self.shown == 0 {
            out.write_all(self.annotator.annotate(&text).as_bytes())?;
        } else {
            // The start is on screen already: finish it raw, then add the annotations.
            out.write_all(body.get(self.shown..).unwrap_or_default())?;
            for (_, note) in self.annotator.annotations(&text) {
                out.write_all(note.as_bytes())?;
            }
        }
        out.write_all(if self.terminal { b"\r\n" } else { b"\n" })?;
        Ok(())
    }

    /// Output paused: show what there is of the current line.
    fn show_partial(&mut self, out: &mut impl Write) -> Result<()> {
        if self.pending.len() > self.shown {
            out.write_all(&self.pending[self.shown..])?;
            self.shown = self.pending.len();
            out.flush()?;
        }
        Ok(())
    }

    /// Output ended: print the last, unterminated line.
    fn finish(&mut self, out: &mut impl Write) -> Result<()> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.print_line(&line, out)?;
            self.shown = 0;
        }
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::symbolize::{AddrKind, Describe};

    struct Fake;

    impl Describe for Fake {
        fn describe(&self, addr: u64, _kind: AddrKind) -> Option<String> {
            (addr == 0x1000).then(|| "f+0x0".to_owned())
        }
    }

    #[test]
    fn gdb_command_names_every_elf() {
        let programs = vec![
            ("sigma0".to_owned(), PathBuf::from("/t/s0")),
            ("roottask".into(), "/t/rt".into()),
        ];
        assert_eq!(
            gdb_command(Path::new("/t/tern"), &programs),
            "gdb -ex 'target remote :1234' -ex 'symbol-file /t/tern' \
             -ex 'add-symbol-file /t/s0' -ex 'add-symbol-file /t/rt'"
        );
    }

    #[test]
    fn live_printer_annotates_lines_and_shows_partials() {
        let symbolizer = Symbolizer::new(Some(Box::new(Fake)), BTreeMap::new());
        let mut printer = LivePrinter::new(symbolizer.annotator(), true);
        let mut out = Vec::new();
        printer.push(b"at 0x10", &mut out).unwrap();
        assert!(out.is_empty());
        printer.push(b"00 x\r\nprompt> ", &mut out).unwrap();
        assert_eq!(out, b"at 0x1000 <f+0x0> x\r\n");
        printer.show_partial(&mut out).unwrap();
        assert_eq!(out, b"at 0x1000 <f+0x0> x\r\nprompt> ");
        printer.push(b"go 0x1000\n", &mut out).unwrap();
        assert_eq!(out, b"at 0x1000 <f+0x0> x\r\nprompt> go 0x1000 <f+0x0>\r\n");
        printer.push(b"tail", &mut out).unwrap();
        printer.finish(&mut out).unwrap();
        assert!(out.ends_with(b"tail\r\n"));
    }

    #[test]
    fn displayed_command_is_quoted() {
        let config = qemu::Config {
            kernel: "/t/tern".into(),
            initrd: "/t/run.cpio".into(),
            cmdline: "a b".into(),
            accel: Accel::Tcg,
            icount: false,
            gdb: false,
            serial: Serial::Interactive,
        };
        let shown = shell_words(&config);
        assert!(shown.starts_with("qemu-system-x86_64 -machine q35"));
        assert!(shown.contains("-append 'a b'"));
    }

    #[test]
    fn compat_io_flag_adds_the_kernel_option() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: Args,
        }
        let cli = Cli::parse_from(["x", "--cmdline", "kmem=64M", "--x2-compat-io"]);
        assert_eq!(kernel_cmdline(&cli.run), "kmem=64M tern.x2-compat-io");
        let cli = Cli::parse_from(["x"]);
        assert_eq!(kernel_cmdline(&cli.run), "");
    }
}
