//! Unit tests of the whole pipeline (compile + evaluate) for behaviour the conformance vectors
//! don't pin down.

use super::testing::StaticContext;
use super::*;

fn ctx() -> StaticContext {
    StaticContext {
        method: "POST".into(),
        url: "https://api.example.com/a/b?x=1&x=2".into(),
        request_headers: vec![
            ("X-Id".into(), vec!["abc".into()]),
            ("X-Multi".into(), vec!["1".into(), "2".into()]),
        ],
        request_body: Some(br#"{"n":1,"items":[1,2,3],"s":"t"}"#.to_vec()),
        variables: vec![
            ("count".into(), Value::Int(3)),
            ("name".into(), Value::str("bob")),
        ],
        entities: vec![Entity::Api],
        fields: vec![(Field::ApiName, "Echo".into())],
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

#[test]
fn expr_is_send_and_sync() {
    fn assert<T: Send + Sync>() {}
    assert::<Expr>();
    assert::<Value>();
}

#[test]
fn string_concatenation_follows_csharp() {
    assert_eq!(ok("@(1 + 2 + \"a\")"), "3a");
    assert_eq!(ok("@(\"a\" + 1 + 2)"), "a12");
    assert_eq!(ok("@(\"a\" + (1 + 2))"), "a3");
    assert_eq!(ok("@(\"a\" + (\"b\" + 'c') + true + 1.5)"), "abcTrue1.5");
    assert_eq!(
        ok("@(context.Api.Name + \"/\" + context.Request.Method)"),
        "Echo/POST"
    );
    // Two null strings join to an empty string, never to null.
    let both_null = "@(context.Request.Headers.GetValueOrDefault(\"no\") + \
                     context.Request.Headers.GetValueOrDefault(\"none\"))";
    assert!(matches!(run(both_null), Ok(Value::String(s)) if s.is_empty()));
}

#[test]
fn arithmetic_follows_csharp() {
    assert_eq!(ok("@(2147483647 + 1)"), "-2147483648");
    assert_eq!(ok("@(-7 / 2)"), "-3");
    assert_eq!(ok("@(-7 % 3)"), "-1");
    assert_eq!(ok("@(1 / 2.0)"), "0.5");
    assert_eq!(ok("@(5L * 2)"), "10");
    assert_eq!(ok("@('a' + 1)"), "98");
    assert_eq!(ok("@(\"x\" + 'a')"), "xa");
    assert_eq!(ok("@(\"n=\" + null)"), "n=");
    assert_eq!(ok("@(1.0 + 2)"), "3");
    assert_eq!(run("@(1 / 0)").unwrap_err().kind, ErrorKind::DivideByZero);
    assert_eq!(ok("@(1.0 / 0)"), "Infinity");
    assert_eq!(ok("@(-2147483648)"), "-2147483648");
    assert_eq!(ok("@(3 & 5 | 8)"), "9");
}

#[test]
fn strings() {
    assert_eq!(
        ok(r#"@("a,,b".Split(new[] { ',' }, StringSplitOptions.RemoveEmptyEntries).Length)"#),
        "2"
    );
    assert_eq!(ok(r#"@("a--b--c".Split("--")[2])"#), "c");
    assert_eq!(ok(r#"@("abcabc".IndexOf("c", 3))"#), "5");
    assert_eq!(
        ok(r#"@("abcABC".IndexOf("B", StringComparison.OrdinalIgnoreCase))"#),
        "1"
    );
    assert_eq!(ok(r#"@("abc".LastIndexOf('b'))"#), "1");
    assert_eq!(ok(r#"@("héllo".Length)"#), "5");
    assert_eq!(ok(r#"@("héllo".Substring(1, 2))"#), "él");
    assert_eq!(ok(r#"@("7".PadLeft(3, '0'))"#), "007");
    assert_eq!(ok(r#"@(string.Join(",", new[] { 1, 2 }))"#), "1,2");
    assert_eq!(
        ok(r#"@(String.Format("{0,5}|{1:D3}|{2:yyyy}", "a", 7, new DateTime(2024, 5, 6)))"#),
        "    a|007|2024"
    );
    assert_eq!(ok(r#"@($"{1 + 1,-3}|{3.5:F2}|{{x}}")"#), "2  |3.50|{x}");
    assert_eq!(ok(r#"@("abc"[1])"#), "b");
    assert_eq!(
        run(r#"@("abc".Substring(2, 5))"#).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    assert_eq!(
        run(r#"@("abc".Substring(-1))"#).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    assert_eq!(ok(r#"@("A".Equals("a"))"#), "False");
    assert_eq!(
        ok(r#"@(string.Equals("A", "a", StringComparison.OrdinalIgnoreCase))"#),
        "True"
    );
    assert_eq!(
        ok(r#"@(StringComparison.OrdinalIgnoreCase.ToString())"#),
        "OrdinalIgnoreCase"
    );
}

#[test]
fn null_conditional_short_circuits_the_whole_chain() {
    assert_eq!(ok(r#"@(context.User?.Email.Length)"#), "");
    assert_eq!(ok(r#"@(context.Api?.Name.Length)"#), "4");
    assert_eq!(
        ok(r#"@(context.Request.Headers.GetValueOrDefault("nope")?.ToUpper() ?? "none")"#),
        "none"
    );
    assert_eq!(
        run(r#"@(context.User.Email)"#).unwrap_err().kind,
        ErrorKind::NullReference
    );
}

#[test]
fn context_members() {
    assert_eq!(ok("@(context.Request.Url.Path)"), "/a/b");
    assert_eq!(ok("@(context.Request.Url.Port)"), "443");
    assert_eq!(ok("@(context.Request.Url.QueryString)"), "?x=1&x=2");
    assert_eq!(ok("@(context.Request.Url.Query[\"x\"][1])"), "2");
    assert_eq!(
        ok("@(context.Request.Url.ToString())"),
        "https://api.example.com/a/b?x=1&x=2"
    );
    // `IReadOnlyDictionary<string, string[]>`: one item, the values joined.
    assert_eq!(ok("@(context.Request.Headers[\"x-multi\"][0])"), "1,2");
    assert_eq!(
        ok("@(context.Request.Headers[\"x-multi\"].Single())"),
        "1,2"
    );
    assert_eq!(ok("@(context.Request.Headers[\"x-multi\"].Length)"), "1");
    assert_eq!(ok("@(context.Request.Headers.Count)"), "2");
    assert_eq!(
        ok("@(context.Request.Headers.Select(h => h.Key).Last())"),
        "X-Multi"
    );
    assert_eq!(
        run("@(context.Request.Headers[\"nope\"])")
            .unwrap_err()
            .kind,
        ErrorKind::KeyNotFound
    );
    assert_eq!(ok("@(context.Response == null)"), "False");
    assert_eq!(ok("@(context.Response.StatusCode)"), "");
    assert_eq!(ok("@(context.Subscription == null)"), "True");
    assert_eq!(
        ok("@(context.Variables.GetValueOrDefault<int>(\"nope\"))"),
        "0"
    );
    assert_eq!(
        ok("@(context.Variables.GetValueOrDefault(\"nope\", 5))"),
        "5"
    );
    assert_eq!(ok("@((string)context.Variables[\"name\"] + \"!\")"), "bob!");
    assert_eq!(ok("@(context.Variables[\"name\"] as string)"), "bob");
    assert_eq!(ok("@(context.Variables[\"count\"] is int)"), "True");
}

#[test]
fn json() {
    assert_eq!(
        ok("@(context.Request.Body.As<JObject>(true)[\"items\"].Count())"),
        "3"
    );
    assert_eq!(
        ok("@(context.Request.Body.As<JObject>(true)[\"items\"].Select(i => (int)i).Sum())"),
        "6"
    );
    assert_eq!(
        ok("@(context.Request.Body.As<JObject>(true).Value<string>(\"s\"))"),
        "t"
    );
    assert_eq!(
        ok("@(context.Request.Body.As<JObject>(true)[\"items\"][1].ToString())"),
        "2"
    );
    assert_eq!(
        ok("@(context.Request.Body.As<JObject>(true).ToString(Newtonsoft.Json.Formatting.None))"),
        r#"{"n":1,"items":[1,2,3],"s":"t"}"#
    );
    assert_eq!(
        ok(
            r#"@{ var b = context.Request.Body.As<JObject>(true); b["n"] = (int)b["n"] + 1; b["new"] = new JArray("x"); return b.ToString(Newtonsoft.Json.Formatting.None); }"#
        ),
        r#"{"n":2,"items":[1,2,3],"s":"t","new":["x"]}"#
    );
    assert_eq!(
        run("@(context.Request.Body.As<JObject>(true)[\"items\"][7])")
            .unwrap_err()
            .kind,
        ErrorKind::OutOfRange
    );
    assert_eq!(
        run("@(JObject.Parse(\"[1]\"))").unwrap_err().kind,
        ErrorKind::Format
    );
    assert_eq!(ok("@(JToken.Parse(\"[1,2]\").Count())"), "2");
}

#[test]
fn statements_and_loops() {
    assert_eq!(
        ok(
            "@{ int t = 0; for (var i = 0; i < 5; i++) { if (i == 3) { continue; } t += i; } return t; }"
        ),
        "7"
    );
    assert_eq!(
        ok("@{ var i = 0; while (true) { i++; if (i > 9) { break; } } return i; }"),
        "10"
    );
    assert_eq!(
        ok(
            "@{ var s = \"\"; foreach (var h in context.Request.Headers) { s += h.Key; } return s; }"
        ),
        "X-IdX-Multi"
    );
    assert_eq!(ok("@{ long x = 1; x *= 3; return x; }"), "3");
    assert_eq!(ok("@{ double d = 1; return d / 2; }"), "0.5");
}

#[test]
fn budget_stops_runaway_loops() {
    let e = compile("@{ var i = 0; while (true) { i++; } return i; }").unwrap();
    let mut budget = Budget::new(10_000);
    let err = e.eval(&ctx(), &mut budget).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BudgetExceeded);
    assert_eq!(err.reason, EVALUATION_FAILURE);
    let e = compile("@{ var s = \"ab\"; while (true) { s = s + s; } return s; }").unwrap();
    assert_eq!(
        e.eval(&ctx(), &mut Budget::default()).unwrap_err().kind,
        ErrorKind::BudgetExceeded
    );
    let e = compile("@{ var s = \"x\".PadLeft(100000000); return s; }").unwrap();
    assert_eq!(
        e.eval(&ctx(), &mut Budget::default()).unwrap_err().kind,
        ErrorKind::BudgetExceeded
    );
}

#[test]
fn compile_errors_have_positions() {
    let e = compile_err("@(context.Request.Nope)");
    assert_eq!((e.offset, e.line, e.column), (18, 1, 19));
    assert!(
        e.message
            .contains("'IRequest' does not contain a definition for 'Nope'"),
        "{e}"
    );
    let e = compile_err("@{\n  var x = 1;\n  return x.Foo; }");
    assert_eq!((e.line, e.column), (3, 12));
    let e = compile_err("@(System.IO.File.ReadAllText(\"/etc/passwd\"))");
    assert!(e.message.contains("'System.IO' is not allowed"), "{e}");
    let e = compile_err("@(context.Request.Headers.GetValueOrDefault())");
    assert!(e.message.contains("takes 0 arguments"), "{e}");
    assert!(
        compile_err("@(Regex.IsMatch(\"a\", \"(?<=a)(b\"))")
            .message
            .contains("Invalid regular expression pattern")
    );
    assert!(
        compile_err("@{ var x = 1; }")
            .message
            .contains("Not all code paths")
    );
    assert!(
        compile_err("@(1 == \"a\")")
            .message
            .contains("cannot be applied")
    );
    assert!(
        compile_err("@{ string s = 5; return s; }")
            .message
            .contains("Cannot implicitly convert")
    );
    assert!(compile_err("@(x)").message.contains("does not exist"));
    assert!(
        compile_err("@(typeof(string))")
            .message
            .contains("not supported")
    );
    assert!(
        compile_err("@(new System.Net.WebClient())")
            .message
            .contains("not allowed")
    );
    assert!(
        compile_err("@(\"a\".GetType())")
            .message
            .contains("not allowed")
    );
}

#[test]
fn out_variables() {
    assert_eq!(ok("@(int.TryParse(\"x\", out var n) ? n : -1)"), "-1");
    assert_eq!(
        ok("@{ int n; return int.TryParse(\"12\", out n) ? n + 1 : -1; }"),
        "13"
    );
    assert_eq!(ok("@(\"a.b.c\".TryParseJwt(out var jwt))"), "False");
}

#[test]
fn dates() {
    let mut c = ctx();
    c.now = Some(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_767_323_045));
    let eval = |src: &str| {
        compile(src)
            .unwrap()
            .eval(&c, &mut Budget::default())
            .unwrap()
            .to_policy_string()
    };
    assert_eq!(
        eval("@(DateTime.UtcNow.ToString(\"o\"))"),
        "2026-01-02T03:04:05.0000000Z"
    );
    assert_eq!(
        eval("@(DateTime.UtcNow.AddDays(-1.5).ToString(\"s\"))"),
        "2025-12-31T15:04:05"
    );
    assert_eq!(
        eval("@((DateTime.UtcNow - new DateTime(2026, 1, 1)).TotalHours)"),
        "27.068055555555556"
    );
    assert_eq!(
        eval("@(DateTime.UtcNow > DateTime.Parse(\"2026-01-01\"))"),
        "True"
    );
    assert_eq!(eval("@(TimeSpan.FromMinutes(90).ToString())"), "01:30:00");
}

#[test]
fn linq_on_values_typed_object() {
    let mut c = ctx();
    c.variables.push((
        "list".into(),
        Value::Array(vec![Value::str("a"), Value::str("b")].into()),
    ));
    let eval = |src: &str| {
        compile(src)
            .unwrap()
            .eval(&c, &mut Budget::default())
            .unwrap()
            .to_policy_string()
    };
    assert_eq!(
        eval(r#"@(context.Variables["list"].Contains("b"))"#),
        "True"
    );
    assert_eq!(eval(r#"@(context.Variables["list"].Count())"#), "2");
    assert_eq!(
        eval(r#"@(context.Variables["list"].Any(x => x.Equals("a")))"#),
        "True"
    );
    assert_eq!(
        eval(r#"@(context.Request.Url.Query.First().Value[1])"#),
        "2"
    );
}

#[test]
fn json_add_and_remove_change_the_local() {
    assert_eq!(
        ok(
            r#"@{ var b = context.Request.Body.As<JObject>(true); b.Remove("items"); b.Add("x", 1); b["o"] = new JObject(); b["o"]["a"] = new JArray(); b["o"]["a"].Add(true); return b.ToString(Newtonsoft.Json.Formatting.None); }"#
        ),
        r#"{"n":1,"s":"t","x":1,"o":{"a":[true]}}"#
    );
    assert_eq!(
        run(r#"@{ var b = new JObject(); b.Add("x", 1); b.Add("x", 2); return b; }"#)
            .unwrap_err()
            .kind,
        ErrorKind::Argument
    );
    assert_eq!(
        ok(r#"@{ var b = new JObject(); return b.Remove("nope"); }"#),
        "False"
    );
}

#[test]
fn coalesce_accepts_null_conditional_value_types() {
    assert_eq!(ok(r#"@(context.User?.Email.Length ?? 0)"#), "0");
    assert_eq!(
        ok(r#"@(context.Request.Headers.GetValueOrDefault("nope")?.Contains("x") ?? false)"#),
        "False"
    );
}

#[test]
fn nesting_of_built_values_is_bounded() {
    let e =
        compile(r#"@{ var b = new JObject(); while (true) { b["x"] = b; } return b; }"#).unwrap();
    let err = e.eval(&ctx(), &mut Budget::default()).unwrap_err();
    assert!(err.message.contains("nest"), "{err}");
    let e = compile(r#"@{ object a = "x"; while (true) { a = new[] { a }; } return a; }"#).unwrap();
    let err = e.eval(&ctx(), &mut Budget::default()).unwrap_err();
    assert!(err.message.contains("nest"), "{err}");
}

#[test]
fn parsing_bodies_and_json_text_is_charged_to_the_budget() {
    // About 1.4 MB of JSON: 11,000 steps or so to parse, whatever the expression does with it.
    let body: String = format!(
        "{{{}}}",
        (0..100_000)
            .map(|i| format!("\"k{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let cx = StaticContext {
        request_body: Some(body.into_bytes()),
        ..ctx()
    };
    let e =
        compile(r#"@((string)context.Request.Body.As<JObject>(preserveContent: true)["k99999"])"#)
            .unwrap();
    let mut budget = Budget::default();
    assert_eq!(e.eval(&cx, &mut budget).unwrap(), Value::str("99999"));
    assert!(budget.used() > 10_000, "{}", budget.used());
    // Parsing it again and again runs out of budget instead of time.
    let e = compile(
        r#"@{ var n = 0; while (true) { n += context.Request.Body.As<JObject>(preserveContent: true).Count; } return n; }"#,
    )
    .unwrap();
    let err = e.eval(&cx, &mut Budget::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BudgetExceeded, "{err}");
    let e = compile(
        r#"@{ var s = context.Request.Body.As<string>(preserveContent: true); var n = 0; while (true) { n += JObject.Parse(s).Count; } return n; }"#,
    )
    .unwrap();
    let err = e.eval(&cx, &mut Budget::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BudgetExceeded, "{err}");
}
