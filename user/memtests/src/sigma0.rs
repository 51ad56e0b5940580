//! Checks of the σ0 protocol: requests by address and "anywhere", refusals (kernel
//! memory, σ0's own memory and areas, another client's memory, non-existent memory),
//! device memory, idempotence for the root task, I/O fpages, and page faults served and
//! refused by σ0.

use core::sync::atomic::{AtomicU64, Ordering};

use abi::fpage::{Fpage, IoFpage, Rights};
use abi::kip::{MemDesc, MemKind};
use abi::time::Time;

use crate::harness::{ensure, fail, Check, Context, Tally, Why};
use crate::lab::{self, any, anywhere, sigma0_request, window, Child};

/// Physical memory descriptors of the KIP (later ones override earlier ones).
fn descriptors() -> impl Iterator<Item = MemDesc> {
    let kip = l4::kip::get();
    (0..)
        .map_while(move |i| kip.mem_desc(i))
        .flatten()
        .filter(|d| !d.virtual_)
}

/// The kind the KIP gives physical address `a` (the last descriptor covering it).
fn kind_of(a: u64) -> Option<MemKind> {
    descriptors()
        .filter(|d| d.low <= a && a <= d.high)
        .last()
        .map(|d| d.kind)
}

/// Asks σ0 for `fpage` into the window; the answer's base, or `None` if refused.
fn ask(fpage: Fpage) -> Result<Option<u64>, Why> {
    let f = sigma0_request(fpage, window())?;
    Ok((!f.is_nil()).then_some(f.base()))
}

fn exact(p: u64, log2: u8) -> Result<Option<u64>, Why> {
    ask(Fpage::new(p, log2, Rights::RWX))
}

/// A child's σ0 request, into its window at 2^32: the answer, or nil.
fn child_asks(c: &Child, fpage: Fpage) -> Result<Fpage, Why> {
    let r = c.call(
        lab::cmd::SIGMA0,
        &[fpage.raw(), Fpage::new(1 << 32, 32, Rights::NONE).raw()],
    )?;
    if r[1] == 0 {
        fail!("the child's σ0 request failed");
    }
    Ok(Fpage(r[0]))
}

fn any_page() -> Check {
    let p = any(12)?;
    ensure!(
        kind_of(p) == Some(MemKind::Conventional),
        "σ0 gave {:#x}, which the KIP calls {:?}",
        p,
        kind_of(p)
    );
    lab::poke(p, 0x5EED);
    ensure!(
        lab::peek(p) == 0x5EED,
        "the page does not keep what is written"
    );
    Ok(())
}

fn any_large() -> Check {
    let p = any(21)?;
    ensure!(
        p % (1 << 21) == 0 && kind_of(p) == Some(MemKind::Conventional),
        "2 MiB block at {:#x}",
        p
    );
    Ok(())
}

fn any_too_large() -> Check {
    ensure!(
        ask(anywhere(46))?.is_none(),
        "σ0 found 64 TiB of free memory"
    );
    Ok(())
}

/// The highest conventional page: σ0 hands out low memory first, so it is still free.
fn top_page() -> Result<u64, Why> {
    let top = descriptors()
        .filter(|d| d.kind == MemKind::Conventional)
        .map(|d| (d.high + 1) & !0xFFF)
        .max()
        .ctx("no conventional memory")?;
    Ok(top - 0x1000)
}

fn exact_and_again() -> Result<[Check; 2], Why> {
    let p = top_page()? - 0x1000;
    let first = exact(p, 12)?;
    let again = exact(p, 12)?;
    Ok([
        if first == Some(p) {
            Ok(())
        } else {
            Err(Why::new(format_args!(
                "request for {:#x} answered {:?}",
                p, first
            )))
        },
        if again == Some(p) {
            Ok(())
        } else {
            Err(Why::new(format_args!(
                "repeated request answered {:?}",
                again
            )))
        },
    ])
}

fn kernel_memory() -> Check {
    let k = descriptors()
        .filter(|d| d.kind == MemKind::Reserved)
        .map(|d| d.low)
        .next()
        .ctx("no reserved memory in the KIP")?;
    ensure!(
        exact(k & !0xFFF, 12)?.is_none(),
        "σ0 gave kernel memory at {:#x}",
        k
    );
    Ok(())
}

