//! Parser: tokens → [`ast`](super::ast), with winnow over a [`TokenSlice`]. Recursive descent
//! for statements and postfix chains, precedence climbing for binary operators, and bounded
//! speculation (checkpoint/reset) where C# itself needs look-ahead: casts, lambdas, generic
//! method calls (`As<JObject>(…)`) and declarations (`string s = …`).
//!
//! Nesting is bounded ([`MAX_DEPTH`]): recursion and left-leaning chains (`a+b+c…`,
//! `a.b.c…`) both count, so no input can overflow the stack here or in the passes after.

use std::borrow::Cow;

use winnow::combinator::{cut_err, delimited, separated};
use winnow::error::ErrMode;
use winnow::prelude::*;
use winnow::stream::{Stateful, Stream, TokenSlice};

use super::ast::{
    Arg, ArgKind, BinOp, Expr, ExprKind, Hole, InitItem, InterpPiece, Program, Stmt, TypeRef, UnOp,
};
use super::lexer::{InterpPart, PResult, Punct, Span, SyntaxError, Tok, Token, cut};

/// Maximum nesting of expressions and statements (parentheses, operators, member chains…).
pub(crate) const MAX_DEPTH: u32 = 128;

/// Tokens plus the current nesting depth.
type In<'t> = Stateful<TokenSlice<'t, Token>, u32>;

static EOF: Token = Token {
    kind: Tok::Eof,
    span: Span { start: 0, end: 0 },
};

/// Parses the tokens of a whole `@(…)` / `@{…}` text.
pub(crate) fn parse(tokens: &[Token]) -> Result<Program, SyntaxError> {
    let mut i = In {
        input: TokenSlice::new(tokens),
        state: 0,
    };
    finish(program(&mut i))
}

fn finish<T>(r: PResult<T>) -> Result<T, SyntaxError> {
    match r {
        Ok(v) => Ok(v),
        Err(ErrMode::Backtrack(e) | ErrMode::Cut(e)) => Err(e),
        Err(ErrMode::Incomplete(_)) => Err(SyntaxError::new(0, "Unexpected end of expression")),
    }
}

fn program(i: &mut In<'_>) -> PResult<Program> {
    let first = peek(i);
    if first.kind != Tok::P(Punct::At) {
        return cut(
            first.span.start,
            "A policy expression must start with '@(' or '@{'",
        );
    }
    i.next_token();
    let open = peek(i);
    let program = match open.kind {
        Tok::P(Punct::LParen) => {
            i.next_token();
            let e = expr(i)?;
            expect(i, Punct::RParen)?;
            Program::Expr(e)
        }
        Tok::P(Punct::LBrace) => {
            let (stmts, span) = block(i)?;
            Program::Block(stmts, span)
        }
        _ => return cut(open.span.start, "'(' or '{' expected after '@'"),
    };
    let rest = peek(i);
    if rest.kind != Tok::Eof {
        return cut(
            rest.span.start,
            format!("Unexpected '{}' after the expression", describe(&rest.kind)),
        );
    }
    Ok(program)
}

// ---- token helpers -------------------------------------------------------------------------

fn peek<'t>(i: &In<'t>) -> &'t Token {
    nth(i, 0)
}

fn nth<'t>(i: &In<'t>, n: usize) -> &'t Token {
    let rest: &'t [Token] = i.peek_slice(i.eof_offset());
    rest.get(n).unwrap_or(&EOF)
}

fn is_punct(t: &Token, p: Punct) -> bool {
    t.kind == Tok::P(p)
}

fn is_word(t: &Token, word: &str) -> bool {
    matches!(&t.kind, Tok::Ident(s) if s == word)
}

fn eat(i: &mut In<'_>, p: Punct) -> bool {
    if is_punct(peek(i), p) {
        i.next_token();
        true
    } else {
        false
    }
}

/// A parser for one punctuation token (backtracks when absent).
fn punct<'t>(want: Punct) -> impl Parser<In<'t>, Span, ErrMode<SyntaxError>> {
    move |i: &mut In<'t>| {
        let t = peek(i);
        if is_punct(t, want) {
            i.next_token();
            Ok(t.span)
        } else {
            Err(ErrMode::Backtrack(SyntaxError::new(
                t.span.start,
                expected_msg(want),
            )))
        }
    }
}

fn expected_msg(p: Punct) -> String {
    format!("'{}' expected", p.text())
}

fn expect(i: &mut In<'_>, p: Punct) -> PResult<Span> {
    cut_err(punct(p)).parse_next(i)
}

fn describe(t: &Tok) -> Cow<'static, str> {
    match t {
        Tok::Ident(s) => Cow::Owned(s.clone()),
        Tok::Int { value, .. } => Cow::Owned(value.to_string()),
        Tok::Real(v) => Cow::Owned(v.to_string()),
        Tok::Str(_) | Tok::Interp(_) => Cow::Borrowed("string literal"),
        Tok::Char(_) => Cow::Borrowed("character literal"),
        Tok::P(p) => Cow::Borrowed(p.text()),
        Tok::Eof => Cow::Borrowed("end of expression"),
    }
}

/// Words that never name a variable, member or type here.
const RESERVED: &[&str] = &[
    "abstract",
    "as",
    "base",
    "break",
    "case",
    "catch",
    "checked",
    "class",
    "const",
    "continue",
    "default",
    "delegate",
    "do",
    "else",
    "enum",
    "event",
    "explicit",
    "extern",
    "false",
    "finally",
    "fixed",
    "for",
    "foreach",
    "goto",
    "if",
    "implicit",
    "in",
    "interface",
    "internal",
    "is",
    "lock",
    "namespace",
    "new",
    "null",
    "operator",
    "out",
    "override",
    "params",
    "private",
    "protected",
    "public",
    "readonly",
    "ref",
    "return",
    "sealed",
    "sizeof",
    "stackalloc",
    "static",
    "struct",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "unchecked",
    "unsafe",
    "using",
    "virtual",
    "void",
    "volatile",
    "while",
];

fn is_reserved(s: &str) -> bool {
    RESERVED.contains(&s)
}

