//! The kernel interface page (§2): one 4 KB page, mapped read-only into every
//! space, and the descriptors stored in it.
//!
//! ```text
//! 0x000  Kip structure (72 words, field by field below)
//! 0x240  processor descriptors (32 bytes each)            <- proc_desc_ptr
//!        kernel descriptor (4 words)                      <- kernel_desc_ptr
//!        version string \0 feature \0 ... feature \0 \0
//!        (pad to 16)
//!        memory descriptors (16 bytes each) to page end  <- memory_info
//! 0x1000
//! ```
//!
//! The system-call fields hold **absolute addresses** of the stubs, not
//! KIP-relative offsets (Pistachio's amd64 behaviour, §2.3). [`KipBuilder`]
//! lays out everything after 0x240.

use core::fmt;
use core::mem::{align_of, offset_of, size_of};

/// Size (and alignment) of the KIP.
pub const KIP_SIZE: usize = 4096;
/// log2 of [`KIP_SIZE`].
pub const KIP_LOG2SIZE: u8 = 12;
/// Magic in word 0: bytes `'L' '4' 0xE6 'K'`; the upper half of the word is
/// zero, which marks a 64-bit KIP to the loader.
pub const KIP_MAGIC: u32 = 0x4BE6_344C;
/// API version: X.2 (0x84) in bits 24..31, subversion 5 in bits 16..23.
pub const API_VERSION: u64 = 0x8405_0000;
/// API flags: little endian (bits 0..1 = 0), 64-bit words (bits 2..3 = 1).
pub const API_FLAGS: u64 = 4;
/// UtcbAreaInfo: multiplier 1 (bits 0..9), alignment 2^10 (bits 10..15),
/// minimal area 2^12 (bits 16..21).
pub const UTCB_AREA_INFO: u64 = 0xC2801;
/// KipAreaInfo: the KIP area is 2^12 bytes (bits 0..5).
pub const KIP_AREA_INFO: u64 = KIP_LOG2SIZE as u64;
/// PageInfo: page sizes 4 KB, 2 MB and 1 GB (mask in bits 10..63) and
/// rwx (7) in bits 0..2.
pub const PAGE_INFO: u64 = (1 << 12) | (1 << 21) | (1 << 30) | 7;
/// Offset of the first processor descriptor: right after the structure.
pub const PROC_DESC_OFFSET: usize = 0x240;
/// Size of a processor descriptor.
pub const PROC_DESC_SIZE: usize = 32;
/// log2 of [`PROC_DESC_SIZE`], reported in ProcessorInfo.
pub const PROC_DESC_LOG2SIZE: u8 = 5;
/// Size of a memory descriptor.
pub const MEM_DESC_SIZE: usize = 16;
/// Size of the area after the structure.
pub const REST_SIZE: usize = KIP_SIZE - PROC_DESC_OFFSET;

/// **Tern's kernel id** (KernelInterface RSI, kernel-descriptor word 0):
/// id 0x0B in bits 24..31, subid 0 in bits 16..23. Ids 0..5 are taken by
/// the L4 kernels that Pistachio's `kip.h` names; 0x0B is unused there.
pub const TERN_KERNEL_ID: u64 = 0x0B << 24;
/// Tern's supplier field in the kernel descriptor.
pub const TERN_SUPPLIER: [u8; 4] = *b"Tern";

/// Start of one root server (sigma0, sigma1, root task): four words.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct RootServer {
    /// Initial stack pointer (0 for a 64-bit image loaded by kickstart).
    pub sp: u64,
    /// Entry point.
    pub ip: u64,
    /// First byte of the loaded image.
    pub low: u64,
    /// Last byte of the loaded image (empty region = server absent).
    pub high: u64,
}

/// The eleven system-call fields (words 52..62): absolute stub addresses.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct KipSyscalls {
    /// SpaceControl (0x1A0).
    pub space_control: u64,
    /// ThreadControl (0x1A8).
    pub thread_control: u64,
    /// ProcessorControl (0x1B0).
    pub processor_control: u64,
    /// MemoryControl (0x1B8).
    pub memory_control: u64,
    /// Ipc (0x1C0).
    pub ipc: u64,
    /// Lipc (0x1C8); the same stub as Ipc.
    pub lipc: u64,
    /// Unmap (0x1D0).
    pub unmap: u64,
    /// ExchangeRegisters (0x1D8).
    pub exchange_registers: u64,
    /// SystemClock (0x1E0).
    pub system_clock: u64,
    /// ThreadSwitch (0x1E8).
    pub thread_switch: u64,
    /// Schedule (0x1F0).
    pub schedule: u64,
}

