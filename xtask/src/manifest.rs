//! Boot manifests: `boot/<name>.toml` says what goes into a boot archive and, for tests,
//! which scenarios to boot.
//!
//! ```toml
//! [sigma0]                 # X.2 root server sigma0 (archive entry "sigma0")
//! package = "sigma0"
//! [roottask]               # X.2 root task (archive entry "roottask")
//! package = "roottask"
//! [[module]]               # further programs, in archive order
//! name = "hello"           # archive entry name
//! package = "hello"        # cargo package; its bin has the same name
//! args = "-v"              # optional; stored as entry "hello.args"
//! [[scenario]]             # boot scenarios run by `cargo xtask test`
//! name = "suite"
//! cmdline = ""             # kernel command line (QEMU -append)
//! expect = "suite"         # "suite" | "panic" | "panic:<text>"
//! roottask = "pkg"          # optional: boot this package as the root task instead
//! args = "k=v k2=v2"       # optional: arguments embedded in the root task's image
//!                          # (its `.tern_args` section, see xtask/src/fuzz.rs)
//! features = ["invariants"] # optional: boot a kernel built with these cargo features
//! require = ["a", "b"]     # optional: texts the symbolized log must contain, in this
//!                          # order; each is one more check
//! [[scenario.module]]      # optional: this scenario's archive holds these modules
//! name = "uart"            # (same keys as [[module]]) instead of the manifest's
//! package = "uart"
//! ```
//!
//! The file is parsed into raw serde structs (unknown keys are errors) and then checked into
//! a [`Manifest`] by one constructor, [`Manifest::parse`]; nothing else builds one.

use std::collections::BTreeSet;
use std::fmt;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::workspace::Workspace;

/// Archive entry name of the X.2 root server sigma0.
pub const SIGMA0_ENTRY: &str = "sigma0";
/// Archive entry name of the X.2 root task.
pub const ROOTTASK_ENTRY: &str = "roottask";
/// Suffix of the text entry holding a module's arguments.
pub const ARGS_SUFFIX: &str = ".args";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    sigma0: RawRole,
    roottask: RawRole,
    #[serde(default)]
    module: Vec<RawModule>,
    #[serde(default)]
    scenario: Vec<RawScenario>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    package: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    name: String,
    package: String,
    args: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    cmdline: String,
    expect: String,
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    roottask: Option<String>,
    #[serde(default)]
    args: Option<String>,
    #[serde(default)]
    features: Vec<String>,
    /// `[[scenario.module]]` tables: this scenario's modules.
    #[serde(default)]
    module: Option<Vec<RawModule>>,
}

/// One program in the boot archive.
///
/// # Invariants
/// `entry` is a valid archive name (see [`check_entry_name`]) and `package` a valid cargo
/// package name; the program's ELF is the package's binary of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Archive entry name (also the name the serial log uses for the program).
    pub entry: String,
    /// Cargo package (and binary) name.
    pub package: String,
}

/// A module: a program the root task may load, with optional arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub program: Program,
    /// Stored as the text entry `<entry>.args` when present.
    pub args: Option<String>,
}

/// What a boot scenario must show to pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The in-guest suite: `TERN-TEST` lines, success exit status, no failures.
    Suite,
    /// A `KERNEL PANIC` line (containing `containing`, if given) and the run ended.
    Panic { containing: Option<String> },
}

impl TryFrom<&str> for Expect {
    type Error = anyhow::Error;

    fn try_from(text: &str) -> Result<Self> {
        match text {
            "suite" => Ok(Expect::Suite),
            "panic" => Ok(Expect::Panic { containing: None }),
            _ => match text.strip_prefix("panic:") {
                Some(needle) if !needle.is_empty() => {
                    Ok(Expect::Panic { containing: Some(needle.to_owned()) })
                }
                _ => bail!(
                    "unknown expectation {text:?} (expected \"suite\", \"panic\" or \"panic:<text>\")"
                ),
            },
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Suite => f.write_str("suite"),
            Expect::Panic { containing: None } => f.write_str("panic"),
            Expect::Panic { containing: Some(text) } => write!(f, "panic:{text}"),
        }
    }
}

