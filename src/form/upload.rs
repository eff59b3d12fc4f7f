//! Storing a form's file: its length is known only at its closing boundary, so the file is
//! read into one part buffer at a time. A file that fits one buffer is a PutObject; a larger
//! one a multipart upload of buffer-sized parts, aborted if the client goes away or the size
//! leaves the policy's range. Memory stays one buffer per upload, whatever the file's size.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, header};

use crate::form::reader::FormReader;
use crate::net::budget::Held;
use crate::request::integration::Target;
use crate::s3::body;
use crate::s3::documents::{CompleteRequest, CompletedPart};
use crate::s3::error::Error;
use crate::s3::route::Operation;
use crate::upstream::exchange::{Signing, send_signed};
use crate::upstream::state::State;

/// The size of a part buffer: above S3's 5 MiB smallest part.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Files up to this size are buffered as they come; a larger one gets a whole part buffer.
const SMALL_FILE: usize = 1024 * 1024;
/// Room for the last piece that fills a part (a piece is at most one body frame).
const PIECE_SLACK: usize = 1024 * 1024;

/// Where a file goes and what it must be.
pub struct Destination<'a> {
    pub state: &'a State,
    pub target: &'a Target,
    /// The object's headers (type, metadata, caching) for PutObject or CreateMultipartUpload.
    pub headers: HeaderMap,
    /// The policy's `content-length-range`.
    pub range: (u64, u64),
    /// The store's last answer to this upload, for the access line.
    pub answered: std::sync::Mutex<StoreAnswer>,
}

/// What the store last answered an upload's request: its status, its error code, its request
/// id (as the access line shows them for any request).
#[derive(Default, Clone)]
pub struct StoreAnswer {
    pub status: Option<u16>,
    pub code: Option<String>,
    pub request_id: Option<String>,
}

impl Destination<'_> {
    fn answered(&self, answer: StoreAnswer) {
        if let Ok(mut last) = self.answered.lock() {
            *last = answer;
        }
    }

    /// The store's last answer (none if it was never asked).
    pub fn last_answer(&self) -> StoreAnswer {
        self.answered
            .lock()
            .map(|last| last.clone())
            .unwrap_or_default()
    }
}

