use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::AccessToken;
use crate::exchange::Exchange;
use crate::expr::HttpResponse;
use crate::policies::ForwardRequest;
use crate::policies::flowkit::FlowIo;
use crate::policies::testkit::*;
use crate::run::{Decision, Io, OutboundRequest, PolicyError};

/// Each token asked for: the resource and the client id.
type Calls = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// The flow test `Io` with a token provider: `Some(token)` answers every resource with it
/// (suffixed with the resource and client id), `None` fails. Each call is recorded.
#[derive(Clone, Default)]
struct TokenIo {
    flow: FlowIo,
    token: Option<&'static str>,
    calls: Calls,
}

impl TokenIo {
    fn with(token: Option<&'static str>) -> Self {
        Self {
            token,
            ..Self::default()
        }
    }

    fn calls(&self) -> Vec<(String, Option<String>)> {
        self.calls.lock().unwrap().clone()
    }
}

impl Io for TokenIo {
    async fn read_request_body(&mut self, ex: &mut Exchange) -> Result<(), PolicyError> {
        self.flow.read_request_body(ex).await
    }

    async fn read_response_body(&mut self, ex: &mut Exchange) -> Result<(), PolicyError> {
        self.flow.read_response_body(ex).await
    }

    async fn forward(&mut self, ex: &mut Exchange, o: &ForwardRequest) -> Result<(), PolicyError> {
        // Keep what the backend got, headers included.
        self.flow.state.sent.lock().unwrap().push(OutboundRequest {
            method: ex.request.method.clone(),
            url: "backend".into(),
            headers: ex.request.headers.clone(),
            body: Default::default(),
            timeout: Duration::ZERO,
            proxy: None,
        });
        self.flow.forward(ex, o).await
    }

    async fn count(&mut self, key: &str, calls: u64, period: Duration, inc: u64) -> Decision {
        self.flow.count(key, calls, period, inc).await
    }

    fn send(
        &mut self,
        request: OutboundRequest,
    ) -> impl Future<Output = Result<HttpResponse, PolicyError>> + Send + use<> {
        self.flow.send(request)
    }

    async fn managed_identity_token(
        &mut self,
        resource: &str,
        client_id: Option<&str>,
    ) -> Result<AccessToken, PolicyError> {
        self.calls
            .lock()
            .unwrap()
            .push((resource.to_owned(), client_id.map(str::to_owned)));
        match self.token {
            Some(t) => Ok(AccessToken::new(format!(
                "{t}:{resource}:{}",
                client_id.unwrap_or("system")
            ))),
            None => Err(PolicyError::managed_identity("the provider is down")),
        }
    }
}

fn run_io(xml: &str, io: &TokenIo) -> Exchange {
    let p = pipeline(xml);
    let mut ex = exchange("GET", "/", &[("Authorization", "Basic caller")]);
    block_on(p.run(&mut ex, &mut io.clone()));
    ex
}

/// What the backend (`forward-request`) received, or `None`.
fn backend_headers(io: &TokenIo) -> Option<http::HeaderMap> {
    let sent = io.flow.state.sent.lock().unwrap();
    sent.iter()
        .find(|r| r.url == "backend")
        .map(|r| r.headers.clone())
}

#[test]
fn the_backend_gets_a_bearer_token_for_the_resource() {
    let io = TokenIo::with(Some("tok"));
    let ex = run_io(
        r#"<policies><inbound>
            <authentication-managed-identity resource="https://vault.azure.net" />
        </inbound><backend><forward-request/></backend></policies>"#,
        &io,
    );
    let headers = backend_headers(&io).unwrap();
    assert_eq!(
        all(&headers, "authorization"),
        ["Bearer tok:https://vault.azure.net:system"],
        "the caller's Authorization is replaced"
    );
    assert!(headers["authorization"].is_sensitive());
    assert_eq!(io.calls(), [("https://vault.azure.net".into(), None)]);
    assert_eq!(ex.response.unwrap().status, 200);
}

#[test]
fn client_id_and_an_expression_resource_reach_the_provider() {
    let io = TokenIo::with(Some("tok"));
    run_io(
        r#"<policies><inbound>
            <set-variable name="r" value="api://backend-app" />
            <authentication-managed-identity resource="@((string)context.Variables[&quot;r&quot;])" client-id="00000000-aaaa-bbbb-cccc-000000000001" />
        </inbound><backend><forward-request/></backend></policies>"#,
        &io,
    );
    assert_eq!(
        io.calls(),
        [(
            "api://backend-app".into(),
            Some("00000000-aaaa-bbbb-cccc-000000000001".into())
        )]
    );
}

#[test]
fn output_token_variable_name_stores_the_token_instead_of_the_header() {
    let io = TokenIo::with(Some("tok"));
    run_io(
        r#"<policies><inbound>
            <authentication-managed-identity resource="https://graph.microsoft.com" output-token-variable-name="msi-access-token" />
            <set-header name="X-Token" exists-action="override"><value>@("T=" + (string)context.Variables["msi-access-token"])</value></set-header>
        </inbound><backend><forward-request/></backend></policies>"#,
        &io,
    );
    let headers = backend_headers(&io).unwrap();
    assert_eq!(
        all(&headers, "x-token"),
        ["T=tok:https://graph.microsoft.com:system"]
    );
    assert_eq!(
        all(&headers, "authorization"),
        ["Basic caller"],
        "the caller's header stays"
    );
}

