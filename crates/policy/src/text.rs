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

/// For `gatehouse policy check`, where named values are unknown: the expression with each
/// `{{name}}` that stands in code (not inside a string or character literal, where it is just
/// text) replaced by `((object)null)`, a value of any type, so the rest of the expression can
/// be checked. `None` when no reference stands in code.
pub(crate) fn with_stand_ins(src: &str) -> Option<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        Code,
        Str,
        Verbatim,
        Char,
        /// An interpolated string (`$"…"`, verbatim when `true`).
        Interp(bool),
    }
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 16);
    let mut state = St::Code;
    // Interpolated strings a hole is in, and the braces opened in the hole so far.
    let mut holes: Vec<(bool, usize)> = Vec::new();
    let mut replaced = false;
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        let c = b[i];
        match state {
            St::Code => match c {
                b'{' if b.get(i + 1) == Some(&b'{') => {
                    let rest = &src[i + 2..];
                    let name_end = rest.find("}}");
                    let valid = name_end.is_some_and(|end| {
                        let name = rest[..end].trim();
                        !name.is_empty()
                            && name
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    });
                    match name_end {
                        Some(end) if valid => {
                            out.push_str(&src[last..i]);
                            out.push_str("((object)null)");
                            i += 2 + end + 2;
                            last = i;
                            replaced = true;
                            continue;
                        }
                        _ => {
                            if let Some(h) = holes.last_mut() {
                                h.1 += 1;
                            }
                        }
                    }
                }
                b'{' => {
                    if let Some(h) = holes.last_mut() {
                        h.1 += 1;
                    }
                }
                b'}' => match holes.last_mut() {
                    Some((verbatim, 0)) => {
                        state = St::Interp(*verbatim);
                        holes.pop();
                    }
                    Some(h) => h.1 -= 1,
                    None => {}
                },
                b'"' => state = St::Str,
                b'\'' => state = St::Char,
                b'@' if b.get(i + 1) == Some(&b'"') => {
                    state = St::Verbatim;
                    i += 1;
                }
                b'$' | b'@' => {
                    let two = (b.get(i + 1), b.get(i + 2));
                    match two {
                        (Some(b'"'), _) => {
                            state = St::Interp(false);
                            i += 1;
                        }
                        (Some(b'@' | b'$'), Some(b'"')) => {
                            state = St::Interp(true);
                            i += 2;
                        }
                        _ => {}
                    }
                }
                b'/' if b.get(i + 1) == Some(&b'/') => {
                    i = src[i..].find('\n').map_or(b.len(), |n| i + n);
                    continue;
                }
                b'/' if b.get(i + 1) == Some(&b'*') => {
                    i = src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
                    continue;
                }
                _ => {}
            },
            St::Str | St::Char => match c {
                b'\\' => i += 1,
                b'"' if state == St::Str => state = St::Code,
                b'\'' if state == St::Char => state = St::Code,
                _ => {}
            },
            St::Verbatim => {
                if c == b'"' {
                    if b.get(i + 1) == Some(&b'"') {
                        i += 1;
                    } else {
                        state = St::Code;
                    }
                }
            }
            St::Interp(verbatim) => match c {
                b'{' | b'}' if b.get(i + 1) == Some(&c) => i += 1,
                b'{' => {
                    holes.push((verbatim, 0));
                    state = St::Code;
                }
                b'\\' if !verbatim => i += 1,
                b'"' if verbatim && b.get(i + 1) == Some(&b'"') => i += 1,
                b'"' => state = St::Code,
                _ => {}
            },
        }
        i += 1;
    }
    if !replaced {
        return None;
    }
    out.push_str(&src[last.min(src.len())..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::with_stand_ins;

    #[test]
    fn named_values_in_code_get_a_stand_in_and_those_in_strings_stay() {
        assert_eq!(
            with_stand_ins(r#"@(Encoding.UTF8.GetBytes({{secret}}))"#).as_deref(),
            Some("@(Encoding.UTF8.GetBytes(((object)null)))")
        );
        assert_eq!(
            with_stand_ins(r#"@(DateTime.UtcNow.AddSeconds({{ttl}}) + "{{x}}")"#).as_deref(),
            Some(r#"@(DateTime.UtcNow.AddSeconds(((object)null)) + "{{x}}")"#)
        );
        assert_eq!(with_stand_ins(r#"@("a{{x}}b" + @"c{{y}}" + 'd')"#), None);
        assert_eq!(with_stand_ins(r#"@($"v={{x}} {a}")"#), None);
        assert_eq!(
            with_stand_ins(r#"@($"v={Math.Max({{n}}, 1)} {{lit}}")"#).as_deref(),
            Some(r#"@($"v={Math.Max(((object)null), 1)} {{lit}}")"#)
        );
        assert_eq!(
            with_stand_ins("@{ // {{c}}\n var a = {{v}}; /* {{d}} */ return a; }").as_deref(),
            Some("@{ // {{c}}\n var a = ((object)null); /* {{d}} */ return a; }")
        );
        assert_eq!(with_stand_ins(r#"@{ return "\"{{x}}"; }"#), None);
        assert_eq!(with_stand_ins("@(x { y })"), None);
    }
}
