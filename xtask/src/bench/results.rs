//! The pure side of `cargo xtask bench`: the `TERN-BENCH` serial protocol, merging the
//! results of several boots, `results.json`, and the table.
//!
//! Serial protocol (the Tern benchmark program and the Linux benchmark both speak it):
//!
//! ```text
//!   TERN-BENCH <metric> <value>        metric: [a-z0-9_]+; value: a non-negative number
//!   TERN-BENCH-NOTE <metric> <text>    a remark on a metric (why it is missing, runs that differ)
//!   TERN-BENCH done                    the program printed everything
//! ```
//!
//! results.json is one flat object `{"<metric>": <number>, ...}` plus `"meta"`: how the
//! numbers were made (mode, unit, QEMU, CPU, commit), whether the boots agreed, and what
//! is missing and why.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

const MARK: &str = "TERN-BENCH ";
const NOTE_MARK: &str = "TERN-BENCH-NOTE ";
const DONE: &str = "done";

/// The longest metric name accepted.
const MAX_NAME: usize = 64;

/// What one boot of a benchmark program reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuestReport {
    /// Metric → value (per iteration).
    pub metrics: BTreeMap<String, f64>,
    /// `(metric, text)` of every note, in order.
    pub notes: Vec<(String, String)>,
    /// Lines with a marker that do not follow the protocol (and repeated metrics).
    pub malformed: Vec<String>,
    /// `TERN-BENCH done` was seen.
    pub done: bool,
}

/// Whether `name` is a valid metric name: 1..=64 characters of `[a-z0-9_]`.
pub fn valid_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Parses a metric value: a finite, non-negative decimal number.
fn parse_value(text: &str) -> Option<f64> {
    let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let v: f64 = text.parse().ok()?;
    (plain && v.is_finite() && v >= 0.0).then_some(v)
}

/// Collects the protocol lines of a serial log (other lines are ignored).
pub fn parse_report(serial: &str) -> GuestReport {
    let mut report = GuestReport::default();
    for line in serial.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(at) = line.find(NOTE_MARK) {
            let rest = &line[at + NOTE_MARK.len()..];
            match rest.split_once(' ') {
                Some((metric, text)) if valid_metric_name(metric) && !text.trim().is_empty() => {
                    report.notes.push((metric.to_owned(), text.trim().to_owned()));
                }
                _ => report.malformed.push(line.to_owned()),
            }
        } else if let Some(at) = line.find(MARK) {
            let rest = line[at + MARK.len()..].trim();
            if rest == DONE {
                report.done = true;
                continue;
            }
            let mut words = rest.split_whitespace();
            match (words.next(), words.next().and_then(parse_value), words.next()) {
                (Some(name), Some(value), None) if valid_metric_name(name) => {
                    if report.metrics.contains_key(name) {
                        report.malformed.push(format!("{line} (repeated metric)"));
                    } else {
                        report.metrics.insert(name.to_owned(), value);
                    }
                }
                _ => report.malformed.push(line.to_owned()),
            }
        }
    }
    report
}

/// A metric whose boots did not report the same value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub metric: String,
    /// The value of each boot, in order (`null` where a boot did not report it).
    pub values: Vec<Option<f64>>,
}

/// Several boots' metrics combined.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    /// Each metric's smallest value over the boots that reported it.
    pub metrics: BTreeMap<String, f64>,
    /// Metrics on which the boots disagree (in value, or in being reported at all).
    pub differences: Vec<Difference>,
}

/// Combines the metrics of several boots of the same program and configuration.
pub fn merge_runs(runs: &[BTreeMap<String, f64>]) -> Merged {
    let mut merged = Merged::default();
    let names: std::collections::BTreeSet<&String> = runs.iter().flat_map(|r| r.keys()).collect();
    for name in names {
        let values: Vec<Option<f64>> = runs.iter().map(|r| r.get(name).copied()).collect();
        let best = values.iter().flatten().copied().fold(f64::INFINITY, f64::min);
        merged.metrics.insert(name.clone(), best);
        if values.iter().any(|v| *v != values[0]) {
            merged.differences.push(Difference { metric: name.clone(), values });
        }
    }
    merged
}

impl Difference {
    /// Whether this is a Linux metric.
    pub fn is_linux(&self) -> bool {
        self.metric.starts_with("linux_")
    }

