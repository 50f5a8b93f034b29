//! What the validation policies share (`validate-content`, `validate-parameters`,
//! `validate-headers`, `validate-status-code`): their `ignore|detect|prevent` actions, the
//! errors they record, and how `prevent` stops a message.
//!
//! Each error found is logged with the request id and appended to the `errors-variable-name`
//! variable as Azure records it: a list of objects `{"Name", "Type", "ValidationRule",
//! "Details", "Action"}` (`JsonConvert.SerializeObject(context.Variables["errors"])` prints
//! them). `ignore` records nothing. The first `prevent` error stops the message: a request gets
//! `400` with the error's public text, a response Azure's `502`, and the pipeline goes to
//! `on-error` with `context.LastError` (`Reason` `Bad request` or `Response not allowed`,
//! `Message` the details). In `on-error` itself the response is replaced by the `502` and the
//! section ends.

use http::StatusCode;

use super::check_header::json_error;
use crate::compile::{Cx, Section};
use crate::exchange::{Exchange, Response};
use crate::expr::{Json, JsonObject, Value};
use crate::run::{Budget, Flow, PolicyError};
use crate::text::PolicyText;
use crate::xml::Element;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ignore,
    Detect,
    Prevent,
}

const ACTIONS: [&str; 3] = ["ignore", "detect", "prevent"];

impl Action {
    fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("ignore") {
            Some(Self::Ignore)
        } else if t.eq_ignore_ascii_case("detect") {
            Some(Self::Detect)
        } else if t.eq_ignore_ascii_case("prevent") {
            Some(Self::Prevent)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ignore => "ignore",
            Self::Detect => "detect",
            Self::Prevent => "prevent",
        }
    }
}

/// A literal action attribute (named values allowed): `default` when absent.
pub fn literal_action(cx: &mut Cx<'_>, el: &Element, name: &str, default: Action) -> Action {
    match cx.choice(el, name, &ACTIONS, default.name()) {
        "prevent" => Action::Prevent,
        "detect" => Action::Detect,
        _ => Action::Ignore,
    }
}

/// An action attribute where Azure allows a policy expression: a fixed action, or an
/// expression evaluated once per run of the policy.
#[derive(Debug, Clone)]
pub enum ActionSpec {
    Fixed(Action),
    Expr(PolicyText),
}

impl ActionSpec {
    /// The attribute `name` of `el`; `None` when absent (or wrong, which is reported).
    pub fn compile(cx: &mut Cx<'_>, el: &Element, name: &str) -> Option<Self> {
        let attr = el.attr(name)?;
        let text = cx.opt_text(el, name)?;
        if text.is_expr() {
            return Some(Self::Expr(text));
        }
        let literal = text.as_literal().unwrap_or_default();
        match Action::parse(literal) {
            Some(a) => Some(Self::Fixed(a)),
            None => {
                cx.error(
                    attr.pos,
                    format!(
                        "'{name}' must be one of {}, not '{literal}'",
                        ACTIONS.join(", ")
                    ),
                );
                None
            }
        }
    }

    /// The required attribute `name` of `el` (reported when missing; then `ignore`).
    pub fn required(cx: &mut Cx<'_>, el: &Element, name: &str) -> Self {
        if el.attr(name).is_none() {
            cx.error(
                el.pos,
                format!(
                    "<{}> needs the attribute '{name}' (ignore, detect or prevent)",
                    el.name
                ),
            );
        }
        Self::compile(cx, el, name).unwrap_or(Self::Fixed(Action::Ignore))
    }

    pub fn resolve(&self, ex: &Exchange, budget: &mut Budget) -> Result<Action, PolicyError> {
        match self {
            Self::Fixed(a) => Ok(*a),
            Self::Expr(e) => {
                let text = e.eval(ex, budget)?;
                Action::parse(&text).ok_or_else(|| {
                    PolicyError::runtime(
                        "ExpressionValueEvaluationFailure",
                        format!("an action must be ignore, detect or prevent, not '{text}'"),
                    )
                })
            }
        }
    }

    /// The expression, for what the step is known to evaluate.
    pub fn text(&self) -> Option<&PolicyText> {
        match self {
            Self::Fixed(_) => None,
            Self::Expr(e) => Some(e),
        }
    }
}

/// `errors-variable-name`: a literal variable name, or `None` when absent or empty.
pub fn errors_variable(cx: &mut Cx<'_>, el: &Element) -> Option<String> {
    cx.literal(el, "errors-variable-name")
        .filter(|v| !v.trim().is_empty())
}

