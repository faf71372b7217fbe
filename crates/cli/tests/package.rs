//! The Debian package (issue 12, item 6), installed for real: `cargo deb` packs the binary
//! this test run built, `dpkg -i` installs it (the postinst creates the `herald` user, its data
//! directory and a random key), the packaged binary serves a publish and a subscription with
//! the packaged config, started as the systemd unit would start it (as the `herald` user; the
//! listen address is overridden to a free port, since systemd is not running in CI
//! containers), and `dpkg -r` then `dpkg --purge` remove it all.
//!
//! It changes the machine (a package, a system user), so it runs only as root with `dpkg` and
//! `cargo deb` at hand (CI: `.ci/run` installs cargo-deb), and otherwise says loudly that it
//! was skipped.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::Herald;
use futures_util::StreamExt;
use serde_json::json;

const PACKAGE: &str = "herald";

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn has(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Why this machine cannot run the test, if it cannot.
fn cannot_run() -> Option<&'static str> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root (dpkg -i needs it)");
    }
    if !has("dpkg", "--version") {
        return Some("dpkg is not installed");
    }
    None
}

/// Removes and purges the package when the test ends, whatever happened.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", PACKAGE]).output();
    }
}

fn is_installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Builds the .deb from the binary this test run built. cargo-deb packs
/// `$CARGO_TARGET_DIR/release/herald` (the asset in crates/cli/Cargo.toml) and warns that dev
/// profiles will be refused, so the debug binary is linked where a release would be, in a
/// target directory of this test's own; `--fast` because xz on a 50 MB debug binary takes
/// minutes on a small machine.
fn build_deb(out: &Path) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = out.join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::os::unix::fs::symlink(common::BIN, target.join("release/herald")).unwrap();
    run(Command::new("cargo")
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "deb",
            "-p",
            "herald",
            "--no-build",
            "--no-strip",
            "--fast",
            "-o",
        ])
        .arg(out));
    std::fs::read_dir(out)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb wrote a .deb")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debian_package_installs_serves_and_removes() {
    if let Some(reason) = cannot_run() {
        eprintln!(
            "\n\n*** SKIPPED crates/cli/tests/package.rs: {reason}. The Debian package was NOT \
             tested. Run the tests as root with dpkg and cargo-deb (see .ci/run). ***\n"
        );
        return;
    }
    assert!(
        has("cargo-deb", "--version"),
        "cargo-deb is not installed: `cargo install cargo-deb --locked` (.ci/run does it)"
    );
    assert!(
        !is_installed(),
        "the herald package is already installed here: remove it first (dpkg --purge herald)"
    );
    let out = tempfile::tempdir().unwrap();
    let deb = build_deb(out.path());

    let _installed = Installed;
    run(Command::new("dpkg").arg("-i").arg(&deb));
    // What the package put in place.
    assert!(Path::new("/usr/bin/herald").exists());
    assert!(Path::new("/usr/lib/systemd/system/herald.service").exists());
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]));
    assert!(
        String::from_utf8_lossy(&conffiles.stdout).contains("/etc/herald/herald.toml"),
        "the config is a conffile"
    );
    run(Command::new("getent").args(["passwd", "herald"]));
    let key = std::fs::metadata("/etc/herald/jwt.key").expect("the postinst made a key");
    assert_eq!(
        key.permissions().mode() & 0o777,
        0o640,
        "key readable by root and herald only"
    );
    let data = std::fs::metadata("/var/lib/herald").unwrap();
    let herald_uid = String::from_utf8(run(Command::new("id").args(["-u", "herald"])).stdout)
        .unwrap()
        .trim()
        .parse::<u32>()
        .unwrap();
    assert_eq!(
        data.uid(),
        herald_uid,
        "the data directory belongs to herald"
    );
    let secret = std::fs::read("/etc/herald/jwt.key").unwrap();
    assert!(secret.len() >= 32, "a long random key");

    // The packaged binary with the packaged config, as the unit runs it (as herald).
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid", "herald", "--regid", "herald", "--init-groups"])
        .arg("/usr/bin/herald")
        .env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HERALD_") {
            command.env_remove(name);
        }
    }
    let mut herald = Herald::start_command(command, &["--config", "/etc/herald/herald.toml"]);
    let sign = |claims| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap()
    };
    let client = common::http_client();
    let subscription = client
        .get(format!("{}?topic=https://example.com/packaged", herald.url))
        .bearer_auth(sign(json!({"mercure": {"subscribe": ["*"]}})))
        .send()
        .await
        .unwrap();
    assert_eq!(subscription.status(), 200);
    let mut stream = subscription.bytes_stream();
    let mut text = String::new();
    // The opening comment: registered.
    while text.is_empty() {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the opening comment")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let published = client
        .post(&herald.url)
        .bearer_auth(sign(json!({"mercure": {"publish": ["*"]}})))
        .form(&[
            ("topic", "https://example.com/packaged"),
            ("data", "from the package"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    while !text.contains("data: from the package") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the update arrives")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(stream);
    // History went to the packaged data directory.
    assert!(Path::new("/var/lib/herald/history.redb").exists());
    let status = tokio::task::spawn_blocking(move || herald.terminate())
        .await
        .unwrap()
        .expect("herald exits on SIGTERM");
    assert!(status.success(), "{status}");

    // Removal keeps the config (a conffile); purge takes everything.
    run(Command::new("dpkg").args(["-r", PACKAGE]));
    assert!(!Path::new("/usr/bin/herald").exists());
    assert!(Path::new("/etc/herald/herald.toml").exists());
    run(Command::new("dpkg").args(["--purge", PACKAGE]));
    assert!(!Path::new("/etc/herald/herald.toml").exists());
    assert!(!Path::new("/etc/herald/jwt.key").exists());
    assert!(!Path::new("/var/lib/herald").exists());
}
