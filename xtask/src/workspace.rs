//! Where things are in the repository: the workspace root and the directories xtask writes.
//!
//! Every path xtask uses is derived here, so the layout is written down once:
//!
//! ```text
//!   <root>/boot/<name>.toml                           boot manifests
//!   <root>/target/cross/x86_64-unknown-none/<profile>/ target ELFs (kernel `tern`, programs)
//!   <root>/target/boot/<name>.cpio                    boot archives
//!   <root>/target/test-logs/<scenario>.log, .sym.log  serial logs of `cargo xtask test`
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The target triple every kernel and user program is built for.
pub const TARGET: &str = "x86_64-unknown-none";

/// The cargo package of the kernel.
pub const KERNEL_PACKAGE: &str = "tern-kernel";

/// The name of the kernel's binary (its ELF file name).
pub const KERNEL_BIN: &str = "tern";

/// Cargo build profile of the target programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    /// `Release` when `release` is set, else `Debug`.
    pub fn from_release_flag(release: bool) -> Self {
        if release {
            Profile::Release
        } else {
            Profile::Debug
        }
    }

    /// The directory name cargo uses for this profile.
    pub fn dir_name(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// The repository xtask works on.
///
/// # Invariants
/// `root` is an absolute path to a directory holding the workspace `Cargo.toml` and `boot/`.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// Finds the workspace: the parent of this crate's directory (xtask lives at `<root>/xtask`).
    pub fn locate() -> Result<Self> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let Some(root) = manifest_dir.parent() else {
            bail!("xtask's crate directory {} has no parent", manifest_dir.display());
        };
        Self::at(root)
    }

    /// A workspace rooted at `root`, which must contain `Cargo.toml`.
    pub fn at(root: &Path) -> Result<Self> {
        let root = std::path::absolute(root)?;
        if !root.join("Cargo.toml").is_file() {
            bail!("{} is not the Tern workspace (no Cargo.toml)", root.display());
        }
        Ok(Workspace { root })
    }

    /// The repository root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding the boot manifests.
    pub fn boot_dir(&self) -> PathBuf {
        self.root.join("boot")
    }

    /// The cargo target directory of the bare-metal build.
    pub fn cross_target_dir(&self) -> PathBuf {
        self.root.join("target").join("cross")
    }

    /// The directory holding the built target ELFs for `profile`.
    pub fn elf_dir(&self, profile: Profile) -> PathBuf {
        self.cross_target_dir().join(TARGET).join(profile.dir_name())
    }

    /// The path of the built binary `bin` for `profile`.
    pub fn elf(&self, profile: Profile, bin: &str) -> PathBuf {
        self.elf_dir(profile).join(bin)
    }

    /// The path of the built kernel ELF for `profile`.
    pub fn kernel_elf(&self, profile: Profile) -> PathBuf {
        self.elf(profile, KERNEL_BIN)
    }

    /// The directory boot archives are written to.
    pub fn archive_dir(&self) -> PathBuf {
        self.root.join("target").join("boot")
    }

    /// The directory serial logs of `cargo xtask test` are kept in.
    pub fn test_log_dir(&self) -> PathBuf {
        self.root.join("target").join("test-logs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_this_repository() {
        let ws = Workspace::locate().unwrap();
        assert!(ws.root().join("xtask").join("Cargo.toml").is_file());
        assert_eq!(
            ws.kernel_elf(Profile::Release),
            ws.root().join("target/cross/x86_64-unknown-none/release/tern")
        );
        assert_eq!(Profile::from_release_flag(false).dir_name(), "debug");
    }
}
