//! Running a composed pipeline over one exchange: inbound, backend, outbound, and on-error
//! when anything fails, with `context.LastError` set.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::answer::Answer;

use crate::compile::{PolicyDocument, Scope, Section};
use crate::exchange::{Exchange, LastError, Response};
use crate::expr::{Expr, HttpResponse, Value};
use crate::policies::{CacheEntry, ForwardRequest, OpenIdKeys, Step};

/// Steps one expression evaluation may take before it is stopped.
pub const EXPRESSION_STEPS: u64 = 100_000;

/// The evaluation budget of one request.
#[derive(Debug)]
pub struct Budget {
    per_expression: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            per_expression: EXPRESSION_STEPS,
        }
    }
}

impl Budget {
    pub fn eval(&mut self, e: &Expr, ex: &Exchange) -> Result<Value, PolicyError> {
        let mut b = crate::expr::Budget::new(self.per_expression);
        e.eval(ex, &mut b)
            .map_err(|err| PolicyError::runtime(&err.reason, err.message))
    }
}

/// A failure inside the pipeline. It stops the section and runs `on-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The policy that failed (`set-header`, `forward-request`, …), or `expression`.
    pub source: String,
    pub reason: String,
    pub message: String,
    /// What the client gets when `on-error` does not answer itself.
    pub answer: Answer,
}

impl PolicyError {
    pub fn new(
        source: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
        answer: Answer,
    ) -> Self {
        Self {
            source: source.into(),
            reason: reason.into(),
            message: message.into(),
            answer,
        }
    }

    pub fn runtime(reason: &str, message: impl Into<String>) -> Self {
        Self::new("expression", reason, message, Answer::Internal)
    }

    pub fn from_policy(mut self, policy: &str) -> Self {
        if self.source == "expression" || self.source.is_empty() {
            self.source = policy.to_owned();
        }
        self
    }

    pub fn backend_unreachable(message: impl Into<String>) -> Self {
        Self::new(
            "forward-request",
            "BackendConnectionFailure",
            message,
            Answer::BadGateway,
        )
    }

    /// `send-request` could not get an answer (`reason`: `BackendConnectionFailure`,
    /// `Timeout`).
    pub fn send_failed(reason: &str, message: impl Into<String>) -> Self {
        Self::new("send-request", reason, message, Answer::Internal)
    }

    pub fn backend_timeout(message: impl Into<String>) -> Self {
        Self::new(
            "forward-request",
            "Timeout",
            message,
            Answer::GatewayTimeout,
        )
    }
}

/// What to do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `return-response` (or a refusal such as a rate limit): `exchange.response` is final.
    Return,
}

/// The outcome of a rate-limit or quota counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub remaining: u64,
    /// When the window renews.
    pub retry_after: Duration,
}

/// What the pipeline needs from the gateway around it.
pub trait Io: Send {
    /// Reads the request body to the end into `ex.request.body` (a no-op when already read).
    fn read_request_body(
        &mut self,
        ex: &mut Exchange,
    ) -> impl Future<Output = Result<(), PolicyError>> + Send;
    /// Reads the response body to the end into the response's body.
    fn read_response_body(
        &mut self,
        ex: &mut Exchange,
    ) -> impl Future<Output = Result<(), PolicyError>> + Send;
    /// Sends the request to the backend and puts its answer in `ex.response`.
    fn forward(
        &mut self,
        ex: &mut Exchange,
        options: &ForwardRequest,
    ) -> impl Future<Output = Result<(), PolicyError>> + Send;
    /// Counts `increment` calls against `key` in a window of `period`, allowing `calls`.
    fn count(
        &mut self,
        key: &str,
        calls: u64,
        period: Duration,
        increment: u64,
    ) -> impl Future<Output = Decision> + Send;

    // The methods below have defaults so that an `Io` for a single request (tests, benches)
    // needs nothing more; the gateway implements them all.

    /// Takes one of the `max` slots of `key` (`limit-concurrency`), or `None` at once when
    /// all are taken. The slot is free again when the [`Slot`] is dropped. The default grants
    /// every request.
    fn acquire(&mut self, key: &str, max: u64) -> impl Future<Output = Option<Slot>> + Send {
        let _ = (key, max);
        std::future::ready(Some(Slot::unlimited()))
    }

    /// Sends a request of `send-request` and reads its whole answer, all within
    /// `request.timeout`. The future does not borrow the `Io`, so several can run at once
    /// (`wait`). The default refuses.
    fn send(
        &mut self,
        request: OutboundRequest,
    ) -> impl Future<Output = Result<HttpResponse, PolicyError>> + Send + use<Self> {
        std::future::ready(Err(PolicyError::send_failed(
            "BackendConnectionFailure",
            format!("cannot send requests from here ({})", request.url),
        )))
    }

