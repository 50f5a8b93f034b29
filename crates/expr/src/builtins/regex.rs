//! `Regex.IsMatch/Match/Matches/Replace/Escape/Split` and `Match`/`Group` members. A pattern
//! runs on the linear-time `regex` crate when it can; .NET's lookaround, backreferences and
//! the like run on `fancy-regex`, a backtracking engine, whose searches are bounded by a
//! backtrack limit and charged their worst case to the budget, so no pattern can hang a
//! request. A literal pattern is compiled once, when the policy is saved; a computed one on
//! each call.

use std::sync::{Arc, OnceLock};

use ::regex::{Regex, RegexBuilder};

use crate::error::ErrorKind;

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

/// How many times the backtracking engine may backtrack in one search, by tier. A search
/// starts at the tier its input length suggests and moves up one when it runs out; a search
/// that needs more than the last tier fails with a run-time error (catastrophic backtracking
/// on a hostile input). In a release build 10 000 backtracks take about 0.3 ms at worst.
const TIERS: [usize; 4] = [10_000, 40_000, 160_000, 640_000];

/// Backtracks per budget step: each search is charged its tier's worst case up front, so the
/// [`Budget`](crate::Budget) bounds the time backtracking can take (the default budget allows
/// two hundred searches at the first tier, or three at the last).
const BACKTRACKS_PER_STEP: usize = 20;

/// A compiled pattern: on the linear-time `regex` crate when it can take the pattern, else
/// (lookaround, backreferences, atomic groups…) on `fancy-regex`, one compiled regex per
/// backtrack tier (the first when the pattern is compiled, the others when first needed).
#[derive(Debug)]
pub(crate) enum Pattern {
    Linear(Regex),
    Backtrack(Box<Backtracking>),
}

#[derive(Debug)]
pub(crate) struct Backtracking {
    /// The pattern with the options as inline flags.
    source: Box<str>,
    tiers: [OnceLock<Option<fancy_regex::Regex>>; 4],
}

impl Backtracking {
    fn build(source: &str, limit: usize) -> Result<fancy_regex::Regex, String> {
        fancy_regex::RegexBuilder::new(source)
            .backtrack_limit(limit)
            .delegate_size_limit(1 << 20)
            .delegate_dfa_size_limit(1 << 22)
            .build()
            .map_err(|e| e.to_string())
    }

    fn tier(&self, i: usize) -> RtResult<&fancy_regex::Regex> {
        let (Some(cell), Some(limit)) = (self.tiers.get(i), TIERS.get(i)) else {
            return Err(RuntimeError::argument("no such backtrack tier"));
        };
        cell.get_or_init(|| Self::build(&self.source, *limit).ok())
            .as_ref()
            .ok_or_else(|| RuntimeError::argument("Invalid regular expression pattern"))
    }

    /// Runs `search` at the tier for `input_len`, moving up a tier when it runs out of
    /// backtracks; each attempt is charged its worst case first.
    fn run<T>(
        &self,
        input_len: usize,
        rt: &mut Rt<'_>,
        search: impl Fn(&fancy_regex::Regex) -> Result<T, Fail>,
    ) -> RtResult<T> {
        let need = input_len.saturating_mul(2).saturating_add(1_000);
        let mut i = TIERS
            .iter()
            .position(|t| *t >= need)
            .unwrap_or(TIERS.len() - 1);
        loop {
            rt.steps(TIERS[i] / BACKTRACKS_PER_STEP)?;
            match search(self.tier(i)?) {
                Ok(v) => return Ok(v),
                Err(Fail::Limit) if i + 1 < TIERS.len() => i += 1,
                Err(Fail::Limit) => return Err(run_failed("out of backtracks")),
                Err(Fail::Other(e)) => return Err(run_failed(&e)),
            }
        }
    }
}

/// Why a backtracking search failed.
enum Fail {
    /// It used up its tier's backtracks.
    Limit,
    Other(String),
}

impl From<fancy_regex::Error> for Fail {
    fn from(e: fancy_regex::Error) -> Self {
        match e {
            fancy_regex::Error::RuntimeError(fancy_regex::RuntimeError::BacktrackLimitExceeded) => {
                Self::Limit
            }
            other => Self::Other(other.to_string()),
        }
    }
}

/// The byte spans of a match's groups (`None` for a group that took no part).
type Spans = Vec<Option<(usize, usize)>>;

impl Pattern {
    fn names(&self) -> Vec<Option<String>> {
        match self {
            Self::Linear(re) => re.capture_names().map(|n| n.map(str::to_owned)).collect(),
            Self::Backtrack(b) => match b.tier(0) {
                Ok(re) => re.capture_names().map(|n| n.map(str::to_owned)).collect(),
                Err(_) => Vec::new(),
            },
        }
    }

