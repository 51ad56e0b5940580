//! Boot: from the PVH start info to running root servers.
//!
//! 1. Read the PVH start info (memory map, command line, the boot archive module).
//! 2. Build the kernel page table: direct map of physical memory (1 GiB pages), the
//!    kernel image with per-section rights (text RX, stubs user-RX, rodata R, data RW),
//!    a guard page under the boot stack, and the shared thread-table slot.
//! 3. Place σ0 and the root task from the boot archive at their physical addresses
//!    (as a kickstart loader would), carve the kernel pool out of the remaining RAM,
//!    and describe all of it in the KIP.
//! 4. Create the root servers' spaces and threads.

use abi::thread_id::ThreadId;
use bootfmt::cpio::Archive;
use bootfmt::elf::Elf;
use bootfmt::memmap::{usable_ram, RangeSet};
use bootfmt::pvh::{MemmapEntry, ModlistEntry, StartInfo};

use crate::arch::boot::BOOT_STACK;
use crate::arch::layout::{image_to_phys, phys_to_virt, KERNEL_VMA, TCB_AREA};
use crate::arch::paging::{self, pte};
use crate::kmem;
use crate::space::Space;
use crate::thread;
use crate::util::{align_down, align_up, KCell};
use crate::{kprintln, kip};

/// Most memory-map entries and usable ranges handled.
pub const MAX_RANGES: usize = 64;

/// What boot learned about the machine, kept for the KIP and σ0's faults.
pub struct BootInfo {
    pub memmap: [(u64, u64, u32); MAX_RANGES],
    pub memmap_len: usize,
    /// Usable RAM left for σ0 (after kernel, pool, modules).
    pub conventional: RangeSet<MAX_RANGES>,
    /// The boot archive (physical range).
    pub module: (u64, u64),
    /// Root-server images (physical ranges): σ0, root task, σ1.
    pub images: [(u64, u64); 3],
    /// Their entry points.
    pub entries: [u64; 3],
    pub cmdline: [u8; 256],
    pub cmdline_len: usize,
    pub rsdp: u64,
}

static INFO: KCell<BootInfo> = KCell::new(BootInfo {
    memmap: [(0, 0, 0); MAX_RANGES],
    memmap_len: 0,
    conventional: RangeSet::new(),
    module: (0, 0),
    images: [(0, 0); 3],
    entries: [0; 3],
    cmdline: [0; 256],
    cmdline_len: 0,
    rsdp: 0,
});

/// Boot information.
pub fn info() -> &'static BootInfo {
    INFO.get()
}

impl BootInfo {
    /// The kernel command line.
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// Value of `key=value` on the command line.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.cmdline().split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }
}

/// Physical range of the kernel image.
pub fn kernel_image_phys() -> (u64, u64) {
    // SAFETY: taking addresses of linker symbols.
    unsafe { (image_to_phys(&__kernel_start as *const u8 as u64), image_to_phys(&__kernel_end as *const u8 as u64)) }
}

/// The guard page below the boot stack.
pub fn boot_stack_guard() -> u64 {
    // SAFETY: taking the address of a static.
    unsafe { BOOT_STACK.as_ptr() as u64 }
}

extern "C" {
    static __kernel_start: u8;
    static __text_end: u8;
    static __stubs_start: u8;
    static __stubs_end: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
}

#[repr(C, align(4096))]
struct Table([u64; 512]);
const EARLY_TABLES: usize = 16;
static EARLY: KCell<[Table; EARLY_TABLES]> = KCell::new([const { Table([0; 512]) }; EARLY_TABLES]);
static EARLY_USED: KCell<usize> = KCell::new(0);

fn early_table() -> u64 {
    let used = EARLY_USED.get_mut();
    assert!(*used < EARLY_TABLES, "out of early page tables");
    let va = &EARLY.get_mut()[*used] as *const Table as u64;
    *used += 1;
    image_to_phys(va)
}

/// Reads physical memory below 1 GiB before the direct map exists (boot mapping).
fn early_read<T: Copy>(pa: u64) -> T {
    assert!(pa < (1 << 30), "boot structure above 1 GiB");
    // SAFETY: the boot page table maps physical 0..1 GiB at KERNEL_VMA; T is plain data.
    unsafe { core::ptr::read_unaligned((KERNEL_VMA + pa) as *const T) }
}

/// Highest physical address of any RAM entry.
fn max_phys(map: &[(u64, u64, u32)]) -> u64 {
    map.iter().filter(|e| e.2 == MemmapEntry::RAM).map(|e| e.0.saturating_add(e.1)).max().unwrap_or(0)
}