/// One validation error, with Azure's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What is wrong: a parameter, a header, a content type, a status code (`Name`).
    pub name: String,
    /// `QueryParameter`, `PathParameter`, `RequestHeader`, `ResponseHeader`, `StatusCode`,
    /// `RequestBody`, `ResponseBody` (`Type`).
    pub kind: &'static str,
    /// `Unspecified`, `IncorrectMessage`, `SizeLimit`… (`ValidationRule`).
    pub rule: &'static str,
    /// The full description, for the log and the errors variable (`Details`).
    pub details: String,
    /// What a client may be told about its own request (unused for responses).
    pub public: String,
    pub action: Action,
}

impl Finding {
    fn to_value(&self) -> Value {
        let mut o = JsonObject::new();
        o.insert("Name", Json::String(self.name.as_str().into()));
        o.insert("Type", Json::String(self.kind.into()));
        o.insert("ValidationRule", Json::String(self.rule.into()));
        o.insert("Details", Json::String(self.details.as_str().into()));
        o.insert("Action", Json::String(self.action.name().into()));
        Value::Json(Json::Object(o.into()))
    }
}

/// Logs the findings that are not ignored and appends them to the errors variable (keeping
/// what an earlier validation policy put there). Returns the first `prevent` finding.
pub fn record<'f>(
    ex: &mut Exchange,
    policy: &'static str,
    errors_variable: Option<&str>,
    findings: &'f [Finding],
) -> Option<&'f Finding> {
    let mut kept = findings
        .iter()
        .filter(|f| f.action != Action::Ignore)
        .peekable();
    kept.peek()?;
    let mut recorded: Vec<Value> = match errors_variable.and_then(|n| ex.variables.get(n)) {
        Some(Value::Array(a)) => a.to_vec(),
        _ => Vec::new(),
    };
    for f in kept {
        tracing::warn!(
            request_id = %ex.info.request_id,
            policy,
            name = %f.name,
            rule = f.rule,
            action = f.action.name(),
            "{}",
            f.details
        );
        recorded.push(f.to_value());
    }
    if let Some(name) = errors_variable {
        ex.variables
            .insert(name.to_owned(), Value::Array(recorded.into()));
    }
    findings.iter().find(|f| f.action == Action::Prevent)
}

/// Stops the message for `found`, as `policy` in `section`: see the module's documentation.
pub fn prevent(
    ex: &mut Exchange,
    policy: &'static str,
    section: Section,
    found: &Finding,
) -> Result<Flow, PolicyError> {
    match section {
        Section::Inbound | Section::Backend => {
            ex.error_response = Some(json_error(StatusCode::BAD_REQUEST, &found.public));
            Err(PolicyError::new(
                policy,
                "Bad request",
                found.details.clone(),
                crate::Answer::InvalidParameters,
            ))
        }
        Section::Outbound => Err(PolicyError::new(
            policy,
            "Response not allowed",
            found.details.clone(),
            crate::Answer::InvalidResponse,
        )),
        Section::OnError => {
            let (status, body) = crate::Answer::InvalidResponse.parts();
            let mut r = Response::new(status);
            r.headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json; charset=utf-8"),
            );
            r.body = Some(bytes::Bytes::from_static(body.as_bytes()));
            ex.response = Some(r);
            Ok(Flow::Return)
        }
    }
}

/// The finding for a declared parameter (or header) `name` whose texts in the message are
/// wrong, worded as Azure words it. `what` names the location (`query parameter`, `header`),
/// `kind` is Azure's `Type`.
pub fn parameter_finding(
    fault: &crate::parameters::Fault,
    what: &str,
    name: &str,
    kind: &'static str,
    action: Action,
) -> Finding {
    use crate::parameters::Fault;
    let message = if kind == "ResponseHeader" {
        "Response"
    } else {
        "Request"
    };
    let (details, public) = match fault {
        Fault::Missing => {
            let m = format!("{message} does not contain the required {what} {name}.");
            (m.clone(), m)
        }
        Fault::Multiple => {
            let m = format!("{message} cannot contain multiple values for the {what} {name}.");
            (m.clone(), m)
        }
        Fault::Unparsable(why) => (
            format!(
                "Value of the {what} {name} cannot be parsed according to the definition. {why}"
            ),
            format!(
                "Value of the {what} {name} couldn't be parsed according to the definition. {why}"
            ),
        ),
        Fault::Nonconforming(why) => (
            format!("Value of the {what} {name} does not conform to the definition. {why}"),
            format!("The value of the {what} {name} does not conform to the definition. {why}"),
        ),
    };
    Finding {
        name: name.to_owned(),
        kind,
        rule: "IncorrectMessage",
        details,
        public,
        action,
    }
}

/// The finding for a parameter (or header) the definition does not declare.
pub fn unspecified_finding(what: &str, name: &str, kind: &'static str, action: Action) -> Finding {
    let m = format!("Unspecified {what} {name} is not allowed.");
    Finding {
        name: name.to_owned(),
        kind,
        rule: "Unspecified",
        details: m.clone(),
        public: m,
        action,
    }
}
