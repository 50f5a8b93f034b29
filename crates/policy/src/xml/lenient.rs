//! Azure's lenient policy text, made strict XML before roxmltree reads it.
//!
//! Azure lets the expressions in attribute values and element text (`@(…)` and `@{…}`) hold
//! characters XML forbids there: `<` and `>` (`As<JObject>()`, comparisons, lambdas), `&&`, and
//! `"` inside a `"`-quoted attribute (`value="@(h.GetValueOrDefault("x", ""))"`). This pass walks
//! the document as XML (tags, attribute values, text, comments, CDATA, processing instructions),
//! and where an attribute value or a text starts with an expression it reads the expression with
//! a C# tokenizer (string, verbatim, interpolated and character literals, comments, nesting of
//! parentheses and braces) to find where it ends, writing each raw `"`, `'`, `<`, `>` and `&`
//! inside it as its XML entity. roxmltree decodes the entities again, so every value reads back
//! exactly as written. Text outside expressions is copied untouched: a document without
//! expressions comes out byte for byte the same.
//!
//! Each escape is recorded, so offsets in the prepared text map back to the text the user wrote
//! and every error keeps its line and column. An expression that does not close is reported
//! where it starts, instead of as whatever the XML parser makes of the rest of the document.

/// An entity written for one raw character: where it starts in the prepared text, its length,
/// and how many bytes the prepared text has grown by up to and including it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Escape {
    pub at: usize,
    pub len: usize,
    pub grown: usize,
}

/// The prepared text and its escapes, in order.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    pub text: String,
    pub escapes: Vec<Escape>,
}

/// An expression that does not close: where it starts (byte offset in the original text), and
/// what was left open (`what`, at byte offset `opener`) and why (`why`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unclosed {
    pub start: usize,
    pub opener: usize,
    pub what: &'static str,
    pub why: &'static str,
}

impl Prepared {
    /// Maps a byte offset in the prepared text back to the original text. An offset inside an
    /// entity maps to the character it stands for.
    pub fn original_offset(&self, prepared: usize) -> usize {
        let i = self.escapes.partition_point(|e| e.at <= prepared);
        let Some(e) = i.checked_sub(1).and_then(|i| self.escapes.get(i)) else {
            return prepared;
        };
        if prepared < e.at + e.len {
            e.at - (e.grown - (e.len - 1))
        } else {
            prepared - e.grown
        }
    }
}

/// The entity for a character XML forbids raw inside an attribute value or text.
fn entity(b: u8) -> Option<&'static str> {
    Some(match b {
        b'"' => "&quot;",
        b'\'' => "&apos;",
        b'<' => "&lt;",
        b'>' => "&gt;",
        b'&' => "&amp;",
        _ => return None,
    })
}

/// Makes `original` strict XML; see the module documentation.
pub(crate) fn prepare(original: &str) -> Result<Prepared, Unclosed> {
    let mut w = Writer {
        src: original.as_bytes(),
        original,
        out: Prepared {
            text: String::with_capacity(original.len() + 64),
            escapes: Vec::new(),
        },
        copied: 0,
    };
    let b = original.as_bytes();
    let mut i = 0;
    // At the start of a text node: the text may be an expression.
    let mut text_start = true;
    while i < b.len() {
        if b[i] == b'<' {
            text_start = false;
            let rest = &b[i..];
            i = if rest.starts_with(b"<!--") {
                // The text around a comment is one text: it may start before it.
                text_start = true;
                after(b, i + 4, b"-->")
            } else if rest.starts_with(b"<![CDATA[") {
                after(b, i + 9, b"]]>")
            } else if rest.starts_with(b"<?") {
                after(b, i + 2, b"?>")
            } else if rest.starts_with(b"<!") || rest.starts_with(b"</") {
                after(b, i + 2, b">")
            } else {
                let end = w.tag(i + 1)?;
                text_start = true;
                end
            };
            continue;
        }
        if text_start {
            let first = skip_space(b, i);
            if starts_expression(b, first) {
                i = w.expression(first)?;
                text_start = false;
                continue;
            }
            text_start = false;
        }
        i += 1;
    }
    w.copy_to(b.len());
    Ok(w.out)
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

fn starts_expression(b: &[u8], i: usize) -> bool {
    b.get(i) == Some(&b'@') && matches!(b.get(i + 1), Some(b'(' | b'{'))
}

/// The offset just after the first `end` at or after `from`, or the end of the text.
fn after(b: &[u8], from: usize, end: &[u8]) -> usize {
    b.get(from..)
        .and_then(|rest| rest.windows(end.len()).position(|w| w == end))
        .map_or(b.len(), |p| from + p + end.len())
}

/// Where a C# tokenizer is inside an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Code, closed by `)` or `}` (an interpolation hole is code closed by `}`).
    Code(u8),
    /// A regular string literal; `true` when interpolated (`$"…{hole}…"`).
    Str(bool),
    /// A verbatim string literal (`@"…"`, where `""` is a quote); `true` when interpolated.
    Verbatim(bool),
    /// A character literal.
    Char,
}

