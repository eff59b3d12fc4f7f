//! The request phase: the request's shape, its route, CORS preflights, the caller, the rate limit, the integration and whether the caller may go there, and the answers the proxy gives itself. Nothing here reaches the store.

pub(crate) mod admit;
pub(crate) mod answers;
pub(crate) mod cors;
pub mod integration;
pub mod lazy;
pub(crate) mod session;
pub(crate) mod shape;
pub(crate) mod steps;
pub(crate) mod tenants;
