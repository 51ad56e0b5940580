//! The I/O APIC, with routing found in the ACPI MADT (via the `acpi` crate).
//!
//! Global system interrupt *g* is delivered as vector `IRQ_BASE + g` to the boot
//! processor. ISA interrupts 0..15 follow the MADT's source overrides (bus-relative IRQ →
//! GSI, polarity, trigger mode); PCI lines (GSI ≥ 16) are level triggered, active low.
//! Every line starts masked.

use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

use super::layout::phys_to_virt;
use super::trap::vector;
use crate::util::KCell;

/// Most lines handled.
pub const MAX_LINES: usize = 24;

/// Routing of one interrupt line (as the kernel numbers them: ISA IRQ n for n < 16).
#[derive(Clone, Copy, Default)]
pub struct Line {
    pub gsi: u32,
    pub level: bool,
    pub active_low: bool,
}

struct IoApic {
    mmio: u64,
    gsi_base: u32,
    lines: u32,
    route: [Line; MAX_LINES],
}

static IOAPIC: KCell<IoApic> = KCell::new(IoApic { mmio: 0, gsi_base: 0, lines: 0, route: [Line { gsi: 0, level: false, active_low: false }; MAX_LINES] });

/// Maps ACPI tables through the direct map (all physical memory is mapped).
#[derive(Clone, Copy)]
struct DirectMap;

impl AcpiHandler for DirectMap {
    unsafe fn map_physical_region<T>(&self, physical_address: usize, size: usize) -> PhysicalMapping<Self, T> {
        let va = phys_to_virt(physical_address as u64) as *mut T;
        // SAFETY: the direct map covers all physical memory below 512 GiB, where the
        // firmware's tables lie; the pointer is non-null (the direct map is high).
        unsafe { PhysicalMapping::new(physical_address, NonNull::new_unchecked(va), size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

fn read(reg: u32) -> u32 {
    let base = IOAPIC.get().mmio;
    // SAFETY: IOREGSEL/IOWIN of the I/O APIC found in the MADT, reached through the
    // direct map (uncached on QEMU's emulation; see docs/drivers.md).
    unsafe {
        core::ptr::write_volatile(base as *mut u32, reg);
        core::ptr::read_volatile((base + 0x10) as *const u32)
    }
}

fn write(reg: u32, value: u32) {
    let base = IOAPIC.get().mmio;
    // SAFETY: as in `read`.
    unsafe {
        core::ptr::write_volatile(base as *mut u32, reg);
        core::ptr::write_volatile((base + 0x10) as *mut u32, value);
    }
}

/// Finds the I/O APIC and the ISA overrides; masks every line. Returns the number of
/// lines (0 if there is no usable MADT).
pub fn init(rsdp: u64) -> u32 {
    if rsdp == 0 {
        return 0;
    }
    // SAFETY: the PVH loader gave us the RSDP's physical address; the handler maps
    // physical memory through the direct map.
    let Ok(tables) = (unsafe { AcpiTables::from_rsdp(DirectMap, rsdp as usize) }) else { return 0 };
    let Ok(madt) = tables.find_table::<Madt>() else { return 0 };
    let io = IOAPIC.get_mut();
    let mut overrides = [(0u8, 0u32, 0u16, false); 16];
    let mut n_over = 0;
    for e in madt.get().entries() {
        match e {
            MadtEntry::IoApic(a) if io.mmio == 0 => {
                io.mmio = phys_to_virt(a.io_apic_address as u64);
                io.gsi_base = a.global_system_interrupt_base;
            }
            MadtEntry::InterruptSourceOverride(o) if o.bus == 0 && n_over < 16 => {
                overrides[n_over] = (o.irq, o.global_system_interrupt, o.flags, true);
                n_over += 1;
            }
            _ => {}
        }
    }
    if io.mmio == 0 {
        return 0;
    }
    let lines = (((read(1) >> 16) & 0xFF) + 1).min(MAX_LINES as u32);
    io.lines = lines;
    for n in 0..lines {
        io.route[n as usize] = if n < 16 { Line { gsi: n, level: false, active_low: false } } else { Line { gsi: n, level: true, active_low: true } };
    }
    for &(irq, gsi, flags, used) in &overrides[..n_over] {
        if used && (irq as u32) < lines {
            // MPS INTI flags: polarity bits 0..1 (3 = active low), trigger bits 2..3 (3 = level).
            io.route[irq as usize] = Line { gsi, level: (flags >> 2) & 3 == 3, active_low: flags & 3 == 3 };
        }
    }
    for g in 0..lines {
        mask_gsi(g, true);
    }
    lines
}

fn entry_low(line: &Line, masked: bool) -> u32 {
    let vector = (vector::IRQ_BASE + line.gsi as u64) as u32;
    vector | (line.active_low as u32) << 13 | (line.level as u32) << 15 | (masked as u32) << 16
}

fn mask_gsi(gsi: u32, masked: bool) {
    let io = IOAPIC.get();
    if gsi < io.gsi_base || gsi - io.gsi_base >= io.lines {
        return;
    }
    let line = io.route.iter().take(io.lines as usize).find(|l| l.gsi == gsi).copied().unwrap_or(Line { gsi, level: false, active_low: false });
    let reg = 0x10 + 2 * (gsi - io.gsi_base);
    write(reg + 1, 0); // destination: APIC id 0 (the boot processor)
    write(reg, entry_low(&line, masked));
}

/// Masks or unmasks interrupt line `n` (kernel numbering).
pub fn set_masked(n: u32, masked: bool) {
    if let Some(l) = line(n) {
        mask_gsi(l.gsi, masked);
    }
}

/// The routing of line `n`.
pub fn line(n: u32) -> Option<Line> {
    let io = IOAPIC.get();
    (n < io.lines).then(|| io.route[n as usize])
}

/// The line whose GSI raised vector `IRQ_BASE + gsi`.
pub fn line_of_gsi(gsi: u32) -> Option<u32> {
    let io = IOAPIC.get();
    io.route.iter().take(io.lines as usize).position(|l| l.gsi == gsi).map(|p| p as u32)
}

/// Number of lines.
pub fn lines() -> u32 {
    IOAPIC.get().lines
}
