//! Attributes that Azure lets be either a literal or a policy expression, but whose value must
//! have a shape (a boolean, a status code, a number of seconds, one of a few words). A literal is
//! checked once, when the policy is compiled, with a positioned diagnostic; an expression is
//! evaluated and checked on each request, and a value of the wrong shape is a runtime error.

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Budget, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone)]
enum Source<T> {
    Fixed(T),
    Expr(PolicyText),
}

/// A typed attribute value: fixed when the policy was compiled, or computed per request.
#[derive(Debug, Clone)]
pub(crate) struct Param<T> {
    source: Source<T>,
    name: &'static str,
    /// What the value must be, for messages ("true or false").
    what: &'static str,
    parse: fn(&str) -> Option<T>,
}

impl<T: Clone> Param<T> {
    /// A value that is not read from the document (an attribute's default).
    pub(crate) fn fixed(
        value: T,
        name: &'static str,
        what: &'static str,
        parse: fn(&str) -> Option<T>,
    ) -> Self {
        Self {
            source: Source::Fixed(value),
            name,
            what,
            parse,
        }
    }

    /// Reads attribute `name`; `default` when it is absent. A literal of the wrong shape is
    /// reported (and the default used, so compiling goes on to find other problems).
    pub(crate) fn compile(
        cx: &mut Cx<'_>,
        el: &Element,
        name: &'static str,
        what: &'static str,
        parse: fn(&str) -> Option<T>,
        default: T,
    ) -> Self {
        let mut p = Self::fixed(default, name, what, parse);
        let Some(a) = el.attr(name) else {
            return p;
        };
        match cx.text(&a.value, a.pos, a.value_offset) {
            Some(t @ PolicyText::Expr(_)) => p.source = Source::Expr(t),
            Some(PolicyText::Literal(s)) => match parse(s.trim()) {
                Some(v) => p.source = Source::Fixed(v),
                None => cx.error(a.pos, format!("'{name}' must be {what}, not '{s}'")),
            },
            None => {}
        }
        p
    }

    /// The value for this request.
    pub(crate) fn get(&self, ex: &Exchange, budget: &mut Budget) -> Result<T, PolicyError> {
        match &self.source {
            Source::Fixed(v) => Ok(v.clone()),
            Source::Expr(e) => {
                let text = e.eval(ex, budget)?;
                (self.parse)(text.trim()).ok_or_else(|| {
                    PolicyError::runtime(
                        "ExpressionValueEvaluationFailure",
                        format!("'{}' must be {}, not '{text}'", self.name, self.what),
                    )
                })
            }
        }
    }

    /// The value when it is fixed.
    pub(crate) fn as_fixed(&self) -> Option<&T> {
        match &self.source {
            Source::Fixed(v) => Some(v),
            Source::Expr(_) => None,
        }
    }

    /// The expression, for checks that look at what a step reads.
    pub(crate) fn text(&self) -> Option<&PolicyText> {
        match &self.source {
            Source::Fixed(_) => None,
            Source::Expr(t) => Some(t),
        }
    }
}

pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

pub(crate) const BOOL: &str = "true or false";

/// A boolean attribute (`true`/`false`, any case, or an expression).
pub(crate) fn bool_param(
    cx: &mut Cx<'_>,
    el: &Element,
    name: &'static str,
    default: bool,
) -> Param<bool> {
    Param::compile(cx, el, name, BOOL, parse_bool, default)
}

pub(crate) fn parse_status(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|c| (100..=599).contains(c))
}

pub(crate) fn parse_seconds(s: &str) -> Option<u64> {
    s.parse::<u64>().ok()
}
