//! URL templates of operations, as Azure writes them: `/users/{id}/orders?status={status}`.
//!
//! A template is a path of `/`-separated segments. A segment is a literal or a whole-segment
//! parameter `{name}`; the last segment may be a catch-all `{*name}`. A query part after `?`
//! names query parameters; it documents the operation but takes no part in matching.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Param(String),
    /// `{*name}`: the rest of the path, possibly empty.
    CatchAll(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    pub segments: Vec<Segment>,
    /// Query parameter names from the template's `?a={a}&b={b}` part.
    pub query: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl UrlTemplate {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        if !text.starts_with('/') {
            return Err(TemplateError(format!(
                "must start with '/', as in '/{}'",
                text.trim_start_matches('/')
            )));
        }
        let (path, query) = match text.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (text, None),
        };
        let mut segments = Vec::new();
        let parts: Vec<&str> = path[1..].split('/').collect();
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            if part.is_empty() {
                if i + 1 == count {
                    // A trailing slash, or the root template "/".
                    break;
                }
                return Err(TemplateError(format!(
                    "has an empty segment (\"//\") in '{path}'"
                )));
            }
            if let Some(inner) = part.strip_prefix('{') {
                let Some(name) = inner.strip_suffix('}') else {
                    return Err(TemplateError(format!(
                        "segment '{part}' opens '{{' without closing '}}'"
                    )));
                };
                if let Some(rest) = name.strip_prefix('*') {
                    if i + 1 != count {
                        return Err(TemplateError(format!(
                            "catch-all '{{*{rest}}}' must be the last segment"
                        )));
                    }
                    check_param_name(rest)?;
                    segments.push(Segment::CatchAll(rest.to_owned()));
                } else {
                    check_param_name(name)?;
                    segments.push(Segment::Param(name.to_owned()));
                }
            } else if part.contains(['{', '}']) {
                return Err(TemplateError(format!(
                    "segment '{part}' mixes text and a parameter; a parameter must fill a whole segment"
                )));
            } else {
                segments.push(Segment::Literal(part.to_owned()));
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for s in &segments {
            if let Segment::Param(n) | Segment::CatchAll(n) = s {
                if names.contains(&n.as_str()) {
                    return Err(TemplateError(format!("parameter '{n}' appears twice")));
                }
                names.push(n);
            }
        }
        let mut query_names = Vec::new();
        if let Some(q) = query {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let name = pair.split_once('=').map_or(pair, |(n, _)| n);
                if name.is_empty() {
                    return Err(TemplateError(format!("query part '{q}' has an empty name")));
                }
                query_names.push(name.to_owned());
            }
        }
        Ok(Self {
            segments,
            query: query_names,
        })
    }

    /// Names of the path parameters, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::CatchAll(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }
}

fn check_param_name(name: &str) -> Result<(), TemplateError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
    {
        return Err(TemplateError(format!(
            "parameter name '{name}' must be letters, digits, '_', '-', '.' or '$'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literals_params_and_query() {
        let t = UrlTemplate::parse("/users/{id}/orders?status={status}").unwrap();
        assert_eq!(
            t.segments,
            vec![
                Segment::Literal("users".into()),
                Segment::Param("id".into()),
                Segment::Literal("orders".into())
            ]
        );
        assert_eq!(t.query, vec!["status".to_string()]);
    }

    #[test]
    fn root_and_trailing_slash() {
        assert!(UrlTemplate::parse("/").unwrap().segments.is_empty());
        assert_eq!(UrlTemplate::parse("/a/").unwrap().segments.len(), 1);
    }

    #[test]
    fn rejects_bad_templates() {
        for bad in [
            "users",
            "/a//b",
            "/{id",
            "/a{id}",
            "/{*rest}/x",
            "/{a}/{a}",
            "/{}",
        ] {
            assert!(UrlTemplate::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn catch_all_last() {
        let t = UrlTemplate::parse("/files/{*path}").unwrap();
        assert_eq!(t.segments[1], Segment::CatchAll("path".into()));
    }
}
