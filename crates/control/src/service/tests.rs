//! The layering, checked on the source: the HTTP edge (`src/handlers/`) calls the service
//! layer, never the other way round, and nothing else reaches into the edge but the one line
//! of `lib.rs` that mounts its router.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, in a stable order.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The code of each line of a Rust file: comments and the text of string and character
/// literals left out, so only names in code remain.
fn code_lines(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut lines = vec![String::new()];
    let (mut i, mut block_depth, mut in_line_comment) = (0, 0usize, false);
    let mut string: Option<usize> = None; // Inside a string: the `#`s that close it (raw).
    let mut raw = false;
    while i < chars.len() {
        let (c, next) = (chars[i], chars.get(i + 1).copied());
        if c == '\n' {
            lines.push(String::new());
            in_line_comment = false;
            i += 1;
            continue;
        }
        if in_line_comment {
            i += 1;
        } else if block_depth > 0 {
            match (c, next) {
                ('*', Some('/')) => (block_depth, i) = (block_depth - 1, i + 2),
                ('/', Some('*')) => (block_depth, i) = (block_depth + 1, i + 2),
                _ => i += 1,
            }
        } else if let Some(hashes) = string {
            if !raw && c == '\\' {
                i += 2;
            } else if c == '"' && chars[i + 1..].iter().take(hashes).all(|h| *h == '#') {
                string = None;
                i += 1 + hashes;
            } else {
                i += 1;
            }
        } else {
            match (c, next) {
                ('/', Some('/')) => in_line_comment = true,
                ('/', Some('*')) => (block_depth, i) = (1, i + 1),
                ('"', _) => (string, raw) = (Some(0), false),
                ('r', Some('#' | '"'))
                    if !lines.last().unwrap().ends_with(char::is_alphanumeric) =>
                {
                    let hashes = chars[i + 1..].iter().take_while(|h| **h == '#').count();
                    if chars.get(i + 1 + hashes) == Some(&'"') {
                        (string, raw) = (Some(hashes), true);
                        i += 1 + hashes;
                    }
                }
                // A character literal ('x', '"', '\n'), not a lifetime.
                ('\'', Some('\\')) => {
                    i += 2;
                    while chars.get(i).is_some_and(|c| *c != '\'') {
                        i += 1;
                    }
                }
                ('\'', Some(_)) if chars.get(i + 2) == Some(&'\'') => i += 2,
                _ => lines.last_mut().unwrap().push(c),
            }
            i += 1;
        }
    }
    lines
}

#[test]
fn the_code_of_a_line_leaves_out_comments_and_literals() {
    let text = "use a; // handlers\nlet s = \"handlers::x\"; let c = '\"'; handlers::y\n/* handlers */ r#\"a \"handlers\" b\"# z";
    assert_eq!(
        code_lines(text),
        ["use a; ", "let s = ; let c = ; handlers::y", "  z"]
    );
}

#[test]
fn nothing_outside_the_http_edge_uses_the_handlers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edge = src.join("handlers");
    let mut found = Vec::new();
    for file in sources(&src).into_iter().filter(|f| !f.starts_with(&edge)) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, code) in code_lines(&text).iter().enumerate() {
            let names_handlers = code
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| word == "handlers");
            let mounts = file == src.join("lib.rs")
                && (code.trim() == "mod handlers;" || code.contains("handlers::router("));
            if names_handlers && !mounts {
                let shown = file.strip_prefix(&src).unwrap_or(&file).display();
                found.push(format!("src/{shown}:{}: {}", n + 1, code.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "only src/handlers/ (the HTTP edge) and lib.rs's `mod handlers;` and \
         `handlers::router(…)` may name the handlers; move what these lines use into \
         src/service/ (or another module the edge calls):\n{}",
        found.join("\n")
    );
}
