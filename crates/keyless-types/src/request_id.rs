//! `RequestId`: the id of one request, made once where the request enters the server and
//! carried in the request's and the response's extensions, so that every response (S3, IAM,
//! STS) and every log line of that request name the same id.
//!
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/RESTCommonResponseHeaders.html>

use std::sync::Arc;

/// A request's id (`x-amz-request-id` on S3, `x-amzn-RequestId` and `<RequestId>` on IAM and
/// STS). Cheap to clone; made by `keyless_iam::ids::request_id`, where the randomness is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// Wraps an id already made.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RequestId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_its_text() {
        let id = RequestId::new("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        assert_eq!(id.as_str(), "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        assert_eq!(id.to_string(), id.as_str());
        assert_eq!(id.clone(), id);
    }
}