#[test]
fn a_failure_goes_to_on_error_unless_ignored() {
    let io = TokenIo::with(None);
    let ex = run_io(
        r#"<policies><inbound>
            <authentication-managed-identity resource="https://vault.azure.net" />
        </inbound><backend><forward-request/></backend>
        <on-error><return-response><set-status code="503" /><set-header name="X-Why" exists-action="override"><value>@(context.LastError.Source + "/" + context.LastError.Reason)</value></set-header></return-response></on-error></policies>"#,
        &io,
    );
    assert!(
        backend_headers(&io).is_none(),
        "nothing reached the backend"
    );
    let r = ex.response.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(
        all(&r.headers, "x-why"),
        ["authentication-managed-identity/ManagedIdentityTokenUnavailable"]
    );

    let io = TokenIo::with(None);
    let ex = run_io(
        r#"<policies><inbound>
            <authentication-managed-identity resource="https://vault.azure.net" ignore-error="true" />
        </inbound><backend><forward-request/></backend></policies>"#,
        &io,
    );
    let headers = backend_headers(&io).unwrap();
    assert_eq!(all(&headers, "authorization"), ["Basic caller"]);
    assert_eq!(ex.response.unwrap().status, 200);
}

#[test]
fn without_a_provider_the_default_io_fails_clearly() {
    let p = pipeline(
        r#"<policies><inbound>
            <authentication-managed-identity resource="https://vault.azure.net" />
        </inbound><backend><forward-request/></backend></policies>"#,
    );
    let mut ex = exchange("GET", "/", &[]);
    let io = run(&p, &mut ex);
    assert!(io.forwarded.is_none());
    let e = ex.last_error.unwrap();
    assert_eq!(e.source, "authentication-managed-identity");
    assert!(e.message.contains("no token provider"), "{}", e.message);
}

#[test]
fn inside_send_request_it_authenticates_that_request() {
    let io = TokenIo::with(Some("tok"));
    run_io(
        r#"<policies><inbound>
            <send-request mode="new" response-variable-name="r" timeout="10">
                <set-url>http://other.test/x</set-url>
                <set-method>GET</set-method>
                <set-header name="X-A" exists-action="override"><value>1</value></set-header>
                <authentication-managed-identity resource="https://management.azure.com/" />
            </send-request>
        </inbound><backend><forward-request/></backend></policies>"#,
        &io,
    );
    let sent = io.flow.sent();
    let out = sent
        .iter()
        .find(|r| r.url == "http://other.test/x")
        .unwrap();
    assert_eq!(
        all(&out.headers, "authorization"),
        ["Bearer tok:https://management.azure.com/:system"]
    );
    assert_eq!(all(&out.headers, "x-a"), ["1"]);
    // The API's backend request is left alone.
    let headers = backend_headers(&io).unwrap();
    assert_eq!(all(&headers, "authorization"), ["Basic caller"]);

    // In outbound too (send-request is allowed there), and inside wait.
    let io = TokenIo::with(Some("tok"));
    run_io(
        r#"<policies><inbound>
            <wait for="all">
                <send-request mode="new" response-variable-name="a">
                    <set-url>http://other.test/a</set-url><set-method>GET</set-method>
                    <authentication-managed-identity resource="api://a" ignore-error="true" />
                </send-request>
            </wait>
        </inbound><backend><forward-request/></backend>
        <outbound>
            <send-request mode="new" response-variable-name="b">
                <set-url>http://other.test/b</set-url><set-method>GET</set-method>
                <authentication-managed-identity resource="api://b" />
            </send-request>
        </outbound></policies>"#,
        &io,
    );
    let sent = io.flow.sent();
    for (url, token) in [
        ("http://other.test/a", "Bearer tok:api://a:system"),
        ("http://other.test/b", "Bearer tok:api://b:system"),
    ] {
        let r = sent.iter().find(|r| r.url == url).unwrap();
        assert_eq!(all(&r.headers, "authorization"), [token], "{url}");
    }
}

#[test]
fn the_token_never_shows_in_debug_output() {
    let t = AccessToken::new("eyJ0eXAiOiJKV1QiLCJhbGciOi-secret");
    let shown = format!("{t:?} {:?}", Some(t.clone()));
    assert!(!shown.contains("secret"), "{shown}");
    assert!(!shown.contains("eyJ"), "{shown}");
    assert_eq!(t.secret(), "eyJ0eXAiOiJKV1QiLCJhbGciOi-secret");
}

#[test]
fn attributes_are_checked() {
    for (xml, needle) in [
        (
            r#"<authentication-managed-identity />"#,
            "needs the attribute 'resource'",
        ),
        (
            r#"<authentication-managed-identity resource="" />"#,
            "must not be empty",
        ),
        (
            r#"<authentication-managed-identity resource="r" ignore-error="maybe" />"#,
            "must be true or false",
        ),
        (
            r#"<authentication-managed-identity resource="r" client-id="@(context.Api.Id)" />"#,
            "does not accept an expression",
        ),
        (
            r#"<authentication-managed-identity resource="r" scope="x" />"#,
            "has no attribute 'scope'",
        ),
    ] {
        let e = errors_inbound(xml);
        assert!(e.iter().any(|m| m.contains(needle)), "{xml}: {e:?}");
    }
    let e = errors_in(
        "outbound",
        r#"<authentication-managed-identity resource="r" />"#,
    );
    assert!(e[0].contains("not allowed in <outbound>"), "{e:?}");
    // Every attribute Azure documents is accepted.
    assert!(
        errors_inbound(
            r#"<authentication-managed-identity resource="https://vault.azure.net" client-id="c" output-token-variable-name="t" ignore-error="true" />"#
        )
        .is_empty()
    );
}
