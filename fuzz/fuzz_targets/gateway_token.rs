//! Feeds arbitrary text to the gateway token parser (`GatewayKey <id>&<yyyyMMddHHmm>&<sig>`,
//! what a self-hosted gateway presents to its control plane): it must return, never panic or
//! hang, and a token it accepts must format back to the same token.

#![no_main]

use gatehouse_model::token::GatewayToken;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(t) = GatewayToken::parse(&text) {
        assert!(!t.gateway_id.is_empty() && !t.signature.is_empty());
        assert_eq!(t.expiry_text.len(), 12);
        assert_eq!(t.expiry_rfc3339().len(), 20);
        let again = GatewayToken::format(&t.gateway_id, &t.expiry_text, &t.signature);
        assert_eq!(GatewayToken::parse(&again), Ok(t));
    }
});
