//! The boot archive: a cpio "newc" file with the programs of a manifest.
//!
//! Entry order: `sigma0`, `roottask` (ELF files), then every module by its name, each
//! followed by `<name>.args` (UTF-8 text) when the manifest gives arguments. `--sigma0` and
//! `--root-task` replace the first two entries with any x86-64 ELF64 executable.
//!
//! newc layout (all numbers 8 hexadecimal ASCII digits):
//!
//! ```text
//!   "070701" ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor
//!   namesize check | name NUL | pad to 4 | data | pad to 4      ... then "TRAILER!!!"
//! ```
//!
//! The archive is reproducible: mtime, uid and gid are 0, inode numbers count from 1. It is
//! written by `bootfmt::cpio` (the crate the kernel reads it with); the tests here read it
//! back with an independent reader.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::manifest::{Manifest, ARGS_SUFFIX};
use crate::workspace::{Profile, Workspace};

/// Writes `entries` (name, contents) as a cpio newc archive, trailer included, using the
/// same crate the kernel reads it with.
pub fn newc_bytes(entries: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; bootfmt::cpio::newc_size(entries)];
    let written = bootfmt::cpio::write_newc(entries, &mut out)
        .map_err(|err| anyhow!("cannot write the cpio archive: {err}"))?;
    out.truncate(written);
    Ok(out)
}

/// Checks that `bytes` are an x86-64 ELF64 file the boot loader accepts (header and
/// loadable segments, as `bootfmt::elf` validates them for the kernel). Root servers
/// (`fixed_address`) are placed at their link addresses, so they must be `ET_EXEC`.
pub fn check_elf64(bytes: &[u8], fixed_address: bool) -> Result<()> {
    let elf = bootfmt::elf::Elf::parse(bytes).map_err(|err| anyhow!("bad ELF64 file: {err}"))?;
    elf.validate_layout().map_err(|err| anyhow!("bad ELF64 segments: {err}"))?;
    if fixed_address && elf.kind() != bootfmt::elf::ElfKind::Executable {
        bail!("a root server must be a static executable (ET_EXEC), not position-independent");
    }
    Ok(())
}

/// Files given on the command line in place of the manifest's root servers.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces the `sigma0` entry.
    pub sigma0: Option<PathBuf>,
    /// Replaces the `roottask` entry.
    pub root_task: Option<PathBuf>,
}

/// Where one archive entry comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The ELF file of a root server (sigma0, root task): loaded at its link address.
    RootServer(PathBuf),
    /// The ELF file of a module.
    Module(PathBuf),
    /// Text (module arguments).
    Text(String),
}

/// The planned contents of an archive: entry names and their sources, in order.
pub fn plan(
    manifest: &Manifest,
    elf_of_package: impl Fn(&str) -> PathBuf,
    overrides: &Overrides,
) -> Vec<(String, Source)> {
    let mut entries = Vec::new();
    let roles = [(&manifest.sigma0, &overrides.sigma0), (&manifest.roottask, &overrides.root_task)];
    for (program, replacement) in roles {
        let path = replacement.clone().unwrap_or_else(|| elf_of_package(&program.package));
        entries.push((program.entry.clone(), Source::RootServer(path)));
    }
    for module in &manifest.modules {
        let path = elf_of_package(&module.program.package);
        entries.push((module.program.entry.clone(), Source::Module(path)));
        if let Some(args) = &module.args {
            entries.push((
                format!("{}{ARGS_SUFFIX}", module.program.entry),
                Source::Text(args.clone()),
            ));
        }
    }
    entries
}

/// A written boot archive.
#[derive(Debug, Clone)]
pub struct Archive {
    /// The cpio file.
    pub path: PathBuf,
    /// Every program entry and the ELF file it came from, in archive order.
    pub programs: Vec<(String, PathBuf)>,
}

