//! Reading policy XML as Azure writes it.
//!
//! Azure lets expressions inside `@(...)` and `@{...}` hold characters XML forbids there: `<`
//! and `>` (`As<JObject>()`, comparisons), `"` inside a `"`-quoted attribute, `&&`. A pre-pass
//! finds each expression (tracking parentheses, braces, string and character literals and
//! interpolation holes) and swaps those characters for private-use placeholders; roxmltree then
//! parses the document, and every string read back out has the placeholders restored. Positions
//! are mapped back to the text the user wrote, so errors point at the right line and column.

pub mod scan;

use std::ops::Range;

/// A placeholder and the character it stands for.
const SWAPS: [(char, char); 5] = [
    ('<', '\u{E000}'),
    ('>', '\u{E001}'),
    ('"', '\u{E002}'),
    ('\'', '\u{E003}'),
    ('&', '\u{E004}'),
];
/// Each placeholder is 3 bytes in UTF-8 where the original character was 1.
const GROWTH: usize = 2;

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
    prepared: String,
    /// Offsets in `prepared` where a placeholder starts, ascending.
    swaps: Vec<usize>,
    /// Byte offsets in `original` where each line starts.
    lines: Vec<usize>,
}

impl<'a> Source<'a> {
    pub fn new(original: &'a str) -> Self {
        let (prepared, swaps) = prepare(original);
        let mut lines = vec![0];
        lines.extend(original.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            original,
            prepared,
            swaps,
            lines,
        }
    }

