//! `Regex.IsMatch/Match/Matches/Replace/Escape/Split` and `Match`/`Group` members, on the
//! `regex` crate: linear time, so a pattern can't hang a request, but without .NET's
//! lookaround and backreferences (such patterns are refused). A literal pattern is compiled
//! once, when the policy is saved; a computed one on each call.

use std::sync::Arc;

use ::regex::{Regex, RegexBuilder};

use super::{CallTys, Extra, Member, P, Rt, Sig, SigErr, arg_str, enum_arg, len_value, sig};
use crate::error::{RtResult, RuntimeError};
use crate::types::{EnumTy, Ty};
use crate::value::{Obj, Value};

const OPTS: P = P::Enum(EnumTy::RegexOptions);

pub(crate) fn static_sig(m: Member, c: &CallTys<'_>) -> Sig {
    use Member as M;
    use P::Str;
    match m {
        M::IsMatch => sig(c, &[&[Str, Str], &[Str, Str, OPTS]], Ty::Bool),
        M::Match => sig(c, &[&[Str, Str], &[Str, Str, OPTS]], Ty::Match),
        M::Matches => sig(
            c,
            &[&[Str, Str], &[Str, Str, OPTS]],
            Ty::array_of(Ty::Match),
        ),
        M::Replace => sig(c, &[&[Str, Str, Str], &[Str, Str, Str, OPTS]], Ty::String),
        M::Split => sig(
            c,
            &[&[Str, Str], &[Str, Str, OPTS]],
            Ty::array_of(Ty::String),
        ),
        M::Escape => sig(c, &[&[Str]], Ty::String),
        _ => Err(SigErr::NotFound),
    }
}

pub(crate) fn prop_ty(ty: &Ty, m: Member) -> Option<Ty> {
    use Member as M;
    Some(match (ty, m) {
        (Ty::Match | Ty::Group, M::Success) => Ty::Bool,
        (Ty::Match | Ty::Group, M::Value) => Ty::String,
        (Ty::Match | Ty::Group, M::Index | M::Length) => Ty::Int,
        (Ty::Group, M::Name) => Ty::String,
        (Ty::Match, M::Groups) => Ty::Groups,
        (Ty::Groups, M::Count) => Ty::Int,
        _ => return None,
    })
}

/// Builds a regex with .NET `RegexOptions` (`IgnoreCase`, `Multiline`, `Singleline`,
/// `IgnorePatternWhitespace`; the others don't change matching here).
pub(crate) fn build(pattern: &str, options: i32) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .case_insensitive(options & 1 != 0)
        .multi_line(options & 2 != 0)
        .dot_matches_new_line(options & 16 != 0)
        .ignore_whitespace(options & 32 != 0)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 22)
        .build()
        .map_err(|e| {
            let detail = e.to_string();
            let last = detail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid pattern").trim();
            format!("Invalid regular expression pattern: {last} (lookaround and backreferences are not supported)")
        })
}

/// The options argument of a call (`RegexOptions` after the input, pattern[, replacement]).
pub(crate) fn options_of(args: &[Value]) -> i32 {
    args.iter()
        .find_map(|a| enum_arg(a).map(|(_, v)| v))
        .unwrap_or(0)
}

fn regex_for(args: &[Value], x: &Extra, rt: &mut Rt<'_>) -> RtResult<Arc<Regex>> {
    if let Some(re) = &x.regex {
        return Ok(re.clone());
    }
    let pattern = arg_str(args, 1, "pattern")?;
    rt.steps(pattern.len() * 8)?;
    build(pattern, options_of(args))
        .map(Arc::new)
        .map_err(RuntimeError::argument)
}

/// A match and its groups, with .NET's UTF-16 indices.
#[derive(Debug)]
pub(crate) struct RegexMatch {
    groups: Vec<GroupData>,
}

#[derive(Debug)]
struct GroupData {
    name: Arc<str>,
    /// (text, UTF-16 index, UTF-16 length), when the group took part in the match.
    found: Option<(Arc<str>, usize, usize)>,
}

impl RegexMatch {
    fn new(re: &Regex, input: &str, caps: Option<::regex::Captures<'_>>) -> Self {
        let groups = re
            .capture_names()
            .enumerate()
            .map(|(i, name)| GroupData {
                name: name.map_or_else(|| i.to_string().into(), Arc::from),
                found: caps.as_ref().and_then(|c| c.get(i)).map(|m| {
                    let index = super::string::utf16_at(input, m.start());
                    (
                        Arc::from(m.as_str()),
                        index,
                        super::string::utf16_len(m.as_str()),
                    )
                }),
            })
            .collect();
        Self { groups }
    }

    /// The text of group `i`, when it matched.
    pub(crate) fn value(&self, i: usize) -> Option<&str> {
        self.groups
            .get(i)
            .and_then(|g| g.found.as_ref())
            .map(|f| &*f.0)
    }
}

