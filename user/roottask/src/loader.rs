//! Loading programs from the boot archive into new spaces, and paging them.
//!
//! # Invariants
//! `pages[..npages]` holds, for every loaded page, which program it belongs to, where the
//! program sees it, where it lies physically (in the window) and its rights; a program's
//! pages are distinct virtual pages.

use abi::fpage::{Fpage, IoFpage, Rights};
use abi::msg::{label, MapItem};
use drvkit::rootsrv::{Host, RootService};
use abi::thread_id::ThreadId;
use abi::time::Time;
use bootfmt::cpio::Archive;
use bootfmt::elf::Elf;
use l4::ipc::{self, Msg, Received};
use l4::println;

use crate::sigma0::{self, WINDOW};

/// What [`Loader::serve_fault`] made of a message.
pub enum Fault {
    /// A page fault or I/O page fault of a program, answered.
    Served,
    /// A fault that could not be served: the program (this thread) was stopped.
    Stopped(ThreadId),
    /// Not a fault of a program of this task.
    Other,
}

/// Most programs started.
const MAX_PROGRAMS: usize = 16;
/// Most pages loaded, over all programs (16 MiB).
const MAX_PAGES: usize = 4096;
/// Where every program's KIP and UTCBs go (as for the root servers).
const KIP_AREA: u64 = 0xBFF0_0000;
const UTCB_AREA: u64 = 0xBF00_0000;
const UTCB_LOG2: u8 = 18;
/// Thread numbers of started programs: UserBase + this + index.
const FIRST_NUMBER: u32 = 0x100;

/// Archive entries that are not programs for this task.
const ROOT_SERVERS: [&str; 3] = ["sigma0", "roottask", "sigma1"];

#[derive(Clone, Copy)]
struct Page {
    program: u16,
    vaddr: u64,
    phys: u64,
    rights: Rights,
}

#[derive(Clone, Copy)]
struct Program {
    thread: ThreadId,
    name: [u8; 32],
    name_len: usize,
}

impl Program {
    fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }
}

/// The programs this task started and their pages.
pub struct Loader {
    me: ThreadId,
    programs: [Option<Program>; MAX_PROGRAMS],
    nprograms: usize,
    pages: [Page; MAX_PAGES],
    npages: usize,
}

/// Why a program could not be started.
type Failure = &'static str;

impl Loader {
    /// No programs yet; `me` is set by [`Loader::set_me`].
    pub const fn new() -> Self {
        Self {
            me: ThreadId::NIL,
            programs: [None; MAX_PROGRAMS],
            nprograms: 0,
            pages: [Page {
                program: 0,
                vaddr: 0,
                phys: 0,
                rights: Rights::NONE,
            }; MAX_PAGES],
            npages: 0,
        }
    }

    /// This task's thread: the pager and scheduler of what it starts.
    pub fn set_me(&mut self, me: ThreadId) {
        self.me = me;
    }

    /// Programs running.
    pub fn running(&self) -> usize {
        self.programs.iter().flatten().count()
    }

    /// Starts every program module of the archive, in archive order, entering each in
    /// the registry of `service` before it runs.
    pub fn start_all<H: Host>(&mut self, archive: &Archive<'static>, service: &mut RootService<H>) {
        for entry in archive.entries() {
            let Ok(entry) = entry else {
                println!("roottask: the boot archive is damaged; stopping there");
                return;
            };
            if !entry.is_file()
                || ROOT_SERVERS.contains(&entry.name)
                || entry.name.ends_with(".args")
            {
                continue;
            }
            let args = args_of(archive, entry.name);
            if args.is_empty() {
                println!("roottask: starting {}", entry.name);
            } else {
                println!("roottask: starting {} (arguments: {})", entry.name, args);
            }
            if let Err(why) = self.start(entry.name, entry.data, service) {
                println!("roottask: cannot start {}: {}", entry.name, why);
            }
        }
    }

