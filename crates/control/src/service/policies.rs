//! Policy documents at the four scopes (global, product, API, operation), and what reads the
//! policy text: the named values, backends, loggers and certificates a document names.
//!
//! A document is compiled when it is saved, with the named values as they are now; a policy
//! that would not run is refused with the line and column of each problem. A document comes as
//! the XML itself, or in Azure's JSON form `{"value": "<policies>…"}`.

use std::collections::HashMap;

use gatehouse_model::resources::{Api, Backend, NamedValue, Operation, Product};
use gatehouse_model::{Detail, ValidationError};
use gatehouse_policy::{Mode, Scope, Severity};
use gatehouse_store::{Kind, PolicyLevel, PolicyScope};

use super::{Saved, ServiceError, ServiceResult, check_id, commit, load, load_all};
use crate::ControlPlane;

/// The largest policy document accepted.
const MAX_POLICY: usize = 256 * 1024;

/// The scope the policy compiler checks a document of `level` for.
pub fn compile_scope(level: PolicyLevel) -> Scope {
    match level {
        PolicyLevel::Global => Scope::Global,
        PolicyLevel::Product => Scope::Product,
        PolicyLevel::Api => Scope::Api,
        PolicyLevel::Operation => Scope::Operation,
    }
}

/// Every named value in clear, for compiling policies.
pub async fn named_values(cp: &ControlPlane) -> ServiceResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    for nv in load_all::<NamedValue>(cp, "").await? {
        let Some(value) = nv.value else { continue };
        let value = if nv.secret {
            cp.sealer()
                .open(&value)
                .map_err(|e| ServiceError::Internal(e.to_string()))?
        } else {
            value
        };
        out.insert(nv.id, value);
    }
    Ok(out)
}

/// The names a document refers to as `{{name}}`.
pub fn referenced_names(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !out.iter().any(|n| n == name)
        {
            out.push(name.to_owned());
        }
        rest = &after[end + 2..];
    }
    out
}

/// The literal values of attribute `attr` on the `<element …>` tags of a policy text, read
/// from the text, as [`referenced_names`] does, so it works on fragments and on documents that
/// do not compile. Expressions (`@(…)`) are left out: they are found when a request runs.
fn literal_attributes(xml: &str, element: &str, attr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let open = format!("<{element}");
    for (start, _) in xml.match_indices(&open) {
        let tag = &xml[start + open.len()..];
        let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
        let Some(at) = tag
            .match_indices(attr)
            .map(|(i, _)| i)
            .find(|&i| tag[..i].ends_with(char::is_whitespace))
        else {
            continue;
        };
        let rest = tag[at + attr.len()..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        let value = &rest[1..];
        let Some(end) = value.find(quote) else {
            continue;
        };
        let value = value[..end].trim();
        if !value.is_empty() && !value.starts_with('@') && !out.iter().any(|o| o == value) {
            out.push(value.to_owned());
        }
    }
    out
}

/// The certificate ids a document names in `<authentication-certificate certificate-id="…">`.
pub fn referenced_certificates(xml: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for value in literal_attributes(xml, "authentication-certificate", "certificate-id") {
        let id = gatehouse_model::resources::certificate_id_of(&value);
        if !id.is_empty() && !out.iter().any(|o| o == id) {
            out.push(id.to_owned());
        }
    }
    out
}

/// The backend ids a document names in `<set-backend-service backend-id="…">`.
pub fn referenced_backends(xml: &str) -> Vec<String> {
    literal_attributes(xml, "set-backend-service", "backend-id")
}

/// The logger ids a document names in `<log-to-eventhub logger-id="…">`.
pub fn referenced_loggers(xml: &str) -> Vec<String> {
    literal_attributes(xml, "log-to-eventhub", "logger-id")
}

/// The scopes whose policy documents (or policy fragments) send to backend `id`.
pub async fn backend_users(cp: &ControlPlane, id: &str) -> ServiceResult<Vec<String>> {
    users_by(cp, id, referenced_backends).await
}

/// The scopes whose policy documents (or policy fragments) log to logger `id`.
pub async fn logger_users(cp: &ControlPlane, id: &str) -> ServiceResult<Vec<String>> {
    users_by(cp, id, referenced_loggers).await
}

/// The policy documents and fragments in which `referenced` finds `id`.
async fn users_by(
    cp: &ControlPlane,
    id: &str,
    referenced: fn(&str) -> Vec<String>,
) -> ServiceResult<Vec<String>> {
    let mut out = Vec::new();
    for level in PolicyLevel::ALL {
        for (scope, xml) in cp.store().policies().all(level).await? {
            if referenced(&xml).iter().any(|b| b == id) {
                out.push(match scope {
                    PolicyScope::Global => describe(&scope),
                    _ => format!("the policy of {}", describe(&scope)),
                });
            }
        }
    }
    for (fragment, xml) in super::policy_fragments::all(cp).await? {
        if referenced(&xml).iter().any(|b| b == id) {
            out.push(format!("policy fragment '{fragment}'"));
        }
    }
    Ok(out)
}

/// What exists in the store, for the policy compile's checks of literal ids.
struct Existing {
    backends: std::collections::HashSet<String>,
    /// Certificates with a private key.
    certificates: std::collections::HashSet<String>,
    loggers: std::collections::HashSet<String>,
}

impl Existing {
    async fn read(cp: &ControlPlane) -> ServiceResult<Self> {
        let backends = cp
            .store()
            .repo::<Backend>()
            .ids("")
            .await?
            .into_iter()
            .collect();
        let certificates = cp
            .store()
            .repo::<super::certificates::StoredCertificate>()
            .entries("")
            .await?
            .into_iter()
            .filter(|c| c.value.has_private_key)
            .map(|c| c.id)
            .collect();
        let loggers = cp
            .store()
            .repo::<gatehouse_model::loggers::Logger>()
            .ids("")
            .await?
            .into_iter()
            .collect();
        Ok(Self {
            backends,
            certificates,
            loggers,
        })
    }
}

impl gatehouse_policy::Known for Existing {
    fn backend(&self, id: &str) -> Option<bool> {
        Some(self.backends.contains(id))
    }

    fn certificate(&self, id: &str) -> Option<bool> {
        Some(self.certificates.contains(id))
    }

    fn logger(&self, id: &str) -> Option<bool> {
        Some(self.loggers.contains(id))
    }
}

/// How a policy document was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The XML itself.
    Xml,
    /// Azure's JSON form, `{"value": "<policies>…</policies>"}`.
    Json,
}