pub(crate) fn static_call(
    m: Member,
    args: &[Value],
    x: &Extra,
    rt: &mut Rt<'_>,
) -> RtResult<Value> {
    use Member as M;
    if m == M::Escape {
        return Ok(Value::String(
            ::regex::escape(arg_str(args, 0, "str")?).into(),
        ));
    }
    let input = arg_str(args, 0, "input")?;
    let re = regex_for(args, x, rt)?;
    rt.steps(input.len() / 64)?;
    match m {
        M::IsMatch => Ok(Value::Bool(re.is_match(input))),
        M::Match => Ok(Value::obj(Obj::Match(Arc::new(RegexMatch::new(
            &re,
            input,
            re.captures(input),
        ))))),
        M::Matches => {
            let mut out = Vec::new();
            for caps in re.captures_iter(input) {
                rt.steps(1)?;
                out.push(Value::obj(Obj::Match(Arc::new(RegexMatch::new(
                    &re,
                    input,
                    Some(caps),
                )))));
            }
            Ok(Value::Array(out.into()))
        }
        M::Split => {
            let mut out = Vec::new();
            for part in re.split(input) {
                rt.steps(1)?;
                out.push(Value::String(part.into()));
            }
            Ok(Value::Array(out.into()))
        }
        M::Replace => {
            let replacement = translate_replacement(arg_str(args, 2, "replacement")?);
            let refs = replacement.matches('$').count();
            let mut out = String::with_capacity(input.len());
            let mut last = 0;
            for caps in re.captures_iter(input) {
                let Some(whole) = caps.get(0) else { continue };
                rt.alloc(
                    whole.start() - last
                        + replacement.len()
                        + refs * whole.len().max(input.len() / 4),
                )?;
                out.push_str(&input[last..whole.start()]);
                caps.expand(&replacement, &mut out);
                last = whole.end();
            }
            out.push_str(&input[last..]);
            Ok(Value::String(out.into()))
        }
        _ => Err(RuntimeError::no_member("Regex", m.name())),
    }
}

/// .NET substitutions (`$1`, `${name}`, `$0`, `$&`, `$$`) in the `regex` crate's syntax.
fn translate_replacement(rep: &str) -> String {
    let mut out = String::with_capacity(rep.len());
    let mut chars = rep.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some('$') => {
                chars.next();
                out.push_str("$$");
            }
            Some('&') => {
                chars.next();
                out.push_str("${0}");
            }
            Some('{') => {
                chars.next();
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                out.push_str(&format!("${{{name}}}"));
            }
            Some(d) if d.is_ascii_digit() => {
                let mut num = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    num.push(d);
                    chars.next();
                }
                out.push_str(&format!("${{{num}}}"));
            }
            _ => out.push_str("$$"),
        }
    }
    out
}

pub(crate) fn get(o: &Obj, m: Member) -> RtResult<Value> {
    use Member as M;
    let (rm, i) = match o {
        Obj::Match(rm) => (rm, 0),
        Obj::Group(rm, i) => (rm, *i),
        Obj::Groups(rm) => {
            return match m {
                M::Count => Ok(len_value(rm.groups.len())),
                _ => Err(RuntimeError::no_member("GroupCollection", m.name())),
            };
        }
        _ => return Err(RuntimeError::no_member("Match", m.name())),
    };
    let g = rm.groups.get(i);
    let found = g.and_then(|g| g.found.as_ref());
    Ok(match m {
        M::Success => Value::Bool(found.is_some()),
        M::Value => Value::String(found.map_or_else(|| Arc::from(""), |f| f.0.clone())),
        M::Index => len_value(found.map_or(0, |f| f.1)),
        M::Length => len_value(found.map_or(0, |f| f.2)),
        M::Name => Value::String(g.map_or_else(|| Arc::from(""), |g| g.name.clone())),
        M::Groups if matches!(o, Obj::Match(_)) => Value::obj(Obj::Groups(rm.clone())),
        _ => {
            return Err(RuntimeError::no_member(
                if i == 0 { "Match" } else { "Group" },
                m.name(),
            ));
        }
    })
}

/// `match.Groups[i]` / `match.Groups["name"]`: a group that didn't match (or doesn't exist)
/// is an unsuccessful group, as in .NET.
pub(crate) fn group(rm: &Arc<RegexMatch>, idx: &Value) -> RtResult<Value> {
    let i = match idx {
        Value::String(name) => rm.groups.iter().position(|g| *g.name == **name),
        other => other.number().and_then(|n| match n {
            crate::value::Num::Int(i) | crate::value::Num::Long(i) => usize::try_from(i).ok(),
            crate::value::Num::Double(_) => None,
        }),
    };
    Ok(Value::obj(Obj::Group(rm.clone(), i.unwrap_or(usize::MAX))))
}

/// The groups of a match, for LINQ and `foreach`.
pub(crate) fn groups(rm: &Arc<RegexMatch>) -> Vec<Value> {
    (0..rm.groups.len())
        .map(|i| Value::obj(Obj::Group(rm.clone(), i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_syntax() {
        assert_eq!(
            translate_replacement("$1-$&-${n}-$$-$x"),
            "${1}-${0}-${n}-$$-$$x"
        );
    }

    #[test]
    fn lookaround_is_refused() {
        assert!(build("a(?=b)", 0).unwrap_err().contains("not supported"));
        assert!(build("(?<m>\\d+)", 1).is_ok());
    }
}
