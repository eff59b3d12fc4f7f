//! What the request phase tells an observer as it goes: nothing on the hot path (`()`
//! observes nothing, and compiles to nothing), each step's decision for `explain`, which
//! runs the request phase itself rather than a copy of its sequence.

use http::{HeaderMap, Method, Uri};

use crate::auth::front_door::Verified;
use crate::request::integration::Target;
use crate::s3::error::Error;
use crate::s3::route::Route;

/// The request phase's steps, in the order a request meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The target's length, the head's size, and the shapes refused whatever the route.
    Shape,
    /// The operation, name and key.
    Route,
    /// A CORS preflight, answered from the integration's rules.
    Preflight,
    /// A form upload, handed to the form module (its caller is in its body).
    Form,
    /// Who the caller is (a signature, a presigned URL, a signed policy, or nobody).
    FrontDoor,
    /// What a signed policy allows.
    Policy,
    /// The caller's rate limit.
    Rate,
    /// ListBuckets, and CreateBucket of a name no integration knows.
    Service,
    /// The integration, and whether the caller may do this there.
    Integration,
    /// What the integration's config answers before the region is known.
    Config,
    /// A signed policy's session: the proxy sets its cookies.
    Session,
    /// The headers the integration's rules govern.
    Guard,
}

/// The request head a step read (the front door's view of a signature is computed from it).
#[derive(Clone, Copy)]
pub struct Head<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
}

/// Told each step's decision. Every method does nothing unless overridden.
pub trait Observer {
    /// `step` let the request on.
    fn passed(&mut self, _step: Step) {}
    /// `step` refused the request: the client's answer is `error`.
    fn refused(&mut self, _step: Step, _error: &Error) {}
    /// The proxy answers the request itself at `step`; the store is never asked.
    fn answered(&mut self, _step: Step) {}
    /// The route found.
    fn routed(&mut self, _route: &Route) {}
    /// The front door's decision, with the head it read.
    fn front_door(&mut self, _head: Head<'_>, _caller: Result<&Verified, &Error>) {}
    /// The integration and object the caller may reach.
    fn resolved(&mut self, _route: &Route, _verified: &Verified, _target: &Target) {}
}

/// The hot path's observer: sees nothing.
impl Observer for () {}

/// Reports `result`'s refusal, if it is one, at `step`, and passes it on.
pub(crate) fn observed<T, O: Observer>(
    observer: &mut O,
    step: Step,
    result: Result<T, Error>,
) -> Result<T, Error> {
    if let Err(error) = &result {
        observer.refused(step, error);
    }
    result
}
