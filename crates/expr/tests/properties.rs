//! Property tests: compiling never panics, evaluation never panics and stays within its
//! budget, and arithmetic matches C#'s (wrapping `int`/`long`, truncating division).

use std::time::SystemTime;

use gatehouse_expr::{self as expr, Budget, Context, Entity, ErrorKind, Field, Message, Value};
use proptest::prelude::*;

/// A context with nothing in it.
struct Empty;

impl Context for Empty {
    fn request_method(&self) -> std::borrow::Cow<'_, str> {
        "GET".into()
    }
    fn request_url(&self) -> std::borrow::Cow<'_, str> {
        "https://h/p?q=1".into()
    }
    fn ip_address(&self) -> std::borrow::Cow<'_, str> {
        "127.0.0.1".into()
    }
    fn header(&self, _: Message, name: &str) -> Option<String> {
        name.eq_ignore_ascii_case("x").then(|| "a,b".to_owned())
    }
    fn headers(&self, _: Message) -> Vec<(String, String)> {
        vec![("x".into(), "a,b".into())]
    }
    fn body(&self, _: Message, _: bool) -> Option<std::borrow::Cow<'_, [u8]>> {
        Some(br#"{"a":[1,2,{"b":"c"}]}"#.as_slice().into())
    }
    fn matched_parameter(&self, _: &str) -> Option<String> {
        None
    }
    fn matched_parameters(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn response_status(&self) -> Option<(u16, std::borrow::Cow<'_, str>)> {
        None
    }
    fn variable(&self, name: &str) -> Option<Value> {
        (name == "v").then(|| Value::from(7))
    }
    fn has(&self, _: Entity) -> bool {
        false
    }
    fn field(&self, _: Field) -> Option<std::borrow::Cow<'_, str>> {
        None
    }
    fn request_id(&self) -> uuid::Uuid {
        uuid::Uuid::nil()
    }
    fn timestamp(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
    }
}

/// Integer expressions with their expected value under C# `int` semantics (`None`: throws).
#[derive(Clone, Debug)]
enum IntExpr {
    Lit(i32),
    Neg(Box<IntExpr>),
    Bin(char, Box<IntExpr>, Box<IntExpr>),
    Cond(Box<IntExpr>, Box<IntExpr>, Box<IntExpr>),
}

impl IntExpr {
    fn source(&self) -> String {
        match self {
            Self::Lit(v) => format!("({v})"),
            Self::Neg(e) => format!("(-{})", e.source()),
            Self::Bin(op, a, b) => format!("({} {op} {})", a.source(), b.source()),
            Self::Cond(c, a, b) => {
                format!("({} > 0 ? {} : {})", c.source(), a.source(), b.source())
            }
        }
    }

    fn value(&self) -> Option<i32> {
        Some(match self {
            Self::Lit(v) => *v,
            Self::Neg(e) => e.value()?.wrapping_neg(),
            Self::Bin(op, a, b) => {
                let (x, y) = (a.value()?, b.value()?);
                match op {
                    '+' => x.wrapping_add(y),
                    '-' => x.wrapping_sub(y),
                    '*' => x.wrapping_mul(y),
                    '/' => x.checked_div(y)?,
                    _ => x.checked_rem(y)?,
                }
            }
            Self::Cond(c, a, b) => {
                if c.value()? > 0 {
                    a.value()?
                } else {
                    b.value()?
                }
            }
        })
    }
}

fn int_expr() -> impl Strategy<Value = IntExpr> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(IntExpr::Lit),
        (-3i32..4).prop_map(IntExpr::Lit)
    ];
    leaf.prop_recursive(6, 48, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| IntExpr::Neg(Box::new(e))),
            (
                prop::sample::select(vec!['+', '-', '*', '/', '%']),
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(op, a, b)| IntExpr::Bin(op, Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone(), inner).prop_map(|(c, a, b)| IntExpr::Cond(
                Box::new(c),
                Box::new(a),
                Box::new(b)
            )),
        ]
    })
}

