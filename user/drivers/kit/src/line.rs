//! The console line editor: turns the bytes a terminal sends into lines, and says what to
//! echo so that typing looks as users expect.
//!
//! | input                       | effect                                   | echo              |
//! |-----------------------------|------------------------------------------|-------------------|
//! | printable ASCII             | appended (if there is room)              | the byte (BEL if full) |
//! | Backspace (0x08), DEL (0x7F)| last byte removed                        | `BS SP BS`        |
//! | Ctrl-U (0x15)               | whole line removed                       | `BS SP BS` per byte |
//! | Ctrl-C (0x03)               | line dropped: [`Event::Cancel`]          | `^C CR LF`        |
//! | CR, LF, or CR LF            | line done: [`Event::Line`]               | `CR LF`           |
//! | ESC sequences (arrow keys…) | ignored whole                            | nothing           |
//! | other control bytes, ≥ 0x80 | ignored                                  | nothing           |
//!
//! # Invariants
//! `buf[..len]` is printable ASCII (so it is always valid UTF-8), `len <= N`.

/// What a byte completed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// Nothing yet.
    None,
    /// A line is complete: read it with [`LineEditor::line`] before the next byte.
    Line,
    /// Ctrl-C: the line was dropped.
    Cancel,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Esc {
    /// Not in a sequence.
    Idle,
    /// After ESC.
    Start,
    /// After `ESC [` (CSI) or `ESC O` (SS3): until a final byte.
    Body,
}

/// A line of at most `N` bytes being typed.
pub struct LineEditor<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// The last byte was CR: a following LF belongs to it.
    after_cr: bool,
    /// The previous byte completed a line or cancelled: start afresh.
    done: bool,
    esc: Esc,
}

impl<const N: usize> Default for LineEditor<N> {
    fn default() -> Self {
        Self::new()
    }
}

const ERASE: &[u8] = b"\x08 \x08";

impl<const N: usize> LineEditor<N> {
    /// An empty line.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            after_cr: false,
            done: false,
            esc: Esc::Idle,
        }
    }

    /// The text typed so far (the finished line after [`Event::Line`]).
    pub fn line(&self) -> &str {
        // The invariant keeps `buf[..len]` printable ASCII.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    /// Drops what was typed.
    pub fn clear(&mut self) {
        self.len = 0;
        self.done = false;
    }

    /// Takes one byte from the terminal; `echo` receives what to send back.
    pub fn feed(&mut self, b: u8, mut echo: impl FnMut(&[u8])) -> Event {
        if self.done {
            self.clear();
        }
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match self.esc {
            Esc::Start => {
                self.esc = if b == b'[' || b == b'O' { Esc::Body } else { Esc::Idle };
                return Event::None;
            }
            Esc::Body => {
                if (0x40..=0x7E).contains(&b) {
                    self.esc = Esc::Idle;
                }
                return Event::None;
            }
            Esc::Idle => {}
        }
        match b {
            b'\n' if after_cr => Event::None,
            b'\r' | b'\n' => {
                self.after_cr = b == b'\r';
                self.done = true;
                echo(b"\r\n");
                Event::Line
            }
            0x03 => {
                self.len = 0;
                self.done = true;
                echo(b"^C\r\n");
                Event::Cancel
            }
            0x08 | 0x7F => {
                if self.len > 0 {
                    self.len -= 1;
                    echo(ERASE);
                }
                Event::None
            }
            0x15 => {
                while self.len > 0 {
                    self.len -= 1;
                    echo(ERASE);
                }
                Event::None
            }
            0x1B => {
                self.esc = Esc::Start;
                Event::None
            }
            0x20..=0x7E => {
                if self.len < N {
                    self.buf[self.len] = b;
                    self.len += 1;
                    echo(&[b]);
                } else {
                    echo(b"\x07");
                }
                Event::None
            }
            _ => Event::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input`; returns the events other than `None`, the echo, and the last line.
    fn run<const N: usize>(ed: &mut LineEditor<N>, input: &[u8]) -> (Vec<(Event, String)>, Vec<u8>) {
        let mut echo = Vec::new();
        let mut events = Vec::new();
        for &b in input {
            let e = ed.feed(b, |s| echo.extend_from_slice(s));
            if e != Event::None {
                events.push((e, ed.line().to_string()));
            }
        }
        (events, echo)
    }

    #[test]
    fn typing_and_enter() {
        let mut ed: LineEditor<16> = LineEditor::new();
        let (ev, echo) = run(&mut ed, b"help\r");
        assert_eq!(ev, vec![(Event::Line, "help".to_string())]);
        assert_eq!(echo, b"help\r\n");
    }

    #[test]
    fn crlf_is_one_line_and_lf_alone_is_one() {
        let mut ed: LineEditor<16> = LineEditor::new();
        let (ev, _) = run(&mut ed, b"a\r\nb\nc\r\r");
        let lines: Vec<_> = ev.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lines, ["a", "b", "c", ""]);
    }

    #[test]
    fn backspace_and_delete_erase() {
        let mut ed: LineEditor<16> = LineEditor::new();
        let (ev, echo) = run(&mut ed, b"lsx\x7f\x08s\r");
        assert_eq!(ev, vec![(Event::Line, "ls".to_string())]);
        assert_eq!(echo, b"lsx\x08 \x08\x08 \x08s\r\n");
        // Backspace on an empty line echoes nothing.
        let (_, echo) = run(&mut ed, b"\x7f");
        assert!(echo.is_empty());
    }

    #[test]
    fn ctrl_c_cancels() {
        let mut ed: LineEditor<16> = LineEditor::new();
        let (ev, echo) = run(&mut ed, b"reboot\x03mem\r");
        assert_eq!(
            ev,
            vec![(Event::Cancel, String::new()), (Event::Line, "mem".to_string())]
        );
        assert_eq!(echo, b"reboot^C\r\nmem\r\n");
    }

    #[test]
    fn ctrl_u_kills_the_line() {
        let mut ed: LineEditor<16> = LineEditor::new();
        let (ev, echo) = run(&mut ed, b"ab\x15c\r");
        assert_eq!(ev, vec![(Event::Line, "c".to_string())]);
        assert_eq!(echo, b"ab\x08 \x08\x08 \x08c\r\n");
    }

    #[test]
    fn escape_sequences_are_ignored() {
        let mut ed: LineEditor<16> = LineEditor::new();
        let (ev, echo) = run(&mut ed, b"a\x1b[A\x1b[1;5Cb\x1bOPc\r");
        assert_eq!(ev, vec![(Event::Line, "abc".to_string())]);
        assert_eq!(echo, b"abc\r\n");
    }

    #[test]
    fn full_line_rings_the_bell() {
        let mut ed: LineEditor<3> = LineEditor::new();
        let (ev, echo) = run(&mut ed, b"abcd\r");
        assert_eq!(ev, vec![(Event::Line, "abc".to_string())]);
        assert_eq!(echo, b"abc\x07\r\n");
    }

    #[test]
    fn controls_and_high_bytes_are_dropped() {
        let mut ed: LineEditor<8> = LineEditor::new();
        let (ev, echo) = run(&mut ed, b"a\x01\x02\xc3\xa9\tb\r");
        assert_eq!(ev, vec![(Event::Line, "ab".to_string())]);
        assert_eq!(echo, b"ab\r\n");
    }
}
