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
    pub token_file: Option<PathBuf>,
    pub trusted_ca: Option<Vec<PathBuf>>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub https_listen: Option<String>,
    pub gateway_https_listen: Option<String>,
    pub gateway_tls_cert: Option<PathBuf>,
    pub gateway_tls_key: Option<PathBuf>,
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
    /// Also accepted as `otlp_endpoint`, the name OpenTelemetry users look for.
    #[serde(alias = "otlp_endpoint")]
    pub otlp_endpoint: Option<String>,
    pub gateway_admin_listen: Option<String>,
    pub access_log: Option<String>,
    pub metrics_subscription_labels: Option<bool>,
    pub telemetry_interval: Option<String>,
    pub telemetry_spool_size: Option<String>,
    pub location: Option<String>,
    pub telemetry_retention: Option<String>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub max_header_size: Option<String>,
    pub max_headers: Option<usize>,
    pub max_request_body: Option<String>,
    pub trusted_proxies: Option<String>,
    pub redis: Option<String>,
    pub redis_failure: Option<String>,
    pub redis_timeout: Option<String>,
    pub redis_batch_from: Option<u64>,
    pub identity_provider: Option<String>,
    pub identity_endpoint: Option<String>,
    pub identity_authority_host: Option<String>,
    pub identity_tenant_id: Option<String>,
    pub identity_client_id: Option<String>,
    pub identity_client_secret: Option<String>,
    pub identity_certificate: Option<PathBuf>,
    pub identity_token_file: Option<PathBuf>,
    pub identity_scope: Option<String>,
    pub dapr_http_endpoint: Option<String>,
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

/// Parses a size: bytes, or a number with KB, MB, GB (powers of 1000) or KiB, MiB, GiB.
pub fn parse_size(what: &str, text: &str) -> Result<u64, Failure> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || {
        Failure::input(format!(
            "{what} '{text}' is not a size; write it like 64MiB, 500MB or 1048576"
        ))
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let factor: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = value * factor;
    if !bytes.is_finite() || !(1.0..=1e15).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// The OTLP/HTTP collector that gateway traces go to, or `None` when tracing is off:
/// `--otlp-endpoint` or GATEHOUSE_OTLP_ENDPOINT, else `otlp-endpoint` in the settings file. An
/// empty value means off.
pub fn otlp_endpoint(flag: Option<&str>, file: &FileSettings) -> Result<Option<String>, Failure> {
    let (endpoint, source) = match flag.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => (e, "--otlp-endpoint or GATEHOUSE_OTLP_ENDPOINT"),
        None => match file.otlp_endpoint.as_deref().map(str::trim) {
            Some(e) if !e.is_empty() => (e, "otlp-endpoint in the settings file"),
            _ => return Ok(None),
        },
    };
    gatehouse_gateway::otel::traces_url(endpoint)
        .map_err(|e| Failure::input(format!("{e}, or leave {source} unset to turn tracing off")))?;
    Ok(Some(endpoint.to_owned()))
}

