//! The shape of the binary's source: the client tools under `src/tools/` talk to servers over
//! the network only, so no line of theirs names the server crate.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_client_tools_never_use_the_server_crate() {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tools");
    let files = sources(&tools);
    assert!(files.len() > 10, "{files:?}");
    let mut uses = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if !line.trim_start().starts_with("//") && line.contains("keyless_server") {
                uses.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        uses.is_empty(),
        "the tools use the server crate:\n{}",
        uses.join("\n")
    );
}
