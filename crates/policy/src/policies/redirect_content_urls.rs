//! `<redirect-content-urls/>`: rewrites the URLs in a body so they point the right way. In
//! outbound (and on-error) the backend's base URL in the response body becomes the gateway's URL
//! of the API, so links a backend returns lead back through the gateway; in inbound the
//! gateway's URL of the API in the request body becomes the backend's base URL. Headers such as
//! `Location` are left alone (as in Azure: use `set-header` for those).
//!
//! The backend's base URL is the one `set-backend-service base-url` chose, else the API's
//! service URL; a request routed to a backend resource (`backend-id`) has no base URL here, and
//! its body is left as it is. The gateway's URL is the scheme and host the client called and
//! the API's path.

use bytes::Bytes;

use super::find_and_replace::replace_all;
use super::on_response;
use crate::compile::Cx;
use crate::exchange::Exchange;
use crate::run::{Flow, PolicyError};
use crate::xml::Element;

#[derive(Debug, Clone)]
pub struct RedirectContentUrls {
    /// Works on the response (outbound, on-error) rather than the request.
    pub response: bool,
}

impl RedirectContentUrls {
    pub fn compile(el: &Element, cx: &mut Cx<'_>) -> Option<Self> {
        cx.allow_attrs(el, &[]);
        cx.no_children(el);
        Some(Self {
            response: on_response(cx.section),
        })
    }

    pub fn run(&self, ex: &mut Exchange) -> Result<Flow, PolicyError> {
        let backend = match (&ex.backend_url, &ex.info.service_url) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(url)) if ex.backend_id.is_none() => url.trim_end_matches('/').to_owned(),
            _ => return Ok(Flow::Continue),
        };
        let gateway = {
            let api = ex.info.api_path.trim_matches('/');
            let mut url = format!("{}://{}", ex.request.scheme, ex.request.host);
            if !api.is_empty() {
                url.push('/');
                url.push_str(api);
            }
            url
        };
        if backend.is_empty() || backend == gateway {
            return Ok(Flow::Continue);
        }
        let (from, to, body, headers) = if self.response {
            match ex.response.as_mut() {
                Some(r) => (&backend, &gateway, &mut r.body, &mut r.headers),
                None => return Ok(Flow::Continue),
            }
        } else {
            (
                &gateway,
                &backend,
                &mut ex.request.body,
                &mut ex.request.headers,
            )
        };
        let replaced = body
            .as_ref()
            .and_then(|current| replace_all(current, from.as_bytes(), to.as_bytes()));
        if let Some(replaced) = replaced {
            *body = Some(Bytes::from(replaced));
            headers.remove(http::header::CONTENT_LENGTH);
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    fn exchange_for(path: &str) -> crate::exchange::Exchange {
        let mut ex = exchange("POST", path, &[]);
        ex.info.api_path = "orders".into();
        ex.info.service_url = Some("http://orders.internal:8080/api/".into());
        ex
    }

    #[test]
    fn backend_urls_in_the_response_become_gateway_urls() {
        let p = pipeline(
            r#"<policies><backend><forward-request/></backend>
               <outbound><redirect-content-urls /></outbound></policies>"#,
        );
        let mut ex = exchange_for("/7");
        let mut io = MockIo {
            answer: Some(bytes::Bytes::from_static(
                br#"{"self":"http://orders.internal:8080/api/7","next":"http://orders.internal:8080/api/8","other":"http://elsewhere/api/7"}"#,
            )),
            ..MockIo::default()
        };
        block_on(p.run(&mut ex, &mut io));
        let r = ex.response.unwrap();
        assert_eq!(
            std::str::from_utf8(r.body.as_ref().unwrap()).unwrap(),
            r#"{"self":"https://gw.example/orders/7","next":"https://gw.example/orders/8","other":"http://elsewhere/api/7"}"#
        );
    }

    #[test]
    fn gateway_urls_in_the_request_become_backend_urls_and_set_backend_service_counts() {
        let p = pipeline(
            r#"<policies><inbound>
                 <set-backend-service base-url="https://v2.orders.example/base" />
                 <redirect-content-urls />
               </inbound><backend><forward-request/></backend></policies>"#,
        );
        let mut ex = exchange_for("/7");
        ex.request.body = Some(bytes::Bytes::from_static(
            b"callback=https://gw.example/orders/hooks/1",
        ));
        let io = run(&p, &mut ex);
        let sent = io.forwarded.unwrap();
        assert_eq!(
            sent.body.unwrap(),
            "callback=https://v2.orders.example/base/hooks/1"
        );
    }

    #[test]
    fn a_backend_resource_leaves_the_body_alone() {
        let p = pipeline(
            r#"<policies><inbound><set-backend-service backend-id="pool" /></inbound>
               <backend><forward-request/></backend>
               <outbound><redirect-content-urls /></outbound></policies>"#,
        );
        let mut ex = exchange_for("/7");
        let mut io = MockIo {
            answer: Some(bytes::Bytes::from_static(
                b"http://orders.internal:8080/api/7",
            )),
            ..MockIo::default()
        };
        block_on(p.run(&mut ex, &mut io));
        assert_eq!(
            ex.response.unwrap().body.unwrap(),
            "http://orders.internal:8080/api/7"
        );
    }

    #[test]
    fn takes_nothing_and_only_inbound_and_outbound() {
        assert!(
            errors_in("inbound", r#"<redirect-content-urls to="x" />"#)[0]
                .contains("has no attribute 'to'")
        );
        assert!(
            errors_in("backend", "<redirect-content-urls />")[0]
                .contains("is not allowed in <backend>")
        );
        assert!(errors_in("outbound", "<redirect-content-urls />").is_empty());
    }
}
