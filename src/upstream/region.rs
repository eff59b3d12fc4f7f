//! The upstream phase's first step for `region = "auto"` integrations: the bucket's region,
//! asked of the bucket once (HeadBucket's `x-amz-bucket-region`) and remembered across reloads.

use std::sync::Arc;

use crate::config::{DISCOVERY_REGION, Integration, Region};
use crate::request::integration::Target;
use crate::s3::error::Error;
use crate::s3::route::Operation;
use crate::upstream::exchange::{Signing, send_signed};
use crate::upstream::state::{Regions, State};

impl Regions {
    /// `target` with its integration's region known.
    pub async fn resolve(&self, state: &State, target: Target) -> Result<Target, Error> {
        if !target.integration.region_is_auto() {
            return Ok(target);
        }
        let endpoint = target
            .integration
            .endpoint
            .as_ref()
            .map(|e| e.url())
            .unwrap_or_default();
        let key = (endpoint, target.bucket.clone());
        let known = self.known.lock().ok().and_then(|r| r.get(&key).cloned());
        let region = match known {
            Some(region) => region,
            None => {
                // Boxed: discovery is rare, and its future would size every request's.
                let region = Box::pin(discover(state, &target)).await?;
                tracing::info!(integration = %target.integration.name, bucket = %target.bucket,
                    %region, "discovered the bucket's region");
                if let Ok(mut known) = self.known.lock() {
                    known.insert(key, region.clone());
                }
                region
            }
        };
        Ok(with_region(target, region))
    }
}

fn with_region(target: Target, region: String) -> Target {
    let mut integration = (*target.integration).clone();
    integration.region = Region::Named(region);
    Target {
        integration: Arc::new(integration),
        ..target
    }
}

/// Asks the bucket its region: a HeadBucket signed for us-east-1, whose answer (200, or the
/// 301/400/403 of a bucket elsewhere) carries `x-amz-bucket-region`.
pub async fn discover(state: &State, target: &Target) -> Result<String, Error> {
    let probe = with_region(
        Target {
            key: String::new(),
            ..target.clone()
        },
        DISCOVERY_REGION.to_string(),
    );
    let answer = send_signed(state, &probe, Signing::plain(Operation::HeadBucket, &[])).await?;
    let region = answer
        .response
        .headers()
        .get("x-amz-bucket-region")
        .and_then(|v| v.to_str().ok())
        .filter(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        .map(str::to_string);
    region.ok_or_else(|| {
        tracing::warn!(integration = %target.integration.name, status = answer.response.status().as_u16(),
            "the bucket did not name its region");
        Error::UpstreamUnreachable {
            integration: target.integration.name.clone(),
        }
    })
}

/// The region to use for `integration` in `bucket`: its own, or, for `auto`, the one the
/// state's cache knows or discovers ([`Regions::resolve`]).
pub async fn resolve_region(
    state: &State,
    integration: &Arc<Integration>,
    bucket: &str,
) -> Result<Arc<Integration>, Error> {
    let target = Target {
        integration: integration.clone(),
        bucket: bucket.to_string(),
        key: String::new(),
    };
    Ok(state.regions.resolve(state, target).await?.integration)
}
