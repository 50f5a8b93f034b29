//! Feeds arbitrary bytes to the backup file decoder (`Backup::decode`, what a gateway reads
//! from its backup volume at start-up): it must return, never panic or hang. The first byte
//! picks the mode: raw file content, or the rest as the payload of a well-formed envelope with
//! a matching checksum, which is the only way random input reaches the decryption and the
//! snapshot parser.

#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gatehouse_gateway::backup::Backup;
use gatehouse_model::token::GatewayToken;
use libfuzzer_sys::fuzz_target;

/// A backup sealed with a key from the gateway token and one with a backup key, opened once on
/// a directory of their own (opening a directory sweeps stale temporary files from it).
fn backups() -> &'static (Backup, Backup) {
    static BACKUPS: OnceLock<(Backup, Backup)> = OnceLock::new();
    BACKUPS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gh-fuzz-backup-{}", std::process::id()));
        let token = GatewayToken::parse("GatewayKey edge&209901010000&c2ln").expect("a token");
        let tokened = Backup::open(&dir, &token, None).expect("a temporary directory");
        let keyed = Backup::open(&dir, &token, Some(&STANDARD.encode([3u8; 32])))
            .expect("a valid key");
        (tokened, keyed)
    })
}

fuzz_target!(|data: &[u8]| {
    let (plain, keyed) = backups();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, rest);
        let sha256: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        serde_json::json!({
            "format": 2,
            "gatewayId": "edge",
            "revision": u64::from(mode >> 2),
            "createdAt": "",
            "keySource": if mode & 2 != 0 { "backupKey" } else { "gatewayToken" },
            "sha256": sha256,
            "payload": STANDARD.encode(rest),
        })
        .to_string()
        .into_bytes()
    };
    for backup in [plain, keyed] {
        if let Ok(snapshot) = backup.decode(u64::from(mode >> 2), &bytes) {
            assert!(mode % 2 == 0 || snapshot.revision == u64::from(mode >> 2));
        }
    }
});
