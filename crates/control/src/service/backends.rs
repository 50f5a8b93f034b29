//! Backend services that policies route to with `<set-backend-service backend-id="…"/>`,
//! with the credentials and TLS settings gateways use for them.

use std::collections::HashMap;

use gatehouse_model::ValidationError;
use gatehouse_model::resources::Backend;

use super::{ServiceResult, load_all};
use crate::ControlPlane;

/// `backend '{id}'` for each backend that presents certificate `id`.
pub(crate) async fn certificate_users(cp: &ControlPlane, id: &str) -> ServiceResult<Vec<String>> {
    Ok(load_all::<Backend>(cp, "")
        .await?
        .into_iter()
        .filter(|b| {
            b.credentials
                .as_ref()
                .is_some_and(|c| c.certificates().any(|c| c == id))
        })
        .map(|b| format!("backend '{}'", b.id))
        .collect())
}

/// `text` with its `{{name}}` references replaced from `named` (left as written when unknown).
fn resolved(text: &str, named: &HashMap<String, String>) -> String {
    let mut out = text.to_owned();
    for name in super::policies::referenced_names(text) {
        if let Some(value) = named.get(&name) {
            out = out.replace(&format!("{{{{{name}}}}}"), value);
        }
    }
    out
}

/// Refuses header credentials that would not be valid header values once their named values
/// are resolved (a line break, say): gateways could not send them.
pub(crate) fn check_values(
    backend: &Backend,
    named: &HashMap<String, String>,
) -> Result<(), ValidationError> {
    let Some(c) = &backend.credentials else {
        return Ok(());
    };
    let bad = |field: String| {
        ValidationError::one(
            field,
            "is not a valid header value (control characters such as line breaks are not allowed), once its named values are filled in",
        )
    };
    for (name, values) in &c.header {
        for v in values {
            if http::HeaderValue::from_str(&resolved(v, named)).is_err() {
                return Err(bad(format!("credentials.header.{name}")));
            }
        }
    }
    if let Some(a) = &c.authorization {
        let value = format!(
            "{} {}",
            resolved(&a.scheme, named),
            resolved(&a.parameter, named)
        );
        if http::HeaderValue::from_str(&value).is_err() {
            return Err(bad("credentials.authorization".into()));
        }
    }
    Ok(())
}

/// Refuses a new value for named value `name` that a backend's credentials could not carry.
pub(crate) async fn check_named_value_change(
    cp: &ControlPlane,
    name: &str,
    value: &str,
) -> ServiceResult<()> {
    let mut named = None;
    for backend in load_all::<Backend>(cp, "").await? {
        let Some(c) = &backend.credentials else {
            continue;
        };
        let uses = c
            .header
            .values()
            .flatten()
            .chain(
                c.authorization
                    .iter()
                    .flat_map(|a| [&a.scheme, &a.parameter]),
            )
            .any(|t| {
                super::policies::referenced_names(t)
                    .iter()
                    .any(|n| n == name)
            });
        if !uses {
            continue;
        }
        if named.is_none() {
            let mut all = super::policies::named_values(cp).await?;
            all.insert(name.to_owned(), value.to_owned());
            named = Some(all);
        }
        if let Some(named) = &named
            && let Err(e) = check_values(&backend, named)
        {
            return Err(ValidationError::one(
                "value",
                format!(
                    "backend '{}' sends this named value in a header, and it cannot be one ({e}); fix the value",
                    backend.id
                ),
            )
            .into());
        }
    }
    Ok(())
}
