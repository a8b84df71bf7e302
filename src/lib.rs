//! # fast-launch-exporter
//!
//! A Prometheus exporter for AWS EC2 Windows *fast launch*. Folders are layers and every arrow
//! points down; `tests/architecture.rs` enforces it and `docs/architecture.md` draws
//! it. From the bottom up:
//!
//! ```text
//! domain     plain types (specs, images, calls, stats, shard) and the ports AWS hides behind
//! config     the YAML file: serde mirror -> validated Config; the web config file
//! aws        the only code that uses the SDK: implements domain's ports
//! discover   the plan: configured + discovered accounts x regions, this shard's part
//! collect    one target's schedule and collection, reporting through its ResultSink
//! events     the SQS receiver: EventBridge events ask targets to collect now (its Trigger)
//! targets    where a target lives: desired state in, one reconcile, claims, views
//! expose     the exposition: text/OpenMetrics writer, per-block chunk caches, stitched body
//! serve      the HTTP server: /metrics, landing page, health, reload, TLS and auth
//! app        the supervisor: plan -> reconcile, reload, shutdown
//! cli        check-config, check-permissions, healthcheck, logging
//! sim        the AWS simulator: EC2, STS, SQS, CloudWatch, Organizations, SSO on loopback
//! demo       the exporter against the simulator (`sim` and `demo`: cargo feature `demo`)
//! ```
//!
//! `main.rs` only parses flags and dispatches.

pub mod app;
pub mod aws;
pub mod cli;
pub mod collect;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod discover;
pub mod domain;
pub mod events;
pub mod expose;
pub mod serve;
#[cfg(feature = "demo")]
pub mod sim;
pub mod targets;
