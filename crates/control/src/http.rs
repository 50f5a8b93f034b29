//! Request plumbing shared by the handlers: the JSON body extractor with positioned errors,
//! paging, and the admin-token guard.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatehouse_model::resources::Collection;
use gatehouse_model::{Detail, ValidationError};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use crate::ControlPlane;
use crate::error::ApiError;

/// A JSON body whose syntax and type errors come back as `ValidationError` with line and column.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody).map_err(ApiError::from)
    }
}

pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        ApiError::Validation(ValidationError::one(
            "body",
            format!("cannot read the request body: {}", e.body_text()),
        ))
    })
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ValidationError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ValidationError::one("body", "is empty; send a JSON object"));
    }
    let direct = serde_json::from_slice(bytes);
    // JSON has one kind of number: `8080.0` is the integer 8080 to JSON Schema, and to the
    // OpenAPI document. Retried only when the direct parse fails, which keeps the error's line
    // and column for every other mistake.
    if let Err(e) = &direct
        && e.classify() == serde_json::error::Category::Data
        && let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes)
        && integral_numbers(&mut value)
        && let Ok(parsed) = T::deserialize(value)
    {
        return Ok(parsed);
    }
    direct.map_err(|e| {
        let line = u32::try_from(e.line()).unwrap_or(u32::MAX);
        let column = u32::try_from(e.column()).unwrap_or(u32::MAX);
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "The body is not valid JSON"
            }
            _ => "The body does not fit the resource",
        };
        ValidationError::new(
            format!("{what}: {e}."),
            vec![Detail::new("body", e.to_string()).at(line, column)],
        )
    })
}

/// Rewrites every number with no fractional part (`8080.0`, `1e3`) as an integer, in place.
/// Returns whether anything changed.
pub fn integral_numbers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let Some(f) = n.as_f64() else { return false };
            if f.fract() != 0.0 || !f.is_finite() {
                return false;
            }
            // Within ±2^53 a float is an exact integer; beyond it, leave it to the type check.
            let limit = 9_007_199_254_740_992.0;
            if !(-limit..=limit).contains(&f) {
                return false;
            }
            *value = Value::from(f as i64);
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, v| integral_numbers(v) | c),
        Value::Object(members) => members
            .values_mut()
            .fold(false, |c, v| integral_numbers(v) | c),
        _ => false,
    }
}

/// `axum::extract::Query` whose rejection is a JSON `ValidationError` naming the parameter,
/// instead of axum's plain-text 400.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(e) => {
                let text = e.body_text();
                let problem = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                let (target, message) = match problem.split_once(": ") {
                    Some((name, message)) if name.starts_with('$') => (name, message),
                    _ => ("query", problem),
                };
                Err(ValidationError::one(target, message).into())
            }
        }
    }
}

/// `axum::extract::Path` whose rejection (say, a segment that is not UTF-8 once decoded) is a
/// JSON `ValidationError`, instead of axum's plain-text 400.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(e) if e.status().is_server_error() => Err(ApiError::Internal(e.body_text())),
            Err(e) => Err(ValidationError::one("path", e.body_text()).into()),
        }
    }
}

/// Paging of collections, as Azure API Management does it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Number of items to return (1 to 1000, default 100).
    #[serde(rename = "$top")]
    #[param(rename = "$top", minimum = 1, maximum = 1000)]
    pub top: Option<i64>,
    /// Number of items to skip.
    #[serde(rename = "$skip")]
    #[param(rename = "$skip", minimum = 0)]
    pub skip: Option<i64>,
}

impl Paging {
    pub fn page<T>(&self, base: &str, items: Vec<T>) -> Result<Collection<T>, ApiError> {
        let top = self.top.unwrap_or(100);
        let skip = self.skip.unwrap_or(0);
        if !(1..=1000).contains(&top) {
            return Err(ValidationError::one("$top", "must be between 1 and 1000").into());
        }
        if skip < 0 {
            return Err(ValidationError::one("$skip", "must not be negative").into());
        }
        let (top, skip) = (top as usize, skip as usize);
        let count = items.len() as u64;
        let more = items.len() > skip.saturating_add(top);
        let value: Vec<T> = items.into_iter().skip(skip).take(top).collect();
        let next_link = more.then(|| format!("{base}?$top={top}&$skip={}", skip + top));
        Ok(Collection {
            value,
            count,
            next_link,
        })
    }
}

/// Rejects requests without the admin token.
pub async fn require_admin(
    State(cp): State<Arc<ControlPlane>>,
    req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(token) if cp.admin_token_matches(token) => next.run(req).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_have_positions() {
        let err = parse_json::<serde_json::Value>(b"{\n  \"a\": ,\n}").unwrap_err();
        assert_eq!(err.details[0].line, Some(2));
        assert!(err.message.starts_with("The body is not valid JSON"));
        assert!(parse_json::<serde_json::Value>(b"  ").is_err());
    }

    #[test]
    fn paging() {
        let p = Paging {
            top: Some(2),
            skip: Some(1),
        };
        let c = p.page("/mgmt/apis", vec![1, 2, 3, 4]).unwrap();
        assert_eq!(c.value, vec![2, 3]);
        assert_eq!(c.count, 4);
        assert_eq!(c.next_link.as_deref(), Some("/mgmt/apis?$top=2&$skip=3"));
        let p = Paging {
            top: Some(0),
            skip: None,
        };
        assert!(p.page("/x", vec![1]).is_err());
    }
}

#[cfg(test)]
mod number_tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Port {
        port: u16,
        weight: f64,
    }

    #[test]
    fn integral_floats_are_integers_and_other_mistakes_keep_their_position() {
        let p: Port = parse_json(br#"{"port": 8080.0, "weight": 0.5}"#).unwrap();
        assert_eq!((p.port, p.weight), (8080, 0.5));
        let p: Port = parse_json(br#"{"port": 8e3, "weight": 2}"#).unwrap();
        assert_eq!((p.port, p.weight), (8000, 2.0));
        let e = parse_json::<Port>(b"{\"port\": 80.5,\n \"weight\": 1}").unwrap_err();
        assert!(e.to_string().contains("80.5"), "{e}");
        let e = parse_json::<Port>(b"{\"port\": \"x\",\n \"weight\": 1}").unwrap_err();
        assert!(e.details[0].line.is_some(), "{e:?}");
        let mut v = serde_json::json!({"a": [1.0, 2.5, {"b": 1e2}], "c": 9.007199254740994e15});
        assert!(integral_numbers(&mut v));
        assert_eq!(
            v,
            serde_json::json!({"a": [1, 2.5, {"b": 100}], "c": 9.007199254740994e15})
        );
    }
}
