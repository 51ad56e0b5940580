//! Symbolization of serial logs: every `0x<hex>` that falls in a known ELF's text gets
//! ` <function+0xoff at file:line>` appended, using the ELF's DWARF (inlined frames included).
//!
//! Which ELF an address belongs to depends on the lines before it:
//!
//! ```text
//!   kernel context (default)   every 0x<hex> in the kernel's text is annotated
//!   USER FAULT: ... (<prog>)   switches to <prog>'s context for this line and the register
//!                              and backtrace lines that follow: only ip=/rip= values and
//!                              backtrace entries are annotated, with <prog>'s ELF
//!   any other line             back to kernel context
//! ```
//!
//! Backtrace entries are return addresses, so their source line is looked up at `addr - 1`
//! (the call instruction), while the printed offset is that of `addr` itself. The exception
//! is an entry equal to the `rip=`/`ip=` of the fault or panic report it follows (the kernel
//! prints the faulting instruction as `#0`): that one is an exact instruction address.
//!
//! The ELF lookups sit behind the [`Describe`] trait so the annotation logic is tested with
//! a fake; [`ElfSymbols`] is the real implementation (addr2line + object).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};
use object::{Object, ObjectSection, SectionKind};

use crate::log::{parse_hex, parse_line, Line};
use crate::manifest::Manifest;
use crate::workspace::{Profile, Workspace};

/// Options of `cargo xtask symbolize`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Serial log to symbolize; standard input when omitted.
    #[arg(value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Use the ELFs of the release build.
    #[arg(long)]
    pub release: bool,
    /// Boot manifest naming the programs: boot/<NAME>.toml.
    #[arg(long, value_name = "NAME", default_value = "run")]
    pub manifest: String,
}

/// Runs `cargo xtask symbolize`: prints a saved serial log with annotations, using the
/// already built ELFs (nothing is rebuilt).
pub fn main(ws: &Workspace, args: Args) -> Result<std::process::ExitCode> {
    let manifest = Manifest::load(ws, &args.manifest)?;
    let profile = Profile::from_release_flag(args.release);
    let programs: Vec<(String, PathBuf)> =
        manifest.programs().map(|p| (p.entry.clone(), ws.elf(profile, &p.package))).collect();
    let text = match &args.log {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)?;
            bytes
        }
    };
    let symbolizer = Symbolizer::for_boot(ws.root(), &ws.kernel_elf(profile), &programs);
    print!("{}", symbolizer.annotate_text(&String::from_utf8_lossy(&text)));
    Ok(std::process::ExitCode::SUCCESS)
}

/// How an address was obtained, which decides where its source line is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrKind {
    /// The address of an instruction (a faulting `rip`).
    Exact,
    /// A return address from a backtrace: the call is just before it.
    Return,
}

/// Something that can say which function an address is in.
pub trait Describe {
    /// `function+0xoff at file:line` (with inlined frames) when `addr` is in this ELF's
    /// text, `None` otherwise.
    fn describe(&self, addr: u64, kind: AddrKind) -> Option<String>;
}

/// Symbols and DWARF line information of one ELF file.
pub struct ElfSymbols {
    loader: addr2line::Loader,
    /// Address ranges of the executable sections.
    text: Vec<Range<u64>>,
    /// Path prefixes removed from source file names (repository root, Rust sources).
    strip: Vec<String>,
}

impl ElfSymbols {
    /// Loads `path`; source paths under `repo_root` are shown relative to it.
    pub fn load(path: &Path, repo_root: &Path) -> Result<Self> {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file = object::File::parse(&*data)
            .with_context(|| format!("cannot parse {}", path.display()))?;
        let text = file
            .sections()
            .filter(|s| s.kind() == SectionKind::Text && s.size() > 0)
            .map(|s| s.address()..s.address() + s.size())
            .collect();
        let loader = addr2line::Loader::new(path)
            .map_err(|e| anyhow!("cannot load debug info of {}: {e}", path.display()))?;
        let mut root = repo_root.to_string_lossy().into_owned();
        if !root.ends_with('/') {
            root.push('/');
        }
        let strip = vec![root, "/usr/lib/rustlib/src/rust/".to_owned()];
        Ok(ElfSymbols { loader, text, strip })
    }

    fn short_path<'p>(&self, path: &'p str) -> &'p str {
        if let Some(rest) = self.strip.iter().find_map(|prefix| path.strip_prefix(prefix.as_str()))
        {
            return rest;
        }
        // rustc's own sources: /rustc/<commit hash>/library/...
        if let Some(rest) = path.strip_prefix("/rustc/") {
            if let Some((_hash, rest)) = rest.split_once('/') {
                return rest;
            }
        }
        path
    }
}

