//! The monitor's commands: parsing a typed line into a [`Command`].

use core::fmt;

/// Default number of round trips of `ping`.
pub const PING_DEFAULT: u32 = 10_000;
/// Most round trips of one `ping`.
pub const PING_MAX: u32 = 1_000_000;
/// Longest `sleep`, in milliseconds.
pub const SLEEP_MAX_MS: u32 = 60_000;

/// A monitor command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Command<'a> {
    /// An empty line.
    Empty,
    /// `help`, `?`: the command list.
    Help,
    /// `threads`, `ps`, `list`: the threads and spaces the monitor can learn of (the root
    /// task's registry: programs, names, interrupt lines, ports).
    Threads,
    /// `ping [n]`, `pingpong [n]`: n IPC round trips to a server, timed.
    Ping(u32),
    /// `mem`: kernel memory use.
    Mem,
    /// `date`, `time`: the real-time clock.
    Date,
    /// `uptime`: time since boot and the RTC tick count.
    Uptime,
    /// `sleep <ms>`: an alarm from the RTC service.
    Sleep(u32),
    /// `uart`: the UART driver's counters.
    Uart,
    /// `echo <text>`: prints the text.
    Echo(&'a str),
    /// `off`, `poweroff`, `halt`: powers the machine off.
    PowerOff,
}

/// A line that is no command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CmdError<'a> {
    /// The first word names no command.
    Unknown(&'a str),
    /// An argument is missing, extra or out of range (the command's usage follows).
    Usage(&'static str),
}

impl fmt::Display for CmdError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::Unknown(w) => write!(f, "unknown command '{w}' (try 'help')"),
            CmdError::Usage(u) => write!(f, "usage: {u}"),
        }
    }
}

/// One line per command, for `help`.
pub const HELP: &[(&str, &str)] = &[
    ("help", "this list"),
    (
        "threads",
        "threads, spaces, lines and ports the root task knows (aliases: ps, list)",
    ),
    (
        "ping [n]",
        "n IPC round trips to the RTC service, timed (alias: pingpong)",
    ),
    ("mem", "kernel memory use"),
    ("date", "date and time from the CMOS clock (alias: time)"),
    ("uptime", "time since boot, RTC ticks"),
    ("sleep <ms>", "wait for an RTC alarm"),
    ("uart", "UART driver counters"),
    ("echo <text>", "print the text"),
    ("off", "power off (aliases: poweroff, halt)"),
];

fn number(arg: Option<&str>, min: u32, max: u32, usage: &'static str) -> Result<Option<u32>, CmdError<'static>> {
    let Some(a) = arg else { return Ok(None) };
    match a.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(CmdError::Usage(usage)),
    }
}

impl<'a> Command<'a> {
    /// Parses a line (words separated by spaces; surrounding spaces ignored).
    pub fn parse(line: &'a str) -> Result<Self, CmdError<'a>> {
        let line = line.trim();
        let mut words = line.split_ascii_whitespace();
        let Some(first) = words.next() else {
            return Ok(Command::Empty);
        };
        let arg = words.next();
        let extra = words.next().is_some();
        let no_args = |c: Command<'a>, usage: &'static str| {
            if arg.is_some() {
                Err(CmdError::Usage(usage))
            } else {
                Ok(c)
            }
        };
        match first {
            "help" | "?" => no_args(Command::Help, "help"),
            "threads" | "ps" | "list" => no_args(Command::Threads, "threads"),
            "mem" => no_args(Command::Mem, "mem"),
            "date" | "time" => no_args(Command::Date, "date"),
            "uptime" => no_args(Command::Uptime, "uptime"),
            "uart" => no_args(Command::Uart, "uart"),
            "off" | "poweroff" | "halt" => no_args(Command::PowerOff, "off"),
            "ping" | "pingpong" => {
                const USAGE: &str = "ping [n], 1 <= n <= 1000000";
                if extra {
                    return Err(CmdError::Usage(USAGE));
                }
                Ok(Command::Ping(number(arg, 1, PING_MAX, USAGE)?.unwrap_or(PING_DEFAULT)))
            }
            "sleep" => {
                const USAGE: &str = "sleep <ms>, 1 <= ms <= 60000";
                if extra {
                    return Err(CmdError::Usage(USAGE));
                }
                Ok(Command::Sleep(
                    number(arg, 1, SLEEP_MAX_MS, USAGE)?.ok_or(CmdError::Usage(USAGE))?,
                ))
            }
            "echo" => Ok(Command::Echo(line[first.len()..].trim_start())),
            other => Err(CmdError::Unknown(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_commands_and_aliases() {
        assert_eq!(Command::parse(""), Ok(Command::Empty));
        assert_eq!(Command::parse("   "), Ok(Command::Empty));
        assert_eq!(Command::parse("help"), Ok(Command::Help));
        assert_eq!(Command::parse(" ? "), Ok(Command::Help));
        assert_eq!(Command::parse("ps"), Ok(Command::Threads));
        assert_eq!(Command::parse("threads"), Ok(Command::Threads));
        assert_eq!(Command::parse("list"), Ok(Command::Threads));
        assert_eq!(Command::parse("mem"), Ok(Command::Mem));
        assert_eq!(Command::parse("time"), Ok(Command::Date));
        assert_eq!(Command::parse("uptime"), Ok(Command::Uptime));
        assert_eq!(Command::parse("uart"), Ok(Command::Uart));
        assert_eq!(Command::parse("halt"), Ok(Command::PowerOff));
        assert_eq!(Command::parse("poweroff"), Ok(Command::PowerOff));
    }

    #[test]
    fn arguments() {
        assert_eq!(Command::parse("ping"), Ok(Command::Ping(PING_DEFAULT)));
        assert_eq!(Command::parse("pingpong 5"), Ok(Command::Ping(5)));
        assert!(matches!(Command::parse("ping 0"), Err(CmdError::Usage(_))));
        assert!(matches!(Command::parse("ping x"), Err(CmdError::Usage(_))));
        assert!(matches!(Command::parse("ping 1 2"), Err(CmdError::Usage(_))));
        assert!(matches!(Command::parse("ping 1000001"), Err(CmdError::Usage(_))));
        assert_eq!(Command::parse("sleep 250"), Ok(Command::Sleep(250)));
        assert!(matches!(Command::parse("sleep"), Err(CmdError::Usage(_))));
        assert!(matches!(Command::parse("sleep 60001"), Err(CmdError::Usage(_))));
        assert!(matches!(Command::parse("mem now"), Err(CmdError::Usage("mem"))));
        assert_eq!(
            Command::parse("echo  hello   world "),
            Ok(Command::Echo("hello   world"))
        );
        assert_eq!(Command::parse("echo"), Ok(Command::Echo("")));
    }

    #[test]
    fn unknown_commands() {
        assert_eq!(Command::parse("reboot now"), Err(CmdError::Unknown("reboot")));
        assert_eq!(
            format!("{}", CmdError::Unknown("x")),
            "unknown command 'x' (try 'help')"
        );
        assert_eq!(format!("{}", CmdError::Usage("mem")), "usage: mem");
    }

    #[test]
    fn help_lists_every_command() {
        for (usage, _) in HELP {
            let word = usage.split(' ').next().unwrap();
            let line = match word {
                "sleep" => "sleep 1".to_string(),
                w => w.to_string(),
            };
            assert!(Command::parse(&line).is_ok(), "{line}");
        }
    }
}
