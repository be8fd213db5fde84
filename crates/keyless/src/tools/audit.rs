//! `keyless audit`: reads an audit trail (what `keyless serve --audit-log FILE` writes, or
//! CloudTrail's own log files) and prints the records that pass the filters: a line each, the
//! policy engine's explanation under each denial with `--why`, or the records as JSON lines.
//! It reads files only; it never talks to a server.

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use keyless_audit::Record;
use keyless_audit::read::{Filter, records};

use crate::output::outln;

/// Arguments of `keyless audit`.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    /// Trail files, read in the order given (`-` for standard input). Rotated files
    /// (`FILE.1`, ...) are older than `FILE`: give them first.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Only requests by this caller: an ARN, a user or role name, or a principal id.
    #[arg(long, value_name = "ARN|NAME")]
    principal: Option<String>,

    /// Only requests of this role's sessions, or STS calls that assumed it (name or ARN).
    #[arg(long, value_name = "NAME|ARN")]
    role: Option<String>,

    /// Only requests of pods in this namespace (the session's `kubernetes-namespace` tag, or
    /// the web identity's service account).
    #[arg(long, value_name = "NAMESPACE")]
    namespace: Option<String>,

    /// Only requests of this pod (the session's `kubernetes-pod-name` tag).
    #[arg(long, value_name = "POD")]
    pod: Option<String>,

    /// Only requests on this bucket.
    #[arg(long, value_name = "BUCKET")]
    bucket: Option<String>,

    /// Only this operation (`PutObject`, `AssumeRoleWithWebIdentity`).
    #[arg(long, value_name = "NAME")]
    event: Option<String>,

    /// Only denials, or only what was not denied.
    #[arg(long, value_enum, value_name = "RESULT")]
    decision: Option<DecisionFilter>,

    /// Only records from this time on: ISO 8601 (`2026-12-07T03:00:00Z`) or a time ago
    /// (`15m`, `2h`, `7d`).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,

    /// Only records up to this time (the same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,

    /// Under each denial, print why the policy engine refused (the statement that denied, or
    /// that none allowed).
    #[arg(long)]
    why: bool,

    /// Print the matching records as JSON lines, as they are in the trail.
    #[arg(long, conflicts_with = "why")]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DecisionFilter {
    /// Refused (AccessDenied).
    Denied,
    /// Not refused by a policy.
    Allowed,
}

pub(crate) fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let now = crate::now();
    let filter = Filter {
        principal: args.principal.clone(),
        role: args.role.clone(),
        namespace: args.namespace.clone(),
        pod: args.pod.clone(),
        bucket: args.bucket.clone(),
        event: args.event.clone(),
        denied: args.decision.map(|d| matches!(d, DecisionFilter::Denied)),
        since: args
            .since
            .as_deref()
            .map(|t| time(t, now))
            .transpose()
            .context("--since")?,
        until: args
            .until
            .as_deref()
            .map(|t| time(t, now))
            .transpose()
            .context("--until")?,
    };
    for path in &args.files {
        let input: Box<dyn std::io::BufRead> = if path.as_os_str() == "-" {
            Box::new(BufReader::new(std::io::stdin()))
        } else {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open `{}`", path.display()))?;
            Box::new(BufReader::new(file))
        };
        for record in records(input) {
            let record = record.with_context(|| format!("`{}`", path.display()))?;
            if !filter.matches(&record) {
                continue;
            }
            if args.json {
                outln!("{}", serde_json::to_string(&record)?)?;
            } else {
                outln!("{}", line(&record))?;
                if args.why
                    && let Some(why) = record.decision()
                {
                    outln!("    why: {why}")?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `TIME  SERVICE:OPERATION  CALLER  RESOURCE  RESULT`.
fn line(record: &Record) -> String {
    let service = record
        .event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(&record.event_source);
    let identity = &record.user_identity;
    let caller = identity
        .arn
        .as_deref()
        .or(identity.principal_id.as_deref().filter(|p| !p.is_empty()))
        .unwrap_or(match identity.kind.as_str() {
            "AWSAccount" => "anonymous",
            _ => "-",
        });
    let resource = record
        .resources
        .first()
        .map(|r| r.arn.as_str())
        .unwrap_or("-");
    let result = match &record.error_code {
        Some(code) => code.as_str(),
        None => "ok",
    };
    let tags = identity
        .session_context
        .as_ref()
        .map(|s| &s.session_tags)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let ns = t.get(keyless_types::pod_tags::NAMESPACE_TAG);
            let pod = t.get(keyless_types::pod_tags::POD_NAME_TAG);
            match (ns, pod) {
                (Some(ns), Some(pod)) => format!(" pod {ns}/{pod}"),
                (Some(ns), None) => format!(" namespace {ns}"),
                _ => String::new(),
            }
        })
        .unwrap_or_default();
    format!(
        "{}  {service}:{}  {caller}{tags}  {resource}  {result}",
        record.event_time, record.event_name
    )
}

/// Seconds since the epoch of `text`: ISO 8601, or a duration before `now`.
fn time(text: &str, now: i64) -> anyhow::Result<i64> {
    if let Some(at) = keyless_types::time::parse_iso8601(text) {
        return Ok(at);
    }
    let refused = || {
        anyhow::anyhow!("`{text}` is neither an ISO 8601 time nor a time ago (90s, 15m, 2h, 7d)")
    };
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = digits.parse().map_err(|_| refused())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(refused()),
    };
    n.checked_mul(scale)
        .and_then(|ago| now.checked_sub(ago))
        .filter(|_| n >= 0)
        .ok_or_else(refused)
}
