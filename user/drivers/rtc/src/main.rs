//! `rtc`: the time/alarm service program. Started by the root task in its own address
//! space; asks the root task for the CMOS ports (σ0 if it does not give them), has IRQ 8
//! attached through the root task, runs the clock's periodic interrupt at 64 Hz and serves
//! the RTC protocol for good.

#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]

fn main() {
    let mut s = rtc::service::Service::start(rtc::service::Config::standard());
    s.serve()
}

l4::main!(main);
