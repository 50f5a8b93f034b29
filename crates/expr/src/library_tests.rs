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

#[test]
fn switch_statement() {
    let src = r#"@{ var x = context.Request.MatchedParameters["id"]; switch (x) { case "1": return "one"; case "41": case "42": { var y = "forty"; return y + x; } default: return "other"; } }"#;
    assert_eq!(ok(src), "forty42");
    assert_eq!(
        ok(
            r#"@{ var s = ""; foreach (var c in new[] { "a", "b" }) { switch (c) { case "a": s += "A"; break; default: s += "?"; break; } } return s; }"#
        ),
        "A?"
    );
    assert_eq!(
        ok(r#"@{ var r = "-"; switch (5) { case 1: r = "1"; break; } return r; }"#),
        "-"
    );
    // Nested switches each keep their own subject.
    assert_eq!(
        ok(
            r#"@{ switch (1) { case 1: switch (2) { case 2: return "12"; } break; } return "no"; }"#
        ),
        "12"
    );
    let e =
        compile_err(r#"@{ switch (1) { case 1: if (true) { break; } return "x"; } return "y"; }"#);
    assert!(
        e.to_string().contains("'break' inside a switch section"),
        "{e}"
    );
    let e = compile_err(r#"@{ switch (1) { return "x"; } }"#);
    assert!(
        e.to_string().contains("'case' or 'default' expected"),
        "{e}"
    );
}

#[test]
fn using_statement_scopes_its_variable() {
    assert_eq!(
        ok(
            r#"@{ using (var h = new HMACSHA256(Encoding.UTF8.GetBytes("k"))) { return h.HashSize; } }"#
        ),
        "256"
    );
    let e = compile_err(r#"@{ using (var h = SHA256.Create()) { } return h.HashSize; }"#);
    assert!(e.to_string().contains("'h'"), "{e}");
}

fn b64(src: &str) -> String {
    ok(&format!("@(Convert.ToBase64String({src}))"))
}

#[test]
fn hmac_members() {
    // RFC 4231 test case 2 (key "Jefe").
    let data = r#"Encoding.UTF8.GetBytes("what do ya want for nothing?")"#;
    assert_eq!(
        ok(&format!(
            r#"@(BitConverter.ToString(new HMACSHA256(Encoding.UTF8.GetBytes("Jefe")).ComputeHash({data})).Replace("-", "").ToLower())"#
        )),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        ok(&format!(
            r#"@(BitConverter.ToString(new System.Security.Cryptography.HMACSHA512(Encoding.UTF8.GetBytes("Jefe")).ComputeHash({data})).Replace("-", "").Substring(0, 16))"#
        )),
        "164B7A7BFCF819E2"
    );
    assert_eq!(
        ok(&format!(
            r#"@(BitConverter.ToString(new HMACSHA1(Encoding.UTF8.GetBytes("Jefe")).ComputeHash({data})).Replace("-", ""))"#
        )),
        "EFFCDF6AE5EB2FA2D27416D5F184DF9C259A7C79"
    );
    // RFC 2202 (HMAC-MD5, "Jefe").
    assert_eq!(
        ok(&format!(
            r#"@(BitConverter.ToString(new HMACMD5(Encoding.UTF8.GetBytes("Jefe")).ComputeHash({data})).Replace("-", ""))"#
        )),
        "750C783E6AB0B503EAA86E310A5DB738"
    );
    assert_eq!(
        b64(&format!(
            r#"HMACSHA256.HashData(Encoding.UTF8.GetBytes("Jefe"), {data})"#
        )),
        "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
    );
    // ComputeHash(buffer, offset, count) hashes the slice; a slice past the end is refused.
    assert_eq!(
        ok(
            r#"@(new HMACSHA256(Encoding.UTF8.GetBytes("k")).ComputeHash(Encoding.UTF8.GetBytes("xxmxx"), 2, 1).Length)"#
        ),
        "32"
    );
    let e = run(
        r#"@(new HMACSHA256(Encoding.UTF8.GetBytes("k")).ComputeHash(Encoding.UTF8.GetBytes(""), 2, 1))"#,
    );
    assert!(e.is_err());
    assert_eq!(
        ok(r#"@(new HMACSHA1(Encoding.UTF8.GetBytes("k")).Key.Length)"#),
        "1"
    );
    let e = compile_err(r#"@(new HMACSHA256())"#);
    assert!(e.to_string().contains("HMACSHA256"), "{e}");
}

#[test]
fn hash_members() {
    let abc = r#"Encoding.UTF8.GetBytes("abc")"#;
    assert_eq!(
        b64(&format!("SHA256.Create().ComputeHash({abc})")),
        "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    );
    assert_eq!(
        b64(&format!("SHA256.HashData({abc})")),
        "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    );
    assert_eq!(
        b64(&format!("MD5.Create().ComputeHash({abc})")),
        "kAFQmDzST7DWlj99KOF/cg=="
    );
    assert_eq!(
        b64(&format!("SHA1.Create().ComputeHash({abc})")),
        "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="
    );
    assert_eq!(
        ok(&format!(
            "@(SHA384.Create().ComputeHash({abc}).Length + SHA512.Create().ComputeHash({abc}).Length)"
        )),
        "112"
    );
    let e = compile_err(r#"@(new SHA256())"#);
    assert!(
        e.to_string()
            .contains("Cannot create an instance of 'SHA256'"),
        "{e}"
    );
}

#[test]
fn bit_converter_to_string() {
    assert_eq!(
        ok(r#"@(BitConverter.ToString(Encoding.UTF8.GetBytes("\u00ff\n")))"#),
        "C3-BF-0A"
    );
    assert_eq!(
        ok(r#"@(BitConverter.ToString(Encoding.UTF8.GetBytes("")))"#),
        ""
    );
}

#[test]
fn uri_members() {
    let u = r#"new Uri("HTTPS://Api.Example.com:8443/a/b?x=1&y=2#frag")"#;
    assert_eq!(ok(&format!("@({u}.Host)")), "api.example.com");
    assert_eq!(ok(&format!("@({u}.Scheme)")), "https");
    assert_eq!(ok(&format!("@({u}.Port)")), "8443");
    assert_eq!(ok(&format!("@({u}.AbsolutePath)")), "/a/b");
    assert_eq!(ok(&format!("@({u}.Query)")), "?x=1&y=2");
    assert_eq!(ok(&format!("@({u}.PathAndQuery)")), "/a/b?x=1&y=2");
    assert_eq!(ok(&format!("@({u}.Fragment)")), "#frag");
    assert_eq!(ok(&format!("@({u}.Authority)")), "api.example.com:8443");
    assert_eq!(ok(&format!("@({u}.IsDefaultPort)")), "False");
    assert_eq!(
        ok(&format!("@({u}.ToString())")),
        "https://api.example.com:8443/a/b?x=1&y=2#frag"
    );
    assert_eq!(
        ok(&format!("@({u}.AbsoluteUri)")),
        "https://api.example.com:8443/a/b?x=1&y=2#frag"
    );
    assert_eq!(
        ok(r#"@(new Uri("http://h").Port + new Uri("https://h").PathAndQuery)"#),
        "80/"
    );
    assert_eq!(
        ok(r#"@(new Uri("https://h:443/").ToString())"#),
        "https://h/"
    );
    assert_eq!(
        ok(r#"@(new Uri(new Uri("https://h/a/b"), "c?d=1").ToString())"#),
        "https://h/a/c?d=1"
    );
    assert_eq!(
        ok(r#"@(new Uri(new Uri("https://h/a/b"), "/r").ToString())"#),
        "https://h/r"
    );
    assert_eq!(
        ok(r#"@(context.Request.Url.ToUri().Host)"#),
        "api.example.com"
    );
    assert_eq!(
        ok(r#"@(new Uri("https://h/x") == new Uri("https://H/x"))"#),
        "True"
    );
    let e = run(r#"@(new Uri("not a url").Host)"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Format);
    assert!(e.message.contains("'not a url'"), "{}", e.message);
    let e = run(r#"@(new Uri("https://h:99999/").Host)"#).unwrap_err();
    assert!(e.message.contains("port"), "{}", e.message);
}

#[test]
fn uri_builder_members() {
    assert_eq!(
        ok(
            r#"@(new UriBuilder("https://a.b/p?q=1") { Host = "c.d", Port = 8443, Path = "n" }.Uri.ToString())"#
        ),
        "https://c.d:8443/n?q=1"
    );
    assert_eq!(
        ok(
            r#"@{ var b = new UriBuilder(context.Request.Url.ToUri()); b.Scheme = "http"; b.Port = -1; b.Query = "?z=9"; return b.ToString(); }"#
        ),
        "http://api.example.com/orders/42?z=9"
    );
    assert_eq!(
        ok(r#"@(new UriBuilder("https", "h", 444, "p").Uri.AbsoluteUri)"#),
        "https://h:444/p"
    );
    assert_eq!(
        ok(r#"@(new UriBuilder("https://h/p?x").Query + new UriBuilder("https://h/p").Port)"#),
        "?x443"
    );
    let e = compile_err(r#"@(new UriBuilder("https://h") { Nope = 1 })"#);
    assert!(e.to_string().contains("no settable member 'Nope'"), "{e}");
    let e = compile_err(
        r#"@{ var b = new UriBuilder("https://h"); b.Port = "x"; return b.ToString(); }"#,
    );
    assert!(e.to_string().contains("Cannot implicitly convert"), "{e}");
}

#[test]
fn random_members() {
    assert_eq!(ok(r#"@(new Random().Next(10) < 10)"#), "True");
    assert_eq!(
        ok(r#"@{ var r = new Random(); var n = r.Next(5, 7); return n >= 5 && n < 7; }"#),
        "True"
    );
    assert_eq!(
        ok(r#"@{ var r = new Random(); var d = r.NextDouble(); return d >= 0.0 && d < 1.0; }"#),
        "True"
    );
    assert_eq!(
        ok(r#"@(new Random(42).Next() == new Random(42).Next())"#),
        "True"
    );
    assert_eq!(ok(r#"@(new Random().Next(3, 3))"#), "3");
    assert_eq!(
        run(r#"@(new Random().Next(5, 1))"#).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    assert_eq!(
        run(r#"@(new Random().Next(-1))"#).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
}

#[test]
fn date_time_offset_members() {
    assert_eq!(
        ok(r#"@(DateTimeOffset.FromUnixTimeSeconds(1700000000).ToUnixTimeMilliseconds())"#),
        "1700000000000"
    );
    assert_eq!(
        ok(r#"@(DateTimeOffset.FromUnixTimeMilliseconds(1500).ToUnixTimeSeconds())"#),
        "1"
    );
    assert_eq!(
        ok(r#"@(DateTimeOffset.FromUnixTimeSeconds(0).AddSeconds(90.5).ToUnixTimeMilliseconds())"#),
        "90500"
    );
    assert_eq!(
        ok(r#"@(DateTimeOffset.FromUnixTimeSeconds(86400).UtcDateTime.Day)"#),
        "2"
    );
    assert_eq!(
        ok(r#"@(DateTimeOffset.UtcNow.ToUnixTimeSeconds() > 1600000000)"#),
        "True"
    );
    assert_eq!(
        ok(r#"@(DateTime.UtcNow.AddSeconds(1.5) > DateTime.UtcNow)"#),
        "True"
    );
    assert_eq!(
        ok(
            r#"@(DateTime.UtcNow.AddMinutes(0.5).AddHours(0.25).AddDays(0.5).AddMilliseconds(1.5) > DateTime.UtcNow)"#
        ),
        "True"
    );
    assert_eq!(
        ok(
            r#"@{ DateTimeOffset d = DateTimeOffset.Parse("2024-01-02T03:04:05Z"); return d.ToUnixTimeSeconds(); }"#
        ),
        "1704164645"
    );
    assert_eq!(
        run(r#"@(DateTimeOffset.FromUnixTimeSeconds(999999999999999))"#)
            .unwrap_err()
            .kind,
        ErrorKind::OutOfRange
    );
}

#[test]
fn time_span_members() {
    assert_eq!(
        ok(r#"@(TimeSpan.FromSeconds(1.5).TotalMilliseconds)"#),
        "1500"
    );
    assert_eq!(ok(r#"@(TimeSpan.FromMinutes(90).Hours)"#), "1");
    assert_eq!(ok(r#"@(new TimeSpan(1, 2, 3).TotalSeconds)"#), "3723");
}

#[test]
fn array_members() {
    assert_eq!(ok(r#"@(Array.Empty<string>().Length)"#), "0");
    assert_eq!(ok(r#"@(Array.IndexOf(new[] { "a", "b" }, "b"))"#), "1");
    assert_eq!(ok(r#"@(Array.IndexOf(new[] { 1, 2 }, 3))"#), "-1");
    assert_eq!(ok(r#"@(new[] { 3, 4 }[1] + "a,b".Split(',').Length)"#), "6");
    assert_eq!(
        run(r#"@(new[] { 1 }[1])"#).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    let e = compile_err(r#"@(Array.Empty().Length)"#);
    assert!(e.to_string().contains("Array.Empty<string>()"), "{e}");
}

#[test]
fn convert_members() {
    assert_eq!(
        ok(r#"@(Convert.ToBase64String(Encoding.UTF8.GetBytes("hi")))"#),
        "aGk="
    );
    assert_eq!(
        ok(r#"@(Encoding.UTF8.GetString(Convert.FromBase64String("aGk=")))"#),
        "hi"
    );
    assert_eq!(ok(r#"@(Convert.ToInt32("12") + 1)"#), "13");
    assert_eq!(ok(r#"@(Convert.ToString(12) + "!")"#), "12!");
    assert_eq!(
        ok(r#"@(Encoding.ASCII.GetString(Encoding.ASCII.GetBytes("ab")))"#),
        "ab"
    );
}

#[test]
fn web_utility_members() {
    assert_eq!(
        ok(r#"@(System.Net.WebUtility.UrlEncode("a b&c/é"))"#),
        "a+b%26c%2F%C3%A9"
    );
    assert_eq!(
        ok(r#"@(WebUtility.UrlDecode("a+b%26c%2F%C3%A9"))"#),
        "a b&c/é"
    );
    assert_eq!(
        ok(r#"@(WebUtility.HtmlEncode("<a href='x'>\"&</a>"))"#),
        "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&lt;/a&gt;"
    );
    assert_eq!(
        ok(r#"@(WebUtility.HtmlDecode("&lt;&#65;&#x42;&amp;&bogus; &"))"#),
        "<AB&&bogus; &"
    );
    assert_eq!(ok(r#"@(WebUtility.UrlEncode(null) == null)"#), "True");
}

#[test]
fn as_basic_members() {
    let h = r#"context.Request.Headers.GetValueOrDefault("Authorization", "")"#;
    assert_eq!(ok(&format!("@({h}.AsBasic().UserId)")), "alice");
    assert_eq!(ok(&format!("@({h}.AsBasic().Password)")), "s3cr3t");
    assert_eq!(ok(r#"@("Bearer abc".AsBasic() == null)"#), "True");
    assert_eq!(ok(r#"@("Basic !!!".AsBasic() == null)"#), "True");
    assert_eq!(ok(r#"@("Basic bm9jb2xvbg==".AsBasic() == null)"#), "True");
    assert_eq!(ok(r#"@("Bearer abc".AsBasic()?.UserId ?? "anon")"#), "anon");
}

#[test]
fn matched_parameters() {
    assert_eq!(ok(r#"@(context.Request.MatchedParameters["id"])"#), "42");
    assert_eq!(
        ok(r#"@(context.Request.MatchedParameters.GetValueOrDefault("nope", "d"))"#),
        "d"
    );
    assert_eq!(
        ok(r#"@(context.Request.MatchedParameters.ContainsKey("id"))"#),
        "True"
    );
}

#[test]
fn regex_lookaround_and_backreferences() {
    assert_eq!(ok(r#"@(Regex.IsMatch("foobar", "foo(?=bar)"))"#), "True");
    assert_eq!(ok(r#"@(Regex.IsMatch("foobaz", "foo(?=bar)"))"#), "False");
    assert_eq!(
        ok(r#"@(Regex.Match("price: 100USD", @"\d+(?=USD)").Value)"#),
        "100"
    );
    assert_eq!(ok(r#"@(Regex.Match("xay", "(?<=x)a(?!z)").Index)"#), "1");
    assert_eq!(
        ok(r#"@(Regex.IsMatch("hello hello", @"(\w+) \1"))"#),
        "True"
    );
    assert_eq!(
        ok(r#"@(Regex.IsMatch("hello world", @"(\w+) \1"))"#),
        "False"
    );
    assert_eq!(
        ok(r#"@(Regex.Match("<b>x</b>", @"<(?<tag>\w+)>(.*?)</\k<tag>>").Groups["tag"].Value)"#),
        "b"
    );
    assert_eq!(
        ok(r#"@(Regex.Replace("aa bb cd", @"(\w)\1", "<$1>"))"#),
        "<a> <b> cd"
    );
    assert_eq!(
        ok(r#"@(Regex.Matches("a1b2c3", @"[a-z](?=\d)").Count)"#),
        "3"
    );
    assert_eq!(
        ok(r#"@(string.Join("|", Regex.Split("a1b22c", @"(?<=\d)(?=[a-z])")))"#),
        "a1|b22|c"
    );
    assert_eq!(
        ok(r#"@(Regex.IsMatch("FOOBAR", "foo(?=bar)", RegexOptions.IgnoreCase))"#),
        "True"
    );
    // A computed pattern takes the same path at run time.
    assert_eq!(
        ok(r#"@{ var p = "(.)" + "\\1"; return Regex.IsMatch("xyy", p); }"#),
        "True"
    );
    // The linear engine still serves what it can, with .NET's substitutions.
    assert_eq!(
        ok(r#"@(Regex.Replace("2024-01-02", @"(?<y>\d+)-(\d+)-(\d+)", "$3/$2/${y} $$"))"#),
        "02/01/2024 $"
    );
}

#[test]
fn regex_backtracking_is_bounded() {
    // Catastrophic backtracking on a hostile input fails with an error instead of hanging.
    let evil = format!(r#"@(Regex.IsMatch("{}!", @"^(a+)+\1$"))"#, "a".repeat(40));
    let started = std::time::Instant::now();
    let e = run(&evil).unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(e.message.contains("backtrack"), "{}", e.message);
    // Each attempt is charged up front: a small budget runs out before the last tier.
    let e = compile(&evil).unwrap();
    let err = e.eval(&ctx(), &mut Budget::new(5_000)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BudgetExceeded);
    // Each backtracking search is charged its worst case: a small budget runs out.
    let e =
        compile(r#"@(Regex.IsMatch("ab", "a(?=b)") && Regex.IsMatch("ab", "a(?=b)"))"#).unwrap();
    let err = e.eval(&ctx(), &mut Budget::new(800)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BudgetExceeded);
    assert!(e.eval(&ctx(), &mut Budget::new(1_200)).is_ok());
    // A long input starts at a higher tier instead of failing: 50 000 characters scanned.
    let big = format!(
        r#"@(Regex.IsMatch("{}foobar", "foo(?=bar)"))"#,
        "x".repeat(50_000)
    );
    let long = compile(&big).map_err(|e| e.message).and_then(|e| {
        e.eval(&ctx(), &mut Budget::default())
            .map_err(|e| e.message)
    });
    assert!(matches!(long, Ok(Value::Bool(true))), "{long:?}");
    // A literal pattern neither engine takes is refused when the policy is saved, where it is.
    let c = compile_err(r#"@(Regex.IsMatch("x", "(?<=a+"))"#);
    assert!(c.to_string().contains("Invalid regular expression"), "{c}");
    assert!(c.to_string().contains("column 22"), "{c}");
}

#[test]
fn try_get_value_on_context_dictionaries() {
    // Azure's documented example.
    let src = r#"@{ string[] value; if (context.Request.Headers.TryGetValue("Authorization", out value)) { if (value != null && value.Length > 0) { return Encoding.UTF8.GetString(Convert.FromBase64String(value[0].Substring(6))); } } return null; }"#;
    assert_eq!(ok(src), "alice:s3cr3t");
    assert_eq!(
        ok(
            r#"@{ string[] v; return context.Request.Headers.TryGetValue("X-None", out v) + "/" + (v == null); }"#
        ),
        "False/True"
    );
    assert_eq!(
        ok(
            r#"@{ string id; context.Request.MatchedParameters.TryGetValue("id", out id); return id; }"#
        ),
        "42"
    );
    assert_eq!(
        ok(r#"@{ object o; return context.Variables.TryGetValue("nope", out o) ? "yes" : "no"; }"#),
        "no"
    );
}

#[test]
fn json_convert_members() {
    assert_eq!(
        ok(r#"@(JsonConvert.SerializeObject(new JObject { ["a"] = 1 }))"#),
        r#"{"a":1}"#
    );
    assert_eq!(ok(r#"@(JsonConvert.SerializeObject("x\"y"))"#), r#""x\"y""#);
    assert_eq!(
        ok(r#"@(JsonConvert.SerializeObject(new[] { 1, 2 }))"#),
        "[1,2]"
    );
    assert_eq!(
        ok(r#"@(JsonConvert.SerializeObject(new JObject { ["a"] = 1 }, Formatting.Indented))"#),
        "{\n  \"a\": 1\n}"
    );
    assert_eq!(
        ok(r#"@(JsonConvert.DeserializeObject<JObject>("{\"a\":{\"b\":2}}")["a"]["b"])"#),
        "2"
    );
    assert_eq!(
        ok(r#"@(((JObject)JsonConvert.DeserializeObject("{\"a\":1}"))["a"])"#),
        "1"
    );
    assert_eq!(
        run(r#"@(JsonConvert.DeserializeObject("{"))"#)
            .unwrap_err()
            .kind,
        ErrorKind::Format
    );
}

#[test]
fn guid_string_and_byte_array_constructors() {
    assert_eq!(
        ok(r#"@(new Guid("00000000-0000-0000-0000-000000000001").ToString())"#),
        "00000000-0000-0000-0000-000000000001"
    );
    assert_eq!(
        run(r#"@(new Guid("nope"))"#).unwrap_err().kind,
        ErrorKind::Format
    );
    assert_eq!(ok(r#"@(new string('a', 3))"#), "aaa");
    assert_eq!(
        ok(r#"@(new string("abc".ToCharArray().Reverse().ToArray()))"#),
        "cba"
    );
    assert_eq!(
        run(r#"@(new string('a', -1))"#).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    assert_eq!(
        ok(r#"@(Convert.ToBase64String(new byte[] { 1, 2, 255 }))"#),
        "AQL/"
    );
    assert_eq!(ok(r#"@(new byte[] { }.Length)"#), "0");
    assert_eq!(
        ok(
            r#"@(new HMACSHA256(new byte[] { 1, 2, 3 }).ComputeHash(Encoding.UTF8.GetBytes("x")).Length)"#
        ),
        "32"
    );
    assert_eq!(
        run(r#"@(new byte[] { 256 })"#).unwrap_err().kind,
        ErrorKind::Overflow
    );
}

#[test]
fn xml_linq_members() {
    let doc = r#"XDocument.Parse("<order id='7' xmlns='urn:x'><item sku='a'>2</item><item sku='b'>3</item><note>hi &amp; bye</note></order>")"#;
    assert_eq!(ok(&format!("@({doc}.Root.Name)")), "order");
    assert_eq!(ok(&format!("@({doc}.Root.Attribute(\"id\").Value)")), "7");
    assert_eq!(
        ok(&format!("@({doc}.Root.Element(\"note\").Value)")),
        "hi & bye"
    );
    assert_eq!(ok(&format!("@((string){doc}.Root.Element(\"item\"))")), "2");
    assert_eq!(
        ok(&format!("@({doc}.Root.Elements(\"item\").Count())")),
        "2"
    );
    assert_eq!(
        ok(&format!(
            "@(string.Join(\",\", {doc}.Descendants(\"item\").Select(e => e.Attribute(\"sku\").Value)))"
        )),
        "a,b"
    );
    assert_eq!(
        ok(&format!("@({doc}.Root.Element(\"missing\") == null)")),
        "True"
    );
    assert_eq!(ok(&format!("@({doc}.Root.Value)")), "23hi & bye");
    assert_eq!(ok(&format!("@({doc}.Root.HasElements)")), "True");
    assert_eq!(
        ok(r#"@(XElement.Parse("<a x=\"1\"><b>t</b><c /></a>").ToString())"#),
        "<a x=\"1\">\n  <b>t</b>\n  <c />\n</a>"
    );
    assert_eq!(
        ok(r#"@(XDocument.Parse("<a><b>1</b></a>").Root.Element("b").Value)"#),
        "1"
    );
    assert_eq!(
        run(r#"@(XDocument.Parse("<a><b></a>"))"#).unwrap_err().kind,
        ErrorKind::Format
    );
    let e = run(r#"@(XDocument.Parse("<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>"))"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Format);
    let deep = format!(
        "@(XDocument.Parse(\"{}{}\"))",
        "<a>".repeat(80),
        "</a>".repeat(80)
    );
    assert!(run(&deep).unwrap_err().message.contains("deeper"));
}

#[test]
fn byte_array_encrypt_and_decrypt() {
    // NIST SP 800-38A F.2.1 (CBC-AES128): the first block of the ciphertext.
    let key = r#"Convert.FromBase64String("K34VFiiu0qar9xWICc9PPA==")"#;
    let iv = r#"Convert.FromBase64String("AAECAwQFBgcICQoLDA0ODw==")"#;
    let plain = r#"Convert.FromBase64String("a8G+4i5An5bpPX4Rc5MXKg==")"#;
    assert_eq!(
        ok(&format!(
            r#"@(BitConverter.ToString({plain}.Encrypt("Aes", {key}, {iv})).Substring(0, 47))"#
        )),
        "76-49-AB-AC-81-19-B2-46-CE-E9-8E-9B-12-E9-19-7D"
    );
    // PKCS7 pads a full block with a whole block.
    assert_eq!(
        ok(&format!(
            r#"@({plain}.Encrypt("Rijndael", {key}, {iv}).Length)"#
        )),
        "32"
    );
    let round = format!(
        r#"@(Encoding.UTF8.GetString(Encoding.UTF8.GetBytes("secret text").Encrypt("Aes", {key}, {iv}).Decrypt("Aes", {key}, {iv})))"#
    );
    assert_eq!(ok(&round), "secret text");
    let bad_key = run(&format!(
        r#"@({plain}.Encrypt("Aes", new byte[] {{ 1 }}, {iv}))"#
    ))
    .unwrap_err();
    assert!(
        bad_key.message.contains("16, 24 or 32 bytes"),
        "{}",
        bad_key.message
    );
    let bad_alg = run(&format!(r#"@({plain}.Encrypt("DES", {key}, {iv}))"#)).unwrap_err();
    assert!(
        bad_alg.message.contains("'DES' is not supported"),
        "{}",
        bad_alg.message
    );
    let garbage = run(&format!(r#"@({plain}.Decrypt("Aes", {key}, {iv}))"#)).unwrap_err();
    assert_eq!(garbage.kind, ErrorKind::Format);
}

#[test]
fn body_as_xml() {
    let c = StaticContext {
        request_body: Some(b"<soap:Envelope xmlns:soap='urn:s'><soap:Body><Get id='5'/></soap:Body></soap:Envelope>".to_vec()),
        ..ctx()
    };
    let eval = |src: &str| {
        compile(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .eval(&c, &mut Budget::default())
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .to_policy_string()
    };
    assert_eq!(
        eval(
            r#"@(context.Request.Body.As<XElement>(preserveContent: true).Element("Body").Element("Get").Attribute("id").Value)"#
        ),
        "5"
    );
    assert_eq!(
        eval(r#"@(context.Request.Body.As<XDocument>().Root.Name)"#),
        "Envelope"
    );
    let e = compile_err(r#"@(context.Request.Body.As<Uri>())"#);
    assert!(e.to_string().contains("XDocument or XElement"), "{e}");
}

#[test]
fn string_builder_members() {
    assert_eq!(
        ok(
            r#"@{ var sb = new StringBuilder(); sb.Append("a").Append(1).Append(true); sb.AppendLine(); sb.AppendFormat("{0}-{1}", 2, "x"); return sb.ToString(); }"#
        ),
        "a1True\n2-x"
    );
    // A reference, as in .NET: both names see the change.
    assert_eq!(
        ok(
            r#"@{ var a = new System.Text.StringBuilder("x"); var b = a; b.Append("y"); return a.ToString() + a.Length; }"#
        ),
        "xy2"
    );
    assert_eq!(
        ok(
            r#"@{ var sb = new StringBuilder("hello"); sb.Insert(0, "[").Replace("l", "L").Append(']'); return sb.ToString(); }"#
        ),
        "[heLLo]"
    );
    assert_eq!(
        ok(r#"@{ var sb = new StringBuilder("abc"); sb.Clear(); return sb.Length; }"#),
        "0"
    );
    assert_eq!(
        run(r#"@(new StringBuilder("a").Insert(5, "x"))"#)
            .unwrap_err()
            .kind,
        ErrorKind::OutOfRange
    );
    // Appending is charged to the budget: a loop cannot grow it without bound.
    let e = compile(r#"@{ var sb = new StringBuilder(); while (sb.Length >= 0) { sb.Append("0123456789012345678901234567890123456789"); } return sb.ToString(); }"#).unwrap();
    assert_eq!(
        e.eval(&ctx(), &mut Budget::default()).unwrap_err().kind,
        ErrorKind::BudgetExceeded
    );
}

#[test]
fn as_form_url_encoded_content() {
    let c = StaticContext {
        request_body: Some(b"grant_type=client_credentials&scope=a+b&scope=c%2Fd".to_vec()),
        ..ctx()
    };
    let eval = |src: &str| {
        compile(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .eval(&c, &mut Budget::default())
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .to_policy_string()
    };
    assert_eq!(
        eval(
            r#"@(context.Request.Body.AsFormUrlEncodedContent(preserveContent: true)["grant_type"][0])"#
        ),
        "client_credentials"
    );
    assert_eq!(
        eval(r#"@(string.Join("|", context.Request.Body.AsFormUrlEncodedContent(true)["scope"]))"#),
        "a b|c/d"
    );
    assert_eq!(
        eval(r#"@(context.Request.Body.AsFormUrlEncodedContent().ContainsKey("nope"))"#),
        "False"
    );
    // Without a body there is nothing to read.
    assert_eq!(
        ok(r#"@(context.Request.Body?.AsFormUrlEncodedContent() == null)"#),
        "True"
    );
}

#[test]
fn list_add_and_count() {
    assert_eq!(
        ok(
            r#"@{ var l = new List<string>(); foreach (var p in "a,b,c".Split(',')) { if (p != "b") { l.Add(p.ToUpper()); } } return string.Join("+", l) + l.Count; }"#
        ),
        "A+C2"
    );
    assert_eq!(
        ok(r#"@{ var l = new List<int> { 1 }; l.Add(2); return l.Sum(); }"#),
        "3"
    );
    let e = compile_err(r#"@{ var l = new List<int>(); l.Add("x"); return l.Count; }"#);
    assert!(e.to_string().contains("Cannot implicitly convert"), "{e}");
    // Lists nested in lists are bounded like every other value.
    let deep = r#"@{ var l = new List<object>(); for (var i = 0; i < 500; i++) { var m = new List<object>(); m.Add(l); l = m; } return l.Count; }"#;
    let err = run(deep).unwrap_err();
    assert!(
        err.message.contains("nest") || err.kind == ErrorKind::BudgetExceeded,
        "{}",
        err.message
    );
}

#[test]
fn dictionary_changes_in_a_local() {
    assert_eq!(
        ok(
            r#"@{ var d = new Dictionary<string, string>(); d["a"] = "1"; d.Add("b", "2"); return (string)d["a"] + (string)d["b"] + d.Count; }"#
        ),
        "122"
    );
}
