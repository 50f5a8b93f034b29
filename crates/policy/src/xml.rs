//! Reading policy XML as Azure writes it.
//!
//! Azure lets expressions inside `@(...)` and `@{...}` hold characters XML forbids there: `<`
//! and `>` (`As<JObject>()`, comparisons), `"` inside a `"`-quoted attribute, `&&`. A pre-pass
//! ([`lenient`]) reads each expression in attribute values and text with a C# tokenizer and
//! writes those characters as XML entities; roxmltree then parses the document and decodes them,
//! so every string read back out is what the user wrote. Positions are mapped back to the text
//! the user wrote, so errors point at the right line and column, and an expression that does not
//! close is reported where it starts.

mod lenient;
pub mod scan;

use std::ops::Range;

/// A position in the text the user wrote: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

/// A problem found while reading XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    pub pos: Pos,
    pub message: String,
}

/// An element of the policy document, with its attributes and children, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    pub name: String,
    pub pos: Pos,
    pub attrs: Vec<Attr>,
    pub children: Vec<Node>,
    /// The element's inner content exactly as written (for payload elements such as the body
    /// of `set-body`, which may hold any XML or JSON).
    pub inner_raw: String,
    /// Where the inner content starts in the original text, as a byte offset.
    pub inner_offset: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub name: String,
    pub value: String,
    pub pos: Pos,
    /// Byte offset of the value's first character in the original text.
    pub value_offset: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Element(Element),
    /// Text content (whitespace-only text is dropped), with its position and byte offset.
    Text(String, Pos, usize),
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(..) => None,
        })
    }

    /// The concatenated text content, if the element holds only text.
    pub fn text(&self) -> Option<(String, Pos, usize)> {
        let mut out: Option<(String, Pos, usize)> = None;
        for n in &self.children {
            match n {
                Node::Text(t, pos, off) => match &mut out {
                    Some((s, _, _)) => s.push_str(t),
                    None => out = Some((t.clone(), *pos, *off)),
                },
                Node::Element(_) => return None,
            }
        }
        out
    }
}

/// The original text, the prepared text roxmltree reads, and the map between them.
pub struct Source<'a> {
    original: &'a str,
    prepared: lenient::Prepared,
    /// An expression that does not close; the document is refused with it.
    unclosed: Option<lenient::Unclosed>,
    /// Byte offsets in `original` where each line starts.
    lines: Vec<usize>,
}

impl<'a> Source<'a> {
    pub fn new(original: &'a str) -> Self {
        let (prepared, unclosed) = match lenient::prepare(original) {
            Ok(p) => (p, None),
            Err(u) => (lenient::Prepared::default(), Some(u)),
        };
        let mut lines = vec![0];
        lines.extend(original.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            original,
            prepared,
            unclosed,
            lines,
        }
    }

    /// The text the XML parser reads: the original with the raw characters inside expressions
    /// written as entities (empty when an expression does not close).
    pub fn prepared(&self) -> &str {
        &self.prepared.text
    }

    /// Maps a byte offset in the prepared text back to the original text.
    pub fn original_offset(&self, prepared: usize) -> usize {
        self.prepared.original_offset(prepared)
    }

    /// Line and column of a byte offset in the original text.
    pub fn pos(&self, offset: usize) -> Pos {
        let offset = offset.min(self.original.len());
        let line = self.lines.partition_point(|&l| l <= offset).max(1);
        let start = self.lines.get(line - 1).copied().unwrap_or(0);
        let column = self
            .original
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }

    fn pos_prepared(&self, prepared: usize) -> Pos {
        self.pos(self.original_offset(prepared))
    }

    fn slice_original(&self, prepared: Range<usize>) -> String {
        let (a, b) = (
            self.original_offset(prepared.start),
            self.original_offset(prepared.end),
        );
        self.original.get(a..b).unwrap_or_default().to_owned()
    }

    /// Parses the document into an owned element tree.
    pub fn parse(&self) -> Result<Element, XmlError> {
        if let Some(u) = &self.unclosed {
            let opener = self.pos(u.opener);
            return Err(XmlError {
                pos: self.pos(u.start),
                message: format!(
                    "the expression starting here does not close: {} at {}:{} {}",
                    u.what, opener.line, opener.column, u.why
                ),
            });
        }
        // The tree is walked recursively below: bound its depth first.
        if let Err(over) = scan::check(&self.prepared.text) {
            return Err(XmlError {
                pos: Pos { line: 1, column: 1 },
                message: format!("the policy cannot be read: {over}"),
            });
        }
        let options = roxmltree::ParsingOptions {
            allow_dtd: false,
            nodes_limit: 200_000,
            ..roxmltree::ParsingOptions::default()
        };
        let doc =
            roxmltree::Document::parse_with_options(&self.prepared.text, options).map_err(|e| {
                let p = e.pos();
                // roxmltree's position is in the prepared text: back to the original.
                let at = offset_of(&self.prepared.text, p.row, p.col);
                XmlError {
                    pos: self.pos(self.original_offset(at)),
                    message: format!("the policy is not well-formed XML: {}", describe(&e)),
                }
            })?;
        Ok(self.element(doc.root_element()))
    }

    fn element(&self, node: roxmltree::Node<'_, '_>) -> Element {
        let range = node.range();
        let mut attrs = Vec::new();
        for a in node.attributes() {
            let value_range = a.range_value();
            attrs.push(Attr {
                name: a.name().to_owned(),
                value: a.value().to_owned(),
                pos: self.pos_prepared(a.range().start),
                value_offset: self.original_offset(value_range.start),
            });
        }
        let mut children = Vec::new();
        for child in node.children() {
            if child.is_element() {
                children.push(Node::Element(self.element(child)));
            } else if child.is_text() {
                let text = child.text().unwrap_or_default();
                if !text.trim().is_empty() {
                    let start = child.range().start;
                    children.push(Node::Text(
                        text.to_owned(),
                        self.pos_prepared(start),
                        self.original_offset(start),
                    ));
                }
            }
        }
        // The inner content lies between the end of the start tag and the start of the end tag.
        let (inner_raw, inner_offset) = match (node.first_child(), node.last_child()) {
            (Some(first), Some(last)) => {
                let inner = first.range().start..last.range().end;
                (
                    self.slice_original(inner.clone()),
                    self.original_offset(inner.start),
                )
            }
            _ => (String::new(), self.original_offset(range.end)),
        };
        Element {
            name: node.tag_name().name().to_owned(),
            pos: self.pos_prepared(range.start),
            attrs,
            children,
            inner_raw,
            inner_offset,
        }
    }
}

fn describe(e: &roxmltree::Error) -> String {
    // roxmltree's messages end with the position, which we report separately.
    let text = e.to_string();
    match text.rfind(" at ") {
        Some(i) if text[i + 4..].contains(':') => text[..i].to_owned(),
        _ => text,
    }
}

/// The byte offset of a 1-based line and column (in characters) of `text`.
fn offset_of(text: &str, line: u32, column: u32) -> usize {
    let start = if line <= 1 {
        0
    } else {
        text.match_indices('\n')
            .nth(line as usize - 2)
            .map_or(text.len(), |(i, _)| i + 1)
    };
    let rest = text.get(start..).unwrap_or_default();
    start
        + rest
            .char_indices()
            .nth(column.saturating_sub(1) as usize)
            .map_or(rest.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests;
