//! Test helpers: compile a document, build an exchange, and run a pipeline against an `Io`
//! that records what would have gone to the backend.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::compile::{self, Mode, NoNamedValues, PolicyDocument, Scope, Severity};
use crate::exchange::{Exchange, Request, RequestInfo, Response};
use crate::run::{Decision, Io, Pipeline, PolicyError};

use super::{CacheEntry, ForwardRequest, OpenIdKeys};

pub fn document(xml: &str) -> PolicyDocument {
    let (doc, diags) = compile::compile(xml, Scope::Global, &NoNamedValues, Mode::Strict);
    doc.unwrap_or_else(|| panic!("policy did not compile: {diags:?}"))
}

pub fn pipeline(xml: &str) -> Pipeline {
    Pipeline::compose(&document(xml), None, None, None)
}

/// The error messages for an inbound section holding `inner`.
pub fn errors_inbound(inner: &str) -> Vec<String> {
    let xml = format!("<policies><inbound>{inner}</inbound></policies>");
    let (_, diags) = compile::compile(&xml, Scope::Api, &NoNamedValues, Mode::Strict);
    diags
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect()
}

pub fn exchange(method: &str, path_and_query: &str, headers: &[(&str, &str)]) -> Exchange {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path_and_query.to_owned(), None),
    };
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    Exchange::new(
        Request {
            method: Method::from_bytes(method.as_bytes()).unwrap(),
            scheme: "https".into(),
            host: "gw.example".into(),
            path,
            query,
            headers: map,
            body: Some(bytes::Bytes::new()),
        },
        RequestInfo {
            api_id: "api".into(),
            operation_id: "op".into(),
            ip: "127.0.0.1".into(),
            ..RequestInfo::default()
        },
    )
}

pub fn all(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// In-memory fixed-window counters shared between runs.
#[derive(Clone, Default)]
pub struct Counters(Arc<Mutex<HashMap<String, u64>>>);

/// Records the forwarded request; answers 200 "ok" (or `answer`, with `answer_type`).
#[derive(Default)]
pub struct MockIo {
    pub forwarded: Option<Request>,
    pub counters: Counters,
    /// The backend's body instead of "ok".
    pub answer: Option<bytes::Bytes>,
    /// The backend's Content-Type.
    pub answer_type: Option<String>,
    /// How many times the backend was called.
    pub forwards: usize,
    /// The gateway's cache, shareable between runs.
    pub cache: MockCache,
    /// OpenID configuration URL → the provider's keys.
    pub openid: HashMap<String, Arc<OpenIdKeys>>,
    /// Each `openid_keys` call: the URL and whether a refresh was asked for.
    pub openid_calls: Vec<(String, bool)>,
    /// What `emit-metric` handed over.
    pub emitted: Vec<super::EmittedMetric>,
    /// What `trace` handed over.
    pub traced: Vec<super::TraceEvent>,
    /// What `log-to-eventhub` handed over.
    pub logged: Vec<super::LogEntry>,
}

/// An in-memory cache shared between runs (entries never expire).
#[derive(Clone, Default)]
pub struct MockCache(pub Arc<Mutex<HashMap<String, CacheEntry>>>);

/// The error messages for a `section` holding `inner`.
pub fn errors_in(section: &str, inner: &str) -> Vec<String> {
    let xml = format!("<policies><{section}>{inner}</{section}></policies>");
    let (_, diags) = compile::compile(&xml, Scope::Api, &NoNamedValues, Mode::Strict);
    diags
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect()
}

impl Io for MockIo {
    fn emit_metric(&mut self, metric: super::EmittedMetric) {
        self.emitted.push(metric);
    }

    fn trace_event(&mut self, event: super::TraceEvent) {
        self.traced.push(event);
    }

    fn log(&mut self, entry: super::LogEntry) {
        self.logged.push(entry);
    }

    async fn read_request_body(&mut self, _ex: &mut Exchange) -> Result<(), PolicyError> {
        Ok(())
    }

    async fn read_response_body(&mut self, _ex: &mut Exchange) -> Result<(), PolicyError> {
        Ok(())
    }

    async fn forward(
        &mut self,
        ex: &mut Exchange,
        _options: &ForwardRequest,
    ) -> Result<(), PolicyError> {
        self.forwarded = Some(ex.request.clone());
        self.forwards += 1;
        let mut r = Response::new(StatusCode::OK);
        r.body = Some(
            self.answer
                .clone()
                .unwrap_or_else(|| bytes::Bytes::from_static(b"ok")),
        );
        if let Some(t) = &self.answer_type {
            r.headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_str(t).unwrap(),
            );
        }
        ex.response = Some(r);
        Ok(())
    }

    async fn count(&mut self, key: &str, calls: u64, period: Duration, increment: u64) -> Decision {
        let mut map = self.counters.0.lock().unwrap();
        let used = map.entry(key.to_owned()).or_insert(0);
        if *used + increment > calls {
            return Decision {
                allowed: false,
                remaining: calls.saturating_sub(*used),
                retry_after: period,
            };
        }
        *used += increment;
        Decision {
            allowed: true,
            remaining: calls - *used,
            retry_after: period,
        }
    }

    async fn cache_get(&mut self, key: &str, _caching: super::CachingType) -> Option<CacheEntry> {
        self.cache.0.lock().unwrap().get(key).cloned()
    }

    async fn cache_put(
        &mut self,
        key: &str,
        entry: CacheEntry,
        _ttl: Duration,
        _caching: super::CachingType,
    ) {
        self.cache.0.lock().unwrap().insert(key.to_owned(), entry);
    }

    async fn cache_remove(&mut self, key: &str, _caching: super::CachingType) {
        self.cache.0.lock().unwrap().remove(key);
    }

    async fn openid_keys(
        &mut self,
        config_url: &str,
        refresh: bool,
    ) -> Result<Arc<OpenIdKeys>, PolicyError> {
        self.openid_calls.push((config_url.to_owned(), refresh));
        self.openid
            .get(config_url)
            .cloned()
            .ok_or_else(|| PolicyError::runtime("OpenIdConfigurationUnavailable", "unreachable"))
    }
}