/// Step 1 and 2: read the start info and switch to the kernel page table.
pub fn init_memory(start_info_pa: u64) {
    let si: StartInfo = early_read(start_info_pa);
    if si.magic != bootfmt::pvh::PVH_MAGIC {
        panic!("no PVH start info (magic {:#x})", si.magic);
    }
    let info = INFO.get_mut();
    let n = (si.memmap_entries as usize).min(MAX_RANGES);
    for i in 0..n {
        let e: MemmapEntry = early_read(si.memmap_paddr + (i * core::mem::size_of::<MemmapEntry>()) as u64);
        info.memmap[i] = (e.addr, e.size, e.kind);
    }
    info.memmap_len = n;
    info.rsdp = si.rsdp_paddr;
    if si.cmdline_paddr != 0 {
        for i in 0..255 {
            let b: u8 = early_read(si.cmdline_paddr + i as u64);
            if b == 0 {
                break;
            }
            info.cmdline[i] = b;
            info.cmdline_len = i + 1;
        }
    }
    if si.nr_modules > 0 {
        let m: ModlistEntry = early_read(si.modlist_paddr);
        info.module = (m.paddr, m.paddr + m.size);
    }
    build_kernel_page_table(max_phys(&info.memmap[..n]));
}

fn build_kernel_page_table(max_phys: u64) {
    assert!(crate::arch::cpu::features().page1g, "Tern needs 1 GiB pages (pdpe1gb) for its direct map");
    let pml4 = early_table();
    let tab = |pa: u64| phys_to_boot(pa) as *mut u64;
    // Direct map: at least 4 GiB (covers the APIC and other MMIO below 4 GiB).
    let dm = early_table();
    let gib = align_up(max_phys.max(4 << 30), 1 << 30) >> 30;
    for i in 0..gib.min(512) {
        // SAFETY: `dm` is a fresh early table (boot-mapped); i < 512.
        unsafe { *tab(dm).add(i as usize) = (i << 30) | pte::PRESENT | pte::WRITE | pte::HUGE | pte::GLOBAL | pte::NX };
    }
    let tcb = early_table();
    // The thread table's page directories exist from boot on, so creating and deleting
    // threads only ever allocates and frees page tables and stack/TCB frames.
    let tcb_span = crate::thread::MAX_THREADS as u64 * crate::arch::layout::TCB_SLOT;
    for i in 0..tcb_span.div_ceil(1 << 30) {
        let pd = early_table();
        // SAFETY: writing entries of fresh early tables.
        unsafe { *tab(tcb).add((((TCB_AREA >> 30) & 0x1FF) + i) as usize) = pd | pte::PRESENT | pte::WRITE };
    }
    let kpdpt = early_table();
    let kpd = early_table();
    // SAFETY: writing entries of fresh early tables.
    unsafe {
        *tab(pml4).add(256) = dm | pte::PRESENT | pte::WRITE;
        *tab(pml4).add(((TCB_AREA >> 39) & 0x1FF) as usize) = tcb | pte::PRESENT | pte::WRITE;
        *tab(pml4).add(511) = kpdpt | pte::PRESENT | pte::WRITE | pte::USER;
        *tab(kpdpt).add(510) = kpd | pte::PRESENT | pte::WRITE | pte::USER;
    }
    // Kernel image, 4 KiB pages with section rights.
    // SAFETY: taking addresses of linker symbols.
    let (start, text_end, stubs_start, stubs_end, ro_end, end) = unsafe {
        (
            &__kernel_start as *const u8 as u64,
            &__text_end as *const u8 as u64,
            &__stubs_start as *const u8 as u64,
            &__stubs_end as *const u8 as u64,
            &__rodata_end as *const u8 as u64,
            &__kernel_end as *const u8 as u64,
        )
    };
    let guard = boot_stack_guard();
    let mut va = align_down(start, 4096);
    while va < end {
        let pd_index = ((va >> 21) & 0x1FF) as usize;
        // SAFETY: `kpd` is an early table; PT frames come from the early pool.
        let pde = unsafe { &mut *tab(kpd).add(pd_index) };
        if *pde & pte::PRESENT == 0 {
            *pde = early_table() | pte::PRESENT | pte::WRITE | pte::USER;
        }
        let pt = *pde & pte::ADDR;
        let flags = if va >= stubs_start && va < stubs_end {
            pte::USER
        } else if va < text_end {
            0
        } else if va < ro_end {
            pte::NX
        } else {
            pte::WRITE | pte::NX
        };
        if va != guard {
            // SAFETY: `pt` is an early table; index < 512.
            unsafe { *tab(pt).add(((va >> 12) & 0x1FF) as usize) = image_to_phys(va) | flags | pte::PRESENT | pte::GLOBAL };
        }
        va += 4096;
    }
    crate::space::set_kernel_pml4(pml4);
    // SAFETY: the new table maps the kernel image at the same addresses, the direct map,
    // and (through the kernel PDPT) the current boot stack.
    unsafe { paging::write_cr3(pml4) };
}

