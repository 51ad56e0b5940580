//! `tern-cacheplugin`: a QEMU TCG plugin that measures the cache footprint of a loop in
//! the guest — instructions (user/kernel), distinct 64-byte lines fetched and accessed
//! (user/kernel), and misses of simulated L1 caches and first-level TLBs — per iteration,
//! in the steady state after a warm-up.
//!
//! ```text
//!   qemu-system-x86_64 -icount shift=0,align=off,sleep=off ... \
//!       -plugin target/cacheplugin/release/libtern_cacheplugin.so,out=r.json,window-addr=0x1234
//! ```
//!
//! `cargo xtask cache` builds it and runs any guest under it; `cargo xtask bench --cache`
//! measures Tern's IPC round trips (and Linux's futex ping-pong) with it. The arguments are
//! in [`config`], the window logic and the report in [`meter`], the marker in [`decode`].
//!
//! It speaks version 1 of QEMU's plugin API (`qemu-plugin.h` of QEMU 7.2, Debian 12's
//! QEMU) through the few declarations below; the `qemu-plugin` crate starts at QEMU 8.1's
//! headers (and is GPL-licensed), so the plugin declares what it uses itself. QEMU exports
//! the functions from its executable; they resolve when QEMU loads the plugin.
//!
//! Repeatability: the plugin keeps no clock and no randomness; its models are pure
//! functions of the sequence of executed instructions and accesses, which under
//! `-icount shift=0,align=off,sleep=off` on one vCPU is the same in every run.
//!
//! Windows are not filtered by address space (CR3: the API of QEMU 7.2 cannot read
//! registers): a window address must be one that only the measured loop executes — true
//! of the benchmarks' loop heads (the second space of Tern's benchmark runs the same image,
//! but not the client's loop; a forked Linux child runs `pong`, not `ping`).
//!
//! What it cannot see: accesses of the page-table walker, and memory touched by devices.
//! Helpers that access memory on behalf of an instruction (string instructions, the
//! interrupt and `syscall` machinery where QEMU implements it with instrumented loads and
//! stores) are seen as that instruction's accesses.

#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod config;
pub mod decode;
pub mod meter;

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::Mutex;

use crate::config::Config;
use crate::decode::Packed;
use crate::meter::{Anchor, Meter, Next};

/// The subset of QEMU 7.2's `qemu-plugin.h` (API version 1) the plugin uses.
mod ffi {
    use std::ffi::{c_char, c_int, c_uint, c_void};

    /// `qemu_plugin_id_t`.
    pub type PluginId = u64;
    /// `qemu_plugin_meminfo_t`.
    pub type MemInfo = u32;

    /// `struct qemu_plugin_tb` (opaque).
    #[repr(C)]
    pub struct Tb {
        _opaque: [u8; 0],
    }

    /// `struct qemu_plugin_hwaddr` (opaque).
    #[repr(C)]
    pub struct HwAddr {
        _opaque: [u8; 0],
    }

    /// `struct qemu_plugin_insn` (opaque).
    #[repr(C)]
    pub struct Insn {
        _opaque: [u8; 0],
    }

    /// `enum qemu_plugin_cb_flags`: QEMU_PLUGIN_CB_NO_REGS.
    pub const CB_NO_REGS: c_int = 0;
    /// `enum qemu_plugin_mem_rw`: QEMU_PLUGIN_MEM_RW.
    pub const MEM_RW: c_int = 3;

    pub type TbTransCb = extern "C" fn(id: PluginId, tb: *mut Tb);
    pub type VcpuUdataCb = extern "C" fn(vcpu_index: c_uint, userdata: *mut c_void);
    pub type VcpuMemCb =
        extern "C" fn(vcpu_index: c_uint, info: MemInfo, vaddr: u64, userdata: *mut c_void);
    pub type UdataCb = extern "C" fn(id: PluginId, userdata: *mut c_void);

