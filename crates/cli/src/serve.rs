//! The server commands: build the control plane and the built-in gateway, run them, and shut
//! them down gracefully on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use gatehouse_control::{BUILT_IN_GATEWAY, ControlPlane, ControlSettings, Opened, Update};
use gatehouse_gateway::forwarded::Cidr;
use gatehouse_gateway::{ConfigHandle, GatewaySettings, RunningGateway};
use gatehouse_model::snapshot::Snapshot;

use std::time::Duration;

use gatehouse_gateway::status::{Source, Status};
use gatehouse_gateway::telemetry::{AccessLog, Telemetry, TelemetrySettings};
use gatehouse_gateway::upload::{DeliveryError, Sink, UploadSettings, Uploader};

use crate::Failure;
use crate::args::{ControlPlaneArgs, Global, ServerArgs, TelemetryArgs, UpArgs};
use crate::settings::{FileSettings, parse_addr, parse_duration, parse_size};

/// The telemetry settings of a gateway, its upload interval and its spool's size.
fn telemetry_settings(
    args: &TelemetryArgs,
    file: &FileSettings,
    otlp_flag: Option<&str>,
    gateway_id: &str,
    instance: &str,
) -> Result<(TelemetrySettings, Duration, u64), Failure> {
    let tracing = match crate::settings::otlp_endpoint(otlp_flag, file)? {
        Some(endpoint) => Some(
            gatehouse_gateway::otel::Tracing::start(&gatehouse_gateway::otel::OtlpSettings {
                endpoint,
                service_name: "gatehouse".to_owned(),
                gateway_id: gateway_id.to_owned(),
                instance: instance.to_owned(),
            })
            .map_err(|e| Failure::input(format!("--otlp-endpoint: {e}")))?,
        ),
        None => None,
    };
    let access_log = match args.access_log.as_deref().or(file.access_log.as_deref()) {
        Some(text) => text
            .parse::<AccessLog>()
            .map_err(|e| Failure::input(format!("--access-log: {e}")))?,
        None => AccessLog::Json,
    };
    let interval = parse_duration(
        "--telemetry-interval",
        args.telemetry_interval
            .as_deref()
            .or(file.telemetry_interval.as_deref())
            .unwrap_or("10s"),
    )?;
    if interval < Duration::from_millis(100) {
        return Err(Failure::input(
            "--telemetry-interval must be at least 100ms",
        ));
    }
    let spool = parse_size(
        "--telemetry-spool-size",
        args.telemetry_spool_size
            .as_deref()
            .or(file.telemetry_spool_size.as_deref())
            .unwrap_or("64MiB"),
    )?;
    let settings = TelemetrySettings {
        access_log,
        subscription_labels: args.metrics_subscription_labels
            || file.metrics_subscription_labels.unwrap_or(false),
        location: args
            .location
            .clone()
            .or_else(|| file.location.clone())
            .unwrap_or_default(),
        tracing,
        ..TelemetrySettings::default()
    };
    Ok((settings, interval, spool))
}

/// The built-in gateway's telemetry goes straight into the control plane's store: the same
/// batches, spool and de-duplication as a self-hosted gateway's, without the HTTP hop.
struct InProcess(Arc<ControlPlane>);

impl Sink for InProcess {
    fn deliver(
        &self,
        batch: bytes::Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), DeliveryError>> + Send + '_>>
    {
        Box::pin(async move {
            let parsed: gatehouse_model::telemetry::Batch = serde_json::from_slice(&batch)
                .map_err(|e| DeliveryError::Rejected(format!("unreadable batch: {e}")))?;
            self.0
                .ingest_telemetry(BUILT_IN_GATEWAY, &parsed)
                .await
                .map(|_| ())
                .map_err(|e| match e {
                    gatehouse_control::ServiceError::Invalid(v) => {
                        DeliveryError::Rejected(v.to_string())
                    }
                    other => DeliveryError::Retry(other.to_string()),
                })
        })
    }
}

fn init_logging(format: Option<&str>) -> Result<(), Failure> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colour only for a person at a terminal, never into a file or a pipe.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format.unwrap_or("text") {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => {
            return Err(Failure::input(format!(
                "log format '{other}' is unknown; use text or json"
            )));
        }
    }
    Ok(())
}

fn prepare_data_dir(dir: &PathBuf) -> Result<(), Failure> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Failure::runtime(format!(
            "cannot create the data directory {}: {e}; pass --data with a writable directory",
            dir.display()
        ))
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