    /// Sends a request of `send-one-way-request` without waiting for it. The default drops it.
    fn send_detached(&mut self, request: OutboundRequest) {
        let _ = request;
    }

    /// A section starts (`entering`) or ends: the gateway's traces time them. The default
    /// does nothing.
    fn section(&mut self, section: crate::compile::Section, entering: bool) {
        let _ = (section, entering);
    }

    /// Takes the message of a `trace` policy (already logged). The default drops it.
    fn trace_event(&mut self, event: crate::policies::TraceEvent) {
        let _ = event;
    }

    /// Takes a value of `emit-metric`. The default drops it.
    fn emit_metric(&mut self, metric: crate::policies::EmittedMetric) {
        let _ = metric;
    }

    /// Takes a message of `log-to-eventhub`: the gateway queues it and sends it to its logger
    /// in the background, never making the request wait. The default drops it.
    fn log(&mut self, entry: crate::policies::LogEntry) {
        let _ = entry;
    }

    /// The URL of `path` on the Dapr sidecar's HTTP API (`publish-to-dapr`,
    /// `invoke-dapr-binding`). The default is Azure's sidecar, `http://localhost:3500`.
    fn dapr_url(&self, path: &str) -> String {
        format!("{}{path}", crate::policies::DAPR_DEFAULT_ENDPOINT)
    }

    /// Waits (`retry` between attempts). The default returns at once.
    fn sleep(&mut self, duration: Duration) -> impl Future<Output = ()> + Send {
        let _ = duration;
        std::future::ready(())
    }

    /// The entry `key` of the gateway's cache (`cache-lookup`, `cache-lookup-value`): one
    /// cache per gateway process, shared by its workers, bounded in bytes. The default has none.
    fn cache_get(
        &mut self,
        key: &str,
        caching: crate::policies::CachingType,
    ) -> impl Future<Output = Option<CacheEntry>> + Send {
        let _ = (key, caching);
        std::future::ready(None)
    }

    /// Keeps `entry` under `key` for `ttl` (`cache-store`, `cache-store-value`). The default
    /// forgets it.
    fn cache_put(
        &mut self,
        key: &str,
        entry: CacheEntry,
        ttl: Duration,
        caching: crate::policies::CachingType,
    ) -> impl Future<Output = ()> + Send {
        let _ = (key, entry, ttl, caching);
        std::future::ready(())
    }

    /// Removes `key` from the cache (`cache-remove-value`).
    fn cache_remove(
        &mut self,
        key: &str,
        caching: crate::policies::CachingType,
    ) -> impl Future<Output = ()> + Send {
        let _ = (key, caching);
        std::future::ready(())
    }

    /// An access token for `resource` from the gateway's token provider
    /// (`authentication-managed-identity`; `client_id` names a user-assigned identity). The
    /// gateway caches it until shortly before it expires. The default has no provider.
    fn managed_identity_token(
        &mut self,
        resource: &str,
        client_id: Option<&str>,
    ) -> impl Future<Output = Result<crate::policies::AccessToken, PolicyError>> + Send {
        let _ = (resource, client_id);
        std::future::ready(Err(PolicyError::managed_identity(
            "this gateway has no token provider (--identity-provider)",
        )))
    }

    /// The signing keys an OpenID Connect provider publishes (`validate-jwt`'s
    /// `<openid-config url>`): its discovery document's `jwks_uri` and issuer, fetched and
    /// cached by the gateway and refreshed hourly. `refresh` asks for a fresh copy because a
    /// token names a key the cached set lacks; the gateway fetches again at most every five
    /// minutes. The default has no network.
    fn openid_keys(
        &mut self,
        config_url: &str,
        refresh: bool,
    ) -> impl Future<Output = Result<Arc<OpenIdKeys>, PolicyError>> + Send {
        let _ = refresh;
        std::future::ready(Err(PolicyError::runtime(
            "OpenIdConfigurationUnavailable",
            format!("cannot fetch the OpenID configuration {config_url} from here"),
        )))
    }
}

/// A request `send-request` or `send-one-way-request` makes (not to the API's backend).
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub method: http::Method,
    /// Absolute URL.
    pub url: String,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
    /// For the whole exchange: connecting, sending, and reading the answer.
    pub timeout: Duration,
    /// `<proxy>` inside `send-request`: the HTTP proxy the request goes through.
    pub proxy: Option<Arc<crate::policies::ProxySettings>>,
}

/// A `limit-concurrency` slot: held while the nested policies run, freed when dropped (on
/// success, error or cancellation alike).
pub struct Slot(Option<Box<dyn std::any::Any + Send>>);

impl Slot {
    /// A slot whose release is `guard`'s `Drop`.
    pub fn new(guard: impl std::any::Any + Send) -> Self {
        Self(Some(Box::new(guard)))
    }