/// Converts an early-table physical address back to its image address.
fn phys_to_boot(pa: u64) -> u64 {
    pa + KERNEL_VMA
}

/// Step 3: places the root servers, sets up the pool, returns the archive.
pub fn init_pool_and_images() -> Option<Archive<'static>> {
    let info = INFO.get_mut();
    // SAFETY: taking addresses of linker symbols.
    let (kstart, kend) = unsafe { (image_to_phys(&__kernel_start as *const u8 as u64), image_to_phys(&__kernel_end as *const u8 as u64)) };
    let archive = if info.module.1 > info.module.0 {
        // SAFETY: the module range is RAM the loader filled, mapped by the direct map,
        // and reserved below so nothing else overwrites it.
        let bytes = unsafe { core::slice::from_raw_parts(phys_to_virt(info.module.0) as *const u8, (info.module.1 - info.module.0) as usize) };
        let a = Archive::new(bytes);
        match a.validate() {
            Ok(_) => Some(a),
            Err(e) => {
                kprintln!("boot archive unreadable: {:?}", e);
                None
            }
        }
    } else {
        None
    };
    // Load images to their physical addresses.
    let mut reserved = [(0u64, 0x10_0000u64), (kstart, kend), info.module, (0, 0), (0, 0), (0, 0)];
    let ram: RangeSet<MAX_RANGES> = usable_ram(&info.memmap[..info.memmap_len], &reserved[..3]).expect("memory map");
    if let Some(a) = &archive {
        for (i, name) in ROOT_SERVERS.iter().enumerate() {
            if let Ok(Some(entry)) = a.find(name) {
                match load_image(entry.data, &ram, &reserved[..3 + i]) {
                    Ok(range) => {
                        info.images[i] = range;
                        info.entries[i] = Elf::parse(entry.data).map_or(0, |e| e.entry());
                        reserved[3 + i] = range;
                    }
                    Err(e) => kprintln!("{}: cannot load: {}", name, e),
                }
            }
        }
    }
    let mut usable: RangeSet<MAX_RANGES> = usable_ram(&info.memmap[..info.memmap_len], &reserved).expect("memory map");
    let total = usable.total();
    let kmem_size = info
        .option("kmem")
        .and_then(|v| v.strip_suffix('M').and_then(|m| m.parse::<u64>().ok()))
        .map_or((total / 4).clamp(16 << 20, 512 << 20), |m| m << 20);
    let (lo, hi) = usable.iter().max_by_key(|(s, e)| e - s).expect("no usable memory");
    let pool_end = align_down(hi, 1 << 21);
    let pool_start = align_down(pool_end.saturating_sub(kmem_size), 1 << 21).max(align_up(lo, 4096));
    usable.remove(pool_start, pool_end).expect("memory map");
    kmem::init(pool_start, pool_end);
    info.conventional = usable;
    kprintln!(
        "memory: {} MiB usable RAM in {} ranges; kernel image {:#x}-{:#x}; kernel pool {} MiB at {:#x}",
        total >> 20,
        ram.len(),
        kstart,
        kend,
        (pool_end - pool_start) >> 20,
        pool_start
    );
    archive
}

/// Copies an ELF image to its physical load addresses; returns the range it occupies.
fn load_image(bytes: &[u8], ram: &RangeSet<MAX_RANGES>, avoid: &[(u64, u64)]) -> Result<(u64, u64), &'static str> {
    let elf = Elf::parse(bytes).map_err(|_| "not a valid ELF64 x86_64 executable")?;
    elf.validate_layout().map_err(|_| "overlapping or invalid segments")?;
    let mut lo = u64::MAX;
    let mut hi = 0;
    for seg in elf.segments() {
        let seg = seg.map_err(|_| "bad segment")?;
        let (s, e) = (align_down(seg.paddr, 4096), align_up(seg.paddr + seg.memsz, 4096));
        let in_ram = ram.iter().any(|(a, b)| s >= a && e <= b);
        let clash = avoid.iter().any(|&(a, b)| s < b && a < e);
        if !in_ram || clash {
            return Err("segment not in free RAM");
        }
        lo = lo.min(s);
        hi = hi.max(e);
    }
    for seg in elf.segments().flatten() {
        let dst = phys_to_virt(seg.paddr) as *mut u8;
        // SAFETY: the segment's physical range is free RAM (checked above), mapped by the
        // direct map; the data slice is `filesz` bytes, zero-filled up to `memsz`.
        unsafe {
            core::ptr::copy_nonoverlapping(seg.data.as_ptr(), dst, seg.data.len());
            core::ptr::write_bytes(dst.add(seg.data.len()), 0, (seg.memsz - seg.data.len() as u64) as usize);
        }
    }
    Ok((lo, hi))
}

