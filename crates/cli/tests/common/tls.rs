//! Test certificates made with `openssl` at test time (a CA and leaves for 127.0.0.1 and
//! localhost), and what a TLS client sees of a server's certificate.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A throwaway certificate authority in a temporary directory.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    /// The CA's certificate (PEM), to trust with `--cacert`.
    pub cert: PathBuf,
    issued: u32,
}

/// A leaf certificate and its key, as files.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The serial number, in the hex `openssl x509 -serial` prints.
    pub serial: String,
}

/// Runs `openssl ARGS` in `dir`, panicking with its stderr if it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=herald test CA",
            ],
        );
        TestCa {
            cert: dir.path().join("ca.pem"),
            dir,
            issued: 0,
        }
    }

    /// A new leaf for 127.0.0.1 and localhost, signed by this CA, with a fresh serial.
    pub fn issue(&mut self) -> Leaf {
        self.issued += 1;
        let dir = self.dir.path();
        let name = format!("leaf{}", self.issued);
        let (key, csr, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        std::fs::write(
            dir.join("leaf.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                "/CN=localhost",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &format!("0x{:X}", 0x1000 + self.issued),
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
            ],
        );
        Leaf {
            serial: serial_of(&dir.join(&cert)),
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }
}

/// The serial number of a PEM certificate file.
pub fn serial_of(cert: &Path) -> String {
    let out = openssl(
        cert.parent().unwrap(),
        &["x509", "-noout", "-serial", "-in", cert.to_str().unwrap()],
    );
    out.trim().trim_start_matches("serial=").to_owned()
}

/// The serial of the certificate `addr` (`127.0.0.1:PORT`) serves in a new handshake, and the
/// ALPN protocol it selected when offered h2 and http/1.1; `None` if the handshake fails.
pub fn served(addr: &str) -> Option<(String, String)> {
    let output = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            addr,
            "-alpn",
            "h2,http/1.1",
            "-showcerts",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text.find("-----END CERTIFICATE-----")? + "-----END CERTIFICATE-----".len();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("served.pem");
    std::fs::write(&path, &text[start..end]).unwrap();
    let alpn = text
        .lines()
        .find_map(|l| l.strip_prefix("ALPN protocol: "))
        .unwrap_or("none")
        .to_owned();
    Some((serial_of(&path), alpn))
}
