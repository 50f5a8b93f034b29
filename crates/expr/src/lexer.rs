//! Lexer: expression text → tokens with byte spans, written with winnow over a
//! [`LocatingSlice`] so every token knows where it came from. Interpolated strings are lexed
//! here into text and holes, each hole carrying its own tokens, so the parser never re-reads
//! source text and positions inside holes stay exact.

use std::borrow::Cow;

use winnow::error::{AddContext, ErrMode, ParserError};
use winnow::prelude::*;
use winnow::stream::{LocatingSlice, Location, Stream};
use winnow::token::{any, take_while};

/// A byte range in the expression text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    pub(crate) fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// A syntax error from the lexer or the parser. An empty message means "nothing more specific
/// than: this token was not expected here".
#[derive(Clone, Debug)]
pub(crate) struct SyntaxError {
    pub pos: usize,
    pub message: Cow<'static, str>,
}

impl SyntaxError {
    pub(crate) fn new(pos: usize, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            pos,
            message: message.into(),
        }
    }
}

impl<I: Stream + Location> ParserError<I> for SyntaxError {
    type Inner = Self;

    fn from_input(input: &I) -> Self {
        Self {
            pos: input.current_token_start(),
            message: Cow::Borrowed(""),
        }
    }

    fn into_inner(self) -> Result<Self::Inner, Self> {
        Ok(self)
    }

    /// Of two failed alternatives, report the one that got further.
    fn or(self, other: Self) -> Self {
        if other.pos >= self.pos { other } else { self }
    }
}

impl<I: Stream + Location> AddContext<I, &'static str> for SyntaxError {
    fn add_context(mut self, _input: &I, _start: &I::Checkpoint, context: &'static str) -> Self {
        if self.message.is_empty() {
            self.message = Cow::Borrowed(context);
        }
        self
    }
}

pub(crate) type PResult<T> = winnow::ModalResult<T, SyntaxError>;

pub(crate) fn cut<T>(pos: usize, message: impl Into<Cow<'static, str>>) -> PResult<T> {
    Err(ErrMode::Cut(SyntaxError::new(pos, message)))
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub kind: Tok,
    pub span: Span,
}

impl Location for Token {
    fn previous_token_end(&self) -> usize {
        self.span.end
    }

