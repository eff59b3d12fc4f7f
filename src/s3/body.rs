//! The one body type responses and upstream requests use, so that a streamed upstream body and a
//! small proxy-made document (an S3 XML error) travel through the same `hyper` plumbing.
//!
//! Streaming bodies are boxed as they are: frames pass through one by one and nothing here ever
//! collects them. An error from the upstream mid-body stays an error, so `hyper` aborts the client
//! connection instead of ending a short body cleanly.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// Errors a body may yield while streaming (an upstream reset, a client disconnect).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed or small in-memory body.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A body with no bytes (HEAD responses, GET requests to the upstream).
pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A small body already in memory (error documents, demo pages).
pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Wraps a streaming body (an upstream response, a client upload) without buffering it.
pub fn stream<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// Reads a small body into memory, failing once it passes `max` bytes: only for the capped
/// XML documents the proxy must rewrite, never for object data.
pub async fn collect_capped(mut body: ProxyBody, max: usize) -> Result<Bytes, BoxError> {
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if collected.len() + data.len() > max {
                return Err(format!("document larger than {max} bytes").into());
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(collected))
}
