//! Policy values: an attribute or element text that is either literal text or one expression
//! (`@(...)` or `@{...}`), after `{{named value}}` substitution. Expressions are compiled when
//! the policy is loaded; a request only evaluates them.

use std::borrow::Cow;
use std::sync::Arc;

use crate::exchange::Exchange;
use crate::expr::{self, Expr, Value};
use crate::run::{Budget, PolicyError};

#[derive(Debug, Clone)]
pub enum PolicyText {
    Literal(Arc<str>),
    Expr(Arc<Expr>),
}

impl PolicyText {
    pub fn literal(text: &str) -> Self {
        Self::Literal(text.into())
    }

    pub fn is_expr(&self) -> bool {
        matches!(self, Self::Expr(_))
    }

    /// The literal text, when there is no expression.
    pub fn as_literal(&self) -> Option<&str> {
        match self {
            Self::Literal(s) => Some(s),
            Self::Expr(_) => None,
        }
    }

    /// Evaluates to a value (a literal is a string).
    pub fn value(&self, ex: &Exchange, budget: &mut Budget) -> Result<Value, PolicyError> {
        match self {
            Self::Literal(s) => Ok(Value::String(s.clone())),
            Self::Expr(e) => budget.eval(e, ex),
        }
    }

    /// Evaluates to text, as C# `ToString()` would print the value.
    pub fn eval<'a>(
        &'a self,
        ex: &Exchange,
        budget: &mut Budget,
    ) -> Result<Cow<'a, str>, PolicyError> {
        match self {
            Self::Literal(s) => Ok(Cow::Borrowed(s)),
            Self::Expr(e) => Ok(Cow::Owned(budget.eval(e, ex)?.to_policy_string())),
        }
    }

    /// Evaluates a condition: `true`/`false`, or text that reads as one.
    pub fn eval_bool(&self, ex: &Exchange, budget: &mut Budget) -> Result<bool, PolicyError> {
        match self.value(ex, budget)? {
            Value::Bool(b) => Ok(b),
            other => {
                let text = other.to_policy_string();
                match text.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(PolicyError::runtime(
                        "ExpressionValueEvaluationFailure",
                        format!("expected true or false, got '{text}'"),
                    )),
                }
            }
        }
    }

    /// Evaluates a whole number.
    pub fn eval_u64(&self, ex: &Exchange, budget: &mut Budget) -> Result<u64, PolicyError> {
        let text = self.eval(ex, budget)?;
        text.trim().parse().map_err(|_| {
            PolicyError::runtime(
                "ExpressionValueEvaluationFailure",
                format!("expected a whole number, got '{text}'"),
            )
        })
    }

    /// The expression source, for checks that look at what an expression reads.
    pub fn source(&self) -> Option<&str> {
        match self {
            Self::Literal(_) => None,
            Self::Expr(e) => Some(e.source()),
        }
    }
}

/// Whether a value is an expression (after trimming): `@(...)` or `@{...}`.
pub fn looks_like_expr(text: &str) -> bool {
    let t = text.trim();
    (t.starts_with("@(") && t.ends_with(')')) || (t.starts_with("@{") && t.ends_with('}'))
}

pub(crate) fn compile(text: &str) -> Result<PolicyText, expr::CompileError> {
    if looks_like_expr(text) {
        Ok(PolicyText::Expr(Arc::new(expr::compile(text.trim())?)))
    } else {
        Ok(PolicyText::Literal(text.into()))
    }
}