    /// The largest relative spread of the reported values (`None` when a boot did not
    /// report the metric at all).
    pub fn relative_spread(&self) -> Option<f64> {
        let values: Option<Vec<f64>> = self.values.iter().copied().collect();
        let values = values?;
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(0.0, f64::max);
        Some(if lo > 0.0 { (hi - lo) / lo } else { 0.0 })
    }
}

/// One sentence on how far the boots agreed.
pub fn agreement(differences: &[Difference], runs: u32) -> String {
    let (linux, tern): (Vec<&Difference>, Vec<&Difference>) = differences.iter().partition(|d| d.is_linux());
    let mut out = if tern.is_empty() {
        format!("Tern's {runs} boots per configuration reported identical numbers")
    } else {
        format!("Tern's boots DISAGREE on {} metrics (see results.json)", tern.len())
    };
    if !linux.is_empty() {
        let spread = linux.iter().map(|d| d.relative_spread()).collect::<Option<Vec<f64>>>();
        match spread {
            Some(s) => out.push_str(&format!(
                "; Linux's boots differ on {} metrics by at most {:.4} %",
                linux.len(),
                s.iter().copied().fold(0.0, f64::max) * 100.0
            )),
            None => out.push_str(&format!("; Linux's boots differ on {} metrics (one boot missed some)", linux.len())),
        }
    }
    out
}

/// How the numbers were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// QEMU TCG with `-icount shift=0`: guest instructions.
    Icount,
    /// Hardware-backed KVM: CPU cycles (TSC).
    Kvm,
}

impl Mode {
    /// The unit of every metric but `kernel_text_bytes`.
    pub fn unit(self) -> &'static str {
        match self {
            Mode::Icount => "instructions",
            Mode::Kvm => "cycles",
        }
    }
}

/// The Linux side of a `--compare linux` run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LinuxMeta {
    /// `ok`, `failed` or `not run`.
    pub status: String,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The Debian package the kernel came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The kernel command line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
}

/// The `meta` object of results.json.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meta {
    pub mode: Mode,
    /// Unit of every metric but `kernel_text_bytes` (bytes).
    pub unit: String,
    /// `qemu-system-x86_64 --version`, first line.
    pub qemu: String,
    /// The host CPU model.
    pub cpu: String,
    /// The CPU QEMU shows the guest.
    pub guest_cpu: String,
    /// `git rev-parse HEAD`, with `-dirty` when the work tree has changes.
    pub commit: String,
    /// Boots of each configuration.
    pub runs: u32,
    /// Every Tern metric had the same value in every boot (Linux's boots are listed in
    /// `differences` too, but Linux is not fully deterministic even under icount).
    pub repeatable: bool,
    pub differences: Vec<Difference>,
    /// How a metric is measured.
    pub method: String,
    /// What each metric's iteration is, where the name does not say it all.
    pub definitions: BTreeMap<String, String>,
    /// Notes the programs printed, per metric (first boot of each configuration).
    pub notes: BTreeMap<String, Vec<String>>,
    /// Metrics of the issue that could not be measured, and why.
    pub not_yet_measurable: BTreeMap<String, String>,
    /// Boots that failed or printed malformed lines.
    pub errors: Vec<String>,
    pub linux: LinuxMeta,
}

/// The metrics the issue asks for (besides the IPC series), in table order.
pub const TERN_METRICS: [&str; 14] = [
    "syscall_floor",
    "syscall_null",
    "syscall_null_full_path",
    "ipc_rt_intra_0",
    "ipc_rt_intra_8",
    "ipc_rt_inter_0",
    "ipc_rt_inter_8",
    "pagefault_rt",
    "map_unmap_4k",
    "unmap_chain_1000",
    "string_ipc_4k",
    "string_ipc_64k",
    "irq_rt",
    "kernel_text_bytes",
];

/// The Linux metrics, in table order.
pub const LINUX_METRICS: [&str; 5] = [
    "linux_syscall_null",
    "linux_futex_rt_proc",
    "linux_futex_rt_thread",
    "linux_pipe_rt",
    "linux_pagefault",
];