/// The XML of a document sent as `body` in `form`.
fn text(body: &[u8], form: Form) -> ServiceResult<String> {
    if body.len() > MAX_POLICY {
        return Err(
            ValidationError::one("body", "a policy document may be at most 256 KiB").into(),
        );
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ValidationError::one("body", "the policy is not UTF-8 text"))?;
    if form == Form::Json {
        let v: serde_json::Value = crate::http::parse_json(body)?;
        let value = v
            .get("value")
            .or_else(|| v.pointer("/properties/value"))
            .and_then(|x| x.as_str())
            .ok_or_else(|| {
                ValidationError::one(
                    "value",
                    "send the policy XML as {\"value\": \"<policies>…</policies>\"}",
                )
            })?;
        return Ok(value.to_owned());
    }
    Ok(text.to_owned())
}

/// Compiles a document the way gateways will, refusing it with positioned details.
async fn check(cp: &ControlPlane, xml: &str, scope: Scope) -> ServiceResult<()> {
    let named = named_values(cp).await?;
    let fragments = super::policy_fragments::all(cp).await?;
    let existing = Existing::read(cp).await?;
    let (doc, diags) = gatehouse_policy::compile::compile_checked(
        xml,
        scope,
        &named,
        &fragments,
        Mode::Strict,
        &existing,
    );
    if doc.is_some() {
        return Ok(());
    }
    let details: Vec<Detail> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| Detail::new("policy", d.message.clone()).at(d.line, d.column))
        .collect();
    let first = details
        .first()
        .map(|d| {
            format!(
                "line {}, column {}: {}",
                d.line.unwrap_or(0),
                d.column.unwrap_or(0),
                d.message
            )
        })
        .unwrap_or_default();
    Err(ValidationError::new(format!("The policy cannot run: {first}"), details).into())
}

/// The product, API or operation a scope belongs to must exist to read or set its policy.
async fn owner_exists(cp: &ControlPlane, scope: &PolicyScope) -> ServiceResult<()> {
    match scope {
        PolicyScope::Global => {}
        PolicyScope::Product(id) => {
            load::<Product>(cp, "", id).await?;
        }
        PolicyScope::Api(id) => {
            load::<Api>(cp, "", id).await?;
        }
        PolicyScope::Operation { api, operation } => {
            load::<Api>(cp, "", api).await?;
            load::<Operation>(cp, api, operation).await?;
        }
    }
    Ok(())
}

fn no_policy() -> ServiceError {
    ServiceError::NotFound("No policy is set at this scope.".into())
}

/// The policy document at `scope`, as saved.
pub async fn get(cp: &ControlPlane, scope: &PolicyScope) -> ServiceResult<String> {
    owner_exists(cp, scope).await?;
    cp.store()
        .policies()
        .get(scope)
        .await?
        .ok_or_else(no_policy)
}