struct Common {
    data: PathBuf,
    /// The control plane's TLS, when --tls-cert is given.
    control_tls: Option<Arc<gatehouse_tls::server::ServerTls>>,
    limits: gatehouse_gateway::listener::ListenerLimits,
    trusted_proxies: Arc<[Cidr]>,
    telemetry: gatehouse_control::TelemetrySettings,
    control_addr: SocketAddr,
    control: ControlSettings,
    file: FileSettings,
}

fn common(global: &Global, server: &ServerArgs, default_listen: &str) -> Result<Common, Failure> {
    let file = FileSettings::load(server.settings.as_deref())?;
    init_logging(server.log_format.as_deref().or(file.log_format.as_deref()))?;
    let data = global
        .data
        .clone()
        .or_else(|| file.data.clone())
        .unwrap_or_else(|| PathBuf::from("gatehouse-data"));
    let listen = server
        .listen
        .clone()
        .or_else(|| file.listen.clone())
        .unwrap_or_else(|| default_listen.to_owned());
    let control_addr = parse_addr("--listen", &listen)?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let control = ControlSettings {
        data_dir: data.clone(),
        admin_token: env("GATEHOUSE_ADMIN_TOKEN").or_else(|| file.admin_token.clone()),
        secret_key: env("GATEHOUSE_SECRET_KEY").or_else(|| file.secret_key.clone()),
    };
    let mut telemetry = gatehouse_control::TelemetrySettings::default();
    if let Some(text) = server
        .telemetry_retention
        .as_deref()
        .or(file.telemetry_retention.as_deref())
    {
        let days = parse_duration("--telemetry-retention", text)?.as_secs() / 86_400;
        if !(1..=3650).contains(&days) {
            return Err(Failure::input(format!(
                "--telemetry-retention '{text}' must be between 1d and 3650d"
            )));
        }
        telemetry.retention_days = days as u32;
    }
    let control_tls = match (
        server.tls_cert.as_deref().or(file.tls_cert.as_deref()),
        server.tls_key.as_deref().or(file.tls_key.as_deref()),
    ) {
        (Some(cert), Some(key)) => {
            let tls = gatehouse_tls::server::ServerTls::from_files(cert, key, true)
                .map_err(|e| Failure::input(format!("{e} (from --tls-cert and --tls-key)")))?;
            tls.watch_files(CERTIFICATE_CHECK);
            Some(tls)
        }
        (None, None) => {
            warn_if_exposed(
                control_addr,
                "control plane",
                "pass --tls-cert and --tls-key, or listen on 127.0.0.1 behind a TLS proxy",
            );
            None
        }
        _ => {
            return Err(Failure::input(
                "--tls-cert and --tls-key go together: give both, or neither",
            ));
        }
    };
    Ok(Common {
        control_tls,
        limits: crate::settings::listener_limits(&server.limits, &file)?,
        trusted_proxies: crate::settings::trusted_proxies(
            server.trusted_proxies.as_deref(),
            &file,
        )?,
        telemetry,
        data,
        control_addr,
        control,
        file,
    })
}

/// Tells where the admin token is. Its value is printed only when it was just created: a start
/// banner is often kept in logs that more people read than the data directory.
fn print_admin_token(token: &str, created: bool, common: &Common) {
    let file = common.data.join("admin-token");
    if created {
        println!(
            "  Admin token:    {token}  (new; kept in {})",
            file.display()
        );
    } else if common.control.admin_token.is_some() {
        println!("  Admin token:    from GATEHOUSE_ADMIN_TOKEN or the settings file");
    } else {
        println!("  Admin token:    in {}", file.display());
    }
}

async fn open(common: &Common, database: Option<&str>) -> Result<Opened, Failure> {
    prepare_data_dir(&common.data)?;
    let result = match database {
        Some(url) => match gatehouse_store::Store::open(url).await {
            Ok(store) => ControlPlane::open_with(store, &common.control, common.telemetry).await,
            Err(e) => Err(e.into()),
        },
        None => gatehouse_control::open_embedded_with(&common.control, common.telemetry).await,
    };
    result.map_err(|e| Failure::runtime(format!("cannot start the control plane: {e}")))
}

/// One sentence for a listener that cannot bind: the address, the cause (a taken port names
/// the process holding it, when it can be found) and the flag that moves it.
fn cannot_listen(addr: SocketAddr, what: &str, flag: &str, error: &std::io::Error) -> Failure {
    let why = gatehouse_gateway::holder::why(addr, error);
    let fix = if error.kind() == std::io::ErrorKind::AddrInUse {
        format!("stop that process or pass {flag} with another address")
    } else {
        format!("pass {flag} with another address")
    };
    Failure::runtime(format!(
        "cannot listen on {addr} for the {what}: {why}; {fix}"
    ))
}

