//! Who is calling: the front door verifies SigV4 (and, where allowed, SigV2) signatures against the keys the proxy issued, presigned URLs, signed-policy cookies and POST policies.

pub mod front_door;
pub mod policy;
pub(crate) mod sigv2;
