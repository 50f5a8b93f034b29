//! Request paths as the gateway routes and forwards them: dot segments resolved as RFC 3986
//! §5.2.4 does, with `%2e` counted as a dot, before the API and the operation are looked up.
//!
//! Routing and the backend must see the same path: a `..` that the gateway matched as an
//! ordinary segment but a backend resolves would reach what a policy meant to guard. Encoded
//! slashes stay encoded (they are not separators here), but a segment that would become a dot
//! segment once a backend decodes its `%2F` is refused, as is a path that climbs above `/`.

use std::borrow::Cow;

/// The path cannot be served: it climbs above the root, or hides a dot segment behind an
/// encoded slash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPath;

/// A path with its dot segments resolved.
#[derive(Debug, PartialEq, Eq)]
pub struct Normalized<'a> {
    pub path: Cow<'a, str>,
    /// The fewest segments the resolved path held right after a `..` removed one: a request
    /// whose API path has more segments than this climbed out of the API. `usize::MAX` when
    /// the path had no `..`.
    pub floor: usize,
}

impl Normalized<'_> {
    /// Whether resolving the path left an API whose path has `depth` segments at some point.
    pub fn left_root(&self, depth: usize) -> bool {
        self.floor < depth
    }
}

/// Resolves the dot segments of `path`. Borrows `path` unchanged (after one byte scan) when
/// it has none, the common case.
pub fn normalize(path: &str) -> Result<Normalized<'_>, BadPath> {
    let unchanged = Normalized {
        path: Cow::Borrowed(path),
        floor: usize::MAX,
    };
    if !may_have_dot_segment(path.as_bytes()) {
        return Ok(unchanged);
    }
    let body = path.strip_prefix('/').unwrap_or(path);
    let mut any = false;
    for segment in body.split('/') {
        match kind(segment)? {
            Kind::Dot | Kind::DotDot => any = true,
            Kind::Plain => {}
        }
    }
    if !any {
        return Ok(unchanged);
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut floor = usize::MAX;
    let mut last_was_dot = false;
    for segment in body.split('/') {
        last_was_dot = true;
        match kind(segment)? {
            Kind::Dot => {}
            Kind::DotDot => {
                kept.pop().ok_or(BadPath)?;
                floor = floor.min(kept.len());
            }
            Kind::Plain => {
                kept.push(segment);
                last_was_dot = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    // `/a/b/..` is the directory `/a/`, and a path never resolves to nothing.
    if last_was_dot || out.is_empty() {
        out.push('/');
    }
    Ok(Normalized {
        path: Cow::Owned(out),
        floor,
    })
}

/// Whether a segment might be `.` or `..`: a `.` that starts a segment (or follows an encoded
/// slash), or any `%2e`. One pass, no allocation.
fn may_have_dot_segment(path: &[u8]) -> bool {
    let mut i = 0;
    while i < path.len() {
        match path[i] {
            b'.' if i == 0 || path[i - 1] == b'/' || after_encoded_slash(path, i) => {
                return true;
            }
            b'%' if path.get(i + 1) == Some(&b'2')
                && matches!(path.get(i + 2), Some(b'e' | b'E')) =>
            {
                return true;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

fn after_encoded_slash(path: &[u8], i: usize) -> bool {
    i >= 3 && is_encoded_slash(&path[i - 3..i])
}

/// `%2F` or `%5C` (a backslash, a separator to some backends), in either case.
fn is_encoded_slash(b: &[u8]) -> bool {
    matches!(b, [b'%', b'2', b'f' | b'F'] | [b'%', b'5', b'c' | b'C'])
}

enum Kind {
    Dot,
    DotDot,
    Plain,
}

fn kind(segment: &str) -> Result<Kind, BadPath> {
    match dots(segment.as_bytes()) {
        Some(1) => return Ok(Kind::Dot),
        Some(2) => return Ok(Kind::DotDot),
        _ => {}
    }
    // `..%2F..`: plain here, but `../..` to a backend that decodes it.
    let bytes = segment.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut split = false;
    while i + 3 <= bytes.len() {
        if is_encoded_slash(&bytes[i..i + 3]) {
            if matches!(dots(&bytes[start..i]), Some(1 | 2)) {
                return Err(BadPath);
            }
            split = true;
            i += 3;
            start = i;
        } else {
            i += 1;
        }
    }
    if split && matches!(dots(&bytes[start..]), Some(1 | 2)) {
        return Err(BadPath);
    }
    Ok(Kind::Plain)
}

/// How many dots `segment` is made of, counting `%2e` as one; `None` if it has anything else.
fn dots(segment: &[u8]) -> Option<usize> {
    let mut n = 0;
    let mut i = 0;
    while i < segment.len() {
        match segment[i] {
            b'.' => i += 1,
            b'%' if segment.get(i + 1) == Some(&b'2')
                && matches!(segment.get(i + 2), Some(b'e' | b'E')) =>
            {
                i += 3
            }
            _ => return None,
        }
        n += 1;
        if n > 2 {
            return None;
        }
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, BadPath> {
        normalize(p).map(|n| n.path.into_owned())
    }

    #[test]
    fn paths_without_dot_segments_are_borrowed() {
        for p in [
            "/",
            "/demo/items/1",
            "/demo/file.json",
            "/.well-known/openid",
            "/a/...",
            "/a/..b",
            "/a/b..",
            "/a%2Fb",
            "/a/%2e%2e%2e",
            "",
        ] {
            let n = normalize(p).unwrap();
            assert!(matches!(n.path, Cow::Borrowed(_)), "{p}");
            assert_eq!(n.path, p);
            assert_eq!(n.floor, usize::MAX);
        }
    }

    #[test]
    fn dot_segments_resolve_in_every_spelling() {
        assert_eq!(
            norm("/demo/files/../admin/secret").unwrap(),
            "/demo/admin/secret"
        );
        assert_eq!(norm("/demo/files/%2e%2e/admin").unwrap(), "/demo/admin");
        assert_eq!(norm("/demo/files/.%2e/admin").unwrap(), "/demo/admin");
        assert_eq!(norm("/demo/files/%2E./admin").unwrap(), "/demo/admin");
        assert_eq!(norm("/demo/./a/%2E/b").unwrap(), "/demo/a/b");
        assert_eq!(norm("/demo/a/..").unwrap(), "/demo/");
        assert_eq!(norm("/demo/a/.").unwrap(), "/demo/a/");
        assert_eq!(norm("/demo/..").unwrap(), "/");
        assert_eq!(norm("/a//../b").unwrap(), "/a/b");
        assert_eq!(norm("/a/b/../c/").unwrap(), "/a/c/");
        // Encoded slashes stay as they are.
        assert_eq!(norm("/a/./b%2Fc").unwrap(), "/a/b%2Fc");
    }

    #[test]
    fn climbing_above_the_root_is_refused() {
        for p in [
            "/..",
            "/../etc",
            "/a/../../b",
            "/%2e%2e/x",
            "/a/.%2E/%2e./b",
        ] {
            assert_eq!(norm(p), Err(BadPath), "{p}");
        }
    }

    #[test]
    fn dot_segments_behind_encoded_slashes_are_refused() {
        for p in [
            "/demo/..%2Fadmin",
            "/demo/a%2F..%2F..%2Fetc",
            "/demo/x%2f.",
            "/demo/%2e%2e%5Cadmin",
            "/demo/a%5c..",
        ] {
            assert_eq!(norm(p), Err(BadPath), "{p}");
        }
        assert_eq!(norm("/demo/a%2F.b").unwrap(), "/demo/a%2F.b");
    }

    proptest::proptest! {
        /// Whatever the path, normalising never panics, leaves no dot segment (in any
        /// spelling) and is idempotent: the result normalises to itself, borrowed.
        #[test]
        fn normalising_is_total_and_idempotent(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("/"),
                    proptest::strategy::Just("."),
                    proptest::strategy::Just("%2e"),
                    proptest::strategy::Just("%2E"),
                    proptest::strategy::Just("%2F"),
                    proptest::strategy::Just("%5c"),
                    proptest::strategy::Just("a"),
                    proptest::strategy::Just("b."),
                ],
                0..16,
            )
        ) {
            let path = format!("/{}", parts.concat());
            if let Ok(n) = normalize(&path) {
                proptest::prop_assert!(n.path.starts_with('/'));
                for segment in n.path.split('/') {
                    proptest::prop_assert!(!matches!(dots(segment.as_bytes()), Some(1 | 2)), "{path} -> {}", n.path);
                }
                let again = normalize(&n.path).map_err(|_| proptest::test_runner::TestCaseError::fail(format!("{path} -> {} refused", n.path)))?;
                proptest::prop_assert!(matches!(again.path, Cow::Borrowed(_)), "{path} -> {}", n.path);
                proptest::prop_assert_eq!(&again.path, &n.path);
            }
        }
    }

    #[test]
    fn the_floor_tells_how_far_up_the_path_went() {
        let n = normalize("/demo/a/../b").unwrap();
        assert_eq!(n.floor, 1);
        assert!(!n.left_root(1));
        let n = normalize("/demo/../other/x").unwrap();
        assert_eq!(n.path, "/other/x");
        assert_eq!(n.floor, 0);
        assert!(n.left_root(1));
        assert!(!n.left_root(0));
    }
}