/// Pairs compared in the Tern/Linux table.
pub const COMPARISONS: [(&str, &str); 5] = [
    ("syscall_null", "linux_syscall_null"),
    ("ipc_rt_inter_0", "linux_futex_rt_proc"),
    ("ipc_rt_inter_0", "linux_pipe_rt"),
    ("ipc_rt_intra_0", "linux_futex_rt_thread"),
    ("pagefault_rt", "linux_pagefault"),
];

/// Largest message in the IPC series (words).
pub const MAX_WORDS: u32 = 63;

/// A short description of each metric (for the table).
pub fn describe(metric: &str) -> &'static str {
    match metric {
        "syscall_floor" => "syscall straight to sysretq (bench-only kernel mode)",
        "syscall_null" => "SystemClock: cheapest complete X.2 call",
        "syscall_null_full_path" => "null stub through the full kernel entry/exit",
        "ipc_rt_intra_0" => "call/reply-wait round trip, same space, 0 words",
        "ipc_rt_intra_8" => "same, 8 words",
        "ipc_rt_inter_0" => "call/reply-wait round trip, two spaces, 0 words",
        "ipc_rt_inter_8" => "same, 8 words",
        "pagefault_rt" => "fault on a fresh page, pager replies with a map item",
        "map_unmap_4k" => "map a page by IPC, receiver unmaps it (flush), replies",
        "unmap_chain_1000" => "unmap a page mapped onward through 1000 spaces",
        "string_ipc_4k" => "call carrying a 4 KiB string item, empty reply",
        "string_ipc_64k" => "call carrying a 64 KiB string item, empty reply",
        "irq_rt" => "interrupt to user handler and its acknowledging reply",
        "kernel_text_bytes" => "executable bytes of the kernel ELF, boot code included",
        "linux_syscall_null" => "getppid",
        "linux_futex_rt_proc" => "futex ping-pong round trip, two processes",
        "linux_futex_rt_thread" => "futex ping-pong round trip, two threads",
        "linux_pipe_rt" => "1-byte pipe ping-pong round trip, two processes",
        "linux_pagefault" => "minor fault: write to fresh anonymous memory",
        _ => "",
    }
}

/// Whether `metric` belongs to the IPC series beyond the named metrics
/// (`ipc_rt_{intra,inter}_<n>`).
pub fn series_point(metric: &str) -> Option<(&'static str, u32)> {
    for kind in ["intra", "inter"] {
        let prefix = format!("ipc_rt_{kind}_");
        if let Some(n) = metric.strip_prefix(&prefix).and_then(|n| n.parse::<u32>().ok()) {
            if n <= MAX_WORDS && metric == format!("{prefix}{n}") {
                return Some((if kind == "intra" { "intra" } else { "inter" }, n));
            }
        }
    }
    None
}

/// One IPC series as `(words, value)` points in order.
pub fn series(metrics: &BTreeMap<String, f64>, kind: &str) -> Vec<(u32, f64)> {
    (0..=MAX_WORDS)
        .filter_map(|n| metrics.get(&format!("ipc_rt_{kind}_{n}")).map(|v| (n, *v)))
        .collect()
}

