//! The command line, as DESIGN §2 lays it out.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Open, self-hosted API management: control plane, gateways and developer portal in one binary."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options of the management commands.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Output format of management commands.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Control plane URL for management commands.
    #[arg(
        long = "url",
        global = true,
        env = "GATEHOUSE_URL",
        default_value = "http://127.0.0.1:8090"
    )]
    pub url: String,
    /// Data directory: the SQLite store, admin token and secret key of the server commands,
    /// and where management commands read the admin token when GATEHOUSE_ADMIN_TOKEN is not
    /// set [default: ./gatehouse-data].
    #[arg(long = "data", global = true, env = "GATEHOUSE_DATA")]
    pub data: Option<PathBuf>,
    /// A CA certificate (PEM file) to trust besides the system's, for https backends,
    /// `send-request`, the gateway link and management commands. Repeatable;
    /// GATEHOUSE_TRUSTED_CA takes a comma-separated list.
    #[arg(
        long = "trusted-ca",
        global = true,
        env = "GATEHOUSE_TRUSTED_CA",
        value_delimiter = ','
    )]
    pub trusted_ca: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane and a built-in gateway on this machine.
    Up(Box<UpArgs>),
    /// Run the control plane alone.
    ControlPlane(Box<ControlPlaneArgs>),
    /// Manage APIs.
    #[command(subcommand)]
    Api(ApiCommand),
    /// Manage products.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Manage subscriptions and their keys.
    #[command(subcommand)]
    Subscription(SubscriptionCommand),
    /// Manage named values.
    #[command(subcommand)]
    NamedValue(NamedValueCommand),
    /// Run a self-hosted gateway (with --config-endpoint and --token), or manage gateway
    /// resources (with a subcommand).
    Gateway(Box<GatewayArgs>),
    /// Check policy documents offline, or set a scope's policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run a small backend that answers every request with a JSON description of it (the
    /// README's tour calls one), until Ctrl-C.
    EchoBackend {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: std::net::SocketAddr,
    },
}

/// Settings shared by the server commands. Each can come from a flag, an environment variable
/// or the settings file; flags win over the environment, the environment over the file.
#[derive(Debug, Args, Clone, Default)]
pub struct ServerArgs {
    /// A settings file (TOML, YAML or JSON) with the same keys as the flags, e.g. `listen`.
    #[arg(long, env = "GATEHOUSE_SETTINGS")]
    pub settings: Option<PathBuf>,
    /// Control plane listen address [default: 127.0.0.1:8090 for `up`, 0.0.0.0:8090 otherwise].
    #[arg(long, env = "GATEHOUSE_LISTEN")]
    pub listen: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "GATEHOUSE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// How long the control plane keeps traffic aggregates for the reports, e.g. 90d
    /// [default: 30d].
    #[arg(long, env = "GATEHOUSE_TELEMETRY_RETENTION")]
    pub telemetry_retention: Option<String>,
    /// TLS certificate of this server (PEM, full chain, leaf first): the control plane's for
    /// `up` and `control-plane`, the gateway's HTTPS listener's for `gateway`. Reloaded when
    /// the file changes.
    #[arg(long, env = "GATEHOUSE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "GATEHOUSE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub limits: ListenerArgs,
    /// Proxies whose X-Forwarded-For the gateway believes, e.g. 10.0.0.0/8,::1: requests from
    /// them are attributed to the right-most address in the chain that is not one of them
    /// [default: none; the peer is the client and X-Forwarded-For is replaced].
    #[arg(long, env = "GATEHOUSE_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
}