    /// A slot that limits nothing.
    pub fn unlimited() -> Self {
        Self(None)
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Slot"
        } else {
            "Slot(unlimited)"
        })
    }
}

/// The effective policy of one operation (for one product): each section with every `<base/>`
/// replaced by the parent scope's section.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    pub sections: [Arc<[Step]>; 4],
    /// Whether any step or expression reads the request body, so the gateway buffers it first.
    pub reads_request_body: bool,
    /// Whether outbound or on-error reads or rewrites the response body.
    pub reads_response_body: bool,
    /// The pipeline only forwards: the gateway may take its fast path.
    pub plain_forward: bool,
    /// Nothing reads the request once it has been forwarded (the backend section is one
    /// `forward-request`, outbound and on-error are empty, no quota settles afterwards): the
    /// gateway may hand the request's headers to the backend call instead of copying them.
    pub request_done_at_forward: bool,
    /// The `cors` policies that are direct children of `inbound` (fragments included), which
    /// answer CORS preflights before anything else runs.
    pub cors: Arc<[crate::policies::Cors]>,
}

impl Pipeline {
    /// Composes global → product → API → operation. Missing scopes behave as `<base/>`.
    pub fn compose(
        global: &PolicyDocument,
        product: Option<&PolicyDocument>,
        api: Option<&PolicyDocument>,
        operation: Option<&PolicyDocument>,
    ) -> Self {
        let levels: [Option<&PolicyDocument>; 4] = [Some(global), product, api, operation];
        let mut sections: [Arc<[Step]>; 4] = Default::default();
        for s in Section::ALL {
            let mut out = Vec::new();
            expand(&levels, 3, s, &mut out);
            sections[s.index()] = out.into();
        }
        let all = || sections.iter().flat_map(|s| s.iter());
        let reads_request_body = all().any(|s| s.reads_request_body());
        let reads_response_body = sections[Section::Outbound.index()]
            .iter()
            .chain(sections[Section::OnError.index()].iter())
            .any(|s| s.reads_response_body())
            || all().any(Step::counts_tokens);
        let plain_forward = sections[Section::Inbound.index()].is_empty()
            && sections[Section::Outbound.index()].is_empty()
            && sections[Section::OnError.index()].is_empty()
            && matches!(&*sections[Section::Backend.index()], [Step::ForwardRequest(f)] if f.is_default());
        let request_done_at_forward = sections[Section::Outbound.index()].is_empty()
            && sections[Section::OnError.index()].is_empty()
            && matches!(
                &*sections[Section::Backend.index()],
                [Step::ForwardRequest(_)]
            )
            && !all().any(Step::has_quota);
        let mut cors = Vec::new();
        top_level_cors(&sections[Section::Inbound.index()], &mut cors);
        Self {
            sections,
            reads_request_body,
            reads_response_body,
            plain_forward,
            request_done_at_forward,
            cors: cors.into(),
        }
    }

    /// Whether CORS preflights are answered by this pipeline's `cors` policies.
    pub fn answers_preflight(&self) -> bool {
        !self.cors.is_empty()
    }

    pub fn section(&self, s: Section) -> &[Step] {
        &self.sections[s.index()]
    }

    /// Runs the pipeline. Afterwards `ex.response` holds the answer for the client, or, when
    /// a failure was left unanswered, `ex.failure` holds it (with `ex.response_headers` still
    /// to add to its answer).
    pub async fn run<I: Io>(&self, ex: &mut Exchange, io: &mut I) {
        if self.answers_preflight() && crate::policies::is_preflight(ex) {
            // Only the cors policies run on a preflight (Azure).
            let mut budget = Budget::default();
            if let Err(e) = crate::policies::preflight(&self.cors, ex, &mut budget) {
                self.fail(ex, io, &mut budget, Section::Inbound, e.from_policy("cors"))
                    .await;
            }
            return;
        }
        self.run_sections(ex, io).await;
        if !ex.quota_charges.is_empty() {
            // A failure nothing answered: its fixed answer is what the client gets, so the
            // conditions and the bandwidth read it, for the time of the settling only.
            let stand_in = ex.response.is_none()
                && ex.failure.as_ref().is_some_and(|e| {
                    let (status, body) = e.answer.parts();
                    let mut answer = Response::new(status);
                    answer.body = Some(bytes::Bytes::from_static(body.as_bytes()));
                    ex.response = Some(answer);
                    true
                });
            crate::policies::quota::settle(ex, io, &mut Budget::default()).await;
            if stand_in {
                ex.response = None;
            }
        }
        // On a failure nobody answered, they stay for the gateway's fixed answer.
        if !ex.response_headers.is_empty()
            && let Some(r) = ex.response.as_mut()
        {
            crate::exchange::add_response_headers(
                &mut r.headers,
                std::mem::take(&mut ex.response_headers),
            );
        }
    }