/// A JSON number for `v`: an integer when `v` is whole.
fn json_number(v: f64) -> serde_json::Value {
    if v.fract() == 0.0 && (0.0..9.0e15).contains(&v) {
        serde_json::Value::from(v as u64)
    } else {
        serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

/// results.json: the metrics as one flat object plus `"meta"`.
pub fn to_json(metrics: &BTreeMap<String, f64>, meta: &Meta) -> serde_json::Result<String> {
    let mut object = serde_json::Map::new();
    for (name, value) in metrics {
        object.insert(name.clone(), json_number(*value));
    }
    object.insert("meta".to_owned(), serde_json::to_value(meta)?);
    let mut text = serde_json::to_string_pretty(&serde_json::Value::Object(object))?;
    text.push('\n');
    Ok(text)
}

/// A number as the table shows it: whole numbers plain, others with two decimals.
pub fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// A ratio `a / b` as `0.0123 (1/81)`.
pub fn format_ratio(a: f64, b: f64) -> String {
    if b == 0.0 || a == 0.0 {
        return "-".to_owned();
    }
    let r = a / b;
    if r < 1.0 {
        format!("{r:.4} (1/{:.0})", b / a)
    } else {
        format!("{r:.2}")
    }
}

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table of text cells, rendered as aligned plain text or as Markdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub headers: Vec<String>,
    pub align: Vec<Align>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str], align: &[Align]) -> Self {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            align: align.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(slot) = w.get_mut(i) {
                    *slot = (*slot).max(cell.chars().count());
                }
            }
        }
        w
    }

    fn cell(&self, text: &str, i: usize, width: usize) -> String {
        match self.align.get(i).copied().unwrap_or(Align::Left) {
            Align::Left => format!("{text:<width$}"),
            Align::Right => format!("{text:>width$}"),
        }
    }

    /// Aligned plain text: a header line, a rule, the rows.
    pub fn plain(&self) -> String {
        let widths = self.widths();
        let line = |cells: &[String]| {
            let parts: Vec<String> =
                cells.iter().enumerate().map(|(i, c)| self.cell(c, i, widths[i])).collect();
            parts.join("  ").trim_end().to_owned() + "\n"
        };
        let mut out = line(&self.headers);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&rule.join("  "));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }

    /// A Markdown (GitHub) table (`|` in cells escaped).
    pub fn markdown(&self) -> String {
        let escape = |cells: &[String]| cells.iter().map(|c| c.replace('|', "\\|")).collect::<Vec<_>>();
        let escaped = Table {
            headers: escape(&self.headers),
            align: self.align.clone(),
            rows: self.rows.iter().map(|r| escape(r)).collect(),
        };
        escaped.markdown_unescaped()
    }

    fn markdown_unescaped(&self) -> String {
        let widths = self.widths();
        let line = |cells: &[String]| {
            let parts: Vec<String> =
                cells.iter().enumerate().map(|(i, c)| self.cell(c, i, widths[i])).collect();
            format!("| {} |\n", parts.join(" | "))
        };
        let mut out = line(&self.headers);
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| match self.align.get(i).copied().unwrap_or(Align::Left) {
                Align::Left => format!(":{}", "-".repeat((*w).max(2) - 1)),
                Align::Right => format!("{}:", "-".repeat((*w).max(2) - 1)),
            })
            .collect();
        out.push_str(&format!("| {} |\n", rule.join(" | ")));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// A goal of the issues, checked against the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub what: &'static str,
    /// The measured side, as text.
    pub value: String,
    pub target: &'static str,
    /// `None` when a metric it needs is missing.
    pub met: Option<bool>,
}

/// The goals of issues 4 and 7 that are stated in instructions (icount mode only).
pub fn goals(m: &BTreeMap<String, f64>) -> Vec<Goal> {
    let get = |k: &str| m.get(k).copied();
    let at_most = |what, metric: &str, limit: f64, target| {
        let v = get(metric);
        Goal { what, value: v.map_or("-".to_owned(), format_value), target, met: v.map(|v| v <= limit) }
    };
    let mut out = vec![
        at_most("ipc_rt_inter_0", "ipc_rt_inter_0", 180.0, "<= 180"),
        at_most("ipc_rt_inter_8", "ipc_rt_inter_8", 200.0, "<= 200"),
        at_most("ipc_rt_intra_0", "ipc_rt_intra_0", 180.0, "<= 180"),
        at_most("kernel_text_bytes", "kernel_text_bytes", 65536.0, "<= 65536 (64 KiB)"),
    ];
    let (rt, futex) = (get("ipc_rt_inter_0"), get("linux_futex_rt_proc"));
    out.push(Goal {
        what: "ipc_rt_inter_0 / linux_futex_rt_proc",
        value: match (rt, futex) {
            (Some(a), Some(b)) => format_ratio(a, b),
            _ => "-".to_owned(),
        },
        target: "< 1/60",
        met: rt.zip(futex).map(|(a, b)| a * 60.0 < b),
    });
    let (null, floor) = (get("syscall_null"), get("syscall_floor"));
    out.push(Goal {
        what: "syscall_null / syscall_floor",
        value: match (null, floor) {
            (Some(a), Some(b)) => format_ratio(a, b),
            _ => "-".to_owned(),
        },
        target: "<= 1.15",
        met: null.zip(floor).map(|(a, b)| a <= 1.15 * b),
    });
    out
}