/// Timeouts and caps of every listener of the process (gateway, control plane, admin).
#[derive(Debug, Args, Clone, Default)]
pub struct ListenerArgs {
    /// How long a client may take to send a request's headers, from its first byte; slower
    /// connections are closed [default: 10s].
    #[arg(long, env = "GATEHOUSE_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<String>,
    /// How long a kept-alive connection may wait for its next request [default: 75s].
    #[arg(long, env = "GATEHOUSE_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
    /// Connections each listener holds open at once; more are closed at once [default: 10000].
    #[arg(long, env = "GATEHOUSE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// The most bytes of request line and headers, at least 8KiB; more get 431
    /// [default: 64KiB].
    #[arg(long, env = "GATEHOUSE_MAX_HEADER_SIZE")]
    pub max_header_size: Option<String>,
    /// The most header fields in one request; more get 431 [default: 100].
    #[arg(long, env = "GATEHOUSE_MAX_HEADERS")]
    pub max_headers: Option<usize>,
    /// The gateway's largest request body, e.g. 100MiB; larger ones get 413, `none` for no
    /// limit [default: none].
    #[arg(long, env = "GATEHOUSE_MAX_REQUEST_BODY")]
    pub max_request_body: Option<String>,
}

/// What a gateway records about its traffic: access logs, metrics and uploads.
#[derive(Debug, Args, Clone, Default)]
pub struct TelemetryArgs {
    /// Access log on stdout, one line per request: json, text or off [default: json].
    #[arg(long, env = "GATEHOUSE_ACCESS_LOG")]
    pub access_log: Option<String>,
    /// Label request metrics with the subscription id too (one series per subscription).
    #[arg(long, env = "GATEHOUSE_METRICS_SUBSCRIPTION_LABELS")]
    pub metrics_subscription_labels: bool,
    /// How often request aggregates are sent to the control plane [default: 10s].
    #[arg(long, env = "GATEHOUSE_TELEMETRY_INTERVAL")]
    pub telemetry_interval: Option<String>,
    /// The most telemetry kept while the control plane is unreachable, e.g. 64MiB; the
    /// oldest is dropped (and counted) beyond it [default: 64MiB].
    #[arg(long, env = "GATEHOUSE_TELEMETRY_SPOOL_SIZE")]
    pub telemetry_spool_size: Option<String>,
    /// Where this gateway runs, a label on its metrics, e.g. "eu-west/rack-4".
    #[arg(long, env = "GATEHOUSE_LOCATION")]
    pub location: Option<String>,
}

/// Counters and cache shared by the replicas of a gateway (DESIGN §10, docs/redis.md).
#[derive(Debug, Args, Clone, Default)]
pub struct RedisArgs {
    /// Keep rate limits, quotas, concurrency leases and the external cache in this Redis (or
    /// Valkey), shared by every replica of the gateway that uses it: redis://host:6379/0,
    /// rediss://… for TLS, redis://user:password@… for AUTH (better given through
    /// GATEHOUSE_REDIS or the settings file, which `ps` does not show) [default: off, each
    /// gateway counts alone].
    #[arg(long, env = "GATEHOUSE_REDIS", hide_env_values = true)]
    pub redis: Option<String>,
    /// When Redis does not answer within --redis-timeout: open (count locally, cache miss) or
    /// closed (503 for requests that need a counter) [default: open].
    #[arg(long, env = "GATEHOUSE_REDIS_FAILURE")]
    pub redis_failure: Option<String>,
    /// The longest a request waits on one Redis call, e.g. 50ms or 1s; past it, Redis counts
    /// as unreachable for that call [default: 50ms].
    #[arg(long, env = "GATEHOUSE_REDIS_TIMEOUT")]
    pub redis_timeout: Option<String>,
    /// Counters allowing this many calls or more are counted locally and settled with Redis in
    /// the background (within the bound docs/redis.md states); smaller ones are exact, one
    /// round trip per call [default: 10000].
    #[arg(long, env = "GATEHOUSE_REDIS_BATCH_FROM")]
    pub redis_batch_from: Option<u64>,
}

