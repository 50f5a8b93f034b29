//! Gatehouse policies: the policy XML compiler and built-in policies, and the
//! expression language they embed ([`expr`]).
//!
//! Everything here compiles once, when a configuration is loaded, into immutable values that
//! requests only walk. See [`expr`] for the public API of expressions: [`expr::compile`] turns
//! `@(…)` / `@{…}` text into an [`expr::Expr`], which [`expr::Expr::eval`] evaluates against a
//! per-request [`expr::Context`] within an [`expr::Budget`].

#![forbid(unsafe_code)]

pub mod answer;
pub mod compile;
pub mod exchange;
pub mod expr;
pub mod limits;
pub mod policies;
pub mod run;
pub mod text;
pub mod xml;

pub use answer::Answer;
pub use compile::{
    Diagnostic, Fragments, Known, Mode, NamedValues, NoFragments, NoNamedValues, PolicyDocument,
    Scope, Section, Severity, Unknown,
};
pub use exchange::Exchange;
pub use run::{Budget, Decision, Flow, Io, Pipeline, PolicyError};