/// The unit of `metric` in the table: bytes, lines and misses (`bench --cache`), else the
/// run's unit.
pub fn metric_unit<'u>(metric: &str, unit: &'u str) -> &'u str {
    if metric.ends_with("_bytes") {
        "bytes"
    } else if metric.contains("_lines_") {
        "lines"
    } else if metric.ends_with("_misses") || metric.ends_with("_misses_fa") {
        "misses"
    } else {
        unit
    }
}

/// The report: the named metrics, the Tern/Linux comparison (when Linux metrics exist),
/// the goals (icount mode) and the IPC series, as plain text or Markdown.
pub fn report(m: &BTreeMap<String, f64>, mode: Mode, markdown: bool) -> String {
    let render = |t: &Table| if markdown { t.markdown() } else { t.plain() };
    let unit = mode.unit();
    let mut out = String::new();

    let mut main = Table::new(&["metric", "value", "unit", "what"], &[Align::Left, Align::Right, Align::Left, Align::Left]);
    let mut listed: Vec<&str> = TERN_METRICS.to_vec();
    let others: Vec<&str> = m
        .keys()
        .map(String::as_str)
        .filter(|k| !TERN_METRICS.contains(k) && !LINUX_METRICS.contains(k) && series_point(k).is_none())
        .collect();
    listed.extend(others);
    listed.extend(LINUX_METRICS);
    for name in listed {
        let Some(v) = m.get(name) else { continue };
        let u = metric_unit(name, unit);
        main.push(vec![name.to_owned(), format_value(*v), u.to_owned(), describe(name).to_owned()]);
    }
    out.push_str(&render(&main));

    let pairs: Vec<_> = COMPARISONS
        .iter()
        .filter_map(|(t, l)| Some((*t, *l, *m.get(*t)?, *m.get(*l)?)))
        .collect();
    if !pairs.is_empty() {
        let mut cmp = Table::new(
            &["Tern metric", "Tern", "Linux metric", "Linux", "Tern/Linux"],
            &[Align::Left, Align::Right, Align::Left, Align::Right, Align::Right],
        );
        for (t, l, tv, lv) in pairs {
            cmp.push(vec![t.to_owned(), format_value(tv), l.to_owned(), format_value(lv), format_ratio(tv, lv)]);
        }
        out.push('\n');
        out.push_str(&render(&cmp));
    }

    if mode == Mode::Icount {
        let mut g = Table::new(&["goal", "measured", "target", "met"], &[Align::Left, Align::Right, Align::Left, Align::Left]);
        for goal in goals(m) {
            let met = match goal.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            g.push(vec![goal.what.to_owned(), goal.value, goal.target.to_owned(), met.to_owned()]);
        }
        out.push('\n');
        out.push_str(&render(&g));
    }

    let (intra, inter) = (series(m, "intra"), series(m, "inter"));
    if !intra.is_empty() || !inter.is_empty() {
        let mut s = Table::new(
            &["words", "intra", "inter", "words", "intra", "inter", "words", "intra", "inter", "words", "intra", "inter"],
            &[Align::Right; 12],
        );
        let lookup = |points: &[(u32, f64)], n: u32| {
            points.iter().find(|(w, _)| *w == n).map_or("-".to_owned(), |(_, v)| format_value(*v))
        };
        let rows = (MAX_WORDS + 1).div_ceil(4);
        for r in 0..rows {
            let mut row = Vec::new();
            for c in 0..4 {
                let n = c * rows + r;
                if n <= MAX_WORDS {
                    row.extend([n.to_string(), lookup(&intra, n), lookup(&inter, n)]);
                }
            }
            s.push(row);
        }
        out.push('\n');
        let _ = writeln!(out, "IPC round trip by message size ({unit}):");
        if markdown {
            out.push('\n');
        }
        out.push_str(&render(&s));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(items: &[(&str, f64)]) -> BTreeMap<String, f64> {
        items.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn cache_metrics_have_their_own_units() {
        assert_eq!(metric_unit("ipc_rt_inter_0_lines_i", "instructions"), "lines");
        assert_eq!(metric_unit("linux_futex_rt_proc_l1_misses", "instructions"), "misses");
        assert_eq!(metric_unit("ipc_rt_inter_0_l1_misses_fa", "instructions"), "misses");
        assert_eq!(metric_unit("kernel_text_bytes", "instructions"), "bytes");
        assert_eq!(metric_unit("ipc_rt_inter_0", "instructions"), "instructions");
    }

    #[test]
    fn parses_protocol_lines_among_other_output() {
        let log = "Tern 0.1.0 booting\r\n\
                   TERN-BENCH syscall_null 20\r\n\
                   pingpong: second space ready\n\
                   TERN-BENCH ipc_rt_inter_0 174.25\n\
                   TERN-BENCH-NOTE irq_rt not measured: no interrupt IPC\n\
                   TERN-BENCH done\n";
        let r = parse_report(log);
        assert!(r.done);
        assert_eq!(r.metrics, map(&[("syscall_null", 20.0), ("ipc_rt_inter_0", 174.25)]));
        assert_eq!(r.notes, [("irq_rt".to_owned(), "not measured: no interrupt IPC".to_owned())]);
        assert!(r.malformed.is_empty());
    }

    #[test]
    fn malformed_lines_are_kept_and_not_counted() {
        let log = "TERN-BENCH Bad 1\nTERN-BENCH x -1\nTERN-BENCH x 1 2\nTERN-BENCH x nan\n\
                   TERN-BENCH x inf\nTERN-BENCH x\nTERN-BENCH-NOTE x\nTERN-BENCH y 3\nTERN-BENCH y 4\n";
        let r = parse_report(log);
        assert!(!r.done);
        assert_eq!(r.metrics, map(&[("y", 3.0)]));
        assert_eq!(r.malformed.len(), 8);
        assert!(r.malformed[7].contains("repeated"));
    }

    #[test]
    fn agreement_separates_tern_and_linux() {
        let tern = Difference { metric: "ipc_rt_inter_0".into(), values: vec![Some(166.0), Some(167.0)] };
        let linux = Difference { metric: "linux_pipe_rt".into(), values: vec![Some(10000.0), Some(10001.0)] };
        assert_eq!(agreement(&[], 2), "Tern's 2 boots per configuration reported identical numbers");
        assert_eq!(
            agreement(&[linux.clone()], 2),
            "Tern's 2 boots per configuration reported identical numbers; Linux's boots differ on 1 metrics by at most 0.0100 %"
        );
        assert!(agreement(&[tern, linux], 2).starts_with("Tern's boots DISAGREE on 1 metrics"));
        let missing = Difference { metric: "linux_x".into(), values: vec![Some(1.0), None] };
        assert_eq!(missing.relative_spread(), None);
    }

    #[test]
    fn metric_names() {
        assert!(valid_metric_name("ipc_rt_inter_63"));
        assert!(!valid_metric_name(""));
        assert!(!valid_metric_name("a-b"));
        assert!(!valid_metric_name(&"a".repeat(65)));
    }

    #[test]
    fn merging_takes_the_best_and_reports_differences() {
        let a = map(&[("x", 10.0), ("y", 5.0), ("z", 1.0)]);
        let b = map(&[("x", 10.0), ("y", 4.0)]);
        let merged = merge_runs(&[a.clone(), b]);
        assert_eq!(merged.metrics, map(&[("x", 10.0), ("y", 4.0), ("z", 1.0)]));
        assert_eq!(
            merged.differences,
            [
                Difference { metric: "y".into(), values: vec![Some(5.0), Some(4.0)] },
                Difference { metric: "z".into(), values: vec![Some(1.0), None] },
            ]
        );
        assert!(merge_runs(&[a.clone(), a]).differences.is_empty());
    }

    fn meta() -> Meta {
        Meta {
            mode: Mode::Icount,
            unit: "instructions".into(),
            qemu: "QEMU emulator version 7.2".into(),
            cpu: "cpu".into(),
            guest_cpu: "max".into(),
            commit: "abc".into(),
            runs: 2,
            repeatable: true,
            differences: vec![],
            method: "m".into(),
            definitions: BTreeMap::new(),
            notes: BTreeMap::new(),
            not_yet_measurable: BTreeMap::from([("irq_rt".to_owned(), "no IRQ IPC".to_owned())]),
            errors: vec![],
            linux: LinuxMeta { status: "not run".into(), ..LinuxMeta::default() },
        }
    }

    #[test]
    fn json_is_flat_with_meta() {
        let text = to_json(&map(&[("ipc_rt_inter_0", 174.0), ("pagefault_rt", 1234.5)]), &meta()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o.len(), 3);
        assert_eq!(o["ipc_rt_inter_0"], serde_json::json!(174));
        assert!(o["ipc_rt_inter_0"].is_u64());
        assert_eq!(o["pagefault_rt"], serde_json::json!(1234.5));
        assert_eq!(o["meta"]["mode"], "icount");
        assert_eq!(o["meta"]["not_yet_measurable"]["irq_rt"], "no IRQ IPC");
        assert_eq!(o["meta"]["linux"], serde_json::json!({"status": "not run"}));
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn values_and_ratios() {
        assert_eq!(format_value(174.0), "174");
        assert_eq!(format_value(1234.5), "1234.50");
        assert_eq!(format_ratio(174.0, 12579.0), "0.0138 (1/72)");
        assert_eq!(format_ratio(23.0, 20.0), "1.15");
        assert_eq!(format_ratio(1.0, 0.0), "-");
    }

    #[test]
    fn tables_render_plain_and_markdown() {
        let mut t = Table::new(&["a", "bb"], &[Align::Left, Align::Right]);
        t.push(vec!["xyz".into(), "1".into()]);
        t.push(vec!["p|q".into(), "22".into()]);
        assert_eq!(t.plain(), "a    bb\n---  --\nxyz   1\np|q  22\n");
        assert_eq!(t.markdown(), "| a    | bb |\n| :--- | -: |\n| xyz  |  1 |\n| p\\|q | 22 |\n");
    }

    #[test]
    fn series_points_are_recognised() {
        assert_eq!(series_point("ipc_rt_intra_0"), Some(("intra", 0)));
        assert_eq!(series_point("ipc_rt_inter_63"), Some(("inter", 63)));
        assert_eq!(series_point("ipc_rt_inter_64"), None);
        assert_eq!(series_point("ipc_rt_inter_07"), None);
        assert_eq!(series_point("syscall_null"), None);
        let m = map(&[("ipc_rt_intra_1", 2.0), ("ipc_rt_intra_0", 1.0), ("ipc_rt_inter_0", 3.0)]);
        assert_eq!(series(&m, "intra"), [(0, 1.0), (1, 2.0)]);
    }

    #[test]
    fn goals_are_checked() {
        let m = map(&[
            ("ipc_rt_inter_0", 174.0),
            ("ipc_rt_inter_8", 201.0),
            ("syscall_null", 20.0),
            ("syscall_floor", 16.0),
            ("linux_futex_rt_proc", 12579.0),
        ]);
        let g = goals(&m);
        let met = |what: &str| g.iter().find(|x| x.what == what).unwrap().met;
        assert_eq!(met("ipc_rt_inter_0"), Some(true));
        assert_eq!(met("ipc_rt_inter_8"), Some(false));
        assert_eq!(met("ipc_rt_intra_0"), None);
        assert_eq!(met("ipc_rt_inter_0 / linux_futex_rt_proc"), Some(true));
        assert_eq!(met("syscall_null / syscall_floor"), Some(false));
    }

    #[test]
    fn report_lists_metrics_comparisons_goals_and_series() {
        let mut m = map(&[
            ("syscall_null", 20.0),
            ("ipc_rt_inter_0", 174.0),
            ("kernel_text_bytes", 77824.0),
            ("linux_futex_rt_proc", 12579.0),
            ("extra_metric", 5.0),
        ]);
        for n in 0..=MAX_WORDS {
            m.insert(format!("ipc_rt_intra_{n}"), 175.0 + f64::from(n));
        }
        let text = report(&m, Mode::Icount, false);
        assert!(text.contains("kernel_text_bytes    77824  bytes"), "{text}");
        assert!(text.contains("extra_metric"));
        assert!(text.contains("ipc_rt_inter_0   174  linux_futex_rt_proc  12579  0.0138 (1/72)"), "{text}");
        assert!(text.contains("IPC round trip by message size (instructions):"));
        // The series table: 16 rows of four (words, intra, inter) groups.
        assert!(text.contains("   15    190      -     31    206      -     47    222      -     63    238      -"), "{text}");
        assert!(!text.contains("ipc_rt_intra_5 "));
        let md = report(&m, Mode::Kvm, true);
        assert!(md.contains("| syscall_null "));
        assert!(md.contains("cycles"));
        assert!(!md.contains("| goal "), "no instruction goals in KVM mode");
    }
}