impl Describe for ElfSymbols {
    fn describe(&self, addr: u64, kind: AddrKind) -> Option<String> {
        if !self.text.iter().any(|range| range.contains(&addr)) {
            return None;
        }
        let probe = match kind {
            AddrKind::Exact => addr,
            AddrKind::Return => addr.saturating_sub(1),
        };
        let mut frames: Vec<Frame> = Vec::new();
        if let Ok(mut iter) = self.loader.find_frames(probe) {
            while let Ok(Some(frame)) = iter.next() {
                let name =
                    frame.function.as_ref().and_then(|f| f.demangle().ok()).map(Cow::into_owned);
                let location = frame
                    .location
                    .as_ref()
                    .and_then(|loc| Some(format!("{}:{}", self.short_path(loc.file?), loc.line?)));
                frames.push(Frame { name, location });
            }
        }
        let symbol = self.loader.find_symbol_info(probe).map(|s| {
            let name = addr2line::demangle_auto(Cow::from(s.name()), None).into_owned();
            (name, addr.wrapping_sub(s.address()))
        });
        render(&frames, symbol)
    }
}

/// One frame of the inline chain at an address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    name: Option<String>,
    /// `file:line`.
    location: Option<String>,
}

/// Formats an inline chain (innermost first) and the enclosing symbol (name, offset):
/// `inner at a.rs:1, inlined into outer+0x1c at b.rs:2`.
fn render(frames: &[Frame], symbol: Option<(String, u64)>) -> Option<String> {
    let (outer, inlined) = match frames.split_last() {
        Some((outer, inlined)) => (Some(outer), inlined),
        None => (None, &[][..]),
    };
    let outer_name = outer.and_then(|f| f.name.clone()).or_else(|| symbol.clone().map(|s| s.0));
    if outer_name.is_none() && outer.and_then(|f| f.location.as_ref()).is_none() {
        return None;
    }
    let mut outer_text = outer_name.unwrap_or_else(|| "?".to_owned());
    if let Some((_, offset)) = symbol {
        outer_text.push_str(&format!("+{offset:#x}"));
    }
    if let Some(location) = outer.and_then(|f| f.location.as_ref()) {
        outer_text.push_str(&format!(" at {location}"));
    }
    let mut parts: Vec<String> = inlined
        .iter()
        .map(|f| {
            let name = f.name.as_deref().unwrap_or("?");
            match &f.location {
                Some(location) => format!("{name} at {location}"),
                None => name.to_owned(),
            }
        })
        .collect();
    parts.push(outer_text);
    Some(parts.join(", inlined into "))
}

/// The symbol sources of one boot: the kernel and the programs by archive entry name.
#[derive(Default)]
pub struct Symbolizer {
    kernel: Option<Box<dyn Describe>>,
    programs: BTreeMap<String, Box<dyn Describe>>,
}

impl Symbolizer {
    /// A symbolizer with the given sources.
    pub fn new(
        kernel: Option<Box<dyn Describe>>,
        programs: BTreeMap<String, Box<dyn Describe>>,
    ) -> Self {
        Symbolizer { kernel, programs }
    }

    /// Loads the kernel ELF and every program ELF; files that cannot be loaded are reported
    /// on stderr and skipped (their addresses stay unannotated).
    pub fn for_boot(repo_root: &Path, kernel: &Path, programs: &[(String, PathBuf)]) -> Self {
        let load = |path: &Path| match ElfSymbols::load(path, repo_root) {
            Ok(symbols) => Some(Box::new(symbols) as Box<dyn Describe>),
            Err(err) => {
                eprintln!("xtask: warning: no symbols from {}: {err:#}", path.display());
                None
            }
        };
        let programs =
            programs.iter().filter_map(|(name, path)| Some((name.clone(), load(path)?))).collect();
        Self::new(load(kernel), programs)
    }

    /// A line-by-line annotator starting in kernel context.
    pub fn annotator(&self) -> Annotator<'_> {
        Annotator { symbolizer: self, user: None, report_ip: None }
    }

    /// Annotates a whole log, keeping its line terminators.
    pub fn annotate_text(&self, text: &str) -> String {
        let mut annotator = self.annotator();
        let mut out = String::with_capacity(text.len() + text.len() / 4);
        for piece in text.split_inclusive('\n') {
            let body = piece.trim_end_matches(['\r', '\n']);
            out.push_str(&annotator.annotate(body));
            out.push_str(&piece[body.len()..]);
        }
        out
    }
}

/// Annotates lines in order, tracking kernel/user context.
pub struct Annotator<'a> {
    symbolizer: &'a Symbolizer,
    /// The program whose fault report is being printed, if any.
    user: Option<String>,
    /// The `rip=`/`ip=` value of the current panic or fault report.
    report_ip: Option<u64>,
}

/// One `0x<hex>` token in a line.
struct HexToken<'l> {
    /// Byte offset just past the token.
    end: usize,
    value: u64,
    /// The word right before the token, e.g. `rip=`.
    label: &'l str,
}

