//! What the process-level tests share: a `herald serve` child process on a free port.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A `herald serve` process listening on a free loopback port, killed on drop.
pub struct HubProcess {
    pub child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
}

impl HubProcess {
    /// Starts `herald serve --listen 127.0.0.1:0 ARGS...` and waits until it listens.
    pub fn spawn(args: &[&str]) -> HubProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("herald binary runs");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("herald exited before listening")
                .unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split('/').next().unwrap().to_owned();
            }
        };
        // Keep draining stderr so the hub never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        HubProcess { child, addr }
    }

    /// The hub URL, `http://127.0.0.1:PORT/.well-known/mercure`.
    pub fn url(&self) -> String {
        format!("http://{}/.well-known/mercure", self.addr)
    }

    /// Whether the process is still running.
    #[allow(dead_code)]
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `herald serve` knows `flag` (settings that other branches are adding).
#[allow(dead_code)]
pub fn serve_supports(flag: &str) -> bool {
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--help"])
        .output()
        .expect("herald binary runs");
    String::from_utf8_lossy(&output.stdout).contains(flag)
}
