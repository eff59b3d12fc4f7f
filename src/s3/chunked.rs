//! aws-chunked upload bodies, decoded while they stream.
//!
//! SDKs send uploads as `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (every chunk signed, chained from
//! the request's signature), its `-TRAILER` variant, or `STREAMING-UNSIGNED-PAYLOAD-TRAILER`
//! (plain chunks and a checksum trailer). [`AwsChunked`] unwraps the framing frame by frame,
//! verifies each chunk signature and the trailer checksum (crc32, crc32c, crc64nvme, sha1,
//! sha256), and yields the object's bytes, which go upstream as a plain body of
//! `x-amz-decoded-content-length` bytes. Nothing is buffered beyond one framing line.
//!
//! A bad chunk must leave no object behind. Bytes are streamed before the chunk that carries
//! them is verified, so the decoder always withholds the body's last byte until everything has
//! verified: on any failure the upstream sees a body shorter than its Content-Length and drops
//! it. The body's error is the proxy's own [`Error`], so it travels in the upstream client's
//! error to the answer, which names S3's own code.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};

use crate::s3::body::{BoxError, ProxyBody};
use crate::s3::digest::BodyDigest;
use crate::s3::error::Error;

/// The longest chunk header or trailer line accepted.
const MAX_LINE: usize = 4096;
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What the request's verified signature gives chunk verification.
#[derive(Clone)]
pub struct ChunkSigning {
    pub signing_key: crate::s3::sigv4::SigningKey,
    pub time_text: String,
    pub scope: String,
    /// The request's own signature: the first chunk's "previous signature".
    pub seed_signature: String,
}

/// The signing key is derived from the client's secret: it never reaches a log.
impl std::fmt::Debug for ChunkSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSigning")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

enum State {
    /// Reading `size[;chunk-signature=…]\r\n`.
    ChunkHeader,
    Data {
        remaining: u64,
        signature: Option<String>,
    },
    /// The `\r\n` after a chunk's data.
    DataEnd,
    /// Trailer lines after the final chunk, until an empty line.
    Trailer,
    Done,
}

/// Decodes an aws-chunked body.
pub struct AwsChunked {
    inner: ProxyBody,
    buffer: BytesMut,
    state: State,
    signing: Option<ChunkSigning>,
    previous_signature: String,
    chunk_hash: Sha256,
    /// The trailer the client announced (`x-amz-trailer`) and its running checksum.
    checksum: Option<(&'static str, BodyDigest)>,
    trailers: Vec<(String, String)>,
    decoded: u64,
    expected: u64,
    /// The last byte emitted so far, withheld until everything has verified.
    held: Option<u8>,
}

impl AwsChunked {
    /// `signing` is `None` for unsigned chunks; `trailer` is the `x-amz-trailer` header.
    pub fn new(
        inner: ProxyBody,
        signing: Option<ChunkSigning>,
        trailer: Option<&str>,
        decoded_length: u64,
    ) -> Result<Self, Error> {
        let checksum = match trailer {
            None => None,
            Some(name) => {
                let name = name.trim().to_ascii_lowercase();
                let name = crate::s3::digest::CHECKSUM_HEADERS
                    .into_iter()
                    .find(|known| *known == name)
                    .ok_or_else(|| Error::InvalidRequest {
                        reason: format!("The trailer {name} is not a supported checksum"),
                    })?;
                let checksum = BodyDigest::for_header(name).ok_or_else(|| Error::Internal {
                    detail: format!("{name} names no digest"),
                })?;
                Some((name, checksum))
            }
        };
        Ok(AwsChunked {
            inner,
            buffer: BytesMut::new(),
            state: State::ChunkHeader,
            previous_signature: signing
                .as_ref()
                .map(|s| s.seed_signature.clone())
                .unwrap_or_default(),
            signing,
            chunk_hash: Sha256::new(),
            checksum,
            trailers: Vec::new(),
            decoded: 0,
            expected: decoded_length,
            held: None,
        })
    }

    /// Ends the body with `error`, which the exchange finds again in the upstream's failure.
    fn fail(&mut self, error: Error) -> BoxError {
        self.state = State::Done;
        Box::new(error)
    }