/// The KIP page (§2.2), 64-bit layout.
///
/// # Invariants
/// `size_of::<Kip>() == 4096`, aligned to 4096, every field at the offset
/// of §2.2 (checked at compile time below).
#[repr(C, align(4096))]
#[derive(Clone, PartialEq, Eq)]
pub struct Kip {
    /// Word 0: [`KIP_MAGIC`] in the low half, zero above.
    pub magic: u64,
    /// Word 1: [`API_VERSION`].
    pub api_version: u64,
    /// Word 2: [`API_FLAGS`].
    pub api_flags: u64,
    /// Word 3: offset of the kernel descriptor from the KIP base.
    pub kernel_desc_ptr: u64,
    /// Word 4: kernel debugger init routine (0: none).
    pub kdebug_init: u64,
    /// Word 5: kernel debugger entry (0: none).
    pub kdebug_entry: u64,
    /// Words 6..7: kernel debugger memory low/high.
    pub kdebug_mem: [u64; 2],
    /// Words 8..11: sigma0.
    pub sigma0: RootServer,
    /// Words 12..15: sigma1.
    pub sigma1: RootServer,
    /// Words 16..19: root task.
    pub root_server: RootServer,
    /// Word 20.
    pub reserved: u64,
    /// Word 21: MemoryInfo, see [`MemoryInfo`].
    pub memory_info: u64,
    /// Words 22..23.
    pub kdebug_config: [u64; 2],
    /// Words 24..25: legacy MainMem.
    pub main_mem: [u64; 2],
    /// Words 26..29: legacy ReservedMem[0..1].
    pub reserved_mem: [u64; 4],
    /// Words 30..39: legacy DedicatedMem[0..4].
    pub dedicated_mem: [u64; 10],
    /// Words 40..41.
    pub reserved2: [u64; 2],
    /// Word 42: [`UTCB_AREA_INFO`].
    pub utcb_area_info: u64,
    /// Word 43: [`KIP_AREA_INFO`].
    pub kip_area_info: u64,
    /// Words 44..45.
    pub reserved3: [u64; 2],
    /// Word 46: BootInfo (written by the boot loader).
    pub boot_info: u64,
    /// Word 47: offset of the processor descriptors.
    pub proc_desc_ptr: u64,
    /// Word 48: ClockInfo, see [`ClockInfo`].
    pub clock_info: u64,
    /// Word 49: ThreadInfo, see [`ThreadInfo`].
    pub thread_info: u64,
    /// Word 50: [`PAGE_INFO`].
    pub page_info: u64,
    /// Word 51: ProcessorInfo, see [`ProcessorInfo`].
    pub processor_info: u64,
    /// Words 52..62: system-call stub addresses.
    pub syscalls: KipSyscalls,
    /// Words 63..67.
    pub reserved4: [u64; 5],
    /// Words 68..71: ArchSyscall0..3.
    pub arch_syscall: [u64; 4],
    /// Bytes 0x240..0x1000: descriptors and strings, laid out by
    /// [`KipBuilder`]. Byte `i` here is KIP offset `0x240 + i`.
    pub rest: [u8; REST_SIZE],
}

