//! The code's shape, kept as the layering work left it (docs/design.md's layers, lib.rs's map):
//! every module of src/ imports only from its own layer or the layers lib.rs declares before it,
//! with no circle inside a layer; no function is longer than 80 lines; at most three files pass
//! 400 lines. This reads the source tree: the shape of the code is what it checks. Test code (a
//! `tests.rs` file or an inline `#[cfg(test)] mod`) is left out of imports and function lengths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FN_LINES: usize = 80;
const LONG_FILE_LINES: usize = 400;
const MAX_LONG_FILES: usize = 3;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as (path relative to `dir`, text).
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file belongs to (`ledger/data_api.rs` → `ledger`); `None` for lib.rs
/// and the binary.
fn module_of(rel: &str) -> Option<String> {
    let first = rel.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "bin" | "main")).then(|| name.to_owned())
}

fn is_test_file(rel: &str) -> bool {
    rel.ends_with("/tests.rs") || rel == "tests.rs" || rel.contains("/tests/")
}

/// The text without inline `#[cfg(test)] mod … { … }` blocks (brace matched).
fn without_test_modules(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_inline_mod =
            trimmed.starts_with("mod ") && trimmed.find(['{', ';']).is_some_and(|i| trimmed.as_bytes()[i] == b'{');
        if !is_inline_mod {
            out.push_str(&rest[..at + "#[cfg(test)]".len()]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..at]);
        let open = after.find('{').unwrap();
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Code without comments, string and character literals (a string may span lines; the lines stay),
/// so a path in a doc comment or a brace in a message is neither an import nor a block.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    // Inside a string: how it ends (`"` then this many `#`), and whether `\` escapes.
    let mut string: Option<(usize, bool)> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some((hashes, escapes)) = string {
            if c == '\n' {
                out.push('\n');
            } else if escapes && c == '\\' {
                i += 1;
                if chars.get(i) == Some(&'\n') {
                    out.push('\n'); // a line continuation: the line count stays
                }
            } else if c == '"' && chars[i + 1..].iter().take(hashes).filter(|h| **h == '#').count() == hashes {
                out.push('"');
                string = None;
                i += hashes;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        } else if c == '"' {
            out.push('"');
            string = Some((0, true));
        } else if c == 'r'
            && matches!(chars.get(i + 1), Some('"' | '#'))
            && !chars[..i].last().is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            let hashes = chars[i + 1..].iter().take_while(|h| **h == '#').count();
            if chars.get(i + 1 + hashes) == Some(&'"') {
                out.push('"');
                string = Some((hashes, false));
                i += hashes + 2;
                continue;
            }
            out.push(c);
        } else if c == '\'' && chars.get(i + 1) == Some(&'\\') {
            // '\n', '\'', '\u{..}': skip to the closing quote.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 2; // 'x', including '{' and '"'
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

/// The top-level modules a file's code names through `crate::` (including `crate::{a, b::c}`).
fn imports(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut segment_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => segment_start = true,
                    c if c.is_whitespace() => {}
                    _ if segment_start => {
                        names.insert(ident(&group[i..]));
                        segment_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// lib.rs's layers, in order: each `// …` comment line before a run of `pub mod` lines starts one.
fn layers(lib: &str) -> BTreeMap<String, usize> {
    let mut layer_of = BTreeMap::new();
    let mut layer = 0usize;
    let mut in_mods = false;
    for line in lib.lines() {
        let line = line.trim();
        if line.starts_with("//") && !line.starts_with("//!") {
            if in_mods {
                layer += 1;
                in_mods = false;
            }
        } else if let Some(name) = line.strip_prefix("pub mod ").and_then(|l| l.strip_suffix(';')) {
            layer_of.insert(name.to_owned(), layer);
            in_mods = true;
        }
    }
    layer_of
}

/// Imports that go up a layer, and circles inside a layer, as sentences.
fn layering_problems(lib: &str, files: &[(String, String)]) -> Vec<String> {
    let layer_of = layers(lib);
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in files {
        let Some(module) = module_of(rel) else { continue };
        if is_test_file(rel) {
            continue;
        }
        let Some(&from) = layer_of.get(&module) else {
            problems.push(format!("src/{rel}: module {module} is not declared in lib.rs's layers"));
            continue;
        };
        for target in imports(&code_only(&without_test_modules(text))) {
            let Some(&to) = layer_of.get(&target) else { continue };
            if target == module {
                continue;
            }
            if to > from {
                problems
                    .push(format!("src/{rel}: {module} (layer {from}) imports {target} (layer {to}), a layer above"));
            } else if to == from {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    // A circle inside a layer: a module that reaches itself.
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut pending: Vec<&String> = edges[start].iter().collect();
        while let Some(m) = pending.pop() {
            if m == start {
                problems.push(format!("{start} reaches itself through its own layer's imports"));
                break;
            }
            if seen.insert(m.clone())
                && let Some(next) = edges.get(m)
            {
                pending.extend(next.iter());
            }
        }
    }
    problems
}

/// Each function with a body longer than `MAX_FN_LINES`, from its `fn` line to its closing brace.
fn long_functions(rel: &str, text: &str) -> Vec<String> {
    let code = code_only(text);
    let lines: Vec<&str> = code.lines().collect();
    let mut long = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        let after_qualifiers = ["pub(crate) ", "pub(super) ", "pub ", "const ", "async ", "unsafe "]
            .iter()
            .fold(line, |l, q| l.strip_prefix(q).unwrap_or(l));
        let after_qualifiers =
            ["async ", "unsafe "].iter().fold(after_qualifiers, |l, q| l.strip_prefix(q).unwrap_or(l));
        if !after_qualifiers.starts_with("fn ") {
            i += 1;
            continue;
        }
        let name: String = after_qualifiers[3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let (mut depth, mut started, mut j) = (0i64, false, i);
        while j < lines.len() {
            let code = lines[j];
            if !started && code.trim_end().ends_with(';') {
                break; // a declaration without a body
            }
            depth += code.matches('{').count() as i64 - code.matches('}').count() as i64;
            started |= code.contains('{');
            if started && depth <= 0 {
                break;
            }
            j += 1;
        }
        if started && j - i + 1 > MAX_FN_LINES {
            long.push(format!("src/{rel}:{} fn {name} is {} lines", i + 1, j - i + 1));
        }
        i = if started { j + 1 } else { i + 1 };
    }
    long
}

fn shape_problems(lib: &str, files: &[(String, String)]) -> Vec<String> {
    let mut problems = layering_problems(lib, files);
    for (rel, text) in files {
        if !is_test_file(rel) {
            problems.extend(long_functions(rel, &without_test_modules(text)));
        }
    }
    let long_files: Vec<String> = files
        .iter()
        .filter(|(_, text)| text.lines().count() > LONG_FILE_LINES)
        .map(|(rel, text)| format!("src/{rel} ({} lines)", text.lines().count()))
        .collect();
    if long_files.len() > MAX_LONG_FILES {
        problems.push(format!(
            "{} files pass {LONG_FILE_LINES} lines (at most {MAX_LONG_FILES}): {}",
            long_files.len(),
            long_files.join(", ")
        ));
    }
    problems
}

#[test]
fn src_imports_only_downward_keeps_functions_short_and_has_at_most_three_long_files() {
    let files = sources(&src());
    assert!(files.len() >= 30, "expected src/'s modules, found {}", files.len());
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    assert!(layers(&lib).len() >= 30, "lib.rs's layers: {:?}", layers(&lib));
    let problems = shape_problems(&lib, &files);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn shape_check_fails_on_an_upward_import_a_circle_a_long_function_and_a_fourth_long_file() {
    let lib = "//! map\n\n// Ground.\npub mod order;\npub mod status;\n\n// Flows.\npub mod pipeline;\n";
    let long_body = "    let x = 1;\n".repeat(MAX_FN_LINES);
    let big = "// filler\n".repeat(LONG_FILE_LINES + 1);
    let files: Vec<(String, String)> = vec![
        // Up a layer: a ground type naming a flow (a doc comment and a string do not count).
        ("order.rs".into(), "/// see crate::pipeline\nuse crate::{status::Status, pipeline::run};\n".into()),
        // A circle inside the ground layer.
        ("status.rs".into(), "fn f() { crate::order::g(); let s = \"crate::pipeline\"; }\n".into()),
        // Too long, outside tests; the same inside a test module is left out.
        (
            "pipeline/mod.rs".into(),
            format!(
                "pub async fn run() {{\n{long_body}}}\n#[cfg(test)]\nmod tests {{\n    fn t() {{\n{long_body}    }}\n}}\n"
            ),
        ),
        ("pipeline/a.rs".into(), big.clone()),
        ("pipeline/b.rs".into(), big.clone()),
        ("pipeline/c.rs".into(), big.clone()),
        ("pipeline/d.rs".into(), big),
        ("pipeline/tests.rs".into(), format!("use crate::pipeline;\nfn t() {{\n{long_body}}}\n")),
    ];
    let problems = shape_problems(lib, &files).join("\n");
    assert!(problems.contains("src/order.rs: order (layer 0) imports pipeline (layer 1), a layer above"), "{problems}");
    assert!(problems.contains("order reaches itself") && problems.contains("status reaches itself"), "{problems}");
    assert!(problems.contains(&format!("src/pipeline/mod.rs:1 fn run is {} lines", MAX_FN_LINES + 2)), "{problems}");
    assert!(problems.contains("4 files pass 400 lines"), "{problems}");
    assert!(!problems.contains("fn t "), "test code is left out: {problems}");
    assert_eq!(problems.lines().count(), 5, "{problems}");
    // A fixed copy passes.
    let fixed: Vec<(String, String)> = vec![
        ("order.rs".into(), "use crate::status::Status;\n".into()),
        ("status.rs".into(), "fn f() {}\n".into()),
        (
            "pipeline/mod.rs".into(),
            "use crate::{order::Order, status};\npub async fn run() {\n    let x = 1;\n}\n".into(),
        ),
    ];
    assert_eq!(shape_problems(lib, &fixed), Vec::<String>::new());
}
