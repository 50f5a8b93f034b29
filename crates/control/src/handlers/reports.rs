//! `/mgmt/reports/...`: traffic by API, operation, product, subscription or time bucket over a
//! `[from, to)` window, computed from the per-minute aggregates the gateways upload. The
//! arithmetic lives in `gatehouse_model::reports`, shared with the admin console.

use axum::Json;
use gatehouse_model::reports::{self, Figures, Grouping, Key};
use gatehouse_model::resources::Collection;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Cp;
use crate::error::{ApiResult, ErrorBody};
use crate::http::Query;
use crate::service::reports as service;

/// The window every report takes, and the optional API filter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// Start of the window, inclusive: an RFC 3339 time such as `2026-11-26T09:00:00Z`.
    /// Minutes that start at or after it count.
    #[param(required = true, value_type = String, format = DateTime)]
    pub from: Option<String>,
    /// End of the window, exclusive: an RFC 3339 time. A window that ends where it starts, or
    /// before, holds no traffic: the report has no rows.
    #[param(required = true, value_type = String, format = DateTime)]
    pub to: Option<String>,
    /// Only the traffic of this API.
    #[serde(rename = "apiId")]
    #[param(
        rename = "apiId",
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,79}$",
        min_length = 1,
        max_length = 80
    )]
    pub api_id: Option<String>,
}

/// The bucket length of a report over time.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IntervalParam {
    /// An ISO 8601 duration from `PT1M` to `P1D`: `P1D`, whole hours (`PT1H` to `PT24H`),
    /// whole minutes (`PT1M` to `PT1440M`) or hours and minutes (`PT1H30M`). Buckets are
    /// aligned to the Unix epoch (`PT5M`: :00, :05, …; `P1D`: midnight UTC).
    #[param(required = true, value_type = String, pattern = "^P")]
    // The document replaces this pattern with `reports::INTERVAL_PATTERN` (`docs::patterns`).
    pub interval: Option<String>,
}

/// Traffic of one API.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiReport {
    pub api_id: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Traffic of one operation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationReport {
    pub api_id: String,
    pub operation_id: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Traffic of one product.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductReport {
    /// `null` for calls made without a product (open APIs, all-APIs subscriptions).
    #[schema(required = true)]
    pub product_id: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Traffic of one subscription.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionReport {
    /// `null` for calls made without a subscription (open APIs, calls refused for a missing key).
    #[schema(required = true)]
    pub subscription_id: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Traffic of one time bucket.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeReport {
    /// The bucket's start (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// The bucket's length, as asked for (ISO 8601, canonical: `PT5M`, `PT1H`, `P1D`).
    pub interval: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The window's traffic, grouped; `row` turns each group into a report row.
async fn report<T>(
    cp: &Cp,
    params: &ReportParams,
    grouping: Grouping,
    row: impl Fn(Key, Figures) -> Option<T>,
) -> ApiResult<Json<Collection<T>>> {
    let groups = service::grouped(
        cp,
        params.from.as_deref(),
        params.to.as_deref(),
        params.api_id.as_deref(),
        grouping,
    )
    .await?;
    let value: Vec<T> = groups
        .into_iter()
        .filter_map(|(key, figures)| row(key, figures))
        .collect();
    Ok(Json(Collection {
        count: value.len() as u64,
        value,
        next_link: None,
    }))
}

#[utoipa::path(get, path = "/mgmt/reports/byApi", tag = "reports", params(ReportParams),
    responses((status = 200, body = Collection<ApiReport>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn by_api(
    cp: Cp,
    Query(params): Query<ReportParams>,
) -> ApiResult<Json<Collection<ApiReport>>> {
    report(&cp, &params, Grouping::Api, |key, figures| match key {
        Key::Api(api_id) => Some(ApiReport { api_id, figures }),
        _ => None,
    })
    .await
}

#[utoipa::path(get, path = "/mgmt/reports/byOperation", tag = "reports", params(ReportParams),
    responses((status = 200, body = Collection<OperationReport>),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn by_operation(
    cp: Cp,
    Query(params): Query<ReportParams>,
) -> ApiResult<Json<Collection<OperationReport>>> {
    report(
        &cp,
        &params,
        Grouping::Operation,
        |key, figures| match key {
            Key::Operation {
                api_id,
                operation_id,
            } => Some(OperationReport {
                api_id,
                operation_id,
                figures,
            }),
            _ => None,
        },
    )
    .await
}

#[utoipa::path(get, path = "/mgmt/reports/byProduct", tag = "reports", params(ReportParams),
    responses((status = 200, body = Collection<ProductReport>),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn by_product(
    cp: Cp,
    Query(params): Query<ReportParams>,
) -> ApiResult<Json<Collection<ProductReport>>> {
    report(&cp, &params, Grouping::Product, |key, figures| match key {
        Key::Product(product_id) => Some(ProductReport {
            product_id,
            figures,
        }),
        _ => None,
    })
    .await
}

#[utoipa::path(get, path = "/mgmt/reports/bySubscription", tag = "reports",
    params(ReportParams),
    responses((status = 200, body = Collection<SubscriptionReport>),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn by_subscription(
    cp: Cp,
    Query(params): Query<ReportParams>,
) -> ApiResult<Json<Collection<SubscriptionReport>>> {
    report(
        &cp,
        &params,
        Grouping::Subscription,
        |key, figures| match key {
            Key::Subscription(subscription_id) => Some(SubscriptionReport {
                subscription_id,
                figures,
            }),
            _ => None,
        },
    )
    .await
}

/// One row per bucket of the window that has traffic, in time order.
#[utoipa::path(get, path = "/mgmt/reports/byTime", tag = "reports",
    params(ReportParams, IntervalParam),
    responses((status = 200, body = Collection<TimeReport>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn by_time(
    cp: Cp,
    Query(params): Query<ReportParams>,
    Query(interval): Query<IntervalParam>,
) -> ApiResult<Json<Collection<TimeReport>>> {
    let seconds = service::interval(interval.interval.as_deref())?;
    let label = reports::format_interval(seconds);
    report(
        &cp,
        &params,
        Grouping::Time(seconds),
        |key, figures| match key {
            Key::Time(start) => Some(TimeReport {
                timestamp: reports::rfc3339(start),
                interval: label.clone(),
                figures,
            }),
            _ => None,
        },
    )
    .await
}
