//! QEMU: the command line that boots Tern, whether KVM may be used, and what QEMU's exit
//! status says about the guest.
//!
//! The guest ends a run through the `isa-debug-exit` device at port 0xf4: writing value `v`
//! makes QEMU exit with status `(v << 1) | 1`. Tern writes 0x10 (success), 0x11 (failure
//! reported by the guest) or 0x12 (kernel panic). With `-no-reboot`, a reset or triple fault
//! makes QEMU exit with status 0 (as does quitting from the monitor).

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// I/O port of the isa-debug-exit device.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// QEMU exit status when the guest reports success (value 0x10).
pub const EXIT_SUCCESS: i32 = (0x10 << 1) | 1;
/// QEMU exit status when the guest reports failure (value 0x11).
pub const EXIT_FAILURE: i32 = (0x11 << 1) | 1;
/// QEMU exit status when the kernel panics (value 0x12).
pub const EXIT_PANIC: i32 = (0x12 << 1) | 1;

/// How QEMU executes guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    /// Software emulation (TCG), `-cpu max`; works everywhere.
    Tcg,
    /// Hardware virtualization (KVM), `-cpu host`; only with a hardware-backed /dev/kvm.
    Kvm,
}

/// What the machine shows about KVM (the input of [`check_kvm`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvmProbe {
    /// `/dev/kvm` exists.
    pub dev_kvm: bool,
    /// `/sys/module/kvm_intel` exists.
    pub kvm_intel: bool,
    /// `/sys/module/kvm_amd` exists.
    pub kvm_amd: bool,
    /// `/sys/module/kvm_pvm` exists (paravirtualized KVM, which breaks bare-metal kernels).
    pub kvm_pvm: bool,
}

impl KvmProbe {
    /// Reads the probe from the file system under `root` (`/` on a real machine).
    pub fn read(root: &Path) -> Self {
        KvmProbe {
            dev_kvm: root.join("dev/kvm").exists(),
            kvm_intel: root.join("sys/module/kvm_intel").exists(),
            kvm_amd: root.join("sys/module/kvm_amd").exists(),
            kvm_pvm: root.join("sys/module/kvm_pvm").exists(),
        }
    }
}

/// Whether KVM is hardware-backed; `Err` says why not.
pub fn check_kvm(p: &KvmProbe) -> std::result::Result<(), String> {
    if !p.dev_kvm {
        return Err("/dev/kvm does not exist".into());
    }
    if p.kvm_pvm {
        return Err("/dev/kvm is provided by kvm_pvm (paravirtualized KVM), which breaks \
                    bare-metal kernels at `syscall`; use --accel tcg"
            .into());
    }
    if !(p.kvm_intel || p.kvm_amd) {
        return Err("neither kvm_intel nor kvm_amd is loaded, so /dev/kvm is not \
                    hardware-backed; use --accel tcg"
            .into());
    }
    Ok(())
}

/// Where the guest's serial port goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serial {
    /// `-serial mon:stdio`: the terminal, with the QEMU monitor on Ctrl-A c (for `run`).
    Interactive,
    /// `-serial stdio`: plain output to be captured (for `test`).
    Captured,
}

/// Everything that varies between QEMU invocations.
#[derive(Debug, Clone)]
pub struct Config {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Kernel command line; empty means no `-append`.
    pub cmdline: String,
    pub accel: Accel,
    /// Deterministic instruction counting (TCG only).
    pub icount: bool,
    /// Wait for gdb on :1234 before starting.
    pub gdb: bool,
    pub serial: Serial,
}

impl Config {
    /// Checks the combination of options.
    pub fn check(&self) -> Result<()> {
        if self.icount && self.accel == Accel::Kvm {
            bail!("--icount works only with --accel tcg");
        }
        Ok(())
    }

    /// The arguments of `qemu-system-x86_64` (without the program name).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        push(&["-machine", "q35", "-m", "512M", "-smp", "1", "-no-reboot", "-display", "none"]);
        let exit_device = format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04");
        push(&["-device", &exit_device]);
        match self.accel {
            Accel::Tcg => push(&["-accel", "tcg", "-cpu", "max"]),
            Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        }
        if self.icount {
            push(&["-icount", "shift=0,align=off,sleep=off"]);
        }
        if self.gdb {
            push(&["-s", "-S"]);
        }
        match self.serial {
            Serial::Interactive => push(&["-serial", "mon:stdio"]),
            Serial::Captured => push(&["-serial", "stdio", "-monitor", "none"]),
        }
        if !self.cmdline.is_empty() {
            push(&["-append", &self.cmdline]);
        }
        args.push("-kernel".into());
        args.push(self.kernel.clone().into_os_string());
        args.push("-initrd".into());
        args.push(self.initrd.clone().into_os_string());
        args
    }
}

/// How a QEMU run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestExit {
    /// The guest reported success (status 33).
    Success,
    /// The guest reported failure (status 35).
    Failure,
    /// The kernel panicked (status 37).
    Panic,
    /// Status 0: the guest reset or triple-faulted (with -no-reboot), or QEMU was quit.
    Reset,
    /// Any other status (QEMU itself failed, e.g. bad arguments).
    Other(i32),
    /// QEMU was killed by a signal.
    Killed,
    /// xtask stopped QEMU because the run took too long.
    TimedOut,
}

impl GuestExit {
    /// Classifies QEMU's exit status (`None`: ended by a signal).
    pub fn from_status(code: Option<i32>) -> Self {
        match code {
            Some(EXIT_SUCCESS) => GuestExit::Success,
            Some(EXIT_FAILURE) => GuestExit::Failure,
            Some(EXIT_PANIC) => GuestExit::Panic,
            Some(0) => GuestExit::Reset,
            Some(other) => GuestExit::Other(other),
            None => GuestExit::Killed,
        }
    }
}

