//! A linear pre-scan of XML, run before roxmltree builds a tree of it: measures how deeply
//! elements nest, how many attributes each carries and how many namespaces are declared, and
//! refuses the document when one is over its bound in [`crate::limits`].
//!
//! roxmltree itself parses without recursion, but some of its work grows with the square of
//! the attributes on one element and of the namespace declarations in scope, and every walk of
//! the tree it builds (ours are recursive) grows with its depth. Checking first means a hostile
//! document costs one pass over its bytes. On well-formed XML the counts are exact; on broken
//! XML they may be off, which does not matter: roxmltree then refuses the document.

use crate::limits::{MAX_DEPTH, MAX_XML_ATTRIBUTES, MAX_XML_NAMESPACES};

/// The bound a document went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    Depth,
    Attributes,
    Namespaces,
}

impl std::fmt::Display for Over {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Depth => write!(f, "elements nest deeper than {MAX_DEPTH} levels"),
            Self::Attributes => write!(
                f,
                "an element has more than {MAX_XML_ATTRIBUTES} attributes"
            ),
            Self::Namespaces => write!(
                f,
                "the document declares more than {MAX_XML_NAMESPACES} namespaces"
            ),
        }
    }
}

/// Checks `text` against the bounds, in one pass.
pub fn check(text: &str) -> Result<(), Over> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    let mut namespaces = 0usize;
    while let Some(lt) = find(b, i, b"<") {
        let rest = &b[lt..];
        i = if rest.starts_with(b"<!--") {
            after(b, lt + 4, b"-->")
        } else if rest.starts_with(b"<![CDATA[") {
            after(b, lt + 9, b"]]>")
        } else if rest.starts_with(b"<?") {
            after(b, lt + 2, b"?>")
        } else if rest.starts_with(b"<!") {
            // A document type declaration; ones with an internal subset are refused by the parser.
            after(b, lt + 2, b">")
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            after(b, lt + 2, b">")
        } else {
            let tag = start_tag(b, lt + 1);
            if tag.attributes > MAX_XML_ATTRIBUTES {
                return Err(Over::Attributes);
            }
            namespaces += tag.namespaces;
            if namespaces > MAX_XML_NAMESPACES {
                return Err(Over::Namespaces);
            }
            if !tag.empty {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Over::Depth);
                }
            }
            tag.end
        };
    }
    Ok(())
}

struct StartTag {
    attributes: usize,
    namespaces: usize,
    /// `<a/>`: opens nothing.
    empty: bool,
    /// Just past the closing `>`.
    end: usize,
}

/// Reads the start tag whose name begins at `from`, up to its `>` (outside quoted values).
fn start_tag(b: &[u8], from: usize) -> StartTag {
    let mut tag = StartTag {
        attributes: 0,
        namespaces: 0,
        empty: false,
        end: b.len(),
    };
    let mut quote = None;
    let mut j = from;
    while let Some(&c) = b.get(j) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b'=') => {
                tag.attributes += 1;
                if tag.attributes > MAX_XML_ATTRIBUTES {
                    // Refused anyway: no need to read the rest of the tag.
                    return tag;
                }
                if is_namespace_declaration(b, from, j) {
                    tag.namespaces += 1;
                }
            }
            (None, b'>') => {
                tag.empty = j > from && b.get(j - 1) == Some(&b'/');
                tag.end = j + 1;
                return tag;
            }
            _ => {}
        }
        j += 1;
    }
    tag
}

/// Whether the attribute name before the `=` at `eq` is `xmlns` or `xmlns:…`. Looks back no
/// further than the previous `=` or quote, so each byte of a tag is looked at once more at most.
fn is_namespace_declaration(b: &[u8], from: usize, eq: usize) -> bool {
    let mut end = eq;
    while end > from && b[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    let mut start = end;
    while start > from
        && !matches!(b[start - 1], b'=' | b'"' | b'\'')
        && !b[start - 1].is_ascii_whitespace()
    {
        start -= 1;
    }
    let name = &b[start..end];
    name == b"xmlns" || name.starts_with(b"xmlns:")
}

/// The position of `needle` in `b` at or after `from`.
fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let hay = b.get(from..)?;
    if needle.len() == 1 {
        return hay.iter().position(|c| *c == needle[0]).map(|p| from + p);
    }
    hay.windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// Just past the next `needle` at or after `from`, or the end of the text.
fn after(b: &[u8], from: usize, needle: &[u8]) -> usize {
    find(b, from, needle).map_or(b.len(), |p| p + needle.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_well_formed_documents_exactly() {
        let ok = format!(
            "<?xml version=\"1.0\"?><!-- <a><a> --><r a=\"x>y\" b='<'>{}<![CDATA[<x><x>]]>{}</r>",
            "<a>".repeat(MAX_DEPTH - 1),
            "</a>".repeat(MAX_DEPTH - 1)
        );
        assert_eq!(check(&ok), Ok(()));
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(check(&deep), Err(Over::Depth));
        // Siblings and empty elements do not add depth.
        let wide = format!("<r>{}</r>", "<a/><b></b>".repeat(10_000));
        assert_eq!(check(&wide), Ok(()));
    }

    #[test]
    fn counts_attributes_and_namespace_declarations() {
        let attrs = |n: usize| {
            let a: String = (0..n).map(|i| format!(" a{i}=\"v\"")).collect();
            format!("<r{a}/>")
        };
        assert_eq!(check(&attrs(MAX_XML_ATTRIBUTES)), Ok(()));
        assert_eq!(check(&attrs(MAX_XML_ATTRIBUTES + 1)), Err(Over::Attributes));
        let ns: String = (0..=MAX_XML_NAMESPACES)
            .map(|i| format!("<e xmlns:p{i} = \"urn:{i}\" xmlns=\"u\"/>"))
            .collect();
        assert_eq!(check(&format!("<r>{ns}</r>")), Err(Over::Namespaces));
        assert_eq!(check("<r xmlnsx=\"1\" xmlns:a=\"u\"/>"), Ok(()));
    }

    #[test]
    fn hostile_tags_are_scanned_in_linear_time() {
        // A tag of nothing but `=` (each one an attribute to the scan) or one long name.
        let equals = format!("<a {}>", "=".repeat(1_000_000));
        assert_eq!(check(&equals), Err(Over::Attributes));
        let spaced = format!("<a {}/>", "x =".repeat(MAX_XML_ATTRIBUTES));
        assert_eq!(check(&spaced), Ok(()));
        let long = format!("<a {}=\"\"/>", "x".repeat(1_000_000));
        assert_eq!(check(&long), Ok(()));
    }

    #[test]
    fn broken_input_ends_the_scan_without_panicking() {
        for text in [
            "<",
            "<!--",
            "<a",
            "<a b=\"",
            "</",
            "<![CDATA[",
            "<?",
            "a<b/",
        ] {
            let _ = check(text);
        }
    }
}