const _: () = {
    assert!(size_of::<Kip>() == KIP_SIZE);
    assert!(align_of::<Kip>() == KIP_SIZE);
    assert!(offset_of!(Kip, magic) == 0x000);
    assert!(offset_of!(Kip, api_version) == 0x008);
    assert!(offset_of!(Kip, api_flags) == 0x010);
    assert!(offset_of!(Kip, kernel_desc_ptr) == 0x018);
    assert!(offset_of!(Kip, kdebug_init) == 0x020);
    assert!(offset_of!(Kip, kdebug_entry) == 0x028);
    assert!(offset_of!(Kip, kdebug_mem) == 0x030);
    assert!(offset_of!(Kip, sigma0) == 0x040);
    assert!(offset_of!(Kip, sigma1) == 0x060);
    assert!(offset_of!(Kip, root_server) == 0x080);
    assert!(offset_of!(Kip, reserved) == 0x0A0);
    assert!(offset_of!(Kip, memory_info) == 0x0A8);
    assert!(offset_of!(Kip, kdebug_config) == 0x0B0);
    assert!(offset_of!(Kip, main_mem) == 0x0C0);
    assert!(offset_of!(Kip, reserved_mem) == 0x0D0);
    assert!(offset_of!(Kip, dedicated_mem) == 0x0F0);
    assert!(offset_of!(Kip, reserved2) == 0x140);
    assert!(offset_of!(Kip, utcb_area_info) == 0x150);
    assert!(offset_of!(Kip, kip_area_info) == 0x158);
    assert!(offset_of!(Kip, reserved3) == 0x160);
    assert!(offset_of!(Kip, boot_info) == 0x170);
    assert!(offset_of!(Kip, proc_desc_ptr) == 0x178);
    assert!(offset_of!(Kip, clock_info) == 0x180);
    assert!(offset_of!(Kip, thread_info) == 0x188);
    assert!(offset_of!(Kip, page_info) == 0x190);
    assert!(offset_of!(Kip, processor_info) == 0x198);
    assert!(offset_of!(Kip, syscalls) == 0x1A0);
    assert!(offset_of!(Kip, syscalls) + offset_of!(KipSyscalls, space_control) == 0x1A0);
    assert!(offset_of!(Kip, syscalls) + offset_of!(KipSyscalls, thread_control) == 0x1A8);
    assert!(offset_of!(Kip, syscalls) + offset_of!(KipSyscalls, processor_control) == 0x1B0);
    assert!(offset_of!(Kip, syscalls) + offset_of!(KipSyscalls, memory_control) == 0x1B8);
    assert!(offset_of!(Kip, syscalls) + offset_of!(KipSyscalls, ipc) == 0x1C0);
    assert!(offset_of!(Kip, syscalls) + offset_of!(KipSyscalls, lipc) == 0x1C8);
    assert!(offset_of!(Kip, syscalls) + offset_of!(KipSyscalls, unmap) == 0x1D0);
    assert!(offset_of!(Kip, syscalls) + offset_of!(KipSyscalls, exchange_registers) == 0x1D8);
    assert!(offset_of!(Kip, syscalls) + offset_of!(KipSyscalls, system_clock) == 0x1E0);
    assert!(offset_of!(Kip, syscalls) + offset_of!(KipSyscalls, thread_switch) == 0x1E8);
    assert!(offset_of!(Kip, syscalls) + offset_of!(KipSyscalls, schedule) == 0x1F0);
    assert!(offset_of!(Kip, reserved4) == 0x1F8);
    assert!(offset_of!(Kip, arch_syscall) == 0x220);
    assert!(offset_of!(Kip, rest) == PROC_DESC_OFFSET);
    assert!(offset_of!(RootServer, high) == 24 && size_of::<RootServer>() == 32);
};

impl Kip {
    /// A KIP with every byte zero.
    pub const fn zeroed() -> Self {
        const RS: RootServer = RootServer {
            sp: 0,
            ip: 0,
            low: 0,
            high: 0,
        };
        Self {
            magic: 0,
            api_version: 0,
            api_flags: 0,
            kernel_desc_ptr: 0,
            kdebug_init: 0,
            kdebug_entry: 0,
            kdebug_mem: [0; 2],
            sigma0: RS,
            sigma1: RS,
            root_server: RS,
            reserved: 0,
            memory_info: 0,
            kdebug_config: [0; 2],
            main_mem: [0; 2],
            reserved_mem: [0; 4],
            dedicated_mem: [0; 10],
            reserved2: [0; 2],
            utcb_area_info: 0,
            kip_area_info: 0,
            reserved3: [0; 2],
            boot_info: 0,
            proc_desc_ptr: 0,
            clock_info: 0,
            thread_info: 0,
            page_info: 0,
            processor_info: 0,
            syscalls: KipSyscalls {
                space_control: 0,
                thread_control: 0,
                processor_control: 0,
                memory_control: 0,
                ipc: 0,
                lipc: 0,
                unmap: 0,
                exchange_registers: 0,
                system_clock: 0,
                thread_switch: 0,
                schedule: 0,
            },
            reserved4: [0; 5],
            arch_syscall: [0; 4],
            rest: [0; REST_SIZE],
        }
    }

    /// A zeroed KIP with Tern's constant fields filled in: magic, API
    /// version and flags, UTCB and KIP area info, page info.
    pub const fn new() -> Self {
        let mut kip = Self::zeroed();
        kip.magic = KIP_MAGIC as u64;
        kip.api_version = API_VERSION;
        kip.api_flags = API_FLAGS;
        kip.utcb_area_info = UTCB_AREA_INFO;
        kip.kip_area_info = KIP_AREA_INFO;
        kip.page_info = PAGE_INFO;
        kip
    }

    /// The word at KIP byte `offset` (0x240 ≤ offset ≤ 0xFF8, any
    /// alignment), or `None` outside the descriptor area.
    pub fn word_at(&self, offset: usize) -> Option<u64> {
        let i = offset.checked_sub(PROC_DESC_OFFSET)?;
        let bytes = self.rest.get(i..i.checked_add(8)?)?;
        let mut w = [0u8; 8];
        w.copy_from_slice(bytes);
        Some(u64::from_le_bytes(w))
    }

    /// Store `value` at KIP byte `offset` in the descriptor area.
    pub fn set_word_at(&mut self, offset: usize, value: u64) -> Result<(), KipError> {
        let i = offset
            .checked_sub(PROC_DESC_OFFSET)
            .ok_or(KipError::OutOfArea)?;
        let end = i.checked_add(8).ok_or(KipError::OutOfArea)?;
        let bytes = self.rest.get_mut(i..end).ok_or(KipError::OutOfArea)?;
        bytes.copy_from_slice(&value.to_le_bytes());
        Ok(())
    }

