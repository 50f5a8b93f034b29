//! Policy expressions: the C# subset Azure API Management policies embed as `@(expression)`
//! and `@{ statements; return value; }`.
//!
//! An expression is compiled once, when its policy is saved or a configuration is loaded
//! ([`compile`]), into an immutable [`Expr`] that is `Send + Sync` and cheap to evaluate on
//! every request ([`Expr::eval`]) against a [`Context`] the gateway implements.
//!
//! ```
//! use gatehouse_expr::{self as expr, Budget, Context, Expr};
//!
//! // When the policy is loaded:
//! let e: Expr = expr::compile(r#"@(context.Request.Headers.GetValueOrDefault("X-Id", "none").ToUpper())"#)?;
//!
//! // On each request, with the gateway's per-request context:
//! fn apply(e: &Expr, ctx: &dyn Context) -> Result<String, expr::RuntimeError> {
//!     Ok(e.eval(ctx, &mut Budget::default())?.to_policy_string())
//! }
//! # let _ = apply;
//! # Ok::<(), expr::CompileError>(())
//! ```
//!
//! What compiling checks, so a policy that would fail is refused when it is saved (with a
//! [`CompileError`] carrying the offset, line and column):
//! - syntax (C# 7 expressions and statements: literals including verbatim `@"…"` and
//!   interpolated `$"…{x}…"` strings, operators, `?.`, `??`, casts, `is`/`as`, lambdas in
//!   LINQ calls, `var`/typed declarations, `if`/`else`, `foreach`, `for`, `while`, `return`);
//! - names and members: every member of `context`, of strings, numbers, dates, JSON tokens,
//!   JWTs and regex matches is resolved against the static type C# would know, with argument
//!   counts and types checked; where C# itself only knows `object` (variables, untyped JSON)
//!   the check happens at run time instead;
//! - the allow-list: only the .NET types Azure allows in policies (`string`, `Math`, `Convert`,
//!   `Encoding`, `Regex`, `DateTime`, `DateTimeOffset`, `TimeSpan`, `Guid`, `Uri`, `UriBuilder`,
//!   `Random`, `WebUtility`, `HMACSHA256` and the other hashes…) and Newtonsoft's
//!   `JObject`/`JArray`/`JToken`/`JsonConvert` may be named; `System.IO.File` and the like are
//!   refused (the table in `docs/expressions.md` lists each member);
//! - literal regex patterns (compiled then: on the linear-time `regex` crate, or, for .NET's
//!   lookaround and backreferences, on the backtracking `fancy-regex` with a backtrack limit).
//!
//! What evaluating guarantees: it never panics, and it is bounded by a [`Budget`] of steps
//! (tree nodes, loop iterations, sequence elements, and bytes produced), so no expression can
//! hang a request or exhaust memory. Nesting is bounded too (about 60 levels of parentheses,
//! or chains of about 120 operators or member accesses; values built by an expression nest at
//! most 128 deep), so neither compiling nor evaluating can exhaust the stack: the deepest
//! accepted expression needs well under 1 MiB of stack in a release build. A failure is a [`RuntimeError`] with the `reason` and
//! `message` that `context.LastError` shows in `on-error`.
//!
//! Semantics follow C#: `int` is 32-bit and wraps, integer division truncates and throws on
//! zero, `"a" + 1 + 2` is `"a12"` while `1 + 2 + "a"` is `"3a"`, string `==` is ordinal,
//! string indices count UTF-16 code units, and [`Value::to_policy_string`] prints values the
//! way `ToString()` does (`True`, `5` for `5.0`). Known deviations: culture-sensitive
//! comparisons and formats use the invariant culture; local time is UTC; `JObject.ToString()`
//! uses `\n` line breaks (as Newtonsoft does on Linux); `==` between a `JToken` and a
//! primitive compares values (C# would compare references); header values appear joined with
//! `,` (also when enumerating `h.Value`).
//!
//! This crate imports nothing from the rest of the workspace; `gatehouse-policy` re-exports it
//! as `gatehouse_policy::expr`.

#![forbid(unsafe_code)]

mod ast;
pub(crate) mod builtins;
mod compile;
mod context;
mod datetime;
mod error;
mod eval;
mod ir;
mod json;
mod lexer;
pub mod limits;
mod ops;
mod parse;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
mod types;
mod value;

use std::fmt;

pub use builtins::certificate::ClientCertificate;
pub use builtins::jwt::{Jwt, parse as parse_jwt};
pub use context::{Context, Entity, Field, Message};
pub use datetime::{DateTime, DateTimeKind, TimeSpan};
pub use error::{CompileError, EVALUATION_FAILURE, ErrorKind, RuntimeError};
pub use eval::Budget;
pub use json::{Json, JsonError, JsonObject};
pub use value::{Handle, HttpResponse, Value};

/// A compiled expression: immutable, `Send + Sync`, evaluated any number of times.
pub struct Expr {
    source: Box<str>,
    body: ir::Body,
    locals: u32,
    block: bool,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expr")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Expr {
    /// Evaluates against one request. Every step is charged to `budget`, which may be shared
    /// by all expressions of a request.
    pub fn eval(&self, ctx: &dyn Context, budget: &mut Budget) -> Result<Value, RuntimeError> {
        eval::run(&self.body, self.locals, ctx, budget)
    }

    /// The text it was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True for `@{ … }` (statements), false for `@( … )`.
    pub fn is_block(&self) -> bool {
        self.block
    }
}

/// Whether an attribute value or element text is an expression (`@(…)` or `@{…}`), as
/// opposed to a literal.
pub fn is_expression(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with("@(") || t.starts_with("@{")
}

/// Compiles `src`, the whole `@(…)` or `@{…}` text.
pub fn compile(src: &str) -> Result<Expr, CompileError> {
    let syntax = |e: lexer::SyntaxError| {
        let message = if e.message.is_empty() {
            "Syntax error".to_owned()
        } else {
            e.message.into_owned()
        };
        CompileError::at(src, e.pos, message)
    };
    let tokens = lexer::lex(src).map_err(syntax)?;
    let program = parse::parse(&tokens).map_err(syntax)?;
    let block = matches!(program, ast::Program::Block(..));
    let (body, locals, _ty) = compile::compile(src, &program)?;
    Ok(Expr {
        source: src.into(),
        body,
        locals,
        block,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod library_tests;
