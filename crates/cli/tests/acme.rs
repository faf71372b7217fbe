//! `herald serve --acme-domain` against Debian's `pebble` ACME test server: herald creates an
//! account, answers pebble's TLS-ALPN-01 validation on its own port, and serves the certificate
//! pebble issued (checked by `curl` trusting only pebble's root); restarted on the same cache,
//! it serves the cached certificate without a new order.
//!
//! pebble serves its directory over HTTPS with a certificate from a test CA made here
//! (`--acme-directory-ca` trusts it), validates `localhost` through the system resolver, and
//! connects to herald's port for TLS-ALPN-01 (its `tlsPort`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Herald;
use common::redis::free_port;
use common::tls::TestCa;

const KEY: &str = "acme-test-key-0123456789abcdefghijk";
const WAIT: Duration = Duration::from_secs(60);

/// A `pebble` process, killed when dropped.
struct Pebble {
    child: Child,
    /// `https://127.0.0.1:PORT/dir`
    directory: String,
    /// `https://127.0.0.1:PORT` of its management interface (roots, intermediates).
    management: String,
}

impl Pebble {
    /// Starts pebble with its HTTPS certificate from `ca`, validating TLS-ALPN-01 on
    /// `tls_port`; panics with the install command when pebble is missing.
    fn start(ca: &mut TestCa, tls_port: u16) -> Pebble {
        let leaf = ca.issue();
        let (port, management_port) = (free_port(), free_port());
        let config = ca.dir.path().join("pebble.json");
        let json = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": leaf.cert,
            "privateKey": leaf.key,
            "httpPort": free_port(),
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(&config, json.to_string()).unwrap();
        let mut child = Command::new("pebble")
            .arg("-config")
            .arg(&config)
            // No random validation delays, no nonces refused on purpose: the test is about
            // herald's ACME flow, not its patience.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run pebble ({e}): the ACME test needs Debian's ACME test server; \
                     apt-get install pebble (.ci/run installs it)"
                )
            });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines
                .next()
                .expect("pebble exited before serving its directory")
                .unwrap();
            if line.contains("ACME directory available at") {
                break;
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Pebble {
            child,
            directory: format!("https://127.0.0.1:{port}/dir"),
            management: format!("https://127.0.0.1:{management_port}"),
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs curl with `args`; its stdout, or a panic with its stderr.
fn curl(args: &[&str]) -> String {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "curl {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn herald_obtains_a_certificate_from_pebble_by_tls_alpn_01_and_serves_it() {
    let mut ca = TestCa::new();
    let port = free_port();
    let pebble = Pebble::start(&mut ca, port);
    let cache = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "--transport",
        "memory",
        "--jwt-key",
        KEY,
        "--listen",
        &listen,
        "--acme-domain",
        "localhost",
        "--acme-contact",
        "mailto:ops@example.com",
        "--acme-cache",
        cache.path().to_str().unwrap(),
        "--acme-directory",
        &pebble.directory,
        "--acme-directory-ca",
        ca.cert.to_str().unwrap(),
        "--log",
        "info,herald_hub::acme=debug",
    ];
    let mut hub = Herald::start(&args);
    hub.wait_for_log("ACME: certificate obtained and in use", WAIT)
        .unwrap_or_else(|| panic!("no certificate from pebble; log: {:?}", hub.log));
    assert!(
        hub.log.iter().any(|l| l.contains("answering tls-alpn-01")),
        "{:?}",
        hub.log
    );

    // pebble makes a new root at each start: trust only that one, and reach the hub by the
    // certificate's name.
    let root = ca.dir.path().join("pebble-root.pem");
    let management_ca = ca.cert.to_str().unwrap();
    let root_pem = curl(&[
        "--cacert",
        management_ca,
        &format!("{}/roots/0", pebble.management),
    ]);
    std::fs::write(&root, root_pem).unwrap();
    let url = format!("https://localhost:{port}/.well-known/mercure");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let answer = || {
        curl(&[
            "--cacert",
            root.to_str().unwrap(),
            "--resolve",
            &resolve,
            "-X",
            "POST",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            &url,
        ])
    };
    // A publish without a token: refused by the hub, after a handshake curl verified.
    assert_eq!(answer(), "401 2");

    // Restarted on the same cache: the certificate is served at once, with no new order.
    drop(hub);
    let mut hub = Herald::start(&args);
    hub.wait_for_log("ACME: certificate valid; renewal in", WAIT)
        .unwrap_or_else(|| panic!("cached certificate not used; log: {:?}", hub.log));
    assert_eq!(answer(), "401 2");
    assert!(
        !hub.log.iter().any(|l| l.contains("answering tls-alpn-01")),
        "a new order after restart: {:?}",
        hub.log
    );
}
