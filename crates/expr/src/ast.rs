//! Syntax tree produced by the parser: C# as written, with spans, before any name is resolved.
//! [`compile`](super::compile) turns it into the typed, resolved tree that is evaluated.

use super::lexer::Span;

#[derive(Clone, Debug)]
pub(crate) enum Program {
    /// `@( expr )`.
    Expr(Expr),
    /// `@{ statements }`.
    Block(Vec<Stmt>, Span),
}

#[derive(Clone, Debug)]
pub(crate) struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnOp {
    Neg,
    Plus,
    Not,
    BitNot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    And,
    Or,
    BitAnd,
    BitOr,
    BitXor,
    Coalesce,
}

impl BinOp {
    pub(crate) fn text(self) -> &'static str {
        match self {
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
            Self::Rem => "%",
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Gt => ">",
            Self::Le => "<=",
            Self::Ge => ">=",
            Self::And => "&&",
            Self::Or => "||",
            Self::BitAnd => "&",
            Self::BitOr => "|",
            Self::BitXor => "^",
            Self::Coalesce => "??",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum ExprKind {
    Null,
    Bool(bool),
    /// An integer literal and whether it had an `L` suffix.
    Int(u64, bool),
    Real(f64),
    Str(String),
    Char(char),
    Interp(Vec<InterpPiece>),
    /// A simple name: a local, `context`, a type or the first part of a namespace.
    Name(String),
    /// `target.name<type_args>`; `null_cond` for `?.`.
    Member {
        target: Box<Expr>,
        name: String,
        name_span: Span,
        type_args: Vec<TypeRef>,
        null_cond: bool,
    },
    /// `callee(args)`; the callee is a `Member` (or a `Name`, which is always an error).
    Call {
        callee: Box<Expr>,
        args: Vec<Arg>,
    },
    /// `target[index]` / `target?[index]`.
    Index {
        target: Box<Expr>,
        index: Box<Expr>,
        null_cond: bool,
    },
    /// Root of a postfix chain that contains `?.`: a null there makes the whole chain null.
    NullChain(Box<Expr>),
    Unary(UnOp, Box<Expr>),
    /// `++x`, `x--`…
    IncDec {
        target: Box<Expr>,
        increment: bool,
        prefix: bool,
    },
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Conditional(Box<Expr>, Box<Expr>, Box<Expr>),
    Cast(TypeRef, Box<Expr>),
    Is(Box<Expr>, TypeRef),
    As(Box<Expr>, TypeRef),
    Lambda {
        params: Vec<(String, Span)>,
        body: Box<Expr>,
    },
    /// `new T(args)`, `new T(args) { … }`, `new T { … }`.
    New {
        ty: TypeRef,
        args: Vec<Arg>,
        init: Option<Vec<InitItem>>,
    },
    /// `new[] { … }` / `new T[] { … }`.
    NewArray {
        elem: Option<TypeRef>,
        items: Vec<Expr>,
    },
    /// `new { a = 1, b }`: an anonymous object (held as a `JObject`).
    NewAnonymous(Vec<(String, Span, Expr)>),
    /// `new T[n]`: `n` default values.
    NewArraySized {
        elem: TypeRef,
        size: Box<Expr>,
    },
    /// `target = value`, `target += value`…
    Assign {
        op: Option<BinOp>,
        target: Box<Expr>,
        value: Box<Expr>,
    },
}

/// One entry of an object or collection initializer.
#[derive(Clone, Debug)]
pub(crate) enum InitItem {
    /// `[key] = value`.
    Index(Expr, Expr),
    /// `value` or `{ a, b }`: a call of the collection's `Add`.
    Add(Vec<Expr>, Span),
    /// `Name = value`.
    Member(String, Span, Expr),
}

#[derive(Clone, Debug)]
pub(crate) struct InterpPiece {
    pub text: String,
    /// The hole after `text`, if any.
    pub hole: Option<Hole>,
}

#[derive(Clone, Debug)]
pub(crate) struct Hole {
    pub expr: Expr,
    pub align: Option<i64>,
    pub format: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct Arg {
    /// `name:` of a named argument.
    pub name: Option<(String, Span)>,
    pub kind: ArgKind,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub(crate) enum ArgKind {
    Value(Expr),
    /// `out x` into an existing local.
    Out(Expr),
    /// `out var x` / `out int x`.
    OutDecl {
        ty: Option<TypeRef>,
        name: String,
        name_span: Span,
    },
}

/// A type as written: `int`, `JObject`, `Newtonsoft.Json.Linq.JObject`, `string[]`, `int?`,
/// `List<string>`.
#[derive(Clone, Debug)]
pub(crate) struct TypeRef {
    pub name: String,
    pub args: Vec<TypeRef>,
    pub array: u8,
    pub nullable: bool,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub(crate) enum Stmt {
    /// `var x = …;` / `string s = …, t = …;` (`ty` is `None` for `var`).
    Decl {
        ty: Option<TypeRef>,
        vars: Vec<(String, Span, Option<Expr>)>,
        span: Span,
    },
    Expr(Expr),
    If {
        cond: Expr,
        then: Box<Stmt>,
        els: Option<Box<Stmt>>,
    },
    Return(Option<Expr>, Span),
    Block(Vec<Stmt>),
    Foreach {
        ty: Option<TypeRef>,
        name: String,
        name_span: Span,
        iter: Expr,
        body: Box<Stmt>,
    },
    While {
        cond: Expr,
        body: Box<Stmt>,
    },
    For {
        init: Vec<Stmt>,
        cond: Option<Expr>,
        step: Vec<Expr>,
        body: Box<Stmt>,
    },
    Break(Span),
    Continue(Span),
    Empty,
}