/// Keywords that are type names.
const PREDEFINED_TYPES: &[&str] = &[
    "string", "int", "long", "double", "bool", "char", "object", "float", "decimal", "byte",
    "short", "uint", "ulong", "sbyte", "ushort", "dynamic",
];

fn identifier(i: &mut In<'_>) -> PResult<(String, Span)> {
    let t = peek(i);
    match &t.kind {
        Tok::Ident(s) if !is_reserved(s) => {
            i.next_token();
            Ok((s.clone(), t.span))
        }
        _ => Err(ErrMode::Backtrack(SyntaxError::new(
            t.span.start,
            "Identifier expected",
        ))),
    }
}

/// Runs `f` one nesting level deeper, refusing to go past [`MAX_DEPTH`].
fn nested<'t, T>(i: &mut In<'t>, f: impl FnOnce(&mut In<'t>) -> PResult<T>) -> PResult<T> {
    deeper(i)?;
    let r = f(i);
    i.state -= 1;
    r
}

fn deeper(i: &mut In<'_>) -> PResult<()> {
    if i.state >= MAX_DEPTH {
        return cut(peek(i).span.start, "The expression is nested too deeply");
    }
    i.state += 1;
    Ok(())
}

fn node(kind: ExprKind, span: Span) -> Expr {
    Expr { kind, span }
}

// ---- types ---------------------------------------------------------------------------------

/// `Name(.Name)*[<T, …>][?][[]]*` (backtracks when it isn't one).
fn type_ref(i: &mut In<'_>) -> PResult<TypeRef> {
    nested(i, |i| {
        let t = peek(i);
        let (mut name, mut span) = match &t.kind {
            Tok::Ident(s) if !is_reserved(s) || PREDEFINED_TYPES.contains(&s.as_str()) => {
                i.next_token();
                (s.clone(), t.span)
            }
            _ => {
                return Err(ErrMode::Backtrack(SyntaxError::new(
                    t.span.start,
                    "Type expected",
                )));
            }
        };
        while is_punct(peek(i), Punct::Dot) && matches!(nth(i, 1).kind, Tok::Ident(_)) {
            i.next_token();
            let (part, s) = identifier(i)?;
            name.push('.');
            name.push_str(&part);
            span = span.to(s);
        }
        let mut args = Vec::new();
        if is_punct(peek(i), Punct::Lt) {
            args = delimited(
                punct(Punct::Lt),
                separated(1.., type_ref, punct(Punct::Comma)),
                punct(Punct::Gt),
            )
            .parse_next(i)?;
            span = span.to(i.previous_token_end_span());
        }
        let mut nullable = false;
        if is_punct(peek(i), Punct::Question) && !matches!(nth(i, 1).kind, Tok::P(Punct::LBracket))
        {
            i.next_token();
            nullable = true;
        }
        let mut array = 0u8;
        while is_punct(peek(i), Punct::LBracket) && is_punct(nth(i, 1), Punct::RBracket) {
            i.next_token();
            let close = peek(i).span;
            i.next_token();
            array = array.saturating_add(1);
            span = span.to(close);
        }
        Ok(TypeRef {
            name,
            args,
            array,
            nullable,
            span,
        })
    })
}

trait PrevSpan {
    fn previous_token_end_span(&self) -> Span;
}

impl PrevSpan for In<'_> {
    fn previous_token_end_span(&self) -> Span {
        let end = winnow::stream::Location::previous_token_end(self);
        Span::new(end, end)
    }
}

// ---- statements ----------------------------------------------------------------------------

fn block(i: &mut In<'_>) -> PResult<(Vec<Stmt>, Span)> {
    let open = expect(i, Punct::LBrace)?;
    let mut stmts = Vec::new();
    loop {
        let t = peek(i);
        if is_punct(t, Punct::RBrace) {
            i.next_token();
            return Ok((stmts, open.to(t.span)));
        }
        if t.kind == Tok::Eof {
            return cut(t.span.start, "'}' expected");
        }
        stmts.push(statement(i)?);
    }
}

/// One statement. A dispatcher with small frames (each kind in its own function), since
/// nested blocks and `if`s recurse through it.
fn statement(i: &mut In<'_>) -> PResult<Stmt> {
    deeper(i)?;
    let t = peek(i);
    let r = match &t.kind {
        Tok::P(Punct::LBrace) => block(i).map(|(stmts, _)| Stmt::Block(stmts)),
        Tok::P(Punct::Semi) => {
            i.next_token();
            Ok(Stmt::Empty)
        }
        Tok::Ident(w) => match w.as_str() {
            "if" => if_statement(i),
            "return" => return_statement(i),
            "foreach" => foreach_statement(i),
            "while" => while_statement(i),
            "for" => for_statement(i),
            "using" if is_punct(nth(i, 1), Punct::LParen) => using_statement(i),
            "switch" => switch_statement(i),
            "break" | "continue" => {
                i.next_token();
                expect(i, Punct::Semi)?;
                Ok(if w == "break" {
                    Stmt::Break(t.span)
                } else {
                    Stmt::Continue(t.span)
                })
            }
            _ if is_unsupported_statement(w) => unsupported_statement(t),
            _ => simple_statement(i),
        },
        _ => simple_statement(i),
    };
    i.state -= 1;
    r
}

fn is_unsupported_statement(w: &str) -> bool {
    matches!(
        w,
        "else"
            | "throw"
            | "try"
            | "do"
            | "goto"
            | "using"
            | "lock"
            | "yield"
            | "unsafe"
            | "fixed"
            | "checked"
            | "unchecked"
            | "case"
            | "default"
            | "catch"
            | "finally"
    )
}

#[cold]
fn unsupported_statement(t: &Token) -> PResult<Stmt> {
    match &t.kind {
        Tok::Ident(w) if w == "else" => cut(t.span.start, "'else' without 'if'"),
        Tok::Ident(w) => cut(
            t.span.start,
            format!("'{w}' statements are not supported in policy expressions"),
        ),
        _ => cut(t.span.start, "Statement expected"),
    }
}