    async fn run_sections<I: Io>(&self, ex: &mut Exchange, io: &mut I) {
        let mut budget = Budget::default();
        if self.reads_request_body
            && let Err(e) = io.read_request_body(ex).await
        {
            return self.fail(ex, io, &mut budget, Section::Inbound, e).await;
        }
        for section in [Section::Inbound, Section::Backend, Section::Outbound] {
            if section == Section::Outbound
                && self.reads_response_body
                && ex.response.is_some()
                && let Err(e) = io.read_response_body(ex).await
            {
                return self.fail(ex, io, &mut budget, section, e).await;
            }
            if section == Section::Outbound && !ex.llm_pending.is_empty() {
                // The answer is known: the language-model policies count its tokens now, so
                // outbound sees what they report.
                crate::policies::llm::settle(ex, io).await;
            }
            io.section(section, true);
            let result = run_inline(self.section(section), ex, io, &mut budget).await;
            io.section(section, false);
            match result {
                Ok(Flow::Continue) => {}
                Ok(Flow::Return) => return,
                Err(e) => return self.fail(ex, io, &mut budget, section, e).await,
            }
        }
        if ex.response.is_none() {
            // Nothing answered: Azure answers 200 with an empty body.
            ex.response = Some(Response::new(StatusCode::OK));
        }
    }

    async fn fail<I: Io>(
        &self,
        ex: &mut Exchange,
        io: &mut I,
        budget: &mut Budget,
        section: Section,
        e: PolicyError,
    ) {
        ex.last_error = Some(LastError {
            source: e.source.clone(),
            reason: e.reason.clone(),
            message: e.message.clone(),
            scope: String::new(),
            section: section.name().to_owned(),
            path: String::new(),
            policy_id: String::new(),
        });
        // A policy that refused the request (validate-jwt) made the answer on-error starts from.
        let refusal = ex.error_response.take();
        ex.response = refusal.clone();
        io.section(Section::OnError, true);
        let result = run_inline(self.section(Section::OnError), ex, io, budget).await;
        io.section(Section::OnError, false);
        let handled = match result {
            Ok(_) => ex.response.is_some(),
            Err(second) => {
                tracing::warn!(source = %second.source, reason = %second.reason, message = %second.message, "on-error failed too");
                false
            }
        };
        if !handled && refusal.is_some() {
            ex.response = refusal;
        } else if !handled {
            // Nothing answered: the gateway answers with the error's fixed answer.
            ex.response = None;
            ex.failure = Some(e);
        }
    }
}

/// The `cors` policies among `steps`, looking into included fragments (which stand for their
/// policies) but not into other nested policies.
fn top_level_cors(steps: &[Step], out: &mut Vec<crate::policies::Cors>) {
    for step in steps {
        match step {
            Step::Cors(c) => out.push((**c).clone()),
            Step::IncludeFragment(f) => top_level_cors(&f.steps, out),
            _ => {}
        }
    }
}

fn expand(levels: &[Option<&PolicyDocument>; 4], level: usize, s: Section, out: &mut Vec<Step>) {
    let Some(doc) = levels[level] else {
        if level > 0 {
            expand(levels, level - 1, s, out);
        }
        return;
    };
    for step in doc.section(s) {
        match step {
            Step::Base => {
                if level > 0 {
                    expand(levels, level - 1, s, out);
                }
            }
            other => out.push(other.clone()),
        }
    }
}

/// Runs a section's steps, in the caller's future: no allocation per section. Nested steps
/// (`choose`, `retry`, …) go through [`run_steps`], whose box ends the recursion.
async fn run_inline<I: Io>(
    steps: &[Step],
    ex: &mut Exchange,
    io: &mut I,
    budget: &mut Budget,
) -> Result<Flow, PolicyError> {
    for step in steps {
        if step.run(ex, io, budget).await? == Flow::Return {
            return Ok(Flow::Return);
        }
    }
    Ok(Flow::Continue)
}

/// Runs a list of steps. Boxed because `choose` and friends nest.
pub fn run_steps<'a, I: Io>(
    steps: &'a [Step],
    ex: &'a mut Exchange,
    io: &'a mut I,
    budget: &'a mut Budget,
) -> Pin<Box<dyn Future<Output = Result<Flow, PolicyError>> + Send + 'a>> {
    Box::pin(async move {
        for step in steps {
            if step.run(ex, io, budget).await? == Flow::Return {
                return Ok(Flow::Return);
            }
        }
        Ok(Flow::Continue)
    })
}

/// Which scope a document belongs to, for messages.
pub fn scope_name(s: Scope) -> &'static str {
    s.name()
}

#[cfg(test)]
mod tests;
