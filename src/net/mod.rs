//! Connections and their limits: the rate limit and idle timeout, the client's address behind trusted balancers, the PROXY protocol, the memory budget of bodies in flight, and upstream connections cut when their request is dropped.

pub(crate) mod budget;
pub(crate) mod cut;
pub mod limits;
pub(crate) mod peer;
pub(crate) mod proxy_protocol;