fn if_statement(i: &mut In<'_>) -> PResult<Stmt> {
    i.next_token();
    expect(i, Punct::LParen)?;
    let cond = expr(i)?;
    expect(i, Punct::RParen)?;
    let then = Box::new(statement(i)?);
    let els = if is_word(peek(i), "else") {
        i.next_token();
        Some(Box::new(statement(i)?))
    } else {
        None
    };
    Ok(Stmt::If { cond, then, els })
}

fn return_statement(i: &mut In<'_>) -> PResult<Stmt> {
    let span = peek(i).span;
    i.next_token();
    let value = if is_punct(peek(i), Punct::Semi) {
        None
    } else {
        Some(expr(i)?)
    };
    expect(i, Punct::Semi)?;
    Ok(Stmt::Return(value, span))
}

fn foreach_statement(i: &mut In<'_>) -> PResult<Stmt> {
    i.next_token();
    expect(i, Punct::LParen)?;
    let ty = if is_word(peek(i), "var") {
        i.next_token();
        None
    } else {
        Some(cut_err(type_ref).parse_next(i)?)
    };
    let (name, name_span) = cut_err(identifier).parse_next(i)?;
    if !is_word(peek(i), "in") {
        return cut(peek(i).span.start, "'in' expected");
    }
    i.next_token();
    let iter = expr(i)?;
    expect(i, Punct::RParen)?;
    let body = Box::new(statement(i)?);
    Ok(Stmt::Foreach {
        ty,
        name,
        name_span,
        iter,
        body,
    })
}

fn while_statement(i: &mut In<'_>) -> PResult<Stmt> {
    i.next_token();
    expect(i, Punct::LParen)?;
    let cond = expr(i)?;
    expect(i, Punct::RParen)?;
    Ok(Stmt::While {
        cond,
        body: Box::new(statement(i)?),
    })
}

fn for_statement(i: &mut In<'_>) -> PResult<Stmt> {
    i.next_token();
    expect(i, Punct::LParen)?;
    let mut init = Vec::new();
    if !is_punct(peek(i), Punct::Semi) {
        init.push(simple_statement(i)?);
    } else {
        i.next_token();
    }
    let cond = if is_punct(peek(i), Punct::Semi) {
        None
    } else {
        Some(expr(i)?)
    };
    expect(i, Punct::Semi)?;
    let mut step = Vec::new();
    if !is_punct(peek(i), Punct::RParen) {
        step.push(expr(i)?);
        while eat(i, Punct::Comma) {
            step.push(expr(i)?);
        }
    }
    expect(i, Punct::RParen)?;
    Ok(Stmt::For {
        init,
        cond,
        step,
        body: Box::new(statement(i)?),
    })
}

/// `using (var x = …) body`: the variable is scoped to the body. Nothing here holds a resource
/// to release, so it is the block `{ var x = …; body }`.
fn using_statement(i: &mut In<'_>) -> PResult<Stmt> {
    i.next_token();
    expect(i, Punct::LParen)?;
    let start = peek(i).span;
    let head = if let Some(ty) = declaration_type(i)? {
        let (name, name_span) = cut_err(identifier).parse_next(i)?;
        expect(i, Punct::Assign)?;
        let value = expr(i)?;
        let span = start.to(value.span);
        Stmt::Decl {
            ty,
            vars: vec![(name, name_span, Some(value))],
            span,
        }
    } else {
        Stmt::Expr(expr(i)?)
    };
    expect(i, Punct::RParen)?;
    let body = statement(i)?;
    Ok(Stmt::Block(vec![head, body]))
}

/// `switch (e) { case a: case b: …; break; default: …; }`, read as `if`/`else if` over a
/// hidden local holding `e` (C# forbids falling through a non-empty section, so the sections
/// are independent). A section's closing `break` ends it; a `break` elsewhere in a section is
/// refused, since it would leave the switch and not an enclosing loop here.
fn switch_statement(i: &mut In<'_>) -> PResult<Stmt> {
    let kw = peek(i).span;
    i.next_token();
    expect(i, Punct::LParen)?;
    let subject = expr(i)?;
    expect(i, Punct::RParen)?;
    expect(i, Punct::LBrace)?;
    // Unique per nesting level, and not a name C# could spell.
    let hidden = format!("switch#{}", i.state);
    let mut sections: Vec<(Vec<Expr>, bool, Vec<Stmt>)> = Vec::new();
    loop {
        let t = peek(i);
        if is_punct(t, Punct::RBrace) {
            i.next_token();
            break;
        }
        let mut labels = Vec::new();
        let mut default = false;
        loop {
            let t = peek(i);
            if is_word(t, "case") {
                i.next_token();
                labels.push(expr(i)?);
                expect(i, Punct::Colon)?;
            } else if is_word(t, "default") && is_punct(nth(i, 1), Punct::Colon) {
                i.next_token();
                i.next_token();
                default = true;
            } else {
                break;
            }
        }
        if labels.is_empty() && !default {
            return cut(
                peek(i).span.start,
                "'case' or 'default' expected in the switch",
            );
        }
        let mut body = Vec::new();
        loop {
            let t = peek(i);
            if is_punct(t, Punct::RBrace) || is_word(t, "case") || is_word(t, "default") {
                break;
            }
            if t.kind == Tok::Eof {
                return cut(t.span.start, "'}' expected");
            }
            body.push(statement(i)?);
        }
        if matches!(body.last(), Some(Stmt::Break(_))) {
            body.pop();
        }
        if let Some(at) = stray_break(&body) {
            return cut(
                at,
                "'break' inside a switch section is supported only as the section's last statement",
            );
        }
        sections.push((labels, default, body));
    }
    let name = |span| node(ExprKind::Name(hidden.clone()), span);
    let mut chain: Option<Stmt> = sections
        .iter()
        .find(|s| s.1)
        .map(|s| Stmt::Block(s.2.clone()));
    for (labels, _, body) in sections.into_iter().rev().filter(|s| !s.0.is_empty()) {
        let cond = labels
            .into_iter()
            .map(|l| {
                let span = l.span;
                node(
                    ExprKind::Binary(BinOp::Eq, Box::new(name(span)), Box::new(l)),
                    span,
                )
            })
            .reduce(|a, b| {
                let span = a.span.to(b.span);
                node(ExprKind::Binary(BinOp::Or, Box::new(a), Box::new(b)), span)
            });
        let Some(cond) = cond else { continue };
        chain = Some(Stmt::If {
            cond,
            then: Box::new(Stmt::Block(body)),
            els: chain.map(Box::new),
        });
    }
    let decl = Stmt::Decl {
        ty: None,
        vars: vec![(hidden, kw, Some(subject))],
        span: kw,
    };
    Ok(Stmt::Block(vec![decl, chain.unwrap_or(Stmt::Empty)]))
}