async fn bind(
    addr: SocketAddr,
    what: &str,
    flag: &str,
) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| cannot_listen(addr, what, flag, &e))
}

/// Fails at once when another process listens on `addr`, before anything is opened or
/// started (the listener itself binds later).
fn claim(addr: SocketAddr, what: &str, flag: &str) -> Result<(), Failure> {
    gatehouse_gateway::server::claim(addr).map_err(|e| match e {
        gatehouse_gateway::ServeError::Bind { source, .. } => {
            cannot_listen(addr, what, flag, &source)
        }
        other => Failure::runtime(format!("cannot listen on {addr} for the {what}: {other}")),
    })
}

/// The signal that asked the process to stop.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stop {
    Interrupt,
    Terminate,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
        }
    }

    /// What a shell reports for a process this signal ended (128 + its number): a second
    /// signal cuts work short, and a supervisor should see that, not a clean exit (0) or a
    /// failure to start (1).
    fn exit_code(self) -> i32 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
        }
    }
}

/// SIGINT (Ctrl-C) and SIGTERM. A signal that cannot be listened to is left to its default
/// (it ends the process).
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    async fn next(&mut self) -> Stop {
        #[cfg(unix)]
        {
            async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(s) => {
                        if s.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = recv(&mut self.interrupt) => Stop::Interrupt,
                () = recv(&mut self.terminate) => Stop::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Stop::Interrupt
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT, logged as the start of the shutdown. From then on
/// a second signal ends the process at once, with [`Stop::exit_code`], whatever is still
/// draining. Signals are listened to from this call, not from the first poll: a server calls
/// it before it starts serving, so a signal that comes before it waits is not lost (nor ends
/// the process without draining). Call it inside the runtime.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = Stop> {
    shutdown_on(Signals::new())
}

async fn shutdown_on(mut signals: Signals) -> Stop {
    let first = signals.next().await;
    tracing::info!(
        signal = first.name(),
        "shutting down: stopping listeners (send the signal again to exit at once)"
    );
    tokio::spawn(async move {
        let second = signals.next().await;
        tracing::warn!(
            signal = second.name(),
            code = second.exit_code(),
            "second signal: exiting now, without waiting for requests in flight"
        );
        std::process::exit(second.exit_code());
    });
    first
}

/// Requests the control plane is answering, for the shutdown's log.
#[derive(Clone, Default)]
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    fn now(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlightGuard(self.0.clone())
    }
}

/// `app` counting its requests in `in_flight`.
fn counted(app: axum::Router, in_flight: &InFlight) -> axum::Router {
    async fn track(
        axum::extract::State(in_flight): axum::extract::State<InFlight>,
        request: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        let _counted = in_flight.enter();
        next.run(request).await
    }
    app.layer(axum::middleware::from_fn_with_state(
        in_flight.clone(),
        track,
    ))
}

struct InFlightGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Answers the control plane's held long-polls and logs what the shutdown waits for:
/// `requests` were in flight at the signal (long-polls included), plus `gateway` in the
/// built-in gateway.
fn release_long_polls(control: &ControlPlane, requests: usize, gateway: usize, grace: Duration) {
    let polls = control.close_long_polls();
    tracing::info!(
        polls,
        "answered {polls} held long-polls: linked gateways retry, serving from memory meanwhile"
    );
    let waiting = requests.saturating_sub(polls) + gateway;
    tracing::info!(
        requests = waiting,
        ?grace,
        "waiting for {waiting} requests in flight, for at most the grace period"
    );
}

/// Keeps the built-in gateway on the newest configuration: every committed change is compiled
/// incrementally on both sides (the control plane's snapshot, then the gateway's configuration)
/// and swapped in. Bursts of changes coalesce into one update. `last` is the snapshot applied.
fn spawn_sync(
    control: Arc<ControlPlane>,
    config: ConfigHandle,
    status: Arc<Status>,
    mut last: Option<Snapshot>,
) -> tokio::task::JoinHandle<()> {
    let mut changes = control.subscribe();
    tokio::spawn(async move {
        loop {
            if changes.changed().await.is_err() {
                return;
            }
            changes.borrow_and_update();
            let known = last.as_ref().map(|s| s.revision);
            let (applied, next) = match control.update(BUILT_IN_GATEWAY, known).await {
                Ok(Update::Unchanged) => continue,
                Ok(Update::Whole(snapshot)) => (config.apply(&snapshot), snapshot),
                Ok(Update::Delta(delta)) => {
                    let patched = last.take().map(|base| delta.apply_owned(base));
                    match patched {
                        Some(Ok(next)) => (config.apply_delta(&delta, &next), next),
                        _ => {
                            tracing::error!(
                                "a delta did not apply to the built-in gateway's snapshot; fetching it whole"
                            );
                            continue;
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot compile the configuration");
                    continue;
                }
            };
            match applied {
                Ok(revision) => {
                    status.applied(revision, Source::ControlPlane, &config.problems());
                    tracing::debug!(revision, "configuration applied")
                }
                Err(e) => {
                    tracing::error!(error = %e, "configuration rejected; the previous one stays in force");
                    // `/readyz` says stale and why, rather than ready.
                    status.link_failed(e.to_string());
                }
            }
            // Deltas build on the snapshot even when it was rejected: the gateway compiles
            // the next one in full, since its configuration is not that delta's base.
            last = Some(next);
        }
    })
}

fn display_addr(addr: SocketAddr) -> String {
    display_url(addr, false)
}

/// The URL a user on this machine reaches `addr` at.
fn display_url(addr: SocketAddr, tls: bool) -> String {
    let ip = if addr.ip().is_unspecified() {
        if addr.is_ipv4() {
            "127.0.0.1".to_owned()
        } else {
            "[::1]".to_owned()
        }
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{ip}:{}", addr.port())
}

pub async fn up(global: Global, args: UpArgs) -> Result<(), Failure> {
    let common = common(&global, &args.server, "127.0.0.1:8090")?;
    let file = &common.file;
    let gateway_addr = parse_addr(
        "--gateway-listen",
        args.gateway_listen
            .as_deref()
            .or(file.gateway_listen.as_deref())
            .unwrap_or("0.0.0.0:8080"),
    )?;
    let mut settings = GatewaySettings {
        trusted_ca: trusted_ca(&global, file),
        https: https_listener(
            args.gateway_https_listen
                .as_deref()
                .or(file.gateway_https_listen.as_deref()),
            args.gateway_tls_cert
                .as_deref()
                .or(file.gateway_tls_cert.as_deref()),
            args.gateway_tls_key
                .as_deref()
                .or(file.gateway_tls_key.as_deref()),
            (
                "--gateway-https-listen",
                "--gateway-tls-cert",
                "--gateway-tls-key",
            ),
        )?,
        ..GatewaySettings::default()
    };
    if let Some(t) = args
        .backend_timeout
        .as_deref()
        .or(file.backend_timeout.as_deref())
    {
        settings.backend_timeout = parse_duration("--backend-timeout", t)?;
    }
    if let Some(t) = args
        .shutdown_grace
        .as_deref()
        .or(file.shutdown_grace.as_deref())
    {
        settings.shutdown_grace = parse_duration("--shutdown-grace", t)?;
    }
    if let Some(w) = args.workers.or(file.workers) {
        if w == 0 || w > 256 {
            return Err(Failure::input("--workers must be between 1 and 256"));
        }
        settings.workers = w;
    }
    settings.limits = common.limits;
    settings.trusted_proxies = common.trusted_proxies.clone();
    settings.max_request_body = crate::settings::max_request_body(&args.server.limits, file)?;
    settings.redis = crate::settings::redis(&args.redis, file, &settings.trusted_ca)?;
    settings.identity =
        crate::settings::token_provider(&args.identity, file, &settings.trusted_ca)?;
    settings.dapr_endpoint =
        crate::settings::dapr_endpoint(args.dapr_http_endpoint.as_deref(), file, &|name| {
            std::env::var(name).ok()
        })?;
    let grace = settings.shutdown_grace;
    let admin_addr = parse_addr(
        "--gateway-admin-listen",
        args.gateway_admin_listen
            .as_deref()
            .or(file.gateway_admin_listen.as_deref())
            .unwrap_or("127.0.0.1:8082"),
    )?;
    let (telemetry_settings, upload_interval, spool_limit) = telemetry_settings(
        &args.telemetry,
        file,
        args.otlp_endpoint.as_deref(),
        BUILT_IN_GATEWAY,
        BUILT_IN_GATEWAY,
    )?;
    let tracing = telemetry_settings.tracing.clone();

    // Every listener is checked before the store is opened: a second `up` on a taken port
    // stops here, touching nothing.
    let listener = bind(common.control_addr, "control plane", "--listen").await?;
    claim(gateway_addr, "gateway", "--gateway-listen")?;
    if let Some(https) = &settings.https {
        claim(
            https.addr,
            "gateway's HTTPS listener",
            "--gateway-https-listen",
        )?;
    }
    claim(
        admin_addr,
        "gateway's admin endpoints",
        "--gateway-admin-listen",
    )?;
    let stop = shutdown_signal();

    let opened = open(&common, None).await?;
    let control = opened.control;
    control
        .ensure_built_in_gateway()
        .await
        .map_err(|e| Failure::runtime(format!("cannot create the built-in gateway: {e}")))?;

    let config = ConfigHandle::default();
    let snapshot = match control.update(BUILT_IN_GATEWAY, None).await {
        Ok(Update::Whole(snapshot)) => snapshot,
        Ok(_) => {
            return Err(Failure::runtime(
                "cannot compile the configuration: no snapshot".to_owned(),
            ));
        }
        Err(e) => {
            return Err(Failure::runtime(format!(
                "cannot compile the configuration: {e}"
            )));
        }
    };
    let revision = config.apply(&snapshot).map_err(|e| {
        Failure::runtime(format!(
            "the stored configuration cannot be served: {e}; fix it through the management API"
        ))
    })?;
    let status = Arc::new(Status::new(BUILT_IN_GATEWAY.to_owned(), None));
    status.applied(revision, Source::ControlPlane, &config.problems());
    let sync = spawn_sync(
        control.clone(),
        config.clone(),
        status.clone(),
        Some(snapshot),
    );

    if settings.https.is_none() {
        warn_if_exposed(
            gateway_addr,
            "gateway",
            "pass --gateway-tls-cert and --gateway-tls-key for HTTPS, or --gateway-listen 127.0.0.1:8080",
        );
    }
    let telemetry = Telemetry::new(telemetry_settings, settings.workers);
    telemetry.spawn_log_flusher(Duration::from_millis(100));
    let https_addr = settings.https.as_ref().map(|h| h.addr);
    let gateway = RunningGateway::start(gateway_addr, config.clone(), settings, telemetry.clone())
        .map_err(|e| match e {
            gatehouse_gateway::ServeError::Bind { addr, source, .. } => {
                if Some(addr) == https_addr {
                    cannot_listen(
                        addr,
                        "gateway's HTTPS listener",
                        "--gateway-https-listen",
                        &source,
                    )
                } else {
                    cannot_listen(addr, "gateway", "--gateway-listen", &source)
                }
            }
            other => Failure::runtime(format!("cannot start the gateway: {other}")),
        })?;
    let sources = gatehouse_gateway::metrics::Sources {
        telemetry: telemetry.clone(),
        config,
        link: Some(status.clone()),
    };
    let (_, admin) = gatehouse_gateway::admin::start(admin_addr, status, sources, common.limits)
        .await
        .map_err(|e| {
            cannot_listen(
                admin_addr,
                "gateway's admin endpoints",
                "--gateway-admin-listen",
                &e,
            )
        })?;
    let uploader = Uploader::new(
        telemetry.clone(),
        Arc::new(InProcess(control.clone())),
        UploadSettings {
            interval: upload_interval,
            spool_dir: Some(common.data.join("telemetry-spool")),
            spool_limit,
            instance: BUILT_IN_GATEWAY.to_owned(),
        },
    )
    .map_err(|e| {
        Failure::runtime(format!(
            "cannot use the telemetry spool in {}: {e}; make the data directory writable",
            common.data.display()
        ))
    })?;
    let uploader = Arc::new(uploader);
    let uploads = tokio::spawn(uploader.clone().run());
    let control_url = display_url(common.control_addr, common.control_tls.is_some());
    let gateway_url = display_addr(gateway.local_addr);
    let gateway_https_url = gateway.https_addr.map(|a| display_url(a, true));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let portal = crate::portal::router(&control, &args.portal, file, Some(gateway_url.clone()))?;
    let in_flight = InFlight::default();
    let app = counted(control.router().merge(portal), &in_flight);
    let limits = common.limits;
    let server = tokio::spawn(serve_control(
        listener,
        common.control_tls.clone(),
        app,
        limits,
        common.trusted_proxies.clone(),
        async move {
            let _ = server_stop.wait_for(|s| *s).await;
        },
        grace,
    ));

    let demo_curl = if args.demo {
        let backend = crate::echo::start(SocketAddr::from(([127, 0, 0, 1], 8091)))
            .await
            .map_err(|e| Failure::runtime(format!("cannot start the demo echo backend: {e}")))?;
        let client = crate::client::Client::trusting(
            &control_url,
            opened.admin_token.clone(),
            &global.trusted_ca,
        )?;
        let key = crate::demo::setup(&client, backend).await?;
        Some(format!(
            "curl -H \"Ocp-Apim-Subscription-Key: {key}\" {gateway_url}/demo/hello"
        ))
    } else {
        None
    };

    println!("Gatehouse is running.");
    println!("  Gateway:        {gateway_url}");
    if let Some(url) = &gateway_https_url {
        println!("  Gateway HTTPS:  {url}");
    }
    println!("  Management API: {control_url}/mgmt  (Swagger UI: {control_url}/mgmt/docs)");
    println!("  Portal:         {control_url}/portal/");
    println!("  Data:           {}", common.data.display());
    print_admin_token(&opened.admin_token, opened.admin_token_created, &common);
    if let Some(curl) = demo_curl {
        println!("\nTry the demo API:\n  {curl}");
    }
    println!("\nPress Ctrl-C to stop.");

    stop.await;
    let stopping = std::time::Instant::now();
    let requests = in_flight.now();
    let _ = stop_tx.send(true);
    let drained = tokio::task::spawn_blocking(move || gateway.shutdown_blocking());
    release_long_polls(
        &control,
        requests,
        usize::try_from(telemetry.in_flight()).unwrap_or(0),
        grace,
    );
    let _ = drained.await;
    uploads.abort();
    uploader.finish(Duration::from_secs(5)).await;
    telemetry.flush_logs();
    if let Some(t) = tracing {
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
    admin.abort();
    sync.abort();
    if let Err(e) = server.await {
        tracing::warn!(error = %e, "control plane server task failed");
    }
    control.store().close().await;
    tracing::info!(ms = stopping.elapsed().as_millis() as u64, "stopped");
    Ok(())
}

pub async fn control_plane(global: Global, args: ControlPlaneArgs) -> Result<(), Failure> {
    let common = common(&global, &args.server, "0.0.0.0:8090")?;
    let database = args
        .database
        .clone()
        .or_else(|| common.file.database.clone());
    let listener = bind(common.control_addr, "control plane", "--listen").await?;
    let stop = shutdown_signal();
    let opened = open(&common, database.as_deref()).await?;
    let control = opened.control;
    let portal = crate::portal::router(&control, &args.portal, &common.file, None)?;
    println!("Gatehouse control plane is running.");
    let control_url = display_url(common.control_addr, common.control_tls.is_some());
    println!("  Management API: {control_url}/mgmt");
    println!("  Portal:         {control_url}/portal/");
    print_admin_token(&opened.admin_token, opened.admin_token_created, &common);
    let grace = Duration::from_secs(30);
    let in_flight = InFlight::default();
    let app = counted(control.router().merge(portal), &in_flight);
    let stopping = {
        let control = control.clone();
        let in_flight = in_flight.clone();
        async move {
            stop.await;
            release_long_polls(&control, in_flight.now(), 0, grace);
        }
    };
    serve_control(
        listener,
        common.control_tls.clone(),
        app,
        common.limits,
        common.trusted_proxies.clone(),
        stopping,
        grace,
    )
    .await;
    control.store().close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Serves the control plane's router (management API and portal) with the listener limits.
/// Handlers see the client's address as axum's `ConnectInfo`: the peer's, or, when the peer
/// is one of `trusted_proxies`, the right-most untrusted `X-Forwarded-For` address (so the
/// portal signs the user's address into Try it calls, and throttles count per user).
async fn serve_control(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<gatehouse_tls::server::ServerTls>>,
    app: axum::Router,
    limits: gatehouse_gateway::listener::ListenerLimits,
    trusted_proxies: Arc<[Cidr]>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let https = tls.is_some();
    let service = move |remote: SocketAddr| {
        let app = hyper_util::service::TowerToHyperService::new(app.clone());
        let trusted = gatehouse_gateway::forwarded::is_trusted(&trusted_proxies, remote.ip())
            .then(|| trusted_proxies.clone());
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let client = trusted
                .as_deref()
                .and_then(|t| {
                    let chain = req
                        .headers()
                        .get_all("x-forwarded-for")
                        .iter()
                        .filter_map(|v| v.to_str().ok());
                    gatehouse_gateway::forwarded::client_from_chain(t, chain)
                })
                .map_or(remote, |ip| SocketAddr::new(ip, remote.port()));
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(client));
            if https {
                // This server terminated TLS itself: it says so, whatever the client wrote
                // (the portal's cookies are `Secure` then).
                req.headers_mut().insert(
                    "x-forwarded-proto",
                    hyper::header::HeaderValue::from_static("https"),
                );
            }
            hyper::service::Service::call(&app, req)
        })
    };
    gatehouse_gateway::listener::serve(listener, tls, limits, service, shutdown, grace).await;
}

fn instance_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("gateway-{}", std::process::id()))
}

/// The gateway token from `--token`, `GATEHOUSE_TOKEN`, `--token-file`, `GATEHOUSE_TOKEN_FILE` or
/// the settings file: exactly one of them.
fn gateway_token(
    args: &crate::args::GatewayRunArgs,
    file: &FileSettings,
) -> Result<String, Failure> {
    let inline = args.token.clone().or_else(|| file.token.clone());
    let path = args.token_file.clone().or_else(|| file.token_file.clone());
    match (inline, path) {
        (Some(_), Some(_)) => Err(Failure::input(
            "the gateway token is given twice: use --token (GATEHOUSE_TOKEN) or --token-file (GATEHOUSE_TOKEN_FILE), not both",
        )),
        (Some(token), None) => {
            let on_command_line =
                std::env::args().any(|a| a == "--token" || a.starts_with("--token="));
            if on_command_line {
                tracing::warn!(
                    "the gateway token was given with --token, where other users of this machine can read it (ps); use GATEHOUSE_TOKEN or --token-file"
                );
            }
            Ok(token)
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Failure::input(format!(
                    "cannot read the gateway token from {}: {e}; check --token-file (GATEHOUSE_TOKEN_FILE)",
                    path.display()
                ))
            })?;
            let token = text.trim();
            if token.is_empty() {
                return Err(Failure::input(format!(
                    "the token file {} is empty; write the output of `gatehouse gateway token <id>` into it",
                    path.display()
                )));
            }
            Ok(token.to_owned())
        }
        (None, None) => Err(Failure::input(
            "--token (or GATEHOUSE_TOKEN, or --token-file) is required: create one with `gatehouse gateway token <id>`",
        )),
    }
}

