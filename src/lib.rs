//! s3-signing-proxy: one origin through which many users reach many S3 buckets, safely.
//!
//! A request names a *logical locator*, `/{name}/{key}` (or `{name}.{base_domain}/{key}`). The
//! proxy maps it to an *integration* (a customer's bucket, prefix, region, endpoint and
//! credentials), never lets it out of that bucket and prefix, re-signs it with SigV4 using the
//! integration's credentials, and streams the bodies both ways.
//!
//! # Layout
//! [`server`] accepts connections; [`proxy::Proxy::handle`] runs a request through three
//! phases, each a call into its own module, and turns any error into an S3 XML response, once,
//! with a logged request id:
//!
//! - **request phase**, [`admit`]: [`shape`] (request shapes), [`route`] (which logical
//!   bucket, key and S3 operation), [`cors`] (preflights), [`front_door`] (who is calling:
//!   anonymous, or a client whose SigV4 signature the proxy verifies against the keys it
//!   issued; [`sigv2`] the same for S3's older signatures), the rate limit ([`limits`]),
//!   [`integration`] (which integration and real bucket, and whether the caller may go
//!   there: this is where a request is authorised), and [`answers`] the proxy gives itself;
//! - **upstream phase**, [`region`] and [`exchange`]: the bucket's region, the body plan
//!   ([`chunked`] aws-chunked bodies decoded and verified as they stream; [`documents`] the
//!   client's XML bodies as typed values, written anew by [`xml`], after [`digest`] has
//!   checked every digest the client sent for them; [`budget`] the memory upload bodies may
//!   hold on their way to the store), [`credentials`] (static,
//!   STS AssumeRole or the proxy's own identity, cached), [`sign`] (the upstream URL and its
//!   SigV4 signature) and [`forward`] (the pooled upstream client, bodies streamed frame by
//!   frame);
//! - **response phase**, [`respond`]: upstream errors rebuilt from their code ([`upstream_error`]),
//!   response headers that keep objects from acting as the origin's pages ([`protect`]),
//!   result documents taken out of the integration ([`documents`]), everything else streamed.
//!
//! [`state`] is one loaded configuration; [`error`] the one error type and its S3 XML.
//!
//! Around them: [`config`] parses the TOML file once into typed values, and [`body`] is the
//! body type shared by all of the above. Behind opt-in cargo features, so a release build
//! carries neither: `demo` runs the proxy in front of an embedded store (s3s-fs; README's demo
//! command turns it on), and `fuzzing` holds the harnesses the fuzz targets and corpus tests
//! call (`scripts/test` turns on both).
//!
//! Operating it: [`run`] starts the listeners and reloads config and certificates,
//! [`tls`] holds the certificates, [`proxy_protocol`] reads a balancer's PROXY header,
//! [`peer`] finds the client's address behind trusted balancers, [`limits`] the rate limit
//! and idle timeout, [`access`] writes one log line per request and feeds [`metrics`],
//! [`admin`] serves `/healthz`, `/readyz`, `/integrations` and `/metrics`, [`check`] probes
//! every integration for `s3-signing-proxy check`, and [`logging`] picks the log format.

#![warn(missing_docs)]

mod access;
mod admin;
mod admit;
mod answers;
pub mod body;
mod budget;
pub mod check;
mod chunked;
pub mod config;
mod cors;
mod credentials;
mod cut;
#[cfg(feature = "demo")]
pub mod demo;
mod digest;
mod documents;
mod error;
mod exchange;
pub mod explain;
pub mod form;
mod forward;
pub mod front_door;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod integration;
pub mod limits;
pub mod logging;
mod metrics;
mod peer;
pub mod policy;
mod protect;
mod proxy;
mod proxy_protocol;
mod region;
mod respond;
pub mod route;
pub mod run;
pub mod server;
mod session;
mod shape;
pub mod sign;
mod sigv2;
mod sigv4;
mod state;
mod tenants;
pub mod tls;
mod upstream_error;
mod xml;

pub use config::Config;
pub use error::Error;
pub use proxy::Proxy;
