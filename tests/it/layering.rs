//! What the compiler cannot say about the app crate's layering, checked on the
//! files themselves: the import graph of `src/` (file → file, through `crate::`,
//! `super::` and `self::` paths) has no cycles. The rest is the compiler's: the
//! domain and the shared types are crates of their own (`crates/`), so the
//! domain cannot reach Leptos or Axum, and the browser bundle's build fails if a
//! page imports a module gated to the server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn source_files(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(relative, std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The module path of a file: `domain/ratelimit/mod.rs` → `[domain, ratelimit]`.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file that defines the longest prefix of `path`.
fn file_of(path: &[String], files: &BTreeMap<String, String>) -> String {
    for n in (1..=path.len()).rev() {
        let stem = path[..n].join("/");
        for candidate in [format!("{stem}.rs"), format!("{stem}/mod.rs")] {
            if files.contains_key(&candidate) {
                return candidate;
            }
        }
    }
    "lib.rs".into()
}

/// Code without comments and without the unit-test module at the end (however
/// that module starts: a comment may sit between the attribute and `mod`).
fn code(text: &str) -> String {
    let text = text.split("\n#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a file names: `crate::a::b`, `super::x`, `self::y`, with `{…}`
/// groups of `use` statements expanded one level.
fn paths(code: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for head in ["crate", "super", "self"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(&format!("{head}::")) {
            let start = from + at;
            from = start + head.len() + 2;
            let before = start.checked_sub(1).map(|i| bytes[i]);
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
                continue;
            }
            let rest = &code[from..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let base: Vec<String> = rest[..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            if rest[end..].starts_with('{') {
                let group = &rest[end + 1..rest[end..].find('}').map_or(rest.len(), |i| end + i)];
                for item in group.split(',') {
                    let item = item.split(" as ").next().unwrap_or_default().trim();
                    if item.is_empty() || item == "self" {
                        continue;
                    }
                    let mut full = base.clone();
                    full.extend(item.split("::").filter(|s| !s.is_empty()).map(String::from));
                    found.push((head.to_owned(), full));
                }
            }
            found.push((head.to_owned(), base));
        }
    }
    found
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    source_files(&root, &root, &mut files);
    let mut graph = BTreeMap::new();
    for (file, text) in &files {
        let module = module_of(file);
        let mut targets = BTreeSet::new();
        for (head, path) in paths(&code(text)) {
            let mut full = match head.as_str() {
                "crate" => Vec::new(),
                "super" => module[..module.len().saturating_sub(1)].to_vec(),
                _ => module.clone(),
            };
            full.extend(path);
            let target = file_of(&full, &files);
            if &target != file {
                targets.insert(target);
            }
        }
        graph.insert(file.clone(), targets);
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    trail: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(at) = trail.iter().position(|n| n == node) {
        let mut cycle = trail[at..].to_vec();
        cycle.push(node.to_owned());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    trail.push(node.to_owned());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(cycle) = cycle_from(graph, next, trail, done) {
            return Some(cycle);
        }
    }
    trail.pop();
    done.insert(node.to_owned());
    None
}

#[test]
fn the_import_graph_of_src_has_no_cycles() {
    let graph = import_graph();
    assert!(graph.len() > 30, "the source tree was read: {graph:?}");
    assert!(
        graph["server/pages.rs"].contains("app/mod.rs")
            && graph["server/router.rs"].contains("server/pages.rs"),
        "the graph sees crate:: paths and their groups: {:?}",
        graph["server/router.rs"]
    );
    let mut done = BTreeSet::new();
    for file in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, file, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_checker_finds_a_cycle_when_there_is_one() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a.rs", ["b.rs"]), ("b.rs", ["c.rs"]), ("c.rs", ["a.rs"])]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
    let cycle = cycle_from(&graph, "a.rs", &mut Vec::new(), &mut BTreeSet::new());
    assert_eq!(cycle.unwrap(), ["a.rs", "b.rs", "c.rs", "a.rs"]);
    let paths = paths("use crate::server::{errors::ApiAnswer, state::AppState};");
    assert!(paths.contains(&(
        "crate".into(),
        vec!["server".into(), "errors".into(), "ApiAnswer".into()]
    )));
}
