//! The management API's HTTP edge, one module per resource: each handler extracts the path,
//! query and body, calls the resource's functions in `crate::service`, and answers with a
//! status and JSON (a `ServiceError` becomes an `ApiError` response). The rules live in the
//! service; what is here is routing, paging and the OpenAPI annotations.

pub mod apis;
pub mod backends;
pub mod certificate_authorities;
pub mod certificates;
pub mod gateway_tokens;
pub mod gateways;
pub mod groups;
pub mod hostname_configurations;
pub mod loggers;
pub mod named_values;
mod openapi;
pub mod policies;
pub mod policy_fragments;
pub mod portal_settings;
pub mod products;
pub mod reports;
pub mod subscriptions;
pub mod users;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use utoipa::OpenApi as _;

use crate::ControlPlane;
use crate::http::require_admin;
use crate::service::Saved;

pub type Cp = axum::extract::State<Arc<ControlPlane>>;

/// Largest accepted request body: OpenAPI documents of big APIs run to several megabytes.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

pub fn router(cp: Arc<ControlPlane>) -> Router {
    let mgmt = Router::new()
        .route("/mgmt/apis", get(apis::list))
        .route(
            "/mgmt/apis/{apiId}",
            get(apis::get)
                .put(apis::put)
                .patch(apis::patch)
                .delete(apis::delete),
        )
        .route("/mgmt/apis/{apiId}/openapi", get(apis::get_document))
        .route(
            "/mgmt/policy",
            get(policies::get_global)
                .put(policies::put_global)
                .delete(policies::delete_global),
        )
        .route(
            "/mgmt/apis/{apiId}/policy",
            get(policies::get_api)
                .put(policies::put_api)
                .delete(policies::delete_api),
        )
        .route(
            "/mgmt/apis/{apiId}/operations/{operationId}/policy",
            get(policies::get_operation)
                .put(policies::put_operation)
                .delete(policies::delete_operation),
        )
        .route(
            "/mgmt/products/{productId}/policy",
            get(policies::get_product)
                .put(policies::put_product)
                .delete(policies::delete_product),
        )
        .route("/mgmt/policy-fragments", get(policy_fragments::list))
        .route(
            "/mgmt/policy-fragments/{fragmentId}",
            get(policy_fragments::get)
                .put(policy_fragments::put)
                .delete(policy_fragments::delete),
        )
        .route("/mgmt/apis/{apiId}/operations", get(apis::list_operations))
        .route(
            "/mgmt/apis/{apiId}/operations/{operationId}",
            get(apis::get_operation)
                .put(apis::put_operation)
                .patch(apis::patch_operation)
                .delete(apis::delete_operation),
        )
        .route("/mgmt/products", get(products::list))
        .route(
            "/mgmt/products/{productId}",
            get(products::get)
                .put(products::put)
                .patch(products::patch)
                .delete(products::delete),
        )
        .route("/mgmt/products/{productId}/apis", get(products::list_apis))
        .route(
            "/mgmt/products/{productId}/apis/{apiId}",
            put(products::add_api).delete(products::remove_api),
        )
        .route("/mgmt/subscriptions", get(subscriptions::list))
        .route(
            "/mgmt/subscriptions/{subscriptionId}",
            get(subscriptions::get)
                .put(subscriptions::put)
                .patch(subscriptions::patch)
                .delete(subscriptions::delete),
        )
        .route(
            "/mgmt/subscriptions/{subscriptionId}/listSecrets",
            post(subscriptions::list_secrets),
        )
        .route(
            "/mgmt/subscriptions/{subscriptionId}/regeneratePrimaryKey",
            post(subscriptions::regenerate_primary),
        )
        .route(
            "/mgmt/subscriptions/{subscriptionId}/regenerateSecondaryKey",
            post(subscriptions::regenerate_secondary),
        )
        .route("/mgmt/named-values", get(named_values::list))
        .route(
            "/mgmt/named-values/{namedValueId}",
            get(named_values::get)
                .put(named_values::put)
                .patch(named_values::patch)
                .delete(named_values::delete),
        )
        .route(
            "/mgmt/named-values/{namedValueId}/listValue",
            post(named_values::list_value),
        )
        .route("/mgmt/backends", get(backends::list))
        .route(
            "/mgmt/backends/{backendId}",
            get(backends::get)
                .put(backends::put)
                .patch(backends::patch)
                .delete(backends::delete),
        )
        .route("/mgmt/loggers", get(loggers::list))
        .route(
            "/mgmt/loggers/{loggerId}",
            get(loggers::get)
                .put(loggers::put)
                .patch(loggers::patch)
                .delete(loggers::delete),
        )
        .route("/mgmt/gateways", get(gateways::list))
        .route(
            "/mgmt/gateways/{gatewayId}",
            get(gateways::get)
                .put(gateways::put)
                .patch(gateways::patch)
                .delete(gateways::delete),
        )
        .route("/mgmt/gateways/{gatewayId}/apis", get(gateways::list_apis))
        .route(
            "/mgmt/gateways/{gatewayId}/generateToken",
            post(gateway_tokens::generate_token),
        )
        .route(
            "/mgmt/gateways/{gatewayId}/regenerateKey",
            post(gateway_tokens::regenerate_key),
        )
        .route(
            "/mgmt/gateways/{gatewayId}/listKeys",
            post(gateway_tokens::list_keys),
        )
        .route(
            "/mgmt/gateways/{gatewayId}/status",
            get(gateway_tokens::status),
        )
        .route(
            "/mgmt/gateways/{gatewayId}/apis/{apiId}",
            put(gateways::add_api).delete(gateways::remove_api),
        )
        .route("/mgmt/certificates", get(certificates::list))
        .route(
            "/mgmt/certificates/{certificateId}",
            get(certificates::get)
                .put(certificates::put)
                .delete(certificates::delete),
        )
        .route(
            "/mgmt/gateways/{gatewayId}/hostnameConfigurations",
            get(hostname_configurations::list),
        )
        .route(
            "/mgmt/gateways/{gatewayId}/hostnameConfigurations/{hcId}",
            get(hostname_configurations::get)
                .put(hostname_configurations::put)
                .delete(hostname_configurations::delete),
        )
        .route(
            "/mgmt/gateways/{gatewayId}/certificateAuthorities",
            get(certificate_authorities::list),
        )
        .route(
            "/mgmt/gateways/{gatewayId}/certificateAuthorities/{certificateId}",
            get(certificate_authorities::get)
                .put(certificate_authorities::put)
                .delete(certificate_authorities::delete),
        )
        .route("/mgmt/users", get(users::list))
        .route(
            "/mgmt/users/{userId}",
            get(users::get)
                .put(users::put)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/mgmt/groups", get(groups::list))
        .route(
            "/mgmt/groups/{groupId}",
            get(groups::get)
                .put(groups::put)
                .patch(groups::patch)
                .delete(groups::delete),
        )
        .route("/mgmt/groups/{groupId}/users", get(groups::list_users))
        .route(
            "/mgmt/groups/{groupId}/users/{userId}",
            put(groups::add_user).delete(groups::remove_user),
        )
        .route(
            "/mgmt/products/{productId}/groups",
            get(groups::list_product_groups),
        )
        .route(
            "/mgmt/products/{productId}/groups/{groupId}",
            put(groups::add_product_group).delete(groups::remove_product_group),
        )
        .route(
            "/mgmt/portal/settings",
            get(portal_settings::get).put(portal_settings::put),
        )
        .route("/mgmt/reports/byApi", get(reports::by_api))
        .route("/mgmt/reports/byOperation", get(reports::by_operation))
        .route("/mgmt/reports/byProduct", get(reports::by_product))
        .route(
            "/mgmt/reports/bySubscription",
            get(reports::by_subscription),
        )
        .route("/mgmt/reports/byTime", get(reports::by_time))
        .route_layer(axum::middleware::from_fn_with_state(
            cp.clone(),
            require_admin,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT));
    // The document and Swagger UI need no admin token.
    mgmt.with_state(cp)
        .merge(crate::docs::router(openapi::ApiDoc::openapi()))
}

/// 201 with the resource when the service created it, 200 when it replaced one.
pub(crate) fn saved<R>(saved: Saved<R>) -> (StatusCode, Json<R>) {
    let status = if saved.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(saved.value))
}

