//! Policy fragments: reusable policy XML (`<fragment>…</fragment>`) that policy documents
//! insert with `<include-fragment fragment-id="…"/>`.
//!
//! A fragment is compiled when it is saved: on its own (it must fit at least one section), and
//! inside every policy document that includes it, directly or through other fragments, so a
//! change that would break a policy in force is refused. A fragment that a policy document or
//! another fragment includes cannot be deleted. Fragments ship in the snapshot, and gateways
//! inline them when they compile the policies.

use std::collections::{BTreeSet, HashMap};

use gatehouse_model::resources::PolicyFragment;
use gatehouse_model::{Detail, ValidationError};
use gatehouse_policy::{Mode, Severity};
use gatehouse_store::{Kind, PolicyLevel};

use super::policies::{self, named_values};
use super::{Saved, ServiceError, ServiceResult, check_id, commit, load_all, prepare, save};
use crate::ControlPlane;

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("Policy fragment '{id}' was not found."))
}

/// The fragment ids a policy document or fragment includes directly.
pub fn included(xml: &str) -> Vec<String> {
    fn walk(el: &gatehouse_policy::xml::Element, out: &mut Vec<String>) {
        if el.name == "include-fragment"
            && let Some(a) = el.attr("fragment-id")
        {
            let id = a.value.trim().to_owned();
            if !out.contains(&id) {
                out.push(id);
            }
        }
        for child in el.elements() {
            walk(child, out);
        }
    }
    if !xml.contains("include-fragment") {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Ok(root) = gatehouse_policy::xml::Source::new(xml).parse() {
        walk(&root, &mut out);
    }
    out
}

/// Every fragment, id → XML.
pub async fn all(cp: &ControlPlane) -> ServiceResult<HashMap<String, String>> {
    all_in(cp.store()).await
}

/// Every fragment in `store`, id → XML.
pub async fn all_in(store: &gatehouse_store::Store) -> ServiceResult<HashMap<String, String>> {
    let fragments = store.repo::<PolicyFragment>().list("").await?;
    Ok(fragments.into_iter().map(|f| (f.id, f.value)).collect())
}

/// The fragments `xml` includes, directly or through other fragments of `fragments`.
pub fn reachable(xml: &str, fragments: &HashMap<String, String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut queue = included(xml);
    while let Some(id) = queue.pop() {
        if seen.insert(id.clone())
            && let Some(inner) = fragments.get(&id)
        {
            queue.extend(included(inner));
        }
    }
    seen
}

fn details(diags: &[gatehouse_policy::Diagnostic]) -> Vec<Detail> {
    diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| Detail::new("value", d.message.clone()).at(d.line, d.column))
        .collect()
}

/// Compiles the fragment on its own and within everything that includes it, with `fragments`
/// holding its new version.
async fn check(
    cp: &ControlPlane,
    id: &str,
    xml: &str,
    fragments: &HashMap<String, String>,
) -> ServiceResult<()> {
    let named = named_values(cp).await?;
    let diags = gatehouse_policy::compile::check_fragment(id, xml, &named, fragments, Mode::Strict);
    let found = details(&diags);
    if let Some(first) = found.first() {
        let message = format!(
            "The policy fragment cannot run: line {}, column {}: {}",
            first.line.unwrap_or(0),
            first.column.unwrap_or(0),
            first.message
        );
        return Err(ValidationError::new(message, found).into());
    }
    for level in PolicyLevel::ALL {
        for (scope, xml) in cp.store().policies().all(level).await? {
            if !reachable(&xml, fragments).contains(id) {
                continue;
            }
            let (compiled, diags) = gatehouse_policy::compile::compile_with(
                &xml,
                policies::compile_scope(level),
                &named,
                fragments,
                Mode::Strict,
            );
            if compiled.is_none() {
                let first = diags
                    .iter()
                    .find(|d| d.severity == Severity::Error)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                return Err(ValidationError::new(
                    format!(
                        "The change would break the policy of {}, which includes this fragment: {first}",
                        policies::describe(&scope)
                    ),
                    details(&diags),
                )
                .into());
            }
        }
    }
    Ok(())
}

/// Who includes fragment `id`: policy documents and other fragments.
async fn users_of(cp: &ControlPlane, id: &str) -> ServiceResult<Vec<String>> {
    let mut out = Vec::new();
    for level in PolicyLevel::ALL {
        for (scope, xml) in cp.store().policies().all(level).await? {
            if included(&xml).iter().any(|f| f == id) {
                out.push(format!("the policy of {}", policies::describe(&scope)));
            }
        }
    }
    for f in load_all::<PolicyFragment>(cp, "").await? {
        if f.id != id && included(&f.value).iter().any(|i| i == id) {
            out.push(format!("policy fragment '{}'", f.id));
        }
    }
    Ok(out)
}

/// Every fragment, ordered by id.
pub async fn list(cp: &ControlPlane) -> ServiceResult<Vec<PolicyFragment>> {
    load_all::<PolicyFragment>(cp, "").await
}

pub async fn get(cp: &ControlPlane, id: &str) -> ServiceResult<PolicyFragment> {
    check_id(Kind::PolicyFragment, id)?;
    super::load_opt::<PolicyFragment>(cp, "", id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Creates or replaces fragment `id`, refused when it, or a policy that includes it, would not
/// compile.
pub async fn put(
    cp: &ControlPlane,
    id: &str,
    body: PolicyFragment,
) -> ServiceResult<Saved<PolicyFragment>> {
    let fragment = prepare(body, id)?;
    let mut fragments = all(cp).await?;
    fragments.insert(id.to_owned(), fragment.value.clone());
    check(cp, id, &fragment.value, &fragments).await?;
    let mut tx = cp.store().begin().await?;
    let created = save(&mut tx, "", &fragment).await?;
    commit(cp, tx).await?;
    Ok(Saved {
        created,
        value: fragment,
    })
}

/// Deletes fragment `id`, unless a policy document or another fragment includes it.
pub async fn delete(cp: &ControlPlane, id: &str) -> ServiceResult<()> {
    check_id(Kind::PolicyFragment, id)?;
    let users = users_of(cp, id).await?;
    if !users.is_empty() {
        return Err(ServiceError::Conflict(format!(
            "Policy fragment '{id}' is included by {}; remove the <include-fragment> there first",
            users.join(", ")
        )));
    }
    let mut tx = cp.store().begin().await?;
    if !tx.repo::<PolicyFragment>().delete("", id).await? {
        return Err(not_found(id));
    }
    commit(cp, tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_included_fragments() {
        let xml = r#"<policies><inbound>
            <include-fragment fragment-id="a" />
            <choose><when condition="@(true)"><include-fragment fragment-id=" b "/></when></choose>
            <!-- <include-fragment fragment-id="commented" /> -->
            <include-fragment fragment-id="a" />
        </inbound></policies>"#;
        assert_eq!(included(xml), ["a", "b"]);
        assert!(included("<policies/>").is_empty());
        assert!(included("<broken include-fragment").is_empty());
        let fragments: HashMap<String, String> = [
            (
                "a".to_owned(),
                r#"<fragment><include-fragment fragment-id="c"/></fragment>"#.to_owned(),
            ),
            (
                "c".to_owned(),
                r#"<fragment><include-fragment fragment-id="a"/></fragment>"#.to_owned(),
            ),
        ]
        .into();
        let reached: Vec<String> = reachable(xml, &fragments).into_iter().collect();
        assert_eq!(reached, ["a", "b", "c"]);
    }
}