fn non_existent() -> Check {
    let end = descriptors()
        .map(|d| d.high.saturating_add(1))
        .max()
        .unwrap_or(0);
    ensure!(end < 1 << 46, "the KIP describes memory up to {:#x}", end);
    ensure!(
        exact(end, 12)?.is_none(),
        "σ0 gave non-existent memory at {:#x}",
        end
    );
    Ok(())
}

fn sigma0_own() -> Check {
    let s0 = l4::kip::get().sigma0.low & !0xFFF;
    ensure!(
        exact(s0, 12)?.is_none(),
        "σ0 gave its own image page {:#x}",
        s0
    );
    ensure!(exact(0xBFF0_0000, 12)?.is_none(), "σ0 gave its KIP area");
    Ok(())
}

fn device(c: &Child) -> Check {
    ensure!(
        kind_of(0xB8000) == Some(MemKind::Shared),
        "the KIP calls 0xB8000 {:?}",
        kind_of(0xB8000)
    );
    ensure!(
        exact(0xB8000, 12)?.is_some(),
        "σ0 refused the VGA text memory"
    );
    let _ = lab::peek(0xB8000);
    let f = child_asks(c, Fpage::new(0xB8000, 12, Rights::RW))?;
    ensure!(!f.is_nil(), "σ0 refused device memory to a second client");
    Ok(())
}

fn other_client(c: &Child) -> Result<[Check; 2], Why> {
    let mine = any(12)?;
    let refused = child_asks(c, Fpage::new(mine, 12, Rights::RW))?;
    let theirs = child_asks(c, anywhere(12))?;
    let back = if theirs.is_nil() {
        None
    } else {
        exact(theirs.base(), 12)?
    };
    Ok([
        if refused.is_nil() {
            Ok(())
        } else {
            Err(Why::new(format_args!(
                "σ0 gave the root task's page {:#x} to another client",
                mine
            )))
        },
        if !theirs.is_nil() && back == Some(theirs.base()) {
            Ok(())
        } else {
            Err(Why::new(format_args!(
                "the child got {:?}; the root task's request for it: {:?}",
                theirs, back
            )))
        },
    ])
}

fn io_ports() -> Result<[Check; 3], Why> {
    let port = sigma0_request(
        Fpage::from(IoFpage::new(0x80, 0, Rights::RW)),
        Fpage::complete(Rights::NONE),
    )?;
    let pic = sigma0_request(
        Fpage::from(IoFpage::new(0x20, 1, Rights::RW)),
        Fpage::complete(Rights::NONE),
    )?;
    let anywhere_io = sigma0_request(
        Fpage(u64::MAX << 16 | IoFpage::new(0, 2, Rights::RW).raw() & 0xFFFF),
        Fpage::complete(Rights::NONE),
    )?;
    let io = IoFpage::try_from(port);
    Ok([
        if io.is_ok_and(|io| io.port() == 0x80 && io.log2count() == 0) {
            Ok(())
        } else {
            Err(Why::new(format_args!("σ0 answered {:?}", port)))
        },
        if pic.is_nil() {
            Ok(())
        } else {
            Err(Why::new(format_args!(
                "σ0 gave the kernel's PIC ports: {:?}",
                pic
            )))
        },
        if anywhere_io.is_nil() {
            Ok(())
        } else {
            Err(Why::new(format_args!(
                "σ0 placed an I/O fpage anywhere: {:?}",
                anywhere_io
            )))
        },
    ])
}

/// The root task touches a free page it never asked for: σ0 maps it (1:1).
fn fault_served() -> Check {
    let p = top_page()?;
    // SAFETY: a read of a free conventional page: the fault goes to σ0 (this task's
    // pager), which maps it 1:1; nothing else uses that address in this space.
    let v = unsafe { core::ptr::read_volatile(p as *const u64) };
    let again = exact(p, 12)?;
    ensure!(
        again == Some(p),
        "after the fault (read {:#x}) σ0 answers {:?} for the page",
        v,
        again
    );
    Ok(())
}