/// Where a `break` that would leave a switch section (not a loop inside it) stands.
fn stray_break(stmts: &[Stmt]) -> Option<usize> {
    stmts.iter().find_map(|s| match s {
        Stmt::Break(span) => Some(span.start),
        Stmt::Block(inner) => stray_break(inner),
        Stmt::If { then, els, .. } => stray_break(std::slice::from_ref(then)).or_else(|| {
            els.as_deref()
                .and_then(|e| stray_break(std::slice::from_ref(e)))
        }),
        _ => None,
    })
}

/// A declaration or an expression statement, with its `;`.
fn simple_statement(i: &mut In<'_>) -> PResult<Stmt> {
    let start = peek(i).span;
    if let Some(ty) = declaration_type(i)? {
        let mut vars = Vec::new();
        loop {
            let (name, name_span) = cut_err(identifier).parse_next(i)?;
            let init = if eat(i, Punct::Assign) {
                Some(expr(i)?)
            } else {
                None
            };
            vars.push((name, name_span, init));
            if !eat(i, Punct::Comma) {
                break;
            }
        }
        let end = expect(i, Punct::Semi)?;
        return Ok(Stmt::Decl {
            ty,
            vars,
            span: start.to(end),
        });
    }
    let e = expr(i)?;
    let allowed = match &e.kind {
        ExprKind::Assign { .. }
        | ExprKind::IncDec { .. }
        | ExprKind::Call { .. }
        | ExprKind::New { .. } => true,
        ExprKind::NullChain(inner) => matches!(inner.kind, ExprKind::Call { .. }),
        _ => false,
    };
    if !allowed {
        return cut(
            e.span.start,
            "Only assignment, call, increment, decrement, and new object expressions can be used as a statement",
        );
    }
    expect(i, Punct::Semi)?;
    Ok(Stmt::Expr(e))
}

/// If a declaration starts here, consumes its type (`var` → `Some(None)`) and stops before the
/// first variable name; otherwise consumes nothing.
fn declaration_type(i: &mut In<'_>) -> PResult<Option<Option<TypeRef>>> {
    if is_word(peek(i), "var") && matches!(nth(i, 1).kind, Tok::Ident(_)) {
        i.next_token();
        return Ok(Some(None));
    }
    if !matches!(peek(i).kind, Tok::Ident(_)) {
        return Ok(None);
    }
    let cp = i.checkpoint();
    if let Ok(ty) = type_ref.parse_next(i) {
        let declares = matches!(&peek(i).kind, Tok::Ident(s) if !is_reserved(s))
            && matches!(
                nth(i, 1).kind,
                Tok::P(Punct::Assign | Punct::Semi | Punct::Comma)
            );
        if declares {
            return Ok(Some(Some(ty)));
        }
    }
    i.reset(&cp);
    Ok(None)
}

// ---- expressions ---------------------------------------------------------------------------

/// A full expression: a lambda, an assignment, or a conditional.
///
/// The functions on the recursion path (`expr`, `conditional`, `binary`, `unary`, `postfix`,
/// `primary`) avoid closures and keep rare, bulky work in helpers, to keep stack frames
/// small: nesting costs stack in every pass.
pub(crate) fn expr(i: &mut In<'_>) -> PResult<Expr> {
    deeper(i)?;
    let r = match lambda(i)? {
        Some(lambda) => Ok(lambda),
        None => assignment(i),
    };
    i.state -= 1;
    r
}

fn assignment(i: &mut In<'_>) -> PResult<Expr> {
    let lhs = conditional(i)?;
    let op = match peek(i).kind {
        Tok::P(Punct::Assign) => None,
        Tok::P(Punct::PlusEq) => Some(BinOp::Add),
        Tok::P(Punct::MinusEq) => Some(BinOp::Sub),
        Tok::P(Punct::StarEq) => Some(BinOp::Mul),
        Tok::P(Punct::SlashEq) => Some(BinOp::Div),
        Tok::P(Punct::PercentEq) => Some(BinOp::Rem),
        _ => return Ok(lhs),
    };
    i.next_token();
    let value = expr(i)?;
    let span = lhs.span.to(value.span);
    Ok(node(
        ExprKind::Assign {
            op,
            target: Box::new(lhs),
            value: Box::new(value),
        },
        span,
    ))
}

/// `x => body` or `(x, y) => body`; `None` (consuming nothing) when this isn't a lambda.
fn lambda(i: &mut In<'_>) -> PResult<Option<Expr>> {
    let start = peek(i).span;
    let mut params = Vec::new();
    match &peek(i).kind {
        Tok::Ident(s) if !is_reserved(s) && is_punct(nth(i, 1), Punct::Arrow) => {
            params.push((s.clone(), start));
        }
        Tok::P(Punct::LParen) => {
            // Scan `( [ident {, ident}] ) =>` without consuming.
            let mut n = 1;
            loop {
                match &nth(i, n).kind {
                    Tok::P(Punct::RParen) if params.is_empty() => break,
                    Tok::Ident(s) if !is_reserved(s) => {
                        params.push((s.clone(), nth(i, n).span));
                        n += 1;
                        match nth(i, n).kind {
                            Tok::P(Punct::Comma) => n += 1,
                            Tok::P(Punct::RParen) => break,
                            _ => return Ok(None),
                        }
                    }
                    _ => return Ok(None),
                }
            }
            if !is_punct(nth(i, n + 1), Punct::Arrow) {
                return Ok(None);
            }
            for _ in 0..n {
                i.next_token();
            }
        }
        _ => return Ok(None),
    }
    // The single parameter, or the closing `)`; `=>` follows (checked above).
    i.next_token();
    i.next_token();
    if is_punct(peek(i), Punct::LBrace) {
        return cut(
            peek(i).span.start,
            "Statement-bodied lambdas are not supported in policy expressions; use an expression body",
        );
    }
    let body = expr(i)?;
    let span = start.to(body.span);
    Ok(Some(node(
        ExprKind::Lambda {
            params,
            body: Box::new(body),
        },
        span,
    )))
}

