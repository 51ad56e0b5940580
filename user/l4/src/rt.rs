//! Program runtime: `_start` sets up a stack, initialises the library, runs `main`, and
//! reports a panic on the kernel console.

use core::arch::global_asm;

/// Size of the initial thread's stack.
pub const STACK_SIZE: usize = 64 * 1024;

global_asm!(
    r#"
    .section .text._start, "ax"
    .global _start
_start:
    leaq {stack}+{size}(%rip), %rsp
    xorl %ebp, %ebp
    call {start}
1:  jmp 1b
    .text
"#,
    stack = sym STACK,
    size = const STACK_SIZE,
    start = sym rust_start,
    options(att_syntax)
);

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

/// The initial thread's stack (only `_start` refers to it, by address).
static mut STACK: Stack = Stack([0; STACK_SIZE]);

extern "Rust" {
    /// The program's entry, defined with [`crate::main!`].
    fn l4_program_main();
}

extern "C" fn rust_start() -> ! {
    crate::kip::init();
    // SAFETY: `l4_program_main` is defined exactly once by the program through `main!`.
    unsafe { l4_program_main() };
    crate::kdb::print("program returned from main; stopping\n");
    crate::thread::park()
}

/// Declares the program's main function: `l4::main!(main);` with `fn main()`.
#[macro_export]
macro_rules! main {
    ($f:path) => {
        #[no_mangle]
        fn l4_program_main() {
            $f()
        }
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::kdb::print("PANIC in user program: ");
    let _ = core::fmt::Write::write_fmt(&mut crate::kdb::Console, format_args!("{}\n", info));
    crate::thread::park()
}
