//! The client side of the RTC protocol: date and time, ticks, alarms.

use abi::thread_id::ThreadId;
use abi::time::Time;
use drvkit::cmos::DateTime;
use drvkit::msg::{self, CallError};
use drvkit::wire::{self, rtc};

/// How long a request may wait to be received by the service.
const SEND_TIMEOUT: Time = Time::Period { us: 2_000_000 };
/// Extra time a sleep gives the service beyond the sleep itself.
const SLACK_US: u64 = 2_000_000;

/// What [`Rtc::now`] returns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Now {
    /// The clock's date and time.
    pub time: DateTime,
    /// Periodic ticks since the service started.
    pub ticks: u64,
    /// Ticks per second.
    pub hz: u64,
}

/// What [`Rtc::ticks`] returns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ticks {
    /// Periodic ticks since the service started.
    pub ticks: u64,
    /// Ticks per second.
    pub hz: u64,
    /// Interrupt messages the service got.
    pub interrupts: u64,
}

/// An RTC time service, by its thread id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rtc {
    server: ThreadId,
}

impl Rtc {
    /// The service served by thread `server`.
    pub const fn new(server: ThreadId) -> Self {
        Self { server }
    }

    /// The service's thread.
    pub const fn server(self) -> ThreadId {
        self.server
    }

    /// Date, time and ticks.
    pub fn now(self) -> Result<Now, CallError> {
        let (_, r) = msg::call(self.server, rtc::NOW, &[], SEND_TIMEOUT, SEND_TIMEOUT, &[])?;
        let time = DateTime::unpack(r.word(0)).map_err(|_| CallError::BadReply(r.word(0)))?;
        Ok(Now {
            time,
            ticks: r.word(1),
            hz: r.word(2),
        })
    }

    /// Tick count, rate and interrupts.
    pub fn ticks(self) -> Result<Ticks, CallError> {
        let (_, r) = msg::call(self.server, rtc::TICKS, &[], SEND_TIMEOUT, SEND_TIMEOUT, &[])?;
        Ok(Ticks {
            ticks: r.word(0),
            hz: r.word(1),
            interrupts: r.word(2),
        })
    }

    /// Sleeps `us` microseconds (counted in the clock's ticks, rounded up); returns the
    /// tick count at wake-up.
    pub fn sleep(self, us: u64) -> Result<u64, CallError> {
        let rcv = Time::Period {
            us: us.saturating_add(SLACK_US),
        };
        let (_, r) = msg::call(self.server, rtc::SLEEP, &[us], SEND_TIMEOUT, rcv, &[])?;
        Ok(r.word(0))
    }

    /// One round trip to the service.
    pub fn ping(self) -> Result<(), CallError> {
        msg::call(self.server, wire::PING, &[], SEND_TIMEOUT, SEND_TIMEOUT, &[]).map(|_| ())
    }
}