    fn current_token_start(&self) -> usize {
        self.span.start
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// An identifier or keyword (keywords are told apart by the parser).
    Ident(String),
    /// An integer literal; `long` when it had an `L` suffix.
    Int {
        value: u64,
        long: bool,
    },
    /// A real literal (`1.5`, `2e3`, `1d`, `2f`, `3m`: all `double` here).
    Real(f64),
    Str(String),
    Char(char),
    /// `$"..."`.
    Interp(Vec<InterpPart>),
    P(Punct),
    Eof,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum InterpPart {
    Text(String),
    Hole {
        tokens: Vec<Token>,
        align: Option<i64>,
        format: Option<String>,
        span: Span,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Punct {
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Semi,
    Dot,
    QDot,
    Question,
    QQ,
    Colon,
    ColonColon,
    Arrow,
    Assign,
    EqEq,
    NotEq,
    Lt,
    Gt,
    Le,
    Ge,
    AndAnd,
    OrOr,
    Not,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    PlusEq,
    MinusEq,
    StarEq,
    SlashEq,
    PercentEq,
    PlusPlus,
    MinusMinus,
    Amp,
    Pipe,
    Caret,
    Tilde,
    At,
}

impl Punct {
    pub(crate) fn text(self) -> &'static str {
        PUNCTS
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("@", |(s, _)| s)
    }
}

/// Longest first, so that `??` wins over `?`.
const PUNCTS: &[(&str, Punct)] = &[
    ("?.", Punct::QDot),
    ("??", Punct::QQ),
    ("::", Punct::ColonColon),
    ("=>", Punct::Arrow),
    ("==", Punct::EqEq),
    ("!=", Punct::NotEq),
    ("<=", Punct::Le),
    (">=", Punct::Ge),
    ("&&", Punct::AndAnd),
    ("||", Punct::OrOr),
    ("+=", Punct::PlusEq),
    ("-=", Punct::MinusEq),
    ("*=", Punct::StarEq),
    ("/=", Punct::SlashEq),
    ("%=", Punct::PercentEq),
    ("++", Punct::PlusPlus),
    ("--", Punct::MinusMinus),
    ("(", Punct::LParen),
    (")", Punct::RParen),
    ("{", Punct::LBrace),
    ("}", Punct::RBrace),
    ("[", Punct::LBracket),
    ("]", Punct::RBracket),
    (",", Punct::Comma),
    (";", Punct::Semi),
    (".", Punct::Dot),
    ("?", Punct::Question),
    (":", Punct::Colon),
    ("=", Punct::Assign),
    ("<", Punct::Lt),
    (">", Punct::Gt),
    ("!", Punct::Not),
    ("+", Punct::Plus),
    ("-", Punct::Minus),
    ("*", Punct::Star),
    ("/", Punct::Slash),
    ("%", Punct::Percent),
    ("&", Punct::Amp),
    ("|", Punct::Pipe),
    ("^", Punct::Caret),
    ("~", Punct::Tilde),
    ("@", Punct::At),
];

/// Interpolated strings inside interpolation holes, at most this deep.
const MAX_INTERPOLATION_DEPTH: u32 = 8;

type In<'a> = LocatingSlice<&'a str>;

/// Lexes a whole expression text; the last token is always [`Tok::Eof`].
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, SyntaxError> {
    let mut input = LocatingSlice::new(src);
    let mut tokens = Vec::new();
    let result: PResult<()> = (|| {
        loop {
            trivia(&mut input)?;
            if input.is_empty() {
                tokens.push(Token {
                    kind: Tok::Eof,
                    span: Span::new(src.len(), src.len()),
                });
                return Ok(());
            }
            tokens.push(token(&mut input, 0)?);
        }
    })();
    match result {
        Ok(()) => Ok(tokens),
        Err(ErrMode::Backtrack(e) | ErrMode::Cut(e)) => Err(e),
        Err(ErrMode::Incomplete(_)) => Err(SyntaxError::new(src.len(), "Unexpected end of text")),
    }
}

fn pos(i: &In<'_>) -> usize {
    i.current_token_start()
}

fn peek_char(i: &In<'_>, n: usize) -> Option<char> {
    i.chars().nth(n)
}

/// Whitespace and comments.
fn trivia(i: &mut In<'_>) -> PResult<()> {
    loop {
        let _: &str = take_while(0.., char::is_whitespace).parse_next(i)?;
        if i.starts_with("//") {
            let _: &str = take_while(0.., |c| c != '\n').parse_next(i)?;
        } else if i.starts_with("/*") {
            let start = pos(i);
            match i.find("*/") {
                Some(end) => {
                    let _ = i.next_slice(end + 2);
                }
                None => return cut(start, "End-of-file found, '*/' expected"),
            }
        } else {
            return Ok(());
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn token(i: &mut In<'_>, nest: u32) -> PResult<Token> {
    let start = pos(i);
    let c = peek_char(i, 0).unwrap_or('\0');
    let c1 = peek_char(i, 1);
    let kind = match c {
        c if is_ident_start(c) => Tok::Ident(ident(i)?),
        '0'..='9' => number(i)?,
        '.' if c1.is_some_and(|c| c.is_ascii_digit()) => number(i)?,
        '"' => Tok::Str(regular_string(i)?),
        '\'' => Tok::Char(char_literal(i)?),
        '@' if c1 == Some('"') => {
            let _ = i.next_slice(1);
            Tok::Str(verbatim_string(i)?)
        }
        '@' if c1.is_some_and(is_ident_start) => {
            let _ = i.next_slice(1);
            Tok::Ident(ident(i)?)
        }
        '$' | '@' if i.starts_with("$\"") || i.starts_with("$@\"") || i.starts_with("@$\"") => {
            let verbatim = !i.starts_with("$\"");
            let _ = i.next_slice(if verbatim { 2 } else { 1 });
            Tok::Interp(interpolated(i, verbatim, nest)?)
        }
        _ => match PUNCTS.iter().find(|(text, _)| i.starts_with(text)) {
            // `a ?.5 : b` is a conditional with a real literal, not `?.`.
            Some((_, Punct::QDot)) if peek_char(i, 2).is_some_and(|c| c.is_ascii_digit()) => {
                let _ = i.next_slice(1);
                Tok::P(Punct::Question)
            }
            Some((text, p)) => {
                let _ = i.next_slice(text.len());
                Tok::P(*p)
            }
            None => return cut(start, format!("Unexpected character '{c}'")),
        },
    };
    Ok(Token {
        kind,
        span: Span::new(start, pos(i)),
    })
}

fn ident(i: &mut In<'_>) -> PResult<String> {
    take_while(1.., is_ident_char)
        .map(str::to_owned)
        .parse_next(i)
}

fn number(i: &mut In<'_>) -> PResult<Tok> {
    let start = pos(i);
    if i.starts_with("0x") || i.starts_with("0X") {
        let _ = i.next_slice(2);
        let digits: &str = take_while(1.., |c: char| c.is_ascii_hexdigit() || c == '_')
            .parse_next(i)
            .map_err(|_: ErrMode<SyntaxError>| {
                ErrMode::Cut(SyntaxError::new(start, "Hexadecimal digits expected"))
            })?;
        let long = int_suffix(i, start)?;
        let value = u64::from_str_radix(&digits.replace('_', ""), 16);
        return match value {
            Ok(value) => Ok(Tok::Int { value, long }),
            Err(_) => cut(start, "Integral constant is too large"),
        };
    }
    let mut text = String::new();
    let mut real = false;
    let int_part: &str = take_while(0.., |c: char| c.is_ascii_digit() || c == '_').parse_next(i)?;
    text.push_str(int_part);
    if i.starts_with('.') && peek_char(i, 1).is_some_and(|c| c.is_ascii_digit()) {
        let _ = i.next_slice(1);
        let frac: &str = take_while(1.., |c: char| c.is_ascii_digit() || c == '_').parse_next(i)?;
        text.push('.');
        text.push_str(frac);
        real = true;
    }
    if matches!(peek_char(i, 0), Some('e' | 'E')) {
        let sign = matches!(peek_char(i, 1), Some('+' | '-'));
        let digit_at = if sign { 2 } else { 1 };
        if peek_char(i, digit_at).is_some_and(|c| c.is_ascii_digit()) {
            let e: &str = i.next_slice(digit_at);
            text.push_str(e);
            let exp: &str = take_while(1.., |c: char| c.is_ascii_digit()).parse_next(i)?;
            text.push_str(exp);
            real = true;
        }
    }
    let text = text.replace('_', "");
    match peek_char(i, 0) {
        Some('f' | 'F' | 'd' | 'D' | 'm' | 'M') => {
            let _ = any.parse_next(i)?;
        }
        _ => {
            if !real {
                let long = int_suffix(i, start)?;
                return match text.parse::<u64>() {
                    Ok(value) => Ok(Tok::Int { value, long }),
                    Err(_) => cut(start, "Integral constant is too large"),
                };
            }
        }
    }
    if peek_char(i, 0).is_some_and(is_ident_char) {
        return cut(pos(i), "Invalid number suffix");
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Tok::Real(v)),
        _ => cut(
            start,
            "Floating-point constant is outside the range of type 'double'",
        ),
    }
}

/// `L`, `U`, `UL`, `LU` (any case); true when the literal is `long`.
fn int_suffix(i: &mut In<'_>, start: usize) -> PResult<bool> {
    let suffix: &str = take_while(0.., is_ident_char).parse_next(i)?;
    match suffix.to_ascii_lowercase().as_str() {
        "" | "u" => Ok(false),
        "l" | "ul" | "lu" => Ok(true),
        _ => cut(start, "Invalid number suffix"),
    }
}

/// An escape sequence after `\`, in a regular string or char literal.
fn escape(i: &mut In<'_>) -> PResult<char> {
    let start = pos(i);
    let _ = i.next_slice(1);
    let Some(c) = peek_char(i, 0) else {
        return cut(start, "Unrecognized escape sequence");
    };
    let _ = i.next_slice(c.len_utf8());
    let hex = |i: &mut In<'_>, min: usize, max: usize| -> PResult<u32> {
        let digits: &str = take_while(min..=max, |c: char| c.is_ascii_hexdigit())
            .parse_next(i)
            .map_err(|_: ErrMode<SyntaxError>| {
                ErrMode::Cut(SyntaxError::new(start, "Unrecognized escape sequence"))
            })?;
        u32::from_str_radix(digits, 16).or_else(|_| cut(start, "Unrecognized escape sequence"))
    };
    Ok(match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        '0' => '\0',
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'v' => '\u{b}',
        '\\' | '"' | '\'' => c,
        'u' | 'x' | 'U' => {
            let code = match c {
                'u' => hex(i, 4, 4)?,
                'x' => hex(i, 1, 4)?,
                _ => hex(i, 8, 8)?,
            };
            if (0xD800..0xDC00).contains(&code) && i.starts_with("\\u") {
                // A surrogate pair written as two escapes.
                let _ = i.next_slice(2);
                let low = hex(i, 4, 4)?;
                let combined =
                    0x10000 + ((code - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF);
                char::from_u32(combined).unwrap_or('\u{FFFD}')
            } else {
                char::from_u32(code).unwrap_or('\u{FFFD}')
            }
        }
        _ => return cut(start, "Unrecognized escape sequence"),
    })
}

fn regular_string(i: &mut In<'_>) -> PResult<String> {
    let start = pos(i);
    let _ = i.next_slice(1);
    let mut out = String::new();
    loop {
        match peek_char(i, 0) {
            None | Some('\n' | '\r') => return cut(start, "Unterminated string literal"),
            Some('"') => {
                let _ = i.next_slice(1);
                return Ok(out);
            }
            Some('\\') => out.push(escape(i)?),
            Some(c) => {
                let _ = i.next_slice(c.len_utf8());
                out.push(c);
            }
        }
    }
}

fn verbatim_string(i: &mut In<'_>) -> PResult<String> {
    let start = pos(i).saturating_sub(1);
    let _ = i.next_slice(1);
    let mut out = String::new();
    loop {
        match peek_char(i, 0) {
            None => return cut(start, "Unterminated verbatim string literal"),
            Some('"') if peek_char(i, 1) == Some('"') => {
                let _ = i.next_slice(2);
                out.push('"');
            }
            Some('"') => {
                let _ = i.next_slice(1);
                return Ok(out);
            }
            Some(c) => {
                let _ = i.next_slice(c.len_utf8());
                out.push(c);
            }
        }
    }
}

fn char_literal(i: &mut In<'_>) -> PResult<char> {
    let start = pos(i);
    let _ = i.next_slice(1);
    let c = match peek_char(i, 0) {
        None | Some('\n' | '\r') => return cut(start, "Unterminated character literal"),
        Some('\'') => return cut(start, "Empty character literal"),
        Some('\\') => escape(i)?,
        Some(c) => {
            let _ = i.next_slice(c.len_utf8());
            c
        }
    };
    if peek_char(i, 0) != Some('\'') {
        return cut(start, "Too many characters in character literal");
    }
    let _ = i.next_slice(1);
    Ok(c)
}

/// After `$"` (or `$@"`): text, `{{`/`}}`, and holes `{expr[,align][:format]}`.
fn interpolated(i: &mut In<'_>, verbatim: bool, nest: u32) -> PResult<Vec<InterpPart>> {
    let start = pos(i).saturating_sub(if verbatim { 3 } else { 2 });
    let _ = i.next_slice(1);
    if nest >= MAX_INTERPOLATION_DEPTH {
        return cut(start, "Interpolated strings are nested too deeply");
    }
    let mut parts = Vec::new();
    let mut text = String::new();
    loop {
        let c = peek_char(i, 0);
        match c {
            None => return cut(start, "Unterminated interpolated string literal"),
            Some('\n' | '\r') if !verbatim => {
                return cut(start, "Unterminated interpolated string literal");
            }
            Some('"') if verbatim && peek_char(i, 1) == Some('"') => {
                let _ = i.next_slice(2);
                text.push('"');
            }
            Some('"') => {
                let _ = i.next_slice(1);
                if !text.is_empty() {
                    parts.push(InterpPart::Text(text));
                }
                return Ok(parts);
            }
            Some('{') if peek_char(i, 1) == Some('{') => {
                let _ = i.next_slice(2);
                text.push('{');
            }
            Some('}') if peek_char(i, 1) == Some('}') => {
                let _ = i.next_slice(2);
                text.push('}');
            }
            Some('}') => {
                return cut(
                    pos(i),
                    "A '}' character must be escaped (by doubling) in an interpolated string",
                );
            }
            Some('{') => {
                if !text.is_empty() {
                    parts.push(InterpPart::Text(std::mem::take(&mut text)));
                }
                parts.push(hole(i, start, nest)?);
            }
            Some('\\') if !verbatim => text.push(escape(i)?),
            Some(c) => {
                let _ = i.next_slice(c.len_utf8());
                text.push(c);
            }
        }
    }
}

fn hole(i: &mut In<'_>, string_start: usize, nest: u32) -> PResult<InterpPart> {
    let open = pos(i);
    let _ = i.next_slice(1);
    let mut tokens = Vec::new();
    let mut depth = 0i32;
    let mut align = None;
    let mut format = None;
    loop {
        trivia(i)?;
        let here = pos(i);
        match peek_char(i, 0) {
            None => return cut(string_start, "Unterminated interpolated string literal"),
            Some('}') if depth == 0 => {
                let _ = i.next_slice(1);
                break;
            }
            Some(':') if depth == 0 && !i.starts_with("::") => {
                let _ = i.next_slice(1);
                let f: &str = take_while(0.., |c| c != '}' && c != '"').parse_next(i)?;
                format = Some(f.to_owned());
                if !i.starts_with('}') {
                    return cut(string_start, "Unterminated interpolated string literal");
                }
                let _ = i.next_slice(1);
                break;
            }
            Some(',') if depth == 0 => {
                let _ = i.next_slice(1);
                trivia(i)?;
                let neg = i.starts_with('-');
                if neg {
                    let _ = i.next_slice(1);
                }
                let digits: &str = take_while(1.., |c: char| c.is_ascii_digit())
                    .parse_next(i)
                    .map_err(|_: ErrMode<SyntaxError>| {
                        ErrMode::Cut(SyntaxError::new(here, "Alignment width expected"))
                    })?;
                let width: i64 = digits.parse().unwrap_or(0);
                align = Some(if neg { -width } else { width });
            }
            Some(_) => {
                let t = token(i, nest + 1)?;
                match t.kind {
                    Tok::P(Punct::LParen | Punct::LBracket | Punct::LBrace) => depth += 1,
                    Tok::P(Punct::RParen | Punct::RBracket | Punct::RBrace) => depth -= 1,
                    _ => {}
                }
                tokens.push(t);
            }
        }
    }
    let end = pos(i);
    if tokens.is_empty() {
        return cut(open, "Empty expression in interpolated string");
    }
    let last = tokens.last().map_or(open, |t| t.span.end);
    tokens.push(Token {
        kind: Tok::Eof,
        span: Span::new(last, last),
    });
    Ok(InterpPart::Hole {
        tokens,
        align,
        format,
        span: Span::new(open, end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        lex(src).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn literals() {
        assert_eq!(
            kinds(r#"1 2L 3.5 .5 1e3 0x1F 'a' '\n' "a\"b" @"C:\t""x" 5d"#),
            vec![
                Tok::Int {
                    value: 1,
                    long: false
                },
                Tok::Int {
                    value: 2,
                    long: true
                },
                Tok::Real(3.5),
                Tok::Real(0.5),
                Tok::Real(1000.0),
                Tok::Int {
                    value: 31,
                    long: false
                },
                Tok::Char('a'),
                Tok::Char('\n'),
                Tok::Str("a\"b".into()),
                Tok::Str("C:\\t\"x".into()),
                Tok::Real(5.0),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn member_access_on_int_is_not_a_real() {
        assert_eq!(
            kinds("1.ToString()")[..3],
            [
                Tok::Int {
                    value: 1,
                    long: false
                },
                Tok::P(Punct::Dot),
                Tok::Ident("ToString".into())
            ]
        );
    }

    #[test]
    fn interpolation_holes_have_tokens_and_spans() {
        let src = r#"$"a{x["k"],5:yyyy}b{{c}}""#;
        let toks = lex(src).unwrap();
        let Tok::Interp(parts) = &toks[0].kind else {
            panic!("{toks:?}")
        };
        assert_eq!(parts.len(), 3);
        let InterpPart::Hole {
            tokens,
            align,
            format,
            ..
        } = &parts[1]
        else {
            panic!()
        };
        assert_eq!(*align, Some(5));
        assert_eq!(format.as_deref(), Some("yyyy"));
        assert_eq!(&src[tokens[0].span.start..tokens[0].span.end], "x");
        assert_eq!(parts[2], InterpPart::Text("b{c}".into()));
    }

    #[test]
    fn errors_have_positions() {
        let e = lex("@(\"abc)").unwrap_err();
        assert_eq!(e.pos, 2);
        assert!(e.message.contains("Unterminated"));
        assert_eq!(lex("a # b").unwrap_err().pos, 2);
        assert!(lex("$\"{}\"").is_err());
        assert!(lex("$\"{a\"").is_err());
    }
}
