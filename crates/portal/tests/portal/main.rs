//! Router-level tests of the developer portal: no sockets, a real SQLite store, and a stand-in
//! for the control plane. The end-to-end and browser tests with the real binary are in
//! `crates/cli/tests/portal.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod admin;
mod reference;
mod support;
