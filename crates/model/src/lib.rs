//! The Gatehouse configuration model: the resources the management API speaks (with Azure API
//! Management's property names), their validation, the URL template grammar, OpenAPI import, and
//! the snapshot format a gateway downloads. Pure data: no I/O, no async runtime.

pub mod duration;
pub mod error;
pub mod loggers;
pub mod openapi;
pub mod reports;
pub mod resources;
pub mod snapshot;
pub mod telemetry;
pub mod template;
pub mod token;
pub mod tryit;

pub use error::{Detail, ValidationError};
