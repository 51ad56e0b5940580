//! The tools the target build and the boot need, and what to install when one is missing.
//!
//! The bare-metal build needs a Rust toolchain that can build `core` from source
//! (`-Zbuild-std`): either Debian's `cargo-web`/`rustc-web` with `rust-web-src`, or a rustup
//! nightly whose sysroot has `lib/rustlib/src/rust/library`. Linking needs `ld.lld`; booting
//! needs `qemu-system-x86_64`.
//!
//! The decision is a pure function ([`assess`]) of what exists ([`Presence`]), so the
//! "missing" logic is unit-tested without uninstalling anything; [`ensure`] probes the machine,
//! installs the missing Debian packages when running as root, and otherwise prints the command.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Debian's cargo for the target build.
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
/// Debian's rustc for the target build.
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
/// The library sources Debian's `rust-web-src` installs (needed by `-Zbuild-std`).
const DEBIAN_RUST_SRC: &str = "/usr/lib/rustlib/src/rust/library";

/// What a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Building the target programs: Rust with library sources, and `ld.lld`.
    Build,
    /// Building and booting: also `qemu-system-x86_64`.
    Boot,
}

/// Which tools exist on this machine (the input of [`assess`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    /// `/usr/bin/cargo` exists.
    pub debian_cargo: bool,
    /// `/usr/bin/rustc` exists.
    pub debian_rustc: bool,
    /// `/usr/lib/rustlib/src/rust/library` exists.
    pub debian_rust_src: bool,
    /// A rustup `nightly` toolchain exists and its sysroot has the library sources.
    pub nightly_with_src: bool,
    /// `ld.lld` is on `PATH`.
    pub ld_lld: bool,
    /// `qemu-system-x86_64` is on `PATH`.
    pub qemu: bool,
}

/// The Rust toolchain used for the target build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rust {
    /// Debian's `/usr/bin/cargo` and `/usr/bin/rustc` with `RUSTC_BOOTSTRAP=1`.
    Debian,
    /// `cargo +nightly` from rustup.
    RustupNightly,
}

/// What is missing, as Debian package names and as human-readable items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// Debian packages to install, in a stable order.
    pub packages: Vec<&'static str>,
    /// What each missing item is, for the message.
    pub items: Vec<&'static str>,
}

impl Missing {
    /// The install command, as run by root (without `sudo`).
    pub fn install_args(&self) -> Vec<&'static str> {
        let mut args = vec!["install", "-y"];
        args.extend(self.packages.iter().copied());
        args
    }

    /// The exact commands a non-root user should run.
    pub fn sudo_command(&self) -> String {
        format!(
            "sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get {}",
            self.install_args().join(" ")
        )
    }
}

/// Decides which Rust toolchain to use, or what is missing for `need`.
///
/// Debian's toolchain is preferred when complete; otherwise a rustup nightly with sources is
/// used. When neither is complete, the missing Debian packages are named (the rustup route
/// cannot be installed here: there is no network for rustup).
pub fn assess(p: &Presence, need: Need) -> std::result::Result<Rust, Missing> {
    let mut missing = Missing { packages: Vec::new(), items: Vec::new() };
    let debian_complete = p.debian_cargo && p.debian_rustc && p.debian_rust_src;
    let rust = if debian_complete {
        Some(Rust::Debian)
    } else if p.nightly_with_src {
        Some(Rust::RustupNightly)
    } else {
        if !p.debian_rustc {
            missing.packages.push("rustc-web");
            missing.items.push("Debian's rustc (/usr/bin/rustc)");
        }
        if !p.debian_cargo {
            missing.packages.push("cargo-web");
            missing.items.push("Debian's cargo (/usr/bin/cargo)");
        }
        if !p.debian_rust_src {
            missing.packages.push("rust-web-src");
            missing.items.push("Rust library sources (/usr/lib/rustlib/src/rust/library)");
        }
        None
    };
    if !p.ld_lld {
        missing.packages.push("lld");
        missing.items.push("the LLVM linker (ld.lld)");
    }
    if need == Need::Boot && !p.qemu {
        missing.packages.push("qemu-system-x86");
        missing.items.push("QEMU (qemu-system-x86_64)");
    }
    match rust {
        Some(rust) if missing.packages.is_empty() => Ok(rust),
        _ => Err(missing),
    }
}

