//! `docs/settings.md`, generated from the command line itself so it can never miss a setting:
//! every flag of the server commands with its environment variable, its settings-file key and
//! its default. A test compares the file with what the binary declares; run it with
//! `GATEHOUSE_UPDATE_DOCS=1` to rewrite the file after changing a flag.

use std::fmt::Write as _;

use clap::{Arg, Command, CommandFactory};

use crate::args::Cli;
use crate::settings::FileSettings;

/// The commands that run servers, in the order the page lists them.
const SERVERS: &[(&str, &str)] = &[
    (
        "up",
        "The control plane and a built-in gateway on one machine (`gatehouse up`).",
    ),
    (
        "control-plane",
        "The control plane alone (`gatehouse control-plane`), one or several replicas.",
    ),
    (
        "gateway",
        "A self-hosted gateway (`gatehouse gateway --config-endpoint … --token …`).",
    ),
];

/// Whether the settings file takes `key` (the flag's long name): the file's struct refuses
/// unknown keys, and every key it knows is optional, so an empty value parses.
fn file_key(key: &str) -> bool {
    let mut doc = serde_json::Map::new();
    doc.insert(key.to_owned(), serde_json::Value::Null);
    serde_json::from_value::<FileSettings>(serde_json::Value::Object(doc)).is_ok()
}

/// Every key the settings file takes, as serde lists them when it refuses an unknown one.
fn file_keys() -> Vec<String> {
    let mut doc = serde_json::Map::new();
    doc.insert("\u{1}".to_owned(), serde_json::Value::Null);
    let Err(e) = serde_json::from_value::<FileSettings>(serde_json::Value::Object(doc)) else {
        return Vec::new();
    };
    let message = e.to_string();
    let Some((_, expected)) = message.split_once("expected one of ") else {
        return Vec::new();
    };
    expected
        .split(", ")
        .map(|k| {
            k.trim_matches(|c: char| c == '`' || c.is_whitespace())
                .to_owned()
        })
        // Aliases such as `otlp_endpoint` are spelt with underscores; the keys with dashes.
        .filter(|k| !k.is_empty() && !k.contains('_'))
        .collect()
}

/// Settings with no flag: secrets, which do not belong on a command line. (key, environment
/// variable, commands, what it is.)
const WITHOUT_FLAG: &[(&str, &str, &str, &str)] = &[
    (
        "admin-token",
        "GATEHOUSE_ADMIN_TOKEN",
        "`up`, `control-plane`, management commands",
        "The admin token (at least 16 characters). Without it the control plane makes one and \
         keeps it in `admin-token` under `--data`. Every replica of a control plane needs the same.",
    ),
    (
        "secret-key",
        "GATEHOUSE_SECRET_KEY",
        "`up`, `control-plane`",
        "The key that encrypts secrets at rest (secret named values, subscription keys, \
         certificates' keys): the base64 of 32 random bytes (`head -c32 /dev/urandom | base64`). \
         Without it the control plane makes one and keeps it in `secret.key` under `--data`. \
         Every replica of a control plane needs the same.",
    ),
    (
        "backup-key",
        "GATEHOUSE_BACKUP_KEY",
        "`gateway`",
        "Encrypts the configuration backups in `--backup-dir`, which hold secrets: the base64 \
         of 32 random bytes. Without it the key is derived from the gateway token.",
    ),
];

/// The help text on one line, with its `[default: …]` taken out.
fn help_and_default(arg: &Arg) -> (String, Option<String>) {
    let help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut default = None;
    if let Some(start) = help.rfind("[default: ")
        && help.ends_with(']')
    {
        default = Some(help[start + "[default: ".len()..help.len() - 1].to_owned());
        help = help[..start].trim_end().to_owned();
    }
    let declared: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if default.is_none() && !declared.is_empty() {
        default = Some(declared.join(", "));
    }
    (help, default)
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn row(out: &mut String, arg: &Arg) {
    let Some(long) = arg.get_long() else { return };
    let (help, default) = help_and_default(arg);
    let env = arg
        .get_env()
        .map(|e| format!("`{}`", e.to_string_lossy()))
        .unwrap_or_else(|| "—".to_owned());
    let key = match long.strip_prefix("no-") {
        _ if file_key(long) => format!("`{long}`"),
        // A switch that turns something off is, in the file, the thing set to false.
        Some(positive) if file_key(positive) => format!("`{positive}: false`"),
        _ => "—".to_owned(),
    };
    let default = default.map(|d| cell(&d)).unwrap_or_else(|| "—".to_owned());
    let _ = writeln!(
        out,
        "| `--{long}` | {env} | {key} | {default} | {} |",
        cell(&help)
    );
}

fn table(out: &mut String, args: &[&Arg]) {
    out.push_str("| Flag | Environment | Settings file | Default | What it does |\n");
    out.push_str("|---|---|---|---|---|\n");
    for arg in args {
        row(out, arg);
    }
}

fn visible(command: &Command) -> Vec<&Arg> {
    command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set() && a.get_long().is_some())
        .filter(|a| !matches!(a.get_long(), Some("help" | "version")))
        .collect()
}

