//! Micro-benchmarks of the gateway's hot path and of configuration compile time:
//! routing, the subscription-key lookup, a ten-policy pipeline per request, the telemetry of
//! one request (metrics and aggregates, and the access log line), compiling a configuration
//! of 1,000 APIs that each carry a policy, and applying a one-subscription change to one of
//! 10,000 APIs and 100,000 subscriptions; and the validation policies (parameters, response
//! headers, status) on one request against an operation's imported OpenAPI definitions.
//!
//!     cargo bench -p gatehouse-gateway --bench gateway

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_gateway::CompiledConfig;
use gatehouse_gateway::route;
use gatehouse_model::resources::{Operation, ProductState, Protocol, SubscriptionState};
use gatehouse_model::snapshot::{
    Delta, FORMAT_VERSION, Snapshot, SnapshotApi, SnapshotProduct, SnapshotSubscription,
};
use gatehouse_policy::exchange::{Request, RequestInfo, Response, SubscriptionInfo};
use gatehouse_policy::policies::ForwardRequest;
use gatehouse_policy::{Decision, Exchange, Io, PolicyError};

const TEN_POLICIES: &str = r#"<policies>
  <inbound>
    <base />
    <check-header name="X-Client" failed-check-httpcode="401" failed-check-error-message="no client"><value>web</value><value>mobile</value></check-header>
    <rate-limit-by-key calls="1000000000" renewal-period="3600" counter-key="@(context.Subscription.Id)" />
    <set-variable name="caller" value="@(context.Subscription.Id + "@" + context.Request.IpAddress)" />
    <set-header name="X-Caller" exists-action="override"><value>@((string)context.Variables["caller"])</value></set-header>
    <set-header name="X-Api" exists-action="override"><value>@(context.Api.Name)</value></set-header>
    <set-query-parameter name="api-version" exists-action="override"><value>2024-01-01</value></set-query-parameter>
    <choose>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Tier", "") == "gold")">
        <set-header name="X-Priority" exists-action="override"><value>high</value></set-header>
      </when>
      <otherwise><set-header name="X-Priority" exists-action="override"><value>normal</value></set-header></otherwise>
    </choose>
    <rewrite-uri template="/v2/items/{id}" />
  </inbound>
  <backend><forward-request timeout="30" /></backend>
  <outbound>
    <base />
    <set-header name="X-Powered-By" exists-action="override"><value>gatehouse</value></set-header>
    <set-header name="Server" exists-action="delete" />
  </outbound>
</policies>"#;

fn api(i: usize, policy: bool) -> SnapshotApi {
    SnapshotApi {
        id: format!("api-{i}"),
        path: format!("svc{i}/v1"),
        service_url: Some(format!("http://127.0.0.1:9/{i}")),
        protocols: vec![Protocol::Http, Protocol::Https],
        subscription_required: true,
        key_header: "Ocp-Apim-Subscription-Key".into(),
        key_query: "subscription-key".into(),
        operations: (0..5)
            .map(|o| Operation {
                id: format!("op-{o}"),
                display_name: format!("Operation {o}"),
                method: if o % 2 == 0 {
                    "GET".into()
                } else {
                    "POST".into()
                },
                url_template: format!("/things{o}/{{id}}"),
                template_parameters: vec![],
                description: None,
            })
            .collect(),
        name: format!("API {i}"),
        version: None,
        policy: policy.then(|| TEN_POLICIES.to_owned()),
        operation_policies: Default::default(),
        examples: Default::default(),
        schemas: Default::default(),
        definitions: Default::default(),
    }
}

