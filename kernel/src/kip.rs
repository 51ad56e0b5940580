//! The Kernel Interface Page: built once at boot, mapped read-only into every space at
//! the KIP area its SpaceControl chose; and KernelInterface (`lock; nop`).

use abi::kip::{self, ClockInfo, Kip, KipBuilder, MemDesc, MemKind, ProcessorDesc, ThreadInfo};

use crate::arch::layout::{phys_to_virt, USER_END};
use crate::arch::syscall::{stub_address, Stub};
use crate::arch::trap::Frame;
use crate::arch::apic;
use crate::kmem::{self, OutOfMemory};
use crate::space::Space;
use crate::thread::Tcb;
use crate::util::KCell;

/// Number of interrupt lines (interrupt thread ids 0..SYSTEM_BASE). The I/O APIC of
/// the PC platform has 24 inputs.
pub const SYSTEM_BASE: u32 = 24;

/// Feature strings Tern publishes (besides X.2 itself); see docs/abi.md.
pub use abi::tern::FEATURES;

/// Feature strings in the bench-only syscall-floor mode.
const FLOOR_FEATURES: [&str; 3] = [FEATURES[0], FEATURES[1], "tern-syscall-floor"];
const _: () = assert!(FEATURES.len() == 2);

static KIP_FRAME: KCell<u64> = KCell::new(0);

/// First user thread number (σ0's).
pub fn user_base() -> u32 {
    SYSTEM_BASE + 32
}

/// The KIP as the kernel sees it.
pub fn get() -> &'static mut Kip {
    // SAFETY: the KIP frame is a pool frame allocated at boot and never freed; only the
    // kernel writes it (user mappings are read-only).
    unsafe { &mut *(phys_to_virt(*KIP_FRAME.get()) as *mut Kip) }
}

/// Builds the KIP. Needs the memory layout (boot info) and the clock calibration.
pub fn init() {
    let frame = kmem::alloc_frame().expect("no memory for the KIP");
    *KIP_FRAME.get_mut() = frame;
    let k = get();
    k.magic = kip::KIP_MAGIC as u64;
    k.api_version = kip::API_VERSION;
    k.api_flags = kip::API_FLAGS;
    k.utcb_area_info = kip::UTCB_AREA_INFO;
    k.kip_area_info = kip::KIP_AREA_INFO;
    k.page_info = kip::PAGE_INFO;
    k.thread_info = ThreadInfo { t: abi::thread_id::THREAD_NO_BITS as u8, system_base: SYSTEM_BASE as u16, user_base: user_base() as u16 }.encode();
    k.clock_info = ClockInfo { read_precision: 1, schedule_precision: 1 }.encode();
    k.syscalls.space_control = stub_address(Stub::SpaceControl);
    k.syscalls.thread_control = stub_address(Stub::ThreadControl);
    k.syscalls.processor_control = stub_address(Stub::ProcessorControl);
    k.syscalls.memory_control = stub_address(Stub::MemoryControl);
    k.syscalls.ipc = stub_address(Stub::Ipc);
    k.syscalls.lipc = stub_address(Stub::Ipc);
    k.syscalls.unmap = stub_address(Stub::Unmap);
    k.syscalls.exchange_registers = stub_address(Stub::ExchangeRegisters);
    k.syscalls.system_clock = stub_address(Stub::SystemClock);
    k.syscalls.thread_switch = stub_address(Stub::ThreadSwitch);
    k.syscalls.schedule = stub_address(Stub::Schedule);

    let info = crate::boot::info();
    let mut descs = [MemDesc { kind: MemKind::Undefined, subtype: 0, virtual_: false, low: 0, high: 0 }; 64];
    let mut n = 0;
    let mut push = |kind: MemKind, subtype: u8, virtual_: bool, low: u64, end: u64| {
        if end > low && n < descs.len() {
            descs[n] = MemDesc { kind, subtype, virtual_, low, high: end - 1 };
            n += 1;
        }
    };
    // Every physical address σ0 owns is shared (device access) unless refined below;
    // later descriptors override earlier ones. Nothing is described above the physical
    // limit: σ0 treats undescribed memory as non-existent.
    push(MemKind::Shared, 0, false, 0, crate::mapping::phys_limit());
    for &(addr, size, kind) in &info.memmap[..info.memmap_len] {
        if kind != bootfmt::pvh::MemmapEntry::RAM {
            push(MemKind::Arch, kind.min(15) as u8, false, addr, addr.saturating_add(size));
        }
    }
    // The legacy VGA window and option ROMs stay device memory whatever the map says.
    push(MemKind::Shared, 0, false, 0xA_0000, 0xF_0000);
    for (s, e) in info.conventional.iter() {
        push(MemKind::Conventional, 0, false, s, e);
    }
    let (ps, pe) = kmem::pool_range();
    push(MemKind::Reserved, 0, false, ps, pe);
    let (ks, ke) = crate::boot::kernel_image_phys();
    push(MemKind::Reserved, 0, false, ks, ke);
    push(MemKind::BootLoader, 2, false, info.images[0].0, info.images[0].1);
    push(MemKind::BootLoader, 2, false, info.images[1].0, info.images[1].1);
    push(MemKind::BootLoader, 2, false, info.images[2].0, info.images[2].1);
    push(MemKind::BootLoader, 3, false, info.module.0, info.module.1);
    push(MemKind::Conventional, 0, true, 0, USER_END);
    let khz = apic::tsc_khz();
    let procs = [ProcessorDesc { external_khz: khz, internal_khz: khz, freq_change: 0, arch: 0 }];
    let builder = KipBuilder {
        processors: &procs,
        kernel: abi::kip::KernelDesc::tern(abi::kip::encode_date(2026, 11, 29)),
        version_string: concat!("Tern ", env!("CARGO_PKG_VERSION")),
        features: if crate::arch::syscall::syscall_floor() { &FLOOR_FEATURES } else { FEATURES },
        mem_descs: &descs[..n],
        min_mem_slots: 32,
    };
    builder.write(k).expect("KIP layout");
    // Root-server fields as a boot loader fills them: entry point, and the image range
    // with `high` the last byte (0/0 when absent).
    let root = |i: usize| {
        let (low, end) = info.images[i];
        abi::kip::RootServer { sp: 0, ip: info.entries[i], low, high: end.saturating_sub(1) }
    };
    k.sigma0 = root(0);
    k.root_server = root(1);
    k.sigma1 = root(2);
    k.boot_info = info.module.0;
}

/// Maps the KIP read-only at the space's KIP area (a kernel page: no mapping operation
/// ever touches it).
pub fn map_into(space: &mut Space) -> Result<(), OutOfMemory> {
    crate::mapping::map_kernel_page(space, space.kip_base, *KIP_FRAME.get(), false, false)
}

/// KernelInterface: `lock; nop` (F0 90) raised #UD. Returns false for any other #UD.
pub fn kernel_interface(t: &mut Tcb, frame: &mut Frame) -> bool {
    let mut insn = [0u8; 2];
    if !crate::kdb::read_user(frame.rip, &mut insn) || insn != [0xF0, 0x90] {
        return false;
    }
    let k = get();
    frame.rax = t.space().kip_base;
    frame.rcx = k.api_version;
    frame.rdx = k.api_flags;
    frame.rsi = abi::kip::TERN_KERNEL_ID;
    frame.rip += 2;
    true
}
