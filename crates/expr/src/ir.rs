//! The compiled form of an expression: a tree whose members, methods, overloads, types and
//! variable slots were all resolved when the policy was saved. Evaluation walks it without
//! looking up any name (only variable, header and JSON property keys are strings here).

use super::ast::{BinOp, UnOp};
use super::builtins::convert::Mode;
use super::builtins::{Extra, Member};
use super::types::{Class, Ty};
use super::value::Value;

#[derive(Debug)]
pub(crate) enum Node {
    Const(Value),
    Local(u32),
    /// `context`.
    Context,
    Prop(Box<Node>, Member),
    StaticProp(Class, Member),
    Call(Box<Call>),
    StaticCall(Box<StaticCall>),
    Index(Box<Node>, Box<Node>),
    Linq(Box<Linq>),
    Unary(UnOp, Box<Node>),
    /// Arithmetic, comparison and bitwise operators (not `&&`, `||`, `??`), except string `+`.
    Binary(BinOp, Box<Node>, Box<Node>),
    /// A chain of string `+`: each piece's `ToString()` (null: empty), joined in one string.
    Concat(Box<[Node]>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Coalesce(Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Convert(Box<Node>, Ty, Mode),
    Interp(Box<[Piece]>),
    /// Root of a `?.` chain: a null met by a [`Node::NullGuard`] inside makes it null.
    NullChain(Box<Node>),
    /// The receiver of `?.` / `?[`.
    NullGuard(Box<Node>),
    Assign(Box<Assign>),
    /// `Add` / `Remove` on a JSON token held in a local (changed in place).
    Mutate(Box<Mutate>),
    New(Class, Box<[Node]>),
    NewArray(Box<[Node]>),
    /// `new T[n]`: `n` copies of the value (`byte[]` when `bytes`).
    NewArraySized {
        size: Box<Node>,
        fill: Value,
        bytes: bool,
    },
    /// `new JObject { … }`, `new Dictionary<string, T> { … }`: an object made, then filled.
    Init(Box<Init>),
}

#[derive(Debug)]
pub(crate) struct Init {
    pub base: Node,
    pub ops: Box<[InitOp]>,
}

#[derive(Debug)]
pub(crate) enum InitOp {
    /// `[key] = value` / `{ key, value }`.
    Set(Node, Node),
    /// `value` (an array item, or a `JProperty` of an object).
    Add(Node),
    /// `Name = value` (a `UriBuilder` part).
    Member(Member, Node),
}

#[derive(Debug)]
pub(crate) struct Call {
    pub recv: Node,
    pub member: Member,
    pub args: Box<[Node]>,
    pub extra: Extra,
    /// The local receiving the `out` argument.
    pub out: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct StaticCall {
    pub class: Class,
    pub member: Member,
    pub args: Box<[Node]>,
    pub extra: Extra,
    pub out: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct Linq {
    pub recv: Node,
    pub op: Member,
    /// The lambda's parameter slot and body.
    pub lambda: Option<(u32, Node)>,
    /// The non-lambda argument (`Contains(x)`, `Take(n)`…).
    pub arg: Option<Node>,
}

#[derive(Debug)]
pub(crate) struct Piece {
    pub text: Box<str>,
    pub hole: Option<Hole>,
}

#[derive(Debug)]
pub(crate) struct Hole {
    pub node: Node,
    pub align: Option<i64>,
    pub format: Option<Box<str>>,
}

/// `local = v`, `local op= v`, `local[k]… = v`, `local++`.
#[derive(Debug)]
pub(crate) struct Assign {
    pub slot: u32,
    /// Index keys below the local (assignment into a JSON token).
    pub path: Box<[Node]>,
    pub op: Option<BinOp>,
    pub value: Node,
    /// Conversion back to the local's declared type.
    pub conv: Option<Ty>,
    /// `x++` / `x--`: the expression's value is the old one.
    pub postfix: bool,
}

#[derive(Debug)]
pub(crate) struct Mutate {
    pub slot: u32,
    pub path: Box<[Node]>,
    pub member: Member,
    pub args: Box<[Node]>,
}

#[derive(Debug)]
pub(crate) enum Stmt {
    Expr(Node),
    Let(u32, Node),
    If(Node, Box<[Stmt]>, Box<[Stmt]>),
    Return(Node),
    Foreach {
        slot: u32,
        conv: Option<Ty>,
        iter: Node,
        body: Box<[Stmt]>,
    },
    /// `while` and `for`.
    Loop {
        cond: Option<Node>,
        step: Box<[Node]>,
        body: Box<[Stmt]>,
    },
    Break,
    Continue,
}

#[derive(Debug)]
pub(crate) enum Body {
    Expr(Node),
    Block(Box<[Stmt]>),
}