impl fmt::Display for GuestExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestExit::Success => write!(f, "guest reported success (exit code {EXIT_SUCCESS})"),
            GuestExit::Failure => write!(f, "guest reported failure (exit code {EXIT_FAILURE})"),
            GuestExit::Panic => write!(f, "kernel panic (exit code {EXIT_PANIC})"),
            GuestExit::Reset => {
                f.write_str("guest reset or triple-faulted, or QEMU was quit (exit code 0)")
            }
            GuestExit::Other(code) => write!(f, "QEMU failed (exit code {code})"),
            GuestExit::Killed => f.write_str("QEMU was killed by a signal"),
            GuestExit::TimedOut => f.write_str("timed out (QEMU stopped)"),
        }
    }
}

/// A `qemu-system-x86_64` command for `config`.
pub fn command(config: &Config) -> Command {
    let mut cmd = Command::new(QEMU);
    cmd.args(config.args());
    cmd
}

/// The output of a captured run.
#[derive(Debug)]
pub struct Captured {
    pub exit: GuestExit,
    /// Everything the guest wrote to the serial port.
    pub serial: Vec<u8>,
    /// QEMU's own messages.
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs QEMU with `config` (serial must be [`Serial::Captured`]), capturing the serial
/// output; stops it after `timeout`.
pub fn run_captured(config: &Config, timeout: Duration) -> Result<Captured> {
    config.check()?;
    let started = Instant::now();
    let mut child = command(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {QEMU}"))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                // A read error only shortens the captured output.
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let exit = loop {
        if let Some(status) = child.try_wait()? {
            break GuestExit::from_status(status.code());
        }
        if started.elapsed() >= timeout {
            child.kill().context("cannot stop QEMU")?;
            child.wait()?;
            break GuestExit::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let serial = stdout.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    Ok(Captured { exit, serial, stderr, elapsed: started.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            kernel: "/t/tern".into(),
            initrd: "/t/run.cpio".into(),
            cmdline: String::new(),
            accel: Accel::Tcg,
            icount: false,
            gdb: false,
            serial: Serial::Captured,
        }
    }

    fn joined(cfg: &Config) -> String {
        cfg.args().iter().map(|a| a.to_str().unwrap()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn tcg_command_line() {
        assert_eq!(
            joined(&config()),
            "-machine q35 -m 512M -smp 1 -no-reboot -display none \
             -device isa-debug-exit,iobase=0xf4,iosize=0x04 -accel tcg -cpu max \
             -serial stdio -monitor none -kernel /t/tern -initrd /t/run.cpio"
        );
    }

    #[test]
    fn options_add_their_arguments() {
        let cfg = Config {
            accel: Accel::Kvm,
            gdb: true,
            cmdline: "tern.test=panic x=1".into(),
            serial: Serial::Interactive,
            ..config()
        };
        let args = cfg.args();
        let line = joined(&cfg);
        assert!(line.contains("-accel kvm -cpu host"));
        assert!(line.contains("-s -S"));
        assert!(line.contains("-serial mon:stdio"));
        assert!(!line.contains("-icount"));
        // The command line stays one argument.
        assert!(args.iter().any(|a| a == "tern.test=panic x=1"));
        let icount = Config { icount: true, ..config() };
        assert!(joined(&icount).contains("-icount shift=0,align=off,sleep=off"));
        assert!(icount.check().is_ok());
        assert!(Config { icount: true, accel: Accel::Kvm, ..config() }.check().is_err());
    }

    #[test]
    fn kvm_needs_hardware_backing() {
        let hw = KvmProbe { dev_kvm: true, kvm_intel: true, ..KvmProbe::default() };
        assert!(check_kvm(&hw).is_ok());
        assert!(check_kvm(&KvmProbe { kvm_intel: false, kvm_amd: true, ..hw }).is_ok());
        assert!(check_kvm(&KvmProbe::default()).unwrap_err().contains("/dev/kvm"));
        let pvm = KvmProbe { kvm_pvm: true, ..hw };
        assert!(check_kvm(&pvm).unwrap_err().contains("kvm_pvm"));
        let no_module = KvmProbe { dev_kvm: true, ..KvmProbe::default() };
        assert!(check_kvm(&no_module).unwrap_err().contains("hardware"));
    }

    #[test]
    fn kvm_probe_reads_a_file_tree() {
        let root = std::env::temp_dir().join(format!("xtask-kvm-probe-{}", std::process::id()));
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::create_dir_all(root.join("sys/module/kvm_amd")).unwrap();
        std::fs::create_dir_all(root.join("sys/module/kvm_pvm")).unwrap();
        std::fs::write(root.join("dev/kvm"), b"").unwrap();
        let probe = KvmProbe::read(&root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            probe,
            KvmProbe { dev_kvm: true, kvm_intel: false, kvm_amd: true, kvm_pvm: true }
        );
        assert!(check_kvm(&probe).is_err());
    }

    #[test]
    fn exit_statuses_are_classified() {
        assert_eq!(GuestExit::from_status(Some(33)), GuestExit::Success);
        assert_eq!(GuestExit::from_status(Some(35)), GuestExit::Failure);
        assert_eq!(GuestExit::from_status(Some(37)), GuestExit::Panic);
        assert_eq!(GuestExit::from_status(Some(0)), GuestExit::Reset);
        assert_eq!(GuestExit::from_status(Some(1)), GuestExit::Other(1));
        assert_eq!(GuestExit::from_status(None), GuestExit::Killed);
    }
}