fn conditional(i: &mut In<'_>) -> PResult<Expr> {
    let cond = binary(i, 1)?;
    if !is_punct(peek(i), Punct::Question) {
        return Ok(cond);
    }
    i.next_token();
    let then = expr(i)?;
    expect(i, Punct::Colon)?;
    let els = expr(i)?;
    let span = cond.span.to(els.span);
    Ok(node(
        ExprKind::Conditional(Box::new(cond), Box::new(then), Box::new(els)),
        span,
    ))
}

/// Binding power of a binary operator token, and whether it is right-associative.
fn binary_op(t: &Tok) -> Option<(BinOp, u8, bool)> {
    let Tok::P(p) = t else { return None };
    Some(match p {
        Punct::QQ => (BinOp::Coalesce, 1, true),
        Punct::OrOr => (BinOp::Or, 2, false),
        Punct::AndAnd => (BinOp::And, 3, false),
        Punct::Pipe => (BinOp::BitOr, 4, false),
        Punct::Caret => (BinOp::BitXor, 5, false),
        Punct::Amp => (BinOp::BitAnd, 6, false),
        Punct::EqEq => (BinOp::Eq, 7, false),
        Punct::NotEq => (BinOp::Ne, 7, false),
        Punct::Lt => (BinOp::Lt, 8, false),
        Punct::Gt => (BinOp::Gt, 8, false),
        Punct::Le => (BinOp::Le, 8, false),
        Punct::Ge => (BinOp::Ge, 8, false),
        Punct::Plus => (BinOp::Add, 9, false),
        Punct::Minus => (BinOp::Sub, 9, false),
        Punct::Star => (BinOp::Mul, 10, false),
        Punct::Slash => (BinOp::Div, 10, false),
        Punct::Percent => (BinOp::Rem, 10, false),
        _ => return None,
    })
}

const RELATIONAL: u8 = 8;

/// Precedence climbing over binary operators (and `is`/`as`) binding at least as tight as
/// `min`. Each operator of a chain counts as one level of nesting, as the tree it builds is
/// that deep.
fn binary(i: &mut In<'_>, min: u8) -> PResult<Expr> {
    let saved = i.state;
    let mut lhs = unary(i)?;
    loop {
        let t = peek(i);
        // `is` / `as` bind like relational operators.
        if (is_word(t, "is") || is_word(t, "as")) && RELATIONAL >= min {
            deeper(i)?;
            i.next_token();
            lhs = type_test(i, lhs, is_word(t, "is"))?;
            continue;
        }
        let Some((op, prec, right)) = binary_op(&t.kind) else {
            break;
        };
        if prec < min {
            break;
        }
        deeper(i)?;
        i.next_token();
        let rhs = binary(i, if right { prec } else { prec + 1 })?;
        let span = lhs.span.to(rhs.span);
        lhs = node(ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), span);
    }
    i.state = saved;
    Ok(lhs)
}

/// After `is` / `as`: a type (or `is null`).
fn type_test(i: &mut In<'_>, lhs: Expr, is: bool) -> PResult<Expr> {
    if is && is_word(peek(i), "null") {
        let null = peek(i).span;
        i.next_token();
        let span = lhs.span.to(null);
        let null = node(ExprKind::Null, null);
        return Ok(node(
            ExprKind::Binary(BinOp::Eq, Box::new(lhs), Box::new(null)),
            span,
        ));
    }
    let ty = cut_err(type_ref).parse_next(i)?;
    let span = lhs.span.to(ty.span);
    Ok(if is {
        node(ExprKind::Is(Box::new(lhs), ty), span)
    } else {
        node(ExprKind::As(Box::new(lhs), ty), span)
    })
}

fn unary(i: &mut In<'_>) -> PResult<Expr> {
    deeper(i)?;
    let t = peek(i);
    let op = match t.kind {
        Tok::P(Punct::Not) => Some(UnOp::Not),
        Tok::P(Punct::Minus) => Some(UnOp::Neg),
        Tok::P(Punct::Plus) => Some(UnOp::Plus),
        Tok::P(Punct::Tilde) => Some(UnOp::BitNot),
        _ => None,
    };
    let r = if let Some(op) = op {
        i.next_token();
        unary(i).map(|operand| {
            let span = t.span.to(operand.span);
            node(ExprKind::Unary(op, Box::new(operand)), span)
        })
    } else if matches!(t.kind, Tok::P(Punct::PlusPlus | Punct::MinusMinus)) {
        i.next_token();
        unary(i).map(|target| {
            let span = t.span.to(target.span);
            let increment = t.kind == Tok::P(Punct::PlusPlus);
            node(
                ExprKind::IncDec {
                    target: Box::new(target),
                    increment,
                    prefix: true,
                },
                span,
            )
        })
    } else {
        match cast(i)? {
            Some(cast) => Ok(cast),
            None => postfix(i),
        }
    };
    i.state -= 1;
    r
}

