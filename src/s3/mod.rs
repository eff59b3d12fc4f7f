//! S3's protocol, with no notion of tenants: the body type, the one error type and its XML, XML reading and writing, SigV4 maths, digests, aws-chunked bodies, the client's and the store's documents as typed values, and the route (which logical bucket, key and operation a request names).

pub mod body;
pub(crate) mod chunked;
pub(crate) mod digest;
pub(crate) mod documents;
pub(crate) mod error;
pub mod route;
pub(crate) mod sigv4;
pub(crate) mod xml;
