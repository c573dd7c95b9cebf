//! All cross-crate integration tests, built into one binary (one module per area).

#[macro_use]
mod common;

mod adversarial;
mod build;
mod cli;
mod conformance;
mod expand;
mod images;
mod no_panic;
mod parser_golden;
mod registry;
mod run;
mod run_net;
mod run_security;
mod sandbox;
mod store;
mod volumes;