/// `(T)operand`, decided as C# does: a predefined or decorated type is always a cast; a plain
/// name only when the next token can start an operand (not `+`/`-`, which make `(a) - b`).
fn cast(i: &mut In<'_>) -> PResult<Option<Expr>> {
    if !is_punct(peek(i), Punct::LParen) {
        return Ok(None);
    }
    let cp = i.checkpoint();
    let open = peek(i).span;
    i.next_token();
    let Ok(ty) = type_ref.parse_next(i) else {
        i.reset(&cp);
        return Ok(None);
    };
    if !eat(i, Punct::RParen) {
        i.reset(&cp);
        return Ok(None);
    }
    let next = peek(i);
    let obvious_type = PREDEFINED_TYPES.contains(&ty.name.as_str())
        || !ty.args.is_empty()
        || ty.array > 0
        || ty.nullable;
    let starts_operand = match &next.kind {
        Tok::Ident(s) => s != "as" && s != "is",
        Tok::Int { .. } | Tok::Real(_) | Tok::Str(_) | Tok::Char(_) | Tok::Interp(_) => true,
        Tok::P(Punct::LParen | Punct::Not | Punct::Tilde | Punct::At) => true,
        Tok::P(Punct::Minus | Punct::Plus | Punct::PlusPlus | Punct::MinusMinus) => obvious_type,
        _ => false,
    };
    if !starts_operand {
        i.reset(&cp);
        return Ok(None);
    }
    let operand = unary(i)?;
    let span = open.to(operand.span);
    Ok(Some(node(ExprKind::Cast(ty, Box::new(operand)), span)))
}

/// A primary expression and its `.member`, `?.member`, `(args)`, `[index]`, `?[index]`,
/// `++`/`--` suffixes. Each suffix counts as one level of nesting.
fn postfix(i: &mut In<'_>) -> PResult<Expr> {
    let saved = i.state;
    let mut e = primary(i)?;
    let mut null_chain = false;
    loop {
        let t = peek(i);
        e = match t.kind {
            Tok::P(Punct::Dot | Punct::QDot) => {
                deeper(i)?;
                i.next_token();
                let null_cond = t.kind == Tok::P(Punct::QDot);
                null_chain |= null_cond;
                member(i, e, null_cond)?
            }
            Tok::P(Punct::LParen) => {
                deeper(i)?;
                let (args, close) = arguments(i)?;
                let span = e.span.to(close);
                node(
                    ExprKind::Call {
                        callee: Box::new(e),
                        args,
                    },
                    span,
                )
            }
            Tok::P(Punct::LBracket) => {
                deeper(i)?;
                i.next_token();
                index(i, e, false)?
            }
            Tok::P(Punct::Question) if is_punct(nth(i, 1), Punct::LBracket) => {
                deeper(i)?;
                i.next_token();
                i.next_token();
                null_chain = true;
                index(i, e, true)?
            }
            Tok::P(Punct::PlusPlus | Punct::MinusMinus) => {
                i.next_token();
                let span = e.span.to(t.span);
                let increment = t.kind == Tok::P(Punct::PlusPlus);
                e = node(
                    ExprKind::IncDec {
                        target: Box::new(e),
                        increment,
                        prefix: false,
                    },
                    span,
                );
                break;
            }
            _ => break,
        };
    }
    if null_chain {
        let span = e.span;
        e = node(ExprKind::NullChain(Box::new(e)), span);
    }
    i.state = saved;
    Ok(e)
}

/// After `.` / `?.`: the member name and any type arguments.
fn member(i: &mut In<'_>, target: Expr, null_cond: bool) -> PResult<Expr> {
    let (name, name_span) = cut_err(identifier).parse_next(i)?;
    let type_args = generic_args(i)?;
    let span = target.span.to(i.previous_token_end_span()).to(name_span);
    let kind = ExprKind::Member {
        target: Box::new(target),
        name,
        name_span,
        type_args,
        null_cond,
    };
    Ok(node(kind, span))
}

/// After `[` / `?[`: the index and `]`.
fn index(i: &mut In<'_>, target: Expr, null_cond: bool) -> PResult<Expr> {
    let index = expr(i)?;
    let close = expect(i, Punct::RBracket)?;
    let span = target.span.to(close);
    Ok(node(
        ExprKind::Index {
            target: Box::new(target),
            index: Box::new(index),
            null_cond,
        },
        span,
    ))
}

/// `<T, …>` after a member name, taken only when a call follows (`As<JObject>(…)`), which is
/// how C# tells a generic call from a less-than.
fn generic_args(i: &mut In<'_>) -> PResult<Vec<TypeRef>> {
    if !is_punct(peek(i), Punct::Lt) {
        return Ok(Vec::new());
    }
    let cp = i.checkpoint();
    let parsed: PResult<Vec<TypeRef>> = delimited(
        punct(Punct::Lt),
        separated(1.., type_ref, punct(Punct::Comma)),
        punct(Punct::Gt),
    )
    .parse_next(i);
    match parsed {
        Ok(args) if is_punct(peek(i), Punct::LParen) => Ok(args),
        Err(ErrMode::Cut(e)) => Err(ErrMode::Cut(e)),
        _ => {
            i.reset(&cp);
            Ok(Vec::new())
        }
    }
}

/// `( [name:] [out] expr, … )`; returns the arguments and the span of `)`.
fn arguments(i: &mut In<'_>) -> PResult<(Vec<Arg>, Span)> {
    expect(i, Punct::LParen)?;
    let mut args = Vec::new();
    if is_punct(peek(i), Punct::RParen) {
        let close = peek(i).span;
        i.next_token();
        return Ok((args, close));
    }
    loop {
        args.push(argument(i)?);
        let t = peek(i);
        match t.kind {
            Tok::P(Punct::Comma) => {
                i.next_token();
            }
            Tok::P(Punct::RParen) => {
                i.next_token();
                return Ok((args, t.span));
            }
            _ => return cut(t.span.start, "',' or ')' expected"),
        }
    }
}

fn argument(i: &mut In<'_>) -> PResult<Arg> {
    let start = peek(i).span;
    let mut name = None;
    if let Tok::Ident(s) = &peek(i).kind
        && !is_reserved(s)
        && is_punct(nth(i, 1), Punct::Colon)
    {
        name = Some((s.clone(), start));
        i.next_token();
        i.next_token();
    }
    let t = peek(i);
    if is_word(t, "ref") || (is_word(t, "in") && !is_punct(nth(i, 1), Punct::Comma)) {
        return cut(
            t.span.start,
            "'ref' and 'in' arguments are not supported in policy expressions",
        );
    }
    let kind = if is_word(t, "out") {
        i.next_token();
        let decl = if is_word(peek(i), "var") && matches!(nth(i, 1).kind, Tok::Ident(_)) {
            i.next_token();
            Some(None)
        } else {
            let cp = i.checkpoint();
            match type_ref.parse_next(i) {
                Ok(ty) if matches!(&peek(i).kind, Tok::Ident(s) if !is_reserved(s)) => {
                    Some(Some(ty))
                }
                _ => {
                    i.reset(&cp);
                    None
                }
            }
        };
        match decl {
            Some(ty) => {
                let (name, name_span) = cut_err(identifier).parse_next(i)?;
                ArgKind::OutDecl {
                    ty,
                    name,
                    name_span,
                }
            }
            None => ArgKind::Out(expr(i)?),
        }
    } else {
        ArgKind::Value(expr(i)?)
    };
    let end = i.previous_token_end_span();
    Ok(Arg {
        name,
        kind,
        span: start.to(end),
    })
}

