//! The book (`docs/`): every chapter `SUMMARY.md` names exists, every
//! link between pages (and to images and files of the repository) leads
//! somewhere, every `#anchor` names a heading, and every shell example of
//! "Getting started" runs, as written, against the real binary, answering
//! what the page says it answers.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap has failed.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::Env;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn book() -> PathBuf {
    root().join("docs/src")
}

/// The `](target)` links of a Markdown text, outside code blocks and code
/// spans.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Code spans hold examples, not links.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            found.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    found
}

/// mdBook's id of a heading: lower case, spaces to `-`, only letters,
/// digits, `-` and `_` kept.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.insert(slug(line.trim_start_matches('#')));
        }
    }
    found
}

/// Checks every relative link of `page` (a file under the repository).
fn check_links(page: &Path, problems: &mut Vec<String>) {
    let text = std::fs::read_to_string(page).unwrap();
    for link in links(&text) {
        if link.is_empty() || link.contains("://") || link.starts_with("mailto:") {
            continue;
        }
        let (file, anchor) = link.split_once('#').unwrap_or((link.as_str(), ""));
        let target = if file.is_empty() {
            page.to_path_buf()
        } else {
            page.parent().unwrap().join(file)
        };
        if !target.exists() {
            problems.push(format!("{}: {link} leads nowhere", page.display()));
            continue;
        }
        if !anchor.is_empty() {
            let there = std::fs::read_to_string(&target).unwrap_or_default();
            if !anchors(&there).contains(anchor) {
                problems.push(format!("{}: {link}: no heading #{anchor}", page.display()));
            }
        }
    }
}

fn pages(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            pages(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

#[test]
fn every_chapter_exists_and_no_link_is_broken() {
    let summary = std::fs::read_to_string(book().join("SUMMARY.md")).unwrap();
    let chapters: BTreeSet<String> = links(&summary)
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    assert!(chapters.len() >= 15, "{chapters:?}");
    let mut all = Vec::new();
    pages(&book(), &mut all);
    for page in &all {
        let name = page
            .strip_prefix(book())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if name != "SUMMARY.md" {
            assert!(
                chapters.contains(&name),
                "{name} is in no chapter of SUMMARY.md"
            );
        }
    }
    let mut problems = Vec::new();
    for page in all.iter().chain([root().join("README.md")].iter()) {
        check_links(page, &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn links_are_found_and_checked() {
    let text = "see [a](x.md#b) and `[c](not-a-link)`\n```\n[d](e)\n```\n[f](https://g)";
    assert_eq!(links(text), ["x.md#b", "https://g"]);
    assert_eq!(
        slug(" Accounts people can recover: mail, verification, reset"),
        "accounts-people-can-recover-mail-verification-reset"
    );
}

/// The shell blocks of "Getting started" after the first (which starts the
/// server and the tests themselves), in order, with what they print.
fn getting_started() -> Vec<String> {
    let text = std::fs::read_to_string(book().join("getting-started.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(blocks.len() >= 3, "{blocks:?}");
    blocks.remove(0);
    blocks
}

#[test]
fn the_getting_started_examples_run_as_written() {
    let here = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !(here("curl") && here("jq")) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but curl or jq is missing: run scripts/services.sh"
        );
        eprintln!("skipping: curl or jq is missing (scripts/services.sh installs them)");
        return;
    }
    let env = Env::new(&[]);
    let server = env.serve();
    let address = server.base.trim_start_matches("http://").to_owned();
    let work = tempfile::tempdir().unwrap();
    // `cargo run --release -q --` is the binary under test; `localhost:8080`
    // is where it listens; everything else runs as a reader would run it.
    let prelude = format!(
        "set -euo pipefail\n\
         cargo() {{ if [ \"$1 $2 $3 $4\" != 'run --release -q --' ]; then echo \"unexpected: cargo $*\" >&2; return 2; fi; shift 4; '{bin}' \"$@\"; }}\n\
         curl() {{ command curl \"${{@//localhost:8080/{address}}}\"; }}\n",
        bin = env!("CARGO_BIN_EXE_latchkey"),
    );
    for block in getting_started() {
        let script = format!("{prelude}{block}");
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(&script)
            .current_dir(work.path())
            .stdin(Stdio::null());
        for (name, value) in &env.vars {
            command.env(name, value);
        }
        let done = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&done.stdout);
        assert!(
            done.status.success(),
            "a block of getting-started.md failed:\n{block}\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&done.stderr)
        );
        // Each `# {…}` or `# www-authenticate…` line is what the command
        // before it prints: its parts between the `…` come out, in order.
        let mut rest: &str = &stdout;
        for expected in block.lines().filter_map(|l| l.strip_prefix("# ")) {
            if !(expected.starts_with('{') || expected.starts_with("www-authenticate")) {
                continue;
            }
            for part in expected.split('…').filter(|p| !p.is_empty()) {
                let Some(at) = rest.find(part) else {
                    panic!(
                        "getting-started.md says {expected:?}, but {part:?} is not in what followed:\n{rest}"
                    );
                };
                rest = &rest[at + part.len()..];
            }
        }
    }
    // What the walk-through says it did, it did.
    assert!(
        server.log_text().contains("reuse_detected"),
        "the replay was detected"
    );
}
