use gatehouse_policy::expr;
use gatehouse_policy::expr::Budget;
mod ctx {
    include!("properties_ctx.rs");
}
fn works(src: String, kb: usize, eval: bool) -> bool {
    // Run in a child process-like guard: we can't catch overflow, so probe via fork of test binary is complex;
    // instead use increasing depth and print before each try.
    println!("try {} bytes eval={eval}", src.len());
    std::thread::Builder::new()
        .stack_size(kb * 1024)
        .spawn(move || {
            let e = expr::compile(&src).unwrap();
            if eval {
                let _ = e.eval(&ctx::Empty, &mut Budget::default());
            }
        })
        .unwrap()
        .join()
        .is_ok()
}
#[test]
fn probe() {
    let kb: usize = std::env::var("KB").unwrap().parse().unwrap();
    let n: usize = std::env::var("N").unwrap().parse().unwrap();
    let eval = std::env::var("EVAL").is_ok();
    let form = std::env::var("FORM").unwrap();
    let src = match form.as_str() {
        "parens" => format!("@({}1{})", "(".repeat(n), ")".repeat(n)),
        "plus" => format!("@(1{})", " + 1".repeat(n)),
        "calls" => format!("@(\"a\"{})", ".ToUpper()".repeat(n)),
        _ => format!("@({}1{})", "Math.Max(1, ".repeat(n), ")".repeat(n)),
    };
    println!("result {}", works(src, kb, eval));
}
