//! Which role a pod gets: its `iam.amazonaws.com/role` annotation (a role name or ARN), or the
//! agent's default role; its session name and external id; and whether its namespace lets it
//! have that role, by kube2iam's `iam.amazonaws.com/allowed-roles` (a JSON list of role names
//! or ARNs with `*` globs) and kiam's `iam.amazonaws.com/permitted` (a regular expression).
//!
//! <https://github.com/jtblin/kube2iam#namespace-restrictions>,
//! <https://github.com/uswitch/kiam/blob/master/docs/IAM.md>,
//! <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html#API_AssumeRole_RequestParameters>
//! (the shapes of `RoleSessionName` and `ExternalId`).
//!
//! Namespace rules: a namespace annotation is always honoured; with both annotations, the role
//! must pass both. With `restrict_namespaces`, a namespace without either annotation (or not
//! known yet) allows no role. The default role is allowed everywhere, as in kube2iam: it is the
//! administrator's own choice. `permitted` is matched, fully anchored, against the role as the
//! pod's annotation writes it (kiam's behaviour): `shop-.*` allows `shop-reader`, not
//! `arn:aws:iam::123456789012:role/shop-reader`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use keyless_types::pod_tags::PodFacts;
use keyless_types::{AccountId, Arn};
use regex::Regex;

use crate::ImdsError;
use crate::pods::{Namespace, Pod};

/// The pod annotation naming its role.
pub const ROLE_ANNOTATION: &str = "iam.amazonaws.com/role";
/// The pod annotation giving its role session name.
pub const SESSION_NAME_ANNOTATION: &str = "iam.amazonaws.com/session-name";
/// The pod annotation giving the external id to present to the role's trust policy.
pub const EXTERNAL_ID_ANNOTATION: &str = "iam.amazonaws.com/external-id";
/// The namespace annotation listing the roles its pods may have (kube2iam).
pub const ALLOWED_ROLES_ANNOTATION: &str = "iam.amazonaws.com/allowed-roles";
/// The namespace annotation with a regular expression the roles of its pods must match (kiam).
pub const PERMITTED_ANNOTATION: &str = "iam.amazonaws.com/permitted";
/// A pod's: credentials fetched before this time (RFC 3339) were revoked
/// (`keyless iam revoke-sessions`), and are fetched afresh.
pub const REVOKED_AT_ANNOTATION: &str = "keyless.dev/sessions-revoked-at";

/// How many compiled `permitted` expressions are kept.
const REGEX_CACHE: usize = 256;
/// The most memory one compiled `permitted` expression may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How roles are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleConfig {
    /// The account of roles named without an ARN.
    pub account_id: AccountId,
    /// The partition of roles named without an ARN, `aws` on AWS.
    pub partition: String,
    /// The role of pods without a role annotation (a name or an ARN); none when `None`.
    pub default_role: Option<String>,
    /// Whether a namespace with no restricting annotation allows no role at all.
    pub restrict_namespaces: bool,
    /// The cluster's name, tagged on every pod's session (`eks-cluster-name`) when set.
    pub cluster_name: Option<String>,
    /// Whether pods' sessions carry the tags naming them (EKS Pod Identity's
    /// `disableSessionTags` when false; then trust policies need no `sts:TagSession`).
    pub session_tags: bool,
}

impl RoleConfig {
    /// Roles of `account_id` in the `aws` partition, no default role, namespaces unrestricted
    /// unless annotated.
    pub fn new(account_id: AccountId) -> Self {
        Self {
            account_id,
            partition: "aws".into(),
            default_role: None,
            restrict_namespaces: false,
            cluster_name: None,
            session_tags: true,
        }
    }
}

/// The role a pod gets and how it is assumed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleTarget {
    /// The role's ARN.
    pub arn: String,
    /// The role's name: the last part of the ARN's path, what IMDS lists.
    pub name: String,
    /// The `RoleSessionName`.
    pub session_name: String,
    /// The `ExternalId`, if the pod gives one.
    pub external_id: Option<String>,
    /// The session tags naming the pod ([`keyless_types::pod_tags`]).
    pub tags: Vec<(String, String)>,
}

/// The outcome of resolving a pod's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The pod gets this role.
    Role(RoleTarget),
    /// The pod has no role annotation and there is no default role.
    NoRole,
    /// The pod asks for a role it may not have, or asks in a malformed way.
    Forbidden {
        /// The role as the pod wrote it.
        role: String,
        /// Why, for the log (not for the pod).
        reason: String,
    },
}