fn primary(i: &mut In<'_>) -> PResult<Expr> {
    let t = peek(i);
    let kind = match &t.kind {
        Tok::Int { value, long } => ExprKind::Int(*value, *long),
        Tok::Real(v) => ExprKind::Real(*v),
        Tok::Str(s) => ExprKind::Str(s.clone()),
        Tok::Char(c) => ExprKind::Char(*c),
        Tok::Interp(parts) => ExprKind::Interp(interpolation(i, parts)?),
        Tok::P(Punct::LParen) => {
            i.next_token();
            let inner = expr(i)?;
            let close = expect(i, Punct::RParen)?;
            return Ok(node(inner.kind, t.span.to(close)));
        }
        Tok::Ident(w) => match w.as_str() {
            "true" => ExprKind::Bool(true),
            "false" => ExprKind::Bool(false),
            "null" => ExprKind::Null,
            "new" => return new_expr(i),
            w if is_reserved(w) || w == "nameof" => return bad_term(t),
            _ => ExprKind::Name(w.to_owned()),
        },
        _ => return bad_term(t),
    };
    i.next_token();
    Ok(node(kind, t.span))
}

/// The error for a token that can't start an operand.
#[cold]
fn bad_term(t: &Token) -> PResult<Expr> {
    let message = match &t.kind {
        Tok::Ident(w)
            if matches!(
                w.as_str(),
                "typeof"
                    | "default"
                    | "this"
                    | "base"
                    | "checked"
                    | "unchecked"
                    | "await"
                    | "sizeof"
                    | "stackalloc"
                    | "nameof"
                    | "delegate"
                    | "throw"
                    | "ref"
                    | "switch"
            ) =>
        {
            format!("'{w}' is not supported in policy expressions")
        }
        other => format!("Invalid expression term '{}'", describe(other)),
    };
    cut(t.span.start, message)
}

fn interpolation(i: &mut In<'_>, parts: &[InterpPart]) -> PResult<Vec<InterpPiece>> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    for part in parts {
        match part {
            InterpPart::Text(t) => text.push_str(t),
            InterpPart::Hole {
                tokens,
                align,
                format,
                ..
            } => {
                let mut sub = In {
                    input: TokenSlice::new(tokens),
                    state: i.state,
                };
                let e = expr(&mut sub)?;
                let rest = peek(&sub);
                if rest.kind != Tok::Eof {
                    return cut(
                        rest.span.start,
                        format!(
                            "Unexpected '{}' in an interpolation hole (a conditional must be in parentheses)",
                            describe(&rest.kind)
                        ),
                    );
                }
                pieces.push(InterpPiece {
                    text: std::mem::take(&mut text),
                    hole: Some(Hole {
                        expr: e,
                        align: *align,
                        format: format.clone(),
                    }),
                });
            }
        }
    }
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(InterpPiece { text, hole: None });
    }
    Ok(pieces)
}

fn new_expr(i: &mut In<'_>) -> PResult<Expr> {
    let start = peek(i).span;
    i.next_token();
    if is_punct(peek(i), Punct::LBracket) && is_punct(nth(i, 1), Punct::RBracket) {
        i.next_token();
        i.next_token();
        let (items, end) = array_items(i)?;
        return Ok(node(
            ExprKind::NewArray { elem: None, items },
            start.to(end),
        ));
    }
    if is_punct(peek(i), Punct::LBrace) {
        return anonymous_object(i, start);
    }
    let ty = cut_err(type_ref).parse_next(i)?;
    if ty.array == 0 && is_punct(peek(i), Punct::LBracket) {
        i.next_token();
        let size = expr(i)?;
        let close = expect(i, Punct::RBracket)?;
        return Ok(node(
            ExprKind::NewArraySized {
                elem: ty,
                size: Box::new(size),
            },
            start.to(close),
        ));
    }
    if ty.array > 0 {
        let (items, end) = array_items(i)?;
        let elem = TypeRef {
            array: ty.array - 1,
            ..ty
        };
        return Ok(node(
            ExprKind::NewArray {
                elem: Some(elem),
                items,
            },
            start.to(end),
        ));
    }
    let (args, mut end) = if is_punct(peek(i), Punct::LParen) {
        arguments(i)?
    } else if is_punct(peek(i), Punct::LBrace) {
        (Vec::new(), ty.span)
    } else {
        return cut(
            peek(i).span.start,
            "'(' or '{' expected after the type of 'new'",
        );
    };
    let init = if is_punct(peek(i), Punct::LBrace) {
        let (items, close) = initializer(i)?;
        end = close;
        Some(items)
    } else {
        None
    };
    Ok(node(ExprKind::New { ty, args, init }, start.to(end)))
}