    /// Whether the backtracking engine runs it.
    #[cfg(test)]
    pub(crate) fn backtracks(&self) -> bool {
        matches!(self, Self::Backtrack(_))
    }

    fn is_match(&self, input: &str, rt: &mut Rt<'_>) -> RtResult<bool> {
        match self {
            Self::Linear(re) => Ok(re.is_match(input)),
            Self::Backtrack(b) => b.run(input.len(), rt, |re| Ok(re.is_match(input)?)),
        }
    }

    /// The first match's groups.
    fn first(&self, input: &str, rt: &mut Rt<'_>) -> RtResult<Option<Spans>> {
        match self {
            Self::Linear(re) => Ok(re
                .captures(input)
                .map(|c| spans(c.len(), |i| c.get(i).map(|m| (m.start(), m.end()))))),
            Self::Backtrack(b) => b.run(input.len(), rt, |re| {
                Ok(re
                    .captures(input)?
                    .map(|c| spans(c.len(), |i| c.get(i).map(|m| (m.start(), m.end())))))
            }),
        }
    }

    /// Every non-overlapping match's groups, in order, one step each.
    fn all(&self, input: &str, rt: &mut Rt<'_>) -> RtResult<Vec<Spans>> {
        let out: Vec<Spans> = match self {
            Self::Linear(re) => re
                .captures_iter(input)
                .map(|c| spans(c.len(), |i| c.get(i).map(|m| (m.start(), m.end()))))
                .collect(),
            Self::Backtrack(b) => b.run(input.len(), rt, |re| {
                let mut out = Vec::new();
                for c in re.captures_iter(input) {
                    let c = c?;
                    out.push(spans(c.len(), |i| c.get(i).map(|m| (m.start(), m.end()))));
                }
                Ok(out)
            })?,
        };
        rt.steps(out.len())?;
        Ok(out)
    }
}

fn spans(n: usize, get: impl Fn(usize) -> Option<(usize, usize)>) -> Spans {
    (0..n).map(get).collect()
}

fn run_failed(e: &str) -> RuntimeError {
    RuntimeError::new(
        ErrorKind::InvalidOperation,
        format_args!(
            "The regular expression could not be evaluated: {e} (a search may backtrack at most {} times; simplify the pattern)",
            TIERS[TIERS.len() - 1]
        ),
    )
}

/// Builds a pattern with .NET `RegexOptions` (`IgnoreCase`, `Multiline`, `Singleline`,
/// `IgnorePatternWhitespace`; the others don't change matching here).
pub(crate) fn build(pattern: &str, options: i32) -> Result<Pattern, String> {
    let linear = RegexBuilder::new(pattern)
        .case_insensitive(options & 1 != 0)
        .multi_line(options & 2 != 0)
        .dot_matches_new_line(options & 16 != 0)
        .ignore_whitespace(options & 32 != 0)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 22)
        .build();
    let first_err = match linear {
        Ok(re) => return Ok(Pattern::Linear(re)),
        Err(e) => e,
    };
    if matches!(first_err, ::regex::Error::CompiledTooBig(_)) {
        return Err(format!(
            "Invalid regular expression pattern: {first_err}; simplify the pattern"
        ));
    }
    // The flags as an inline group, so they apply to the whole pattern in either engine.
    let mut flags = String::new();
    for (bit, flag) in [(1, 'i'), (2, 'm'), (16, 's'), (32, 'x')] {
        if options & bit != 0 {
            flags.push(flag);
        }
    }
    let source = if flags.is_empty() {
        pattern.to_owned()
    } else {
        format!("(?{flags}){pattern}")
    };
    let first = Backtracking::build(&source, TIERS[0])
        .map_err(|e| format!("Invalid regular expression pattern: {e}"))?;
    let tiers = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let _ = tiers[0].set(Some(first));
    Ok(Pattern::Backtrack(Box::new(Backtracking {
        source: source.into(),
        tiers,
    })))
}

/// The options argument of a call (`RegexOptions` after the input, pattern[, replacement]).
pub(crate) fn options_of(args: &[Value]) -> i32 {
    args.iter()
        .find_map(|a| enum_arg(a).map(|(_, v)| v))
        .unwrap_or(0)
}