/// Generates list/get/put/patch/delete handlers for a top-level resource with no special
/// rules, each documented for the OpenAPI description, over the functions of the same names
/// in `crate::service::<service>` (which say what deleting one takes with it).
// Laid out by hand: inside a macro, rustfmt pushes the attributes' continuation lines far
// right.
#[rustfmt::skip]
macro_rules! simple_crud {
    (
        type: $ty:ty,
        service: $svc:ident,
        tag: $tag:literal,
        collection: $coll:literal,
        item: $item:literal,
        param: $param:literal
    ) => {
        #[utoipa::path(get, path = $coll, tag = $tag, params(crate::http::Paging),
            responses((status = 200, body = Collection<$ty>),
                      (status = 400, body = crate::error::ErrorBody),
                      (status = 401, body = crate::error::ErrorBody)),
            security(("admin" = [])))]
        pub async fn list(
            cp: crate::handlers::Cp,
            crate::http::Query(paging): crate::http::Query<crate::http::Paging>,
        ) -> crate::error::ApiResult<axum::Json<gatehouse_model::resources::Collection<$ty>>> {
            let items = crate::service::$svc::list(&cp).await?;
            Ok(axum::Json(paging.page($coll, items)?))
        }

        #[utoipa::path(get, path = $item, tag = $tag, params(($param = String, Path)),
            responses((status = 200, body = $ty),
                      (status = 400, body = crate::error::ErrorBody),
                      (status = 401, body = crate::error::ErrorBody),
                      (status = 404, body = crate::error::ErrorBody)),
            security(("admin" = [])))]
        pub async fn get(
            cp: crate::handlers::Cp,
            crate::http::Path(id): crate::http::Path<String>,
        ) -> crate::error::ApiResult<axum::Json<$ty>> {
            Ok(axum::Json(crate::service::$svc::get(&cp, &id).await?))
        }

        #[utoipa::path(put, path = $item, tag = $tag, params(($param = String, Path)),
            request_body = $ty,
            responses((status = 200, body = $ty), (status = 201, body = $ty),
                      (status = 400, body = crate::error::ErrorBody),
                      (status = 401, body = crate::error::ErrorBody)),
            security(("admin" = [])))]
        pub async fn put(
            cp: crate::handlers::Cp,
            crate::http::Path(id): crate::http::Path<String>,
            crate::http::JsonBody(body): crate::http::JsonBody<$ty>,
        ) -> crate::error::ApiResult<(axum::http::StatusCode, axum::Json<$ty>)> {
            Ok(crate::handlers::saved(
                crate::service::$svc::put(&cp, &id, body).await?,
            ))
        }

        #[utoipa::path(patch, path = $item, tag = $tag, params(($param = String, Path)),
            request_body = $ty,
            responses((status = 200, body = $ty),
                      (status = 400, body = crate::error::ErrorBody),
                      (status = 401, body = crate::error::ErrorBody),
                      (status = 404, body = crate::error::ErrorBody)),
            security(("admin" = [])))]
        pub async fn patch(
            cp: crate::handlers::Cp,
            crate::http::Path(id): crate::http::Path<String>,
            crate::http::JsonBody(body): crate::http::JsonBody<serde_json::Value>,
        ) -> crate::error::ApiResult<axum::Json<$ty>> {
            Ok(axum::Json(
                crate::service::$svc::patch(&cp, &id, body).await?,
            ))
        }

        #[utoipa::path(delete, path = $item, tag = $tag, params(($param = String, Path)),
            responses((status = 204, description = "Deleted"),
                      (status = 400, body = crate::error::ErrorBody),
                      (status = 401, body = crate::error::ErrorBody),
                      (status = 404, body = crate::error::ErrorBody)),
            security(("admin" = [])))]
        pub async fn delete(
            cp: crate::handlers::Cp,
            crate::http::Path(id): crate::http::Path<String>,
        ) -> crate::error::ApiResult<axum::http::StatusCode> {
            crate::service::$svc::delete(&cp, &id).await?;
            Ok(axum::http::StatusCode::NO_CONTENT)
        }
    };
}
pub(crate) use simple_crud;
