//! s3-signing-proxy: one origin through which many users reach many S3 buckets, safely.
//!
//! A request names a *logical locator*, `/{name}/{key}` (or `{name}.{base_domain}/{key}`). The
//! proxy maps it to an *integration* (a customer's bucket, prefix, region, endpoint and
//! credentials), never lets it out of that bucket and prefix, re-signs it with SigV4 using the
//! integration's credentials, and streams the bodies both ways.
//!
//! # Layout
//! The folders are the phases a request goes through, each depending only on those below it:
//!
//! - [`ops`] runs the proxy: listeners, connections, reloads, the admin listener;
//! - [`tools`] are the operator's `check` and `explain`, which run the real phases;
//! - `proxy` holds [`Proxy::handle`], which runs a request through the phases below and
//!   turns any error into an S3 XML response, once, with a logged request id;
//! - [`form`] is the browser's POST upload, a request of its own kind;
//! - `response`: the store's answer made safe (error documents rebuilt, result documents
//!   taken out of the integration, protective headers);
//! - [`upstream`]: the loaded state, the bucket's region, the body plan, credentials, the
//!   upstream signature and the pooled client that streams bodies both ways;
//! - [`request`]: the request phase, decided from the request alone (shape, route, CORS, the
//!   caller, the rate limit, the integration and whether the caller may go there); nothing
//!   there reaches the store;
//! - [`auth`]: who is calling (SigV4 and SigV2 signatures, presigned URLs, signed policies);
//! - [`net`] and [`observe`]: connection limits, the client's address, the body memory budget;
//!   the access line, the log formats and the metrics;
//! - [`s3`]: S3's protocol with no notion of tenants (bodies, errors, XML, SigV4 maths,
//!   digests, aws-chunked, documents, routes);
//! - [`config`]: the TOML file parsed once into typed values, and the certificates.
//!
//! Behind opt-in cargo features, so a release build carries neither, `lab` holds the demo
//! (the proxy in front of an embedded store; README's demo command turns it on) and the
//! harnesses the fuzz targets and corpus tests call (`scripts/test` turns on both).

#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod form;
#[cfg(any(feature = "demo", feature = "fuzzing"))]
pub mod lab;
pub mod net;
pub mod observe;
pub mod ops;
mod proxy;
pub mod request;
mod response;
pub mod s3;
pub mod tools;
pub mod upstream;

pub use config::Config;
pub use proxy::Proxy;
pub use s3::error::Error;