/// The page, as the command line declares it now.
pub fn settings_page() -> String {
    let cli = Cli::command();
    let mut out = String::new();
    out.push_str(
        "# Settings\n\n\
         <!-- Generated from the command line by `crates/cli/src/reference.rs`; do not edit.\n     \
         After changing a flag: GATEHOUSE_UPDATE_DOCS=1 cargo test -p gatehouse reference -->\n\n\
         Every server setting can be given three ways. A flag wins over its environment \
         variable, and the environment variable wins over the settings file (`--settings FILE`, \
         TOML, YAML or JSON, whose keys are the flags' names without the dashes). A setting \
         given nowhere takes its default. Durations are written like `30s`, `500ms` or `2m`; \
         sizes like `64KiB` or `100MiB`.\n\n\
         Settings marked as secrets (tokens, Redis URLs with a password, client secrets) are \
         better given through the environment or the settings file than on the command line, \
         where `ps` shows them.\n\n",
    );
    out.push_str(
        "## Every command\n\nThese apply to every command, the management commands included.\n\n",
    );
    let globals: Vec<&Arg> = cli
        .get_arguments()
        .filter(|a| a.is_global_set() && a.get_long().is_some())
        .collect();
    table(&mut out, &globals);
    for (name, about) in SERVERS {
        let Some(command) = cli.find_subcommand(name) else {
            continue;
        };
        let _ = write!(out, "\n## `gatehouse {name}`\n\n{about}\n\n");
        table(&mut out, &visible(command));
    }
    out.push_str(
        "\n## Secrets without a flag\n\nThese come only from the environment (in Kubernetes, a \
         Secret) or the settings file.\n\n\
         | Settings file | Environment | Commands | What it is |\n|---|---|---|---|\n",
    );
    for (key, env, commands, what) in WITHOUT_FLAG {
        let what = what.split_whitespace().collect::<Vec<_>>().join(" ");
        let _ = writeln!(out, "| `{key}` | `{env}` | {commands} | {} |", cell(&what));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/settings.md")
    }

    #[test]
    fn docs_settings_md_lists_every_setting_as_the_binary_declares_it() {
        let page = settings_page();
        if std::env::var_os("GATEHOUSE_UPDATE_DOCS").is_some() {
            std::fs::write(path(), &page).expect("write docs/settings.md");
        }
        let written = std::fs::read_to_string(path()).unwrap_or_default();
        assert!(
            written == page,
            "docs/settings.md is out of date with the command line; rewrite it with \
             GATEHOUSE_UPDATE_DOCS=1 cargo test -p gatehouse reference"
        );
    }

    #[test]
    fn the_page_has_every_server_flag_and_its_environment_variable() {
        let page = settings_page();
        let cli = Cli::command();
        let mut flags = 0;
        for (name, _) in SERVERS {
            let command = cli.find_subcommand(name).expect("server command");
            for arg in visible(command) {
                let long = arg.get_long().expect("long flag");
                assert!(page.contains(&format!("`--{long}`")), "--{long} missing");
                if let Some(env) = arg.get_env() {
                    let env = env.to_string_lossy();
                    assert!(page.contains(&format!("`{env}`")), "{env} missing");
                }
                flags += 1;
            }
        }
        assert!(flags > 60, "only {flags} flags found");
    }

    #[test]
    fn every_settings_file_key_is_on_the_page() {
        let page = settings_page();
        let keys = file_keys();
        assert!(keys.len() > 50, "only {} keys: {keys:?}", keys.len());
        for key in keys {
            assert!(
                page.contains(&format!("`{key}`")) || page.contains(&format!("`{key}: false`")),
                "the settings file takes `{key}`, which docs/settings.md does not show; \
                 give it a flag or add it to WITHOUT_FLAG"
            );
        }
    }

    #[test]
    fn settings_file_keys_are_recognised_and_others_are_not() {
        assert!(file_key("listen"));
        assert!(file_key("gateway-listen"));
        assert!(file_key("redis-timeout"));
        assert!(!file_key("no-such-setting"));
        // The settings file itself is named on the command line only.
        assert!(!file_key("settings"));
        assert!(
            settings_page()
                .contains("| `--no-long-poll` | `GATEHOUSE_NO_LONG_POLL` | `long-poll: false` |")
        );
    }

    #[test]
    fn defaults_come_from_the_help_text_or_the_declaration() {
        let page = settings_page();
        assert!(page.contains("| `--header-read-timeout` | `GATEHOUSE_HEADER_READ_TIMEOUT` | `header-read-timeout` | 10s |"));
        assert!(page.contains("| `--url` | `GATEHOUSE_URL` | — | http://127.0.0.1:8090 |"));
    }
}