impl Annotator<'_> {
    /// The annotations of `line` (without terminator): (byte offset to insert at, text).
    pub fn annotations(&mut self, line: &str) -> Vec<(usize, String)> {
        let parsed = parse_line(line);
        if let Line::UserFault(fault) = &parsed {
            self.user = Some(fault.program.to_owned());
        } else if self.user.is_some() && !continues_fault_report(line, &parsed) {
            self.user = None;
        }
        if matches!(parsed, Line::UserFault(_) | Line::KernelPanic { .. }) {
            self.report_ip = None;
        }
        let tokens = hex_tokens(line);
        if let Some(ip) = tokens.iter().find(|t| matches!(t.label, "ip=" | "rip=")) {
            self.report_ip = Some(ip.value);
        }
        let backtrace_addr = match parsed {
            Line::BacktraceEntry { addr, .. } => Some(addr),
            _ => None,
        };
        let in_user = self.user.is_some();
        let source = match &self.user {
            Some(program) => self.symbolizer.programs.get(program),
            None => self.symbolizer.kernel.as_ref(),
        };
        let Some(source) = source else { return Vec::new() };
        let mut out = Vec::new();
        for token in tokens {
            let is_backtrace = backtrace_addr == Some(token.value);
            if in_user && !is_backtrace && !matches!(token.label, "ip=" | "rip=") {
                continue;
            }
            let kind = if is_backtrace && self.report_ip != Some(token.value) {
                AddrKind::Return
            } else {
                AddrKind::Exact
            };
            if let Some(text) = source.describe(token.value, kind) {
                out.push((token.end, format!(" <{text}>")));
            }
        }
        out
    }

    /// `line` with its annotations inserted after each address.
    pub fn annotate(&mut self, line: &str) -> String {
        let annotations = self.annotations(line);
        let mut out = String::with_capacity(line.len() + 64 * annotations.len());
        let mut from = 0;
        for (at, text) in annotations {
            out.push_str(&line[from..at]);
            out.push_str(&text);
            from = at;
        }
        out.push_str(&line[from..]);
        out
    }
}

/// Whether a line after `USER FAULT` still belongs to the fault report: register lines
/// (`name=0x...`) and backtrace lines.
fn continues_fault_report(line: &str, parsed: &Line<'_>) -> bool {
    matches!(parsed, Line::BacktraceHeader | Line::BacktraceEntry { .. }) || line.contains("=0x")
}

