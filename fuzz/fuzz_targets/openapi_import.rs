//! Feeds arbitrary text to the OpenAPI importer: it must return, never panic, hang or overflow
//! the stack, and what it accepts must hold up.

#![no_main]

use std::collections::HashSet;

use gatehouse_model::openapi::import;
use gatehouse_model::resources::validate_id;
use gatehouse_model::template::UrlTemplate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match import(&text) {
        Ok(api) => {
            let mut ids = HashSet::new();
            for op in &api.operations {
                assert!(
                    validate_id("operation", &op.id).is_ok(),
                    "bad id {:?}",
                    op.id
                );
                assert!(
                    ids.insert(op.id.to_ascii_lowercase()),
                    "duplicate id {:?}",
                    op.id
                );
                let template = UrlTemplate::parse(&op.url_template);
                assert!(template.is_ok(), "bad template {:?}", op.url_template);
            }
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            assert!(!e.details.is_empty());
        }
    }
});
