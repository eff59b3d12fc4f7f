//! The front door for credentials that travel in a body or a cookie rather than in a request's
//! signature: signed policies (`crate::auth::policy`) and form uploads' POST policies.

use std::sync::Arc;
use std::time::SystemTime;

use super::{ALGORITHM, Authentication, Caller, Clients, Grant, Verified, parse_credential};
use crate::s3::error::Error;
use crate::s3::sigv4::{constant_time_eq, parse_amz_date};

impl Clients {
    /// The key id a form upload's fields claim (`x-amz-credential`'s first part, or SigV2's
    /// `awsaccesskeyid`), unverified: what a source that fetches clients on demand must fetch
    /// before [`Clients::identify_form`].
    pub fn claimed_form_key<'a>(field: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
        match field("x-amz-credential") {
            Some(credential) => credential.split_once('/').map(|(key, _)| key.to_string()),
            None => field("awsaccesskeyid").map(str::to_string),
        }
    }

    /// Verifies a form upload's policy signature (S3's POST Object): SigV4 over the encoded
    /// policy with the signing key of `x-amz-credential`'s scope, or SigV2 (`AWSAccessKeyId`,
    /// `signature`), compared in constant time. `field` gives a form field by its lower-case
    /// name. What the policy allows is checked by the form upload itself.
    pub fn identify_form<'a>(
        &self,
        field: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Verified, Error> {
        let bad = |why: &str| Error::InvalidArgument {
            reason: format!("The form upload {why}"),
        };
        let policy = field("policy").ok_or_else(|| bad("has no policy"))?;
        let (client, expected, presented) = match field("x-amz-algorithm") {
            Some(ALGORITHM) => {
                let (Some(credential), Some(time_text), Some(signature)) = (
                    field("x-amz-credential"),
                    field("x-amz-date"),
                    field("x-amz-signature"),
                ) else {
                    return Err(bad(
                        "needs x-amz-credential, x-amz-date and x-amz-signature fields",
                    ));
                };
                parse_amz_date(time_text).ok_or_else(|| bad("has a bad x-amz-date"))?;
                let (access_key_id, scope) = parse_credential(credential, time_text, |why| {
                    bad(&format!("x-amz-credential {why}"))
                })?;
                let client = self
                    .client(access_key_id)
                    .ok_or(Error::InvalidAccessKeyId)?;
                let expected = crate::auth::policy::signature(&client.signing_key(scope), policy);
                (client, expected, signature)
            }
            Some(_) => return Err(bad("signs with an algorithm other than AWS4-HMAC-SHA256")),
            None if !self.sigv2 => return Err(Error::SignatureVersionNotSupported),
            None => {
                let (Some(access_key_id), Some(signature)) =
                    (field("awsaccesskeyid"), field("signature"))
                else {
                    return Err(bad("is not signed"));
                };
                let client = self
                    .client(access_key_id)
                    .ok_or(Error::InvalidAccessKeyId)?;
                let expected =
                    crate::auth::sigv2::signature(client.secret_access_key.expose(), policy);
                (client, expected, signature)
            }
        };
        if !constant_time_eq(expected.as_bytes(), presented.as_bytes()) {
            return Err(Error::SignatureDoesNotMatch);
        }
        Ok(Verified {
            caller: Caller::Client(client.clone()),
            authentication: Authentication::Form,
            signed_headers: Vec::new(),
            chunk_signing: None,
            grant: None,
        })
    }

    /// Verifies a signed policy: the key id, the signature (constant time) and the policy's
    /// times. What it grants is checked against the route in the request phase.
    pub(super) fn identify_policy(
        &self,
        presented: crate::auth::policy::Presented,
        in_query: bool,
        now: SystemTime,
    ) -> Result<Verified, Error> {
        let client = self
            .client(&presented.key_id)
            .ok_or(Error::InvalidAccessKeyId)?;
        let expected = crate::auth::policy::signature(&client.policy_key, &presented.policy);
        if !constant_time_eq(expected.as_bytes(), presented.signature.as_bytes()) {
            return Err(Error::SignatureDoesNotMatch);
        }
        let policy = crate::auth::policy::parse(&presented.policy)?;
        policy.check_time(now)?;
        Ok(Verified {
            caller: Caller::Client(client.clone()),
            authentication: Authentication::Policy,
            signed_headers: Vec::new(),
            chunk_signing: None,
            grant: Some(Arc::new(Grant {
                policy,
                presented,
                in_query,
            })),
        })
    }
}