struct Writer<'a> {
    src: &'a [u8],
    original: &'a str,
    out: Prepared,
    /// How much of the original has been copied to `out.text`.
    copied: usize,
}

impl Writer<'_> {
    fn copy_to(&mut self, to: usize) {
        if to > self.copied {
            self.out
                .text
                .push_str(self.original.get(self.copied..to).unwrap_or_default());
            self.copied = to;
        }
    }

    /// Writes the character at `i` as its entity when XML forbids it raw (an `&` that already
    /// starts an entity stays: users who escape by hand keep their escapes).
    fn escape(&mut self, i: usize) {
        let b = self.src[i];
        if b == b'&' && is_entity(&self.src[i..]) {
            return;
        }
        let Some(entity) = entity(b) else { return };
        self.copy_to(i);
        let grown = self.out.escapes.last().map_or(0, |e| e.grown) + entity.len() - 1;
        self.out.escapes.push(Escape {
            at: self.out.text.len(),
            len: entity.len(),
            grown,
        });
        self.out.text.push_str(entity);
        self.copied = i + 1;
    }

    /// A start tag from just after its `<`: its attribute values may be expressions. Returns the
    /// offset after the tag (or the end of the text when it never closes).
    fn tag(&mut self, mut i: usize) -> Result<usize, Unclosed> {
        let b = self.src;
        while i < b.len() {
            match b[i] {
                b'>' => return Ok(i + 1),
                q @ (b'"' | b'\'') => {
                    // An attribute value (or junk roxmltree will refuse): find its end.
                    let first = skip_space(b, i + 1);
                    i = if starts_expression(b, first) {
                        self.expression(first)?
                    } else {
                        i + 1
                    };
                    while i < b.len() && b[i] != q {
                        i += 1;
                    }
                    i += 1;
                }
                _ => i += 1,
            }
        }
        Ok(b.len())
    }

    /// Reads the expression starting with `@` at `start`, escaping as it goes. Returns the
    /// offset just after its closing `)` or `}`. A string or character literal ends on its line,
    /// as in C#: one that does not is where an unclosed expression went wrong.
    fn expression(&mut self, start: usize) -> Result<usize, Unclosed> {
        let b = self.src;
        let close = if b[start + 1] == b'(' { b')' } else { b'}' };
        // The modes entered, each with the offset of what opened it.
        let mut stack: Vec<(Mode, usize)> = vec![(Mode::Code(close), start + 1)];
        let mut i = start + 2;
        while let Some(&(mode, opened)) = stack.last() {
            let Some(&c) = b.get(i) else {
                let (what, why) = match mode {
                    Mode::Code(b')') => ("`(`", "has no matching `)`"),
                    Mode::Code(_) => ("`{`", "has no matching `}`"),
                    Mode::Str(_) | Mode::Verbatim(_) => ("the string literal", "is not closed"),
                    Mode::Char => ("the character literal", "is not closed"),
                };
                return Err(Unclosed {
                    start,
                    opener: opened,
                    what,
                    why,
                });
            };
            match mode {
                Mode::Code(end) => match c {
                    b'(' => stack.push((Mode::Code(b')'), i)),
                    b'{' => stack.push((Mode::Code(b'}'), i)),
                    b')' | b'}' if c == end => {
                        stack.pop();
                    }
                    b'"' => {
                        let prev = |n: usize| i.checked_sub(n).map_or(0, |p| b[p]);
                        // `@"…"`, `$"…"`, `@$"…"` or `$@"…"`.
                        let verbatim = prev(1) == b'@' || (prev(1) == b'$' && prev(2) == b'@');
                        let interpolated = prev(1) == b'$' || (prev(1) == b'@' && prev(2) == b'$');
                        stack.push((
                            if verbatim {
                                Mode::Verbatim(interpolated)
                            } else {
                                Mode::Str(interpolated)
                            },
                            i,
                        ));
                        self.escape(i);
                    }
                    b'\'' => {
                        stack.push((Mode::Char, i));
                        self.escape(i);
                    }
                    b'/' if b.get(i + 1) == Some(&b'/') => {
                        // A line comment: its text is anything up to the line end.
                        i += 2;
                        while i < b.len() && b[i] != b'\n' {
                            self.escape(i);
                            i += 1;
                        }
                        continue;
                    }
                    b'/' if b.get(i + 1) == Some(&b'*') => {
                        let opened = i;
                        i += 2;
                        loop {
                            match b.get(i) {
                                None => {
                                    return Err(Unclosed {
                                        start,
                                        opener: opened,
                                        what: "the comment",
                                        why: "is not closed",
                                    });
                                }
                                Some(b'*') if b.get(i + 1) == Some(&b'/') => break,
                                Some(_) => self.escape(i),
                            }
                            i += 1;
                        }
                        i += 2;
                        continue;
                    }
                    _ => self.escape(i),
                },
                Mode::Str(_) | Mode::Char => match c {
                    b'\\' => {
                        self.escape(i);
                        i += 1;
                        if i < b.len() {
                            self.escape(i);
                        }
                    }
                    b'\n' => {
                        let what = if mode == Mode::Char {
                            "the character literal"
                        } else {
                            "the string literal"
                        };
                        return Err(Unclosed {
                            start,
                            opener: opened,
                            what,
                            why: "is not closed on its line",
                        });
                    }
                    b'"' if mode != Mode::Char => {
                        stack.pop();
                        self.escape(i);
                    }
                    b'\'' if mode == Mode::Char => {
                        stack.pop();
                        self.escape(i);
                    }
                    b'{' if mode == Mode::Str(true) => {
                        if b.get(i + 1) == Some(&b'{') {
                            i += 1;
                        } else {
                            stack.push((Mode::Code(b'}'), i));
                        }
                    }
                    _ => self.escape(i),
                },
                Mode::Verbatim(interpolated) => match c {
                    b'"' if b.get(i + 1) == Some(&b'"') => {
                        self.escape(i);
                        i += 1;
                        self.escape(i);
                    }
                    b'"' => {
                        stack.pop();
                        self.escape(i);
                    }
                    b'{' if interpolated => {
                        if b.get(i + 1) == Some(&b'{') {
                            i += 1;
                        } else {
                            stack.push((Mode::Code(b'}'), i));
                        }
                    }
                    _ => self.escape(i),
                },
            }
            i += 1;
        }
        Ok(i)
    }
}

/// Whether `&` at the start of `rest` begins an XML entity or character reference.
fn is_entity(rest: &[u8]) -> bool {
    let Some(end) = rest.iter().take(12).position(|&b| b == b';') else {
        return false;
    };
    let name = &rest[1..end];
    matches!(name, b"lt" | b"gt" | b"amp" | b"quot" | b"apos")
        || (name.first() == Some(&b'#')
            && name.len() > 1
            && name[1..]
                .iter()
                .all(|b| b.is_ascii_hexdigit() || *b == b'x'))
}
