//! Backend services that policies route to with `<set-backend-service backend-id="…"/>`,
//! with the credentials and TLS settings gateways use for them.

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
