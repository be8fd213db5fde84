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
    /// How log lines (on stderr) are written: `text` for people, `json` (one object per line)
    /// for log collectors. RUST_LOG sets what is logged (default `info`).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "KEYLESS_LOG_FORMAT"
    )]
    pub(crate) log_format: LogFormat,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the S3 endpoint on the embedded default: objects on local disk, metadata in redb.
    ///
    /// On first start the data folder gets the root user's key pair, in an AWS shared
    /// credentials file (mode 0600) that awscli, boto3 and the SDKs read as is. Set
    /// KEYLESS_ROOT_ACCESS_KEY_ID and KEYLESS_ROOT_SECRET_ACCESS_KEY to choose it instead.
    Serve(Box<keyless_server::ServeOptions>),
    /// Check and simulate IAM policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Mint a service-account token from this server's OIDC issuer, like `kubectl create token`.
    ///
    /// The token is shaped like a Kubernetes projected service-account token (`iss`, `sub`
    /// `system:serviceaccount:NS:SA`, `aud`, `exp`, `iat`, `nbf`, `kubernetes.io`), signed with
    /// the issuer's current key in the data folder, and printed on stdout. Exchange it with
    /// `aws sts assume-role-with-web-identity`, or point AWS_WEB_IDENTITY_TOKEN_FILE at it.
    Token(TokenArgs),
    /// Manage IAM on a running server, the way eksctl does on AWS.
    #[command(subcommand)]
    Iam(IamCommand),
    /// Manage the server's OIDC issuer keys.
    #[command(subcommand)]
    Oidc(OidcCommand),
    /// Manage the master keys of encryption at rest.
    #[command(subcommand)]
    Encryption(EncryptionCommand),
    /// Run the node agent: the EC2 instance metadata service for the pods of this node, as
    /// kube2iam and kiam do.
    ///
    /// Each pod asks 169.254.169.254 for credentials, as on EC2, and gets those of the role in
    /// its `iam.amazonaws.com/role` annotation, assumed on its behalf with the agent's own
    /// credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or --credentials-file) through
    /// `sts:AssumeRole`; the role's trust policy must allow the agent. Pods' 169.254.169.254:80
    /// must reach the agent: on a node, a DNAT rule, which --iptables installs:
    ///
    ///   iptables -t nat -I PREROUTING -d 169.254.169.254/32 -i IFACE -p tcp --dport 80 \
    ///       -j DNAT --to-destination LISTEN-IP:LISTEN-PORT
    ///
    /// Example:
    ///
    ///   keyless agent --kubernetes --node-name $NODE_NAME --sts-endpoint http://127.0.0.1:9000 \
    ///       --credentials-file agent-credentials --iptables --host-interface cni0
    Agent(keyless_server::AgentOptions),
    /// Run the pod-identity admission webhook, as AWS's amazon-eks-pod-identity-webhook does
    /// on EKS: pods of a service account annotated `eks.amazonaws.com/role-arn` get
    /// AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE and a projected token; with --sts-endpoint and
    /// --s3-endpoint also AWS_ENDPOINT_URL_STS and AWS_ENDPOINT_URL_S3, so that unmodified SDKs
    /// reach Keyless. `keyless webhook config` prints the MutatingWebhookConfiguration.
    ///
    /// Example, in the cluster (TLS from cert-manager or `kubectl create secret tls`):
    ///
    ///   keyless webhook --kubernetes --tls-cert /tls/tls.crt --tls-key /tls/tls.key \
    ///       --sts-endpoint https://keyless.keyless.svc:9000 --s3-endpoint https://keyless.keyless.svc:9000
    ///
    /// or with its own CA, kept in a Secret its replicas share and put in the configuration:
    ///
    ///   keyless webhook --kubernetes --self-signed --service-name keyless-webhook --namespace keyless ...
    #[command(verbatim_doc_comment)]
    Webhook(WebhookArgs),
    /// Print who the AWS SDK's default credential chain says you are, and which source gave the
    /// credentials (keys, environment, profile, web identity, container endpoint or IMDS).
    ///
    /// The same chain as every AWS SDK application in the same pod or shell: explicit keys win
    /// over a role. Example, in a pod with IRSA and a Keyless endpoint:
    ///
    ///   AWS_ENDPOINT_URL=http://keyless.keyless:9000 keyless whoami
    Whoami(crate::tools::whoami::WhoamiArgs),
    /// Back up to and restore from a bucket: large files or stdin, multipart in parallel, resumable,
    /// checksummed end to end.
    #[command(subcommand)]
    Backup(crate::tools::backup::BackupCommand),
    /// Check GitLab Helm chart values and storage secrets for IAM roles, or render a setup.
    #[command(subcommand)]
    Gitlab(crate::tools::gitlab::GitlabCommand),
    /// Walk the whole credential chain and say, step by step, what it found and what it means:
    /// key pairs that shadow a role, the web-identity token and the role's trust policy, the
    /// container endpoint, IMDS, what STS says, and (with --bucket) list, write, read and delete.
    ///
    /// Prints one line per check (ok, info, warn, FAIL, skip) with what to do under anything not
    /// ok; secrets are never printed. Exit codes: 0 works; 1 works, with warnings; 2 broken.
    /// Example, in a GitLab pod with IRSA and a Keyless endpoint:
    ///
    ///   AWS_ENDPOINT_URL=http://keyless.keyless:9000 keyless doctor --bucket gitlab-registry
    Doctor(crate::tools::doctor::DoctorArgs),
    /// Read an audit trail (`keyless serve --audit-log FILE`, or CloudTrail's log files) and
    /// print what passes the filters: who did what, to which bucket, from which pod, and why a
    /// request was denied (--why). Example: the registry's denials of the last hour:
    ///
    ///   keyless audit /var/log/keyless/audit.jsonl --role registry --decision denied --since 1h --why
    Audit(crate::tools::audit::AuditArgs),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct WebhookArgs {
    #[command(subcommand)]
    pub(crate) command: Option<WebhookCommand>,
    #[command(flatten)]
    pub(crate) serve: keyless_server::WebhookOptions,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WebhookCommand {
    /// Print the MutatingWebhookConfiguration (JSON, for `kubectl apply -f -`) that sends pod
    /// creations to the webhook's Service: CREATE pods only, sideEffects None,
    /// reinvocationPolicy IfNeeded, its own namespace and kube-system left out, and pods with
    /// the label eks.amazonaws.com/skip-pod-identity-webhook skipped.
    Config(WebhookConfigArgs),
}

#[derive(Debug, Args)]
pub(crate) struct WebhookConfigArgs {
    /// The namespace of the webhook's Service (left out of the webhook's reach).
    #[arg(long, short = 'n')]
    pub(crate) namespace: String,
    /// The webhook's Service.
    #[arg(long)]
    pub(crate) service_name: String,
    /// The configuration's name.
    #[arg(long, default_value = "keyless-webhook")]
    pub(crate) name: String,
    /// The Service's port.
    #[arg(long, default_value = "443")]
    pub(crate) port: u16,
    /// The CA certificate (PEM) that signs the webhook's certificate, for `caBundle`; leave it
    /// out when cert-manager's injector fills it.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_bundle: Option<PathBuf>,
    /// What the API server does when the webhook cannot answer: `Ignore` creates pods
    /// unmutated (the webhook reports them once it is back), `Fail` refuses them.
    #[arg(long, value_enum, default_value = "ignore")]
    pub(crate) failure_policy: keyless_server::options::FailurePolicyArg,
    /// How long the API server waits for an answer, 1 to 30 seconds.
    #[arg(long, default_value = "10", value_parser = clap::value_parser!(u8).range(1..=30))]
    pub(crate) timeout_seconds: u8,
}

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// The service account's namespace.
    #[arg(long, short = 'n')]
    pub(crate) namespace: String,
    /// The service account's name.
    #[arg(long)]
    pub(crate) service_account: String,
    /// An audience (`aud`); repeat for several.
    #[arg(long = "audience", default_value = "sts.amazonaws.com")]
    pub(crate) audiences: Vec<String>,
    /// How long the token lives: seconds, or with a unit (`10m`, `1h`, `48h`); 10 minutes to
    /// 48 hours.
    #[arg(long, default_value = "1h", value_parser = keyless_server::options::parse_duration)]
    pub(crate) duration: i64,
    /// Bind the token to a pod (`kubernetes.io.pod` claim), as the kubelet's projected tokens
    /// are; container credentials accept only bound tokens.
    #[arg(long, value_name = "NAME", requires = "pod_uid")]
    pub(crate) pod_name: Option<String>,
    /// The bound pod's UID.
    #[arg(long, value_name = "UID", requires = "pod_name")]
    pub(crate) pod_uid: Option<String>,
    /// The data folder of the server whose issuer signs.
    #[arg(long, default_value = "keyless-data", value_name = "DIR")]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum EncryptionCommand {
    /// Add a new master key for encryption at rest. The old keys stay in the file, so that the
    /// data keys they wrapped still open; the next `keyless serve` re-wraps every data key with
    /// the new one (a few bytes per object; the data is not re-encrypted). Run it while the
    /// server is stopped, or restart it after.
    Rotate {
        /// The data folder of the server.
        #[arg(long, default_value = "keyless-data", value_name = "DIR")]
        data_dir: PathBuf,
        /// The key file, if `keyless serve` is given `--encryption-key-file`.
        #[arg(long, value_name = "FILE")]
        encryption_key_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum OidcCommand {
    /// Start signing with a new key. The old key stays published until the tokens it signed
    /// have expired (48 hours), so that no token in flight stops verifying.
    ///
    /// With --iam-store, the key ring the replicas share in PostgreSQL is rotated instead, and
    /// every replica signs with the new key within a second.
    Rotate {
        /// The data folder of the server.
        #[arg(long, default_value = "keyless-data", value_name = "DIR")]
        data_dir: PathBuf,
        /// The replicas' database (as `keyless serve --iam-store`).
        #[command(flatten)]
        iam_store: keyless_server::options::IamStoreOptions,
        /// The replicas' session key, from which the database's seal is derived.
        #[arg(long, value_name = "FILE")]
        session_key_file: Option<PathBuf>,
        /// The replicas' account id.
        #[arg(
            long,
            default_value = "000000000000",
            value_name = "ACCOUNT",
            requires = "iam_store"
        )]
        account_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum IamCommand {
    /// Create an IAM role for a Kubernetes service account, like `eksctl create
    /// iamserviceaccount`: the role trusts that service account's tokens from the cluster's
    /// OIDC provider, gets the policies given, and the ServiceAccount YAML with its
    /// `eks.amazonaws.com/role-arn` annotation is printed for `kubectl apply -f -`.
    ///
    /// Credentials come from the AWS SDK's default chain, as for awscli (keys in the
    /// environment, a profile, web identity, ...); its profile step also reads the data
    /// folder's root-credentials after ~/.aws/credentials, so that on the server's host the
    /// root user signs unless keys or --profile say otherwise. The endpoint may be https://
    /// (a private CA with --ca-bundle).
    ///
    /// Example:
    ///
    ///   keyless iam create-service-account --namespace gitlab --name registry \
    ///       --attach-policy-arn arn:aws:iam::aws:policy/AmazonS3FullAccess
    #[command(verbatim_doc_comment)]
    CreateServiceAccount(CreateServiceAccountArgs),
    /// Revoke a role's sessions issued until now, the way AWS's console does: an inline deny
    /// (`AWSRevokeOlderSessions`) on every action for sessions whose `aws:TokenIssueTime` is
    /// earlier. With --pod-uid, --pod, --service-account or --namespace, only the sessions
    /// whose session tags name that pod, service account or namespace (what the metadata
    /// agent, container credentials and web identity put on pods' sessions). Credentials
    /// already handed out stop working at once; ones issued afterwards work. The metadata
    /// agent fetches a pod fresh ones once the pod is annotated
    /// `keyless.dev/sessions-revoked-at` with a later UTC time (`date -u +%FT%TZ`).
    ///
    /// Examples:
    ///
    ///   keyless iam revoke-sessions --role gitlab-registry
    ///
    ///   keyless iam revoke-sessions --role gitlab-registry --pod gitlab/registry-0
    #[command(verbatim_doc_comment)]
    RevokeSessions(RevokeSessionsArgs),
}

/// Which sessions `revoke-sessions` revokes.
#[derive(Debug, Args)]
pub(crate) struct RevokeSessionsArgs {
    /// The role whose sessions to revoke (a name); repeat for several.
    #[arg(long = "role", value_name = "NAME", required = true)]
    pub(crate) roles: Vec<String>,
    /// Only the sessions of the pod of this UID (`kubernetes-pod-uid`).
    #[arg(long, value_name = "UID", group = "scope")]
    pub(crate) pod_uid: Option<String>,
    /// Only the sessions of this pod (`kubernetes-namespace` and `kubernetes-pod-name`).
    #[arg(long, value_name = "NAMESPACE/NAME", group = "scope")]
    pub(crate) pod: Option<String>,
    /// Only the sessions of this service account's pods.
    #[arg(long, value_name = "NAMESPACE/NAME", group = "scope")]
    pub(crate) service_account: Option<String>,
    /// Only the sessions of this namespace's pods.
    #[arg(long, value_name = "NAMESPACE", group = "scope")]
    pub(crate) namespace: Option<String>,
    #[command(flatten)]
    pub(crate) connect: IamConnectArgs,
}

/// Where the IAM API is and who signs.
#[derive(Debug, Args)]
pub(crate) struct IamConnectArgs {
    /// The server's endpoint (http:// or https://).
    #[arg(long, default_value = "http://127.0.0.1:9000", value_name = "URL")]
    pub(crate) endpoint_url: String,
    /// The server's data folder, whose root-credentials file the profile step reads too.
    #[arg(long, default_value = "keyless-data", value_name = "DIR")]
    pub(crate) data_dir: PathBuf,
    /// A profile of ~/.aws/config and ~/.aws/credentials [default: AWS_PROFILE, then `default`]
    #[arg(long, value_name = "NAME")]
    pub(crate) profile: Option<String>,
    /// Extra CA certificates (PEM) for an https endpoint with a private CA [default: AWS_CA_BUNDLE]
    #[arg(long, value_name = "FILE", env = "AWS_CA_BUNDLE")]
    pub(crate) ca_bundle: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CreateServiceAccountArgs {
    /// The service account's namespace.
    #[arg(long, short = 'n')]
    pub(crate) namespace: String,
    /// The service account's name.
    #[arg(long)]
    pub(crate) name: String,
    /// A policy to attach to the role; repeat for several.
    #[arg(long = "attach-policy-arn", value_name = "ARN", required = true)]
    pub(crate) policy_arns: Vec<String>,
    /// The role's name; `keyless-NAMESPACE-NAME` when absent.
    #[arg(long)]
    pub(crate) role_name: Option<String>,
    /// The cluster's OIDC issuer URL; needed only when several OIDC providers exist.
    #[arg(long, value_name = "URL")]
    pub(crate) issuer: Option<String>,
    /// The audience the tokens carry.
    #[arg(long, default_value = "sts.amazonaws.com")]
    pub(crate) audience: String,
    #[command(flatten)]
    pub(crate) connect: IamConnectArgs,
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
