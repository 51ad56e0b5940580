//! `cargo xtask build`: builds the kernel and every user program for the bare-metal target
//! in one cargo invocation (so `core` is compiled once).
//!
//! ```text
//!   RUSTFLAGS="-C linker=ld.lld -C relocation-model=static -C force-frame-pointers=yes"
//!   cargo build --target x86_64-unknown-none -Zbuild-std=core,alloc,compiler_builtins
//!       -Zbuild-std-features=compiler-builtins-mem --target-dir target/cross [--release]
//!       -p tern-kernel -p <each package named in the manifests>
//! ```
//!
//! Cargo's output is captured and shown only when the build fails.

use std::collections::BTreeSet;
use std::process::{ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::manifest::Manifest;
use crate::toolchain::{self, Need, Toolchain};
use crate::workspace::{Profile, Workspace, KERNEL_PACKAGE, TARGET};

/// Code generation flags of every target program.
pub const TARGET_RUSTFLAGS: &str =
    "-C linker=ld.lld -C relocation-model=static -C force-frame-pointers=yes";

/// Options of `cargo xtask build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Build with the release profile (optimized, with debug info) instead of debug.
    #[arg(long)]
    pub release: bool,
}

/// Runs `cargo xtask build`: builds the packages of every manifest in boot/.
pub fn main(ws: &Workspace, args: Args) -> Result<ExitCode> {
    let manifests = Manifest::load_all(ws)?;
    let toolchain = toolchain::ensure(Need::Build)?;
    build(ws, &toolchain, Profile::from_release_flag(args.release), &manifests)?;
    Ok(ExitCode::SUCCESS)
}

/// The packages to build: the kernel, sigma0 and roottask, and every manifest's programs.
pub fn packages<'m>(manifests: impl IntoIterator<Item = &'m Manifest>) -> BTreeSet<String> {
    let mut packages: BTreeSet<String> =
        [KERNEL_PACKAGE, "sigma0", "roottask"].map(str::to_owned).into();
    for manifest in manifests {
        packages.extend(manifest.packages().into_iter().map(str::to_owned));
    }
    packages
}

/// The arguments of `cargo` for the target build (after the toolchain's own arguments).
pub fn cargo_args(ws: &Workspace, profile: Profile, packages: &BTreeSet<String>) -> Vec<String> {
    let mut args: Vec<String> = [
        "build",
        "--target",
        TARGET,
        "-Zbuild-std=core,alloc,compiler_builtins",
        "-Zbuild-std-features=compiler-builtins-mem",
        "--target-dir",
    ]
    .map(str::to_owned)
    .into();
    args.push(ws.cross_target_dir().to_string_lossy().into_owned());
    if profile == Profile::Release {
        args.push("--release".to_owned());
    }
    for package in packages {
        args.push("-p".to_owned());
        args.push(package.clone());
    }
    args
}

/// Builds the kernel and the programs of `manifests` for `profile`.
pub fn build<'m>(
    ws: &Workspace,
    toolchain: &Toolchain,
    profile: Profile,
    manifests: impl IntoIterator<Item = &'m Manifest>,
) -> Result<()> {
    let packages = packages(manifests);
    let list = packages.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
    println!("xtask: build ({}, {:?} toolchain): {list}", profile.dir_name(), toolchain.rust());
    let started = Instant::now();
    let output = toolchain
        .cargo()
        .current_dir(ws.root())
        .env("RUSTFLAGS", TARGET_RUSTFLAGS)
        .args(cargo_args(ws, profile, &packages))
        .stdin(Stdio::null())
        .output()
        .context("cannot start cargo for the target build")?;
    if !output.status.success() {
        eprint!("{}", String::from_utf8_lossy(&output.stdout));
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        bail!("target build failed ({})", output.status);
    }
    println!("xtask: build: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_include_the_kernel_and_every_manifest_program() {
        let m = Manifest::parse(
            "t",
            "[sigma0]\npackage=\"sigma0\"\n[roottask]\npackage=\"tests\"\n\
             [[module]]\nname=\"h\"\npackage=\"hello\"\n",
        )
        .unwrap();
        let got: Vec<_> = packages([&m]).into_iter().collect();
        assert_eq!(got, ["hello", "roottask", "sigma0", "tern-kernel", "tests"]);
    }

    #[test]
    fn cargo_arguments() {
        let ws = Workspace::locate().unwrap();
        let packages = BTreeSet::from(["sigma0".to_owned(), "tern-kernel".to_owned()]);
        let args = cargo_args(&ws, Profile::Release, &packages).join(" ");
        let dir = ws.cross_target_dir();
        assert_eq!(
            args,
            format!(
                "build --target x86_64-unknown-none -Zbuild-std=core,alloc,compiler_builtins \
                 -Zbuild-std-features=compiler-builtins-mem --target-dir {} --release \
                 -p sigma0 -p tern-kernel",
                dir.display()
            )
        );
        assert!(!cargo_args(&ws, Profile::Debug, &packages).contains(&"--release".to_owned()));
    }
}