/// `{ a = v, b, x.c }` after `new`: an anonymous object; a bare name or member access names
/// the member after itself.
fn anonymous_object(i: &mut In<'_>, start: Span) -> PResult<Expr> {
    expect(i, Punct::LBrace)?;
    let mut members = Vec::new();
    loop {
        let t = peek(i);
        if is_punct(t, Punct::RBrace) {
            i.next_token();
            return Ok(node(ExprKind::NewAnonymous(members), start.to(t.span)));
        }
        let named = matches!(&t.kind, Tok::Ident(_)) && is_punct(nth(i, 1), Punct::Assign);
        if named {
            let (name, span) = cut_err(identifier).parse_next(i)?;
            expect(i, Punct::Assign)?;
            members.push((name, span, expr(i)?));
        } else {
            let value = expr(i)?;
            let name = match &value.kind {
                ExprKind::Name(n) => n.clone(),
                ExprKind::Member { name, .. } => name.clone(),
                _ => {
                    return cut(
                        value.span.start,
                        "Invalid anonymous type member declarator: write name = value",
                    );
                }
            };
            members.push((name, value.span, value));
        }
        let t = peek(i);
        match t.kind {
            Tok::P(Punct::Comma) => {
                i.next_token();
            }
            Tok::P(Punct::RBrace) => {}
            _ => return cut(t.span.start, "',' or '}' expected"),
        }
    }
}

/// `{ ["k"] = v, Name = v, { a, b }, v, … }` after `new T(…)`.
fn initializer(i: &mut In<'_>) -> PResult<(Vec<InitItem>, Span)> {
    expect(i, Punct::LBrace)?;
    let mut items = Vec::new();
    loop {
        let t = peek(i);
        if is_punct(t, Punct::RBrace) {
            i.next_token();
            return Ok((items, t.span));
        }
        let item = if is_punct(t, Punct::LBracket) {
            i.next_token();
            let key = expr(i)?;
            expect(i, Punct::RBracket)?;
            expect(i, Punct::Assign)?;
            InitItem::Index(key, expr(i)?)
        } else if is_punct(t, Punct::LBrace) {
            i.next_token();
            let mut values = Vec::new();
            loop {
                values.push(expr(i)?);
                if !eat(i, Punct::Comma) {
                    break;
                }
            }
            let close = expect(i, Punct::RBrace)?;
            InitItem::Add(values, t.span.to(close))
        } else if let Tok::Ident(name) = &t.kind
            && !is_reserved(name)
            && is_punct(nth(i, 1), Punct::Assign)
        {
            i.next_token();
            i.next_token();
            InitItem::Member(name.clone(), t.span, expr(i)?)
        } else {
            let value = expr(i)?;
            let span = value.span;
            InitItem::Add(vec![value], span)
        };
        items.push(item);
        let t = peek(i);
        match t.kind {
            Tok::P(Punct::Comma) => {
                i.next_token();
            }
            Tok::P(Punct::RBrace) => {}
            _ => return cut(t.span.start, "',' or '}' expected in the initializer"),
        }
    }
}

fn array_items(i: &mut In<'_>) -> PResult<(Vec<Expr>, Span)> {
    expect(i, Punct::LBrace)?;
    let mut items = Vec::new();
    loop {
        let t = peek(i);
        if is_punct(t, Punct::RBrace) {
            i.next_token();
            return Ok((items, t.span));
        }
        items.push(expr(i)?);
        let t = peek(i);
        match t.kind {
            Tok::P(Punct::Comma) => {
                i.next_token();
            }
            Tok::P(Punct::RBrace) => {}
            _ => return cut(t.span.start, "',' or '}' expected"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::lex;
    use super::*;

    fn parse_src(src: &str) -> Result<Program, SyntaxError> {
        parse(&lex(src)?)
    }

    fn shape(src: &str) -> String {
        match parse_src(src).unwrap() {
            Program::Expr(e) => format!("{:?}", e.kind)
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect(),
            Program::Block(..) => "block".into(),
        }
    }

    #[test]
    fn precedence() {
        let s = shape("@(1 + 2 * 3 == 7 && !false)");
        assert!(s.starts_with("Binary(And,"), "{s}");
        let s = shape("@(a ?? b ?? c)");
        assert!(
            s.starts_with("Binary(Coalesce,Expr{kind:Name(\"a\")"),
            "{s}"
        );
    }

    #[test]
    fn casts_versus_parentheses() {
        assert!(shape("@((int)x)").starts_with("Cast("));
        assert!(shape("@((JArray)null)").starts_with("Cast("));
        assert!(shape("@((a) - b)").starts_with("Binary(Sub"));
        assert!(shape("@((int)-1)").starts_with("Cast("));
        assert!(shape("@((double)7 / 2)").starts_with("Binary(Div,Expr{kind:Cast"));
    }

    #[test]
    fn generics_lambdas_and_named_args() {
        let s = shape("@(x.As<JObject>(preserveContent: true))");
        assert!(s.contains("type_args:[TypeRef{name:\"JObject\""), "{s}");
        assert!(s.contains("name:Some((\"preserveContent\""), "{s}");
        assert!(shape("@(a < b)").starts_with("Binary(Lt"));
        assert!(shape("@(h.Any(x => x.Key == 1))").contains("Lambda"));
        assert!(shape("@(f((a, b) => a))").contains("Lambda"));
        assert!(shape("@(int.TryParse(s, out var n))").contains("OutDecl"));
    }

    #[test]
    fn statements() {
        assert_eq!(
            shape("@{ var x = 1; string s = \"a\", t; if (x > 1) { return 1; } else return 2; }"),
            "block"
        );
        assert!(parse_src("@{ x + 1; }").is_err());
        assert!(parse_src("@{ return 1 }").is_err());
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse_src("@(1 +)").unwrap_err();
        assert_eq!(e.pos, 5);
        let e = parse_src("@(a.b(1 2))").unwrap_err();
        assert_eq!(e.pos, 8);
        let e = parse_src("(1)").unwrap_err();
        assert_eq!(e.pos, 0);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let src = format!("@({}1{})", "(".repeat(5000), ")".repeat(5000));
        assert!(
            parse_src(&src)
                .unwrap_err()
                .message
                .contains("nested too deeply")
        );
        let src = format!("@(1{})", "+1".repeat(5000));
        assert!(
            parse_src(&src)
                .unwrap_err()
                .message
                .contains("nested too deeply")
        );
        let src = format!("@(a{})", ".b".repeat(5000));
        assert!(
            parse_src(&src)
                .unwrap_err()
                .message
                .contains("nested too deeply")
        );
        let src = format!("@({}1)", "!".repeat(5000));
        assert!(
            parse_src(&src)
                .unwrap_err()
                .message
                .contains("nested too deeply")
        );
    }
}
