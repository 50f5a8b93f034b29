//! End-to-end tests: the real `gatehouse` binary on loopback, real HTTP backends, real HTTP
//! clients. One test binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod azure_policies;
mod backend_pools;
mod backend_responses;
mod backends_tls;
mod backup_deltas;
mod containment;
mod content_policies;
mod control_planes;
mod expressions_library;
mod first_hour;
mod gateway;
mod identity;
mod integrations;
mod lifecycle;
mod management;
mod observability;
mod otlp;
mod policies;
mod policies_auth;
mod policies_flow;
mod policy_surface;
mod protocols;
mod redis;
mod reload;
mod reports;
mod security_backup;
mod security_control;
mod security_edge;
mod security_parsers;
mod selfhosted;
mod support;
mod tls_certificates;
mod tls_client_certificates;
mod tls_listeners;
mod tls_outbound;
mod tour;
mod validation_policies;