/// How often certificate files are checked for a change (Kubernetes updates a mounted Secret
/// in place within about a minute; the check itself reads two small files).
const CERTIFICATE_CHECK: Duration = Duration::from_secs(5);

/// The gateway's HTTPS listener: on when an address or a certificate is given. `names` are the
/// flags' names, for the messages: (listen, cert, key).
fn https_listener(
    listen: Option<&str>,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
    names: (&str, &str, &str),
) -> Result<Option<gatehouse_gateway::HttpsListener>, Failure> {
    let (listen_flag, cert_flag, key_flag) = names;
    let server = match (cert, key) {
        (Some(cert), Some(key)) => gatehouse_tls::server::ServerTls::from_files(cert, key, true)
            .map_err(|e| Failure::input(format!("{e} (from {cert_flag} and {key_flag})")))?,
        (None, None) if listen.is_some() => gatehouse_tls::server::ServerTls::without_default(true)
            .map_err(|e| Failure::runtime(e.to_string()))?,
        (None, None) => return Ok(None),
        _ => {
            return Err(Failure::input(format!(
                "{cert_flag} and {key_flag} go together: give both, or neither"
            )));
        }
    };
    server.watch_files(CERTIFICATE_CHECK);
    let addr = parse_addr(listen_flag, listen.unwrap_or("0.0.0.0:8081"))?;
    Ok(Some(gatehouse_gateway::HttpsListener {
        addr,
        tls: gatehouse_gateway::inbound_tls::InboundTls::new(server),
    }))
}

