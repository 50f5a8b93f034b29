//! The policy corpus: policy files written the way Azure API Management users publish theirs
//! (APIOps exports, Bicep and Terraform modules, the policy snippets, blog posts and answers:
//! named values, multi-line `@{ … }` blocks, Liquid, fragments, AI gateway policies, …), each
//! run through the real `gatehouse policy check` with no named values defined. Every file must
//! be accepted except those in [`REFUSED`], which must be refused for the reason written there.
//! The files are under `tests/fixtures/policy-corpus/`; see the README there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// Files `policy check` refuses, each with (a part of) the message it must give. Azure accepts
/// all of them; what is listed here is what this gateway does not do, on purpose or not yet.
const REFUSED: &[(&str, &str)] = &[
    // Azure policies this gateway does not run (see `UNSUPPORTED` in crates/policy's policies):
    // each is refused with why and what to use instead.
    (
        "016-aoai-semantic-cache.xml",
        "<azure-openai-semantic-cache-lookup> is not supported by this gateway: semantic caching needs",
    ),
    (
        "017-llm-content-safety.xml",
        "<llm-content-safety> is not supported by this gateway",
    ),
    (
        "038-xsl-transform-soap.xml",
        "<xsl-transform> is not supported by this gateway: it needs an XSLT 1.0 engine",
    ),
    (
        "076-graphql-validate-request.xml",
        "<validate-graphql-request> is not supported by this gateway",
    ),
    (
        "077-credential-manager-authorization-context.xml",
        "<get-authorization-context> is not supported by this gateway",
    ),
    (
        "087-llm-semantic-cache.xml",
        "<llm-semantic-cache-lookup> is not supported by this gateway",
    ),
    (
        "090-odata-validate-request.xml",
        "<validate-odata-request> is not supported by this gateway",
    ),
    // .NET runs lookbehinds of any length; the backtracking engine here needs a fixed one.
    (
        "067-regex-lookaround-mask.xml",
        "Look-behind assertion without constant size",
    ),
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy-corpus")
}

fn files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    files
}

/// Exit code and everything the check printed.
fn check(file: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["policy", "check"])
        .arg(file)
        .env_remove("GATEHOUSE_URL")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn every_published_style_policy_file_is_accepted_or_refused_for_its_listed_reason() {
    let files = files();
    assert!(files.len() >= 80, "the corpus has {} files", files.len());
    for (name, _) in REFUSED {
        assert!(
            files.iter().any(|f| f.file_name().unwrap() == *name),
            "{name} is listed as refused but is not in the corpus"
        );
    }
    let mut problems = Vec::new();
    let mut accepted = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (code, text) = check(file);
        match REFUSED.iter().find(|(n, _)| *n == name) {
            None if code == 0 => accepted += 1,
            None => problems.push(format!("{name}: refused (exit {code}):\n{text}")),
            Some((_, reason)) if code == 2 && text.contains(reason) => {}
            Some((_, reason)) if code == 0 => problems.push(format!(
                "{name}: now accepted; take it off the REFUSED list (it expected '{reason}')"
            )),
            Some((_, reason)) => problems.push(format!(
                "{name}: refused (exit {code}), but not for '{reason}':\n{text}"
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    assert_eq!(accepted + REFUSED.len(), files.len());
}

/// A refusal names the file, the line and the column of what is refused.
#[test]
fn refusals_point_at_the_line_and_column() {
    for (name, _) in REFUSED {
        let (_, text) = check(&corpus().join(name));
        let located = text.lines().any(|l| {
            l.starts_with(&format!("{}:", corpus().join(name).display())) && !l.contains("warning:")
        });
        assert!(located, "{name}: no located error in:\n{text}");
    }
}