/// The user id from the text of `/proc/self/status` (the real uid of its `Uid:` line).
pub fn uid_from_proc_status(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
}

/// Whether `rustup toolchain list` output names a nightly toolchain.
pub fn lists_nightly(toolchain_list: &str) -> bool {
    toolchain_list.lines().any(|line| line.trim_start().starts_with("nightly"))
}

/// The chosen toolchain, ready to make cargo commands for the target build.
#[derive(Debug, Clone, Copy)]
pub struct Toolchain {
    rust: Rust,
}

impl Toolchain {
    /// A cargo command for the target build, with the toolchain's environment set and every
    /// inherited variable that would change the build removed.
    pub fn cargo(&self) -> Command {
        let mut cmd = match self.rust {
            Rust::Debian => {
                let mut cmd = Command::new(DEBIAN_CARGO);
                cmd.env("RUSTC", DEBIAN_RUSTC).env("RUSTC_BOOTSTRAP", "1");
                cmd
            }
            Rust::RustupNightly => {
                let mut cmd = Command::new("cargo");
                cmd.arg("+nightly").env_remove("RUSTC").env_remove("RUSTC_BOOTSTRAP");
                cmd
            }
        };
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET_DIR",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTUP_TOOLCHAIN",
            "CARGO_TARGET_X86_64_UNKNOWN_NONE_RUSTFLAGS",
            "CARGO_TARGET_X86_64_UNKNOWN_NONE_LINKER",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Which Rust toolchain this is.
    pub fn rust(&self) -> Rust {
        self.rust
    }
}

/// Probes the machine, installs what is missing (as root) or explains how to (otherwise).
pub fn ensure(need: Need) -> Result<Toolchain> {
    let presence = probe();
    let missing = match assess(&presence, need) {
        Ok(rust) => return Ok(Toolchain { rust }),
        Err(missing) => missing,
    };
    eprintln!("xtask: missing: {}", missing.items.join(", "));
    if !is_root() {
        eprintln!("xtask: install them with:\n  {}", missing.sudo_command());
        bail!("required tools are missing");
    }
    eprintln!("xtask: installing {} with apt-get", missing.packages.join(" "));
    run_streaming(Command::new("apt-get").arg("update"))?;
    run_streaming(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(missing.install_args()),
    )?;
    match assess(&probe(), need) {
        Ok(rust) => Ok(Toolchain { rust }),
        Err(still) => bail!("still missing after apt-get install: {}", still.items.join(", ")),
    }
}

/// Runs `cmd` with its output going straight to ours; fails unless it succeeds.
fn run_streaming(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed: {status}", cmd.get_program());
    }
    Ok(())
}

/// Installs Debian `packages` (as root: apt-get update, then install), or fails with the
/// command to run (otherwise). Used for what only one command needs (the plot's font).
pub fn install_packages(packages: &[&'static str]) -> Result<()> {
    let missing = Missing { packages: packages.to_vec(), items: Vec::new() };
    if !is_root() {
        bail!("install {} with:\n  {}", packages.join(" "), missing.sudo_command());
    }
    eprintln!("xtask: installing {} with apt-get", packages.join(" "));
    run_streaming(Command::new("apt-get").arg("update"))?;
    run_streaming(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(missing.install_args()),
    )
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| uid_from_proc_status(&status))
        == Some(0)
}

