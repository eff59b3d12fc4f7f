//! The S3 documents that cross the jail, as typed values.
//!
//! On the way up, a client's DeleteObjects and CompleteMultipartUpload bodies are parsed
//! ([`crate::s3::xml`]) into [`DeleteRequest`] and [`CompleteRequest`] under S3's schema — unknown
//! or repeated elements are `MalformedXML` — every key goes through the same check as a URL key
//! and gains the integration's prefix, and the proxy writes a fresh document from the values.
//!
//! On the way down, the store's answers (listings, multipart results, DeleteObjects results,
//! error documents sent with a 200) are parsed, their keys lose the prefix, the real bucket
//! becomes the logical one, and they are written anew ([`UpstreamDocument`]). A key outside the
//! prefix is never passed on: the whole answer is refused as an upstream fault.

mod client;
#[cfg(test)]
mod tests;
mod upstream;

pub use client::*;
pub use upstream::*;
