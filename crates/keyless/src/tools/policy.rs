//! `keyless policy ...`: simulate, check and list policies.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use keyless_iam::managed;
use keyless_iam::simulate::{
    ContextEntry, ContextKeyType, EvaluationResult, SimulateCustomPolicyInput,
    SimulatePolicyOutput, Simulation, StatementRef,
};
use keyless_policy::{Effect, Policy, PolicyKind};

use crate::cli::{CheckArgs, Kind, Output, PolicyCommand, SimulateArgs};
use crate::output::{out, outln};

pub(crate) fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Simulate(args) => simulate(*args),
        PolicyCommand::Check(args) => check(args),
        PolicyCommand::Managed { name } => show_managed(name.as_deref()),
    }
}

fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let from_json = args.cli_input_json.is_some();
    let mut input = match &args.cli_input_json {
        Some(arg) => {
            let (text, origin) = read_arg(arg)?;
            serde_json::from_str::<SimulateCustomPolicyInput>(&text)
                .with_context(|| format!("{origin} is not a valid SimulateCustomPolicy request"))?
        }
        None => SimulateCustomPolicyInput::default(),
    };
    for p in &args.policies {
        input.policy_input_list.push(read_arg(p)?.0);
    }
    for b in &args.boundaries {
        input
            .permissions_boundary_policy_input_list
            .push(read_arg(b)?.0);
    }
    if let Some(r) = &args.resource_policy {
        input.resource_policy = Some(read_arg(r)?.0);
    }
    if args.caller_arn.is_some() {
        input.caller_arn.clone_from(&args.caller_arn);
    }
    if args.resource_owner.is_some() {
        input.resource_owner.clone_from(&args.resource_owner);
    }
    input.action_names.extend(args.actions.iter().cloned());
    input.resource_arns.extend(args.resources.iter().cloned());
    for c in &args.context {
        input.context_entries.push(parse_context(c)?);
    }
    let managed_policies = args
        .policy_arns
        .iter()
        .map(|arn| {
            managed::by_arn(arn).ok_or_else(|| {
                let known: Vec<&str> = managed::all().iter().map(|p| p.arn).collect();
                anyhow!(
                    "unknown managed policy `{arn}`; known: {}",
                    known.join(", ")
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sim = Simulation::with_managed(&input, &managed_policies)?;
    let result = sim.run();
    let format = args.output.unwrap_or(if from_json {
        Output::Json
    } else {
        Output::Text
    });
    match format {
        Output::Json => outln!("{}", awscli_json(&result)?)?,
        Output::Text => out!("{}", explain(&result))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The output as awscli prints it: four-space indents, and without `IsTruncated`, which awscli's
/// paginator drops.
fn awscli_json(output: &SimulatePolicyOutput) -> anyhow::Result<String> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Printed<'a> {
        evaluation_results: &'a [EvaluationResult],
    }
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut buf,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    serde::Serialize::serialize(
        &Printed {
            evaluation_results: &output.evaluation_results,
        },
        &mut ser,
    )?;
    Ok(String::from_utf8(buf)?)
}

/// A human-readable account of each decision and why.
fn explain(output: &SimulatePolicyOutput) -> String {
    const PAD: &str = "              ";
    let mut out = String::new();
    for r in &output.evaluation_results {
        let _ = writeln!(
            out,
            "{:<13} {} on {}",
            r.eval_decision, r.eval_action_name, r.eval_resource_name
        );
        let describe = |s: &StatementRef| {
            let sid = s
                .sid
                .as_deref()
                .map(|sid| format!(", statement `{sid}`"))
                .unwrap_or_default();
            let place = s
                .start_position
                .map(|p| format!(" (line {}, column {})", p.line, p.column))
                .unwrap_or_default();
            format!("{}{sid}{place}", s.source_policy_id)
        };
        let with = |effect: Effect| {
            r.matched_statements
                .iter()
                .filter(move |s| s.effect == Some(effect))
        };
        match r.eval_decision.as_str() {
            "explicitDeny" => with(Effect::Deny).for_each(|s| {
                let _ = writeln!(out, "{PAD}denied by {}", describe(s));
            }),
            "allowed" => with(Effect::Allow).for_each(|s| {
                let _ = writeln!(out, "{PAD}allowed by {}", describe(s));
            }),
            _ => {
                let _ = writeln!(out, "{PAD}{}", shortfall(r));
                with(Effect::Allow).for_each(|s| {
                    let _ = writeln!(
                        out,
                        "{PAD}(matched, not enough on its own: {})",
                        describe(s)
                    );
                });
            }
        }
        if !r.missing_context_values.is_empty() {
            let _ = writeln!(
                out,
                "{PAD}missing context: {}",
                r.missing_context_values.join(", ")
            );
        }
    }
    out
}

/// Why an implicit deny: which kind of policy failed to allow.
fn shortfall(r: &EvaluationResult) -> &'static str {
    let allows = |kind: &str| {
        r.matched_statements
            .iter()
            .any(|s| s.effect == Some(Effect::Allow) && s.source_policy_type == kind)
    };
    let side = |name: &str| {
        r.eval_decision_details
            .as_ref()
            .and_then(|d| d.get(name))
            .map(String::as_str)
    };
    if !allows("IAM Policy") {
        "no identity-based policy allows it"
    } else if r
        .permissions_boundary_decision_detail
        .as_ref()
        .is_some_and(|b| !b.allowed_by_permissions_boundary)
    {
        "the permissions boundary does not allow it"
    } else if side("Resource Policy").is_some_and(|d| d != "allowed") {
        "the resource policy does not allow it (the resource is in another account)"
    } else {
        "no statement allows it"
    }
}

/// `KEY=VALUE` or `KEY=TYPE:VALUE`; list types take comma-separated values.
fn parse_context(arg: &str) -> anyhow::Result<ContextEntry> {
    let (key, rest) = arg
        .split_once('=')
        .ok_or_else(|| anyhow!("--context `{arg}`: expected KEY=VALUE or KEY=TYPE:VALUE"))?;
    let typed = rest.split_once(':').and_then(|(kind, value)| {
        kind.parse::<ContextKeyType>()
            .ok()
            .map(|kind| (kind, value))
    });
    let (kind, value) = typed.unwrap_or((ContextKeyType::String, rest));
    let values = if kind.is_list() {
        value.split(',').map(str::to_owned).collect()
    } else {
        vec![value.to_owned()]
    };
    Ok(ContextEntry {
        context_key_name: key.to_owned(),
        context_key_values: values,
        context_key_type: kind,
    })
}

/// Reads an argument that is `file://PATH`, a path to an existing file, or the text itself.
/// Returns the text and where it came from.
fn read_arg(arg: &str) -> anyhow::Result<(String, String)> {
    let path = if let Some(path) = arg.strip_prefix("file://") {
        Some(path)
    } else if !arg.trim_start().starts_with(['{', '[']) {
        Some(arg)
    } else {
        None
    };
    match path {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read `{path}`"))?;
            Ok((text, format!("`{path}`")))
        }
        None => Ok((arg.to_owned(), "the JSON argument".to_owned())),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let kind = match args.kind {
        Kind::Identity => PolicyKind::Identity,
        Kind::Resource => PolicyKind::Resource,
        Kind::Trust => PolicyKind::Trust,
    };
    let mut failed = 0;
    for file in &args.files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read `{}`", file.display()))?;
        match Policy::parse_as(&text, kind) {
            Ok(policy) => outln!(
                "{}: ok, {} statement(s)",
                file.display(),
                policy.statements().len()
            )?,
            Err(e) => {
                failed += 1;
                outln!("{}: {e}", file.display())?;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} policies are not valid", args.files.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn show_managed(name: Option<&str>) -> anyhow::Result<ExitCode> {
    match name {
        None => {
            for p in managed::all() {
                outln!("{:<24} {:<48} {}", p.name, p.arn, p.description)?;
            }
        }
        Some(name) => {
            let p = managed::all()
                .iter()
                .find(|p| p.name == name || p.arn == name)
                .ok_or_else(|| {
                    anyhow!("unknown managed policy `{name}`; `keyless policy managed` lists them")
                })?;
            outln!("{}", p.document)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
