use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;

#[test]
fn names_are_unique_and_read_back() {
    let mut names = BTreeSet::new();
    for kind in Kind::ALL {
        assert!(names.insert(kind.name()), "{kind:?}'s name is taken twice");
        assert_eq!(Kind::from_name(kind.name()), Some(*kind));
        assert_eq!(kind.to_string(), kind.name());
    }
    assert_eq!(Kind::from_name("no-such-kind"), None);
    assert_eq!(Kind::from_name("API"), None, "names are compared exactly");
}

/// Stores written by earlier releases keep their documents under these names: a kind is never
/// renamed (that would take a data migration).
#[test]
fn the_names_on_disk_never_change() {
    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(
        names,
        [
            "api",
            "operation",
            "api-document",
            "api-path",
            "product",
            "product-api",
            "product-group",
            "subscription",
            "subscription-keys",
            "subscribe-guard",
            "named-value",
            "backend",
            "certificate",
            "gateway",
            "gateway-api",
            "gateway-keys",
            "gateway-instance",
            "gateway-hostname-configuration",
            "gateway-certificate-authority",
            "user",
            "user-credentials",
            "user-email",
            "group",
            "group-user",
            "policy-global",
            "policy-product",
            "policy-api",
            "policy-operation",
            "policy-fragment",
            "logger",
            "portal-settings",
            "portal-session",
            "admin-session",
        ]
    );
}

#[test]
fn parents_are_top_level_kinds() {
    for kind in Kind::ALL {
        if let Some(parent) = kind.parent() {
            assert_eq!(parent.parent(), None, "{kind:?} lives under a child kind");
            assert!(parent.children().any(|k| k == *kind));
        }
    }
    let product: Vec<Kind> = Kind::Product.children().collect();
    assert_eq!(
        product,
        [Kind::ProductApi, Kind::ProductGroup, Kind::ProductPolicy]
    );
    assert_eq!(Kind::Subscription.children().count(), 0);
}

/// The `.rs` files under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The string literal that starts at `text` (after its opening quote), if it looks like a
/// kind's name.
fn literal(text: &str) -> Option<&str> {
    let end = text.find('"')?;
    let name = &text[..end];
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '-')).then_some(name)
}

/// Kind names spelled in `text`: the values of `const …KIND…: &str = "…"` declarations, and
/// the first argument of the store's calls when it is a literal.
fn kind_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.split_once("const ").map(|(_, r)| r)
            && let Some((name, value)) = rest.split_once(':')
            && name.contains("KIND")
            && let Some((_, value)) = value.split_once("str = \"")
            && let Some(kind) = literal(value)
        {
            out.push(kind.to_owned());
        }
    }
    const CALLS: &[&str] = &[
        "get",
        "list",
        "list_all",
        "find_by_id",
        "put",
        "put_state",
        "put_unversioned",
        "create_unversioned",
        "delete",
        "delete_unversioned",
        "delete_children",
        "delete_by_id",
    ];
    for receiver in ["store.", "store().", "tx."] {
        for call in CALLS {
            let pattern = format!("{receiver}{call}(\"");
            for (at, _) in text.match_indices(&pattern) {
                if let Some(kind) = literal(&text[at + pattern.len()..]) {
                    out.push(kind.to_owned());
                }
            }
        }
    }
    out
}

#[test]
fn the_scan_finds_declared_and_literal_kinds() {
    let text = r#"
        pub const SESSION_KIND: &str = "admin-session";
        const KIND: &'static str = "api";
        pub const EMAIL_PATTERN: &str = "^[a-z]$";
        store.get("operation", "", id); cp.store().list_all("group-user"); tx.put("x", "", "", "");
        body.get("value"); tx.put(kind, "", "", "");
    "#;
    let mut found = kind_names(text);
    found.sort();
    assert_eq!(
        found,
        ["admin-session", "api", "group-user", "operation", "x"]
    );
}

/// No data migration: whatever name a crate of the workspace declares as a kind, or stores
/// documents under, is one the registry knows. (The store's calls take a [`Kind`], so a name
/// reaches the store only through the registry; this catches a kind declared as a string
/// beside it, as a new resource type might.)
#[test]
fn every_kind_named_in_the_workspace_is_registered() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    sources(&crates, &mut files);
    assert!(files.len() > 100, "the workspace's sources were not found");
    // This file spells made-up names on purpose.
    let this = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kinds/tests.rs");
    let this = this.canonicalize().unwrap();
    let mut unknown = BTreeSet::new();
    for file in files
        .iter()
        .filter(|f| f.canonicalize().is_ok_and(|f| f != this))
    {
        let text = std::fs::read_to_string(file).unwrap();
        for name in kind_names(&text) {
            if Kind::from_name(&name).is_none() {
                unknown.insert(format!("{name} ({})", file.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "kinds the registry does not know: {unknown:?}"
    );
}
