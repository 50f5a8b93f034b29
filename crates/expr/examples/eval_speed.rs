//! Evaluation time of typical existing expressions, to compare branches (issue #15 required
//! the library work not to slow them down): a measurement, not a check, so an example rather
//! than a test. Run it in release:
//! `cargo run --release -p gatehouse-expr --features test-util --example eval_speed`

#![allow(clippy::unwrap_used)]

use gatehouse_expr::testing::StaticContext;
use gatehouse_expr::{Budget, Value, compile};
fn main() {
    let ctx = StaticContext {
        method: "POST".into(),
        url: "https://api.example.com/a/b?x=1&x=2".into(),
        request_headers: vec![
            ("X-Id".into(), vec!["abc".into()]),
            ("Authorization".into(), vec!["Bearer x".into()]),
        ],
        request_body: Some(br#"{"n":1,"items":[1,2,3],"s":"t"}"#.to_vec()),
        variables: vec![
            ("count".into(), Value::Int(3)),
            ("name".into(), Value::String("bob".into())),
        ],
        ..StaticContext::default()
    };
    let cases = [
        r#"@(context.Request.Headers.GetValueOrDefault("X-Id", "none").ToUpper())"#,
        r#"@(context.Request.Method + "/" + context.Request.Url.Path)"#,
        r#"@((int)context.Variables["count"] * 2 > 5 ? "big" : "small")"#,
        r#"@(Regex.IsMatch(context.Request.Headers.GetValueOrDefault("X-Id", ""), "^[a-c]+$"))"#,
        r#"@(context.Request.Body.As<JObject>(preserveContent: true)["items"].Count())"#,
        r#"@{ var s = 0; for (var i = 0; i < 20; i++) { s += i; } return s.ToString(); }"#,
        r#"@(DateTime.UtcNow.AddSeconds(30).ToString("o").Length)"#,
        r#"@(string.Join(",", "a,b,c".Split(',').Select(x => x.ToUpper())))"#,
    ];
    for src in cases {
        let e = compile(src).unwrap();
        let n = 200_000u32;
        for _ in 0..1000 {
            let _ = e.eval(&ctx, &mut Budget::default());
        }
        let mut best = std::time::Duration::MAX;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            for _ in 0..n {
                let _ = std::hint::black_box(e.eval(&ctx, &mut Budget::default()));
            }
            best = best.min(t.elapsed() / n);
        }
        println!(
            "BENCH {:>6} ns  {}",
            best.as_nanos(),
            &src[..src.len().min(70)]
        );
    }
}
