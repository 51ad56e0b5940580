//! Inter-process communication (X.2 Ipc). This module currently provides the timeout
//! side: a thread whose wait times out is made runnable again.

use crate::thread::{State, Tcb};

/// A waiting thread's timeout expired.
pub fn timeout_expired(t: &mut Tcb) {
    if matches!(t.state, State::Sending | State::Receiving) {
        crate::sched::wake(t);
    }
}
