//! Running the proxy: the listeners and their connections, config and certificate reloads, and the admin listener.

pub(crate) mod admin;
pub mod run;
pub mod server;
pub mod source;
