//! Policy documents: arbitrary text must compile to a document or to diagnostics with
//! positions, never panic or hang. When it compiles, running it against a request must not
//! panic either.
#![no_main]

use gatehouse_policy::{Mode, NoNamedValues, Scope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for mode in [Mode::Strict, Mode::Offline] {
        let (doc, diags) = gatehouse_policy::compile::compile(&text, Scope::Api, &NoNamedValues, mode);
        if doc.is_none() {
            assert!(!diags.is_empty(), "a refused document must say why");
        }
        for d in &diags {
            assert!(d.line >= 1 && d.column >= 1, "positions are 1-based: {d}");
        }
    }
});
