//! Checks of KernelInterface, the KIP's fields and descriptors, the UTCB the root task
//! starts with, the system clock and the kernel-memory KDB call.

use abi::kip::{self, MemDesc, MemKind, ProcessorInfo, ThreadInfo};
use abi::thread_id::THREAD_NO_BITS;

use crate::harness::{ensure, fail, now, Check, Tally};

/// Runs the checks.
pub fn run(s: &mut Tally) {
    s.run("kip::kernel-interface-returns-kip", kernel_interface);
    s.run("kip::magic", magic);
    s.run("kip::api-version", api_version);
    s.run("kip::kernel-is-tern", kernel_id);
    s.run("kip::kernel-descriptor", kernel_descriptor);
    s.run("kip::area-and-page-info", area_info);
    s.run("kip::thread-info", thread_info);
    s.run("kip::processor-info", processor_info);
    s.run("kip::syscall-stubs-published", stubs);
    s.run("kip::root-server-entry-is-start", root_entry);
    s.run("kip::root-server-region-is-image", root_region);
    s.run(
        "kip::memory-root-image-is-boot-loader-memory",
        mem_root_image,
    );
    s.run(
        "kip::memory-sigma0-image-is-boot-loader-memory",
        mem_sigma0_image,
    );
    s.run("kip::memory-conventional-exists", mem_conventional);
    s.run("kip::memory-kernel-reserved-exists", mem_reserved);
    s.run("kip::memory-descriptors-well-formed", mem_well_formed);
    s.run("utcb::root-thread-id", root_thread_id);
    s.run("utcb::local-id", local_id);
    s.run("utcb::pager-is-sigma0", root_pager);
    s.run("clock::advances", clock_advances);
    s.run("clock::monotonic", clock_monotonic);
    s.run("kdb::kernel-memory-info", kernel_memory);
}

fn kernel_interface() -> Check {
    let ki = l4::kip::kernel_interface();
    ensure!(
        ki.kip as u64 == 0xBFF0_0000,
        "KIP at {:#x}, expected 0xbff00000",
        ki.kip as u64
    );
    ensure!(
        ki.api_flags == kip::API_FLAGS,
        "API flags {:#x}",
        ki.api_flags
    );
    Ok(())
}

fn magic() -> Check {
    let k = l4::kip::get();
    ensure!(
        k.magic as u32 == kip::KIP_MAGIC && k.magic >> 32 == 0,
        "magic word {:#x}",
        k.magic
    );
    Ok(())
}

fn api_version() -> Check {
    let ki = l4::kip::kernel_interface();
    let k = l4::kip::get();
    ensure!(
        ki.api_version == kip::API_VERSION,
        "KernelInterface version {:#x}",
        ki.api_version
    );
    ensure!(
        k.api_version == ki.api_version && k.api_flags == ki.api_flags,
        "KIP {:#x}/{:#x} vs KernelInterface {:#x}/{:#x}",
        k.api_version,
        k.api_flags,
        ki.api_version,
        ki.api_flags
    );
    Ok(())
}

fn kernel_id() -> Check {
    let ki = l4::kip::kernel_interface();
    ensure!(
        ki.kernel_id == kip::TERN_KERNEL_ID,
        "kernel id {:#x}",
        ki.kernel_id
    );
    Ok(())
}

/// A KIP word at byte `offset` (in the descriptor area).
fn word(offset: u64) -> Option<u64> {
    l4::kip::get().word_at(usize::try_from(offset).ok()?)
}

fn kernel_descriptor() -> Check {
    let k = l4::kip::get();
    let at = k.kernel_desc_ptr;
    let (Some(id), Some(supplier)) = (word(at), word(at + 24)) else {
        fail!("kernel descriptor pointer {:#x} outside the KIP", at);
    };
    ensure!(id == kip::TERN_KERNEL_ID, "descriptor kernel id {:#x}", id);
    ensure!(
        supplier as u32 == u32::from_le_bytes(kip::TERN_SUPPLIER),
        "supplier {:#x}",
        supplier
    );
    // The version string follows the four words: "Tern ...".
    let mut text = [0u8; 5];
    for (i, b) in text.iter_mut().enumerate() {
        *b = k
            .rest
            .get(at as usize + 32 + i - kip::PROC_DESC_OFFSET)
            .copied()
            .unwrap_or(0);
    }
    ensure!(&text == b"Tern ", "version string starts {:?}", text);
    Ok(())
}