    /// MemoryInfo decoded.
    #[inline]
    pub const fn memory(&self) -> MemoryInfo {
        MemoryInfo::decode(self.memory_info)
    }

    /// Memory descriptor `i` (`None` past the count or outside the page).
    pub fn mem_desc(&self, i: usize) -> Option<Result<MemDesc, KipError>> {
        let info = self.memory();
        if i >= info.count as usize {
            return None;
        }
        let at = (info.offset as usize).checked_add(i.checked_mul(MEM_DESC_SIZE)?)?;
        let words = [self.word_at(at)?, self.word_at(at.checked_add(8)?)?];
        Some(MemDesc::decode(words))
    }

    /// Slots for memory descriptors from MemoryInfo's offset to the page end.
    pub const fn mem_desc_capacity(&self) -> usize {
        let off = self.memory().offset as usize;
        if off < PROC_DESC_OFFSET || off > KIP_SIZE {
            0
        } else {
            (KIP_SIZE - off) / MEM_DESC_SIZE
        }
    }

    /// Append a memory descriptor (later descriptors override earlier
    /// ones) and count it in MemoryInfo.
    pub fn push_mem_desc(&mut self, d: MemDesc) -> Result<(), KipError> {
        let info = self.memory();
        let n = info.count as usize;
        if n >= self.mem_desc_capacity() {
            return Err(KipError::Full);
        }
        let at = info.offset as usize + n * MEM_DESC_SIZE;
        let [w0, w1] = d.encode();
        self.set_word_at(at, w0)?;
        self.set_word_at(at + 8, w1)?;
        self.memory_info = MemoryInfo {
            offset: info.offset,
            count: info.count + 1,
        }
        .encode();
        Ok(())
    }
}

impl Default for Kip {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Kip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kip")
            .field("magic", &format_args!("{:#x}", self.magic))
            .field("api_version", &format_args!("{:#x}", self.api_version))
            .field(
                "kernel_desc_ptr",
                &format_args!("{:#x}", self.kernel_desc_ptr),
            )
            .field("sigma0", &self.sigma0)
            .field("root_server", &self.root_server)
            .field("memory", &self.memory())
            .field("thread_info", &ThreadInfo::decode(self.thread_info))
            .field(
                "processor_info",
                &ProcessorInfo::decode(self.processor_info),
            )
            .field("syscalls", &self.syscalls)
            .finish_non_exhaustive()
    }
}

/// Errors of the KIP writers and readers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum KipError {
    /// The layout does not fit in the page.
    DoesNotFit,
    /// At least one processor descriptor is needed.
    NoProcessors,
    /// A string contains NUL, or a feature string is empty.
    BadString,
    /// A memory descriptor with a type that X.2 does not define.
    UnknownMemKind(u8),
    /// No room for another memory descriptor.
    Full,
    /// An offset outside the descriptor area.
    OutOfArea,
}

/// MemoryInfo (word 21): descriptor count in bits 0..31, array offset from
/// the KIP base in bits 32..63.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct MemoryInfo {
    /// Offset of the descriptor array.
    pub offset: u32,
    /// Number of descriptors.
    pub count: u32,
}

impl MemoryInfo {
    /// The word.
    #[inline]
    pub const fn encode(self) -> u64 {
        (self.offset as u64) << 32 | self.count as u64
    }

    /// From the word.
    #[inline]
    pub const fn decode(w: u64) -> Self {
        Self {
            offset: (w >> 32) as u32,
            count: w as u32,
        }
    }
}

/// Memory-descriptor type (word 0 bits 0..3).
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MemKind {
    /// 0x0.
    Undefined = 0,
    /// 0x1: ordinary RAM.
    Conventional = 1,
    /// 0x2: reserved (the kernel's memory, among others).
    Reserved = 2,
    /// 0x3: dedicated.
    Dedicated = 3,
    /// 0x4: shared (device memory reachable by sigma0).
    Shared = 4,
    /// 0xE: boot-loader specific (subtype says what).
    BootLoader = 0xE,
    /// 0xF: architecture specific (subtype: E820 type).
    Arch = 0xF,
}

impl TryFrom<u8> for MemKind {
    type Error = KipError;
    fn try_from(v: u8) -> Result<Self, KipError> {
        Ok(match v {
            0 => Self::Undefined,
            1 => Self::Conventional,
            2 => Self::Reserved,
            3 => Self::Dedicated,
            4 => Self::Shared,
            0xE => Self::BootLoader,
            0xF => Self::Arch,
            _ => return Err(KipError::UnknownMemKind(v)),
        })
    }
}