fn hex(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn snapshot(apis: usize, subscriptions: usize, policies: bool) -> Snapshot {
    Snapshot {
        format: FORMAT_VERSION,
        revision: 1,
        gateway_id: "bench".into(),
        apis: (0..apis).map(|i| api(i, policies)).collect(),
        products: vec![SnapshotProduct {
            id: "p".into(),
            subscription_required: true,
            state: ProductState::Published,
            apis: (0..apis).map(|i| format!("api-{i}")).collect(),
            name: "P".into(),
            policy: None,
        }],
        subscriptions: (0..subscriptions)
            .map(|i| SnapshotSubscription {
                id: format!("sub-{i}"),
                scope: "/products/p".into(),
                state: SubscriptionState::Active,
                key_hashes: vec![hex(gatehouse_gateway::config::hash_key(&format!(
                    "key-{i:012}"
                )))],
                name: format!("Subscription {i}"),
            })
            .collect(),
        global_policy: None,
        named_values: Default::default(),
        policy_fragments: Default::default(),
        tls: Default::default(),
        tryit_key: None,
        loggers: Vec::new(),
        backends: Vec::new(),
    }
}

/// An `Io` that answers at once, so the benchmark measures the policies themselves.
struct NullIo;

impl Io for NullIo {
    async fn read_request_body(&mut self, _ex: &mut Exchange) -> Result<(), PolicyError> {
        Ok(())
    }
    async fn read_response_body(&mut self, _ex: &mut Exchange) -> Result<(), PolicyError> {
        Ok(())
    }
    async fn forward(&mut self, ex: &mut Exchange, _o: &ForwardRequest) -> Result<(), PolicyError> {
        let mut r = Response::new(http::StatusCode::OK);
        r.headers
            .insert("server", http::HeaderValue::from_static("backend"));
        ex.response = Some(r);
        Ok(())
    }
    async fn count(&mut self, _key: &str, calls: u64, period: Duration, _inc: u64) -> Decision {
        Decision {
            allowed: true,
            remaining: calls,
            retry_after: period,
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn benches(c: &mut Criterion) {
    let config = CompiledConfig::compile(&snapshot(10_000, 100_000, false)).unwrap();
    c.bench_function("route: find API + operation among 10,000 APIs", |b| {
        b.iter(|| {
            let (api, rest) = config
                .find_api(black_box("/svc7345/v1/things3/42"))
                .unwrap();
            black_box(route::find(&api.operations, &http::Method::POST, rest).unwrap());
        })
    });
    let (api, _) = config.find_api("/svc7345/v1/things3/42").unwrap();
    c.bench_function("key: check a key among 100,000 subscriptions", |b| {
        b.iter(|| black_box(config.check_key(api, black_box("key-000000054321"))))
    });

    let with_policy = CompiledConfig::compile(&snapshot(1, 1, true)).unwrap();
    let (api, _) = with_policy.find_api("/svc0/v1/things0/42").unwrap();
    let pipeline = api.operations[0].policy.default.clone();
    c.bench_function("pipeline: ten policies, one request", |b| {
        b.iter(|| {
            let mut headers = http::HeaderMap::new();
            headers.insert("x-client", http::HeaderValue::from_static("web"));
            headers.insert("x-tier", http::HeaderValue::from_static("gold"));
            let mut ex = Exchange::new(
                Request {
                    method: http::Method::GET,
                    scheme: "http".into(),
                    host: "gw".into(),
                    path: "/things0/42".into(),
                    query: Some("a=1".into()),
                    headers,
                    body: None,
                },
                RequestInfo {
                    api_id: api.id.clone(),
                    api_name: api.name.clone(),
                    operation_id: "op-0".into(),
                    subscription: Some(SubscriptionInfo {
                        id: "sub-1".into(),
                        name: "S".into(),
                        key: String::new(),
                    }),
                    ip: "127.0.0.1".into(),
                    matched: vec![("id".into(), "42".into())],
                    ..RequestInfo::default()
                },
            );
            block_on(pipeline.run(&mut ex, &mut NullIo));
            black_box(ex.response);
        })
    });

    telemetry_benches(c);
    validation_benches(c);

    let thousand = snapshot(1000, 1000, true);
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("1,000 APIs, each with a ten-policy document", |b| {
        b.iter(|| black_box(CompiledConfig::compile(&thousand).unwrap()))
    });
    // What a gateway does for a one-subscription change at 10,000 APIs and 100,000
    // subscriptions: patch the snapshot, then update the compiled configuration.
    let big = snapshot(10_000, 100_000, false);
    let mut next = big.clone();
    next.revision += 1;
    next.subscriptions[54_321].state = SubscriptionState::Suspended;
    let delta = Delta::between(&big, &next);
    group.bench_function(
        "one-subscription delta: patch the snapshot (100,000 subscriptions)",
        |b| {
            b.iter_batched(
                || big.clone(),
                |base| black_box(delta.apply_owned(base).unwrap()),
                criterion::BatchSize::LargeInput,
            )
        },
    );
    group.bench_function(
        "one-subscription delta: update the compiled configuration",
        |b| b.iter(|| black_box(config.update(&delta, &next).unwrap())),
    );
    group.finish();
}

/// What the gateway does per request after the response: fold the record into the worker's
/// metrics and per-minute aggregates (access log off), and format the JSON access log line.
fn telemetry_benches(c: &mut Criterion) {
    use gatehouse_gateway::telemetry::{AccessLog, ObservedBody, Telemetry, TelemetrySettings};
    let telemetry = Telemetry::new(
        TelemetrySettings {
            access_log: AccessLog::Off,
            ..TelemetrySettings::default()
        },
        1,
    );
    let worker = telemetry.worker(0);
    let uri: http::Uri = "/svc7345/v1/things3/42?subscription-key=k&page=2"
        .parse()
        .unwrap();
    let headers = http::HeaderMap::new();
    let id = http::HeaderValue::from_static("6a3c9e5e-0d0b-4f59-9a55-3c1f6b1b2f10");
    let (api, op, product, sub): (
        std::sync::Arc<str>,
        std::sync::Arc<str>,
        std::sync::Arc<str>,
        std::sync::Arc<str>,
    ) = (
        "svc7345".into(),
        "op3".into(),
        "gold".into(),
        "sub-54321".into(),
    );
    let client: std::sync::Arc<str> = "10.1.2.3".into();
    let record = || {
        let mut r = worker.begin(&http::Method::GET, &uri, &headers, &client, &id);
        r.api = Some(api.clone());
        r.operation = Some(op.clone());
        r.product = Some(product.clone());
        r.subscription = Some(sub.clone());
        r.key_params = Some(std::sync::Arc::from(vec![std::sync::Arc::<str>::from(
            "subscription-key",
        )]));
        r.status = 200;
        r.backend_status = Some(200);
        r.backend_time = Some(Duration::from_micros(870));
        r
    };
    c.bench_function("telemetry: metrics + aggregates of one request", |b| {
        b.iter(|| {
            drop(ObservedBody::new(
                http_body_util::Either::Left(http_body_util::Full::new(bytes::Bytes::new())),
                record(),
                worker.clone(),
            ))
        })
    });
    let r = record();
    let mut out = Vec::with_capacity(1 << 16);
    c.bench_function("telemetry: one JSON access log line", |b| {
        b.iter(|| {
            out.clear();
            r.json_line(&mut out, Duration::from_micros(1234), 512);
            black_box(&out);
        })
    });
}

/// One GET through `validate-parameters`, `validate-headers` and `validate-status-code` (all
/// `prevent`, the request and response valid), against the same pipeline without them.
fn validation_benches(c: &mut Criterion) {
    const VALIDATIONS: &str = r#"<policies>
      <inbound><base />
        <validate-parameters specified-parameter-action="prevent" unspecified-parameter-action="prevent" errors-variable-name="errs">
          <headers><parameter name="Host" action="ignore" /><parameter name="User-Agent" action="ignore" /></headers>
        </validate-parameters>
      </inbound>
      <outbound><base />
        <validate-headers specified-header-action="prevent" unspecified-header-action="prevent" errors-variable-name="errs">
          <header name="Server" action="ignore" />
        </validate-headers>
        <validate-status-code unspecified-status-code-action="prevent" errors-variable-name="errs" />
      </outbound>
    </policies>"#;
    let schemas: gatehouse_model::snapshot::OperationSchemas = serde_json::from_value(serde_json::json!({
        "parameters": [
            {"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 50}},
            {"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}}},
            {"name": "X-Trace", "in": "header", "schema": {"type": "string", "pattern": "^[a-f0-9]+$"}}
        ],
        "statuses": {"200": [{"name": "X-Rate", "in": "header", "schema": {"type": "integer"}}], "404": []}
    }))
    .unwrap();
    for (name, policy) in [
        (
            "validation: the same request without validation policies",
            None,
        ),
        (
            "validation: validate-parameters + validate-headers + validate-status-code, one valid request",
            Some(VALIDATIONS),
        ),
    ] {
        let mut snap = snapshot(1, 1, false);
        snap.apis[0].schemas.insert("op-0".into(), schemas.clone());
        snap.apis[0].policy = policy.map(str::to_owned);
        let config = CompiledConfig::compile(&snap).unwrap();
        let (api, _) = config.find_api("/svc0/v1/things0/42").unwrap();
        let op = &api.operations[0];
        let pipeline = op.policy.default.clone();
        let examples = op.examples.clone();
        assert!(examples.is_some());
        c.bench_function(name, |b| {
            b.iter(|| {
                let mut headers = http::HeaderMap::new();
                headers.insert("host", http::HeaderValue::from_static("gw.example"));
                headers.insert("user-agent", http::HeaderValue::from_static("bench/1"));
                headers.insert("accept", http::HeaderValue::from_static("*/*"));
                headers.insert("x-trace", http::HeaderValue::from_static("00ff"));
                let mut ex = Exchange::new(
                    Request {
                        method: http::Method::GET,
                        scheme: "http".into(),
                        host: "gw".into(),
                        path: "/things0/42".into(),
                        query: Some("limit=10&tags=a,b".into()),
                        headers,
                        body: None,
                    },
                    RequestInfo {
                        api_id: api.id.clone(),
                        operation_id: "op-0".into(),
                        ip: "127.0.0.1".into(),
                        matched: vec![("id".into(), "42".into())],
                        examples: examples.clone(),
                        ..RequestInfo::default()
                    },
                );
                block_on(pipeline.run(&mut ex, &mut NullIo));
                assert!(ex.failure.is_none() && !ex.variables.contains_key("errs"));
                black_box(ex.response);
            })
        });
    }
}

criterion_group!(gateway, benches);
criterion_main!(gateway);
