//! Matching a request path against an API's operations.
//!
//! Templates are compiled to segment patterns once per configuration. Among the operations
//! whose method and pattern match, the most specific wins: at the first segment where two
//! candidates differ, a literal beats a parameter, which beats a catch-all; an exact method
//! beats `*`.

use std::sync::Arc;

use gatehouse_model::template::{Segment, UrlTemplate};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// Lower-cased literal; matching ignores ASCII case, as Azure does.
    Literal(Box<str>),
    Param,
    CatchAll,
}

#[derive(Debug)]
pub struct CompiledOperation {
    pub id: std::sync::Arc<str>,
    /// `None` matches any method.
    method: Option<http::Method>,
    patterns: Vec<Pattern>,
    pub param_names: Vec<Arc<str>>,
    /// Display name, method and template as written, for `context.Operation`.
    pub name: std::sync::Arc<str>,
    pub method_text: std::sync::Arc<str>,
    pub template: std::sync::Arc<str>,
    /// The effective policy, composed once per configuration.
    pub policy: OperationPolicy,
    /// What the API's OpenAPI document says of the operation: response examples
    /// (`mock-response`) and body schemas (`validate-content`), compiled.
    pub examples: Option<std::sync::Arc<gatehouse_policy::exchange::OperationDocument>>,
}

/// The composed pipeline of an operation: one for calls without a product, and one for each
/// product of the API that has a policy of its own.
#[derive(Debug, Default)]
pub struct OperationPolicy {
    pub default: std::sync::Arc<gatehouse_policy::Pipeline>,
    pub by_product: Vec<(usize, std::sync::Arc<gatehouse_policy::Pipeline>)>,
}

impl OperationPolicy {
    pub fn for_product(
        &self,
        product: Option<usize>,
    ) -> &std::sync::Arc<gatehouse_policy::Pipeline> {
        product
            .and_then(|p| self.by_product.iter().find(|(i, _)| *i == p))
            .map_or(&self.default, |(_, pipeline)| pipeline)
    }
}

impl CompiledOperation {
    /// Checks the method and template with the model's checks, the ones the control plane
    /// saves operations with.
    pub fn compile(id: &str, method: &str, template: &str) -> Result<Self, String> {
        gatehouse_model::resources::check_method(method)?;
        let parsed = UrlTemplate::parse(template).map_err(|e| e.to_string())?;
        let method_text: std::sync::Arc<str> = method.into();
        let method = if method == "*" {
            None
        } else {
            Some(
                http::Method::from_bytes(method.as_bytes())
                    .map_err(|_| format!("'{method}' is not an HTTP method"))?,
            )
        };
        let mut patterns = Vec::with_capacity(parsed.segments.len());
        let mut param_names = Vec::new();
        for segment in parsed.segments {
            patterns.push(match segment {
                Segment::Literal(l) => Pattern::Literal(l.to_ascii_lowercase().into()),
                Segment::Param(n) => {
                    param_names.push(n.into());
                    Pattern::Param
                }
                Segment::CatchAll(n) => {
                    param_names.push(n.into());
                    Pattern::CatchAll
                }
            });
        }
        Ok(Self {
            id: id.into(),
            method,
            patterns,
            param_names,
            name: id.into(),
            method_text,
            template: template.into(),
            policy: OperationPolicy::default(),
            examples: None,
        })
    }

    /// The template parameters of a request path this operation matched.
    pub fn matched(&self, rest: &str) -> Vec<(Arc<str>, String)> {
        if self.param_names.is_empty() {
            return Vec::new();
        }
        let trimmed = rest.strip_prefix('/').unwrap_or(rest);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        // The segments not yet matched, as one slice: a catch-all takes it whole.
        let mut tail = (!trimmed.is_empty()).then_some(trimmed);
        let mut names = self.param_names.iter();
        let mut out = Vec::with_capacity(self.param_names.len());
        for p in &self.patterns {
            let here = tail;
            let segment = tail.map(|t| match t.split_once('/') {
                Some((segment, after)) => {
                    tail = Some(after);
                    segment
                }
                None => {
                    tail = None;
                    t
                }
            });
            match p {
                Pattern::Literal(_) => {}
                Pattern::Param => {
                    if let (Some(n), Some(v)) = (names.next(), segment) {
                        out.push((n.clone(), v.to_owned()));
                    }
                }
                Pattern::CatchAll => {
                    if let Some(n) = names.next() {
                        out.push((n.clone(), here.unwrap_or_default().to_owned()));
                    }
                }
            }
        }
        out
    }