/// Where `authentication-managed-identity` gets its tokens (README, Settings). The Azure
/// variables (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`,
/// `AZURE_AUTHORITY_HOST`, `AZURE_CLIENT_SECRET`, `AZURE_CLIENT_CERTIFICATE_PATH`) fill in what
/// these leave unset.
#[derive(Debug, Args, Clone, Default)]
pub struct IdentityArgs {
    /// The token provider: none, imds (Azure instance metadata), workload-identity,
    /// client-secret, client-certificate (Entra ID) or oauth2 (any OAuth 2.0 token endpoint)
    /// [default: none].
    #[arg(long, env = "GATEHOUSE_IDENTITY_PROVIDER")]
    pub identity_provider: Option<String>,
    /// The token endpoint: of imds [default: http://169.254.169.254/metadata/identity/oauth2/token],
    /// of oauth2 (required).
    #[arg(long, env = "GATEHOUSE_IDENTITY_ENDPOINT")]
    pub identity_endpoint: Option<String>,
    /// Entra ID's host for workload-identity, client-secret and client-certificate
    /// [default: AZURE_AUTHORITY_HOST, else https://login.microsoftonline.com/].
    #[arg(long, env = "GATEHOUSE_IDENTITY_AUTHORITY_HOST")]
    pub identity_authority_host: Option<String>,
    /// The Entra ID tenant [default: AZURE_TENANT_ID].
    #[arg(long, env = "GATEHOUSE_IDENTITY_TENANT_ID")]
    pub identity_tenant_id: Option<String>,
    /// The client (application) id; for imds, the user-assigned identity used when a policy
    /// names none [default: AZURE_CLIENT_ID].
    #[arg(long, env = "GATEHOUSE_IDENTITY_CLIENT_ID")]
    pub identity_client_id: Option<String>,
    /// The client secret of client-secret and oauth2 (better given through the environment or
    /// the settings file, which `ps` does not show) [default: AZURE_CLIENT_SECRET].
    #[arg(long, env = "GATEHOUSE_IDENTITY_CLIENT_SECRET", hide_env_values = true)]
    pub identity_client_secret: Option<String>,
    /// A PEM file with the certificate and private key of client-certificate
    /// [default: AZURE_CLIENT_CERTIFICATE_PATH].
    #[arg(long, env = "GATEHOUSE_IDENTITY_CERTIFICATE")]
    pub identity_certificate: Option<PathBuf>,
    /// The projected service-account token of workload-identity, read for each exchange
    /// [default: AZURE_FEDERATED_TOKEN_FILE].
    #[arg(long, env = "GATEHOUSE_IDENTITY_TOKEN_FILE")]
    pub identity_token_file: Option<PathBuf>,
    /// The scope oauth2 asks for, `{resource}` standing for the policy's resource
    /// [default: {resource}].
    #[arg(long, env = "GATEHOUSE_IDENTITY_SCOPE")]
    pub identity_scope: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct UpArgs {
    /// Also start an echo backend and create a demo API, product and subscription.
    #[arg(long)]
    pub demo: bool,
    /// Gateway listen address [default: 0.0.0.0:8080].
    #[arg(long, env = "GATEHOUSE_GATEWAY_LISTEN")]
    pub gateway_listen: Option<String>,
    /// The gateway's HTTPS listen address, with --gateway-tls-cert or the hostname
    /// certificates of its configuration [default: 0.0.0.0:8081 when a certificate is given,
    /// else off].
    #[arg(long, env = "GATEHOUSE_GATEWAY_HTTPS_LISTEN")]
    pub gateway_https_listen: Option<String>,
    /// The gateway's default TLS certificate (PEM, full chain), reloaded when it changes.
    #[arg(long, env = "GATEHOUSE_GATEWAY_TLS_CERT")]
    pub gateway_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --gateway-tls-cert.
    #[arg(long, env = "GATEHOUSE_GATEWAY_TLS_KEY")]
    pub gateway_tls_key: Option<PathBuf>,
    /// How long the gateway waits for a backend's response, e.g. 30s or 500ms [default: 300s].
    #[arg(long, env = "GATEHOUSE_BACKEND_TIMEOUT")]
    pub backend_timeout: Option<String>,
    /// Gateway worker threads [default: one per CPU].
    #[arg(long, env = "GATEHOUSE_WORKERS")]
    pub workers: Option<usize>,
    /// How long shutdown waits for requests in flight, e.g. 30s [default: 30s].
    #[arg(long, env = "GATEHOUSE_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<String>,
    /// The gateway's admin endpoints (/metrics, /healthz, /readyz) [default: 127.0.0.1:8082].
    #[arg(long, env = "GATEHOUSE_GATEWAY_ADMIN_LISTEN")]
    pub gateway_admin_listen: Option<String>,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Send OpenTelemetry traces of gateway requests to this OTLP/HTTP collector, e.g.
    /// http://127.0.0.1:4318 (traces go to /v1/traces under it) [default: off].
    #[arg(long, env = "GATEHOUSE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The Dapr sidecar's HTTP API, for set-backend-service backend-id="dapr", publish-to-dapr
    /// and invoke-dapr-binding [default: DAPR_HTTP_ENDPOINT, else http://127.0.0.1:DAPR_HTTP_PORT,
    /// else http://localhost:3500].
    #[arg(long, env = "GATEHOUSE_DAPR_HTTP_ENDPOINT")]
    pub dapr_http_endpoint: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub portal: crate::portal::PortalArgs,
}

#[derive(Debug, Args, Clone)]
pub struct ControlPlaneArgs {
    /// Database URL: sqlite://PATH or postgres://… [default: SQLite under --data].
    #[arg(long, env = "GATEHOUSE_DATABASE")]
    pub database: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub portal: crate::portal::PortalArgs,
}

#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Create or replace an API from an OpenAPI 3.x or Swagger 2.0 document (JSON or YAML): a
    /// file, or an http(s):// URL to fetch it from.
    Import {
        #[arg(value_name = "FILE_OR_URL")]
        file: String,
        #[arg(long)]
        id: String,
        /// URL suffix the gateway serves the API under.
        #[arg(long)]
        path: String,
        /// Backend URL; defaults to the document's first server.
        #[arg(long)]
        service_url: Option<String>,
    },
    /// List APIs.
    List,
    /// Show an API and its operations.
    Show { id: String },
    /// Delete an API and its operations.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// Create or replace a (published) product.
    Create {
        id: String,
        #[arg(long)]
        name: String,
        /// Let the product's APIs be called without a key.
        #[arg(long)]
        no_subscription: bool,
        /// Subscriptions wait for an administrator's approval.
        #[arg(long)]
        approval: bool,
    },
    /// Add an API to a product.
    AddApi { product: String, api: String },
    /// List products.
    List,
    /// Show a product and its APIs.
    Show { id: String },
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionCommand {
    /// Create a subscription and print its keys.
    Create {
        id: String,
        /// `/apis`, `/apis/{id}` or `/products/{id}`.
        #[arg(long)]
        scope: String,
        #[arg(long)]
        name: Option<String>,
        /// Initial state: active (the default), submitted (waits for `approve`), suspended.
        #[arg(long)]
        state: Option<String>,
    },
    /// Print a subscription's keys.
    Keys {
        id: String,
        /// Print only the primary key, for scripts.
        #[arg(long)]
        primary: bool,
    },
    /// List subscriptions.
    List,
    /// Show a subscription (its keys only with `keys`).
    Show { id: String },
    /// Approve a subscription waiting for approval (`submitted` becomes `active`).
    Approve { id: String },
}

#[derive(Debug, Subcommand)]
pub enum NamedValueCommand {
    /// Create or replace a named value.
    Set {
        id: String,
        value: String,
        /// Store it encrypted and never show it.
        #[arg(long)]
        secret: bool,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GatewayArgs {
    #[command(subcommand)]
    pub command: Option<GatewayCommand>,
    #[command(flatten)]
    pub run: GatewayRunArgs,
}

/// Settings of a self-hosted gateway.
#[derive(Debug, Args, Clone)]
pub struct GatewayRunArgs {
    /// The control plane's URL, e.g. https://cp.example.com:8090.
    #[arg(long, env = "GATEHOUSE_CONFIG_ENDPOINT")]
    pub config_endpoint: Option<String>,
    /// The gateway token from `gatehouse gateway token <id>` (better given through
    /// GATEHOUSE_TOKEN or the settings file than on the command line).
    #[arg(long, env = "GATEHOUSE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the gateway token, such as a mounted Kubernetes Secret: the token stays
    /// out of `ps` and of the environment. Read at start.
    #[arg(long, env = "GATEHOUSE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// A directory where every applied configuration is saved, so the gateway can start while
    /// the control plane is unreachable.
    #[arg(long, env = "GATEHOUSE_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Admin endpoints (/metrics, /healthz, /readyz) [default: 127.0.0.1:8082].
    #[arg(long, env = "GATEHOUSE_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// HTTPS listen address, with --tls-cert or the hostname certificates of the gateway's
    /// configuration [default: 0.0.0.0:8081 when --tls-cert is given, else off].
    #[arg(long, env = "GATEHOUSE_HTTPS_LISTEN")]
    pub https_listen: Option<String>,
    /// This instance's name in the fleet status [default: the host name].
    #[arg(long, env = "GATEHOUSE_NAME")]
    pub name: Option<String>,
    /// How long to wait for a first configuration when there is no backup [default: 30s].
    #[arg(long, env = "GATEHOUSE_STARTUP_TIMEOUT")]
    pub startup_timeout: Option<String>,
    /// Poll interval when long-polling is off [default: 10s].
    #[arg(long, env = "GATEHOUSE_POLL_INTERVAL")]
    pub poll_interval: Option<String>,
    /// Poll every --poll-interval instead of long-polling.
    #[arg(long, env = "GATEHOUSE_NO_LONG_POLL")]
    pub no_long_poll: bool,
    /// Heartbeat interval [default: 60s].
    #[arg(long, env = "GATEHOUSE_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<String>,
    /// Longest pause between retries when the control plane is unreachable [default: 2s].
    #[arg(long, env = "GATEHOUSE_RETRY_MAX")]
    pub retry_max: Option<String>,
    /// How long the gateway waits for a backend's response [default: 300s].
    #[arg(long, env = "GATEHOUSE_BACKEND_TIMEOUT")]
    pub backend_timeout: Option<String>,
    /// Worker threads [default: one per CPU].
    #[arg(long, env = "GATEHOUSE_WORKERS")]
    pub workers: Option<usize>,
    /// How long shutdown waits for requests in flight [default: 30s].
    #[arg(long, env = "GATEHOUSE_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<String>,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Send OpenTelemetry traces of gateway requests to this OTLP/HTTP collector, e.g.
    /// http://127.0.0.1:4318 (traces go to /v1/traces under it) [default: off].
    #[arg(long, env = "GATEHOUSE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The Dapr sidecar's HTTP API, for set-backend-service backend-id="dapr", publish-to-dapr
    /// and invoke-dapr-binding [default: DAPR_HTTP_ENDPOINT, else http://127.0.0.1:DAPR_HTTP_PORT,
    /// else http://localhost:3500].
    #[arg(long, env = "GATEHOUSE_DAPR_HTTP_ENDPOINT")]
    pub dapr_http_endpoint: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Create or replace a gateway resource.
    Create {
        id: String,
        #[arg(long)]
        location: Option<String>,
    },
    /// Assign an API to a gateway.
    Assign { id: String, api: String },
    /// Stop serving an API on a gateway.
    Unassign { id: String, api: String },
    /// Print a new token for a gateway, and nothing else.
    Token {
        id: String,
        /// How long the token lives, at most 30d.
        #[arg(long, default_value = "30d")]
        expiry: String,
        /// Sign with the secondary key instead of the primary.
        #[arg(long)]
        secondary: bool,
    },
    /// Show a gateway's instances: last heartbeat, configuration revision, link state.
    Status { id: String },
    /// List gateways.
    List,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check policy documents (root <policies>) and policy fragments (root <fragment>) offline
    /// with the compiler gateways use. Prints FILE:LINE:COL: message per problem; exits 2 when
    /// any file is invalid.
    Check {
        /// The scope the documents are for (global, product, api or operation); its rules then
        /// apply. Without it, rules that depend on the scope are warnings.
        #[arg(long, value_parser = ["global", "product", "api", "operation"])]
        scope: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Set the policy of one scope from a file.
    Set {
        /// The global policy.
        #[arg(long, conflicts_with_all = ["product", "api"])]
        global: bool,
        /// A product's policy.
        #[arg(long, conflicts_with = "api")]
        product: Option<String>,
        /// An API's policy (or, with --operation, an operation's).
        #[arg(long)]
        api: Option<String>,
        #[arg(long, requires = "api")]
        operation: Option<String>,
        file: PathBuf,
    },
}