    /// Takes one line (without `\r\n`) from the buffer, if a whole one is there.
    fn take_line(&mut self) -> Result<Option<String>, Error> {
        match self.buffer.windows(2).position(|w| w == b"\r\n") {
            Some(at) => {
                let line = self.buffer.split_to(at);
                self.buffer.advance(2);
                String::from_utf8(line.to_vec())
                    .map(Some)
                    .map_err(|_| framing("a chunk header is not text"))
            }
            None if self.buffer.len() > MAX_LINE => Err(framing("a chunk header is too long")),
            None => Ok(None),
        }
    }

    fn chunk_signature(&self, chunk_hash: &str) -> Option<String> {
        let signing = self.signing.as_ref()?;
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{chunk_hash}",
            signing.time_text, signing.scope, self.previous_signature
        );
        Some(crate::s3::sigv4::hmac_hex(
            &signing.signing_key,
            string_to_sign.as_bytes(),
        ))
    }

    /// Checks a finished chunk's signature and moves the chain on.
    fn verify_chunk(&mut self, sent: Option<String>) -> Result<(), Error> {
        let hash = hex::encode(std::mem::take(&mut self.chunk_hash).finalize());
        if let Some(expected) = self.chunk_signature(&hash) {
            let sent = sent.ok_or_else(|| framing("a chunk has no signature"))?;
            if !crate::s3::sigv4::constant_time_eq(expected.as_bytes(), sent.as_bytes()) {
                return Err(Error::SignatureDoesNotMatch);
            }
            self.previous_signature = sent;
        }
        Ok(())
    }

    fn parse_chunk_header(&mut self, line: &str) -> Result<(), Error> {
        let (size, extension) = line.split_once(';').unwrap_or((line, ""));
        let size =
            u64::from_str_radix(size.trim(), 16).map_err(|_| framing("a chunk size is not hex"))?;
        let signature = extension
            .strip_prefix("chunk-signature=")
            .map(|s| s.trim().to_string());
        if size == 0 {
            self.verify_chunk(signature)?;
            self.state = State::Trailer;
        } else {
            self.state = State::Data {
                remaining: size,
                signature,
            };
        }
        Ok(())
    }

    /// After the last trailer line: the lengths, trailer signature and checksum must agree.
    fn finish(&mut self) -> Result<(), Error> {
        if self.decoded != self.expected {
            return Err(Error::IncompleteBody);
        }
        if let Some(signing) = &self.signing
            && self.checksum.is_some()
        {
            let canonical: String = self
                .trailers
                .iter()
                .filter(|(name, _)| name != "x-amz-trailer-signature")
                .map(|(name, value)| format!("{name}:{value}\n"))
                .collect();
            let string_to_sign = format!(
                "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
                signing.time_text,
                signing.scope,
                self.previous_signature,
                hex::encode(Sha256::digest(canonical.as_bytes()))
            );
            let expected =
                crate::s3::sigv4::hmac_hex(&signing.signing_key, string_to_sign.as_bytes());
            let sent = self
                .trailers
                .iter()
                .find(|(name, _)| name == "x-amz-trailer-signature")
                .map(|(_, value)| value.as_str())
                .unwrap_or_default();
            if !crate::s3::sigv4::constant_time_eq(expected.as_bytes(), sent.as_bytes()) {
                return Err(Error::SignatureDoesNotMatch);
            }
        }
        if let Some((name, checksum)) = &self.checksum {
            let sent = self
                .trailers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, value)| value.as_str())
                .ok_or_else(|| framing("the announced checksum trailer is missing"))?;
            if checksum.finish() != sent {
                return Err(Error::BadDigest { header: name });
            }
        }
        Ok(())
    }

    /// Emits `data`, holding back its last byte (and releasing the one held before).
    fn emit(&mut self, data: Bytes) -> Option<Bytes> {
        if data.is_empty() {
            return None;
        }
        let mut out = BytesMut::with_capacity(data.len());
        if let Some(byte) = self.held.take() {
            out.extend_from_slice(&[byte]);
        }
        out.extend_from_slice(&data[..data.len() - 1]);
        self.held = data.last().copied();
        (!out.is_empty()).then(|| out.freeze())
    }

    /// Advances the state machine on buffered bytes; `Ok(Some)` is a frame to yield,
    /// `Ok(None)` means more input is needed (or the body is done).
    fn step(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            match &mut self.state {
                State::ChunkHeader => match self.take_line()? {
                    Some(line) => self.parse_chunk_header(&line)?,
                    None => return Ok(None),
                },
                State::Data { remaining, .. } => {
                    if self.buffer.is_empty() {
                        return Ok(None);
                    }
                    let take = (*remaining).min(self.buffer.len() as u64) as usize;
                    *remaining -= take as u64;
                    let finished = *remaining == 0;
                    let data = self.buffer.split_to(take).freeze();
                    self.chunk_hash.update(&data);
                    if let Some((_, checksum)) = &mut self.checksum {
                        checksum.update(&data);
                    }
                    self.decoded += data.len() as u64;
                    if self.decoded > self.expected {
                        return Err(Error::IncompleteBody);
                    }
                    if finished {
                        let signature = match std::mem::replace(&mut self.state, State::DataEnd) {
                            State::Data { signature, .. } => signature,
                            _ => None,
                        };
                        self.verify_chunk(signature)?;
                    }
                    if let Some(frame) = self.emit(data) {
                        return Ok(Some(frame));
                    }
                }
                State::DataEnd => {
                    if self.buffer.len() < 2 {
                        return Ok(None);
                    }
                    if &self.buffer[..2] != b"\r\n" {
                        return Err(framing("a chunk does not end with CRLF"));
                    }
                    self.buffer.advance(2);
                    self.state = State::ChunkHeader;
                }
                State::Trailer => match self.take_line()? {
                    Some(line) if line.is_empty() => {
                        self.finish()?;
                        self.state = State::Done;
                        return Ok(self.held.take().map(|byte| Bytes::from(vec![byte])));
                    }
                    Some(line) => {
                        let (name, value) = line
                            .split_once(':')
                            .ok_or_else(|| framing("a trailer line has no `:`"))?;
                        self.trailers
                            .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                    }
                    None => return Ok(None),
                },
                State::Done => return Ok(None),
            }
        }
    }
}