/// Looks at the file system and `PATH` to fill in a [`Presence`].
pub fn probe() -> Presence {
    let mut p = Presence {
        debian_cargo: Path::new(DEBIAN_CARGO).is_file(),
        debian_rustc: Path::new(DEBIAN_RUSTC).is_file(),
        debian_rust_src: Path::new(DEBIAN_RUST_SRC).is_dir(),
        nightly_with_src: false,
        ld_lld: find_in_path("ld.lld").is_some(),
        qemu: find_in_path(crate::qemu::QEMU).is_some(),
    };
    if !(p.debian_cargo && p.debian_rustc && p.debian_rust_src) {
        p.nightly_with_src = nightly_has_src();
    }
    p
}

/// Whether rustup has a nightly toolchain whose sysroot has the library sources.
fn nightly_has_src() -> bool {
    let listed = Command::new("rustup")
        .args(["toolchain", "list"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .is_some_and(|out| lists_nightly(&String::from_utf8_lossy(&out.stdout)));
    if !listed {
        return false;
    }
    Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .is_some_and(|out| {
            let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            Path::new(&sysroot).join("lib/rustlib/src/rust/library").is_dir()
        })
}

/// The first executable file called `name` in a directory of `PATH`.
pub fn find_in_path(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name.as_ref()))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everything() -> Presence {
        Presence {
            debian_cargo: true,
            debian_rustc: true,
            debian_rust_src: true,
            nightly_with_src: false,
            ld_lld: true,
            qemu: true,
        }
    }

    #[test]
    fn complete_debian_toolchain_is_chosen() {
        assert_eq!(assess(&everything(), Need::Boot), Ok(Rust::Debian));
        let with_nightly = Presence { nightly_with_src: true, ..everything() };
        assert_eq!(assess(&with_nightly, Need::Boot), Ok(Rust::Debian));
    }

    #[test]
    fn nightly_replaces_incomplete_debian_toolchain() {
        let p = Presence { debian_rust_src: false, nightly_with_src: true, ..everything() };
        assert_eq!(assess(&p, Need::Boot), Ok(Rust::RustupNightly));
    }

    #[test]
    fn missing_debian_parts_are_named() {
        let p = Presence { debian_rust_src: false, debian_cargo: false, ..everything() };
        let missing = assess(&p, Need::Build).unwrap_err();
        assert_eq!(missing.packages, ["cargo-web", "rust-web-src"]);
        assert_eq!(missing.items.len(), 2);
    }

    #[test]
    fn qemu_is_needed_only_for_booting() {
        let p = Presence { qemu: false, ..everything() };
        assert_eq!(assess(&p, Need::Build), Ok(Rust::Debian));
        let missing = assess(&p, Need::Boot).unwrap_err();
        assert_eq!(missing.packages, ["qemu-system-x86"]);
    }

    #[test]
    fn nothing_installed_names_every_package() {
        let missing = assess(&Presence::default(), Need::Boot).unwrap_err();
        assert_eq!(
            missing.packages,
            ["rustc-web", "cargo-web", "rust-web-src", "lld", "qemu-system-x86"]
        );
        assert_eq!(
            missing.sudo_command(),
            "sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y \
             rustc-web cargo-web rust-web-src lld qemu-system-x86"
        );
    }

    #[test]
    fn linker_is_needed_even_with_nightly() {
        let p = Presence { ld_lld: false, nightly_with_src: true, ..Presence::default() };
        assert_eq!(assess(&p, Need::Build).unwrap_err().packages, ["lld"]);
    }

    #[test]
    fn uid_is_read_from_proc_status() {
        let status = "Name:\tcat\nUmask:\t0022\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\n";
        assert_eq!(uid_from_proc_status(status), Some(1000));
        assert_eq!(uid_from_proc_status("Uid:\t0\t0\t0\t0\n"), Some(0));
        assert_eq!(uid_from_proc_status("Name: x\n"), None);
        assert_eq!(uid_from_proc_status("Uid:\tabc\n"), None);
    }

    #[test]
    fn nightly_is_found_in_toolchain_list() {
        assert!(lists_nightly(
            "stable-x86_64-unknown-linux-gnu (default)\nnightly-x86_64-unknown-linux-gnu\n"
        ));
        assert!(!lists_nightly("stable-x86_64-unknown-linux-gnu (default)\n"));
    }
}
