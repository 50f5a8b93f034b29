//! The bounds on what policies parse from a request or a response: JSON and XML bodies and JSON
//! web tokens. Everything a client sends is read within these, so the work per message is linear
//! in its size and every recursive walk of a parsed tree (printing, comparing, converting,
//! dropping) stays far inside a worker thread's stack. Input over a bound is refused with a
//! clear error before the expensive work starts; the client gets a 4xx and the log the reason.
//!
//! The limits are constants rather than settings: they sit far above what real messages need
//! (Azure's own, Newtonsoft's default `MaxDepth`, is 64) and far below what would hurt a worker.

pub use gatehouse_expr::limits::{MAX_DEPTH, MAX_TOKEN_BYTES, MAX_VALUES};

/// How many attributes one XML element may carry. The XML parser checks each attribute against
/// the element's others, so an element's cost grows with the square of this: at 128, about ten
/// comparisons per byte of attributes at worst.
pub const MAX_XML_ATTRIBUTES: usize = 128;

/// How many namespace declarations (`xmlns`, `xmlns:p`) an XML document may make. Each element
/// that declares one copies the namespaces in scope, and each prefixed name is looked up among
/// them, so the cost of a document grows with this (and its square): at 64, a few comparisons
/// per byte at worst. Real documents declare a handful.
pub const MAX_XML_NAMESPACES: usize = 64;
