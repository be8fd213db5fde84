//! `render`: the chart values and the three storage secrets for one IAM-role setup, as
//! documents under `# ---- file: NAME ----` headers; role ARNs are quoted so that no YAML
//! parser takes them apart.

use crate::GitlabError;
use crate::arn::{role_arn_problem, role_name_problem};

/// How pods get their role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderMode {
    /// kube2iam/kiam `iam.amazonaws.com/role` pod annotations.
    Annotation,
    /// IAM roles for service accounts (`global.serviceAccount` + `global.platform.eksRoleArn`).
    Irsa,
}

/// What to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// How pods get their role.
    pub mode: RenderMode,
    /// The role: an ARN (IRSA), or a name or an ARN (annotation mode).
    pub role: String,
    /// The buckets' region.
    pub region: String,
    /// The registry's bucket.
    pub registry_bucket: String,
    /// The service account (IRSA), created beforehand with the role annotation.
    pub service_account: String,
    /// An S3 endpoint other than AWS's (a Keyless server), `http://` or `https://`.
    pub endpoint: Option<String>,
}

/// The header that starts each rendered file.
fn header(name: &str) -> String {
    format!("# ---- file: {name} ----\n")
}

/// Splits `render`'s output into its files: (name, text).
pub fn split_files(text: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        let name = line
            .trim_end()
            .strip_prefix("# ---- file: ")
            .and_then(|l| l.strip_suffix(" ----"));
        match (name, files.last_mut()) {
            (Some(name), _) => files.push((name.to_owned(), String::new())),
            (None, Some((_, body))) => body.push_str(line),
            (None, None) => {}
        }
    }
    files
}

