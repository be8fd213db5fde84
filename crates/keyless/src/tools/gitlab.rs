//! `keyless gitlab ...`: check GitLab Helm chart values and storage secrets for IAM roles, and
//! render a setup that passes the check.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use keyless_gitlab::{RenderMode, RenderOptions, SecretFile};

use crate::output::{out, outln};

#[derive(Debug, Subcommand)]
pub(crate) enum GitlabCommand {
    /// Say how each GitLab component will reach S3, and what keeps it from its IAM role
    ///
    /// For the registry, webservice, sidekiq and toolbox (task-runner), reads the chart values
    /// and the storage secrets as those components do: the registry's `s3:` storage config,
    /// Rails' Fog connection (`provider:`) and s3cmd's `[default]` config, each recognised by
    /// its content. Finds key pairs that win over the role, Fog without `use_iam_profile`,
    /// missing or mangled role annotations and ARNs, service accounts the chart would create
    /// over eksctl's, and regions that disagree.
    ///
    /// Exit status: 0 when nothing is wrong, 1 with warnings only, 2 with errors.
    ///
    /// Example:
    ///
    ///   keyless gitlab check --values values.yaml --secret registry-storage.yaml \
    ///       --secret object-storage.yaml --secret s3cmd.config
    #[command(verbatim_doc_comment)]
    Check(CheckArgs),
    /// Print chart values and the three storage secrets for an IAM-role setup
    ///
    /// values.yaml, registry-storage.yaml, object-storage.yaml and s3cmd.config, each under a
    /// `# ---- file: NAME ----` header, role ARNs quoted; the output passes `keyless gitlab
    /// check`.
    ///
    /// Example:
    ///
    ///   keyless gitlab render --mode irsa --role arn:aws:iam::123456789012:role/gitlab-s3 \
    ///       --region eu-west-1 --endpoint https://s3.example.internal
    #[command(verbatim_doc_comment)]
    Render(RenderArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The chart values (`helm get values RELEASE -o yaml` prints those of a release).
    #[arg(long, value_name = "FILE")]
    values: PathBuf,

    /// A storage secret's contents: registry-storage.yaml, object-storage.yaml (the Fog
    /// connection) or s3cmd.config, in any order; repeat for several.
    #[arg(long = "secret", value_name = "FILE")]
    secrets: Vec<PathBuf>,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// kube2iam/kiam: an `iam.amazonaws.com/role` annotation on each component's pods.
    Annotation,
    /// IAM roles for service accounts: `global.serviceAccount` and `global.platform.eksRoleArn`.
    Irsa,
}

#[derive(Debug, Args)]
pub(crate) struct RenderArgs {
    /// How pods get their role.
    #[arg(long, value_enum)]
    mode: Mode,

    /// The role: an ARN for IRSA; a name or an ARN for annotation mode.
    #[arg(long)]
    role: String,

    /// The buckets' region.
    #[arg(long, default_value = "us-east-1", value_name = "REGION")]
    region: String,

    /// The registry's bucket.
    #[arg(long, default_value = "gitlab-registry", value_name = "BUCKET")]
    registry_bucket: String,

    /// The service account the pods run as (IRSA), created beforehand with the role's
    /// `eks.amazonaws.com/role-arn` annotation (`eksctl create iamserviceaccount` or
    /// `keyless iam create-service-account`).
    #[arg(long, default_value = "gitlab", value_name = "NAME")]
    service_account: String,

    /// An S3 endpoint other than AWS's, such as a Keyless server (`http://` or `https://`).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
}

pub(crate) fn run(cmd: GitlabCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        GitlabCommand::Check(args) => check(&args),
        GitlabCommand::Render(args) => render(args),
    }
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let values = read(&args.values)?;
    let texts = args
        .secrets
        .iter()
        .map(|p| Ok((p.display().to_string(), read(p)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let secrets: Vec<SecretFile<'_>> = texts
        .iter()
        .map(|(name, text)| SecretFile { name, text })
        .collect();
    let report = keyless_gitlab::check(&values, &secrets)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        out!("{report}")?;
    }
    Ok(ExitCode::from(report.exit_code()))
}

fn render(args: RenderArgs) -> anyhow::Result<ExitCode> {
    let options = RenderOptions {
        mode: match args.mode {
            Mode::Annotation => RenderMode::Annotation,
            Mode::Irsa => RenderMode::Irsa,
        },
        role: args.role,
        region: args.region,
        registry_bucket: args.registry_bucket,
        service_account: args.service_account,
        endpoint: args.endpoint,
    };
    out!("{}", keyless_gitlab::render(&options)?)?;
    Ok(ExitCode::SUCCESS)
}
