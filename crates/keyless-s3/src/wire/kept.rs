//! What the error bodies need of a request that s3s has taken: its method, URI and headers,
//! copied before the request goes in.

use http::{HeaderMap, Method, Uri};

/// What is kept of a request before s3s takes it, for its error body.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
}

impl Kept {
    pub(crate) fn of<B>(req: &http::Request<B>) -> Self {
        Self {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        }
    }
}