/// Writes `target/boot/<manifest>.cpio` from the built ELFs of `profile` and `overrides`.
pub fn build(
    ws: &Workspace,
    manifest: &Manifest,
    profile: Profile,
    overrides: &Overrides,
) -> Result<Archive> {
    let entries = plan(manifest, |package| ws.elf(profile, package), overrides);
    let mut loaded = Vec::with_capacity(entries.len());
    let mut programs = Vec::new();
    for (name, source) in &entries {
        let data = match source {
            Source::RootServer(path) | Source::Module(path) => {
                let root_server = matches!(source, Source::RootServer(_));
                let data = read_elf(path, root_server)
                    .with_context(|| format!("archive entry {name:?}"))?;
                programs.push((name.clone(), std::path::absolute(path)?));
                data
            }
            Source::Text(text) => text.as_bytes().to_vec(),
        };
        loaded.push((name.as_str(), data));
    }
    let dir = ws.archive_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}.cpio", manifest.name));
    let entries: Vec<(&str, &[u8])> =
        loaded.iter().map(|(name, data)| (*name, data.as_slice())).collect();
    let bytes = newc_bytes(&entries)?;
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Archive { path, programs })
}

fn read_elf(path: &Path, root_server: bool) -> Result<Vec<u8>> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    check_elf64(&data, root_server).with_context(|| format!("{} is not usable", path.display()))?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEWC_MAGIC: &[u8; 6] = b"070701";
    const TRAILER: &str = "TRAILER!!!";

    /// Reads a newc archive back independently of bootfmt: (name, mode, data) per entry,
    /// trailer excluded.
    fn read_newc(mut bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let total = bytes.len();
        let mut out = Vec::new();
        loop {
            assert_eq!((total - bytes.len()) % 4, 0, "header not 4-aligned");
            assert_eq!(&bytes[..6], NEWC_MAGIC);
            let field = |i: usize| {
                let text = std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(text, 16).unwrap() as usize
            };
            let (mode, filesize, namesize) = (field(1) as u32, field(6), field(11));
            let name = std::str::from_utf8(&bytes[110..110 + namesize - 1]).unwrap().to_owned();
            assert_eq!(bytes[110 + namesize - 1], 0);
            let data_start = (110 + namesize).next_multiple_of(4);
            let data = bytes[data_start..data_start + filesize].to_vec();
            bytes = &bytes[(data_start + filesize).next_multiple_of(4)..];
            if name == TRAILER {
                assert!(bytes.is_empty());
                return out;
            }
            out.push((name, mode, data));
        }
    }

    #[test]
    fn single_entry_has_exact_bytes() {
        let out = newc_bytes(&[("ab", b"xyz")]).unwrap();
        let expected = concat!(
            "070701", "00000001", "000081A4", "00000000", "00000000", "00000001", "00000000",
            "00000003", "00000000", "00000000", "00000000", "00000000", "00000003", "00000000",
            "ab\0", "\0\0\0", "xyz\0",
        );
        assert!(out.starts_with(expected.as_bytes()));
        assert_eq!(out.len() % 4, 0);
        assert_eq!(read_newc(&out), [("ab".to_owned(), 0o100_644, b"xyz".to_vec())]);
    }

    #[test]
    fn archive_round_trips_with_padding() {
        let entries: Vec<(String, Vec<u8>)> =
            (0..9).map(|i| ("n".repeat(i + 1), (0..(i * 3) as u8).collect())).collect();
        let borrowed: Vec<(&str, &[u8])> =
            entries.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let back = read_newc(&newc_bytes(&borrowed).unwrap());
        assert_eq!(back.len(), entries.len());
        for ((name, mode, data), (want_name, want_data)) in back.iter().zip(&entries) {
            assert_eq!(name, want_name);
            assert_eq!(*mode, 0o100_644);
            assert_eq!(data, want_data);
        }
    }

    #[test]
    fn empty_archive_is_just_the_trailer() {
        assert!(read_newc(&newc_bytes(&[]).unwrap()).is_empty());
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(newc_bytes(&[("a\0b", b"")]).is_err());
        assert!(newc_bytes(&[("", b"")]).is_err());
    }

    /// A 64-byte ELF header without program headers.
    fn elf_header(class: u8, e_type: u16, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = 1; // little endian
        h[6] = 1; // EV_CURRENT
        h[16..18].copy_from_slice(&e_type.to_le_bytes());
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h[20..24].copy_from_slice(&1u32.to_le_bytes());
        h
    }

    #[test]
    fn elf_check_accepts_only_x86_64_elf64() {
        assert!(check_elf64(&elf_header(2, 2, 62), true).is_ok());
        assert!(check_elf64(&elf_header(1, 2, 62), false).is_err());
        assert!(check_elf64(&elf_header(2, 1, 62), false).is_err());
        assert!(check_elf64(&elf_header(2, 2, 183), false).is_err());
        assert!(check_elf64(b"#!/bin/sh\n", false).is_err());
        // Position-independent (ET_DYN) files are fine for modules, not for root servers.
        assert!(check_elf64(&elf_header(2, 3, 62), false).is_ok());
        assert!(check_elf64(&elf_header(2, 3, 62), true).is_err());
    }

    #[test]
    fn plan_orders_entries_and_applies_overrides() {
        let manifest = Manifest::parse(
            "t",
            r#"
            [sigma0]
            package = "sigma0"
            [roottask]
            package = "roottask"
            [[module]]
            name = "hello"
            package = "hello-pkg"
            args = "x=1"
            [[module]]
            name = "bye"
            package = "bye"
            "#,
        )
        .unwrap();
        let elf = |package: &str| PathBuf::from("/elf").join(package);
        let overrides = Overrides { sigma0: None, root_task: Some(PathBuf::from("/my/root")) };
        let planned = plan(&manifest, elf, &overrides);
        let expected = vec![
            ("sigma0".to_owned(), Source::RootServer("/elf/sigma0".into())),
            ("roottask".to_owned(), Source::RootServer("/my/root".into())),
            ("hello".to_owned(), Source::Module("/elf/hello-pkg".into())),
            ("hello.args".to_owned(), Source::Text("x=1".into())),
            ("bye".to_owned(), Source::Module("/elf/bye".into())),
        ];
        assert_eq!(planned, expected);
    }

    #[test]
    fn a_scenario_archive_holds_the_scenario_modules() {
        let manifest = Manifest::parse(
            "test",
            r#"
            [sigma0]
            package = "sigma0"
            [roottask]
            package = "tests"
            [[module]]
            name = "sigma1"
            package = "faulter"
            [[scenario]]
            name = "system"
            expect = "suite"
            roottask = "roottask"
            [[scenario.module]]
            name = "uart"
            package = "uart"
            [[scenario.module]]
            name = "syscheck"
            package = "syscheck"
            args = "v"
            "#,
        )
        .unwrap();
        let variant = manifest.for_scenario(&manifest.scenarios[0]);
        let elf = |package: &str| PathBuf::from("/elf").join(package);
        let overrides = Overrides { sigma0: None, root_task: Some(elf("roottask")) };
        let planned = plan(&variant, elf, &overrides);
        let expected = vec![
            ("sigma0".to_owned(), Source::RootServer("/elf/sigma0".into())),
            ("roottask".to_owned(), Source::RootServer("/elf/roottask".into())),
            ("uart".to_owned(), Source::Module("/elf/uart".into())),
            ("syscheck".to_owned(), Source::Module("/elf/syscheck".into())),
            ("syscheck.args".to_owned(), Source::Text("v".into())),
        ];
        assert_eq!(planned, expected);
        // The manifest's own archive keeps its modules.
        let own = plan(&manifest, elf, &Overrides::default());
        assert_eq!(own[2], ("sigma1".to_owned(), Source::Module("/elf/faulter".into())));
    }
}