    extern "C" {
        pub fn qemu_plugin_register_vcpu_tb_trans_cb(id: PluginId, cb: TbTransCb);
        pub fn qemu_plugin_register_atexit_cb(id: PluginId, cb: UdataCb, userdata: *mut c_void);
        pub fn qemu_plugin_tb_n_insns(tb: *const Tb) -> usize;
        pub fn qemu_plugin_tb_get_insn(tb: *const Tb, idx: usize) -> *mut Insn;
        pub fn qemu_plugin_insn_data(insn: *const Insn) -> *const c_void;
        pub fn qemu_plugin_insn_size(insn: *const Insn) -> usize;
        pub fn qemu_plugin_insn_vaddr(insn: *const Insn) -> u64;
        pub fn qemu_plugin_register_vcpu_insn_exec_cb(
            insn: *mut Insn,
            cb: VcpuUdataCb,
            flags: c_int,
            userdata: *mut c_void,
        );
        pub fn qemu_plugin_register_vcpu_mem_cb(
            insn: *mut Insn,
            cb: VcpuMemCb,
            flags: c_int,
            rw: c_int,
            userdata: *mut c_void,
        );
        pub fn qemu_plugin_mem_size_shift(info: MemInfo) -> c_uint;
        pub fn qemu_plugin_get_hwaddr(info: MemInfo, vaddr: u64) -> *mut HwAddr;
        pub fn qemu_plugin_hwaddr_is_io(haddr: *const HwAddr) -> bool;
        pub fn qemu_plugin_hwaddr_phys_addr(haddr: *const HwAddr) -> u64;
        pub fn qemu_plugin_outs(string: *const c_char);
        /// From libc: ends the process without running `atexit` handlers.
        pub fn _exit(status: c_int) -> !;
    }
}

/// The plugin API version this plugin speaks (QEMU checks the symbol before installing).
#[no_mangle]
pub static qemu_plugin_version: c_int = 1;

/// Everything the callbacks share.
struct Plugin {
    config: Config,
    meter: Meter,
    /// The report has been written (by `stop-after` or at exit).
    reported: bool,
}

/// The plugin's state; QEMU runs one vCPU thread for `-smp 1`, so the lock is never
/// contended, and no callback re-enters another.
static STATE: Mutex<Option<Plugin>> = Mutex::new(None);

/// Runs `f` on the state (nothing when the plugin is not installed).
fn with_state<R>(f: impl FnOnce(&mut Plugin) -> R) -> Option<R> {
    let mut guard = STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    guard.as_mut().map(f)
}

/// What a special instruction's callback does, in its user-data word: the kind in the
/// upper half, the argument (anchor index, marker id) in the lower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    /// `window_addrs[i]`.
    Anchor(u32),
    Marker(u16),
    Segment,
    Cr3Write,
}

impl Special {
    fn encode(self) -> u64 {
        match self {
            Special::Anchor(i) => (1 << 32) | u64::from(i),
            Special::Marker(id) => (2 << 32) | u64::from(id),
            Special::Segment => 3 << 32,
            Special::Cr3Write => 4 << 32,
        }
    }

    fn decode(word: u64) -> Option<Self> {
        let arg = word as u32;
        match word >> 32 {
            1 => Some(Special::Anchor(arg)),
            2 => u16::try_from(arg).ok().map(Special::Marker),
            3 => Some(Special::Segment),
            4 => Some(Special::Cr3Write),
            _ => None,
        }
    }
}

/// The special roles of the instruction at `vaddr` with bytes `bytes`, in the order their
/// callbacks must run (a segment end before a window boundary).
fn specials(config: &Config, vaddr: u64, bytes: &[u8]) -> Vec<Special> {
    let mut out = Vec::new();
    if config.segment_addrs.contains(&vaddr) {
        out.push(Special::Segment);
    }
    if let Some(i) = config.window_addrs.iter().position(|&a| a == vaddr) {
        out.push(Special::Anchor(i as u32));
    }
    if let Some(id) = decode::marker_id(bytes) {
        out.push(Special::Marker(id));
    }
    if decode::writes_cr3(bytes) {
        out.push(Special::Cr3Write);
    }
    out
}

