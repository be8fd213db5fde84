//! The names the webhook reads and writes: AWS's annotations, label, volumes and paths, and
//! Keyless's own annotations.
//!
//! <https://github.com/aws/amazon-eks-pod-identity-webhook#eks-walkthrough> (the annotations),
//! <https://docs.aws.amazon.com/eks/latest/userguide/pod-id-how-it-works.html> (Pod Identity).

/// The prefix of AWS's annotations.
pub const EKS_PREFIX: &str = "eks.amazonaws.com/";
/// The prefix of Keyless's annotations.
pub const KEYLESS_PREFIX: &str = "keyless.dev/";

/// Service account: the role its pods assume with their web-identity token.
pub const ROLE_ARN: &str = "eks.amazonaws.com/role-arn";
/// Service account: the token's audience.
pub const AUDIENCE: &str = "eks.amazonaws.com/audience";
/// Service account: `true` or `false`, whether pods use the regional STS endpoint.
pub const STS_REGIONAL_ENDPOINTS: &str = "eks.amazonaws.com/sts-regional-endpoints";
/// Service account and pod (the pod's wins): the token's lifetime in seconds.
pub const TOKEN_EXPIRATION: &str = "eks.amazonaws.com/token-expiration";
/// Pod: comma-separated names of containers to leave alone.
pub const SKIP_CONTAINERS: &str = "eks.amazonaws.com/skip-containers";
/// Pod label: leave the whole pod alone (the webhook configuration's object selector).
pub const SKIP_LABEL: &str = "eks.amazonaws.com/skip-pod-identity-webhook";
/// Pod label set on pods given container credentials, as AWS's webhook sets it.
pub const POD_IDENTITY_LABEL: &str = "eks.amazonaws.com/pod-identity";

/// Service account or namespace (the service account's wins): the STS endpoint pods are sent to.
pub const STS_ENDPOINT_ANNOTATION: &str = "keyless.dev/sts-endpoint";
/// Service account or namespace (the service account's wins): the S3 endpoint pods are sent to.
pub const S3_ENDPOINT_ANNOTATION: &str = "keyless.dev/s3-endpoint";

/// The audience of web-identity tokens by default.
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
/// The audience of container-credentials tokens (fixed, as on EKS).
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";
/// The token lifetime by default, in seconds.
pub const DEFAULT_TOKEN_EXPIRATION: i64 = 86_400;
/// The shortest token lifetime Kubernetes projects, in seconds.
pub const MIN_TOKEN_EXPIRATION: i64 = 600;
/// The longest `expirationSeconds` the API server accepts (2^32 s).
pub const MAX_TOKEN_EXPIRATION: i64 = 1 << 32;

/// The web-identity token's volume.
pub const IRSA_VOLUME: &str = "aws-iam-token";
/// Where the web-identity token's volume is mounted by default.
pub const IRSA_MOUNT_PATH: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
/// The web-identity token's file name in its volume.
pub const IRSA_TOKEN_FILE: &str = "token";
/// The container-credentials token's volume.
pub const POD_IDENTITY_VOLUME: &str = "eks-pod-identity-token";
/// Where the container-credentials token's volume is mounted.
pub const POD_IDENTITY_MOUNT_PATH: &str = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
/// The container-credentials token's file name in its volume.
pub const POD_IDENTITY_TOKEN_FILE: &str = "eks-pod-identity-token";
/// The container credentials endpoint by default: the EKS Pod Identity agent's address.
pub const DEFAULT_CONTAINER_CREDENTIALS_URI: &str = "http://169.254.170.23/v1/credentials";
/// The CA bundle's volume.
pub const CA_VOLUME: &str = "keyless-ca-bundle";
/// Where the CA bundle's volume is mounted.
pub const CA_MOUNT_PATH: &str = "/var/run/secrets/keyless.dev/ca";
