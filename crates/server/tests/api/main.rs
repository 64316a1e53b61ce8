//! Integration tests of the HTTP API: the real router over a real database
//! (SQLite always, PostgreSQL when `NEXUS_ATTACK_TEST_POSTGRES` is set),
//! one module per area.

mod helpers;

mod alerts;
mod auth;
mod envelope;
mod exports;
mod kpis;
mod leakage;
mod lifecycle;
mod matrix;
mod ops;
mod queries;
mod role_before_body;
mod role_before_query;
mod roles;
mod rules;
mod serve;
mod suggest;
mod taxonomy;
mod watch;
