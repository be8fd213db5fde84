//! The command line: subcommands and their flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// IAM roles for S3-compatible object storage, self-hosted.
///
/// Keyless checks AWS SigV4 and evaluates AWS IAM JSON policies on every request, so that
/// workloads reach buckets through roles instead of stored access keys.
#[derive(Debug, Parser)]
#[command(name = "keyless", version, about, long_about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the S3 endpoint on the embedded default: objects on local disk, metadata in redb.
    ///
    /// On first start the data folder gets the root user's key pair, in an AWS shared
    /// credentials file (mode 0600) that awscli, boto3 and the SDKs read as is. Set
    /// KEYLESS_ROOT_ACCESS_KEY_ID and KEYLESS_ROOT_SECRET_ACCESS_KEY to choose it instead.
    Serve(ServeArgs),
    /// Check and simulate IAM policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Decide requests against policies, like `aws iam simulate-custom-policy`.
    ///
    /// Either give the same JSON that `aws iam simulate-custom-policy --cli-input-json` takes
    /// (and get the JSON awscli prints), or describe the case with flags (and get an answer that
    /// says why). Flags add to what the JSON file holds.
    ///
    /// Examples:
    ///
    ///   keyless policy simulate --cli-input-json file://request.json
    ///
    ///   keyless policy simulate --policy role.json --action s3:GetObject \
    ///       --resource arn:aws:s3:::gitlab-registry/docker/x --context aws:SourceIp=ip:10.1.2.3
    ///
    ///   keyless policy simulate --policy-arn arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess \
    ///       --action s3:PutObject --resource arn:aws:s3:::backups/x
    #[command(verbatim_doc_comment)]
    Simulate(Box<SimulateArgs>),
    /// Check that policy documents are valid, naming the place of any mistake.
    Check(CheckArgs),
    /// List the AWS managed policies Keyless knows, or print one's document.
    Managed {
        /// A managed policy's name or ARN, such as `AmazonS3FullAccess`; lists all when absent.
        name: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9000", value_name = "ADDR")]
    pub(crate) listen: std::net::SocketAddr,

    /// A TOML file declaring IAM users, policies and buckets to create at start.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Folder for objects, metadata and the root credentials; created if absent.
    #[arg(long, default_value = "keyless-data", value_name = "DIR")]
    pub(crate) data_dir: PathBuf,

    /// TLS certificate chain (PEM); with --tls-key, the endpoint speaks HTTPS. Reloaded when
    /// the file changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,

    /// A domain for virtual-hosted-style addressing (`BUCKET.DOMAIN`); repeat for several.
    /// Path-style addressing always works.
    #[arg(long, value_name = "DOMAIN")]
    pub(crate) domain: Vec<String>,

    /// Region reported as the buckets' location.
    #[arg(long, default_value = "us-east-1")]
    pub(crate) region: String,

    /// The account id of this server's principals (12 digits).
    #[arg(long, default_value = "000000000000", value_parser = parse_account)]
    pub(crate) account_id: String,
}

fn parse_account(s: &str) -> Result<String, String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_owned())
    } else {
        Err(format!("`{s}` is not a 12-digit account id"))
    }
}

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// The SimulateCustomPolicy request as JSON text, or `file://PATH` to read it from a file.
    #[arg(long, value_name = "JSON|file://PATH")]
    pub(crate) cli_input_json: Option<String>,

    /// An identity-based policy: a file path, `file://PATH`, or the JSON text itself.
    #[arg(long = "policy", value_name = "FILE|JSON")]
    pub(crate) policies: Vec<String>,

    /// An AWS managed policy by ARN, such as arn:aws:iam::aws:policy/AmazonS3FullAccess.
    #[arg(long = "policy-arn", value_name = "ARN")]
    pub(crate) policy_arns: Vec<String>,

    /// A permissions boundary policy (file path, `file://PATH` or JSON text).
    #[arg(long = "boundary", value_name = "FILE|JSON")]
    pub(crate) boundaries: Vec<String>,

    /// The resource's own policy, such as a bucket policy (needs --caller-arn).
    #[arg(long, value_name = "FILE|JSON")]
    pub(crate) resource_policy: Option<String>,

    /// The caller, matched against the resource policy's Principal.
    #[arg(long, value_name = "ARN")]
    pub(crate) caller_arn: Option<String>,

    /// The account that owns the resource (`arn:aws:iam::ACCOUNT:root` or the id).
    #[arg(long, value_name = "ARN")]
    pub(crate) resource_owner: Option<String>,

    /// An action to decide, such as s3:GetObject. Repeat for several.
    #[arg(long = "action", value_name = "ACTION")]
    pub(crate) actions: Vec<String>,

    /// A resource ARN to decide each action on. Repeat for several; `*` when none.
    #[arg(long = "resource", value_name = "ARN")]
    pub(crate) resources: Vec<String>,

    /// A condition key: KEY=VALUE (a string) or KEY=TYPE:VALUE with TYPE one of string, numeric,
    /// boolean, ip, binary, date, or their list forms (stringList, ...) with comma-separated
    /// values. Example: aws:SourceIp=ip:10.1.2.3
    #[arg(long = "context", value_name = "KEY=[TYPE:]VALUE")]
    pub(crate) context: Vec<String>,

    /// Output format: `json` is what awscli prints; `text` explains each decision. Defaults to
    /// json with --cli-input-json and to text otherwise.
    #[arg(long, value_enum)]
    pub(crate) output: Option<Output>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Json,
    Text,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Policy files to check.
    #[arg(required = true, value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,

    /// How the policies are used, which decides the elements they need.
    #[arg(long, value_enum, default_value = "identity")]
    pub(crate) kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    /// Attached to a user or role, or a boundary or session policy.
    Identity,
    /// A bucket policy or other resource-based policy.
    Resource,
    /// A role's trust policy.
    Trust,
}