/// Every `0x<1..=16 hex digits>` token standing on its own (not inside a longer word).
fn hex_tokens(line: &str) -> Vec<HexToken<'_>> {
    let bytes = line.as_bytes();
    let word_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(found) = line[i..].find("0x") {
        let start = i + found;
        let mut end = start + 2;
        while end < bytes.len() && word_byte(bytes[end]) {
            end += 1;
        }
        i = end;
        if start > 0 && word_byte(bytes[start - 1]) {
            continue;
        }
        let Some(value) = parse_hex(&line[start..end]) else { continue };
        let before = &line[..start];
        let label_start =
            before.rfind(|c: char| c.is_whitespace() || c == ',').map_or(0, |p| p + 1);
        tokens.push(HexToken { end, value, label: &before[label_start..] });
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Describes addresses in `[base, base + 0x1000)` as `<tag>_fn+0x<off>`.
    struct Fake {
        tag: &'static str,
        base: u64,
    }

    impl Describe for Fake {
        fn describe(&self, addr: u64, kind: AddrKind) -> Option<String> {
            let off = addr.checked_sub(self.base).filter(|off| *off < 0x1000)?;
            let ret = if kind == AddrKind::Return { " (ret)" } else { "" };
            Some(format!("{}_fn+{off:#x}{ret}", self.tag))
        }
    }

    fn symbolizer() -> Symbolizer {
        let mut programs: BTreeMap<String, Box<dyn Describe>> = BTreeMap::new();
        programs.insert("roottask".into(), Box::new(Fake { tag: "root", base: 0x400000 }));
        Symbolizer::new(Some(Box::new(Fake { tag: "kern", base: 0xffff_ffff_8000_0000 })), programs)
    }

    #[test]
    fn kernel_addresses_are_annotated_in_place() {
        let s = symbolizer();
        let mut a = s.annotator();
        assert_eq!(
            a.annotate("rip=0xffffffff80000010 rsp=0xffffffff90000000 x=0x400000"),
            "rip=0xffffffff80000010 <kern_fn+0x10> rsp=0xffffffff90000000 x=0x400000"
        );
        assert_eq!(
            a.annotate("  #1 0xffffffff80000020"),
            "  #1 0xffffffff80000020 <kern_fn+0x20 (ret)>"
        );
        // Not tokens: inside a word, too long, or not hex.
        let untouched = "a0xffffffff80000010 0xffffffff800000100000 0xffffffff8000001z";
        assert_eq!(a.annotate(untouched), untouched);
    }

    #[test]
    fn user_fault_switches_to_the_program() {
        let s = symbolizer();
        let log = "\
USER FAULT: thread 0x1c001 (roottask) page-fault addr=0x400008 ip=0x400010\r
rip=0x400010 rsp=0x7000 rax=0x400020\r
backtrace:\r
  #0 0x400030\r
  #1 0xffffffff80000004\r
back in the kernel 0xffffffff80000008 0x400040\n";
        let expected = "\
USER FAULT: thread 0x1c001 (roottask) page-fault addr=0x400008 ip=0x400010 <root_fn+0x10>\r
rip=0x400010 <root_fn+0x10> rsp=0x7000 rax=0x400020\r
backtrace:\r
  #0 0x400030 <root_fn+0x30 (ret)>\r
  #1 0xffffffff80000004\r
back in the kernel 0xffffffff80000008 <kern_fn+0x8> 0x400040\n";
        assert_eq!(s.annotate_text(log), expected);
    }

    #[test]
    fn backtrace_entry_equal_to_the_reported_ip_is_exact() {
        let s = symbolizer();
        let log = "\
KERNEL PANIC: page fault at rip=0xffffffff80000010
  rip=0xffffffff80000010 rsp=0x0
backtrace:
  #0 0xffffffff80000010
  #1 0xffffffff80000020
KERNEL PANIC: explicit
backtrace:
  #0 0xffffffff80000010
";
        let expected = "\
KERNEL PANIC: page fault at rip=0xffffffff80000010 <kern_fn+0x10>
  rip=0xffffffff80000010 <kern_fn+0x10> rsp=0x0
backtrace:
  #0 0xffffffff80000010 <kern_fn+0x10>
  #1 0xffffffff80000020 <kern_fn+0x20 (ret)>
KERNEL PANIC: explicit
backtrace:
  #0 0xffffffff80000010 <kern_fn+0x10 (ret)>
";
        assert_eq!(s.annotate_text(log), expected);
    }

    #[test]
    fn unknown_program_gets_no_annotations() {
        let s = symbolizer();
        let log = "USER FAULT: thread 7 (hello) gp addr=0x0 ip=0x400010\nrip=0x400010\n";
        assert_eq!(s.annotate_text(log), log);
    }

    #[test]
    fn inline_chains_are_rendered() {
        let frame = |name: &str, loc: &str| Frame {
            name: Some(name.to_owned()),
            location: Some(loc.to_owned()),
        };
        let frames = [frame("inner", "a.rs:1"), frame("mid", "b.rs:2"), frame("outer", "c.rs:3")];
        assert_eq!(
            render(&frames, Some(("outer_sym".into(), 0x1c))).unwrap(),
            "inner at a.rs:1, inlined into mid at b.rs:2, inlined into outer+0x1c at c.rs:3"
        );
        assert_eq!(render(&[], Some(("f".into(), 0))).unwrap(), "f+0x0");
        assert_eq!(render(&[], None), None);
    }

    #[inline(never)]
    fn symbolize_marker(x: u64) -> u64 {
        std::hint::black_box(x).wrapping_mul(3)
    }

    #[test]
    fn real_elf_lines_are_symbolized() {
        assert_eq!(symbolize_marker(2), 6);
        let exe = std::env::current_exe().unwrap();
        let data = std::fs::read(&exe).unwrap();
        let file = object::File::parse(&*data).unwrap();
        use object::ObjectSymbol;
        let addr = file
            .symbols()
            .find(|s| s.name().is_ok_and(|n| n.contains("symbolize_marker")))
            .map(|s| s.address())
            .expect("marker symbol in the test binary");
        let root = crate::workspace::Workspace::locate().unwrap();
        let elf = ElfSymbols::load(&exe, root.root()).unwrap();
        let text = elf.describe(addr + 1, AddrKind::Exact).unwrap();
        assert!(text.contains("symbolize_marker+0x1 at xtask/src/symbolize.rs:"), "{text}");
        assert_eq!(elf.describe(0, AddrKind::Exact), None);

        let mut programs: BTreeMap<String, Box<dyn Describe>> = BTreeMap::new();
        programs.insert("prog".into(), Box::new(ElfSymbols::load(&exe, root.root()).unwrap()));
        let s = Symbolizer::new(None, programs);
        let line = format!("rip={:#x}", addr + 1);
        let annotated = s.annotate_text(&format!(
            "USER FAULT: thread 1 (prog) ud addr=0x0 ip={:#x}\n{line}\n",
            addr + 1
        ));
        assert_eq!(annotated.matches("symbolize_marker+0x1").count(), 2, "{annotated}");
    }
}
