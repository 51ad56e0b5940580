//! `uart`: the COM1 driver program. Started by the root task in its own address space;
//! asks the root task for the UART's ports (σ0 if it does not give them), has IRQ 4
//! attached through the root task, and serves the UART protocol for good (see the `uart`
//! library).

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]

fn main() {
    let mut d = uart::driver::Driver::start(uart::driver::Config::com1());
    d.serve()
}

l4::main!(main);