    /// Loads `elf` into a new space, enters it in the registry and starts its thread.
    fn start<H: Host>(&mut self, name: &str, elf: &[u8], service: &mut RootService<H>) -> Result<(), Failure> {
        if self.nprograms == MAX_PROGRAMS {
            return Err("too many programs");
        }
        let elf = Elf::parse(elf).map_err(|_| "not an x86-64 ELF64 executable")?;
        elf.validate_layout()
            .map_err(|_| "overlapping or invalid segments")?;
        let index = self.nprograms;
        let first_page = self.npages;
        let loaded = self.load(index as u16, &elf);
        if let Err(e) = loaded {
            // The pages stay σ0's grant to this task; their slots are simply dropped.
            self.npages = first_page;
            return Err(e);
        }
        let ti = abi::kip::ThreadInfo::decode(l4::kip::get().thread_info);
        let thread = ThreadId::global(ti.user_base as u32 + FIRST_NUMBER + index as u32, 1);
        let mut p = Program {
            thread,
            name: [0; 32],
            name_len: name.len().min(32),
        };
        p.name[..p.name_len].copy_from_slice(&name.as_bytes()[..p.name_len]);
        if service.add_program(thread, name).is_err() {
            self.npages = first_page;
            return Err("its name is taken or not a program name, or the registry is full");
        }
        self.programs[index] = Some(p);
        self.nprograms += 1;
        let made = make_thread(thread, self.me, elf.entry());
        if made.is_err() {
            self.programs[index] = None;
            self.npages = first_page;
            service.forget(thread);
        }
        made
    }

    /// Copies the program's segments into pages from σ0.
    fn load(&mut self, program: u16, elf: &Elf) -> Result<(), Failure> {
        for seg in elf.segments() {
            let seg = seg.map_err(|_| "bad segment")?;
            let mut rights = Rights::R;
            if seg.flags.w {
                rights |= Rights::W;
            }
            if seg.flags.x {
                rights |= Rights::X;
            }
            let start = seg.vaddr & !0xFFF;
            let end = seg.vaddr.checked_add(seg.memsz).ok_or("segment wraps")?;
            let mut va = start;
            while va < end {
                let page = self.page_for(program, va, rights)?;
                // Bytes of the segment's file data that fall into this page.
                let lo = va.max(seg.vaddr);
                let hi = (va + 0x1000).min(seg.vaddr + seg.data.len() as u64);
                if lo < hi {
                    let from = &seg.data[(lo - seg.vaddr) as usize..(hi - seg.vaddr) as usize];
                    let at = (WINDOW + page + (lo - va)) as *mut u8;
                    // SAFETY: `page` is a whole page σ0 mapped into the window for this
                    // task; `[lo, hi)` lies inside it; nobody else uses it yet.
                    unsafe { core::ptr::copy_nonoverlapping(from.as_ptr(), at, from.len()) };
                }
                va += 0x1000;
            }
        }
        Ok(())
    }

    /// The page backing `va` of `program`: an existing one (segments may share a page;
    /// rights add up) or a fresh zeroed page from σ0.
    fn page_for(&mut self, program: u16, va: u64, rights: Rights) -> Result<u64, Failure> {
        if let Some(p) = self.pages[..self.npages]
            .iter_mut()
            .find(|p| p.program == program && p.vaddr == va)
        {
            p.rights |= rights;
            return Ok(p.phys);
        }
        if self.npages == MAX_PAGES {
            return Err("programs too large");
        }
        let phys = sigma0::page().ok_or("sigma0 has no memory left")?;
        // SAFETY: a page σ0 just mapped into the window for this task alone.
        unsafe { core::ptr::write_bytes((WINDOW + phys) as *mut u8, 0, 0x1000) };
        self.pages[self.npages] = Page {
            program,
            vaddr: va,
            phys,
            rights,
        };
        self.npages += 1;
        Ok(phys)
    }

