//! The load generator's modules are layered one way (docs/loadgen.md, "Layers"): a `use
//! crate::` may only point to a lower layer, or inside its own folder. A test rather than a
//! convention, so that an upward import fails CI.

use std::path::Path;

/// Top-level modules, lowest first; modules on one line are one layer (they may not import
/// each other).
const LAYERS: &[&[&str]] = &[
    &["plan", "phase", "time"],
    &["measure"],
    &["wire"],
    &["io"],
    &["result"],
    &["report", "cli"],
    &["engine"],
    &["scenarios"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level modules a file's non-test code names with `crate::`.
fn imports(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(group.split(',').map(|item| item.trim().split("::").next().unwrap_or("").to_string()));
        } else {
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
            out.push(rest[..end].to_string());
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            files.push(path);
        }
    }
}

#[test]
fn every_import_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut upward = Vec::new();
    let mut unlayered = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_str().unwrap().trim_end_matches(".rs");
        // The crate root, the binaries: they sit on top of everything.
        if matches!(top, "lib" | "main" | "bin") {
            continue;
        }
        let Some(own) = layer(top) else {
            unlayered.push(rel.display().to_string());
            continue;
        };
        for target in imports(&std::fs::read_to_string(file).unwrap()) {
            if target == top {
                continue;
            }
            match layer(&target) {
                Some(l) if l < own => {}
                _ => upward.push(format!("{} -> crate::{target}", rel.display())),
            }
        }
    }
    assert!(unlayered.is_empty(), "modules in no layer: {unlayered:?}");
    assert!(upward.is_empty(), "imports that do not point down:\n{}", upward.join("\n"));
    // The check itself sees imports, grouped ones included.
    assert_eq!(
        imports("use crate::{io::ws, measure::stats};\nlet x = crate::time::now_ns();"),
        ["io", "measure", "time"]
    );
}
