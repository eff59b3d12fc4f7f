//! The upstream phase: the loaded state, the bucket's region, the body plan, credentials (static, STS AssumeRole or the proxy's own, cached), the upstream URL and its signature, and the pooled client that streams bodies both ways.

pub(crate) mod credentials;
pub(crate) mod exchange;
pub(crate) mod forward;
pub(crate) mod probe;
pub(crate) mod region;
pub mod sign;
pub(crate) mod state;