fn framing(why: &str) -> Error {
    Error::InvalidRequest {
        reason: format!("Malformed aws-chunked body: {why}"),
    }
}

impl Body for AwsChunked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if matches!(this.state, State::Done) && this.buffer.is_empty() {
                return Poll::Ready(None);
            }
            match this.step() {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(None) if matches!(this.state, State::Done) => return Poll::Ready(None),
                Ok(None) => {}
                Err(error) => return Poll::Ready(Some(Err(this.fail(error)))),
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => {
                    let error = this.fail(Error::IncompleteBody);
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        // The Content-Length header frames the upstream body; a held byte makes any exact
        // figure here off by one.
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::collections::VecDeque;
    use std::time::{Duration, SystemTime};

    /// A body delivered in the given frames.
    struct Frames(VecDeque<Bytes>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    /// Splits `wire` into 7-byte frames, so lines and chunks straddle frame boundaries.
    fn framed(wire: &[u8]) -> ProxyBody {
        crate::s3::body::stream(Frames(wire.chunks(7).map(Bytes::copy_from_slice).collect()))
    }

    async fn decode(
        wire: &[u8],
        signing: Option<ChunkSigning>,
        trailer: Option<&str>,
        length: u64,
    ) -> (Result<Bytes, String>, Option<&'static str>) {
        let decoder = AwsChunked::new(framed(wire), signing, trailer, length).expect("decoder");
        match decoder.collect().await {
            Ok(collected) => (Ok(collected.to_bytes()), None),
            Err(error) => {
                let code = error.downcast_ref::<Error>().map(Error::code);
                (Err(error.to_string()), code)
            }
        }
    }

    #[tokio::test]
    async fn unsigned_chunks_with_a_checksum_trailer() {
        // crc32("hello world") = 0x0d4a1185
        let wire = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        let (decoded, code) = decode(wire, None, Some("x-amz-checksum-crc32"), 11).await;
        assert_eq!(decoded.as_deref().ok(), Some(&b"hello world"[..]));
        assert_eq!(code, None);

        let bad = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n";
        let (decoded, code) = decode(bad, None, Some("x-amz-checksum-crc32"), 11).await;
        assert!(decoded.is_err());
        assert_eq!(code, Some("BadDigest"));
    }

    #[tokio::test]
    async fn sha256_and_crc32c_trailers_verify() {
        let body = b"abc";
        let sha = aws_smithy_types::base64::encode(Sha256::digest(body));
        let wire = format!("3\r\nabc\r\n0\r\nx-amz-checksum-sha256:{sha}\r\n\r\n");
        let (decoded, _) = decode(wire.as_bytes(), None, Some("x-amz-checksum-sha256"), 3).await;
        assert_eq!(decoded.as_deref().ok(), Some(&b"abc"[..]));
        // crc32c("abc") = 0x364b3fb7
        let wire = "3\r\nabc\r\n0\r\nx-amz-checksum-crc32c:Nks/tw==\r\n\r\n";
        let (decoded, code) = decode(wire.as_bytes(), None, Some("x-amz-checksum-crc32c"), 3).await;
        assert_eq!((decoded.as_deref().ok(), code), (Some(&b"abc"[..]), None));
    }

    /// Signs chunks with aws-sigv4's own streaming signer, an implementation independent of
    /// the decoder's.
    fn signed_wire(chunks: &[&[u8]], seed: &str, time: SystemTime) -> Vec<u8> {
        let identity =
            aws_credential_types::Credentials::new("AKID", "secret", None, None, "t").into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(time)
            .settings(())
            .build()
            .expect("params");
        let mut previous = seed.to_string();
        let mut wire = Vec::new();
        for chunk in chunks.iter().chain(std::iter::once(&&b""[..])) {
            let signature =
                aws_sigv4::sign::v4::sign_chunk(&Bytes::copy_from_slice(chunk), &previous, &params)
                    .expect("sign")
                    .signature()
                    .to_string();
            wire.extend(format!("{:x};chunk-signature={signature}\r\n", chunk.len()).bytes());
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
            previous = signature;
        }
        wire
    }

    fn signing(time: SystemTime) -> ChunkSigning {
        ChunkSigning {
            signing_key: aws_sigv4::sign::v4::generate_signing_key(
                "secret",
                time,
                "us-east-1",
                "s3",
            )
            .as_ref()
            .try_into()
            .unwrap(),
            time_text: "20240102T030405Z".to_string(),
            scope: "20240102/us-east-1/s3/aws4_request".to_string(),
            seed_signature: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
                .to_string(),
        }
    }

    #[tokio::test]
    async fn signed_chunks_verify_and_a_tampered_one_is_refused_before_the_last_byte() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_164_645); // 2024-01-02T03:04:05Z
        let seed = signing(time).seed_signature;
        let wire = signed_wire(&[b"first chunk, ", b"second chunk"], &seed, time);
        let (decoded, code) = decode(&wire, Some(signing(time)), None, 25).await;
        assert_eq!(
            decoded.as_deref().ok(),
            Some(&b"first chunk, second chunk"[..])
        );
        assert_eq!(code, None);

        // One changed byte in the second chunk's data: its signature no longer matches.
        let mut tampered = wire.clone();
        let at = tampered
            .windows(6)
            .position(|w| w == b"second")
            .expect("second chunk");
        tampered[at] = b'S';
        let mut decoder =
            AwsChunked::new(framed(&tampered), Some(signing(time)), None, 25).expect("decoder");
        let mut passed = 0;
        let mut failure = None;
        while let Some(frame) = decoder.frame().await {
            match frame {
                Ok(frame) => passed += frame.into_data().map(|d| d.len()).unwrap_or(0),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        assert!(
            passed < 25,
            "the upstream never gets the whole body ({passed} bytes)"
        );
        assert_eq!(
            failure.and_then(|e| e.downcast_ref::<Error>().map(Error::code)),
            Some("SignatureDoesNotMatch")
        );
    }

    #[tokio::test]
    async fn truncated_or_overlong_bodies_are_refused() {
        let (decoded, code) = decode(b"5\r\nhel", None, None, 5).await;
        assert!(decoded.is_err());
        assert_eq!(code, Some("IncompleteBody"));
        let (decoded, code) = decode(b"5\r\nhello\r\n0\r\n\r\n", None, None, 4).await;
        assert!(decoded.is_err());
        assert_eq!(code, Some("IncompleteBody"));
    }
}
