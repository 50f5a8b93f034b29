//! Wiring of the developer portal and the admin console: their settings, and the adapter that
//! gives them the control plane's operations (subscription keys, publishing changes, the admin
//! token check, the fleet's status) through `PortalBackend` and `AdminBackend`, so the portal
//! crate does not depend on the control crate.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use clap::Args;
use gatehouse_control::{BUILT_IN_GATEWAY, ControlPlane, ServiceError};
use gatehouse_model::resources::{Subscription, SubscriptionKeys, SubscriptionState};
use gatehouse_portal::{
    AdminBackend, BackendError, BoxFuture, Console, ConsoleConfig, Fleet, FleetGateway,
    FleetInstance, Portal, PortalBackend, PortalConfig,
};
use gatehouse_store::Tx;

use crate::Failure;
use crate::settings::FileSettings;

/// Settings of the developer portal (`/portal/`).
#[derive(Debug, Args, Clone, Default)]
pub struct PortalArgs {
    /// A directory of templates that replace the portal's built-in ones (same file names,
    /// such as layout.html).
    #[arg(long, env = "GATEHOUSE_PORTAL_TEMPLATES")]
    pub portal_templates: Option<PathBuf>,
    /// A gateway base URL the portal's Try it may call (repeatable, or comma-separated in the
    /// environment) [default for `up`: the built-in gateway's URL].
    #[arg(
        long = "portal-gateway-url",
        env = "GATEHOUSE_PORTAL_GATEWAY_URL",
        value_delimiter = ','
    )]
    pub portal_gateway_urls: Vec<String>,
}

/// `PortalBackend` over the control plane.
pub struct ControlBackend(pub Arc<ControlPlane>);

fn backend_error(e: ServiceError) -> BackendError {
    match e {
        ServiceError::Invalid(v) => BackendError::Invalid(v.message),
        ServiceError::NotFound(m) => BackendError::NotFound(m),
        ServiceError::Conflict(m) => BackendError::Conflict(m),
        other => BackendError::Internal(other.to_string()),
    }
}

impl PortalBackend for ControlBackend {
    fn create_subscription(
        &self,
        subscription: Subscription,
    ) -> BoxFuture<'_, Result<Subscription, BackendError>> {
        Box::pin(async move {
            self.0
                .create_subscription(subscription)
                .await
                .map_err(backend_error)
        })
    }

    fn set_subscription_state<'a>(
        &'a self,
        id: &'a str,
        state: SubscriptionState,
    ) -> BoxFuture<'a, Result<Subscription, BackendError>> {
        Box::pin(async move {
            self.0
                .set_subscription_state(id, state)
                .await
                .map_err(backend_error)
        })
    }

    fn subscription_keys<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<SubscriptionKeys, BackendError>> {
        Box::pin(async move { self.0.subscription_keys(id).await.map_err(backend_error) })
    }

    fn regenerate_key<'a>(
        &'a self,
        id: &'a str,
        primary: bool,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.0
                .regenerate_subscription_key(id, primary)
                .await
                .map_err(backend_error)
        })
    }

    fn api_document<'a>(
        &'a self,
        api_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<serde_json::Value>, BackendError>> {
        Box::pin(async move { self.0.api_document(api_id).await.map_err(backend_error) })
    }

    fn commit(&self, tx: Tx) -> BoxFuture<'_, Result<u64, BackendError>> {
        Box::pin(async move { self.0.commit(tx).await.map_err(backend_error) })
    }
}

impl AdminBackend for ControlBackend {
    fn admin_token_matches(&self, token: &str) -> bool {
        self.0.admin_token_matches(token)
    }

    fn admin_generation(&self) -> String {
        self.0.admin_generation()
    }

    fn fleet(&self) -> BoxFuture<'_, Result<Fleet, BackendError>> {
        Box::pin(async move {
            let (current_revision, statuses) =
                self.0.fleet_status().await.map_err(backend_error)?;
            let gateways = statuses
                .into_iter()
                .map(|(gateway, status)| FleetGateway {
                    built_in: gateway.id == BUILT_IN_GATEWAY,
                    location: gateway
                        .location_data
                        .map(|l| l.name)
                        .filter(|n| !n.is_empty()),
                    description: gateway.description,
                    id: gateway.id,
                    rejected_tokens: status.rejected_tokens,
                    last_token_rejection: status.last_token_rejection,
                    last_token_rejected_at: status.last_token_rejected_at,
                    instances: status
                        .instances
                        .into_iter()
                        .map(|i| FleetInstance {
                            state: i.state().to_owned(),
                            problem: i.record.last_error.clone(),
                            name: i.record.name,
                            version: i.record.version,
                            link: i.link,
                            reported_state: i.record.state,
                            applied_revision: i.record.applied_revision,
                            last_heartbeat: i.record.last_heartbeat,
                            seconds_since_heartbeat: i.seconds_since_heartbeat,
                        })
                        .collect(),
                })
                .collect();
            Ok(Fleet {
                current_revision,
                gateways,
            })
        })
    }
}

/// The portal's router (`/portal/`) with the admin console's (`/admin/`) merged in.
/// `default_gateway` is the built-in gateway's URL under `up`.
pub fn router(
    control: &Arc<ControlPlane>,
    args: &PortalArgs,
    file: &FileSettings,
    default_gateway: Option<String>,
) -> Result<Router, Failure> {
    let mut gateway_urls = if args.portal_gateway_urls.is_empty() {
        file.portal_gateway_url.clone().unwrap_or_default()
    } else {
        args.portal_gateway_urls.clone()
    };
    gateway_urls.retain(|u| !u.trim().is_empty());
    if gateway_urls.is_empty() {
        gateway_urls.extend(default_gateway);
    }
    let config = PortalConfig {
        templates_dir: args
            .portal_templates
            .clone()
            .or_else(|| file.portal_templates.clone()),
        gateway_urls,
        tryit_key: Some(gatehouse_portal::tryit::SigningKey::new(
            &control.tryit_key(),
        )),
        ..PortalConfig::default()
    };
    let templates_dir = config.templates_dir.clone();
    let backend = Arc::new(ControlBackend(control.clone()));
    let portal = Portal::new(control.store().clone(), backend.clone(), config)
        .map_err(|e| Failure::input(format!("cannot start the developer portal: {e}")))?;
    let console = Console::new(
        control.store().clone(),
        backend,
        ConsoleConfig {
            templates_dir,
            ..ConsoleConfig::default()
        },
    )
    .map_err(|e| Failure::input(format!("cannot start the admin console: {e}")))?;
    Ok(portal.router().merge(console.router()))
}
