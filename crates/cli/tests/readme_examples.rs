//! Every `curl` example of the README, run as written against a real `herald serve` process.
//!
//! The ```sh blocks that contain `curl` are extracted from README.md; `127.0.0.1:3000` becomes
//! the test hub's address, and `$PUBLISHER_TOKEN` / `$SUBSCRIBER_TOKEN` are set in the
//! environment of the shell that runs them (tokens signed with the hub's key). `curl` is
//! wrapped to add `--fail-with-body -sS`, so that an HTTP error fails the example. Blocks with
//! `curl -N` (subscriptions) run in the background from the start and must receive every
//! update the other examples publish.
//!
//! The Python and JavaScript snippets of the section "Publishing from a backend" run as
//! written too (`python3 -c`, `node --input-type=module -e`), with `HERALD_JWT_KEY` set to the
//! hub's key; each must print the id of the update it published, and the subscription examples
//! must receive those updates as well.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Herald, lines_of};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const KEY: &str = "readme-examples-test-key-0123456789";
const WAIT: Duration = Duration::from_secs(15);

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ```sh blocks containing `curl`, in order.
fn curl_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = code_blocks(markdown, &["sh", "bash"]);
    blocks.retain(|block| block.contains("curl "));
    blocks
}

/// The fenced blocks in one of `languages` (```` ```python ````, ...), in order.
fn code_blocks(markdown: &str, languages: &[&str]) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match &mut current {
            None if trimmed
                .strip_prefix("```")
                .is_some_and(|info| languages.contains(&info.trim())) =>
            {
                current = Some(String::new());
            }
            Some(block) if trimmed.starts_with("```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// The text of the section headed `## TITLE`, up to the next `## ` heading.
fn section<'a>(markdown: &'a str, title: &str) -> &'a str {
    let heading = format!("\n## {title}\n");
    let start = markdown
        .find(&heading)
        .unwrap_or_else(|| panic!("README.md has no section {heading:?}"))
        + heading.len();
    let rest = &markdown[start..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The snippets of "Publishing from a backend" that run here, with the program running each.
fn backend_snippets(markdown: &str) -> Vec<(&'static str, Vec<&'static str>, String)> {
    let publishing = section(markdown, "Publishing from a backend");
    let python = code_blocks(publishing, &["python"])
        .into_iter()
        .map(|block| ("python3", vec!["-c"], block));
    let javascript = code_blocks(publishing, &["js"])
        .into_iter()
        .map(|block| ("node", vec!["--input-type=module", "-e"], block));
    python.chain(javascript).collect()
}

fn sign(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap()
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_has_curl_examples_for_subscribing_and_publishing() {
    let blocks = curl_blocks(&readme());
    assert!(
        blocks.iter().any(|b| b.contains("curl -N")),
        "a subscribe example: {blocks:#?}"
    );
    assert!(
        blocks.iter().any(|b| b.contains("PUBLISHER_TOKEN")),
        "a publish example: {blocks:#?}"
    );
    let snippets = backend_snippets(&readme());
    for program in ["python3", "node"] {
        assert!(
            snippets.iter().any(|(p, _, _)| *p == program),
            "a {program} example in \"Publishing from a backend\": {snippets:#?}"
        );
    }
}

#[test]
fn every_curl_example_of_the_readme_works_against_a_real_hub() {
    let real_curl = find_in_path("curl").expect("curl is installed (apt-get install curl)");
    let bin_dir = tempfile::tempdir().unwrap();
    let wrapper = bin_dir.path().join("curl");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' --fail-with-body -sS \"$@\"\n",
            real_curl.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = std::env::join_paths(
        std::iter::once(bin_dir.path().to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();

    // The hub of the Quick start: dev mode (anonymous subscribers), with a known key.
    let hub = Herald::start(&["--dev", "--transport", "memory", "--jwt-key", KEY]);
    let address = hub.addr.clone();

    let shell = |block: &str| {
        let script = block.replace("127.0.0.1:3000", &address);
        let mut command = Command::new("bash");
        command
            .args(["-euo", "pipefail", "-c", &script])
            .env("PATH", &path)
            .env(
                "PUBLISHER_TOKEN",
                sign(json!({"mercure": {"publish": ["*"]}})),
            )
            .env(
                "SUBSCRIBER_TOKEN",
                sign(json!({"mercure": {"subscribe": ["*"]}})),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };

    let blocks = curl_blocks(&readme());
    let (subscribe_blocks, other_blocks): (Vec<_>, Vec<_>) =
        blocks.iter().partition(|b| b.contains("curl -N"));

    // Subscriptions first, in the background; each prints the opening comment when connected.
    let mut subscriptions = Vec::new();
    for block in &subscribe_blocks {
        let mut child = shell(block).spawn().unwrap();
        let out = lines_of(child.stdout.take().unwrap());
        let err = lines_of(child.stderr.take().unwrap());
        let first = out.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "no response to the example within {WAIT:?}:\n{block}\nstderr: {:?}",
                err.try_iter().collect::<Vec<_>>()
            )
        });
        assert!(first.starts_with(':'), "{block}: first line {first:?}");
        subscriptions.push((block, Killed(child), out));
    }

    let mut published = Vec::new();
    for block in &other_blocks {
        let output = shell(block).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "the README example failed (exit {:?}):\n{block}\nstdout: {stdout}\nstderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        if block.contains("PUBLISHER_TOKEN") {
            let id = stdout.trim().to_owned();
            assert!(id.starts_with("urn:uuid:"), "{block}: printed {id:?}");
            published.push(id);
        }
    }
    assert!(!published.is_empty());

    // The Python and JavaScript snippets of "Publishing from a backend", with the hub's key.
    for (program, args, block) in backend_snippets(&readme()) {
        find_in_path(program).unwrap_or_else(|| panic!("{program} is installed"));
        let script = block.replace("127.0.0.1:3000", &address);
        let output = Command::new(program)
            .args(&args)
            .arg(&script)
            .env("HERALD_JWT_KEY", KEY)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "the README's {program} example failed (exit {:?}):\n{block}\nstdout: {stdout}\n\
             stderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        let id = stdout.trim().to_owned();
        assert!(id.starts_with("urn:uuid:"), "{block}: printed {id:?}");
        published.push(id);
    }

    // Each subscription example receives each update, as the README shows it.
    for (block, _child, out) in &subscriptions {
        let deadline = Instant::now() + WAIT;
        let mut received = Vec::new();
        while received.len() < 2 * published.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match out.recv_timeout(left) {
                Ok(line) if line.starts_with("id: ") || line.starts_with("data: ") => {
                    received.push(line)
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let expected: Vec<String> = published
            .iter()
            .flat_map(|id| [format!("id: {id}"), "data: {\"title\":\"Dune\"}".to_owned()])
            .collect();
        assert_eq!(received, expected, "what the example printed:\n{block}");
    }
}