/// A memory descriptor (§2.6), two words:
///
/// ```text
/// word 0:  low >> 10 << 10 | v << 9 | (bit 8 reserved) | subtype << 4 | kind
/// word 1:  high >> 10 << 10                (last byte = high | 0x3FF)
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MemDesc {
    /// Type.
    pub kind: MemKind,
    /// Subtype t (4 bits).
    pub subtype: u8,
    /// v: describes virtual (true) or physical memory.
    pub virtual_: bool,
    /// First byte (1 KB granularity: low 10 bits are dropped).
    pub low: u64,
    /// Last byte (1 KB granularity: reads back with low 10 bits set).
    pub high: u64,
}

impl MemDesc {
    /// The two words.
    #[inline]
    pub const fn encode(self) -> [u64; 2] {
        [
            (self.low & !0x3FF)
                | (self.virtual_ as u64) << 9
                | ((self.subtype & 0xF) as u64) << 4
                | self.kind as u64,
            self.high & !0x3FF,
        ]
    }

    /// From the two words; an undefined type (5..=0xD) is an error.
    pub fn decode(w: [u64; 2]) -> Result<Self, KipError> {
        Ok(Self {
            kind: MemKind::try_from((w[0] & 0xF) as u8)?,
            subtype: ((w[0] >> 4) & 0xF) as u8,
            virtual_: w[0] & (1 << 9) != 0,
            low: w[0] & !0x3FF,
            high: w[1] | 0x3FF,
        })
    }
}

/// ThreadInfo (word 49).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct ThreadInfo {
    /// Thread-number bits honoured (bits 0..7).
    pub t: u8,
    /// First thread number of kernel threads = number of interrupts
    /// (bits 8..19).
    pub system_base: u16,
    /// First user thread number (bits 20..31).
    pub user_base: u16,
}

impl ThreadInfo {
    /// The word (bases cut to 12 bits).
    #[inline]
    pub const fn encode(self) -> u64 {
        self.t as u64
            | ((self.system_base & 0xFFF) as u64) << 8
            | ((self.user_base & 0xFFF) as u64) << 20
    }

    /// From the word.
    #[inline]
    pub const fn decode(w: u64) -> Self {
        Self {
            t: w as u8,
            system_base: ((w >> 8) & 0xFFF) as u16,
            user_base: ((w >> 20) & 0xFFF) as u16,
        }
    }
}

/// ClockInfo (word 48).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct ClockInfo {
    /// ReadPrecision (bits 0..15), a time value.
    pub read_precision: u16,
    /// SchedulePrecision (bits 16..31), a time value.
    pub schedule_precision: u16,
}

impl ClockInfo {
    /// The word.
    #[inline]
    pub const fn encode(self) -> u64 {
        self.read_precision as u64 | (self.schedule_precision as u64) << 16
    }

    /// From the word.
    #[inline]
    pub const fn decode(w: u64) -> Self {
        Self {
            read_precision: w as u16,
            schedule_precision: (w >> 16) as u16,
        }
    }
}

/// ProcessorInfo (word 51).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ProcessorInfo {
    /// Number of processors, 1..=65536 (stored minus one in bits 0..15).
    pub cpus: u32,
    /// log2 of the descriptor size (bits 60..63).
    pub log2_desc_size: u8,
}

impl ProcessorInfo {
    /// `cpus` processors with 32-byte descriptors.
    #[inline]
    pub const fn new(cpus: u32) -> Self {
        Self {
            cpus,
            log2_desc_size: PROC_DESC_LOG2SIZE,
        }
    }

    /// The word (`cpus` of 0 is stored as 1).
    #[inline]
    pub const fn encode(self) -> u64 {
        (self.cpus.saturating_sub(1) & 0xFFFF) as u64 | ((self.log2_desc_size & 0xF) as u64) << 60
    }

    /// From the word.
    #[inline]
    pub const fn decode(w: u64) -> Self {
        Self {
            cpus: (w & 0xFFFF) as u32 + 1,
            log2_desc_size: (w >> 60) as u8,
        }
    }
}

/// A processor descriptor (§2.5), four words.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct ProcessorDesc {
    /// External (bus) frequency in kHz.
    pub external_khz: u64,
    /// Internal (core) frequency in kHz; SystemClock divides the TSC by it.
    pub internal_khz: u64,
    /// Frequency-change word.
    pub freq_change: u64,
    /// Architecture word.
    pub arch: u64,
}

impl ProcessorDesc {
    /// The four words.
    #[inline]
    pub const fn encode(self) -> [u64; 4] {
        [
            self.external_khz,
            self.internal_khz,
            self.freq_change,
            self.arch,
        ]
    }
}