/// `--redis` and `--redis-failure` (flags and environment first, then the settings file), with
/// the `--trusted-ca` files as the CAs of `rediss://`. `None`: no Redis, each gateway counts
/// alone.
pub fn redis(
    args: &crate::args::RedisArgs,
    file: &FileSettings,
    trusted_ca: &[PathBuf],
) -> Result<Option<gatehouse_gateway::redis_link::RedisSettings>, Failure> {
    use gatehouse_gateway::redis_link::{FailureMode, RedisSettings, redact};
    let failure = match args
        .redis_failure
        .as_deref()
        .or(file.redis_failure.as_deref())
        .map(str::trim)
    {
        None | Some("open") => FailureMode::Open,
        Some("closed") => FailureMode::Closed,
        Some(other) => {
            return Err(Failure::input(format!(
                "--redis-failure '{other}' is not open or closed: open counts locally when Redis does not answer, closed answers 503"
            )));
        }
    };
    let timeout = match args
        .redis_timeout
        .as_deref()
        .or(file.redis_timeout.as_deref())
    {
        Some(t) => {
            let d = parse_duration("--redis-timeout", t)?;
            if d.is_zero() || d > Duration::from_secs(60) {
                return Err(Failure::input(format!(
                    "--redis-timeout '{t}' must be more than 0 and at most 60s, e.g. 50ms"
                )));
            }
            d
        }
        None => gatehouse_gateway::redis_link::TIMEOUT,
    };
    let Some(url) = args
        .redis
        .as_deref()
        .or(file.redis.as_deref())
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        return Ok(None);
    };
    if !url.starts_with("redis://") && !url.starts_with("rediss://") {
        return Err(Failure::input(format!(
            "--redis {} must start with redis:// (or rediss:// for TLS), e.g. redis://127.0.0.1:6379/0",
            redact(url)
        )));
    }
    let root_cert = if url.starts_with("rediss://") && !trusted_ca.is_empty() {
        let mut pem = Vec::new();
        for path in trusted_ca {
            let mut bytes = std::fs::read(path).map_err(|e| {
                Failure::input(format!(
                    "cannot read the CA file {} (--trusted-ca) for rediss://: {e}",
                    path.display()
                ))
            })?;
            pem.append(&mut bytes);
            pem.push(b'\n');
        }
        Some(pem)
    } else {
        None
    };
    Ok(Some(RedisSettings {
        url: url.to_owned(),
        failure,
        timeout,
        batch_from: args
            .redis_batch_from
            .or(file.redis_batch_from)
            .unwrap_or(gatehouse_gateway::redis_link::BATCH_FROM)
            .max(1),
        root_cert,
    }))
}

