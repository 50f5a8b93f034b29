//! Who holds a TCP port. When a listener cannot bind because its address is taken, the error
//! names the process that has it (on Linux, from `/proc`), so the user knows what to stop.
//!
//! Best effort and bounded: the lookup reads at most a few MiB of `/proc/net/tcp*`, looks at a
//! bounded number of descriptors, gives up after a short time, and answers `None` whenever
//! something cannot be read (another user's process, no `/proc`).

use std::net::SocketAddr;

/// A process that holds a port: its id and what it runs (the program and its subcommand words,
/// never its options, which may carry a token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.command.is_empty() {
            write!(f, "pid {}", self.pid)
        } else {
            write!(f, "pid {}, {}", self.pid, self.command)
        }
    }
}

/// Why binding `addr` failed, for a sentence that starts "cannot listen on {addr}: ".
/// A taken address names its port and, when it can be found, the process holding it.
pub fn why(addr: SocketAddr, error: &std::io::Error) -> String {
    if error.kind() != std::io::ErrorKind::AddrInUse {
        return error.to_string();
    }
    match holder(addr.port()) {
        Some(h) => format!("port {} is already in use by {h}", addr.port()),
        None => format!("port {} is already in use by another process", addr.port()),
    }
}

/// The process (other than this one) with a socket listening on `port`, if it can be found.
pub fn holder(port: u16) -> Option<Holder> {
    #[cfg(target_os = "linux")]
    {
        linux::holder(port)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = port;
        None
    }
}

/// The program's file name and the words after it up to the first option: `gatehouse up`.
fn describe(cmdline: &[u8]) -> String {
    const MAX: usize = 80;
    let mut words = cmdline
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(String::from_utf8_lossy);
    let Some(program) = words.next() else {
        return String::new();
    };
    let mut text = program
        .rsplit('/')
        .next()
        .unwrap_or(program.as_ref())
        .to_owned();
    for word in words.take_while(|w| !w.starts_with('-')).take(3) {
        text.push(' ');
        text.push_str(&word);
    }
    if text.len() > MAX {
        let mut end = MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text.chars().filter(|c| !c.is_control()).collect()
}

/// The inodes of the sockets listening on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let (_, hex_port) = local.rsplit_once(':')?;
            let state = fields.get(3)?;
            if u16::from_str_radix(hex_port, 16).ok()? != port || *state != LISTEN {
                return None;
            }
            fields.get(9)?.parse().ok().filter(|inode| *inode != 0)
        })
        .collect()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::Read;
    use std::time::{Duration, Instant};

    use super::{Holder, describe, listening_inodes};

    /// Enough for a busy machine's socket table; more is not read.
    const MAX_TABLE: u64 = 8 << 20;
    /// Descriptors looked at, over all processes.
    const MAX_DESCRIPTORS: usize = 200_000;
    const MAX_TIME: Duration = Duration::from_millis(500);

    pub(super) fn holder(port: u16) -> Option<Holder> {
        let mut inodes = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let mut text = String::new();
            if let Ok(file) = std::fs::File::open(table) {
                let _ = file.take(MAX_TABLE).read_to_string(&mut text);
            }
            inodes.extend(listening_inodes(&text, port));
        }
        if inodes.is_empty() {
            return None;
        }
        let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
        let me = std::process::id();
        let started = Instant::now();
        let mut looked = 0usize;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            if looked >= MAX_DESCRIPTORS || started.elapsed() > MAX_TIME {
                return None;
            }
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                looked += 1;
                let Ok(target) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                    let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                    return Some(Holder {
                        pid,
                        command: describe(&cmdline),
                    });
                }
                if looked >= MAX_DESCRIPTORS {
                    break;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_the_program_and_its_subcommand_never_its_options() {
        assert_eq!(
            describe(b"/opt/x/target/debug/gatehouse\0up\0--data\0/tmp/a\0"),
            "gatehouse up"
        );
        assert_eq!(
            describe(b"gatehouse\0gateway\0--token\0GatewayKey secret\0"),
            "gatehouse gateway"
        );
        assert_eq!(describe(b""), "");
        let long = format!("{}\0", "é".repeat(100));
        assert!(describe(long.as_bytes()).chars().count() <= 81);
    }

    #[test]
    fn finds_listening_sockets_on_the_port_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0000000000000000 100 0 0 10 0
   2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4244 1 0000000000000000 100 0 0 10 0
   3: garbage";
        assert_eq!(listening_inodes(table, 8080), vec![4242]);
        assert_eq!(listening_inodes(table, 8081), vec![4244]);
        assert!(listening_inodes(table, 9).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn names_the_process_holding_a_port() {
        // A child process holds the port: this process is skipped on purpose.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import socket,time;s=socket.socket();s.bind(('127.0.0.1',{port}));s.listen();print('ok',flush=True);time.sleep(30)"
                ),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(child) = child.as_mut() else {
            return; // no python3 here: nothing to hold the port with
        };
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        );
        let found = holder(port);
        let _ = child.kill();
        let _ = child.wait();
        let found = found.unwrap();
        assert_eq!(found.pid, child.id());
        assert!(found.command.starts_with("python3"), "{found}");
        let taken = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(why(addr, &taken).contains(&format!("port {port} is already in use")));
    }
}