/// Archive entry names of the root servers, in load order: σ0, the root task and the
/// optional σ1.
pub const ROOT_SERVERS: [&str; 3] = ["sigma0", "roottask", "sigma1"];

/// X.2 root-server placement (fixed by the binding; see docs/abi.md).
pub const ROOT_UTCB_AREA: u64 = 0xBF00_0000;
pub const ROOT_UTCB_LOG2: u8 = 18;
pub const ROOT_KIP_AREA: u64 = 0xBFF0_0000;

/// Step 4: creates σ0 (and the root task) from the archive.
pub fn start_root_servers(archive: &Archive<'static>) {
    let info = INFO.get();
    let user_base = kip::user_base();
    for (i, name) in ROOT_SERVERS.iter().enumerate() {
        let Ok(Some(entry)) = archive.find(name) else {
            if i == 0 {
                kprintln!("boot archive has no sigma0");
            }
            continue;
        };
        if info.images[i].1 == 0 {
            continue;
        }
        let Ok(elf) = Elf::parse(entry.data) else { continue };
        // σ0 = UserBase, σ1 = UserBase + 1, root task = UserBase + 2 (X.2).
        let id = ThreadId::global(user_base + [0, 2, 1][i], 1);
        let sigma0_id = ThreadId::global(user_base, 1);
        let root_id = ThreadId::global(user_base + 2, 1);
        match create_root_server(name, &elf, id, i == 0, if i == 0 { ThreadId::NIL } else { sigma0_id }, root_id) {
            Ok(()) => kprintln!("{}: thread {:#x}, entry {:#x}", name, id.raw(), elf.entry()),
            Err(e) => kprintln!("{}: cannot start: {}", name, e),
        }
    }
}

fn create_root_server(name: &str, elf: &Elf, id: ThreadId, sigma0: bool, pager: ThreadId, scheduler: ThreadId) -> Result<(), &'static str> {
    let space = Space::create(name).map_err(|_| "out of kernel memory")?;
    space.privileged = true;
    space.sigma0 = sigma0;
    if sigma0 {
        // σ0 owns every I/O port at start, as it owns all memory.
        crate::ioport::give_all(space).map_err(|_| "out of kernel memory")?;
    }
    space.utcb_base = ROOT_UTCB_AREA;
    space.utcb_log2 = ROOT_UTCB_LOG2;
    space.kip_base = ROOT_KIP_AREA;
    space.kip_log2 = 12;
    kip::map_into(space).map_err(|_| "out of kernel memory")?;
    if sigma0 {
        crate::mapping::init(space);
    }
    // Map the image as loaded (virtual = physical for root servers, as kickstart does):
    // σ0's pages are its own roots, the others' are mapped from σ0's.
    for seg in elf.segments().flatten() {
        let va = align_down(seg.vaddr, 4096);
        let end = align_up(seg.vaddr + seg.memsz, 4096);
        let pa = seg.paddr.wrapping_sub(seg.vaddr).wrapping_add(va);
        crate::mapping::map_boot_image(space, va, pa, end - va, seg.flags.w, seg.flags.x)?;
    }
    let t = thread::create(id, space, 100).map_err(|_| "out of kernel memory")?;
    t.scheduler = scheduler;
    crate::thread::activate(t, ROOT_UTCB_AREA, pager).map_err(|_| "out of kernel memory")?;
    let f = t.frame();
    f.rip = elf.entry();
    f.rsp = 0;
    crate::sched::wake(t);
    Ok(())
}

/// Resolves a page fault of σ0 with an idempotent (virtual = physical) mapping, the way
/// X.2 prescribes: σ0 owns all memory but the kernel's (see `mapping::sigma0_fault`).
pub fn sigma0_fault(space: &mut Space, addr: u64) -> bool {
    crate::mapping::sigma0_fault(space, addr)
}