/// Writes the report where `out=` says (or to QEMU's log); once.
fn write_report(p: &mut Plugin, stopped: &str) {
    if p.reported {
        return;
    }
    p.reported = true;
    let text = p.meter.report(&p.config, stopped);
    match &p.config.out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &text) {
                eprintln!("tern-cacheplugin: cannot write {path}: {e}");
            }
        }
        None => eprint!("{text}"),
    }
}

extern "C" fn on_insn(_vcpu: c_uint, userdata: *mut c_void) {
    let p = Packed(userdata as u64);
    with_state(|s| s.meter.insn(p.vaddr(), p.insn_len()));
}

extern "C" fn on_mem(_vcpu: c_uint, info: ffi::MemInfo, vaddr: u64, _userdata: *mut c_void) {
    // SAFETY: `info` is the value QEMU passed to this memory callback.
    let shift = unsafe { ffi::qemu_plugin_mem_size_shift(info) };
    with_state(|s| {
        if !s.meter.armed() {
            return;
        }
        // SAFETY: `info` and `vaddr` are this callback's access; the result is valid
        // until the callback returns, and only read here.
        let paddr = unsafe {
            let hw = ffi::qemu_plugin_get_hwaddr(info, vaddr);
            if hw.is_null() || ffi::qemu_plugin_hwaddr_is_io(hw) {
                vaddr
            } else {
                ffi::qemu_plugin_hwaddr_phys_addr(hw)
            }
        };
        s.meter.mem(vaddr, paddr, 1u64 << shift.min(6));
    });
}

extern "C" fn on_special(_vcpu: c_uint, userdata: *mut c_void) {
    let Some(special) = Special::decode(userdata as u64) else {
        return;
    };
    let stop = with_state(|s| {
        let next = match special {
            Special::Anchor(i) => {
                let addr = s.config.window_addrs.get(i as usize).copied().unwrap_or(0);
                s.meter.anchor(Anchor::Addr(addr))
            }
            Special::Marker(id) => s.meter.anchor(Anchor::Marker(id)),
            Special::Segment => s.meter.segment_address(),
            Special::Cr3Write => {
                s.meter.cr3_write();
                Next::Continue
            }
        };
        if next == Next::Stop {
            write_report(s, "stop-after");
        }
        next == Next::Stop
    });
    if stop == Some(true) {
        // SAFETY: ends QEMU at once, without its exit handlers (which must not run on a
        // vCPU thread in the middle of a translation block); the report is written.
        unsafe { ffi::_exit(0) };
    }
}

extern "C" fn on_tb_trans(_id: ffi::PluginId, tb: *mut ffi::Tb) {
    // SAFETY: `tb` is the block QEMU is translating, valid during this callback.
    let n = unsafe { ffi::qemu_plugin_tb_n_insns(tb) };
    for i in 0..n {
        // SAFETY: `i` is below the block's instruction count.
        let insn = unsafe { ffi::qemu_plugin_tb_get_insn(tb, i) };
        // SAFETY: `insn` is an instruction of the block being translated.
        let (vaddr, size, data) = unsafe {
            (
                ffi::qemu_plugin_insn_vaddr(insn),
                ffi::qemu_plugin_insn_size(insn),
                ffi::qemu_plugin_insn_data(insn),
            )
        };
        let bytes: &[u8] = if data.is_null() {
            &[]
        } else {
            // SAFETY: QEMU keeps the instruction's `size` bytes at `data` during translation.
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) }
        };
        let roles = with_state(|s| specials(&s.config, vaddr, bytes)).unwrap_or_default();
        for role in roles {
            // SAFETY: registering a callback on an instruction of the block being
            // translated; the user data is a plain word, not a pointer.
            unsafe {
                ffi::qemu_plugin_register_vcpu_insn_exec_cb(
                    insn,
                    on_special,
                    ffi::CB_NO_REGS,
                    role.encode() as *mut c_void,
                )
            };
        }
        let Some(packed) = Packed::new(vaddr, size) else {
            continue;
        };
        // SAFETY: as above; the user data packs the address and the length.
        unsafe {
            ffi::qemu_plugin_register_vcpu_insn_exec_cb(
                insn,
                on_insn,
                ffi::CB_NO_REGS,
                packed.0 as *mut c_void,
            );
            ffi::qemu_plugin_register_vcpu_mem_cb(
                insn,
                on_mem,
                ffi::CB_NO_REGS,
                ffi::MEM_RW,
                std::ptr::null_mut(),
            );
        }
    }
}