/// The kernel descriptor header (§2.4), four words; the strings follow it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KernelDesc {
    /// Kernel id: id bits 24..31, subid 16..23.
    pub kernel_id: u64,
    /// Generation date, see [`encode_date`].
    pub date: u64,
    /// Kernel version: version 24..31, subversion 16..23, sub-sub 0..15.
    pub version: u64,
    /// Supplier: four characters in the low four bytes.
    pub supplier: [u8; 4],
}

impl KernelDesc {
    /// Tern's descriptor built on `date` (from [`encode_date`]).
    pub const fn tern(date: u64) -> Self {
        let (major, minor) = crate::tern::VERSION;
        Self {
            kernel_id: TERN_KERNEL_ID,
            date,
            version: ((major & 0xFF) as u64) << 24 | ((minor & 0xFF) as u64) << 16,
            supplier: TERN_SUPPLIER,
        }
    }

    /// The four words.
    #[inline]
    pub const fn encode(self) -> [u64; 4] {
        [
            self.kernel_id,
            self.date,
            self.version,
            u32::from_le_bytes(self.supplier) as u64,
        ]
    }
}

/// A generation date word: day bits 0..4, month bits 5..8, year − 2000
/// bits 9..15 (fields cut to their widths).
#[inline]
pub const fn encode_date(year: u16, month: u8, day: u8) -> u64 {
    (day & 0x1F) as u64
        | ((month & 0xF) as u64) << 5
        | ((year.saturating_sub(2000) & 0x7F) as u64) << 9
}

/// Everything [`KipBuilder::write`] puts after the structure.
#[derive(Clone, Copy, Debug)]
pub struct KipBuilder<'a> {
    /// Processor descriptors (at least one).
    pub processors: &'a [ProcessorDesc],
    /// Kernel descriptor header.
    pub kernel: KernelDesc,
    /// Version string (no NUL inside).
    pub version_string: &'a str,
    /// Feature strings (non-empty, no NUL inside).
    pub features: &'a [&'a str],
    /// Initial memory descriptors.
    pub mem_descs: &'a [MemDesc],
    /// Slots that must remain for memory descriptors (at least
    /// `mem_descs.len()`): the loader and the kernel append more later.
    pub min_mem_slots: usize,
}

/// Offsets (from the KIP base) chosen by [`KipBuilder::write`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KipLayout {
    /// Processor descriptors (always 0x240).
    pub proc_desc: usize,
    /// Kernel descriptor.
    pub kernel_desc: usize,
    /// Memory-descriptor array (16-byte aligned).
    pub mem_desc: usize,
    /// Memory-descriptor slots up to the end of the page.
    pub mem_slots: usize,
}