/// Sets the policy document at `scope` from `body` sent in `form`, refused when it would not
/// run; returns its XML.
pub async fn put(
    cp: &ControlPlane,
    scope: &PolicyScope,
    body: &[u8],
    form: Form,
) -> ServiceResult<Saved<String>> {
    owner_exists(cp, scope).await?;
    let xml = text(body, form)?;
    check(cp, &xml, compile_scope(scope.level())).await?;
    let mut tx = cp.store().begin().await?;
    let created = tx.policies().put(scope, &xml).await?;
    commit(cp, tx).await?;
    Ok(Saved {
        created,
        value: xml,
    })
}

/// Removes the policy document at `scope` (the global one falls back to the default).
pub async fn delete(cp: &ControlPlane, scope: &PolicyScope) -> ServiceResult<()> {
    match scope {
        PolicyScope::Global => {}
        PolicyScope::Product(id) => check_id(Kind::Product, id)?,
        PolicyScope::Api(id) => check_id(Kind::Api, id)?,
        PolicyScope::Operation { api, operation } => {
            check_id(Kind::Api, api)?;
            check_id(Kind::Operation, operation)?;
        }
    }
    let mut tx = cp.store().begin().await?;
    if !tx.policies().delete(scope).await? {
        return Err(no_policy());
    }
    commit(cp, tx).await?;
    Ok(())
}

/// Which scope a stored policy document belongs to, for messages.
pub fn describe(scope: &PolicyScope) -> String {
    match scope {
        PolicyScope::Global => "the global policy".to_owned(),
        PolicyScope::Product(product) => format!("product '{product}'"),
        PolicyScope::Api(api) => format!("API '{api}'"),
        PolicyScope::Operation { api, operation } => {
            format!("operation '{operation}' of API '{api}'")
        }
    }
}

/// The scopes whose policy documents (or policy fragments) refer to `{{name}}`.
pub async fn users_of(cp: &ControlPlane, name: &str) -> ServiceResult<Vec<String>> {
    let mut out = Vec::new();
    for level in PolicyLevel::ALL {
        for (scope, xml) in cp.store().policies().all(level).await? {
            if referenced_names(&xml).iter().any(|n| n == name) {
                out.push(describe(&scope));
            }
        }
    }
    for (id, xml) in super::policy_fragments::all(cp).await? {
        if referenced_names(&xml).iter().any(|n| n == name) {
            out.push(format!("fragment '{id}'"));
        }
    }
    // Gateways resolve a backend's credentials with the named values too.
    for backend in load_all::<Backend>(cp, "").await? {
        let Some(c) = &backend.credentials else {
            continue;
        };
        let uses = c
            .texts()
            .any(|text| referenced_names(text).iter().any(|n| n == name));
        if uses {
            out.push(format!("the credentials of backend '{}'", backend.id));
        }
    }
    Ok(out)
}

/// Refuses a new value for named value `name` when a policy that uses it would no longer
/// compile with it (a value holding a broken expression, say): gateways would refuse the whole
/// configuration otherwise.
pub async fn check_named_value_change(
    cp: &ControlPlane,
    name: &str,
    value: &str,
) -> ServiceResult<()> {
    let mut named = named_values(cp).await?;
    named.insert(name.to_owned(), value.to_owned());
    let fragments = super::policy_fragments::all(cp).await?;
    for level in PolicyLevel::ALL {
        for (scope, xml) in cp.store().policies().all(level).await? {
            if !referenced_names(&xml).iter().any(|n| n == name) {
                continue;
            }
            let (compiled, diags) = gatehouse_policy::compile::compile_with(
                &xml,
                compile_scope(level),
                &named,
                &fragments,
                Mode::Strict,
            );
            if compiled.is_none() {
                let first = diags
                    .iter()
                    .find(|d| d.severity == Severity::Error)
                    .map_or_else(String::new, |d| d.to_string());
                return Err(ValidationError::one(
                    "value",
                    format!(
                        "with this value the policy of {} would not run ({first}); fix the value or the policy",
                        describe(&scope)
                    ),
                )
                .into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn certificates_named_by_authentication_certificate_are_found_in_the_text() {
        let xml = r#"<policies><inbound>
            <authentication-certificate certificate-id="/certificates/a" />
            <authentication-certificate  certificate-id = 'b'/>
            <authentication-certificate certificate-id="@(context.Variables[&quot;c&quot;])" />
            <authentication-certificate thumbprint="x" />
            <set-header name="certificate-id"><value>not-one</value></set-header>
            <authentication-certificate certificate-id="a" />
        </inbound></policies>"#;
        assert_eq!(super::referenced_certificates(xml), ["a", "b"]);
        let xml = r#"<set-backend-service backend-id="orders" /><set-backend-service base-url="http://x" />
            <set-backend-service backend-id="@(&quot;x&quot;)" /><set-backend-service my-backend-id="no" />"#;
        assert_eq!(super::referenced_backends(xml), ["orders"]);
    }
}
