//! s3-signing-proxy: one origin through which many users reach many S3 buckets, safely.
//!
//! A request names a *logical locator*, `/{name}/{key}` (or `{name}.{base_domain}/{key}`). The
//! proxy maps it to an *integration* (a customer's bucket, prefix, region, endpoint and
//! credentials), never lets it out of that bucket and prefix, re-signs it with SigV4 using the
//! integration's credentials, and streams the bodies both ways.
//!
//! # Layout
//! One module a step, in the order a request meets them:
//!
//! - [`server`]: accepts connections; [`server::Proxy::handle`] runs the steps below in order
//!   and turns any error into an S3 XML response, once, with a logged request id.
//! - [`front_door`]: who is calling: anonymous, or a client whose SigV4 signature (header or
//!   presigned URL) the proxy verifies against the keys it issued; [`sigv2`] the same for
//!   S3's older signatures.
//! - [`route`]: which logical bucket, key and S3 operation the request names.
//! - [`integration`]: which integration and real bucket that is, and whether the caller may go
//!   there (this is where a request is authorised).
//! - [`credentials`]: the integration's keys: static, STS AssumeRole, or the proxy's own
//!   identity, cached and refreshed before expiry.
//! - [`sign`]: the upstream URL (addressing style, endpoint, prefix + key) and its SigV4
//!   signature (this is where a request is signed).
//! - [`documents`]: the XML documents that cross the jail (DeleteObjects and
//!   CompleteMultipartUpload bodies, listings and results) as typed values, with the
//!   integration's prefix added on the way up and stripped on the way down; [`xml`] parses and
//!   writes them, so no document is ever forwarded or edited as text.
//! - [`chunked`]: aws-chunked upload bodies, decoded and verified as they stream.
//! - [`forward`]: the pooled upstream client; bodies stream through here frame by frame.
//! - [`cors`]: preflights answered by the proxy, CORS headers per integration.
//! - [`guard`]: ambiguous or publishing headers refused, active content neutralised, upstream
//!   error documents stripped of signing material.
//! - [`error`]: the one error type and its S3 XML rendering.
//!
//! Around them: [`config`] parses the TOML file once into typed values, [`body`] is the body
//! type shared by all of the above, and [`demo`] runs the proxy in front of an embedded store.
//!
//! Operating it: [`run`] starts the listeners and reloads config and certificates,
//! [`tls`] holds the certificates, [`limits`] the rate limit and idle timeout, [`access`] writes
//! one log line per request and feeds [`metrics`], [`admin`] serves `/healthz`, `/readyz` and
//! `/metrics`, [`check`] probes every integration for `s3-signing-proxy check`, and
//! [`logging`] picks the log format.

pub mod access;
pub mod admin;
pub mod body;
pub mod check;
pub mod chunked;
pub mod config;
pub mod cors;
pub mod credentials;
pub mod demo;
pub mod documents;
pub mod error;
pub mod forward;
pub mod front_door;
pub mod fuzzing;
pub mod guard;
pub mod integration;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod route;
pub mod run;
pub mod server;
pub mod sign;
pub mod sigv2;
pub mod tls;
pub mod xml;

pub use config::Config;
pub use error::Error;
pub use server::Proxy;