impl KipBuilder<'_> {
    /// Compute the layout, or the reason it cannot exist.
    pub fn layout(&self) -> Result<KipLayout, KipError> {
        if self.processors.is_empty() {
            return Err(KipError::NoProcessors);
        }
        let bad = |s: &str| s.as_bytes().contains(&0);
        if bad(self.version_string) || self.features.iter().any(|f| f.is_empty() || bad(f)) {
            return Err(KipError::BadString);
        }
        let proc_desc = PROC_DESC_OFFSET;
        let kernel_desc = self
            .processors
            .len()
            .checked_mul(PROC_DESC_SIZE)
            .and_then(|n| n.checked_add(proc_desc))
            .ok_or(KipError::DoesNotFit)?;
        let strings = self.features.iter().map(|f| f.len() + 1).sum::<usize>()
            + self.version_string.len()
            + 2;
        let end = kernel_desc
            .checked_add(32 + strings)
            .ok_or(KipError::DoesNotFit)?;
        let mem_desc = end
            .checked_next_multiple_of(16)
            .ok_or(KipError::DoesNotFit)?;
        let mem_slots = KIP_SIZE.saturating_sub(mem_desc) / MEM_DESC_SIZE;
        if mem_desc > KIP_SIZE || mem_slots < self.mem_descs.len().max(self.min_mem_slots) {
            return Err(KipError::DoesNotFit);
        }
        Ok(KipLayout {
            proc_desc,
            kernel_desc,
            mem_desc,
            mem_slots,
        })
    }

    /// Check the layout, then clear the descriptor area of `kip` and write
    /// processor descriptors, kernel descriptor, strings and memory
    /// descriptors; set `proc_desc_ptr`, `processor_info`,
    /// `kernel_desc_ptr` and `memory_info`. Every error is found by
    /// [`KipBuilder::layout`] before anything is written, so on error `kip`
    /// is unchanged.
    pub fn write(&self, kip: &mut Kip) -> Result<KipLayout, KipError> {
        let layout = self.layout()?;
        kip.rest = [0; REST_SIZE];
        let mut at = layout.proc_desc;
        for p in self.processors {
            for w in p.encode() {
                kip.set_word_at(at, w)?;
                at += 8;
            }
        }
        at = layout.kernel_desc;
        for w in self.kernel.encode() {
            kip.set_word_at(at, w)?;
            at += 8;
        }
        for s in core::iter::once(&self.version_string).chain(self.features) {
            let i = at - PROC_DESC_OFFSET;
            let dst = kip
                .rest
                .get_mut(i..i + s.len())
                .ok_or(KipError::DoesNotFit)?;
            dst.copy_from_slice(s.as_bytes());
            at += s.len() + 1; // the NUL is already there
        }
        kip.proc_desc_ptr = layout.proc_desc as u64;
        kip.processor_info = ProcessorInfo::new(self.processors.len() as u32).encode();
        kip.kernel_desc_ptr = layout.kernel_desc as u64;
        kip.memory_info = MemoryInfo {
            offset: layout.mem_desc as u32,
            count: 0,
        }
        .encode();
        for d in self.mem_descs {
            kip.push_mem_desc(*d)?;
        }
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn builder<'a>(mem: &'a [MemDesc], features: &'a [&'a str]) -> KipBuilder<'a> {
        const CPU: [ProcessorDesc; 1] = [ProcessorDesc {
            external_khz: 100_000,
            internal_khz: 2_000_000,
            freq_change: 0,
            arch: 0,
        }];
        KipBuilder {
            processors: &CPU,
            kernel: KernelDesc::tern(encode_date(2025, 11, 29)),
            version_string: crate::tern::VERSION_STRING,
            features,
            mem_descs: mem,
            min_mem_slots: 32,
        }
    }

    #[test]
    fn constants() {
        assert_eq!(PAGE_INFO, 0x4020_1007);
        assert_eq!(KIP_AREA_INFO, 0xC);
        let k = Kip::new();
        assert_eq!(k.magic, 0x4BE6_344C);
        assert_eq!(&k.magic.to_le_bytes()[..4], b"L4\xE6K");
        assert_eq!(k.api_version, 0x8405_0000);
        assert_eq!(Kip::default(), k);
        assert!(format!("{k:?}").starts_with("Kip { magic: 0x4be6344c"));
        assert_eq!(TERN_KERNEL_ID, 0x0B00_0000);
    }

    #[test]
    fn descriptors() {
        let d = MemDesc {
            kind: MemKind::Arch,
            subtype: 2,
            virtual_: false,
            low: 0xA_0000,
            high: 0xB_FFFF,
        };
        assert_eq!(d.encode(), [0xA_0000 | 2 << 4 | 0xF, 0xB_FC00]);
        assert_eq!(MemDesc::decode(d.encode()), Ok(d));
        let all = MemDesc {
            kind: MemKind::Shared,
            subtype: 0,
            virtual_: false,
            low: 0,
            high: u64::MAX,
        };
        assert_eq!(MemDesc::decode(all.encode()), Ok(all));
        assert_eq!(MemDesc::decode([5, 0]), Err(KipError::UnknownMemKind(5)));
        assert_eq!(
            MemDesc::decode([0xD, 0]),
            Err(KipError::UnknownMemKind(0xD))
        );
        let v = MemDesc {
            kind: MemKind::Conventional,
            subtype: 0,
            virtual_: true,
            low: 0,
            high: 0xFFFF_FEFF_FFFF_FFFF,
        };
        assert_eq!(v.encode()[0], 1 | 1 << 9);

        let t = ThreadInfo {
            t: 18,
            system_base: 16,
            user_base: 48,
        };
        assert_eq!(t.encode(), 18 | 16 << 8 | 48 << 20);
        assert_eq!(ThreadInfo::decode(t.encode()), t);
        let c = ClockInfo {
            read_precision: 1,
            schedule_precision: 0x400,
        };
        assert_eq!(ClockInfo::decode(c.encode()), c);
        assert_eq!(ProcessorInfo::new(1).encode(), 5 << 60);
        assert_eq!(
            ProcessorInfo::decode(ProcessorInfo::new(4).encode()),
            ProcessorInfo::new(4)
        );
        assert_eq!(encode_date(2025, 11, 29), 29 | 11 << 5 | 25 << 9);
        let kd = KernelDesc::tern(0).encode();
        assert_eq!(kd[0], TERN_KERNEL_ID);
        assert_eq!(&kd[3].to_le_bytes()[..4], b"Tern");
        assert_eq!(
            MemoryInfo::decode(
                MemoryInfo {
                    offset: 0x300,
                    count: 7
                }
                .encode()
            )
            .count,
            7
        );
    }

    #[test]
    fn builder_lays_out_the_page() {
        let mem = [
            MemDesc {
                kind: MemKind::Shared,
                subtype: 0,
                virtual_: false,
                low: 0,
                high: u64::MAX,
            },
            MemDesc {
                kind: MemKind::Conventional,
                subtype: 0,
                virtual_: false,
                low: 0x10_0000,
                high: 0x7FF_FFFF,
            },
        ];
        let features = ["tern-fsbase", "x"];
        let mut kip = Kip::new();
        let l = builder(&mem, &features).write(&mut kip).unwrap();
        assert_eq!(l.proc_desc, 0x240);
        assert_eq!(l.kernel_desc, 0x260);
        assert_eq!(l.mem_desc % 16, 0);
        assert_eq!(l.mem_slots, (4096 - l.mem_desc) / 16);
        assert_eq!((kip.proc_desc_ptr, kip.kernel_desc_ptr), (0x240, 0x260));
        assert_eq!(kip.word_at(0x248), Some(2_000_000));
        assert_eq!(kip.word_at(0x260), Some(TERN_KERNEL_ID));
        assert_eq!(ProcessorInfo::decode(kip.processor_info).cpus, 1);

        // Strings: version, features, empty string.
        let s = &kip.rest[0x280 - 0x240..l.mem_desc - 0x240];
        let mut parts = s.split(|&b| b == 0);
        assert_eq!(parts.next(), Some(crate::tern::VERSION_STRING.as_bytes()));
        assert_eq!(parts.next(), Some(&b"tern-fsbase"[..]));
        assert_eq!(parts.next(), Some(&b"x"[..]));
        assert_eq!(parts.next(), Some(&b""[..]));

        assert_eq!(
            kip.memory(),
            MemoryInfo {
                offset: l.mem_desc as u32,
                count: 2
            }
        );
        assert_eq!(
            kip.mem_desc(1),
            Some(Ok(MemDesc {
                high: 0x7FF_FFFF,
                ..mem[1]
            }))
        );
        assert_eq!(kip.mem_desc(2), None);
        kip.push_mem_desc(mem[0]).unwrap();
        assert_eq!(kip.mem_desc(2), Some(Ok(mem[0])));
        while kip.push_mem_desc(mem[0]).is_ok() {}
        assert_eq!(kip.memory().count as usize, l.mem_slots);
        assert_eq!(kip.push_mem_desc(mem[0]), Err(KipError::Full));
    }

    #[test]
    fn builder_errors_leave_kip_alone() {
        let mut kip = Kip::new();
        let before = kip.clone();
        let mut b = builder(&[], &[]);
        b.processors = &[];
        assert_eq!(b.write(&mut kip), Err(KipError::NoProcessors));
        assert_eq!(
            builder(&[], &[""]).write(&mut kip),
            Err(KipError::BadString)
        );
        assert_eq!(
            builder(&[], &["a\0b"]).write(&mut kip),
            Err(KipError::BadString)
        );
        let mut b = builder(&[], &[]);
        b.min_mem_slots = 250;
        assert_eq!(b.write(&mut kip), Err(KipError::DoesNotFit));
        let big = [ProcessorDesc::default(); 128];
        let mut b = builder(&[], &[]);
        b.processors = &big;
        assert_eq!(b.write(&mut kip), Err(KipError::DoesNotFit));
        assert!(kip == before);
    }

    #[test]
    fn word_access_bounds() {
        let mut kip = Kip::zeroed();
        assert_eq!(kip.word_at(0x23F), None);
        assert_eq!(kip.word_at(0xFF8), Some(0));
        assert_eq!(kip.word_at(0xFF9), None);
        assert_eq!(kip.word_at(usize::MAX), None);
        assert_eq!(kip.set_word_at(0xFF9, 1), Err(KipError::OutOfArea));
        assert_eq!(kip.set_word_at(0x10, 1), Err(KipError::OutOfArea));
        kip.set_word_at(0x241, 0x0102_0304_0506_0708).unwrap();
        assert_eq!(kip.word_at(0x241), Some(0x0102_0304_0506_0708));
        assert_eq!(kip.mem_desc_capacity(), 0);
    }

    proptest! {
        #[test]
        fn mem_desc_round_trip(kind in prop::sample::select(vec![0u8, 1, 2, 3, 4, 0xE, 0xF]),
                               subtype in 0u8..16, v: bool, low: u64, high: u64) {
            let d = MemDesc { kind: MemKind::try_from(kind).unwrap(), subtype, virtual_: v,
                              low: low & !0x3FF, high: high | 0x3FF };
            prop_assert_eq!(MemDesc::decode(d.encode()), Ok(d));
        }

        #[test]
        fn thread_info_round_trip(t: u8, sb in 0u16..4096, ub in 0u16..4096) {
            let i = ThreadInfo { t, system_base: sb, user_base: ub };
            prop_assert_eq!(ThreadInfo::decode(i.encode()), i);
        }
    }
}