fn area_info() -> Check {
    let k = l4::kip::get();
    ensure!(
        k.utcb_area_info == kip::UTCB_AREA_INFO,
        "UtcbAreaInfo {:#x}",
        k.utcb_area_info
    );
    ensure!(
        k.kip_area_info == kip::KIP_AREA_INFO,
        "KipAreaInfo {:#x}",
        k.kip_area_info
    );
    ensure!(
        k.page_info & 0x7 == 7 && k.page_info & (1 << 12) != 0,
        "PageInfo {:#x} lacks rwx or 4 KiB pages",
        k.page_info
    );
    Ok(())
}

fn thread_info() -> Check {
    let ti = ThreadInfo::decode(l4::kip::get().thread_info);
    ensure!(ti.t as u32 == THREAD_NO_BITS, "t = {}", ti.t);
    ensure!(
        ti.system_base > 0 && ti.user_base >= ti.system_base,
        "SystemBase {} UserBase {}",
        ti.system_base,
        ti.user_base
    );
    Ok(())
}

fn processor_info() -> Check {
    let k = l4::kip::get();
    let pi = ProcessorInfo::decode(k.processor_info);
    ensure!(
        pi.cpus >= 1 && pi.log2_desc_size == kip::PROC_DESC_LOG2SIZE,
        "ProcessorInfo {:?}",
        pi
    );
    ensure!(
        k.proc_desc_ptr == kip::PROC_DESC_OFFSET as u64,
        "ProcDescPtr {:#x}",
        k.proc_desc_ptr
    );
    let internal = word(k.proc_desc_ptr + 8).unwrap_or(0);
    ensure!(internal > 0, "processor 0 internal frequency is 0 kHz");
    Ok(())
}

fn stubs() -> Check {
    let sc = l4::kip::get().syscalls;
    let all = [
        sc.space_control,
        sc.thread_control,
        sc.processor_control,
        sc.memory_control,
        sc.ipc,
        sc.unmap,
        sc.exchange_registers,
        sc.system_clock,
        sc.thread_switch,
        sc.schedule,
    ];
    ensure!(
        sc.lipc == sc.ipc,
        "Lipc {:#x} differs from Ipc {:#x}",
        sc.lipc,
        sc.ipc
    );
    for (i, &a) in all.iter().enumerate() {
        ensure!(
            a >= 0xFFFF_8000_0000_0000,
            "stub {} at {:#x} is not an absolute kernel-half address",
            i,
            a
        );
        ensure!(
            all[..i].iter().all(|&b| b != a),
            "stub {} shares address {:#x}",
            i,
            a
        );
    }
    // Each stub is reachable: SystemClock and ThreadSwitch were called already; all stubs
    // must lie within the 2 MiB around SystemClock's (one user-executable kernel page).
    let base = sc.system_clock & !0x1F_FFFF;
    ensure!(
        all.iter().all(|&a| a & !0x1F_FFFF == base),
        "stubs spread over several 2 MiB pages: {:x?}",
        all
    );
    Ok(())
}

extern "C" {
    /// The program's entry point (defined by the l4 runtime).
    fn _start();
    /// The ELF header, at the start of the loaded image (defined by the linker).
    static __ehdr_start: u8;
    /// The end of the loaded image, `.bss` included (defined by the linker).
    static _end: u8;
}

/// This program's loaded image as the linker laid it out: first and last byte.
fn own_image() -> (u64, u64) {
    (
        core::ptr::addr_of!(__ehdr_start) as u64,
        core::ptr::addr_of!(_end) as u64 - 1,
    )
}

fn root_entry() -> Check {
    let rs = l4::kip::get().root_server;
    let start = _start as *const () as u64;
    ensure!(
        rs.ip == start,
        "KIP root-server IP {:#x}, _start at {:#x}",
        rs.ip,
        start
    );
    Ok(())
}

fn root_region() -> Check {
    // RootServer low/high: first and last byte of the loaded image (abi::kip::RootServer),
    // at page granularity.
    let rs = l4::kip::get().root_server;
    let (low, last) = own_image();
    ensure!(
        rs.low == low & !0xFFF,
        "KIP root-server low {:#x}, image starts at {:#x}",
        rs.low,
        low
    );
    ensure!(rs.high >= last && rs.high <= last | 0xFFF, "KIP root-server high {:#x}; the image's last byte is {:#x} (high must be a last byte, not an end)", rs.high, last);
    Ok(())
}

/// The memory descriptors, decoded (undecodable ones as errors).
fn descriptors() -> impl Iterator<Item = Result<MemDesc, kip::KipError>> {
    let k = l4::kip::get();
    (0..k.memory().count as usize).map_while(move |i| k.mem_desc(i))
}

