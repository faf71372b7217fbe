//! The one way these tests run the `herald` binary: a clean environment, stderr and stdout read
//! on threads (so that the process never blocks on a full pipe), and `herald serve` started on
//! a free port and waited for until it says where it listens.

#![allow(dead_code)] // each test file uses its own part of it
#![allow(unreachable_pub)] // helpers shared by the test files, not an API

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// How long the binary gets to start, fail or stop.
pub const STARTUP: Duration = Duration::from_secs(20);
pub const STOP: Duration = Duration::from_secs(10);

/// `herald` with a clean environment: none of the test runner's HERALD_*, MERCURE_* or RUST_LOG
/// variables leak into the process under test.
pub fn herald() -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("HERALD_") || name.starts_with("MERCURE_") || name == "RUST_LOG" {
            command.env_remove(&*name);
        }
    }
    command.env("NO_COLOR", "1").stdin(Stdio::null());
    command
}

/// Reads `reader` line by line on a thread, into a channel.
pub fn lines_of(reader: impl Read + Send + 'static) -> Receiver<String> {
    let (send, receive) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// Waits up to `timeout` for `child` to exit; kills it past that and returns `None`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `herald serve`, killed when dropped.
pub struct Herald {
    pub child: Child,
    /// `http://127.0.0.1:PORT/.well-known/mercure`
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub stderr: Receiver<String>,
    pub stdout: Receiver<String>,
    /// Every stderr line read so far.
    pub log: Vec<String>,
}

impl Herald {
    /// Starts `herald serve ARGS`, on `--listen 127.0.0.1:0` unless ARGS sets `--listen`, and
    /// waits for its "listening on" line.
    pub fn start(args: &[&str]) -> Herald {
        Herald::start_command(herald(), args)
    }

    /// Like [`Herald::start`], with a command prepared by the caller (from [`herald`]: its
    /// working directory, environment, ...).
    pub fn start_command(mut command: Command, args: &[&str]) -> Herald {
        command.arg("serve").args(args);
        if !args.contains(&"--listen") && !args.iter().any(|a| a.starts_with("--listen=")) {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the herald binary runs");
        let stderr = lines_of(child.stderr.take().unwrap());
        let stdout = lines_of(child.stdout.take().unwrap());
        let mut herald = Herald {
            child,
            url: String::new(),
            addr: String::new(),
            stderr,
            stdout,
            log: Vec::new(),
        };
        let line = herald
            .wait_for_log("listening on http://", STARTUP)
            .unwrap_or_else(|| panic!("herald did not start; stderr: {:?}", herald.log));
        let start = line.find("http://").unwrap();
        herald.url = line[start..]
            .split(|c: char| c.is_whitespace() || c == '\x1b')
            .next()
            .unwrap()
            .to_owned();
        assert!(herald.url.ends_with("/.well-known/mercure"), "{line}");
        herald.addr = herald.url["http://".len()..]
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        herald
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        if let Some(line) = self.log.iter().find(|l| l.contains(needle)) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Reads stdout until a line containing `needle`; returns every line read.
    pub fn stdout_until(&mut self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + STARTUP;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    lines.push(line);
                    if found {
                        return lines;
                    }
                }
                Err(_) => panic!("no {needle:?} on stdout; got {lines:?}"),
            }
        }
    }

    /// Sends SIGTERM (through `kill`, as a service manager would) and waits for the exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
        wait_with_timeout(&mut self.child, STOP)
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