fn invalid(option: &'static str, value: &str, reason: impl Into<String>) -> GitlabError {
    GitlabError::Option {
        option,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// Scheme, and host with port, of an endpoint URL.
fn endpoint_parts(url: &str) -> Result<(bool, &str), GitlabError> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(invalid(
            "endpoint",
            url,
            "expected http://HOST[:PORT] or https://",
        ));
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains(['/', ' ', '"', '#']) {
        return Err(invalid(
            "endpoint",
            url,
            "expected a host and port, no path",
        ));
    }
    Ok((https, host))
}

fn validate(o: &RenderOptions) -> Result<(), GitlabError> {
    let role_problem = match o.mode {
        RenderMode::Irsa => role_arn_problem(&o.role),
        RenderMode::Annotation if o.role.starts_with("arn:") => role_arn_problem(&o.role),
        RenderMode::Annotation => role_name_problem(&o.role),
    };
    if let Some(why) = role_problem {
        return Err(invalid("role", &o.role, why));
    }
    let simple = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !simple(&o.region) {
        return Err(invalid(
            "region",
            &o.region,
            "expected a region such as us-east-1",
        ));
    }
    if !simple(&o.registry_bucket) || !(3..=63).contains(&o.registry_bucket.len()) {
        return Err(invalid(
            "bucket",
            &o.registry_bucket,
            "expected 3 to 63 lowercase letters, digits, `-` and `.`",
        ));
    }
    if !simple(&o.service_account) || o.service_account.len() > 253 {
        return Err(invalid(
            "service account",
            &o.service_account,
            "expected a Kubernetes name: lowercase letters, digits, `-` and `.`",
        ));
    }
    if let Some(url) = &o.endpoint {
        endpoint_parts(url)?;
    }
    Ok(())
}

/// Renders values.yaml, registry-storage.yaml, object-storage.yaml and s3cmd.config.
pub fn render(o: &RenderOptions) -> Result<String, GitlabError> {
    validate(o)?;
    let mut out = String::new();
    out.push_str(&header("values.yaml"));
    out.push_str(&values(o));
    out.push('\n');
    out.push_str(&header("registry-storage.yaml"));
    out.push_str(&registry(o));
    out.push('\n');
    out.push_str(&header("object-storage.yaml"));
    out.push_str(&fog(o));
    out.push('\n');
    out.push_str(&header("s3cmd.config"));
    out.push_str(&s3cmd(o)?);
    Ok(out)
}

fn values(o: &RenderOptions) -> String {
    let role = format!("\"{}\"", o.role);
    let mut v = String::new();
    match o.mode {
        RenderMode::Annotation => v.push_str(
            "# GitLab chart values: S3 through an IAM role from kube2iam/kiam, named in each\n\
             # component's `iam.amazonaws.com/role` pod annotation (annotation mode).\n",
        ),
        RenderMode::Irsa => v.push_str(&format!(
            "# GitLab chart values: S3 through IAM roles for service accounts (IRSA).\n\
             # Create the service account first, with the role annotation, e.g.\n\
             #   eksctl create iamserviceaccount --name {sa} --namespace NAMESPACE ...\n\
             # or keyless iam create-service-account --namespace NAMESPACE --name {sa} ...\n\
             # The chart then uses it without creating it (enabled, not created).\n",
            sa = o.service_account
        )),
    }
    v.push_str(
        "# Secrets, from the files below:\n\
         #   kubectl create secret generic gitlab-registry-storage --from-file=config=registry-storage.yaml\n\
         #   kubectl create secret generic gitlab-object-storage --from-file=connection=object-storage.yaml\n\
         #   kubectl create secret generic gitlab-s3cmd-config --from-file=config=s3cmd.config\n\
         global:\n",
    );
    if o.mode == RenderMode::Irsa {
        v.push_str(&format!(
            "  serviceAccount:\n    enabled: true\n    create: false\n    name: {}\n\
             \x20 platform:\n    eksRoleArn: {role}\n",
            o.service_account
        ));
    }
    v.push_str(&format!(
        "  registry:\n    bucket: {}\n\
         \x20 appConfig:\n    object_store:\n      enabled: true\n      connection:\n\
         \x20       secret: gitlab-object-storage\n        key: connection\n\
         \x20   backups:\n      bucket: gitlab-backups\n      tmpBucket: gitlab-tmp\n",
        o.registry_bucket
    ));
    let annotations = |indent: &str| match o.mode {
        RenderMode::Annotation => {
            format!("{indent}annotations:\n{indent}  iam.amazonaws.com/role: {role}\n")
        }
        RenderMode::Irsa => String::new(),
    };
    v.push_str("registry:\n");
    v.push_str(&annotations("  "));
    v.push_str("  storage:\n    secret: gitlab-registry-storage\n    key: config\n");
    v.push_str("gitlab:\n");
    if o.mode == RenderMode::Annotation {
        v.push_str("  webservice:\n");
        v.push_str(&annotations("    "));
        v.push_str("  sidekiq:\n");
        v.push_str(&annotations("    "));
    }
    v.push_str("  # `task-runner` in charts before 5.0\n  toolbox:\n");
    v.push_str(&annotations("    "));
    v.push_str("    backups:\n");
    if o.mode == RenderMode::Irsa {
        // s3cmd reads no web identity token; awscli does.
        let args = match &o.endpoint {
            Some(url) => format!("--s3tool awscli --aws-s3-endpoint-url {url}"),
            None => "--s3tool awscli".to_owned(),
        };
        v.push_str(&format!(
            "      # backup-utility with awscli, which uses the IRSA token (s3cmd cannot); by hand:\n\
             \x20     #   kubectl exec TOOLBOX-POD -- backup-utility {args}\n\
             \x20     cron:\n        extraArgs: \"{args}\"\n"
        ));
    }
    v.push_str(
        "      objectStorage:\n        config:\n\
         \x20         secret: gitlab-s3cmd-config\n          key: config\n",
    );
    v
}

fn registry(o: &RenderOptions) -> String {
    let mut r = format!(
        "# The registry's storage, without accesskey/secretkey: the role is used.\n\
         s3:\n  bucket: {}\n  region: {}\n  v4auth: true\n",
        o.registry_bucket, o.region
    );
    if let Some(url) = &o.endpoint {
        r.push_str(&format!("  regionendpoint: \"{url}\"\n"));
    }
    r
}

fn fog(o: &RenderOptions) -> String {
    let mut f = format!(
        "# GitLab Rails' Fog connection: no keys, and use_iam_profile so that Fog asks for the role.\n\
         provider: AWS\nuse_iam_profile: true\nregion: {}\n",
        o.region
    );
    if let Some(url) = &o.endpoint {
        f.push_str(&format!("endpoint: \"{url}\"\npath_style: true\n"));
    }
    f
}

fn s3cmd(o: &RenderOptions) -> Result<String, GitlabError> {
    let mut s = format!(
        "# s3cmd's config for backups, without access_key/secret_key: the role is used.\n\
         [default]\nbucket_location = {}\n",
        o.region
    );
    if let Some(url) = &o.endpoint {
        let (https, host) = endpoint_parts(url)?;
        let https = if https { "True" } else { "False" };
        s.push_str(&format!(
            "host_base = {host}\nhost_bucket = {host}\nuse_https = {https}\nsignature_v2 = False\n"
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SecretFile, check};

    fn options(mode: RenderMode, role: &str) -> RenderOptions {
        RenderOptions {
            mode,
            role: role.to_owned(),
            region: "eu-west-1".to_owned(),
            registry_bucket: "gitlab-registry".to_owned(),
            service_account: "gitlab".to_owned(),
            endpoint: Some("http://keyless.example:9000".to_owned()),
        }
    }

    fn round_trip(o: &RenderOptions) -> crate::Report {
        let text = render(o).unwrap();
        let files = split_files(&text);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "values.yaml",
                "registry-storage.yaml",
                "object-storage.yaml",
                "s3cmd.config"
            ]
        );
        let secrets: Vec<SecretFile<'_>> = files[1..]
            .iter()
            .map(|(name, text)| SecretFile { name, text })
            .collect();
        check(&files[0].1, &secrets).unwrap()
    }

    #[test]
    fn rendered_annotation_setup_passes_check() {
        let report = round_trip(&options(RenderMode::Annotation, "gitlab-s3"));
        assert_eq!(report.mode, crate::Mode::Annotation);
        assert_eq!(report.findings().count(), 0, "{report}");
    }

    #[test]
    fn rendered_irsa_setup_passes_check() {
        let arn = "arn:aws:iam::123456789012:role/gitlab-s3";
        let report = round_trip(&options(RenderMode::Irsa, arn));
        assert_eq!(report.mode, crate::Mode::Irsa);
        assert_eq!(report.findings().count(), 0, "{report}");
        let mut o = options(RenderMode::Irsa, arn);
        o.endpoint = None;
        assert_eq!(round_trip(&o).findings().count(), 0);
    }

    #[test]
    fn arns_are_quoted_and_endpoints_reach_every_client() {
        let arn = "arn:aws:iam::123456789012:role/gitlab-s3";
        let text = render(&options(RenderMode::Irsa, arn)).unwrap();
        assert!(text.contains(&format!("eksRoleArn: \"{arn}\"")), "{text}");
        assert!(text.contains("regionendpoint: \"http://keyless.example:9000\""));
        assert!(text.contains("endpoint: \"http://keyless.example:9000\"\npath_style: true"));
        assert!(text.contains("host_base = keyless.example:9000\n"));
        assert!(text.contains("use_https = False\n"));
        assert!(
            text.contains(
                "cron:\n        extraArgs: \"--s3tool awscli --aws-s3-endpoint-url http://keyless.example:9000\"\n"
            ),
            "{text}"
        );
        let annotation = render(&options(RenderMode::Annotation, "gitlab-s3")).unwrap();
        assert!(!annotation.contains("--s3tool"), "{annotation}");
    }

    #[test]
    fn refuses_what_would_not_work() {
        let name_for_irsa = render(&options(RenderMode::Irsa, "gitlab-s3")).unwrap_err();
        assert!(
            name_for_irsa.to_string().contains("invalid role"),
            "{name_for_irsa}"
        );
        let mut o = options(RenderMode::Annotation, "gitlab-s3");
        o.endpoint = Some("keyless:9000".to_owned());
        assert!(render(&o).is_err());
        o.endpoint = None;
        o.region = "EU West".to_owned();
        assert!(render(&o).is_err());
    }
}