/// A role, named both ways.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RoleRef {
    arn: String,
    name: String,
}

/// Resolves pods to roles.
#[derive(Debug)]
pub struct RoleResolver {
    config: RoleConfig,
    default_role: Option<RoleRef>,
    regexes: Mutex<HashMap<String, Result<Arc<Regex>, String>>>,
}

impl RoleResolver {
    /// A resolver; fails when the default role or the partition is malformed.
    pub fn new(config: RoleConfig) -> Result<Self, ImdsError> {
        if config.partition.is_empty()
            || !config
                .partition
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ImdsError::Config(format!(
                "partition `{}` is not a partition name",
                config.partition
            )));
        }
        let default_role = match &config.default_role {
            Some(written) => Some(role_ref(&config, written).map_err(|reason| {
                ImdsError::Config(format!("default role `{written}`: {reason}"))
            })?),
            None => None,
        };
        Ok(Self {
            config,
            default_role,
            regexes: Mutex::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RoleConfig {
        &self.config
    }

    /// The role of `pod`, whose namespace is `namespace` (`None` when not known yet).
    pub fn resolve(&self, pod: &Pod, namespace: Option<&Namespace>) -> Resolution {
        let annotation = |key: &str| {
            pod.annotations
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let forbidden = |role: &str, reason: String| Resolution::Forbidden {
            role: role.to_owned(),
            reason,
        };
        let (written, role) = match annotation(ROLE_ANNOTATION) {
            Some(written) => match role_ref(&self.config, written) {
                Ok(role) => (written, role),
                Err(reason) => return forbidden(written, reason),
            },
            None => match &self.default_role {
                Some(role) => (role.arn.as_str(), role.clone()),
                None => return Resolution::NoRole,
            },
        };
        if self.default_role.as_ref() != Some(&role)
            && let Err(reason) = self.check_namespace(&role, written, &pod.namespace, namespace)
        {
            return forbidden(written, reason);
        }
        let session_name = match annotation(SESSION_NAME_ANNOTATION) {
            Some(name) if is_session_name(name) => name.to_owned(),
            Some(name) => {
                return forbidden(
                    written,
                    format!("session name `{name}` is not 2 to 64 of [A-Za-z0-9_+=,.@-]"),
                );
            }
            None => default_session_name(&pod.namespace, &pod.name),
        };
        let external_id = match annotation(EXTERNAL_ID_ANNOTATION) {
            Some(id) if is_external_id(id) => Some(id.to_owned()),
            Some(_) => {
                return forbidden(
                    written,
                    "external id is not 2 to 1224 of [A-Za-z0-9_+=,.@:/-]".into(),
                );
            }
            None => None,
        };
        let facts = PodFacts {
            cluster: self.config.cluster_name.as_deref(),
            namespace: &pod.namespace,
            service_account: &pod.service_account,
            pod_name: Some(&pod.name),
            pod_uid: Some(&pod.uid),
        };
        let tags = match self.config.session_tags {
            true => facts.tags(),
            false => Vec::new(),
        };
        Resolution::Role(RoleTarget {
            arn: role.arn,
            name: role.name,
            session_name,
            external_id,
            tags,
        })
    }

    fn check_namespace(
        &self,
        role: &RoleRef,
        written: &str,
        name: &str,
        namespace: Option<&Namespace>,
    ) -> Result<(), String> {
        let restrict = self.config.restrict_namespaces;
        let Some(namespace) = namespace else {
            return if restrict {
                Err(format!("namespace `{name}` is not known"))
            } else {
                Ok(())
            };
        };
        let allowed = namespace.annotations.get(ALLOWED_ROLES_ANNOTATION);
        let permitted = namespace.annotations.get(PERMITTED_ANNOTATION);
        if allowed.is_none() && permitted.is_none() && restrict {
            return Err(format!(
                "namespace `{name}` allows no role: it has no `{ALLOWED_ROLES_ANNOTATION}` or `{PERMITTED_ANNOTATION}` annotation"
            ));
        }
        if let Some(allowed) = allowed {
            let patterns: Vec<String> = serde_json::from_str(allowed).map_err(|e| {
                format!("namespace `{name}`: `{ALLOWED_ROLES_ANNOTATION}` is not a JSON list of strings: {e}")
            })?;
            let matched = patterns.iter().any(|pattern| {
                let pattern = pattern.trim();
                if pattern.starts_with("arn:") {
                    glob_match(pattern, &role.arn)
                } else {
                    glob_match(
                        &format!("{}{}", self.role_prefix(), strip_role(pattern)),
                        &role.arn,
                    )
                }
            });
            if !matched {
                return Err(format!(
                    "namespace `{name}`: role `{}` is not in `{ALLOWED_ROLES_ANNOTATION}`",
                    role.arn
                ));
            }
        }
        if let Some(permitted) = permitted {
            let regex = self.regex(permitted).map_err(|e| {
                format!(
                    "namespace `{name}`: `{PERMITTED_ANNOTATION}` is not a regular expression: {e}"
                )
            })?;
            if !regex.is_match(written) {
                return Err(format!(
                    "namespace `{name}`: role `{written}` does not match `{PERMITTED_ANNOTATION}` `{permitted}`"
                ));
            }
        }
        Ok(())
    }

    fn role_prefix(&self) -> String {
        format!(
            "arn:{}:iam::{}:role/",
            self.config.partition, self.config.account_id
        )
    }

    /// `pattern` compiled, anchored at both ends; compiled once.
    fn regex(&self, pattern: &str) -> Result<Arc<Regex>, String> {
        let mut cache = self.regexes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(compiled) = cache.get(pattern) {
            return compiled.clone();
        }
        if cache.len() >= REGEX_CACHE {
            cache.clear();
        }
        let compiled = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(Arc::new)
            .map_err(|e| e.to_string());
        cache.insert(pattern.to_owned(), compiled.clone());
        compiled
    }
}

/// `role/` or `/` at the start of a role name (`role/app`, `/path/app`) is not part of it.
fn strip_role(written: &str) -> &str {
    let written = written.strip_prefix("role/").unwrap_or(written);
    written.strip_prefix('/').unwrap_or(written)
}

/// A role name or ARN as an ARN and a name.
fn role_ref(config: &RoleConfig, written: &str) -> Result<RoleRef, String> {
    let written = written.trim();
    if written.starts_with("arn:") {
        let arn = Arn::parse(written).map_err(|e| e.to_string())?;
        let path = arn
            .resource()
            .strip_prefix("role/")
            .filter(|_| arn.service() == "iam")
            .ok_or_else(|| format!("`{written}` is not the ARN of a role"))?;
        AccountId::parse(arn.account()).map_err(|e| e.to_string())?;
        let name = role_path_name(path)?;
        return Ok(RoleRef {
            arn: written.to_owned(),
            name,
        });
    }
    let path = strip_role(written);
    let name = role_path_name(path)?;
    Ok(RoleRef {
        arn: format!(
            "arn:{}:iam::{}:role/{path}",
            config.partition, config.account_id
        ),
        name,
    })
}

/// The name at the end of `path/to/name`, checked, the path too.
fn role_path_name(path: &str) -> Result<String, String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let name_ok = (1..=64).contains(&name.len()) && name.bytes().all(is_name_byte);
    let path_ok = path.len() <= 512 && path.bytes().all(|b| is_name_byte(b) || b == b'/');
    if name_ok && path_ok && !path.contains("//") {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "`{path}` is not a role name (1 to 64 of [A-Za-z0-9_+=,.@-], with an optional path)"
        ))
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'=' | b',' | b'.' | b'@' | b'-')
}

/// Whether `name` is a valid `RoleSessionName`: `[\w+=,.@-]{2,64}`.
pub fn is_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len()) && name.bytes().all(is_name_byte)
}

fn is_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.len())
        && id
            .bytes()
            .all(|b| is_name_byte(b) || b == b':' || b == b'/')
}

/// The session name of a pod without one: `NAMESPACE.POD`, which is valid as namespaces and pod
/// names are DNS names; a longer one keeps its first 55 characters and a hash of the rest.
pub fn default_session_name(namespace: &str, pod: &str) -> String {
    let full: String = format!("{namespace}.{pod}")
        .chars()
        .map(|c| {
            if c.is_ascii() && is_name_byte(c as u8) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let full = if full.len() < 2 {
        format!("{full}-")
    } else {
        full
    };
    if full.len() <= 64 {
        return full;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, full.as_bytes());
    let hash = keyless_types::hex::encode(&digest.as_ref()[..4]);
    format!("{}-{hash}", &full[..55])
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
#[path = "roles_tests.rs"]
mod tests;