extern "C" fn on_exit(_id: ffi::PluginId, _userdata: *mut c_void) {
    with_state(|s| write_report(s, "exit"));
}

/// Prints a message through QEMU's log.
fn say(text: &str) {
    let line = format!("tern-cacheplugin: {text}\n\0");
    if let Ok(c) = CStr::from_bytes_with_nul(line.as_bytes()) {
        // SAFETY: `c` is a NUL-terminated string that outlives the call.
        unsafe { ffi::qemu_plugin_outs(c.as_ptr()) };
    }
}

/// QEMU's entry point: reads the arguments, sets up the meter, registers the callbacks.
/// Returns non-zero (QEMU then refuses to start) on a bad argument.
///
/// # Safety
/// QEMU calls it once, with `argc` valid C strings in `argv`.
#[no_mangle]
pub unsafe extern "C" fn qemu_plugin_install(
    id: ffi::PluginId,
    _info: *const c_void,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    let mut args = Vec::new();
    for i in 0..usize::try_from(argc).unwrap_or(0) {
        // SAFETY: QEMU passes `argc` valid pointers in `argv`.
        let arg = unsafe { *argv.add(i) };
        if !arg.is_null() {
            // SAFETY: each argument is a NUL-terminated string owned by QEMU.
            args.push(
                unsafe { CStr::from_ptr(arg) }
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    let config = match Config::try_from(&args[..]) {
        Ok(c) => c,
        Err(e) => {
            say(&format!("bad argument: {e}"));
            return -1;
        }
    };
    let meter = Meter::new(&config);
    *STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Plugin {
        config,
        meter,
        reported: false,
    });
    // SAFETY: registering this plugin's callbacks with its own id during installation.
    unsafe {
        ffi::qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
        ffi::qemu_plugin_register_atexit_cb(id, on_exit, std::ptr::null_mut());
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_words_round_trip() {
        for s in [
            Special::Anchor(0),
            Special::Anchor(255),
            Special::Marker(0xFFFF),
            Special::Segment,
            Special::Cr3Write,
        ] {
            assert_eq!(Special::decode(s.encode()), Some(s));
        }
        assert_eq!(Special::decode(0), None);
        assert_eq!(Special::decode(9 << 32), None);
    }

    #[test]
    fn roles_of_an_instruction() {
        let c = Config {
            window_addrs: vec![0x10, 0x20],
            segment_addrs: vec![0x20],
            ..Config::default()
        };
        assert_eq!(
            specials(&c, 0x20, &[0x90]),
            vec![Special::Segment, Special::Anchor(1)]
        );
        assert_eq!(
            specials(&c, 0x30, &decode::marker_bytes(3)),
            vec![Special::Marker(3)]
        );
        assert_eq!(
            specials(&c, 0x30, &[0x0F, 0x22, 0xD8]),
            vec![Special::Cr3Write]
        );
        assert!(specials(&c, 0x30, &[0x90]).is_empty());
    }
}