/// A boot scenario of `cargo xtask test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// Unique; used for the log file names.
    pub name: String,
    /// Kernel command line; empty means none.
    pub cmdline: String,
    pub expect: Expect,
    /// Texts the serial log must contain, in this order (each is one check).
    pub require: Vec<String>,
    /// A cargo package booted as the root task in this scenario instead of the
    /// manifest's `[roottask]`.
    pub roottask: Option<String>,
    /// Arguments embedded in the root task's image (printable ASCII).
    pub args: Option<String>,
    /// Cargo features of the kernel this scenario boots (empty: the plain kernel).
    pub features: Vec<String>,
    /// The modules of this scenario's archive, in place of the manifest's `[[module]]`s
    /// (`None`: the manifest's). Their archive entries are distinct and none is a root
    /// server's.
    pub modules: Option<Vec<Module>>,
}

impl Scenario {
    /// Does this scenario boot an archive of its own (another root task, arguments for
    /// it, its own modules, another kernel)?
    pub fn needs_own_archive(&self) -> bool {
        self.roottask.is_some()
            || self.args.is_some()
            || self.modules.is_some()
            || !self.features.is_empty()
    }
}

/// A checked boot manifest.
///
/// # Invariants
/// All archive entry names (`sigma0`, `roottask`, module names and their `.args` entries) are
/// distinct; scenario names are distinct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest's name (file stem), e.g. `run`.
    pub name: String,
    pub sigma0: Program,
    pub roottask: Program,
    pub modules: Vec<Module>,
    pub scenarios: Vec<Scenario>,
}

impl Manifest {
    /// Reads and checks `boot/<name>.toml`.
    pub fn load(ws: &Workspace, name: &str) -> Result<Self> {
        check_file_stem(name).with_context(|| format!("bad manifest name {name:?}"))?;
        let path = ws.boot_dir().join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read boot manifest {}", path.display()))?;
        Self::parse(name, &text).with_context(|| format!("in {}", path.display()))
    }

    /// Loads every manifest in `boot/`, sorted by name.
    pub fn load_all(ws: &Workspace) -> Result<Vec<Self>> {
        let dir = ws.boot_dir();
        let mut names = Vec::new();
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                    names.push(stem.to_owned());
                }
            }
        }
        names.sort();
        names.iter().map(|name| Self::load(ws, name)).collect()
    }

    /// Parses and checks the text of a manifest called `name`.
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let raw: RawManifest = toml::from_str(text)?;
        let sigma0 = program(SIGMA0_ENTRY, raw.sigma0.package).context("[sigma0]")?;
        let roottask = program(ROOTTASK_ENTRY, raw.roottask.package).context("[roottask]")?;
        let mut entries = BTreeSet::from([SIGMA0_ENTRY.to_owned(), ROOTTASK_ENTRY.to_owned()]);
        let mut modules = Vec::new();
        for raw_module in raw.module {
            let module_name = raw_module.name.clone();
            let checked = check_module(raw_module, &mut entries)
                .with_context(|| format!("[[module]] {module_name:?}"))?;
            modules.push(checked);
        }
        let mut scenario_names = BTreeSet::new();
        let mut scenarios = Vec::new();
        for raw_scenario in raw.scenario {
            let scenario_name = raw_scenario.name.clone();
            let checked = check_scenario(raw_scenario, &mut scenario_names)
                .with_context(|| format!("[[scenario]] {scenario_name:?}"))?;
            scenarios.push(checked);
        }
        Ok(Manifest { name: name.to_owned(), sigma0, roottask, modules, scenarios })
    }

    /// Every program in archive order: sigma0, roottask, then the modules.
    pub fn programs(&self) -> impl Iterator<Item = &Program> {
        [&self.sigma0, &self.roottask].into_iter().chain(self.modules.iter().map(|m| &m.program))
    }

    /// The distinct cargo packages this manifest needs built (its scenarios' root tasks
    /// and modules included).
    pub fn packages(&self) -> BTreeSet<&str> {
        let scenario_modules = self
            .scenarios
            .iter()
            .flat_map(|s| s.modules.iter().flatten())
            .map(|m| m.program.package.as_str());
        self.programs()
            .map(|p| p.package.as_str())
            .chain(self.scenarios.iter().filter_map(|s| s.roottask.as_deref()))
            .chain(scenario_modules)
            .collect()
    }

    /// The manifest of `scenario`'s own archive: named `<manifest>-<scenario>`, with the
    /// scenario's modules (if it lists any) in place of the manifest's. The root task is
    /// the manifest's; a scenario's other root task is an override of the archive build.
    pub fn for_scenario(&self, scenario: &Scenario) -> Manifest {
        let mut variant = self.clone();
        variant.name = format!("{}-{}", self.name, scenario.name);
        if let Some(modules) = &scenario.modules {
            variant.modules = modules.clone();
        }
        variant
    }
}