    /// Scores a match of `segments`: `None` when it does not match; otherwise a rank per
    /// segment (higher is more specific) for comparing candidates.
    fn score(&self, method: &http::Method, segments: &[&str]) -> Option<(Vec<u8>, u8)> {
        let method_rank = match &self.method {
            Some(m) if m == method => 1,
            Some(_) => return None,
            None => 0,
        };
        let mut ranks = Vec::with_capacity(self.patterns.len());
        let mut i = 0;
        for pattern in &self.patterns {
            match pattern {
                Pattern::CatchAll => {
                    ranks.push(0);
                    return Some((ranks, method_rank));
                }
                Pattern::Literal(lit) => {
                    let seg = segments.get(i)?;
                    if !seg.eq_ignore_ascii_case(lit) {
                        return None;
                    }
                    ranks.push(2);
                }
                Pattern::Param => {
                    let seg = segments.get(i)?;
                    if seg.is_empty() {
                        return None;
                    }
                    ranks.push(1);
                }
            }
            i += 1;
        }
        (i == segments.len()).then_some((ranks, method_rank))
    }
}

/// Finds the best operation for `method` and the path `rest` below the API's path.
/// `rest` is the raw path, starting with `/` or empty.
pub fn find<'a>(
    operations: &'a [CompiledOperation],
    method: &http::Method,
    rest: &str,
) -> Option<&'a CompiledOperation> {
    let trimmed = rest.strip_prefix('/').unwrap_or(rest);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segments: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    let mut best: Option<(&CompiledOperation, (Vec<u8>, u8))> = None;
    for op in operations {
        if let Some(score) = op.score(method, &segments) {
            let better = match &best {
                None => true,
                Some((_, b)) => score > *b,
            };
            if better {
                best = Some((op, score));
            }
        }
    }
    best.map(|(op, _)| op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn ops(list: &[(&str, &str, &str)]) -> Vec<CompiledOperation> {
        list.iter()
            .map(|(id, m, t)| CompiledOperation::compile(id, m, t).unwrap())
            .collect()
    }

    #[test]
    fn matched_parameters_take_their_segments() {
        let pairs = |op: &CompiledOperation, rest: &str| -> Vec<(String, String)> {
            op.matched(rest)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        };
        let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let o = ops(&[
            ("item", "GET", "/users/{user}/items/{item}"),
            ("files", "GET", "/files/{*path}"),
            ("plain", "GET", "/status"),
        ]);
        assert_eq!(
            pairs(&o[0], "/users/7/items/42/"),
            [p("user", "7"), p("item", "42")]
        );
        assert_eq!(pairs(&o[1], "/files/a/b//c"), [p("path", "a/b//c")]);
        assert_eq!(pairs(&o[1], "/files"), [p("path", "")]);
        assert_eq!(pairs(&o[0], "/users"), [] as [(String, String); 0]);
        assert!(o[2].matched("/status").is_empty());
    }

    #[test]
    fn literal_beats_parameter() {
        let o = ops(&[
            ("by-id", "GET", "/users/{id}"),
            ("me", "GET", "/users/me"),
            ("all", "GET", "/users"),
        ]);
        assert_eq!(&*find(&o, &Method::GET, "/users/me").unwrap().id, "me");
        assert_eq!(&*find(&o, &Method::GET, "/users/42").unwrap().id, "by-id");
        assert_eq!(&*find(&o, &Method::GET, "/users").unwrap().id, "all");
        assert_eq!(&*find(&o, &Method::GET, "/USERS/").unwrap().id, "all");
        assert!(find(&o, &Method::POST, "/users").is_none());
        assert!(find(&o, &Method::GET, "/users/1/x").is_none());
        assert!(find(&o, &Method::GET, "/other").is_none());
    }

    #[test]
    fn exact_method_beats_wildcard_and_catch_all_is_last() {
        let o = ops(&[("any", "*", "/{*rest}"), ("get", "GET", "/files/{name}")]);
        assert_eq!(&*find(&o, &Method::GET, "/files/a").unwrap().id, "get");
        assert_eq!(&*find(&o, &Method::DELETE, "/files/a").unwrap().id, "any");
        assert_eq!(&*find(&o, &Method::GET, "").unwrap().id, "any");
    }

    #[test]
    fn root_template() {
        let o = ops(&[("root", "GET", "/")]);
        assert!(find(&o, &Method::GET, "").is_some());
        assert!(find(&o, &Method::GET, "/").is_some());
        assert!(find(&o, &Method::GET, "/x").is_none());
    }
}
