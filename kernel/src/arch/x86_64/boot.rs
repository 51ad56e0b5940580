//! PVH entry: from the loader's 32-bit protected mode to the kernel's 64-bit higher half.
//!
//! QEMU (or any PVH loader) finds the Xen ELF note of type 18 (`XEN_ELFNOTE_PHYS32_ENTRY`)
//! and jumps to the 32-bit physical address it names, with paging off, flat segments and
//! `EBX` = physical address of the `hvm_start_info` structure.
//!
//! The entry code builds a throw-away page table that maps the first GiB twice — at 0
//! (identity, so the instruction after `mov cr0` is still mapped) and at `KERNEL_VMA`
//! (where the image is linked) — switches to long mode and calls [`crate::kmain`] on the
//! boot stack. `kmain` replaces these tables with the real kernel page table at once.

use core::arch::global_asm;

/// Size of the boot (and later idle) stack.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

global_asm!(
    r#"
    .set KVMA, 0xFFFFFFFF80000000

    .section .note.Xen, "a", @note
    .p2align 2
    .long 4                       /* name size */
    .long 4                       /* descriptor size */
    .long 18                      /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_entry - KVMA

    .section .boot.text, "ax"
    .code32
    .global pvh_entry
pvh_entry:
    cli
    cld
    movl %ebx, (BOOT_START_INFO - KVMA)
    movl $(BOOT_STACK - KVMA + {stack_size}), %esp

    /* PML4[0] and PML4[511] -> boot PDPT; PDPT[0] and PDPT[510] -> boot PD (2 MiB pages). */
    movl $(BOOT_PDPT - KVMA + 3), %eax
    movl %eax, (BOOT_PML4 - KVMA)
    movl %eax, (BOOT_PML4 - KVMA + 511 * 8)
    movl $(BOOT_PD - KVMA + 3), %eax
    movl %eax, (BOOT_PDPT - KVMA)
    movl %eax, (BOOT_PDPT - KVMA + 510 * 8)
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax               /* present, writable, 2 MiB */
    movl %eax, (BOOT_PD - KVMA)(,%ecx,8)
    incl %ecx
    cmpl $512, %ecx
    jne 1b

    movl %cr4, %eax
    orl $(1 << 5), %eax           /* PAE */
    movl %eax, %cr4
    movl $(BOOT_PML4 - KVMA), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx        /* EFER: long mode enable, no-execute enable */
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax
    wrmsr
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16) | 1), %eax   /* PG, WP, PE */
    movl %eax, %cr0
    lgdt (BOOT_GDT_PTR - KVMA)
    ljmp $0x08, $(1f - KVMA)

    .code64
1:  movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $2f, %rax
    jmp *%rax
2:  movabsq $(BOOT_STACK + {stack_size}), %rsp
    xorl %ebp, %ebp
    movl BOOT_START_INFO(%rip), %edi
    call {kmain}
3:  hlt
    jmp 3b

    .section .rodata
    .p2align 4
BOOT_GDT:
    .quad 0
    .quad 0x00AF9A000000FFFF      /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF      /* 0x10: data */
BOOT_GDT_PTR:
    .word 3 * 8 - 1
    .long BOOT_GDT - KVMA

    .section .bss
    .p2align 12
BOOT_PML4: .skip 4096
BOOT_PDPT: .skip 4096
BOOT_PD:   .skip 4096
    .global BOOT_STACK
BOOT_STACK: .skip {stack_size}
    .p2align 3
BOOT_START_INFO: .skip 8
    .text
"#,
    kmain = sym crate::kmain,
    stack_size = const BOOT_STACK_SIZE,
    options(att_syntax)
);

extern "C" {
    /// Bottom of the boot stack (defined in the assembly above).
    pub static BOOT_STACK: [u8; BOOT_STACK_SIZE];
}