/// Text that looks enough like C# to get past the lexer often.
fn csharpish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "@(",
        "@{",
        ")",
        "}",
        "(",
        "{",
        "[",
        "]",
        "context",
        ".",
        "?.",
        "Request",
        "Headers",
        "GetValueOrDefault",
        "\"x\"",
        "'a'",
        "$\"{",
        "@\"",
        "1",
        "2.5",
        "+",
        "-",
        "*",
        "/",
        "%",
        "==",
        "&&",
        "||",
        "!",
        "?",
        ":",
        "??",
        "=>",
        "h",
        "Any",
        "Where",
        "Select",
        "var",
        "=",
        ";",
        "return",
        "if",
        "else",
        "foreach",
        "in",
        "while",
        "(int)",
        "(string)",
        "As<JObject>",
        "Split",
        "','",
        "Length",
        "Substring",
        "Regex",
        "Match",
        "null",
        " ",
        "Variables",
        "[\"v\"]",
        "ToString",
        "out",
        "new",
        "JObject",
        "Parse",
        "Body",
        "Value<int>",
        "<",
        ">",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn compile_never_panics(src in any::<String>()) {
        let _ = expr::compile(&src);
        let _ = expr::compile(&format!("@({src})"));
        let _ = expr::compile(&format!("@{{ {src} }}"));
    }

    #[test]
    fn compile_and_eval_never_panic_on_csharpish_text(src in csharpish()) {
        if let Ok(e) = expr::compile(&src) {
            let mut budget = Budget::new(2_000);
            let _ = e.eval(&Empty, &mut budget);
            prop_assert!(budget.used() <= 2_001);
        }
        if let Ok(e) = expr::compile(&format!("@({src})")) {
            let _ = e.eval(&Empty, &mut Budget::new(2_000));
        }
    }

    #[test]
    fn compile_errors_point_into_the_text(src in csharpish()) {
        if let Err(e) = expr::compile(&src) {
            prop_assert!(e.offset <= src.len());
            prop_assert!(e.line >= 1 && e.column >= 1);
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn int_arithmetic_matches_csharp(e in int_expr()) {
        let src = format!("@({})", e.source());
        let compiled = expr::compile(&src).map_err(|err| TestCaseError::fail(format!("{src}: {err}")))?;
        let mut budget = Budget::default();
        match (compiled.eval(&Empty, &mut budget), e.value()) {
            (Ok(Value::Int(v)), Some(want)) => prop_assert_eq!(v, want, "{}", src),
            (Err(err), None) => prop_assert!(matches!(err.kind, ErrorKind::DivideByZero | ErrorKind::Overflow), "{}: {:?}", src, err),
            (got, want) => prop_assert!(false, "{}: got {:?}, want {:?}", src, got, want),
        }
    }

    #[test]
    fn long_arithmetic_wraps(a in any::<i64>(), b in any::<i64>()) {
        for (op, want) in [("+", a.wrapping_add(b)), ("-", a.wrapping_sub(b)), ("*", a.wrapping_mul(b))] {
            let src = format!("@(({a}L) {op} ({b}L))");
            let v = expr::compile(&src).map_err(|e| TestCaseError::fail(e.to_string()))?.eval(&Empty, &mut Budget::default());
            prop_assert_eq!(v, Ok(Value::Long(want)), "{}", src);
        }
    }

    #[test]
    fn doubles_round_trip_through_literals_and_to_string(d in any::<f64>().prop_filter("finite", |d| d.is_finite())) {
        let src = format!("@({d:?})");
        let v = expr::compile(&src).map_err(|e| TestCaseError::fail(e.to_string()))?.eval(&Empty, &mut Budget::default());
        let v = v.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&v, &Value::Double(d.abs().copysign(d)));
        let printed = v.to_policy_string();
        let back: f64 = printed.replace("E", "e").parse().map_err(|_| TestCaseError::fail(printed.clone()))?;
        prop_assert_eq!(back, d);
    }

    #[test]
    fn loops_stop_at_the_budget(limit in 1u64..20_000, n in 0u32..5_000) {
        let src = format!("@{{ var t = 0; for (var i = 0; i < {n}; i++) {{ t += i; }} return t; }}");
        let e = expr::compile(&src).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut budget = Budget::new(limit);
        match e.eval(&Empty, &mut budget) {
            Ok(v) => {
                prop_assert_eq!(v, Value::Int((0..n as i32).sum()));
                prop_assert!(budget.used() <= limit);
            }
            Err(err) => prop_assert_eq!(err.kind, ErrorKind::BudgetExceeded),
        }
    }
}

#[test]
fn deepest_allowed_nesting_is_refused_or_runs_within_a_bounded_stack() {
    // Release frames are what production runs: the deepest expressions must fit well within a
    // 2 MiB thread (tokio's default). Unoptimised frames are several times larger.
    let stack = if cfg!(debug_assertions) {
        32 << 20
    } else {
        1 << 20
    };
    let deep = vec![
        format!("@({}1{})", "(".repeat(60), ")".repeat(60)),
        format!("@(1{})", " + 1".repeat(120)),
        format!("@({}true)", "!".repeat(120)),
        format!("@(\"a\"{})", ".ToUpper()".repeat(60)),
        format!("@({}1{})", "-(".repeat(40), ")".repeat(40)),
        format!("@({}1{})", "Math.Max(1, ".repeat(30), ")".repeat(30)),
        format!(
            "@{{ {} return 1; {} }}",
            "if (true) {".repeat(28),
            "} else { return 2; }".repeat(28)
        ),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            for src in &deep {
                let e = expr::compile(src).unwrap_or_else(|e| panic!("{e}"));
                e.eval(&Empty, &mut Budget::default())
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        })
        .unwrap();
    handle.join().unwrap();
    for src in [
        format!("@({}1{})", "(".repeat(100_000), ")".repeat(100_000)),
        format!("@(1{})", " + 1".repeat(100_000)),
        format!("@({}1)", "-".repeat(100_000)),
        format!("@(x{})", "[0]".repeat(100_000)),
        format!("@($\"{}\")", "{$\"".repeat(1_000)),
        format!("@{{ {} }}", "{".repeat(100_000)),
    ] {
        let err = expr::compile(&src).unwrap_err();
        assert!(err.message.contains("nested too deeply"), "{}", err.message);
    }
}