pub fn run(p: &Pipeline, ex: &mut Exchange) -> MockIo {
    run_with(p, ex, Counters::default())
}

pub fn run_with(p: &Pipeline, ex: &mut Exchange, counters: Counters) -> MockIo {
    let mut io = MockIo {
        counters,
        ..MockIo::default()
    };
    block_on(p.run(ex, &mut io));
    io
}

/// Drives a future that never waits on I/O (the mock's never do).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = TaskContext::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// What the control plane ships for an operation (`OperationSchemas` as JSON), compiled as
/// the gateway compiles it.
pub fn described(schemas: serde_json::Value) -> Arc<crate::exchange::OperationDocument> {
    let schemas: gatehouse_model::snapshot::OperationSchemas =
        serde_json::from_value(schemas).unwrap();
    Arc::new(
        crate::exchange::OperationDocument::build(
            None,
            Some(&schemas),
            &std::collections::BTreeMap::new(),
            &mut |p| panic!("{p}"),
        )
        .unwrap(),
    )
}

/// The errors variable `name` as JSON (what `JsonConvert.SerializeObject` prints).
pub fn errors_json(ex: &Exchange, name: &str) -> serde_json::Value {
    match ex.variables.get(name) {
        Some(crate::expr::Value::Array(items)) => serde_json::Value::Array(
            items
                .iter()
                .map(|v| match v {
                    crate::expr::Value::Json(j) => j.to_serde(),
                    other => serde_json::Value::String(other.to_policy_string()),
                })
                .collect(),
        ),
        Some(other) => panic!("{name} is not a list: {other:?}"),
        None => serde_json::Value::Null,
    }
}

/// All diagnostics (errors and warnings) for a `section` holding `inner`, as printed.
pub fn diagnostics_in(section: &str, inner: &str) -> Vec<String> {
    let xml = format!("<policies><{section}>{inner}</{section}></policies>");
    let (_, diags) = compile::compile(&xml, Scope::Api, &NoNamedValues, Mode::Strict);
    diags.into_iter().map(|d| d.to_string()).collect()
}
