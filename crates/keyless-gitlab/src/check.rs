//! `check`: how each GitLab component will authenticate to S3, given the chart values and the
//! storage secrets, and what stops it from using its IAM role.
//!
//! Precedence follows the clients: an explicit key pair in a secret wins over any role (the
//! registry's aws-sdk-go chain, Fog, s3cmd all read configured keys first); Fog looks for a
//! role only with `use_iam_profile: true`; IRSA needs the pods' service account, kube2iam/kiam
//! the pods' `iam.amazonaws.com/role` annotation.

use crate::GitlabError;
use crate::arn::RoleValue;
use crate::report::{Component, ComponentReport, Finding, Mode, Report};
use crate::secrets::{self, IamProfile, SecretFile, Secrets, s3cmd_region};
use crate::values::{Flag, Found, ServiceAccount, Values};
use crate::yaml;

/// Reads the values (the text of values.yaml) and the storage secrets, and reports.
pub fn check(values: &str, secrets: &[SecretFile<'_>]) -> Result<Report, GitlabError> {
    let values = Values {
        root: yaml::parse("values.yaml", values)?,
        raw: values,
    };
    let secrets = secrets::classify(secrets)?;
    let global_irsa = values.global_irsa_role();
    let lookups: Vec<Lookup> = Component::ALL
        .iter()
        .map(|&c| Lookup {
            component: c,
            path: values.component_path(c),
            kube2iam: values.kube2iam_role(c),
            irsa: values.own_irsa_role(c).or_else(|| global_irsa.clone()),
            sa: values.service_account(c),
            backup_args: match c {
                Component::Toolbox => values.component(c).and_then(|(_, block)| {
                    match block.path(&["backups", "cron", "extraArgs"]) {
                        Some(yaml::Node::Str(args)) => Some(args.clone()),
                        _ => None,
                    }
                }),
                _ => None,
            },
        })
        .collect();
    let kube2iam_any = lookups.iter().any(|l| l.kube2iam.is_some());
    let irsa_any = lookups.iter().any(|l| l.irsa.is_some())
        || (!kube2iam_any && lookups.iter().any(|l| l.sa.enabled.1.truthy(false)));
    let mode = match (kube2iam_any, irsa_any) {
        (true, true) => Mode::Both,
        (true, false) => Mode::Annotation,
        (false, true) => Mode::Irsa,
        (false, false) => Mode::None,
    };
    let mut general = Vec::new();
    match mode {
        Mode::Both => general.push(Finding::warning(
            "both-modes",
            "both kube2iam annotations and IRSA are configured: in pods with a web identity \
             token the SDKs take IRSA first and the annotation goes unused"
                .to_owned(),
            "keep one: drop the `iam.amazonaws.com/role` annotations or the IRSA settings"
                .to_owned(),
        )),
        Mode::None => general.push(Finding::error(
            "no-role",
            "no IAM role is configured: no `iam.amazonaws.com/role` annotation, no \
             `global.platform.eksRoleArn`, no `eks.amazonaws.com/role-arn` annotation"
                .to_owned(),
            "start from `keyless gitlab render --mode annotation|irsa --role ROLE`".to_owned(),
        )),
        Mode::Annotation | Mode::Irsa => {}
    }
    let mut components: Vec<ComponentReport> = lookups
        .iter()
        .map(|l| component(l, mode, &secrets))
        .collect();
    hoist(&mut general, &mut components);
    general.extend(regions(&secrets));
    Ok(Report {
        mode,
        general,
        components,
    })
}

/// What the values say about one component.
struct Lookup {
    component: Component,
    path: String,
    kube2iam: Option<Found>,
    irsa: Option<Found>,
    sa: ServiceAccount,
    /// The toolbox's `backups.cron.extraArgs`: backup-utility's flags (`--s3tool awscli`).
    backup_args: Option<String>,
}

/// The role a component's pods get.
enum Role {
    Irsa { arn: String, sa: Option<String> },
    Kube2iam { role: String, path: String },
}

/// What a component's secret does to its credentials.
enum Secret {
    /// Not given: not checked.
    Missing(&'static str),
    /// Static keys, which win over the role.
    Keys(String),
    /// A Fog connection that will not look for a role.
    FogBlind(String),
    /// Fog with a provider other than AWS.
    NotS3(String),
    /// The client will look for the role.
    UsesRole,
}

fn component(l: &Lookup, mode: Mode, secrets: &Secrets) -> ComponentReport {
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    let mut role = None;
    let mut broken = false;
    if matches!(mode, Mode::Irsa | Mode::Both) {
        broken |= service_account(&l.sa, &mut findings);
        match &l.irsa {
            Some(Found {
                value: RoleValue::Valid(arn),
                ..
            }) if l.sa.enabled.1.truthy(false) => {
                role = Some(Role::Irsa {
                    arn: arn.clone(),
                    sa: l.sa.name.as_ref().map(|(_, n)| n.clone()),
                });
            }
            Some(Found {
                value: RoleValue::Bad(f),
                ..
            }) => {
                findings.push(f.clone());
                broken = true;
            }
            _ => {}
        }
    }
    if role.is_none() && matches!(mode, Mode::Annotation | Mode::Both) {
        match &l.kube2iam {
            Some(Found {
                value: RoleValue::Valid(r),
                path,
            }) => {
                role = Some(Role::Kube2iam {
                    role: r.clone(),
                    path: path.clone(),
                });
            }
            Some(Found {
                value: RoleValue::Bad(f),
                ..
            }) => {
                findings.push(f.clone());
                broken = true;
            }
            _ => {}
        }
    }
    let secret = secret(l.component, secrets, &mut findings);
    if role.is_none() && !broken && mode != Mode::None {
        // A component whose secret was left out while others were given probably does not use
        // S3 (the registry on a filesystem, backups elsewhere): a missing role only warns.
        let used = secrets.is_empty() || !matches!(secret, Secret::Missing(_));
        findings.push(missing_role(l, mode, used));
    }
    if let Secret::Missing(kind) = secret {
        notes.push(format!("no {kind} given: its settings were not checked"));
    }
    if l.component == Component::Toolbox && matches!(role, Some(Role::Irsa { .. })) {
        findings.extend(backup_tool(l));
    }
    ComponentReport {
        component: l.component,
        auth: auth(&role, &secret, broken),
        notes,
        findings,
    }
}

/// Under IRSA, backup-utility must run awscli: its default, s3cmd, reads no web identity token
/// (s3tools/s3cmd#1075), so its uploads go unsigned or with no credentials at all.
fn backup_tool(l: &Lookup) -> Option<Finding> {
    let args = l.backup_args.as_deref().unwrap_or("");
    let words: Vec<&str> = args.split_whitespace().collect();
    let awscli =
        words.windows(2).any(|w| w == ["--s3tool", "awscli"]) || words.contains(&"--s3tool=awscli");
    if awscli {
        return None;
    }
    Some(Finding::warning(
        "backups-without-awscli",
        format!(
            "`{}.backups.cron.extraArgs` does not give `--s3tool awscli`: backup-utility then \
             runs s3cmd, which cannot use the web identity token of IRSA \
             (s3tools/s3cmd#1075), so scheduled backups find no credentials",
            l.path
        ),
        format!(
            "set `{}.backups.cron.extraArgs: \"--s3tool awscli --aws-s3-endpoint-url ENDPOINT\"` \
             (the endpoint only for S3 other than AWS's), and give manual runs the same flags",
            l.path
        ),
    ))
}

fn auth(role: &Option<Role>, secret: &Secret, broken: bool) -> String {
    match (secret, role) {
        (Secret::Keys(file), _) => format!("static keys from `{file}` (any role is ignored)"),
        (Secret::FogBlind(file), _) => {
            format!("no credentials: `{file}` has neither keys nor use_iam_profile")
        }
        (Secret::NotS3(provider), _) => format!("not S3 (Fog provider `{provider}`)"),
        (_, Some(Role::Irsa { arn, sa })) => match sa {
            Some(sa) => format!("role `{arn}` through web identity (IRSA), service account `{sa}`"),
            None => {
                format!("role `{arn}` through web identity (IRSA), the chart's service account")
            }
        },
        (_, Some(Role::Kube2iam { role, path })) => {
            format!("role `{role}` from the metadata service (kube2iam/kiam), annotation `{path}`")
        }
        (_, None) if broken => "no usable role (see the error)".to_owned(),
        (_, None) => "no role".to_owned(),
    }
}

/// Service-account findings in IRSA mode; true when the pods get no usable service account.
fn service_account(sa: &ServiceAccount, findings: &mut Vec<Finding>) -> bool {
    for (path, flag) in [&sa.enabled, &sa.create] {
        if let Flag::Quoted(s) = flag {
            findings.push(Finding::warning(
                "quoted-boolean",
                format!(
                    "`{path}` is the string `\"{s}\"`, which the chart's templates treat as {}",
                    if s.is_empty() { "false" } else { "true" }
                ),
                format!(
                    "write a bare true or false: `{path}: {}`",
                    s.trim_matches('"')
                ),
            ));
        }
    }
    let (enabled_path, enabled) = &sa.enabled;
    if !enabled.truthy(false) {
        findings.push(Finding::error(
            "service-account-disabled",
            format!(
                "`{enabled_path}` is not true: the pods run as the namespace's `default` \
                 service account, which carries no role"
            ),
            format!("set `{enabled_path}: true`"),
        ));
        return true;
    }
    if let (Some((name_path, name)), (create_path, Flag::Absent)) = (&sa.name, &sa.create) {
        findings.push(Finding::error(
            "service-account-created-by-chart",
            format!(
                "`{name_path}` is `{name}` but `{create_path}` is left at its default (true): the \
                 chart would create and own the account that eksctl already made with the role"
            ),
            format!("set `{create_path}: false` (enabled but not created, as GitLab documents)"),
        ));
    }
    false
}

fn missing_role(l: &Lookup, mode: Mode, used: bool) -> Finding {
    let (code, message, fix) = if mode == Mode::Irsa {
        (
            "irsa-role-missing",
            "no role ARN for IRSA: `global.platform.eksRoleArn` is not set and no \
             `eks.amazonaws.com/role-arn` service-account annotation is given"
                .to_owned(),
            "set `global.platform.eksRoleArn: \"arn:aws:iam::ACCOUNT:role/NAME\"` (quoted)"
                .to_owned(),
        )
    } else {
        let path = &l.path;
        (
            "role-annotation-missing",
            format!(
                "`{path}.annotations` has no `iam.amazonaws.com/role`: kube2iam/kiam give its \
                 pods no role (or the node's default role)"
            ),
            format!("--set {path}.annotations.\"iam\\.amazonaws\\.com/role\"=ROLE"),
        )
    };
    if used {
        Finding::error(code, message, fix)
    } else {
        Finding::warning(code, message, fix)
    }
}

fn keys_finding(file: &str, keys: &[&str], client: &str) -> Finding {
    Finding::error(
        "static-keys",
        format!(
            "`{file}` holds {}: {client} signs with that key pair, which wins over the role",
            keys.join(" and ")
        ),
        format!("remove {} from `{file}`", keys.join(" and ")),
    )
}

fn region_missing(file: &str, error: bool, message: String, fix: String) -> Finding {
    let message = format!("`{file}` has no region: {message}");
    if error {
        Finding::error("region-missing", message, fix)
    } else {
        Finding::warning("region-missing", message, fix)
    }
}

fn secret(c: Component, secrets: &Secrets, findings: &mut Vec<Finding>) -> Secret {
    match c {
        Component::Registry => {
            let Some(r) = &secrets.registry else {
                return Secret::Missing("registry storage secret (`s3:`)");
            };
            if r.region.is_none() {
                findings.push(region_missing(
                    &r.file,
                    true,
                    "the registry's S3 driver refuses to start without `s3.region`".to_owned(),
                    "add `region: REGION` to the `s3:` block".to_owned(),
                ));
            }
            if !r.keys.is_empty() {
                findings.push(keys_finding(&r.file, &r.keys, "the registry"));
                return Secret::Keys(r.file.clone());
            }
            Secret::UsesRole
        }
        Component::Webservice | Component::Sidekiq => {
            let Some(fog) = &secrets.fog else {
                return Secret::Missing("Fog connection (`provider:`)");
            };
            if !fog.provider.eq_ignore_ascii_case("aws") {
                return Secret::NotS3(fog.provider.clone());
            }
            if fog.region.is_none() {
                findings.push(region_missing(
                    &fog.file,
                    false,
                    "Fog signs for us-east-1".to_owned(),
                    "add `region: REGION`".to_owned(),
                ));
            }
            if let IamProfile::Truthy(what) = &fog.use_iam_profile {
                findings.push(Finding::warning(
                    "quoted-boolean",
                    format!(
                        "`{}` has use_iam_profile {what}, which Ruby treats as true",
                        fog.file
                    ),
                    "write `use_iam_profile: true`, unquoted".to_owned(),
                ));
            }
            if !fog.keys.is_empty() {
                findings.push(keys_finding(&fog.file, &fog.keys, "Fog"));
                return Secret::Keys(fog.file.clone());
            }
            if matches!(fog.use_iam_profile, IamProfile::Absent | IamProfile::False) {
                findings.push(Finding::error(
                    "fog-no-iam-profile",
                    format!(
                        "`{}` has no keys and no `use_iam_profile: true`: Fog will not look \
                         for a role",
                        fog.file
                    ),
                    format!("add `use_iam_profile: true` to `{}`", fog.file),
                ));
                return Secret::FogBlind(fog.file.clone());
            }
            Secret::UsesRole
        }
        Component::Toolbox => {
            let Some(s) = &secrets.s3cmd else {
                return Secret::Missing("s3cmd config (`[default]`)");
            };
            if s.bucket_location.is_none() {
                findings.push(region_missing(
                    &s.file,
                    false,
                    "s3cmd's bucket_location defaults to US (us-east-1)".to_owned(),
                    "add `bucket_location = REGION` to `[default]`".to_owned(),
                ));
            }
            if !s.keys.is_empty() {
                findings.push(keys_finding(&s.file, &s.keys, "s3cmd"));
                return Secret::Keys(s.file.clone());
            }
            Secret::UsesRole
        }
    }
}

/// Moves findings that every component has (a global setting's) to the general findings.
fn hoist(general: &mut Vec<Finding>, components: &mut [ComponentReport]) {
    let Some((first, rest)) = components.split_first() else {
        return;
    };
    let common: Vec<Finding> = first
        .findings
        .iter()
        .filter(|f| rest.iter().all(|c| c.findings.contains(f)))
        .cloned()
        .collect();
    for f in common {
        for c in components.iter_mut() {
            c.findings.retain(|x| x != &f);
        }
        general.push(f);
    }
}

/// The regions the secrets name must agree.
fn regions(secrets: &Secrets) -> Option<Finding> {
    let mut seen: Vec<(String, String)> = Vec::new();
    if let Some(r) = &secrets.registry
        && let Some(region) = &r.region
    {
        seen.push((format!("`{}` says {region}", r.file), region.clone()));
    }
    if let Some(f) = &secrets.fog
        && f.provider.eq_ignore_ascii_case("aws")
        && let Some(region) = &f.region
    {
        seen.push((format!("`{}` says {region}", f.file), region.clone()));
    }
    if let Some(s) = &secrets.s3cmd
        && let Some(location) = &s.bucket_location
    {
        let region = s3cmd_region(location);
        let said = if &region == location {
            format!("`{}` says {region}", s.file)
        } else {
            format!("`{}` says {location} ({region})", s.file)
        };
        seen.push((said, region));
    }
    let first = seen.first()?;
    if seen.iter().all(|(_, r)| r == &first.1) {
        return None;
    }
    let said: Vec<&str> = seen.iter().map(|(s, _)| s.as_str()).collect();
    Some(Finding::warning(
        "region-mismatch",
        format!("the regions disagree: {}", said.join(", ")),
        "name the buckets' region everywhere (s3.region, region, bucket_location)".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Severity;

    const FOG: &str = "provider: AWS\nuse_iam_profile: true\nregion: us-east-1\n";
    /// The toolbox's backups through awscli, as IRSA needs (under `gitlab:`).
    const AWSCLI_BACKUPS: &str =
        "  toolbox:\n    backups:\n      cron:\n        extraArgs: \"--s3tool awscli\"\n";

    fn run(values: &str, secrets: &[(&str, &str)]) -> Report {
        let files: Vec<SecretFile<'_>> = secrets
            .iter()
            .map(|(name, text)| SecretFile { name, text })
            .collect();
        check(values, &files).unwrap()
    }

    fn codes(r: &Report) -> Vec<&'static str> {
        r.findings().map(|f| f.code).collect()
    }

    #[test]
    fn nothing_configured_is_one_error_not_four() {
        let r = run("gitlab: {}\n", &[]);
        assert_eq!(r.mode, Mode::None);
        assert_eq!(codes(&r), ["no-role"]);
        assert!(r.components.iter().all(|c| c.auth == "no role"));
        assert!(r.components[0].notes[0].contains("not checked"));
    }

    #[test]
    fn irsa_without_the_service_account_enabled() {
        let r = run(
            "global:\n  platform:\n    eksRoleArn: \"arn:aws:iam::123456789012:role/g\"\n",
            &[],
        );
        assert_eq!(r.mode, Mode::Irsa);
        assert_eq!(codes(&r), ["service-account-disabled"]);
        assert_eq!(r.general.len(), 1, "one global setting, one finding");
        assert_eq!(r.components[1].auth, "no usable role (see the error)");
    }

    #[test]
    fn a_component_override_is_reported_on_that_component() {
        let r = run(
            &format!(
                "global:\n  serviceAccount:\n    enabled: true\n    create: false\n  platform:\n\
             \x20   eksRoleArn: \"arn:aws:iam::123456789012:role/g\"\n\
             gitlab:\n  sidekiq:\n    serviceAccount:\n      enabled: \"false\"\n{AWSCLI_BACKUPS}"
            ),
            &[],
        );
        assert!(r.general.is_empty(), "{r}");
        let sidekiq = &r.components[2];
        assert_eq!(codes(&r), ["quoted-boolean"]);
        assert!(sidekiq.findings[0].message.contains("treat as true"), "{r}");
        assert!(sidekiq.auth.contains("the chart's service account"), "{r}");
    }

    #[test]
    fn both_modes_warn_and_irsa_wins() {
        let r = run(
            &format!(
                "global:\n  serviceAccount:\n    enabled: true\n    create: false\n  platform:\n\
             \x20   eksRoleArn: \"arn:aws:iam::123456789012:role/g\"\n\
             registry:\n  annotations:\n    iam.amazonaws.com/role: r\ngitlab:\n{AWSCLI_BACKUPS}"
            ),
            &[],
        );
        assert_eq!(r.mode, Mode::Both);
        assert_eq!(codes(&r), ["both-modes"]);
        assert!(r.components[0].auth.contains("IRSA"));
    }

    #[test]
    fn a_missing_role_only_warns_for_a_component_whose_secret_was_left_out() {
        // The registry probably stores on a filesystem: no registry secret was given.
        let r = run(
            "gitlab:\n  webservice:\n    annotations:\n      iam.amazonaws.com/role: a\n\
             \x20 sidekiq:\n    annotations:\n      iam.amazonaws.com/role: a\n",
            &[("object-storage.yaml", FOG)],
        );
        let found: Vec<(&str, Severity)> = r.findings().map(|f| (f.code, f.severity)).collect();
        assert_eq!(
            found,
            [
                ("role-annotation-missing", Severity::Warning),
                ("role-annotation-missing", Severity::Warning)
            ]
        );
        assert_eq!(r.exit_code(), 1);
    }

    #[test]
    fn irsa_backups_need_awscli() {
        let irsa = "global:\n  serviceAccount:\n    enabled: true\n    create: false\n  platform:\n\
                    \x20   eksRoleArn: \"arn:aws:iam::123456789012:role/g\"\n";
        let r = run(irsa, &[]);
        assert_eq!(codes(&r), ["backups-without-awscli"]);
        let toolbox = r
            .components
            .iter()
            .find(|c| c.component == Component::Toolbox)
            .unwrap();
        assert!(
            toolbox.findings[0]
                .fix
                .contains("--s3tool awscli --aws-s3-endpoint-url"),
            "{r}"
        );
        for args in [
            "--s3tool awscli --aws-s3-endpoint-url http://k:9000",
            "--s3tool=awscli",
        ] {
            let values = format!(
                "{irsa}gitlab:\n  toolbox:\n    backups:\n      cron:\n        extraArgs: \"{args}\"\n"
            );
            assert!(codes(&run(&values, &[])).is_empty(), "{args}");
        }
        // Under kube2iam, s3cmd reads the metadata service's credentials as it is.
        let r = run(
            "global:\n  annotations:\n    iam.amazonaws.com/role: a\n",
            &[],
        );
        assert!(codes(&r).is_empty(), "{r}");
    }

    #[test]
    fn fog_with_another_provider_is_not_s3() {
        let r = run(
            "global:\n  annotations:\n    iam.amazonaws.com/role: a\n",
            &[("c", "provider: Google\ngoogle_project: p\n")],
        );
        assert_eq!(r.components[1].auth, "not S3 (Fog provider `Google`)");
        assert!(codes(&r).is_empty());
    }

    #[test]
    fn fog_quoted_use_iam_profile_is_true_to_ruby() {
        let r = run(
            "global:\n  annotations:\n    iam.amazonaws.com/role: a\n",
            &[(
                "c",
                "provider: AWS\nuse_iam_profile: \"false\"\nregion: us-east-1\n",
            )],
        );
        assert_eq!(codes(&r), ["quoted-boolean", "quoted-boolean"]);
        assert!(r.components[1].auth.contains("kube2iam"));
    }
}