fn program(entry: &str, package: String) -> Result<Program> {
    check_package_name(&package)?;
    Ok(Program { entry: entry.to_owned(), package })
}

fn check_module(raw: RawModule, entries: &mut BTreeSet<String>) -> Result<Module> {
    check_entry_name(&raw.name)?;
    let program = program(&raw.name, raw.package)?;
    if !entries.insert(raw.name.clone()) {
        bail!("archive entry {:?} appears twice", raw.name);
    }
    if raw.args.is_some() && !entries.insert(format!("{}{ARGS_SUFFIX}", raw.name)) {
        bail!("archive entry {:?} appears twice", format!("{}{ARGS_SUFFIX}", raw.name));
    }
    Ok(Module { program, args: raw.args })
}

fn check_scenario(raw: RawScenario, names: &mut BTreeSet<String>) -> Result<Scenario> {
    check_file_stem(&raw.name)?;
    if !names.insert(raw.name.clone()) {
        bail!("scenario name appears twice");
    }
    if raw.cmdline.chars().any(char::is_control) {
        bail!("cmdline contains a control character");
    }
    let expect = Expect::try_from(raw.expect.as_str())?;
    if raw.require.iter().any(String::is_empty) {
        bail!("require has an empty text (it would match anything)");
    }
    if let Some(package) = &raw.roottask {
        if package.is_empty() {
            bail!("roottask names no package");
        }
    }
    if let Some(args) = &raw.args {
        if !args.bytes().all(|b| (0x20..0x7F).contains(&b)) {
            bail!("args may hold printable ASCII only");
        }
    }
    for feature in &raw.features {
        check_package_name(feature).with_context(|| format!("kernel feature {feature:?}"))?;
    }
    let modules = match raw.module {
        None => None,
        Some(raw_modules) => {
            // The scenario's archive: the root servers and these modules only.
            let mut entries = BTreeSet::from([SIGMA0_ENTRY.to_owned(), ROOTTASK_ENTRY.to_owned()]);
            let mut modules = Vec::with_capacity(raw_modules.len());
            for raw_module in raw_modules {
                let module_name = raw_module.name.clone();
                let checked = check_module(raw_module, &mut entries)
                    .with_context(|| format!("[[scenario.module]] {module_name:?}"))?;
                modules.push(checked);
            }
            Some(modules)
        }
    };
    Ok(Scenario {
        name: raw.name,
        cmdline: raw.cmdline,
        expect,
        require: raw.require,
        roottask: raw.roottask,
        args: raw.args,
        features: raw.features,
        modules,
    })
}

/// Archive entry names: 1..=64 of `[A-Za-z0-9_.-]`, not starting with `.`, not ending in
/// `.args` (reserved for argument entries).
pub fn check_entry_name(name: &str) -> Result<()> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with('.') {
        bail!("bad entry name {name:?} (use 1..=64 of A-Z a-z 0-9 _ - ., not starting with .)");
    }
    if name.ends_with(ARGS_SUFFIX) {
        bail!("entry name {name:?} ends in {ARGS_SUFFIX:?}, which is reserved for arguments");
    }
    Ok(())
}

