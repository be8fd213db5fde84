//! Gateway mode: Keyless in front of an existing S3-compatible store (Ceph RGW, Garage, MinIO,
//! AWS). Keyless does SigV4, IAM, STS and bucket policies; the upstream keeps the bytes, reached
//! with Keyless's own key pair. [`UpstreamStore`] is the third implementation of the
//! `ObjectStore` seam, beside the in-memory double and the disk store.

mod body;
mod client;
mod meta;
mod store;
mod xml;

pub use client::{ConfigError, UpstreamConfig, UpstreamObserver, client_tls};
pub use meta::BucketMeta;
pub use store::UpstreamStore;
