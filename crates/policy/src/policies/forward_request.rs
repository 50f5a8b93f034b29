//! `<forward-request timeout="60" follow-redirects="false" buffer-request-body="false"
//! buffer-response="true" fail-on-error-status-code="false"/>`: sends the request to the backend.

use std::time::Duration;

use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Flow, Io, PolicyError};
use crate::xml::Element;

/// Azure's default: five minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRequest {
    /// `None` uses the gateway's configured backend timeout.
    pub timeout: Option<Duration>,
    pub follow_redirects: bool,
    pub buffer_request_body: bool,
    pub buffer_response: bool,
    pub fail_on_error_status_code: bool,
}

impl Default for ForwardRequest {
    fn default() -> Self {
        Self {
            timeout: None,
            follow_redirects: false,
            buffer_request_body: false,
            buffer_response: true,
            fail_on_error_status_code: false,
        }
    }
}

impl ForwardRequest {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(
            el,
            &[
                "timeout",
                "timeout-ms",
                "follow-redirects",
                "buffer-request-body",
                "buffer-response",
                "fail-on-error-status-code",
                "http-version",
            ],
        );
        cx.no_children(el);
        let mut timeout = cx
            .u64_attr(el, "timeout", 1, 240 * 60)
            .map(Duration::from_secs);
        if let Some(ms) = cx.u64_attr(el, "timeout-ms", 1, 240 * 60 * 1000) {
            timeout = Some(Duration::from_millis(ms));
        }
        if let Some(v) = cx.literal(el, "http-version")
            && !matches!(v.trim(), "1" | "1.1" | "2or1")
        {
            let pos = el.attr("http-version").map_or(el.pos, |a| a.pos);
            cx.error(pos, format!("http-version must be 1, 2or1 (not '{v}')"));
        }
        Some(Self {
            timeout,
            follow_redirects: cx.bool_attr(el, "follow-redirects", false),
            buffer_request_body: cx.bool_attr(el, "buffer-request-body", false),
            buffer_response: cx.bool_attr(el, "buffer-response", true),
            fail_on_error_status_code: cx.bool_attr(el, "fail-on-error-status-code", false),
        })
    }

    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub async fn run<I: Io>(&self, ex: &mut Exchange, io: &mut I) -> Result<Flow, PolicyError> {
        io.forward(ex, self).await?;
        if self.fail_on_error_status_code
            && let Some(r) = &ex.response
            && (r.status.is_client_error() || r.status.is_server_error())
        {
            return Err(PolicyError::new(
                "forward-request",
                "BackendError",
                format!("the backend answered {}", r.status.as_u16()),
                crate::Answer::BackendError,
            ));
        }
        Ok(Flow::Continue)
    }
}