static TOUCH: AtomicU64 = AtomicU64::new(0);
static TOUCHED: AtomicU64 = AtomicU64::new(0);

extern "C" fn toucher(_: usize) -> ! {
    let a = TOUCH.load(Ordering::SeqCst);
    // SAFETY: deliberately touches kernel memory: σ0 must leave the fault unresolved.
    let v = unsafe { core::ptr::read_volatile(a as *const u64) };
    TOUCHED.store(v | 1, Ordering::SeqCst);
    l4::thread::park()
}

/// A thread of this space whose pager is σ0 reads `addr`; after 200 ms returns what it
/// read (with bit 0 set), or 0 if the read has not finished (the fault stayed open).
fn touch_through_sigma0(addr: u64) -> Result<u64, Why> {
    TOUCH.store(addr, Ordering::SeqCst);
    TOUCHED.store(0, Ordering::SeqCst);
    let t = lab::fresh_id();
    lab::start_local(t, 2, toucher, lab::sigma0(), 0)?;
    let _ = l4::ipc::sleep(Time::Period { us: 200_000 });
    let done = TOUCHED.load(Ordering::SeqCst);
    let _ = l4::thread::delete_thread(t);
    Ok(done)
}

/// A thread of this space whose pager is σ0 touches kernel memory: the fault stays open.
fn fault_refused() -> Check {
    let k = descriptors()
        .filter(|d| d.kind == MemKind::Reserved)
        .map(|d| d.low)
        .next()
        .ctx("no reserved memory")?;
    let done = touch_through_sigma0(k & !0xFFF)?;
    ensure!(done == 0, "the thread read kernel memory ({:#x})", done);
    Ok(())
}

/// A thread of this space whose pager is σ0 touches shared memory (the VGA window): σ0
/// maps it, as Pistachio's σ0 does (programs linked with Pistachio's library store to
/// address 0, shared memory, at start).
fn fault_shared() -> Check {
    let a = 0xA_0000;
    ensure!(kind_of(a) == Some(MemKind::Shared), "the KIP calls {:#x} {:?}", a, kind_of(a));
    let done = touch_through_sigma0(a)?;
    ensure!(done != 0, "σ0 left the fault on shared memory at {:#x} unresolved", a);
    Ok(())
}

/// Runs the σ0 checks.
pub fn run(s: &mut Tally) {
    s.report("sigma0::any-page-is-conventional", any_page());
    s.report("sigma0::any-2m-is-aligned", any_large());
    s.report("sigma0::any-too-large-refused", any_too_large());
    match exact_and_again() {
        Ok([a, b]) => {
            s.report("sigma0::exact-free-page", a);
            s.report("sigma0::exact-again-idempotent", b);
        }
        Err(e) => s.report("sigma0::exact-free-page", Err(e)),
    }
    s.report("sigma0::kernel-memory-refused", kernel_memory());
    s.report("sigma0::non-existent-memory-refused", non_existent());
    s.report("sigma0::own-image-and-kip-area-refused", sigma0_own());
    match Child::new() {
        Ok(c) => {
            s.report("sigma0::device-memory-to-anyone", device(&c));
            match other_client(&c) {
                Ok([a, b]) => {
                    s.report("sigma0::other-clients-memory-refused", a);
                    s.report("sigma0::root-task-gets-given-memory-again", b);
                }
                Err(e) => s.report("sigma0::other-clients-memory-refused", Err(e)),
            }
        }
        Err(e) => s.report("sigma0::device-memory-to-anyone", Err(e)),
    }
    match io_ports() {
        Ok([a, b, c]) => {
            s.report("sigma0::io-fpage-granted", a);
            s.report("sigma0::kernel-ports-refused", b);
            s.report("sigma0::io-anywhere-refused", c);
        }
        Err(e) => s.report("sigma0::io-fpage-granted", Err(e)),
    }
    s.report("sigma0::page-fault-served", fault_served());
    s.report(
        "sigma0::page-fault-on-kernel-memory-refused",
        fault_refused(),
    );
    s.report("sigma0::page-fault-on-shared-memory-served", fault_shared());
}
