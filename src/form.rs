//! Form uploads: S3's POST Object, a browser posting a file with a signed policy.

pub mod conditions;
pub mod multipart;
