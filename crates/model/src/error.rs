//! Validation errors, shaped like the `details` of the management API's 400 body.

use serde::Serialize;
use utoipa::ToSchema;

/// One problem found in a piece of input: what is wrong, where, and (for text documents) the
/// line and column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    /// The property, path or document the problem is in.
    pub target: String,
    /// 1-based line in a text document, where one applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column in a text document, where one applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl Detail {
    pub fn new(target: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub fn at(mut self, line: u32, column: u32) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

/// Input that cannot be accepted, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub message: String,
    pub details: Vec<Detail>,
}

impl ValidationError {
    pub fn new(message: impl Into<String>, details: Vec<Detail>) -> Self {
        Self {
            message: message.into(),
            details,
        }
    }

    /// A single problem with one property.
    pub fn one(target: impl Into<String>, message: impl Into<String>) -> Self {
        let detail = Detail::new(target, message);
        Self {
            message: format!("Invalid value for '{}': {}", detail.target, detail.message),
            details: vec![detail],
        }
    }
}

/// Collects problems while validating a resource, then turns them into one error.
#[derive(Debug, Default)]
pub struct Problems(Vec<Detail>);

impl Problems {
    pub fn push(&mut self, target: impl Into<String>, message: impl Into<String>) {
        self.0.push(Detail::new(target, message));
    }

    pub fn extend(&mut self, details: impl IntoIterator<Item = Detail>) {
        self.0.extend(details);
    }

    pub fn finish(self, what: &str) -> Result<(), ValidationError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let first = &self.0[0];
        let message = if self.0.len() == 1 {
            format!("Invalid {what}: '{}' {}", first.target, first.message)
        } else {
            format!(
                "Invalid {what}: {} problems, the first: '{}' {}",
                self.0.len(),
                first.target,
                first.message
            )
        };
        Err(ValidationError::new(message, self.0))
    }
}
