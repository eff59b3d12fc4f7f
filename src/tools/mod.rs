//! The operator's tools, running the real phases: `check` probes every integration, `explain` says what the proxy would do with a request.

pub mod check;
pub mod explain;
