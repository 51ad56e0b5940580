//! The plugin's arguments (`-plugin libtern_cacheplugin.so,name=value,...`), validated
//! into a [`Config`]. Unknown names and malformed values are errors: QEMU then refuses to
//! start, instead of measuring something other than what was asked.
//!
//! | argument | meaning | default |
//! |---|---|---|
//! | `out=PATH` | where the JSON report goes | standard error |
//! | `window-addr=A[:B...]` | guest virtual addresses of instructions executed once per iteration | none |
//! | `segment-addr=A[:B...]` | executing one of these ends the current segment | none |
//! | `warmup=N` | windows of each segment not averaged | 10 |
//! | `stop-after=K` | after K segments have ended, write the report and end QEMU | never |
//! | `l1=SIZE:WAYS:LINE` | both L1 caches (bytes, ways, line bytes) | `32768:8:64` |
//! | `tlb=ENTRIES:WAYS` | both first-level TLBs (4 KiB pages) | `64:4` |
//! | `kernel-base=A` | addresses at or above A are kernel | `0x8000000000000000` |
//! | `arm=first-window` / `arm=start` | when the models start running | `first-window` |
//!
//! Numbers are decimal or `0x` hexadecimal; lists are separated by `:` (QEMU itself splits
//! the argument string at commas).

use std::fmt;

use cachemodel::Geometry;

/// When the cache and TLB models start to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// At the first window boundary (anchor, marker or segment address): before that only
    /// instructions are counted, which keeps a long boot fast.
    FirstWindow,
    /// From the first instruction.
    Start,
}

/// The validated arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub out: Option<String>,
    pub window_addrs: Vec<u64>,
    pub segment_addrs: Vec<u64>,
    pub warmup: u64,
    pub stop_after: Option<u64>,
    pub l1: Geometry,
    pub tlb_entries: u32,
    pub tlb_ways: u32,
    pub kernel_base: u64,
    pub arm: Arm,
}

/// The page size of the TLB model.
pub const PAGE: u64 = 4096;

/// Most anchors (window and segment addresses together) accepted.
pub const MAX_ADDRS: usize = 256;

impl Default for Config {
    fn default() -> Self {
        Config {
            out: None,
            window_addrs: Vec::new(),
            segment_addrs: Vec::new(),
            warmup: 10,
            stop_after: None,
            l1: Geometry::new(32 * 1024, 8, 64)
                .unwrap_or_else(|_| unreachable!("the default L1 shape is valid")),
            tlb_entries: 64,
            tlb_ways: 4,
            // The upper half: kernel addresses under 4-level paging (from
            // 0xffff800000000000) and under 5-level paging (from 0xff00000000000000,
            // which Linux uses when the CPU has LA57, as QEMU's `-cpu max` does).
            kernel_base: 0x8000_0000_0000_0000,
            arm: Arm::FirstWindow,
        }
    }
}

/// Why an argument was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(text: impl Into<String>) -> Result<T, ArgError> {
    Err(ArgError(text.into()))
}

/// A decimal or `0x` hexadecimal number.
pub fn parse_number(text: &str) -> Result<u64, ArgError> {
    let t = text.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => t.replace('_', "").parse(),
    };
    parsed.or_else(|_| err(format!("not a number: {text:?}")))
}

fn parse_list(text: &str) -> Result<Vec<u64>, ArgError> {
    text.split(':').map(parse_number).collect()
}

fn parse_u32(text: &str) -> Result<u32, ArgError> {
    u32::try_from(parse_number(text)?).or_else(|_| err(format!("too large: {text}")))
}

impl TryFrom<&[String]> for Config {
    type Error = ArgError;

    /// Reads `name=value` arguments (as QEMU passes them to `qemu_plugin_install`).
    fn try_from(args: &[String]) -> Result<Self, ArgError> {
        let mut c = Config::default();
        for arg in args {
            let Some((name, value)) = arg.split_once('=') else {
                return err(format!("argument {arg:?} is not name=value"));
            };
            match name {
                "out" if !value.is_empty() => c.out = Some(value.to_owned()),
                "window-addr" => c.window_addrs.extend(parse_list(value)?),
                "segment-addr" => c.segment_addrs.extend(parse_list(value)?),
                "warmup" => c.warmup = parse_number(value)?,
                "stop-after" => c.stop_after = Some(parse_number(value)?),
                "l1" => {
                    let parts = parse_list(value)?;
                    let [size, ways, line] = parts[..] else {
                        return err("l1=SIZE:WAYS:LINE");
                    };
                    let ways = u32::try_from(ways).or_else(|_| err("l1: too many ways"))?;
                    c.l1 = Geometry::new(size, ways, line)
                        .map_err(|e| ArgError(format!("l1={value}: {e}")))?;
                }
                "tlb" => {
                    let parts: Vec<&str> = value.split(':').collect();
                    let [entries, ways] = parts[..] else {
                        return err("tlb=ENTRIES:WAYS");
                    };
                    c.tlb_entries = parse_u32(entries)?;
                    c.tlb_ways = parse_u32(ways)?;
                    let size = u64::from(c.tlb_entries) * PAGE;
                    Geometry::new(size, c.tlb_ways, PAGE)
                        .map_err(|e| ArgError(format!("tlb={value}: {e}")))?;
                }
                "kernel-base" => c.kernel_base = parse_number(value)?,
                "arm" => {
                    c.arm = match value {
                        "first-window" => Arm::FirstWindow,
                        "start" => Arm::Start,
                        _ => return err("arm=first-window or arm=start"),
                    }
                }
                _ => return err(format!("unknown argument {arg:?}")),
            }
        }
        if c.window_addrs.len() + c.segment_addrs.len() > MAX_ADDRS {
            return err(format!("at most {MAX_ADDRS} window and segment addresses"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ArgError> {
        let owned: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        Config::try_from(&owned[..])
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!((c.l1.size(), c.l1.ways(), c.l1.line_size()), (32768, 8, 64));
        assert_eq!((c.tlb_entries, c.tlb_ways, c.warmup), (64, 4, 10));
        assert_eq!(c.kernel_base, 0x8000_0000_0000_0000);
        assert_eq!(c.arm, Arm::FirstWindow);
    }

    #[test]
    fn every_argument() {
        let c = parse(&[
            "out=/tmp/x.json",
            "window-addr=0x401000:4198400",
            "window-addr=0x10",
            "segment-addr=0xffffffff81000000",
            "warmup=3",
            "stop-after=8",
            "l1=8192:2:32",
            "tlb=32:32",
            "kernel-base=0x8000_0000",
            "arm=start",
        ])
        .unwrap();
        assert_eq!(c.out.as_deref(), Some("/tmp/x.json"));
        assert_eq!(c.window_addrs, vec![0x401000, 0x401000, 0x10]);
        assert_eq!(c.segment_addrs, vec![0xffff_ffff_8100_0000]);
        assert_eq!((c.warmup, c.stop_after), (3, Some(8)));
        assert_eq!((c.l1.size(), c.l1.ways(), c.l1.line_size()), (8192, 2, 32));
        assert_eq!((c.tlb_entries, c.tlb_ways), (32, 32));
        assert_eq!(c.kernel_base, 0x8000_0000);
        assert_eq!(c.arm, Arm::Start);
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            "window-addr=0xg",
            "window-addr=",
            "warmup=-1",
            "l1=1000:8:64",
            "l1=32768:8",
            "tlb=64:3",
            "tlb=64",
            "colour=blue",
            "noequals",
            "arm=later",
            "out=",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad} accepted");
        }
    }
}
