//! Server settings: flags and environment variables (through clap) win over the settings file,
//! which wins over the defaults. The file is read with the `config` crate, so TOML, YAML and
//! JSON all work, with the flags' names as keys (`listen`, `gateway-listen`, …).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::Failure;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileSettings {
    pub data: Option<PathBuf>,
    pub listen: Option<String>,
    pub database: Option<String>,
    pub gateway_listen: Option<String>,
    pub backend_timeout: Option<String>,
    pub workers: Option<usize>,
    pub shutdown_grace: Option<String>,
    pub log_format: Option<String>,
    pub admin_token: Option<String>,
    pub secret_key: Option<String>,
    pub config_endpoint: Option<String>,
    pub token: Option<String>,
    pub backup_dir: Option<PathBuf>,
    pub backup_key: Option<String>,
    pub admin_listen: Option<String>,
    pub name: Option<String>,
    pub startup_timeout: Option<String>,
    pub poll_interval: Option<String>,
    pub long_poll: Option<bool>,
    pub heartbeat_interval: Option<String>,
    pub retry_max: Option<String>,
    pub portal_templates: Option<PathBuf>,
    pub portal_gateway_url: Option<Vec<String>>,
}

impl FileSettings {
    pub fn load(path: Option<&Path>) -> Result<Self, Failure> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        if !path.exists() {
            return Err(Failure::input(format!(
                "the settings file {} does not exist; fix --settings or GATEHOUSE_SETTINGS",
                path.display()
            )));
        }
        config::Config::builder()
            .add_source(config::File::from(path))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| {
                Failure::input(format!(
                    "the settings file {} is not valid: {e}; keys are the flags' names, such as listen or gateway-listen",
                    path.display()
                ))
            })
    }
}

/// Parses `30s`, `500ms`, `5m`, `1h` or a plain number of seconds.
pub fn parse_duration(what: &str, text: &str) -> Result<Duration, Failure> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let value: f64 = number.parse().map_err(|_| bad_duration(what, text))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => return Err(bad_duration(what, text)),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(bad_duration(what, text));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn bad_duration(what: &str, text: &str) -> Failure {
    Failure::input(format!(
        "{what} '{text}' is not a duration; write it like 30s, 500ms, 5m or 1h"
    ))
}

/// Parses a listen address such as `0.0.0.0:8080`, `[::1]:8080` or `localhost:8080`.
pub fn parse_addr(what: &str, text: &str) -> Result<std::net::SocketAddr, Failure> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            Failure::input(format!(
                "{what} '{text}' is not an address; write it like 127.0.0.1:8080 or [::1]:8080"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("t", "30s").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_duration("t", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("t", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("t", "7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("t", "soon").is_err());
        assert!(parse_duration("t", "5y").is_err());
        assert!(parse_duration("t", "-1s").is_err());
    }

    #[test]
    fn addresses() {
        assert!(parse_addr("a", "127.0.0.1:80").is_ok());
        assert!(parse_addr("a", "[::1]:80").is_ok());
        assert!(parse_addr("a", "nope").is_err());
    }
}
