//! The Linux side of `cargo xtask bench --compare linux`: Debian's stock kernel and a tiny
//! initramfs whose `/init` is the static benchmark of `bench/linux`.
//!
//! ```text
//!   apt-cache depends linux-image-amd64      -> linux-image-<version>-amd64
//!   apt-get download <that package>          (once; kept as target/bench/linux/<package>/boot/vmlinuz-*)
//!   dpkg-deb --fsys-tarfile <deb> | tar -x ./boot/vmlinuz-*
//!   cargo build --release -p tern-bench-linux --target x86_64-unknown-linux-gnu
//!         (RUSTFLAGS=-C target-feature=+crt-static, target dir target/bench/linux-build;
//!          for `--cache` also linked at fixed addresses in target/bench/linux-build-fixed)
//!   initramfs.cpio (newc): dev/, dev/console, dev/null, init (mode 0755, the benchmark)
//! ```
//!
//! The benchmark prints `TERN-BENCH` lines like the Tern program and powers off with
//! reboot(2) (QEMU runs with `-no-reboot`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::workspace::Workspace;

/// The Debian meta-package whose dependency names the current kernel package.
pub const KERNEL_META_PACKAGE: &str = "linux-image-amd64";

/// The cargo package of the Linux benchmark.
pub const BENCH_PACKAGE: &str = "tern-bench-linux";

/// The host target the benchmark is built for.
pub const HOST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The kernel command line: serial console, our init, a panic ends the run (reboot, which
/// `-no-reboot` turns into QEMU exiting); no address randomization (kernel and processes),
/// so that boots execute the same instructions as far as Linux allows.
pub const CMDLINE: &str = "console=ttyS0 rdinit=/init panic=-1 quiet nokaslr norandmaps";

/// What booting Linux needs.
#[derive(Debug, Clone)]
pub struct LinuxBoot {
    /// The bzImage.
    pub kernel: PathBuf,
    /// The initramfs (cpio newc).
    pub initramfs: PathBuf,
    /// The Debian package the kernel came from.
    pub package: String,
}

/// How the benchmark executable is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Static PIE (the host default with crt-static): the timing benchmark.
    Pie,
    /// Static at fixed addresses (`-C relocation-model=static`), so that its symbols'
    /// addresses are the addresses it runs at (for `bench --cache`, which needs the
    /// address of the ping-pong loop).
    Fixed,
}

impl Link {
    fn rustflags(self) -> &'static str {
        match self {
            Link::Pie => "-C target-feature=+crt-static",
            Link::Fixed => "-C target-feature=+crt-static -C relocation-model=static",
        }
    }

    /// The cargo target dir and the initramfs name.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Link::Pie => ("linux-build", "initramfs.cpio"),
            Link::Fixed => ("linux-build-fixed", "initramfs-fixed.cpio"),
        }
    }
}

/// Fetches the kernel (once), builds the benchmark and writes the initramfs.
pub fn prepare(ws: &Workspace) -> Result<LinuxBoot> {
    prepare_linked(ws, Link::Pie).map(|(boot, _)| boot)
}

/// [`prepare`] with the benchmark linked as `link` says; also returns the benchmark's
/// executable.
pub fn prepare_linked(ws: &Workspace, link: Link) -> Result<(LinuxBoot, PathBuf)> {
    let dir = ws.root().join("target").join("bench").join("linux");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let package = current_kernel_package()?;
    let kernel = fetch_kernel(&dir, &package)?;
    let init = build_bench(ws, link)?;
    let init_bytes =
        std::fs::read(&init).with_context(|| format!("cannot read {}", init.display()))?;
    check_static(&init_bytes).with_context(|| format!("{} cannot be /init", init.display()))?;
    // The kernel opens /dev/console for init, and Rust's runtime needs /dev/null when a
    // standard descriptor is closed: both nodes come with the archive.
    let archive = newc(&[
        NewcEntry { name: "dev", mode: 0o040_755, rdev: (0, 0), data: &[] },
        NewcEntry { name: "dev/console", mode: 0o020_600, rdev: (5, 1), data: &[] },
        NewcEntry { name: "dev/null", mode: 0o020_666, rdev: (1, 3), data: &[] },
        NewcEntry { name: "init", mode: 0o100_755, rdev: (0, 0), data: &init_bytes },
    ])?;
    let initramfs = dir.join(link.names().1);
    std::fs::write(&initramfs, archive)
        .with_context(|| format!("cannot write {}", initramfs.display()))?;
    Ok((LinuxBoot { kernel, initramfs, package }, init))
}

