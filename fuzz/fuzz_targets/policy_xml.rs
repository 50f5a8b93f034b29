//! Policy documents: arbitrary text must compile to a document or to diagnostics with
//! positions, never panic or hang. When it compiles, running it against a request must not
//! panic either. The lenient pre-pass (expressions made strict XML before the parser reads them)
//! is checked on its own too: it leaves text without expressions as it is, and every offset of
//! what it writes maps back into the original text, in order.
#![no_main]

use gatehouse_policy::xml::Source;
use gatehouse_policy::{Mode, NoNamedValues, Scope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let src = Source::new(&text);
    let prepared = src.prepared();
    if !text.contains('@') {
        assert_eq!(prepared, text.as_ref(), "the pre-pass changed text without expressions");
    }
    let mut last = 0;
    for i in 0..=prepared.len() {
        let o = src.original_offset(i);
        assert!(o <= text.len() && o >= last, "offset {i} maps to {o}");
        last = o;
    }
    if let Err(e) = src.parse() {
        assert!(e.pos.line >= 1 && e.pos.column >= 1, "positions are 1-based: {e:?}");
    }
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