/// Stores the file the reader is at; returns its ETag.
pub async fn store(
    destination: &Destination<'_>,
    reader: &mut FormReader,
) -> Result<String, Error> {
    let mut received = 0u64;
    let (first, held) = fill(destination, reader, &mut received).await?;
    if first.len() < PART_BYTES {
        check_minimum(received, destination.range)?;
        return put_object(destination, first.freeze()).await;
    }
    let upload_id = create(destination).await?;
    let first = (first, held);
    let parts = upload_parts(destination, reader, &upload_id, first, &mut received).await;
    let outcome = match parts {
        Ok(parts) => match check_minimum(received, destination.range) {
            Ok(()) => complete(destination, &upload_id, parts).await,
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    if outcome.is_err() {
        abort(destination, &upload_id).await;
    }
    outcome
}

/// Reads up to one part buffer of the file, its memory charged to the body budget
/// ([`crate::net::budget`]) before it is allocated and until the part has been sent.
async fn fill(
    destination: &Destination<'_>,
    reader: &mut FormReader,
    received: &mut u64,
) -> Result<(BytesMut, Held), Error> {
    let mut held = destination.state.upstream.budget().hold();
    let mut buffer = BytesMut::new();
    while buffer.len() < PART_BYTES {
        let Some(piece) = reader.file_piece().await? else {
            break;
        };
        *received += piece.len() as u64;
        if *received > destination.range.1 {
            return Err(Error::EntityTooLarge);
        }
        let needed = buffer.len() + piece.len();
        if needed > buffer.capacity() && needed > SMALL_FILE {
            // Past a small file, sized once for a whole part: growing by doubling would reach
            // twice a part.
            held.cover(PART_BYTES + PIECE_SLACK)
                .await
                .map_err(budget_closed)?;
            buffer.reserve(PART_BYTES + PIECE_SLACK - buffer.len());
        } else {
            held.cover(needed.max(buffer.capacity()))
                .await
                .map_err(budget_closed)?;
        }
        buffer.extend_from_slice(&piece);
    }
    Ok((buffer, held))
}

fn budget_closed(error: crate::s3::body::BoxError) -> Error {
    Error::Internal {
        detail: format!("the body budget: {error}"),
    }
}

fn check_minimum(received: u64, range: (u64, u64)) -> Result<(), Error> {
    if received < range.0 {
        return Err(Error::EntityTooSmall);
    }
    Ok(())
}

/// The parts after the first, each uploaded as soon as its buffer is full.
async fn upload_parts(
    destination: &Destination<'_>,
    reader: &mut FormReader,
    upload_id: &str,
    first: (BytesMut, Held),
    received: &mut u64,
) -> Result<Vec<CompletedPart>, Error> {
    let mut parts = Vec::new();
    let (mut buffer, mut held) = first;
    loop {
        let part_number = parts.len() as u32 + 1;
        let etag = upload_part(destination, upload_id, part_number, buffer.freeze()).await?;
        drop(held);
        parts.push(CompletedPart {
            part_number,
            etag,
            checksums: Vec::new(),
        });
        (buffer, held) = fill(destination, reader, received).await?;
        if buffer.is_empty() {
            return Ok(parts);
        }
    }
}

fn length_headers(mut headers: HeaderMap, length: usize) -> HeaderMap {
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers
}

async fn put_object(destination: &Destination<'_>, bytes: Bytes) -> Result<String, Error> {
    let headers = length_headers(destination.headers.clone(), bytes.len());
    let answer = send(destination, Operation::PutObject, &[], headers, bytes).await?;
    etag_of(answer.headers())
}

async fn create(destination: &Destination<'_>) -> Result<String, Error> {
    let query = [("uploads".to_string(), String::new())];
    let headers = destination.headers.clone();
    let answer = send(
        destination,
        Operation::CreateMultipartUpload,
        &query,
        headers,
        Bytes::new(),
    )
    .await?;
    let document = read_document(answer).await?;
    child_text(&document, "InitiateMultipartUploadResult", "UploadId")
}

async fn upload_part(
    destination: &Destination<'_>,
    upload_id: &str,
    part_number: u32,
    bytes: Bytes,
) -> Result<String, Error> {
    let query = [
        ("partNumber".to_string(), part_number.to_string()),
        ("uploadId".to_string(), upload_id.to_string()),
    ];
    let headers = length_headers(HeaderMap::new(), bytes.len());
    let answer = send(destination, Operation::UploadPart, &query, headers, bytes).await?;
    etag_of(answer.headers())
}

async fn complete(
    destination: &Destination<'_>,
    upload_id: &str,
    parts: Vec<CompletedPart>,
) -> Result<String, Error> {
    let query = [("uploadId".to_string(), upload_id.to_string())];
    let document = Bytes::from(CompleteRequest { parts }.to_xml());
    let mut headers = length_headers(HeaderMap::new(), document.len());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    let answer = send(
        destination,
        Operation::CompleteMultipartUpload,
        &query,
        headers,
        document,
    )
    .await?;
    // S3 may answer 200 and still fail, with an `<Error>` document.
    let document = read_document(answer).await?;
    child_text(&document, "CompleteMultipartUploadResult", "ETag")
}

/// Aborts a multipart upload the form could not finish; a failure is logged, as the store's
/// lifecycle rules are the last resort for it.
async fn abort(destination: &Destination<'_>, upload_id: &str) {
    let query = [("uploadId".to_string(), upload_id.to_string())];
    let sent = send(
        destination,
        Operation::AbortMultipartUpload,
        &query,
        HeaderMap::new(),
        Bytes::new(),
    )
    .await;
    if let Err(error) = sent {
        tracing::warn!(%error, "aborting a form upload's multipart upload failed");
    }
}

/// Sends one request of the upload; a store's refusal becomes an error, and a refusal of the
/// proxy's own credentials drops them as any request's does.
async fn send(
    destination: &Destination<'_>,
    operation: Operation,
    query: &[(String, String)],
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<http::Response<body::ProxyBody>, Error> {
    let mut signing = Signing::plain(operation, query);
    signing.parts.client_headers = headers;
    signing.parts.body = body::full(bytes);
    let answer = send_signed(destination.state, destination.target, signing).await?;
    let response = answer.response;
    let status = response.status();
    let request_id = crate::response::respond::store_request_id(response.headers());
    if status.is_success() {
        destination.answered(StoreAnswer {
            status: Some(status.as_u16()),
            code: None,
            request_id,
        });
        return Ok(response);
    }
    let code = read_document(response)
        .await
        .ok()
        .and_then(|document| {
            document
                .children
                .iter()
                .find(|child| child.name == "Code")
                .map(|code| code.text.clone())
        })
        .unwrap_or_default();
    destination.answered(StoreAnswer {
        status: Some(status.as_u16()),
        code: Some(code.clone()),
        request_id,
    });
    if crate::response::upstream_error::is_credentials_code(&code) {
        let (state, target) = (destination.state, destination.target);
        tracing::warn!(integration = %target.integration.name, %code,
            "the upstream refused the proxy's credentials");
        crate::response::respond::credentials_refused(
            state,
            &target.integration,
            &target.bucket,
            &code,
        )
        .await;
        return Err(Error::UpstreamRefusedCredentials {
            integration: target.integration.name.clone(),
        });
    }
    Err(refused_by_store(status, &code))
}

fn refused_by_store(status: http::StatusCode, code: &str) -> Error {
    match status {
        http::StatusCode::FORBIDDEN => Error::AccessDenied {
            reason: format!("The store refused the upload ({code})"),
        },
        _ => Error::Internal {
            detail: format!("the store answered a form upload step with {status} {code}"),
        },
    }
}

async fn read_document(
    response: http::Response<body::ProxyBody>,
) -> Result<crate::s3::xml::Element, Error> {
    let bytes = body::collect_capped(response.into_body(), crate::s3::xml::MAX_DOCUMENT)
        .await
        .map_err(|error| Error::Internal {
            detail: format!("reading the store's answer to a form upload: {error}"),
        })?;
    crate::s3::xml::parse(&bytes).map_err(|error| Error::Internal {
        detail: format!("the store's answer to a form upload is not XML: {error:?}"),
    })
}

fn child_text(
    document: &crate::s3::xml::Element,
    root: &str,
    child: &str,
) -> Result<String, Error> {
    if document.name != root {
        return Err(Error::Internal {
            detail: format!(
                "the store answered <{}> where <{root}> was due",
                document.name
            ),
        });
    }
    document
        .children
        .iter()
        .find(|element| element.name == child)
        .map(|element| element.text.clone())
        .ok_or_else(|| Error::Internal {
            detail: format!("the store's <{root}> has no <{child}>"),
        })
}

fn etag_of(headers: &HeaderMap) -> Result<String, Error> {
    headers
        .get(header::ETAG)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| Error::Internal {
            detail: "the store's answer to a form upload has no ETag".to_string(),
        })
}