/// The kernel package `apt-cache depends linux-image-amd64` names (after `apt-get update`
/// if the package lists are empty and we may update them).
fn current_kernel_package() -> Result<String> {
    let query = || -> Result<Option<String>> {
        let out = Command::new("apt-cache")
            .args(["depends", KERNEL_META_PACKAGE])
            .stdin(Stdio::null())
            .output()
            .context("cannot run apt-cache (is this Debian?)")?;
        Ok(kernel_package(&String::from_utf8_lossy(&out.stdout)).map(str::to_owned))
    };
    if let Some(p) = query()? {
        return Ok(p);
    }
    if !crate::toolchain::is_root() {
        bail!("apt-cache knows no {KERNEL_META_PACKAGE}; run `sudo apt-get update` first");
    }
    println!("xtask: bench: apt-get update (the package lists are empty)");
    run(Command::new("apt-get").arg("update"), "apt-get update")?;
    query()?.with_context(|| format!("apt-cache depends {KERNEL_META_PACKAGE} names no kernel package"))
}

/// The first `Depends: linux-image-…` in `apt-cache depends` output.
pub fn kernel_package(depends_output: &str) -> Option<&str> {
    depends_output.lines().find_map(|line| {
        let dep = line.trim().strip_prefix("Depends:")?.trim();
        let valid = dep.starts_with("linux-image-")
            && dep.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.+".contains(&b));
        valid.then_some(dep)
    })
}

/// Runs a command with inherited output; fails with `what` when it fails.
fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.stdin(Stdio::null()).status().with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// `dir/<package>/boot/vmlinuz-*`, downloading and extracting it when missing.
fn fetch_kernel(dir: &Path, package: &str) -> Result<PathBuf> {
    let out = dir.join(package);
    if let Some(found) = find_vmlinuz(&out) {
        return Ok(found);
    }
    println!("xtask: bench: apt-get download {package}");
    run(Command::new("apt-get").args(["download", package]).current_dir(dir), "apt-get download")?;
    let prefix = format!("{package}_");
    let deb = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(&prefix) && name.ends_with(".deb")
        })
        .with_context(|| format!("apt-get download left no {prefix}*.deb in {}", dir.display()))?;
    std::fs::create_dir_all(&out)?;
    let shell = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards './boot/vmlinuz-*'",
        deb.display(),
        out.display()
    );
    run(Command::new("sh").args(["-c", &shell]), "dpkg-deb | tar (extracting vmlinuz)")?;
    // Only the kernel is kept; the package (with its modules) is large.
    std::fs::remove_file(&deb).with_context(|| format!("cannot remove {}", deb.display()))?;
    find_vmlinuz(&out).with_context(|| format!("{} holds no boot/vmlinuz-*", deb.display()))
}

fn find_vmlinuz(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("boot"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))
}

/// Builds the static Linux benchmark with the host toolchain; returns the executable.
fn build_bench(ws: &Workspace, link: Link) -> Result<PathBuf> {
    let target_dir = ws.root().join("target").join("bench").join(link.names().0);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("xtask: bench: building {BENCH_PACKAGE} ({HOST_TARGET}, static)");
    let output = Command::new(cargo)
        .current_dir(ws.root())
        .env("RUSTFLAGS", link.rustflags())
        .args(["build", "--release", "-p", BENCH_PACKAGE, "--target", HOST_TARGET, "--target-dir"])
        .arg(&target_dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot start cargo for the Linux benchmark")?;
    if !output.status.success() {
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        bail!("building {BENCH_PACKAGE} failed ({})", output.status);
    }
    Ok(target_dir.join(HOST_TARGET).join("release").join(BENCH_PACKAGE))
}

/// Checks that `elf` is a statically linked x86-64 executable (no program interpreter).
pub fn check_static(elf: &[u8]) -> Result<()> {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let file = ElfFile64::<object::Endianness>::parse(elf).context("not an ELF64 file")?;
    let endian = file.endian();
    if file.elf_header().e_machine.get(endian) != object::elf::EM_X86_64 {
        bail!("not an x86-64 executable");
    }
    let interp = file.elf_program_headers().iter().any(|ph| ph.p_type(endian) == object::elf::PT_INTERP);
    if interp {
        bail!("dynamically linked (it has a PT_INTERP); build with -C target-feature=+crt-static");
    }
    Ok(())
}

/// One entry of a [`newc`] archive.
#[derive(Debug, Clone, Copy)]
pub struct NewcEntry<'a> {
    pub name: &'a str,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Device number (major, minor) of a device node.
    pub rdev: (u32, u32),
    pub data: &'a [u8],
}

