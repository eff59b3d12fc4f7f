//! What the proxy tells its operator: one access line per request, the log formats, and the metrics.

pub(crate) mod access;
pub mod logging;
pub(crate) mod metrics;