/// Cargo package names: 1..=64 of `[A-Za-z0-9_-]`.
pub fn check_package_name(name: &str) -> Result<()> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if name.is_empty() || name.len() > 64 || !ok_chars {
        bail!("bad package name {name:?}");
    }
    Ok(())
}

/// Names used as file stems (manifests, scenario logs): 1..=64 of `[A-Za-z0-9_-]`.
fn check_file_stem(name: &str) -> Result<()> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if name.is_empty() || name.len() > 64 || !ok_chars {
        bail!("bad name {name:?} (use 1..=64 of A-Z a-z 0-9 _ -)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
        [sigma0]
        package = "sigma0"
        [roottask]
        package = "tests"
        [[module]]
        name = "hello"
        package = "hello"
        args = "a b"
        [[module]]
        name = "pager"
        package = "pager-srv"
        [[scenario]]
        name = "suite"
        cmdline = ""
        expect = "suite"
        [[scenario]]
        name = "stack-overflow-reported"
        cmdline = "tern.test=stack-overflow"
        expect = "panic:kernel stack overflow"
        [[scenario]]
        name = "panic"
        cmdline = "tern.test=panic"
        expect = "panic"
    "#;

    #[test]
    fn full_manifest_parses() {
        let m = Manifest::parse("test", FULL).unwrap();
        assert_eq!(m.sigma0, Program { entry: "sigma0".into(), package: "sigma0".into() });
        assert_eq!(m.roottask.package, "tests");
        assert_eq!(m.roottask.entry, "roottask");
        assert_eq!(m.modules.len(), 2);
        assert_eq!(m.modules[0].args.as_deref(), Some("a b"));
        assert_eq!(m.modules[1].program.package, "pager-srv");
        let entries: Vec<_> = m.programs().map(|p| p.entry.as_str()).collect();
        assert_eq!(entries, ["sigma0", "roottask", "hello", "pager"]);
        assert_eq!(
            m.packages().into_iter().collect::<Vec<_>>(),
            ["hello", "pager-srv", "sigma0", "tests"]
        );
        assert_eq!(m.scenarios[0].expect, Expect::Suite);
        assert_eq!(
            m.scenarios[1].expect,
            Expect::Panic { containing: Some("kernel stack overflow".into()) }
        );
        assert_eq!(m.scenarios[2].expect, Expect::Panic { containing: None });
        assert_eq!(m.scenarios[1].cmdline, "tern.test=stack-overflow");
    }

    #[test]
    fn minimal_manifest_parses() {
        let m = Manifest::parse(
            "run",
            "[sigma0]\npackage = \"sigma0\"\n[roottask]\npackage = \"roottask\"\n",
        )
        .unwrap();
        assert!(m.modules.is_empty() && m.scenarios.is_empty());
    }

    fn err(text: &str) -> String {
        format!("{:#}", Manifest::parse("x", text).unwrap_err())
    }

    const ROLES: &str = "[sigma0]\npackage = \"sigma0\"\n[roottask]\npackage = \"roottask\"\n";

    #[test]
    fn unknown_keys_are_errors() {
        assert!(err(&format!("{ROLES}priority = 3\n")).contains("priority"));
        assert!(
            err(&format!("{ROLES}[[module]]\nname=\"a\"\npackage=\"a\"\nmem=1\n")).contains("mem")
        );
    }

    #[test]
    fn missing_roles_are_errors() {
        assert!(err("[sigma0]\npackage = \"sigma0\"\n").contains("roottask"));
    }

    #[test]
    fn duplicate_and_reserved_entries_are_errors() {
        let dup = format!(
            "{ROLES}[[module]]\nname=\"a\"\npackage=\"a\"\n[[module]]\nname=\"a\"\npackage=\"b\"\n"
        );
        assert!(err(&dup).contains("twice"));
        let role = format!("{ROLES}[[module]]\nname=\"sigma0\"\npackage=\"a\"\n");
        assert!(err(&role).contains("twice"));
        let args = format!("{ROLES}[[module]]\nname=\"a.args\"\npackage=\"a\"\n");
        assert!(err(&args).contains("reserved"));
        let slash = format!("{ROLES}[[module]]\nname=\"a/b\"\npackage=\"a\"\n");
        assert!(err(&slash).contains("bad entry name"));
        let pkg = format!("{ROLES}[[module]]\nname=\"a\"\npackage=\"a b\"\n");
        assert!(err(&pkg).contains("bad package name"));
    }

    #[test]
    fn bad_scenarios_are_errors() {
        let unknown = format!("{ROLES}[[scenario]]\nname=\"s\"\nexpect=\"reboot\"\n");
        assert!(err(&unknown).contains("unknown expectation"));
        let empty_panic = format!("{ROLES}[[scenario]]\nname=\"s\"\nexpect=\"panic:\"\n");
        assert!(err(&empty_panic).contains("unknown expectation"));
        let dup = format!(
            "{ROLES}[[scenario]]\nname=\"s\"\nexpect=\"suite\"\n[[scenario]]\nname=\"s\"\nexpect=\"panic\"\n"
        );
        assert!(err(&dup).contains("twice"));
        let bad_name = format!("{ROLES}[[scenario]]\nname=\"../s\"\nexpect=\"suite\"\n");
        assert!(err(&bad_name).contains("bad name"));
        let control =
            format!("{ROLES}[[scenario]]\nname=\"s\"\ncmdline=\"a\\nb\"\nexpect=\"suite\"\n");
        assert!(err(&control).contains("control"));
    }

    #[test]
    fn required_texts_are_kept_in_order() {
        let text =
            format!("{ROLES}[[scenario]]\nname=\"s\"\nexpect=\"suite\"\nrequire=[\"b\", \"a\"]\n");
        let m = Manifest::parse("x", &text).unwrap();
        assert_eq!(m.scenarios[0].require, ["b", "a"]);
        let empty = format!("{ROLES}[[scenario]]\nname=\"s\"\nexpect=\"suite\"\nrequire=[\"\"]\n");
        assert!(err(&empty).contains("empty text"));
    }

    #[test]
    fn scenario_arguments_and_kernel_features() {
        let text = format!(
            "{ROLES}[[scenario]]\nname=\"f\"\nexpect=\"suite\"\nroottask=\"fuzz\"\n\
             args=\"seed=1 n=2\"\nfeatures=[\"invariants\"]\n"
        );
        let m = Manifest::parse("x", &text).unwrap();
        assert_eq!(m.scenarios[0].args.as_deref(), Some("seed=1 n=2"));
        assert_eq!(m.scenarios[0].features, ["invariants"]);
        let plain = format!("{ROLES}[[scenario]]\nname=\"s\"\nexpect=\"suite\"\n");
        let m = Manifest::parse("x", &plain).unwrap();
        assert!(m.scenarios[0].args.is_none() && m.scenarios[0].features.is_empty());
        let control = format!("{ROLES}[[scenario]]\nname=\"s\"\nexpect=\"suite\"\nargs=\"a\\tb\"\n");
        assert!(err(&control).contains("printable"));
        let feature = format!("{ROLES}[[scenario]]\nname=\"s\"\nexpect=\"suite\"\nfeatures=[\"a b\"]\n");
        assert!(err(&feature).contains("kernel feature"));
    }

    #[test]
    fn scenario_modules_replace_the_manifest_modules() {
        let text = format!(
            "{ROLES}[[module]]\nname=\"sigma1\"\npackage=\"faulter\"\n\
             [[scenario]]\nname=\"plain\"\nexpect=\"suite\"\n\
             [[scenario]]\nname=\"system\"\nexpect=\"suite\"\n\
             [[scenario.module]]\nname=\"uart\"\npackage=\"uart\"\n\
             [[scenario.module]]\nname=\"check\"\npackage=\"syscheck\"\nargs=\"-v\"\n\
             [[scenario]]\nname=\"bare\"\nexpect=\"suite\"\nmodule=[]\n"
        );
        let m = Manifest::parse("test", &text).unwrap();
        let (plain, system, bare) = (&m.scenarios[0], &m.scenarios[1], &m.scenarios[2]);
        assert!(plain.modules.is_none() && !plain.needs_own_archive());
        assert!(system.needs_own_archive() && bare.needs_own_archive());
        let listed: Vec<_> =
            system.modules.as_ref().unwrap().iter().map(|m| m.program.entry.as_str()).collect();
        assert_eq!(listed, ["uart", "check"]);
        assert_eq!(system.modules.as_ref().unwrap()[1].args.as_deref(), Some("-v"));
        // Their packages are built; the manifest's own modules stay in its archive.
        assert_eq!(
            m.packages().into_iter().collect::<Vec<_>>(),
            ["faulter", "roottask", "sigma0", "syscheck", "uart"]
        );
        assert_eq!(m.modules.len(), 1);
        let variant = m.for_scenario(system);
        assert_eq!(variant.name, "test-system");
        let entries: Vec<_> = variant.programs().map(|p| p.entry.as_str()).collect();
        assert_eq!(entries, ["sigma0", "roottask", "uart", "check"]);
        assert_eq!(variant.roottask, m.roottask);
        assert!(m.for_scenario(bare).modules.is_empty());
        assert_eq!(m.for_scenario(plain).modules, m.modules);
    }

    #[test]
    fn bad_scenario_modules_are_errors() {
        let scenario = format!("{ROLES}[[scenario]]\nname=\"s\"\nexpect=\"suite\"\n");
        let dup = format!(
            "{scenario}[[scenario.module]]\nname=\"a\"\npackage=\"a\"\n\
             [[scenario.module]]\nname=\"a\"\npackage=\"b\"\n"
        );
        assert!(err(&dup).contains("twice"), "{}", err(&dup));
        let role = format!("{scenario}[[scenario.module]]\nname=\"roottask\"\npackage=\"a\"\n");
        assert!(err(&role).contains("twice"));
        let reserved = format!("{scenario}[[scenario.module]]\nname=\"a.args\"\npackage=\"a\"\n");
        assert!(err(&reserved).contains("reserved"));
        let pkg = format!("{scenario}[[scenario.module]]\nname=\"a\"\npackage=\"a/b\"\n");
        assert!(err(&pkg).contains("bad package name"));
        let unknown = format!("{scenario}[[scenario.module]]\nname=\"a\"\npackage=\"a\"\nprio=1\n");
        assert!(err(&unknown).contains("prio"));
        // A name the manifest's own modules use is fine: the scenario's archive has its own.
        let shared = format!(
            "{ROLES}[[module]]\nname=\"a\"\npackage=\"a\"\n\
             [[scenario]]\nname=\"s\"\nexpect=\"suite\"\n\
             [[scenario.module]]\nname=\"a\"\npackage=\"b\"\n"
        );
        assert!(Manifest::parse("x", &shared).is_ok());
    }

    #[test]
    fn expect_round_trips_through_display() {
        for text in ["suite", "panic", "panic:kernel stack overflow"] {
            assert_eq!(Expect::try_from(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn repository_manifests_are_valid() {
        let ws = Workspace::locate().unwrap();
        let all = Manifest::load_all(&ws).unwrap();
        let names: Vec<_> = all.iter().map(|m| m.name.as_str()).collect();
        assert!(names.contains(&"run") && names.contains(&"test"), "{names:?}");
        let test = all.iter().find(|m| m.name == "test").unwrap();
        assert!(test.scenarios.iter().any(|s| s.expect == Expect::Suite));
    }
}