/// A cpio "newc" archive with the given modes (the boot archive writer,
/// `bootfmt::cpio::write_newc`, writes only plain 0644 files; /init must be executable).
/// Inode numbers count from 1; owner, times and devices are 0; the trailer ends it.
pub fn newc(entries: &[NewcEntry<'_>]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let trailer = NewcEntry { name: "TRAILER!!!", mode: 0, rdev: (0, 0), data: &[] };
    for (i, e) in entries.iter().chain(std::iter::once(&trailer)).enumerate() {
        if e.name.is_empty() || e.name.contains('\0') {
            bail!("bad cpio entry name {:?}", e.name);
        }
        let size = u32::try_from(e.data.len()).context("cpio entry too large")?;
        let is_trailer = i == entries.len();
        let fields = [
            if is_trailer { 0 } else { i as u32 + 1 }, // ino
            e.mode,
            0, // uid
            0, // gid
            if e.mode & 0o170_000 == 0o040_000 { 2 } else { 1 }, // nlink
            0, // mtime
            size,
            0, // devmajor
            0, // devminor
            e.rdev.0,
            e.rdev.1,
            e.name.len() as u32 + 1,
            0, // check
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(e.name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(e.data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_package_is_the_first_image_dependency() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n  Depends: other\n";
        assert_eq!(kernel_package(out), Some("linux-image-6.1.0-56-amd64"));
        assert_eq!(kernel_package("linux-image-amd64\n"), None);
        assert_eq!(kernel_package("  Depends: linux-image-x'; rm -rf /\n"), None);
        assert_eq!(kernel_package("  Depends: libc6\n"), None);
    }

    #[test]
    fn newc_archive_reads_back_with_modes() {
        let bytes = newc(&[
            NewcEntry { name: "dev", mode: 0o040_755, rdev: (0, 0), data: &[] },
            NewcEntry { name: "init", mode: 0o100_755, rdev: (0, 0), data: b"\x7fELF..." },
            NewcEntry { name: "dev/console", mode: 0o020_600, rdev: (5, 1), data: &[] },
        ])
        .unwrap();
        assert_eq!(bytes.len() % 4, 0);
        // The device number of the third entry (fields rdevmajor, rdevminor).
        let third = bytes.windows(11).position(|w| w == b"dev/console").unwrap() - 110;
        assert_eq!(&bytes[third + 78..third + 94], b"0000000500000001");
        let archive = bootfmt::cpio::Archive::new(&bytes);
        archive.validate().unwrap();
        let entries: Vec<_> = archive.entries().collect::<std::result::Result<_, _>>().unwrap();
        assert_eq!(entries.len(), 3);
        assert!(entries[0].is_dir());
        assert_eq!(entries[0].name, "dev");
        assert!(entries[1].is_file());
        assert_eq!(entries[1].mode, 0o100_755);
        assert_eq!(entries[1].data, b"\x7fELF...");
        assert!(newc(&[NewcEntry { name: "a\0", mode: 0o100_644, rdev: (0, 0), data: &[] }]).is_err());
    }

    #[test]
    fn static_check_needs_an_x86_64_elf_without_interpreter() {
        assert!(check_static(b"not an elf").is_err());
        // This test binary is dynamically linked (the host default).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let err = check_static(&me).unwrap_err().to_string();
        assert!(err.contains("PT_INTERP"), "{err}");
    }
}
