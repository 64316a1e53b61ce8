//! What the server logs, in a test binary of its own: the capture uses a
//! thread-local subscriber, and tracing's callsite interest is global, so
//! tests running beside it on other threads could make a span go unseen
//! (regression: the route field was missing once in five full runs).

// The API suite's harness, shared by path; this binary uses only part of it.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod capture;