fn regex_for(args: &[Value], x: &Extra, rt: &mut Rt<'_>) -> RtResult<Arc<Pattern>> {
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
    fn new(names: &[Option<String>], input: &str, found: Option<&Spans>) -> Self {
        let groups = names
            .iter()
            .enumerate()
            .map(|(i, name)| GroupData {
                name: name
                    .as_deref()
                    .map_or_else(|| i.to_string().into(), Arc::from),
                found: found
                    .and_then(|f| f.get(i).copied().flatten())
                    .and_then(|(start, end)| {
                        let text = input.get(start..end)?;
                        Some((
                            Arc::from(text),
                            super::string::utf16_at(input, start),
                            super::string::utf16_len(text),
                        ))
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
        M::IsMatch => Ok(Value::Bool(re.is_match(input, rt)?)),
        M::Match => {
            let found = re.first(input, rt)?;
            Ok(Value::obj(Obj::Match(Arc::new(RegexMatch::new(
                &re.names(),
                input,
                found.as_ref(),
            )))))
        }
        M::Matches => {
            let names = re.names();
            let out: Vec<Value> = re
                .all(input, rt)?
                .iter()
                .map(|f| {
                    Value::obj(Obj::Match(Arc::new(RegexMatch::new(
                        &names,
                        input,
                        Some(f),
                    ))))
                })
                .collect();
            Ok(Value::Array(out.into()))
        }
        M::Split => {
            let mut out = Vec::new();
            let mut last = 0;
            for f in re.all(input, rt)? {
                let Some(Some((start, end))) = f.first().copied() else {
                    continue;
                };
                rt.steps(1)?;
                out.push(Value::String(input.get(last..start).unwrap_or("").into()));
                last = end;
            }
            out.push(Value::String(input.get(last..).unwrap_or("").into()));
            Ok(Value::Array(out.into()))
        }
        M::Replace => {
            let replacement = arg_str(args, 2, "replacement")?;
            let names = re.names();
            let refs = replacement.matches('$').count();
            let mut out = String::with_capacity(input.len());
            let mut last = 0;
            for f in re.all(input, rt)? {
                let Some(Some((start, end))) = f.first().copied() else {
                    continue;
                };
                rt.alloc(
                    start - last + replacement.len() + refs * (end - start).max(input.len() / 4),
                )?;
                out.push_str(input.get(last..start).unwrap_or(""));
                expand(replacement, &names, &f, input, &mut out);
                last = end;
            }
            out.push_str(input.get(last..).unwrap_or(""));
            Ok(Value::String(out.into()))
        }
        _ => Err(RuntimeError::no_member("Regex", m.name())),
    }
}

/// Appends `rep` with .NET substitutions (`$1`, `${name}`, `$0`, `$&`, `$$`) filled from one
/// match. A `$` that names no group is kept as written, as .NET does.
fn expand(rep: &str, names: &[Option<String>], found: &Spans, input: &str, out: &mut String) {
    let group = |i: usize| -> &str {
        found
            .get(i)
            .copied()
            .flatten()
            .and_then(|(s, e)| input.get(s..e))
            .unwrap_or("")
    };
    let mut rest = rep;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('&') {
            out.push_str(group(0));
            rest = tail;
        } else if let Some((name, tail)) = after
            .strip_prefix('{')
            .and_then(|t| t.split_once('}'))
            .and_then(|(name, tail)| {
                let i = names
                    .iter()
                    .position(|n| n.as_deref() == Some(name))
                    .or_else(|| name.parse::<usize>().ok().filter(|i| *i < names.len()))?;
                Some((i, tail))
            })
        {
            out.push_str(group(name));
            rest = tail;
        } else {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            // The longest run of digits that names a group, as .NET reads `$12`.
            let named = (1..=digits).rev().find_map(|n| {
                after[..n]
                    .parse::<usize>()
                    .ok()
                    .filter(|i| *i < names.len())
                    .map(|i| (i, n))
            });
            match named {
                Some((i, n)) => {
                    out.push_str(group(i));
                    rest = &after[n..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        }
    }
    out.push_str(rest);
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

    fn expanded(rep: &str) -> String {
        let names = vec![None, None, Some("n".to_owned())];
        let found = vec![Some((0, 5)), Some((0, 2)), Some((3, 5))];
        let mut out = String::new();
        expand(rep, &names, &found, "ab-cd", &mut out);
        out
    }

    #[test]
    fn replacement_syntax() {
        assert_eq!(
            expanded("$1-$&-${n}-$$-$x-$9-${2}"),
            "ab-ab-cd-cd-$-$x-$9-cd"
        );
        assert_eq!(expanded("$12"), "ab2");
    }

    #[test]
    fn linear_first_backtracking_for_the_rest() {
        assert!(!build("(?<m>\\d+)", 1).unwrap().backtracks());
        assert!(build("a(?=b)", 0).unwrap().backtracks());
        assert!(build("(a)\\1", 0).unwrap().backtracks());
        assert!(build("(?<=x)y", 0).unwrap().backtracks());
        assert!(build("a(?!b)", 1).unwrap().backtracks());
        assert!(
            build("(", 0)
                .unwrap_err()
                .contains("Invalid regular expression")
        );
    }
}
