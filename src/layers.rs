//! What each layer may import, checked on the source text (issue 15): the
//! pure layers (`protocol`, `auth`) know no web framework, database or
//! runtime, and `http` reaches the database only through services (it
//! names no store path, entity or query, and not the state's store). A new
//! import across a line fails `cargo test`.

use std::fs;
use std::path::{Path, PathBuf};

/// Paths a layer must not name, whether in a `use` or written out.
const PURE_LAYER_BANS: &[&str] = &["axum", "sea_orm", "tokio", "crate::store", "crate::http"];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Lines of code, comments left out (a doc comment may name anything).
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with("//"))
}

/// Whether `line` names the path `name` (`axum` but not `axum_extra`,
/// `crate::store` in `use crate::store::x` and `crate::store::x::f()`).
fn names(line: &str, name: &str) -> bool {
    line.match_indices(name).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + name.len()..].chars().next();
        let starts = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        let ends = !after.is_some_and(|c| c.is_alphanumeric() || c == '_');
        starts && ends
    })
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn protocol_and_auth_import_no_framework_database_or_runtime() {
    let mut found = Vec::new();
    for layer in ["src/protocol", "src/auth"] {
        for file in rust_files(&root().join(layer)) {
            let text = fs::read_to_string(&file).expect("read a source file");
            for line in code_lines(&text) {
                for ban in PURE_LAYER_BANS {
                    if names(line, ban) {
                        found.push(format!("{}: {ban}: {line}", relative(&file)));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "pure layers import:\n{}",
        found.join("\n")
    );
}

#[test]
fn http_reaches_the_store_only_through_services() {
    let mut found = Vec::new();
    for file in rust_files(&root().join("src/http")) {
        let name = relative(&file);
        let text = fs::read_to_string(&file).expect("read a source file");
        for line in code_lines(&text) {
            // The store's paths (entities, queries), and the store held by
            // the state.
            if names(line, "crate::store") || line.contains(".store.") {
                found.push(format!("{name}: {line}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "http reaches the store (go through a service):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_path_matcher_matches_paths_not_prefixes() {
    assert!(names("use axum::Router;", "axum"));
    assert!(names("let x = tokio::spawn(f);", "tokio"));
    assert!(!names("use axum_extra::x;", "axum"));
    assert!(!names("my_tokio::x", "tokio"));
    assert!(!names("stepgate::tokio_like", "tokio"));
    assert!(names("use crate::store::users;", "crate::store"));
    assert!(!names("use crate::storefront;", "crate::store"));
}

#[test]
fn pages_do_not_import_the_protocol_endpoints() {
    // The endpoints render pages (`http::pages`); what both need of an
    // interaction is in `http::interaction`, so the edge runs one way.
    let mut found = Vec::new();
    for file in rust_files(&root().join("src/http/pages")) {
        let text = fs::read_to_string(&file).expect("read a source file");
        for line in code_lines(&text) {
            if names(line, "crate::http::oauth") {
                found.push(format!("{}: {line}", relative(&file)));
            }
        }
    }
    assert!(
        found.is_empty(),
        "http::pages imports http::oauth:\n{}",
        found.join("\n")
    );
}

#[test]
fn comments_cite_what_is_in_the_repository() {
    // RFCs and docs/ are for every reader; the founders' documents beside
    // the checkout are not shipped with the code.
    const OUTSIDE: &[&str] = &["PRODUCT.md", "STYLE.md", "DEPENDENCIES.md", "shared/"];
    let mut found = Vec::new();
    for file in rust_files(&root().join("src")) {
        let text = fs::read_to_string(&file).expect("read a source file");
        for line in text.lines() {
            if OUTSIDE.iter().any(|doc| line.contains(doc)) && !line.contains("const OUTSIDE") {
                found.push(format!("{}: {}", relative(&file), line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "cite an RFC or docs/ instead:\n{}",
        found.join("\n")
    );
}