    /// Maps a byte offset in the prepared text back to the original text.
    pub fn original_offset(&self, prepared: usize) -> usize {
        let before = self.swaps.partition_point(|&s| s < prepared);
        prepared.saturating_sub(before * GROWTH)
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
        // The tree is walked recursively below: bound its depth first.
        if let Err(over) = scan::check(&self.prepared) {
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
            roxmltree::Document::parse_with_options(&self.prepared, options).map_err(|e| {
                let p = e.pos();
                // roxmltree's position is in the prepared text; placeholders never span lines, and
                // a placeholder counts as one character, like the character it replaced.
                XmlError {
                    pos: Pos {
                        line: p.row,
                        column: p.col,
                    },
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
                value: restore(a.value()),
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
                        restore(text),
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

/// Puts back the characters the pre-pass swapped out.
pub fn restore(text: &str) -> String {
    if !text.contains(|c: char| ('\u{E000}'..='\u{E004}').contains(&c)) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            SWAPS
                .iter()
                .find(|(_, p)| *p == c)
                .map_or(c, |(orig, _)| *orig)
        })
        .collect()
}

/// States of the expression scanner.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Code, with the closing character that ends this level (`)`, `}` or `}` of a hole).
    Code(u8),
    /// A regular string literal; `true` when interpolated (`$"…{hole}…"`).
    Str { interpolated: bool },
    /// A verbatim string literal (`@"…"`, `""` escapes a quote); `true` when interpolated.
    Verbatim { interpolated: bool },
    /// A character literal.
    Char,
}

/// Swaps the characters XML forbids inside expressions for placeholders. Returns the prepared
/// text and the prepared-text offsets of the placeholders.
fn prepare(original: &str) -> (String, Vec<usize>) {
    let bytes = original.as_bytes();
    let mut out = String::with_capacity(original.len() + 16);
    let mut swaps = Vec::new();
    let mut stack: Vec<Mode> = Vec::new();
    let mut i = 0;
    // Copies everything outside expressions as is, in runs.
    let mut run_start = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if stack.is_empty() {
            if b == b'@' && matches!(bytes.get(i + 1), Some(b'(') | Some(b'{')) {
                let close = if bytes[i + 1] == b'(' { b')' } else { b'}' };
                stack.push(Mode::Code(close));
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        // Inside an expression: flush the plain run before handling this byte.
        let mut swap = false;
        let Some(&mode) = stack.last() else { break };
        match mode {
            Mode::Code(close) => match b {
                b'(' => stack.push(Mode::Code(b')')),
                b'{' => stack.push(Mode::Code(b'}')),
                b')' | b'}' if b == close => {
                    stack.pop();
                }
                b'"' => {
                    let prev = if i > 0 { bytes[i - 1] } else { 0 };
                    let prev2 = if i > 1 { bytes[i - 2] } else { 0 };
                    // `@"…"`, `@$"…"` or `$@"…"`.
                    let verbatim = prev == b'@' || (prev == b'$' && prev2 == b'@');
                    let interpolated = prev == b'$' || prev2 == b'$';
                    stack.push(if verbatim {
                        Mode::Verbatim { interpolated }
                    } else {
                        Mode::Str { interpolated }
                    });
                    swap = true;
                }
                b'\'' => {
                    stack.push(Mode::Char);
                    swap = true;
                }
                b'<' | b'>' => swap = true,
                b'&' => swap = !is_entity(&bytes[i..]),
                _ => {}
            },
            Mode::Str { interpolated } => match b {
                b'\\' => {
                    // Keep the escaped character as part of the string.
                    i += 1;
                    if let Some(&next) = bytes.get(i)
                        && matches!(next, b'"' | b'\'' | b'<' | b'>' | b'&')
                    {
                        flush(&mut out, original, run_start, i, &mut swaps, next);
                        i += 1;
                        run_start = i;
                        continue;
                    }
                }
                b'"' => {
                    stack.pop();
                    swap = true;
                }
                b'{' if interpolated => {
                    if bytes.get(i + 1) == Some(&b'{') {
                        i += 1;
                    } else {
                        stack.push(Mode::Code(b'}'));
                    }
                }
                b'<' | b'>' | b'\'' => swap = true,
                b'&' => swap = !is_entity(&bytes[i..]),
                _ => {}
            },
            Mode::Verbatim { interpolated } => match b {
                b'"' => {
                    if bytes.get(i + 1) == Some(&b'"') {
                        // An escaped quote: two placeholders.
                        flush(&mut out, original, run_start, i, &mut swaps, b'"');
                        i += 1;
                        run_start = i;
                        swap = true;
                    } else {
                        stack.pop();
                        swap = true;
                    }
                }
                b'{' if interpolated => {
                    if bytes.get(i + 1) == Some(&b'{') {
                        i += 1;
                    } else {
                        stack.push(Mode::Code(b'}'));
                    }
                }
                b'<' | b'>' | b'\'' => swap = true,
                b'&' => swap = !is_entity(&bytes[i..]),
                _ => {}
            },
            Mode::Char => match b {
                b'\\' => {
                    i += 1;
                    if let Some(&next) = bytes.get(i)
                        && matches!(next, b'"' | b'\'' | b'<' | b'>' | b'&')
                    {
                        flush(&mut out, original, run_start, i, &mut swaps, next);
                        i += 1;
                        run_start = i;
                        continue;
                    }
                }
                b'\'' => {
                    stack.pop();
                    swap = true;
                }
                b'<' | b'>' | b'"' => swap = true,
                b'&' => swap = !is_entity(&bytes[i..]),
                _ => {}
            },
        }
        if swap {
            flush(&mut out, original, run_start, i, &mut swaps, b);
            run_start = i + 1;
        }
        i += 1;
    }
    out.push_str(original.get(run_start..).unwrap_or_default());
    (out, swaps)
}

/// Appends `original[from..to]` then the placeholder for `byte`, recording where it went.
fn flush(
    out: &mut String,
    original: &str,
    from: usize,
    to: usize,
    swaps: &mut Vec<usize>,
    byte: u8,
) {
    out.push_str(original.get(from..to).unwrap_or_default());
    if let Some((_, placeholder)) = SWAPS.iter().find(|(c, _)| *c as u32 == u32::from(byte)) {
        swaps.push(out.len());
        out.push(*placeholder);
    }
}

/// Whether `&` at the start of `rest` begins an XML entity or character reference.
fn is_entity(rest: &[u8]) -> bool {
    let end = rest.iter().take(12).position(|&b| b == b';');
    let Some(end) = end else { return false };
    let name = &rest[1..end];
    matches!(name, b"lt" | b"gt" | b"amp" | b"quot" | b"apos")
        || (name.first() == Some(&b'#')
            && name.len() > 1
            && name[1..]
                .iter()
                .all(|b| b.is_ascii_hexdigit() || *b == b'x'))
}

#[cfg(test)]
mod tests;
