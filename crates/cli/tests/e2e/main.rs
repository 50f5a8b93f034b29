//! End-to-end tests: the real `gatehouse` binary on loopback, real HTTP backends, real HTTP
//! clients. One test binary, one module per area.

mod gateway;
mod lifecycle;
mod management;
mod reload;
mod support;
mod tour;