/// Is `[low, high]` inside a physical boot-loader descriptor (the last one that covers a
/// byte wins, as X.2 says, so check the last covering descriptor)?
fn covered_as_boot_loader(low: u64, high: u64) -> Check {
    ensure!(low < high, "empty region {:#x}..{:#x}", low, high);
    let mut last = None;
    for d in descriptors().flatten() {
        if !d.virtual_ && d.low <= low && high <= d.high {
            last = Some(d);
        }
    }
    match last {
        Some(d) if d.kind == MemKind::BootLoader => Ok(()),
        Some(d) => {
            print_memory_map();
            fail!(
                "{:#x}..{:#x} is last described as {:?}/{}",
                low,
                high,
                d.kind,
                d.subtype
            )
        }
        None => {
            print_memory_map();
            fail!("no physical descriptor covers {:#x}..{:#x}", low, high)
        }
    }
}

fn mem_root_image() -> Check {
    let (low, last) = own_image();
    covered_as_boot_loader(low, last)
}

fn mem_sigma0_image() -> Check {
    // σ0's image as the KIP gives it; its first and last page (whether `high` is read
    // as a last byte or as an end) must be boot-loader memory.
    let s0 = l4::kip::get().sigma0;
    ensure!(
        s0.low < s0.high,
        "KIP σ0 region {:#x}..{:#x} is empty",
        s0.low,
        s0.high
    );
    covered_as_boot_loader(s0.low, (s0.high - 1) | 0x3FF)
}

/// Prints the memory descriptors (to explain a failure).
fn print_memory_map() {
    for (i, d) in descriptors().enumerate() {
        match d {
            Ok(d) => l4::println!(
                "tests: memory descriptor {}: {:?}/{} {} {:#x}..{:#x}",
                i,
                d.kind,
                d.subtype,
                if d.virtual_ { "virtual" } else { "physical" },
                d.low,
                d.high
            ),
            Err(e) => l4::println!("tests: memory descriptor {}: {:?}", i, e),
        }
    }
}

fn mem_conventional() -> Check {
    let total: u64 = descriptors()
        .flatten()
        .filter(|d| d.kind == MemKind::Conventional && !d.virtual_)
        .map(|d| d.high - d.low + 1)
        .sum();
    ensure!(
        total >= 16 << 20,
        "only {} bytes of physical conventional memory described",
        total
    );
    Ok(())
}

fn mem_reserved() -> Check {
    ensure!(
        descriptors()
            .flatten()
            .any(|d| d.kind == MemKind::Reserved && !d.virtual_),
        "no physical reserved (kernel) memory descriptor"
    );
    Ok(())
}

fn mem_well_formed() -> Check {
    let k = l4::kip::get();
    let n = k.memory().count as usize;
    ensure!(
        n > 0 && n <= k.mem_desc_capacity(),
        "{} descriptors, room for {}",
        n,
        k.mem_desc_capacity()
    );
    for (i, d) in descriptors().enumerate() {
        match d {
            Ok(d) => ensure!(d.low <= d.high, "descriptor {} runs backwards: {:?}", i, d),
            Err(e) => fail!("descriptor {}: {:?}", i, e),
        }
    }
    Ok(())
}

fn root_thread_id() -> Check {
    let ti = ThreadInfo::decode(l4::kip::get().thread_info);
    let me = l4::utcb::my_global_id();
    ensure!(
        me.number() == ti.user_base as u32 + 2 && me.version() == 1,
        "{:?} with UserBase {}",
        me,
        ti.user_base
    );
    Ok(())
}

fn local_id() -> Check {
    let id = l4::utcb::my_local_id();
    ensure!(id.raw() == 0xBF00_0200, "local id {:#x}", id.raw());
    Ok(())
}

fn root_pager() -> Check {
    let p = l4::utcb::pager();
    ensure!(
        p == crate::workers::sigma0(),
        "pager TCR {:?}, σ0 is {:?}",
        p,
        crate::workers::sigma0()
    );
    Ok(())
}

fn clock_advances() -> Check {
    let t0 = now();
    let mut spins = 0u64;
    while now() == t0 && spins < 10_000_000 {
        spins += 1;
    }
    let t1 = now();
    ensure!(t1 > t0, "clock stuck at {}", t0);
    Ok(())
}

fn clock_monotonic() -> Check {
    let mut last = now();
    for i in 0..2000 {
        let t = now();
        ensure!(t >= last, "read {}: {} after {}", i, t, last);
        last = t;
        if i % 100 == 0 {
            l4::thread::yield_now();
        }
    }
    Ok(())
}

fn kernel_memory() -> Check {
    let (free, total) = l4::kdb::kernel_memory();
    ensure!(
        total > 0,
        "KDB 0x11 reports no kernel memory (not implemented?)"
    );
    ensure!(
        free > 0 && free <= total,
        "free {} of total {}",
        free,
        total
    );
    Ok(())
}
