//! The digests a client sends for a body (`Content-MD5`, `x-amz-checksum-*`), computed as S3
//! computes them: base64 of the big-endian digest.
//!
//! Two callers: the aws-chunked decoder (`chunked`) checks a body's trailer as the body streams,
//! and the upstream phase checks every digest of a client document (DeleteObjects,
//! CompleteMultipartUpload) before parsing it, since the proxy sends a document of its own in
//! its place and a digest may be all the client's signature covers.

use sha2::Digest as _;

use crate::s3::error::Error;

/// The `x-amz-checksum-*` headers S3 knows, each a checksum of the body it comes with.
pub const CHECKSUM_HEADERS: [&str; 5] = [
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
];

/// A running digest of a body, named by the header that carries it.
pub enum BodyDigest {
    /// A CRC and its width in bytes.
    Crc(crc_fast::Digest, usize),
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl BodyDigest {
    /// The digest a header names (`content-md5` or one of [`CHECKSUM_HEADERS`], lower case).
    pub fn for_header(name: &str) -> Option<BodyDigest> {
        use crc_fast::CrcAlgorithm::{Crc32Iscsi, Crc32IsoHdlc, Crc64Nvme};
        Some(match name {
            "content-md5" => BodyDigest::Md5(md5::Md5::default()),
            "x-amz-checksum-crc32" => BodyDigest::Crc(crc_fast::Digest::new(Crc32IsoHdlc), 4),
            "x-amz-checksum-crc32c" => BodyDigest::Crc(crc_fast::Digest::new(Crc32Iscsi), 4),
            "x-amz-checksum-crc64nvme" => BodyDigest::Crc(crc_fast::Digest::new(Crc64Nvme), 8),
            "x-amz-checksum-sha1" => BodyDigest::Sha1(sha1::Sha1::default()),
            "x-amz-checksum-sha256" => BodyDigest::Sha256(sha2::Sha256::default()),
            _ => return None,
        })
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            BodyDigest::Crc(digest, _) => digest.update(data),
            BodyDigest::Md5(digest) => digest.update(data),
            BodyDigest::Sha1(digest) => digest.update(data),
            BodyDigest::Sha256(digest) => digest.update(data),
        }
    }

    /// The digest's bytes.
    fn bytes(&self) -> Vec<u8> {
        match self {
            BodyDigest::Crc(digest, width) => digest.finalize().to_be_bytes()[8 - width..].to_vec(),
            BodyDigest::Md5(digest) => digest.clone().finalize().to_vec(),
            BodyDigest::Sha1(digest) => digest.clone().finalize().to_vec(),
            BodyDigest::Sha256(digest) => digest.clone().finalize().to_vec(),
        }
    }

    /// The base64 value S3 puts in the header.
    pub fn finish(&self) -> String {
        aws_smithy_types::base64::encode(self.bytes())
    }

    /// Whether `sent` (a header's base64 value) is this digest. A value that is not the
    /// base64 of a digest of the right length is `InvalidDigest`, as S3 answers it.
    pub fn matches(&self, name: &'static str, sent: &str) -> Result<bool, Error> {
        let expected = self.bytes();
        let decoded = aws_smithy_types::base64::decode(sent.trim())
            .ok()
            .filter(|decoded| decoded.len() == expected.len())
            .ok_or(Error::InvalidDigest { header: name })?;
        Ok(decoded == expected)
    }
}

/// Checks every digest `headers` carry among `names` against `body`: a mismatch is
/// `BadDigest`. Returns how many were checked.
pub fn check_sent(
    headers: &http::HeaderMap,
    names: &[&'static str],
    body: &[u8],
) -> Result<usize, Error> {
    let mut checked = 0;
    for &name in names {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            continue;
        };
        let (Ok(sent), None) = (value.to_str(), values.next()) else {
            return Err(Error::InvalidDigest { header: name });
        };
        let mut digest = BodyDigest::for_header(name).ok_or_else(|| Error::Internal {
            detail: format!("{name} names no digest"),
        })?;
        digest.update(body);
        if !digest.matches(name, sent)? {
            return Err(Error::BadDigest { header: name });
        }
        checked += 1;
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const ALL: [&str; 6] = [
        "content-md5",
        "x-amz-checksum-crc32",
        "x-amz-checksum-crc32c",
        "x-amz-checksum-crc64nvme",
        "x-amz-checksum-sha1",
        "x-amz-checksum-sha256",
    ];

    #[test]
    fn known_values_match_and_other_bodies_do_not() {
        // Published values for "hello world": MD5 5eb63bbbe01eeed093cb22bb8f5acdc3,
        // CRC32 0x0d4a1185, SHA-1 2aae6c35c94fcfb415dbe95f408b9ce91ee846ed.
        let sent = headers(&[
            ("content-md5", "XrY7u+Ae7tCTyyK7j1rNww=="),
            ("x-amz-checksum-crc32", "DUoRhQ=="),
            ("x-amz-checksum-sha1", "Kq5sNclPz7QV2+lfQIuc6R7oRu0="),
        ]);
        assert_eq!(check_sent(&sent, &ALL, b"hello world").unwrap(), 3);
        let error = check_sent(&sent, &ALL, b"hello world!").unwrap_err();
        assert!(matches!(
            error,
            Error::BadDigest {
                header: "content-md5"
            }
        ));
        assert_eq!(check_sent(&headers(&[]), &ALL, b"x").unwrap(), 0);
    }

    #[test]
    fn every_digest_checks_its_own_value_and_refuses_a_flipped_bit() {
        let body = b"<Delete><Object><Key>a</Key></Object></Delete>";
        for name in ALL {
            let mut digest = BodyDigest::for_header(name).unwrap();
            digest.update(body);
            let value = digest.finish();
            assert_eq!(
                check_sent(&headers(&[(name, &value)]), &ALL, body).unwrap(),
                1
            );
            let mut other = body.to_vec();
            other[3] ^= 1;
            let error = check_sent(&headers(&[(name, &value)]), &ALL, &other).unwrap_err();
            assert!(matches!(error, Error::BadDigest { header } if header == name));
        }
    }

    #[test]
    fn values_that_are_not_a_digest_are_invalid_not_mismatched() {
        for bad in ["", "not base64!", "AAAA", "XrY7u+Ae7tCTyyK7j1rNww==AAAA"] {
            let error = check_sent(&headers(&[("content-md5", bad)]), &ALL, b"x").unwrap_err();
            assert!(matches!(error, Error::InvalidDigest { .. }), "{bad}");
        }
        let twice = headers(&[
            ("x-amz-checksum-crc32", "DUoRhQ=="),
            ("x-amz-checksum-crc32", "DUoRhQ=="),
        ]);
        assert!(matches!(
            check_sent(&twice, &ALL, b"hello world").unwrap_err(),
            Error::InvalidDigest { .. }
        ));
    }
}