/// One warning sentence for a listener that serves plain HTTP beyond this machine.
fn warn_if_exposed(addr: SocketAddr, what: &str, fix: &str) {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "the {what} listens on {addr} without TLS: anyone on the network can read its traffic; {fix}"
        );
    }
}

/// The CA files to trust: the flags (or GATEHOUSE_TRUSTED_CA), else the settings file.
fn trusted_ca(global: &Global, file: &FileSettings) -> Vec<PathBuf> {
    if global.trusted_ca.is_empty() {
        file.trusted_ca.clone().unwrap_or_default()
    } else {
        global.trusted_ca.clone()
    }
}

pub async fn gateway(global: Global, args: crate::args::GatewayRunArgs) -> Result<(), Failure> {
    use gatehouse_gateway::link::LinkSettings;
    use gatehouse_gateway::selfhosted::{self, SelfHostedSettings, StartError};

    let file = FileSettings::load(args.server.settings.as_deref())?;
    init_logging(
        args.server
            .log_format
            .as_deref()
            .or(file.log_format.as_deref()),
    )?;
    let pick = |flag: &Option<String>, from_file: &Option<String>| {
        flag.clone().or_else(|| from_file.clone())
    };
    let endpoint = pick(&args.config_endpoint, &file.config_endpoint).ok_or_else(|| {
        Failure::input("--config-endpoint (or GATEHOUSE_CONFIG_ENDPOINT) is required: the control plane's URL, e.g. http://127.0.0.1:8090")
    })?;
    if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
        return Err(Failure::input(format!(
            "--config-endpoint '{endpoint}' must start with http:// or https://"
        )));
    }
    let token = gateway_token(&args, &file)?;
    let duration =
        |what: &str, flag: &Option<String>, from_file: &Option<String>, default: &str| {
            parse_duration(
                what,
                flag.as_deref().or(from_file.as_deref()).unwrap_or(default),
            )
        };
    let mut gateway = GatewaySettings {
        backend_timeout: duration(
            "--backend-timeout",
            &args.backend_timeout,
            &file.backend_timeout,
            "300s",
        )?,
        shutdown_grace: duration(
            "--shutdown-grace",
            &args.shutdown_grace,
            &file.shutdown_grace,
            "30s",
        )?,
        trusted_ca: trusted_ca(&global, &file),
        https: https_listener(
            args.https_listen
                .as_deref()
                .or(file.https_listen.as_deref()),
            args.server.tls_cert.as_deref().or(file.tls_cert.as_deref()),
            args.server.tls_key.as_deref().or(file.tls_key.as_deref()),
            ("--https-listen", "--tls-cert", "--tls-key"),
        )?,
        ..GatewaySettings::default()
    };
    if let Some(w) = args.workers.or(file.workers) {
        if w == 0 || w > 256 {
            return Err(Failure::input("--workers must be between 1 and 256"));
        }
        gateway.workers = w;
    }
    gateway.limits = crate::settings::listener_limits(&args.server.limits, &file)?;
    gateway.trusted_proxies =
        crate::settings::trusted_proxies(args.server.trusted_proxies.as_deref(), &file)?;
    gateway.max_request_body = crate::settings::max_request_body(&args.server.limits, &file)?;
    gateway.redis = crate::settings::redis(&args.redis, &file, &gateway.trusted_ca)?;
    gateway.identity = crate::settings::token_provider(&args.identity, &file, &gateway.trusted_ca)?;
    gateway.dapr_endpoint =
        crate::settings::dapr_endpoint(args.dapr_http_endpoint.as_deref(), &file, &|name| {
            std::env::var(name).ok()
        })?;
    let instance = pick(&args.name, &file.name).unwrap_or_else(instance_name);
    // The token is checked properly when the gateway starts; here it only names the gateway
    // in the traces' resource.
    let gateway_id = gatehouse_model::token::GatewayToken::parse(&token)
        .map(|t| t.gateway_id)
        .unwrap_or_default();
    let (telemetry, upload_interval, spool_limit) = telemetry_settings(
        &args.telemetry,
        &file,
        args.otlp_endpoint.as_deref(),
        &gateway_id,
        &instance,
    )?;
    let settings = SelfHostedSettings {
        telemetry,
        upload_interval,
        spool_limit,
        link: LinkSettings {
            endpoint,
            token,
            instance,
            long_poll: !args.no_long_poll && file.long_poll.unwrap_or(true),
            poll_interval: duration(
                "--poll-interval",
                &args.poll_interval,
                &file.poll_interval,
                "10s",
            )?,
            trusted_ca: trusted_ca(&global, &file),
            heartbeat_interval: duration(
                "--heartbeat-interval",
                &args.heartbeat_interval,
                &file.heartbeat_interval,
                "60s",
            )?,
            retry_max: duration("--retry-max", &args.retry_max, &file.retry_max, "2s")?,
        },
        listen: parse_addr(
            "--listen",
            args.server
                .listen
                .as_deref()
                .or(file.listen.as_deref())
                .unwrap_or("0.0.0.0:8080"),
        )?,
        admin_listen: parse_addr(
            "--admin-listen",
            args.admin_listen
                .as_deref()
                .or(file.admin_listen.as_deref())
                .unwrap_or("127.0.0.1:8082"),
        )?,
        backup_dir: args.backup_dir.clone().or_else(|| file.backup_dir.clone()),
        backup_key: std::env::var("GATEHOUSE_BACKUP_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty())
            .or_else(|| file.backup_key.clone()),
        startup_timeout: duration(
            "--startup-timeout",
            &args.startup_timeout,
            &file.startup_timeout,
            "30s",
        )?,
        gateway,
    };
    if settings.gateway.https.is_none() {
        warn_if_exposed(
            settings.listen,
            "gateway",
            "pass --tls-cert and --tls-key for HTTPS, or --listen 127.0.0.1:8080",
        );
    }
    let stop = shutdown_signal();
    selfhosted::run(settings, async move {
        stop.await;
    })
    .await
    .map_err(|e| match e {
        StartError::Token(_) => Failure::input(e.to_string()),
        other => Failure::runtime(other.to_string()),
    })
}
