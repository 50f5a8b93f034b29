//! Gatehouse policies: the policy XML compiler and built-in policies, and the
//! expression language they embed ([`expr`], the `gatehouse-expr` crate).
//!
//! Everything here compiles once, when a configuration is loaded, into immutable values that
//! requests only walk. See [`expr`] for the public API of expressions: [`expr::compile`] turns
//! `@(…)` / `@{…}` text into an [`expr::Expr`], which [`expr::Expr::eval`] evaluates against a
//! per-request [`expr::Context`] within an [`expr::Budget`].

#![forbid(unsafe_code)]

pub mod answer;
pub mod compile;
pub mod exchange;
pub mod limits;
pub mod parameters;
pub mod policies;
pub mod run;
pub mod schema;
pub mod text;
pub mod xml;

/// The expression language, its own crate (`gatehouse-expr`), under the name policies and the
/// gateway use for it.
pub use gatehouse_expr as expr;

pub use answer::Answer;
pub use compile::{
    Diagnostic, Fragments, Known, Mode, NamedValues, NoFragments, NoNamedValues, PolicyDocument,
    Scope, Section, Severity, Unknown,
};
pub use exchange::Exchange;
pub use run::{Budget, Decision, Flow, Io, Pipeline, PolicyError};
