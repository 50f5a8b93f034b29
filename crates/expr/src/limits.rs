//! The bounds on what expressions parse from a request or a response: JSON bodies and JSON web
//! tokens. Everything a client sends is read within these, so the work per message is linear in
//! its size and every recursive walk of a parsed tree (printing, comparing, converting,
//! dropping) stays far inside a worker thread's stack. The policy crate reads XML within the same
//! depth and count and adds its own XML-only bounds.
//!
//! The limits are constants rather than settings: they sit far above what real messages need
//! (Azure's own, Newtonsoft's default `MaxDepth`, is 64) and far below what would hurt a worker.

/// How deeply JSON may nest (objects and arrays) and XML elements may nest. Newtonsoft's
/// default `MaxDepth`, which Azure's `JObject.Parse` and body conversions enforce.
pub const MAX_DEPTH: usize = 64;

/// How many values a JSON text may hold, and how many nodes (elements, texts, comments) an XML
/// document. A message body is at most 16 MiB; this bounds the tree built from it whatever its
/// shape (each node costs some tens of bytes).
pub const MAX_VALUES: usize = 1_000_000;

/// The longest JSON web token read, in bytes. A token is decoded (base64, then JSON) before its
/// signature can be checked, so this bounds what an unauthenticated client can make the gateway
/// do. Real tokens are well under 8 KiB (identity providers move large claim sets out of the
/// token), and most servers refuse request headers longer than this anyway.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
