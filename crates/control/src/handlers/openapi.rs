//! The management API's OpenAPI description as utoipa derives it from the handlers'
//! annotations: every operation and tag. `crate::docs` completes it and serves it with
//! Swagger UI.

use utoipa::OpenApi;

use super::{
    apis, backends, certificate_authorities, certificates, gateway_tokens, gateways, groups,
    hostname_configurations, loggers, named_values, policies, policy_fragments, portal_settings,
    products, reports, subscriptions, users,
};
use crate::docs::{AdminAuth, Conventions};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse management API",
        description = "Manage the APIs, products, subscriptions, named values, backends and gateways of a Gatehouse control plane, and read its traffic reports. Resource and property names follow Azure API Management. Every call needs `Authorization: Bearer <admin token>`.",
        license(name = "Apache-2.0")
    ),
    paths(
        apis::list, apis::get, apis::put, apis::patch, apis::delete, apis::get_document,
        apis::list_operations, apis::get_operation, apis::put_operation,
        apis::patch_operation, apis::delete_operation,
        products::list, products::get, products::put, products::patch, products::delete,
        products::list_apis, products::add_api, products::remove_api,
        subscriptions::list, subscriptions::get, subscriptions::put, subscriptions::patch,
        subscriptions::delete, subscriptions::list_secrets, subscriptions::regenerate_primary,
        subscriptions::regenerate_secondary,
        named_values::list, named_values::get, named_values::put, named_values::patch,
        named_values::delete, named_values::list_value,
        backends::list, backends::get, backends::put, backends::patch, backends::delete,
        loggers::list, loggers::get, loggers::put, loggers::patch, loggers::delete,
        gateways::list, gateways::get, gateways::put, gateways::patch, gateways::delete,
        gateways::list_apis, gateways::add_api, gateways::remove_api,
        certificates::list, certificates::get, certificates::put, certificates::delete,
        hostname_configurations::list, hostname_configurations::get,
        hostname_configurations::put, hostname_configurations::delete,
        certificate_authorities::list, certificate_authorities::get,
        certificate_authorities::put, certificate_authorities::delete,
        gateway_tokens::generate_token, gateway_tokens::regenerate_key,
        gateway_tokens::list_keys, gateway_tokens::status,
        policies::get_global, policies::put_global, policies::delete_global,
        policies::get_product, policies::put_product, policies::delete_product,
        policies::get_api, policies::put_api, policies::delete_api,
        policies::get_operation, policies::put_operation, policies::delete_operation,
        policy_fragments::list, policy_fragments::get, policy_fragments::put,
        policy_fragments::delete,
        users::list, users::get, users::put, users::patch, users::delete,
        groups::list, groups::get, groups::put, groups::patch, groups::delete,
        groups::list_users, groups::add_user, groups::remove_user,
        groups::list_product_groups, groups::add_product_group, groups::remove_product_group,
        portal_settings::get, portal_settings::put,
        reports::by_api, reports::by_operation, reports::by_product, reports::by_subscription,
        reports::by_time,
    ),
    modifiers(&AdminAuth, &Conventions),
    tags(
        (name = "apis", description = "APIs and their operations"),
        (name = "products", description = "Products group APIs for subscription"),
        (name = "subscriptions", description = "Subscriptions and their keys"),
        (name = "named-values", description = "Values policies refer to as {{name}}"),
        (name = "backends", description = "Backend services"),
        (name = "loggers", description = "Where log-to-eventhub sends messages: Azure Event Hubs, or an http or otlp sink"),
        (name = "gateways", description = "Gateways, the APIs assigned to them, their hostname configurations and certificate authorities"),
        (name = "certificates", description = "TLS certificates (PEM) for the gateways' hostnames and certificate authorities"),
        (name = "policies", description = "Policy documents at the global, product, API and operation scopes"),
        (name = "policy-fragments", description = "Reusable policy XML that policies insert with <include-fragment>"),
        (name = "users", description = "Developer portal accounts"),
        (name = "groups", description = "Groups of users, and the products they may see"),
        (name = "portal", description = "Developer portal settings"),
        (name = "reports", description = "Traffic over a time window, from the telemetry gateways upload: calls by outcome, bandwidth, mean and 95th percentile latencies"),
    )
)]
pub struct ApiDoc;
