//! Finding the KIP (KernelInterface) and the system-call stub addresses it publishes.

use abi::kip::Kip;

/// What KernelInterface returns.
#[derive(Debug, Clone, Copy)]
pub struct KernelInterface {
    /// RAX: where the KIP is mapped in the caller's space.
    pub kip: *const Kip,
    /// RCX: the API version word.
    pub api_version: u64,
    /// RDX: the API flags word.
    pub api_flags: u64,
    /// RSI: the kernel id word.
    pub kernel_id: u64,
}

/// Executes KernelInterface (`lock; nop`).
pub fn kernel_interface() -> KernelInterface {
    let (kip, ver, flags, id): (u64, u64, u64, u64);
    // SAFETY: `lock; nop` traps to the kernel, which returns the four values in
    // RAX/RCX/RDX/RSI and changes nothing else.
    unsafe {
        core::arch::asm!(".byte 0xF0, 0x90", out("rax") kip, out("rcx") ver, out("rdx") flags, out("rsi") id, options(nostack))
    };
    KernelInterface {
        kip: kip as *const Kip,
        api_version: ver,
        api_flags: flags,
        kernel_id: id,
    }
}

static mut KIP: *const Kip = core::ptr::null();

/// Locates the KIP once at start-up (called by the runtime).
pub fn init() {
    let k = kernel_interface();
    // SAFETY: runs once in `_start`, before any other thread of the program exists.
    unsafe { KIP = k.kip };
}

/// The KIP (read-only, mapped by the kernel into every space).
pub fn get() -> &'static Kip {
    // SAFETY: `init` stored the address the kernel reported; the kernel keeps the page
    // mapped read-only for the life of the space.
    unsafe { &*KIP }
}
