//! Unit tests of the .NET library surface Azure documents for policy expressions (issue #15):
//! initializers, the types Azure allows (Uri, Random, DateTimeOffset, cryptography, XML…) and
//! the backtracking regex fallback. Each test names the member it proves.

use super::testing::StaticContext;
use super::*;

fn ctx() -> StaticContext {
    StaticContext {
        method: "GET".into(),
        url: "https://api.example.com/orders/42?x=1".into(),
        request_headers: vec![(
            "Authorization".into(),
            vec!["Basic YWxpY2U6czNjcjN0".into()],
        )],
        matched_parameters: vec![("id".into(), "42".into())],
        ..StaticContext::default()
    }
}

fn run(src: &str) -> Result<Value, RuntimeError> {
    let e = compile(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    e.eval(&ctx(), &mut Budget::default())
}

fn ok(src: &str) -> String {
    run(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .to_policy_string()
}

fn compile_err(src: &str) -> CompileError {
    match compile(src) {
        Ok(_) => panic!("{src} compiled"),
        Err(e) => e,
    }
}

const COMPACT: &str = ".ToString(Newtonsoft.Json.Formatting.None)";

#[test]
fn jobject_index_initializer() {
    let src = format!(
        r#"@(new JObject {{ ["a"] = 1, ["b"] = "x", ["c"] = new JObject {{ ["d"] = true }} }}{COMPACT})"#
    );
    assert_eq!(ok(&src), r#"{"a":1,"b":"x","c":{"d":true}}"#);
}

#[test]
fn jobject_add_and_property_initializers() {
    let src = format!(
        r#"@(new JObject(new JProperty("z", 0)) {{ {{ "a", 1 }}, new JProperty("b", 2) }}{COMPACT})"#
    );
    assert_eq!(ok(&src), r#"{"z":0,"a":1,"b":2}"#);
    // The initializer fills a new object: a later key replaces an earlier one.
    let src = format!(r#"@(new JObject {{ ["a"] = 1, ["a"] = 2 }}{COMPACT})"#);
    assert_eq!(ok(&src), r#"{"a":2}"#);
}

#[test]
fn jarray_collection_initializer() {
    let src = format!(r#"@(new JArray {{ 1, "two", new JArray {{ 3 }} }}{COMPACT})"#);
    assert_eq!(ok(&src), r#"[1,"two",[3]]"#);
    assert_eq!(ok(r#"@(new JArray { 1, 2 }.Count)"#), "2");
}

#[test]
fn dictionary_and_list_initializers() {
    assert_eq!(
        ok(
            r#"@{ var d = new Dictionary<string, string> { { "a", "b" }, ["c"] = "d" }; return (string)d["a"] + (string)d["c"]; }"#
        ),
        "bd"
    );
    assert_eq!(
        ok(r#"@{ var l = new List<string> { "a", "b" }; return l[1] + l.Count(); }"#),
        "b2"
    );
    assert_eq!(ok(r#"@(new List<int>().Count())"#), "0");
}

#[test]
fn array_creation_forms() {
    assert_eq!(ok(r#"@(new[] { 1, 2 }.Length)"#), "2");
    assert_eq!(ok(r#"@(new string[] { "a", "b" }[1])"#), "b");
    assert_eq!(ok(r#"@(string.Join(",", new int[] { 1, 2, 3 }))"#), "1,2,3");
}

#[test]
fn initializer_errors_say_what_and_where() {
    let e = compile_err(r#"@(new JObject { Foo = 1 })"#);
    assert!(e.to_string().contains("member assignment"), "{e}");
    assert!(e.to_string().contains("column 17"), "{e}");
    let e = compile_err(r#"@(new JArray { ["a"] = 1 })"#);
    assert!(e.to_string().contains("indexer entry"), "{e}");
    let e = compile_err(r#"@(new Dictionary<int, string>())"#);
    assert!(e.to_string().contains("string keys"), "{e}");
    let e = compile_err(r#"@(new JObject { ["a"] = 1 )"#);
    assert!(e.to_string().contains("'}' expected"), "{e}");
}

#[test]
fn fully_qualified_names() {
    assert_eq!(
        ok(r#"@(System.Text.Encoding.UTF8.GetBytes("ab").Length)"#),
        "2"
    );
    assert_eq!(
        ok(r#"@(new Newtonsoft.Json.Linq.JObject { ["a"] = 1 }.Count)"#),
        "1"
    );
}

#[test]
fn statement_forms() {
    assert_eq!(
        ok(
            r#"@{ int x = 0; for (var i = 0; i < 4; i++) { if (i == 2) { continue; } x += i; } return x; }"#
        ),
        "4"
    );
    assert_eq!(
        ok(
            r#"@{ var n = 0; while (n < 5) { n++; } var s = ""; foreach (var c in "ab") { s += c; } return s + n; }"#
        ),
        "ab5"
    );
    assert_eq!(
        ok(r#"@{ object o = "x"; return (o is string) ? (o as string) + "!" : "no"; }"#),
        "x!"
    );
    assert_eq!(ok(r#"@((string)null ?? "d")"#), "d");
    assert_eq!(
        ok(r#"@(context.Request.Headers.GetValueOrDefault("none")?.Length ?? -1)"#),
        "-1"
    );
    assert_eq!(
        ok(r#"@(new[] { 1, 2, 3 }.Where(x => x > 1).Select(x => x * 10).Sum())"#),
        "50"
    );
}
