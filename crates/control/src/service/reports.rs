//! Traffic reports: the per-minute aggregates the gateways upload, over a `[from, to)` window,
//! grouped by API, operation, product, subscription or time bucket. The arithmetic lives in
//! `gatehouse_model::reports`, shared with the admin console.

use gatehouse_model::ValidationError;
use gatehouse_model::reports::{self, Figures, Grouping, Key, Window};
use gatehouse_store::Kind;

use super::{ServiceResult, check_id};
use crate::ControlPlane;

/// The traffic from `from` (inclusive) to `to` (exclusive), both RFC 3339 times, of API
/// `api_id` or of every API, one row per group.
pub async fn grouped(
    cp: &ControlPlane,
    from: Option<&str>,
    to: Option<&str>,
    api_id: Option<&str>,
    grouping: Grouping,
) -> ServiceResult<Vec<(Key, Figures)>> {
    let window = Window::parse(from, to)?;
    if let Some(api) = api_id {
        check_id(Kind::Api, api)?;
    }
    let aggregates = cp
        .store()
        .telemetry_minutes(window.from, window.to, api_id)
        .await?;
    Ok(reports::group(&aggregates, grouping)
        .into_iter()
        .map(|(key, totals)| (key, totals.figures()))
        .collect())
}

/// The bucket length of a report over time, in seconds, from its ISO 8601 duration.
pub fn interval(text: Option<&str>) -> ServiceResult<i64> {
    match text {
        Some(text) if !text.is_empty() => Ok(reports::parse_interval(text)?),
        _ => Err(ValidationError::one(
            "interval",
            "is required: an ISO 8601 duration of whole minutes such as PT5M",
        )
        .into()),
    }
}
