//! The seam between an expression and the request it runs on. The gateway implements
//! [`Context`] once per request; an expression calls only the methods it needs, when it needs
//! them, so nothing is copied or computed for expressions that don't ask.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Value;

/// Which HTTP message: `context.Request` or `context.Response`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// `context.Request`.
    Request,
    /// `context.Response`.
    Response,
}

/// The optional objects of `context`. An absent one makes the property `null`
/// (`context.User` is null for an anonymous call; `context.User?.Email`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Entity {
    /// `context.Subscription`.
    Subscription,
    /// `context.User`.
    User,
    /// `context.Product`.
    Product,
    /// `context.Api`.
    Api,
    /// `context.Operation`.
    Operation,
    /// `context.Deployment`.
    Deployment,
    /// `context.LastError` (present in `on-error`).
    LastError,
}

/// The string properties of the [`Entity`] objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// `context.Subscription.Id`.
    SubscriptionId,
    /// `context.Subscription.Name`.
    SubscriptionName,
    /// `context.Subscription.Key`: the key the caller presented.
    SubscriptionKey,
    /// `context.Subscription.PrimaryKey`.
    SubscriptionPrimaryKey,
    /// `context.Subscription.SecondaryKey`.
    SubscriptionSecondaryKey,
    /// `context.User.Id`.
    UserId,
    /// `context.User.Email`.
    UserEmail,
    /// `context.User.FirstName`.
    UserFirstName,
    /// `context.User.LastName`.
    UserLastName,
    /// `context.Product.Id`.
    ProductId,
    /// `context.Product.Name`.
    ProductName,
    /// `context.Api.Id`.
    ApiId,
    /// `context.Api.Name`.
    ApiName,
    /// `context.Api.Path`.
    ApiPath,
    /// `context.Api.Version`.
    ApiVersion,
    /// `context.Api.ServiceUrl` (an absolute URL; exposed as a URL object).
    ApiServiceUrl,
    /// `context.Operation.Id`.
    OperationId,
    /// `context.Operation.Name`.
    OperationName,
    /// `context.Operation.Method`.
    OperationMethod,
    /// `context.Operation.UrlTemplate`.
    OperationUrlTemplate,
    /// `context.Deployment.Region`.
    DeploymentRegion,
    /// `context.Deployment.GatewayId`.
    DeploymentGatewayId,
    /// `context.Deployment.ServiceName`.
    DeploymentServiceName,
    /// `context.LastError.Source`.
    LastErrorSource,
    /// `context.LastError.Reason`.
    LastErrorReason,
    /// `context.LastError.Message`.
    LastErrorMessage,
    /// `context.LastError.Scope`.
    LastErrorScope,
    /// `context.LastError.Section`.
    LastErrorSection,
    /// `context.LastError.Path`.
    LastErrorPath,
    /// `context.LastError.PolicyId`.
    LastErrorPolicyId,
}

/// One request as an expression sees it. Implemented by the gateway (per request) and by tests.
///
/// Every method is called on demand during evaluation. Header names are case-insensitive and
/// several values of one header are joined with `,` (what `GetValueOrDefault` returns).
pub trait Context {
    /// `context.Request.Method`.
    fn request_method(&self) -> Cow<'_, str>;

    /// `context.Request.Url`: the absolute URL (`scheme://host[:port]/path?query`), as rewritten
    /// by policies so far.
    fn request_url(&self) -> Cow<'_, str>;

    /// `context.Request.OriginalUrl`: the URL the client called.
    fn original_url(&self) -> Cow<'_, str> {
        self.request_url()
    }

    /// `context.Request.IpAddress`.
    fn ip_address(&self) -> Cow<'_, str>;

    /// `context.Request.Certificate`: the certificate the client presented over TLS, when it
    /// did and the hostname asked for one.
    fn client_certificate(&self) -> Option<Arc<super::ClientCertificate>> {
        None
    }

    /// One header of a message, several values joined with `,`; `None` when absent.
    fn header(&self, message: Message, name: &str) -> Option<String>;

    /// All headers of a message as (name, joined values); only called when an expression
    /// enumerates or counts them.
    fn headers(&self, message: Message) -> Vec<(String, String)>;

    /// Whether the message has a body (`context.Request.Body == null` otherwise).
    fn has_body(&self, message: Message) -> bool {
        let _ = message;
        true
    }

    /// The body bytes. Without `preserve_content` Azure consumes the body, and later reads
    /// see it empty; an implementation may do the same (interior mutability) or ignore it.
    fn body(&self, message: Message, preserve_content: bool) -> Option<Cow<'_, [u8]>>;

    /// `context.Request.MatchedParameters[name]`: a template parameter of the matched operation.
    fn matched_parameter(&self, name: &str) -> Option<String>;

    /// All matched template parameters (for enumeration and `Count`).
    fn matched_parameters(&self) -> Vec<(String, String)>;

    /// `context.Response.StatusCode` and `StatusReason`; `None` before a response exists
    /// (then both properties are null).
    fn response_status(&self) -> Option<(u16, Cow<'_, str>)>;

    /// `context.Variables[name]`, as set by earlier policies.
    fn variable(&self, name: &str) -> Option<Value>;

    /// `context.Variables.ContainsKey(name)`.
    fn has_variable(&self, name: &str) -> bool {
        self.variable(name).is_some()
    }

    /// Whether `context.Subscription`, `context.User`… exists for this request.
    fn has(&self, entity: Entity) -> bool;

    /// A string property of one of those objects; `None` is null.
    fn field(&self, field: Field) -> Option<Cow<'_, str>>;

    /// [`Context::field`] as an expression's string. An implementation that holds the text
    /// shared hands out a clone of it instead of a copy.
    fn shared_field(&self, field: Field) -> Option<Arc<str>> {
        self.field(field).map(|text| Arc::from(&*text))
    }

    /// [`Context::ip_address`] as an expression's string; shared likewise.
    fn shared_ip_address(&self) -> Arc<str> {
        Arc::from(&*self.ip_address())
    }

    /// `context.RequestId`.
    fn request_id(&self) -> uuid::Uuid;

    /// `context.Timestamp`: when the gateway received the request.
    fn timestamp(&self) -> SystemTime;

    /// `context.Elapsed`: time since [`Context::timestamp`].
    fn elapsed(&self) -> Duration {
        self.now()
            .duration_since(self.timestamp())
            .unwrap_or_default()
    }

    /// The clock behind `DateTime.UtcNow` / `DateTime.Now` (a seam for tests).
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