/// The token provider of `authentication-managed-identity` (`--identity-provider` and its
/// companions): flags and `GATEHOUSE_IDENTITY_…` first, then the settings file, then the
/// variables Azure's SDKs read (`AZURE_CLIENT_ID`, …), looked up through `env` so tests pass a
/// map. `None`: no provider.
pub fn identity(
    args: &crate::args::IdentityArgs,
    file: &FileSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<gatehouse_gateway::identity::Provider>, Failure> {
    use gatehouse_gateway::identity::{self as id, Provider, Secret};
    let text = |flag: &Option<String>, key: &Option<String>, azure: Option<&str>| {
        flag.clone()
            .or_else(|| key.clone())
            .or_else(|| azure.and_then(env))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let path = |flag: &Option<PathBuf>, key: &Option<PathBuf>, azure: &str| {
        flag.clone().or_else(|| key.clone()).or_else(|| {
            env(azure)
                .filter(|v| !v.trim().is_empty())
                .map(PathBuf::from)
        })
    };
    let Some(kind) = text(&args.identity_provider, &file.identity_provider, None) else {
        return Ok(None);
    };
    let kind = kind.to_ascii_lowercase();
    let need = |value: Option<String>, what: &str, flag: &str, azure: &str| {
        value.ok_or_else(|| {
            Failure::input(format!(
                "--identity-provider {kind} needs {what}: set {flag}{azure}"
            ))
        })
    };
    let url = |value: String, flag: &str| -> Result<String, Failure> {
        let lower = value.to_ascii_lowercase();
        if (lower.starts_with("http://") || lower.starts_with("https://"))
            && reqwest::Url::parse(&value).is_ok()
        {
            Ok(value)
        } else {
            Err(Failure::input(format!(
                "{flag} '{value}' is not an http:// or https:// URL"
            )))
        }
    };
    let client_id = text(
        &args.identity_client_id,
        &file.identity_client_id,
        Some("AZURE_CLIENT_ID"),
    );
    let tenant = || {
        need(
            text(
                &args.identity_tenant_id,
                &file.identity_tenant_id,
                Some("AZURE_TENANT_ID"),
            ),
            "a tenant",
            "--identity-tenant-id",
            " or AZURE_TENANT_ID",
        )
    };
    let authority = || {
        let host = text(
            &args.identity_authority_host,
            &file.identity_authority_host,
            Some("AZURE_AUTHORITY_HOST"),
        )
        .unwrap_or_else(|| id::AUTHORITY_HOST.to_owned());
        url(host, "--identity-authority-host")
    };
    let need_client = |c: Option<String>| {
        need(
            c,
            "a client id",
            "--identity-client-id",
            " or AZURE_CLIENT_ID",
        )
    };
    let secret = |c: Option<String>| {
        need(
            c,
            "a client secret",
            "--identity-client-secret (better GATEHOUSE_IDENTITY_CLIENT_SECRET or the settings file)",
            " or AZURE_CLIENT_SECRET",
        )
        .map(Secret::new)
    };
    let client_secret = text(
        &args.identity_client_secret,
        &file.identity_client_secret,
        Some("AZURE_CLIENT_SECRET"),
    );
    let provider = match kind.as_str() {
        "none" | "off" => return Ok(None),
        "imds" => Provider::Imds {
            endpoint: url(
                text(&args.identity_endpoint, &file.identity_endpoint, None)
                    .unwrap_or_else(|| id::IMDS_ENDPOINT.to_owned()),
                "--identity-endpoint",
            )?,
            client_id,
        },
        "workload-identity" => {
            let token_file = path(
                &args.identity_token_file,
                &file.identity_token_file,
                "AZURE_FEDERATED_TOKEN_FILE",
            )
            .ok_or_else(|| {
                Failure::input(
                    "--identity-provider workload-identity needs the federated token file: set --identity-token-file or AZURE_FEDERATED_TOKEN_FILE",
                )
            })?;
            if !token_file.is_file() {
                return Err(Failure::input(format!(
                    "the federated token file {} (--identity-token-file or AZURE_FEDERATED_TOKEN_FILE) does not exist",
                    token_file.display()
                )));
            }
            Provider::WorkloadIdentity {
                authority: authority()?,
                tenant: tenant()?,
                client_id: need_client(client_id)?,
                token_file,
            }
        }
        "client-secret" => Provider::ClientSecret {
            authority: authority()?,
            tenant: tenant()?,
            client_id: need_client(client_id)?,
            secret: secret(client_secret)?,
        },
        "client-certificate" => {
            let cert = path(
                &args.identity_certificate,
                &file.identity_certificate,
                "AZURE_CLIENT_CERTIFICATE_PATH",
            )
            .ok_or_else(|| {
                Failure::input(
                    "--identity-provider client-certificate needs a certificate: set --identity-certificate or AZURE_CLIENT_CERTIFICATE_PATH (a PEM file with the certificate and its private key)",
                )
            })?;
            Provider::ClientCertificate {
                authority: authority()?,
                tenant: tenant()?,
                client_id: need_client(client_id)?,
                certificate: id::ClientCertificate::load(&cert)
                    .map_err(|e| Failure::input(e.to_string()))?,
            }
        }
        "oauth2" => Provider::OAuth2 {
            token_url: url(
                need(
                    text(&args.identity_endpoint, &file.identity_endpoint, None),
                    "a token endpoint",
                    "--identity-endpoint",
                    "",
                )?,
                "--identity-endpoint",
            )?,
            client_id: need_client(client_id)?,
            secret: secret(client_secret)?,
            scope: text(&args.identity_scope, &file.identity_scope, None)
                .unwrap_or_else(|| id::DEFAULT_SCOPE.to_owned()),
        },
        other => {
            return Err(Failure::input(format!(
                "--identity-provider '{other}' is not one of none, imds, workload-identity, client-secret, client-certificate, oauth2"
            )));
        }
    };
    Ok(Some(provider))
}

/// [`identity`] from the process environment, ready for the gateway: fetching over the
/// gateway's outbound trust (the OS roots and `--trusted-ca`).
pub fn token_provider(
    args: &crate::args::IdentityArgs,
    file: &FileSettings,
    trusted_ca: &[PathBuf],
) -> Result<Option<std::sync::Arc<gatehouse_gateway::identity::TokenProvider>>, Failure> {
    let Some(provider) = identity(args, file, &|name| std::env::var(name).ok())? else {
        return Ok(None);
    };
    let tls = gatehouse_gateway::outbound_tls::reqwest_tls(trusted_ca)
        .map_err(|e| Failure::input(e.to_string()))?;
    let provider = gatehouse_gateway::identity::TokenProvider::new(provider, tls)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    tracing::info!(
        provider = provider.kind(),
        "authentication-managed-identity gets tokens from this provider"
    );
    Ok(Some(std::sync::Arc::new(provider)))
}

/// The Dapr sidecar's HTTP API: `--dapr-http-endpoint` (or `GATEHOUSE_DAPR_HTTP_ENDPOINT`),
/// then the settings file, then the variables Dapr's own SDKs read (`DAPR_HTTP_ENDPOINT`, then
/// `DAPR_HTTP_PORT` on 127.0.0.1), looked up through `env` so tests pass a map; else Azure's
/// `http://localhost:3500`.
pub fn dapr_endpoint(
    flag: Option<&str>,
    file: &FileSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Failure> {
    let given = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let (endpoint, from) = if let Some(v) = given(flag.map(str::to_owned)) {
        (v, "--dapr-http-endpoint")
    } else if let Some(v) = given(file.dapr_http_endpoint.clone()) {
        (v, "dapr-http-endpoint in the settings file")
    } else if let Some(v) = given(env("DAPR_HTTP_ENDPOINT")) {
        (v, "DAPR_HTTP_ENDPOINT")
    } else if let Some(port) = given(env("DAPR_HTTP_PORT")) {
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
            Failure::input(format!(
                "DAPR_HTTP_PORT '{port}' is not a port number; set it to the Dapr sidecar's HTTP port, such as 3500"
            ))
        })?;
        (format!("http://127.0.0.1:{port}"), "DAPR_HTTP_PORT")
    } else {
        return Ok(gatehouse_policy::policies::DAPR_DEFAULT_ENDPOINT.to_owned());
    };
    let endpoint = endpoint.trim_end_matches('/').to_owned();
    gatehouse_model::resources::check_http_url(&endpoint)
        .and_then(|()| {
            if endpoint.contains('?') {
                Err(format!("'{endpoint}' must not have a query"))
            } else {
                Ok(())
            }
        })
        .map_err(|e| {
            Failure::input(format!(
                "{from}: {e}; give the Dapr sidecar's HTTP address, such as http://localhost:3500"
            ))
        })?;
    Ok(endpoint)
}

/// The listeners' timeouts and caps: flags and environment first, then the settings file.
pub fn listener_limits(
    args: &crate::args::ListenerArgs,
    file: &FileSettings,
) -> Result<gatehouse_gateway::listener::ListenerLimits, Failure> {
    let mut limits = gatehouse_gateway::listener::ListenerLimits::default();
    let positive = |what: &str, d: Duration| {
        if d.is_zero() {
            Err(Failure::input(format!("{what} must be longer than 0s")))
        } else {
            Ok(d)
        }
    };
    if let Some(t) = args
        .header_read_timeout
        .as_deref()
        .or(file.header_read_timeout.as_deref())
    {
        limits.header_read_timeout = positive(
            "--header-read-timeout",
            parse_duration("--header-read-timeout", t)?,
        )?;
    }
    if let Some(t) = args
        .idle_timeout
        .as_deref()
        .or(file.idle_timeout.as_deref())
    {
        limits.idle_timeout = positive("--idle-timeout", parse_duration("--idle-timeout", t)?)?;
    }
    if let Some(n) = args.max_connections.or(file.max_connections) {
        if n == 0 {
            return Err(Failure::input("--max-connections must be at least 1"));
        }
        limits.max_connections = n;
    }
    if let Some(t) = args
        .max_header_size
        .as_deref()
        .or(file.max_header_size.as_deref())
    {
        let size = parse_size("--max-header-size", t)?;
        let min = gatehouse_gateway::listener::MIN_HEADER_SIZE as u64;
        if size < min {
            return Err(Failure::input(format!(
                "--max-header-size '{t}' is below the smallest the server can use, 8KiB"
            )));
        }
        limits.max_header_size = usize::try_from(size).unwrap_or(usize::MAX);
    }
    if let Some(n) = args.max_headers.or(file.max_headers) {
        if n == 0 {
            return Err(Failure::input("--max-headers must be at least 1"));
        }
        limits.max_headers = n;
    }
    Ok(limits)
}

/// The gateway's largest request body in bytes; `u64::MAX` for no limit.
pub fn max_request_body(
    args: &crate::args::ListenerArgs,
    file: &FileSettings,
) -> Result<u64, Failure> {
    match args
        .max_request_body
        .as_deref()
        .or(file.max_request_body.as_deref())
        .map(str::trim)
    {
        None | Some("none") => Ok(u64::MAX),
        Some(text) => parse_size("--max-request-body", text),
    }
}

/// The proxies whose `X-Forwarded-For` the gateway believes, parsed once at startup.
pub fn trusted_proxies(
    flag: Option<&str>,
    file: &FileSettings,
) -> Result<std::sync::Arc<[gatehouse_gateway::forwarded::Cidr]>, Failure> {
    let text = flag.or(file.trusted_proxies.as_deref()).unwrap_or("");
    gatehouse_gateway::forwarded::Cidr::parse_list(text)
        .map_err(|e| Failure::input(format!("--trusted-proxies: {e}")))
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

    /// The Dapr sidecar from the flag, the settings file, then Dapr's own variables (a map
    /// stands in for the environment), else Azure's default.
    #[test]
    fn the_dapr_sidecar_comes_from_the_flag_the_file_then_daprs_variables() {
        fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        }
        let none = FileSettings::default();
        assert_eq!(
            dapr_endpoint(None, &none, &env(&[])).unwrap(),
            "http://localhost:3500"
        );
        assert_eq!(
            dapr_endpoint(None, &none, &env(&[("DAPR_HTTP_PORT", "3601")])).unwrap(),
            "http://127.0.0.1:3601"
        );
        let both = env(&[
            ("DAPR_HTTP_PORT", "3601"),
            ("DAPR_HTTP_ENDPOINT", "http://dapr.local:3500/"),
        ]);
        assert_eq!(
            dapr_endpoint(None, &none, &both).unwrap(),
            "http://dapr.local:3500"
        );
        let file = FileSettings {
            dapr_http_endpoint: Some("http://from-file:1".into()),
            ..FileSettings::default()
        };
        assert_eq!(
            dapr_endpoint(None, &file, &both).unwrap(),
            "http://from-file:1"
        );
        assert_eq!(
            dapr_endpoint(Some("https://flag:2"), &file, &both).unwrap(),
            "https://flag:2"
        );
        for (flag, env_vars, wanted) in [
            (Some("localhost:3500"), &[][..], "--dapr-http-endpoint"),
            (Some("http://d:1/?x=1"), &[][..], "query"),
            (
                None,
                &[("DAPR_HTTP_PORT", "web")][..],
                "DAPR_HTTP_PORT 'web'",
            ),
        ] {
            let e = dapr_endpoint(flag, &none, &env(env_vars)).unwrap_err();
            assert!(e.message.contains(wanted), "{flag:?}: {}", e.message);
        }
    }

    /// The token provider from flags, the settings file and Azure's variables (a map stands in
    /// for the environment).
    #[test]
    fn identity_comes_from_flags_then_the_file_then_azure_variables() {
        use crate::args::IdentityArgs;
        use gatehouse_gateway::identity::Provider;
        let none = FileSettings::default();
        let no_env = |_: &str| None;
        assert!(
            identity(&IdentityArgs::default(), &none, &no_env)
                .unwrap()
                .is_none()
        );

        let imds = IdentityArgs {
            identity_provider: Some("imds".into()),
            ..IdentityArgs::default()
        };
        match identity(&imds, &none, &no_env).unwrap() {
            Some(Provider::Imds {
                endpoint,
                client_id,
            }) => {
                assert_eq!(endpoint, gatehouse_gateway::identity::IMDS_ENDPOINT);
                assert_eq!(client_id, None);
            }
            other => panic!("{other:?}"),
        }

        // Workload identity as AKS sets it up: everything from AZURE_* variables.
        let dir = std::env::temp_dir().join(format!("gh-settings-wi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token_file = dir.join("token");
        std::fs::write(&token_file, "jwt").unwrap();
        let azure: std::collections::HashMap<&str, String> = [
            ("AZURE_CLIENT_ID", "client-a".to_owned()),
            ("AZURE_TENANT_ID", "tenant-a".to_owned()),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            (
                "AZURE_AUTHORITY_HOST",
                "https://login.microsoftonline.us/".to_owned(),
            ),
        ]
        .into();
        let env = |k: &str| azure.get(k).cloned();
        let file = FileSettings {
            identity_provider: Some("workload-identity".into()),
            ..FileSettings::default()
        };
        match identity(&IdentityArgs::default(), &file, &env).unwrap() {
            Some(Provider::WorkloadIdentity {
                authority,
                tenant,
                client_id,
                token_file: f,
            }) => {
                assert_eq!(authority, "https://login.microsoftonline.us/");
                assert_eq!(
                    (tenant.as_str(), client_id.as_str()),
                    ("tenant-a", "client-a")
                );
                assert_eq!(f, token_file);
            }
            other => panic!("{other:?}"),
        }
        // The file wins over Azure's variables, a flag over the file.
        let file = FileSettings {
            identity_provider: Some("workload-identity".into()),
            identity_client_id: Some("client-file".into()),
            identity_tenant_id: Some("tenant-file".into()),
            ..FileSettings::default()
        };
        let flags = IdentityArgs {
            identity_client_id: Some("client-flag".into()),
            ..IdentityArgs::default()
        };
        match identity(&flags, &file, &env).unwrap() {
            Some(Provider::WorkloadIdentity {
                tenant, client_id, ..
            }) => {
                assert_eq!(
                    (tenant.as_str(), client_id.as_str()),
                    ("tenant-file", "client-flag")
                );
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);

        // What is missing is named, with where to set it.
        for (kind, needle) in [
            ("client-secret", "--identity-tenant-id or AZURE_TENANT_ID"),
            (
                "workload-identity",
                "--identity-token-file or AZURE_FEDERATED_TOKEN_FILE",
            ),
            (
                "client-certificate",
                "--identity-certificate or AZURE_CLIENT_CERTIFICATE_PATH",
            ),
            ("oauth2", "needs a token endpoint: set --identity-endpoint"),
            ("kerberos", "is not one of none, imds"),
        ] {
            let args = IdentityArgs {
                identity_provider: Some(kind.into()),
                ..IdentityArgs::default()
            };
            let e = identity(&args, &none, &no_env).unwrap_err();
            assert!(e.message.contains(needle), "{kind}: {}", e.message);
            assert_eq!(e.code, 2);
        }
        let oauth2 = IdentityArgs {
            identity_provider: Some("oauth2".into()),
            identity_endpoint: Some("ftp://idp/token".into()),
            identity_client_id: Some("c".into()),
            identity_client_secret: Some("s".into()),
            ..IdentityArgs::default()
        };
        let e = identity(&oauth2, &none, &no_env).unwrap_err();
        assert!(
            e.message.contains("is not an http:// or https:// URL"),
            "{}",
            e.message
        );
        // Keys of the settings file.
        let parsed: FileSettings = serde_json::from_str(
            r#"{"identity-provider": "oauth2", "identity-endpoint": "https://idp/token", "identity-client-id": "c", "identity-client-secret": "s", "identity-scope": "{resource}.read"}"#,
        )
        .unwrap();
        match identity(&IdentityArgs::default(), &parsed, &no_env).unwrap() {
            Some(Provider::OAuth2 {
                token_url, scope, ..
            }) => {
                assert_eq!(
                    (token_url.as_str(), scope.as_str()),
                    ("https://idp/token", "{resource}.read")
                );
            }
            other => panic!("{other:?}"),
        }
    }

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
    fn otlp_endpoints() {
        let none = FileSettings::default();
        assert_eq!(otlp_endpoint(None, &none).unwrap(), None);
        assert_eq!(otlp_endpoint(Some(" "), &none).unwrap(), None);
        assert_eq!(
            otlp_endpoint(Some("http://127.0.0.1:4318"), &none).unwrap(),
            Some("http://127.0.0.1:4318".to_owned())
        );

        let dir = std::env::temp_dir().join(format!("gh-settings-otlp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in [
            (
                "kebab.toml",
                "otlp-endpoint = \"https://otel.example.com\"\n",
            ),
            (
                "snake.toml",
                "otlp_endpoint = \"https://otel.example.com\"\n",
            ),
            ("snake.yaml", "otlp_endpoint: https://otel.example.com\n"),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            let file = FileSettings::load(Some(&path)).unwrap();
            assert_eq!(
                otlp_endpoint(None, &file).unwrap().as_deref(),
                Some("https://otel.example.com"),
                "{name}"
            );
            // The flag (or its environment variable) wins over the file.
            assert_eq!(
                otlp_endpoint(Some("http://collector:4318"), &file)
                    .unwrap()
                    .as_deref(),
                Some("http://collector:4318")
            );
        }
        let _ = std::fs::remove_dir_all(&dir);

        let bad = otlp_endpoint(Some("collector:4318"), &none).unwrap_err();
        assert_eq!(bad.code, 2);
        assert!(
            bad.message.contains("http:// or https://"),
            "{}",
            bad.message
        );
        assert!(
            bad.message.contains("GATEHOUSE_OTLP_ENDPOINT"),
            "{}",
            bad.message
        );
        let file = FileSettings {
            otlp_endpoint: Some("udp://collector".into()),
            ..FileSettings::default()
        };
        let bad = otlp_endpoint(None, &file).unwrap_err();
        assert!(bad.message.contains("settings file"), "{}", bad.message);
    }

    #[test]
    fn redis_comes_from_flags_then_the_file() {
        use crate::args::RedisArgs;
        use gatehouse_gateway::redis_link::FailureMode;
        let none = FileSettings::default();
        assert!(redis(&RedisArgs::default(), &none, &[]).unwrap().is_none());
        let file = FileSettings {
            redis: Some("redis://u:pw@10.0.0.5:6379/2".into()),
            redis_failure: Some("closed".into()),
            redis_timeout: Some("200ms".into()),
            redis_batch_from: Some(500),
            ..FileSettings::default()
        };
        let r = redis(&RedisArgs::default(), &file, &[]).unwrap().unwrap();
        assert_eq!(r.url, "redis://u:pw@10.0.0.5:6379/2");
        assert_eq!(r.failure, FailureMode::Closed);
        assert_eq!(r.timeout, Duration::from_millis(200));
        assert_eq!(r.batch_from, 500);
        let flags = RedisArgs {
            redis: Some("rediss://cache:6380".into()),
            redis_failure: Some("open".into()),
            redis_timeout: None,
            redis_batch_from: Some(7),
        };
        let r = redis(&flags, &file, &[]).unwrap().unwrap();
        assert_eq!(r.url, "rediss://cache:6380");
        assert_eq!(r.failure, FailureMode::Open);
        assert_eq!(
            r.timeout,
            Duration::from_millis(200),
            "the file's, no flag given"
        );
        assert_eq!(r.batch_from, 7);
        let defaults = RedisArgs {
            redis: Some("redis://h".into()),
            ..RedisArgs::default()
        };
        let r = redis(&defaults, &none, &[]).unwrap().unwrap();
        assert_eq!(
            (r.failure, r.timeout, r.batch_from),
            (FailureMode::Open, Duration::from_millis(50), 10_000)
        );
        let bad_scheme = RedisArgs {
            redis: Some("http://u:topsecret@h".into()),
            ..RedisArgs::default()
        };
        let e = redis(&bad_scheme, &none, &[]).unwrap_err().message;
        assert!(e.contains("redis://") && !e.contains("topsecret"), "{e}");
        let bad_mode = RedisArgs {
            redis: Some("redis://h".into()),
            redis_failure: Some("sometimes".into()),
            ..RedisArgs::default()
        };
        assert!(
            redis(&bad_mode, &none, &[])
                .unwrap_err()
                .message
                .contains("open or closed")
        );
    }

    #[test]
    fn listener_limits_come_from_flags_then_the_file() {
        use crate::args::ListenerArgs;
        let none = FileSettings::default();
        let defaults = listener_limits(&ListenerArgs::default(), &none).unwrap();
        assert_eq!(
            defaults,
            gatehouse_gateway::listener::ListenerLimits::default()
        );
        let file = FileSettings {
            header_read_timeout: Some("3s".into()),
            max_headers: Some(50),
            ..FileSettings::default()
        };
        let flags = ListenerArgs {
            header_read_timeout: Some("2s".into()),
            max_header_size: Some("16KiB".into()),
            ..ListenerArgs::default()
        };
        let l = listener_limits(&flags, &file).unwrap();
        assert_eq!(l.header_read_timeout, Duration::from_secs(2));
        assert_eq!(l.max_headers, 50);
        assert_eq!(l.max_header_size, 16 * 1024);
        for bad in [
            ListenerArgs {
                max_header_size: Some("4KiB".into()),
                ..ListenerArgs::default()
            },
            ListenerArgs {
                idle_timeout: Some("0s".into()),
                ..ListenerArgs::default()
            },
            ListenerArgs {
                max_connections: Some(0),
                ..ListenerArgs::default()
            },
        ] {
            assert_eq!(listener_limits(&bad, &none).unwrap_err().code, 2);
        }
        assert_eq!(
            max_request_body(&ListenerArgs::default(), &none).unwrap(),
            u64::MAX
        );
        let capped = ListenerArgs {
            max_request_body: Some("1MiB".into()),
            ..ListenerArgs::default()
        };
        assert_eq!(max_request_body(&capped, &none).unwrap(), 1024 * 1024);
        let bad = ListenerArgs {
            max_request_body: Some("lots".into()),
            ..ListenerArgs::default()
        };
        assert!(max_request_body(&bad, &none).is_err());
        assert_eq!(trusted_proxies(None, &none).unwrap().len(), 0);
        assert_eq!(
            trusted_proxies(Some("10.0.0.0/8, 127.0.0.1"), &none)
                .unwrap()
                .len(),
            2
        );
        let bad = trusted_proxies(Some("10.0.0.0/40"), &none).unwrap_err();
        assert!(bad.message.contains("--trusted-proxies"), "{}", bad.message);
    }

    #[test]
    fn addresses() {
        assert!(parse_addr("a", "127.0.0.1:80").is_ok());
        assert!(parse_addr("a", "[::1]:80").is_ok());
        assert!(parse_addr("a", "nope").is_err());
    }
}
