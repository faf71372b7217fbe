//! Debian's nginx in front of herald nodes, with the configuration documented in
//! docs/examples/nginx-herald.conf: its own prefix directory and port, no root paths.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::free_port;

/// The documented configuration, as tested.
const SITE: &str = include_str!("../../../../docs/examples/nginx-herald.conf");

/// An `nginx` master process, stopped when dropped.
pub struct Nginx {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx proxying to `nodes` (`127.0.0.1:PORT` each); panics, naming the package,
    /// when nginx is missing.
    pub fn start(nodes: &[&str]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let servers: String = nodes
            .iter()
            .map(|node| format!("    server {node} max_fails=1 fail_timeout=5s;\n"))
            .collect();
        let site = SITE
            .lines()
            .filter(|line| !line.trim_start().starts_with("server 127.0.0.1:"))
            .map(|line| {
                if line.trim_start().starts_with("keepalive") {
                    format!("{servers}{line}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect::<String>()
            .replace(
                "listen 127.0.0.1:8080;",
                &format!("listen 127.0.0.1:{port};"),
            );
        std::fs::write(dir.path().join("herald.conf"), site).unwrap();
        let prefix = dir.path().display();
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "worker_processes 1;\n\
                 error_log {prefix}/error.log warn;\n\
                 pid {prefix}/nginx.pid;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n\
                 access_log off;\n\
                 client_body_temp_path {prefix}/body;\n\
                 proxy_temp_path {prefix}/proxy;\n\
                 fastcgi_temp_path {prefix}/fastcgi;\n\
                 uwsgi_temp_path {prefix}/uwsgi;\n\
                 scgi_temp_path {prefix}/scgi;\n\
                 include {prefix}/herald.conf;\n\
                 }}\n"
            ),
        )
        .unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run nginx ({e}): this test needs it; install it with `apt-get install nginx`")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }

    /// The hub URL through nginx.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/.well-known/mercure", self.port)
    }
}

fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGKILL of the master leaves its worker behind; SIGQUIT stops both.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
