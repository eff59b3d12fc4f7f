//! The response phase: the store's answer made safe for the client: error documents rebuilt from their code, result documents taken out of the integration, and the headers that keep objects from acting as the origin's pages.

pub mod cache;
pub(crate) mod protect;
pub(crate) mod respond;
pub(crate) mod upstream_error;