    /// Answers a page fault or I/O page fault of a started program: a page fault with
    /// the loaded page, an I/O page fault as `ports` decides (it replies if it grants).
    /// A fault that cannot be served stops the program.
    pub fn serve_fault(&mut self, rx: &Received, ports: impl FnOnce(ThreadId, IoFpage) -> bool) -> Fault {
        let tag = rx.msg.tag();
        let protocol = tag.protocol();
        if (protocol != label::PAGE_FAULT && protocol != label::IO_PAGE_FAULT) || tag.untyped() != 2 {
            return Fault::Other;
        }
        let Some(index) = self
            .programs
            .iter()
            .position(|p| p.is_some_and(|p| p.thread == rx.from))
        else {
            return Fault::Other;
        };
        let w0 = rx.msg.word(0).unwrap_or(0);
        let ip = rx.msg.word(1).unwrap_or(0);
        if protocol == label::IO_PAGE_FAULT {
            let f = Fpage(w0);
            return match IoFpage::try_from(f) {
                Ok(io) if ports(rx.from, io) => Fault::Served,
                _ => self.stop(index, format_args!("used ports {:?} it cannot have", f)),
            };
        }
        let va = w0 & !0xFFF;
        let found = self.pages[..self.npages]
            .iter()
            .find(|p| p.program as usize == index && p.vaddr == va)
            .copied();
        match found {
            Some(p) => {
                let mut m = Msg::new(0);
                let _ = m.push_map(MapItem::map(Fpage::new(WINDOW + p.phys, 12, p.rights), va));
                let _ = ipc::reply(rx.from, &m);
                Fault::Served
            }
            None => self.stop(
                index,
                format_args!("faulted at {:#x} (ip {:#x}) outside its image", w0, ip),
            ),
        }
    }

    /// Stops program `index` (deletes its thread), saying why.
    fn stop(&mut self, index: usize, why: core::fmt::Arguments) -> Fault {
        let Some(p) = self.programs[index].take() else {
            return Fault::Other;
        };
        println!("roottask: {} {}; stopping it", p.name(), why);
        let _ = l4::thread::delete_thread(p.thread);
        Fault::Stopped(p.thread)
    }
}

/// The text of archive entry `<name>.args`, if any.
fn args_of(archive: &Archive<'static>, name: &str) -> &'static str {
    let mut key = [0u8; 96];
    let n = name.len();
    if n + 5 > key.len() {
        return "";
    }
    key[..n].copy_from_slice(name.as_bytes());
    key[n..n + 5].copy_from_slice(b".args");
    let Ok(key) = core::str::from_utf8(&key[..n + 5]) else {
        return "";
    };
    match archive.find(key) {
        Ok(Some(e)) => core::str::from_utf8(e.data).map_or("(not text)", str::trim),
        _ => "",
    }
}

/// Creates `thread` in a new space with the usual KIP and UTCB areas, with `pager` as
/// its pager, and starts it at `ip` (the runtime sets up its own stack).
fn make_thread(thread: ThreadId, pager: ThreadId, ip: u64) -> Result<(), Failure> {
    use l4::thread::{create_thread, delete_thread, start_message, thread_control};
    create_thread(thread, thread, pager, ThreadId::NIL, None)
        .map_err(|_| "ThreadControl (create) failed")?;
    let kip = Fpage::new(KIP_AREA, 12, Rights::NONE);
    let utcb = Fpage::new(UTCB_AREA, UTCB_LOG2, Rights::NONE);
    let steps = l4::space::space_control(thread, 0, kip, utcb, ThreadId::NIL)
        .map_err(|_| "SpaceControl failed")
        .and_then(|_| {
            thread_control(thread, thread, pager, pager, Some(UTCB_AREA))
                .map_err(|_| "ThreadControl (activate) failed")
        })
        .and_then(|()| {
            start_message(thread, 0, ip, Time::Period { us: 1_000_000 })
                .map_err(|_| "start message not taken")
        });
    if steps.is_err() {
        let _ = delete_thread(thread);
    }
    steps
}
