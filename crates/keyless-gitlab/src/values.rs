//! Where the GitLab chart's values put each component's role: pod annotations for kube2iam/kiam,
//! service accounts and `global.platform.eksRoleArn` for IRSA
//! (<https://docs.gitlab.com/charts/advanced/external-object-storage/aws-iam-roles.html>).
//!
//! The chart is ambiguous in places, and the choices made here are:
//! - `gitlab.toolbox` is read before `gitlab.task-runner` (renamed in chart 5.0); either works.
//! - `global.annotations` is read as a fallback for every component's pod annotations, as some
//!   chart versions and forks use it; a role only there is accepted.
//! - A component's `serviceAccount` block overrides `global.serviceAccount` field by field.
//! - `global.platform.eksRoleArn` applies to every component (the docs name webservice, sidekiq
//!   and task-runner; the registry shares the global service account).

use crate::arn::{RoleRef, RoleValue};
use crate::report::{Component, Finding};
use crate::yaml::Node;

/// kube2iam's and kiam's pod annotation.
pub(crate) const IAM_ROLE: &str = "iam.amazonaws.com/role";
/// The EKS pod identity webhook's service-account annotation.
pub(crate) const EKS_ROLE_ARN: &str = "eks.amazonaws.com/role-arn";

/// The chart values and their raw text.
pub(crate) struct Values<'a> {
    pub(crate) root: Node,
    pub(crate) raw: &'a str,
}

/// A role found (or found broken) at a values path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Found {
    pub(crate) path: String,
    pub(crate) value: RoleValue,
}

/// A boolean setting as the chart's Go templates see it: any non-empty string is true.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Flag {
    Absent,
    Bool(bool),
    /// A string where a boolean belongs (`"false"`, from a quote or --set-string).
    Quoted(String),
}

impl Flag {
    fn read(node: Option<&Node>) -> Flag {
        match node {
            None | Some(Node::Null) => Flag::Absent,
            Some(Node::Bool(b)) => Flag::Bool(*b),
            Some(Node::Str(s)) => Flag::Quoted(s.clone()),
            Some(Node::Number(n)) => Flag::Bool(n.parse::<f64>().is_ok_and(|x| x != 0.0)),
            Some(Node::Seq(items)) => Flag::Bool(!items.is_empty()),
            Some(Node::Map(entries)) => Flag::Bool(!entries.is_empty()),
        }
    }

    /// The value the templates act on, `default` when absent.
    pub(crate) fn truthy(&self, default: bool) -> bool {
        match self {
            Flag::Absent => default,
            Flag::Bool(b) => *b,
            Flag::Quoted(s) => !s.is_empty(),
        }
    }
}

/// The service-account settings in force for one component.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceAccount {
    pub(crate) enabled: (String, Flag),
    pub(crate) create: (String, Flag),
    pub(crate) name: Option<(String, String)>,
}

impl<'a> Values<'a> {
    /// The component's values block and its dotted path.
    pub(crate) fn component(&self, c: Component) -> Option<(String, &Node)> {
        let candidates: &[&[&str]] = match c {
            Component::Registry => &[&["registry"]],
            Component::Webservice => &[&["gitlab", "webservice"]],
            Component::Sidekiq => &[&["gitlab", "sidekiq"]],
            Component::Toolbox => &[&["gitlab", "toolbox"], &["gitlab", "task-runner"]],
        };
        candidates
            .iter()
            .find_map(|p| self.root.path(p).map(|n| (p.join("."), n)))
    }

    /// The dotted path of the component's values block, existing or not.
    pub(crate) fn component_path(&self, c: Component) -> String {
        self.component(c).map_or_else(
            || match c {
                Component::Registry => "registry".to_owned(),
                Component::Toolbox => "gitlab.toolbox".to_owned(),
                _ => format!("gitlab.{}", c.name()),
            },
            |(path, _)| path,
        )
    }

    /// The annotation `key` in the map at `path` (relative to `base`, whose path is `prefix`).
    fn annotation(&self, prefix: &str, base: &Node, path: &[&str], key: &str) -> Option<Found> {
        let annotations = base.path(path)?;
        let at = format!("{prefix}.{}", path.join("."));
        let role = RoleRef {
            path: format!("{at}.\"{key}\""),
            key,
            name_allowed: key == IAM_ROLE,
        };
        if let Some(node) = annotations.get(key) {
            let value = role.judge(node, self.raw);
            return (value != RoleValue::Absent).then_some(Found {
                path: role.path,
                value,
            });
        }
        split_annotation(annotations, key).map(|shape| Found {
            path: role.path.clone(),
            value: RoleValue::Bad(Finding::error(
                "annotation-key-split",
                format!(
                    "`{at}` holds `{shape}`: --set split the key `{key}` at its dots, \
                     so no pod gets the annotation"
                ),
                format!(
                    "escape the dots: --set '{at}.{}=...'",
                    key.replace('.', "\\.")
                ),
            )),
        })
    }

    /// The component's kube2iam role: its pod annotation, else `global.annotations`'.
    pub(crate) fn kube2iam_role(&self, c: Component) -> Option<Found> {
        let own = self
            .component(c)
            .and_then(|(p, n)| self.annotation(&p, n, &["annotations"], IAM_ROLE));
        own.or_else(|| self.annotation("global", self.global(), &["annotations"], IAM_ROLE))
    }

    /// The component's own IRSA role: its service account's annotation, else its pods'.
    pub(crate) fn own_irsa_role(&self, c: Component) -> Option<Found> {
        let (p, n) = self.component(c)?;
        self.annotation(&p, n, &["serviceAccount", "annotations"], EKS_ROLE_ARN)
            .or_else(|| self.annotation(&p, n, &["annotations"], EKS_ROLE_ARN))
    }

    /// The global IRSA role: `global.serviceAccount.annotations`, else `global.platform.eksRoleArn`.
    pub(crate) fn global_irsa_role(&self) -> Option<Found> {
        let global = self.global();
        self.annotation(
            "global",
            global,
            &["serviceAccount", "annotations"],
            EKS_ROLE_ARN,
        )
        .or_else(|| {
            let node = global.path(&["platform", "eksRoleArn"])?;
            let role = RoleRef {
                path: "global.platform.eksRoleArn".to_owned(),
                key: "eksRoleArn",
                name_allowed: false,
            };
            let value = role.judge(node, self.raw);
            (value != RoleValue::Absent).then_some(Found {
                path: role.path,
                value,
            })
        })
    }

    fn global(&self) -> &Node {
        self.root.get("global").unwrap_or(&Node::Null)
    }

    /// The service account in force for `c`: its `serviceAccount` block over the global one.
    pub(crate) fn service_account(&self, c: Component) -> ServiceAccount {
        let global = self.global().get("serviceAccount");
        let own = self
            .component(c)
            .and_then(|(p, n)| n.get("serviceAccount").map(|sa| (p, sa)));
        let field = |key: &str| -> (String, Option<&Node>) {
            if let Some((p, sa)) = &own
                && let Some(node) = sa.get(key)
            {
                return (format!("{p}.serviceAccount.{key}"), Some(node));
            }
            (
                format!("global.serviceAccount.{key}"),
                global.and_then(|g| g.get(key)),
            )
        };
        let (enabled_path, enabled) = field("enabled");
        let (create_path, create) = field("create");
        let (name_path, name) = field("name");
        ServiceAccount {
            enabled: (enabled_path, Flag::read(enabled)),
            create: (create_path, Flag::read(create)),
            name: name
                .and_then(Node::scalar_text)
                .filter(|s| !s.is_empty())
                .map(|s| (name_path, s)),
        }
    }
}

/// The shape of `key` split at its dots into nested maps (`iam: {amazonaws: {com/role: ...}}`),
/// as `--set a.annotations.iam.amazonaws.com/role=x` makes it; also partly split keys.
fn split_annotation(annotations: &Node, key: &str) -> Option<String> {
    fn nested(node: &Node, rest: &str) -> Option<String> {
        node.entries().iter().find_map(|(k, v)| {
            if k == rest {
                return Some(format!("{k}: ..."));
            }
            let tail = rest.strip_prefix(k.as_str())?.strip_prefix('.')?;
            nested(v, tail).map(|inner| format!("{k}: {{{inner}}}"))
        })
    }
    annotations.entries().iter().find_map(|(k, v)| {
        let tail = key.strip_prefix(k.as_str())?.strip_prefix('.')?;
        nested(v, tail).map(|inner| format!("{k}: {{{inner}}}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn values(text: &'static str) -> Values<'static> {
        Values {
            root: parse("values.yaml", text).unwrap(),
            raw: text,
        }
    }

    #[test]
    fn finds_annotations_where_the_chart_reads_them() {
        let v = values(
            "registry:\n  annotations:\n    iam.amazonaws.com/role: reg\n\
             gitlab:\n  task-runner:\n    annotations:\n      \"iam.amazonaws.com/role\": tr\n\
             global:\n  annotations:\n    iam.amazonaws.com/role: all\n",
        );
        let role = |c| v.kube2iam_role(c).map(|f| f.value);
        assert_eq!(
            role(Component::Registry),
            Some(RoleValue::Valid("reg".into()))
        );
        assert_eq!(
            role(Component::Toolbox),
            Some(RoleValue::Valid("tr".into()))
        );
        assert_eq!(
            role(Component::Sidekiq),
            Some(RoleValue::Valid("all".into()))
        );
        assert_eq!(v.component_path(Component::Toolbox), "gitlab.task-runner");
    }

    #[test]
    fn sees_keys_that_set_split_at_their_dots() {
        let v =
            values("registry:\n  annotations:\n    iam:\n      amazonaws:\n        com/role: r\n");
        let found = v.kube2iam_role(Component::Registry).unwrap();
        let RoleValue::Bad(f) = found.value else {
            panic!("{found:?}")
        };
        assert_eq!(f.code, "annotation-key-split");
        assert!(
            f.message.contains("iam: {amazonaws: {com/role: ...}}"),
            "{}",
            f.message
        );
        assert!(f.fix.contains(r"iam\.amazonaws\.com/role"), "{}", f.fix);
        let partly = values("registry:\n  annotations:\n    iam.amazonaws:\n      com/role: r\n");
        assert!(partly.kube2iam_role(Component::Registry).is_some());
    }

    #[test]
    fn component_service_account_overrides_the_global_one() {
        let v = values(
            "global:\n  serviceAccount:\n    enabled: true\n    name: gitlab\n\
             gitlab:\n  sidekiq:\n    serviceAccount:\n      create: \"false\"\n",
        );
        let sa = v.service_account(Component::Sidekiq);
        assert_eq!(sa.enabled.1, Flag::Bool(true));
        assert_eq!(sa.create.0, "gitlab.sidekiq.serviceAccount.create");
        assert!(
            sa.create.1.truthy(true),
            "a quoted \"false\" is true to Go templates"
        );
        assert_eq!(
            sa.name,
            Some(("global.serviceAccount.name".into(), "gitlab".into()))
        );
        let web = v.service_account(Component::Webservice);
        assert_eq!(
            web.create,
            ("global.serviceAccount.create".into(), Flag::Absent)
        );
    }

    #[test]
    fn irsa_role_from_eks_role_arn_or_annotations() {
        let v = values(
            "global:\n  platform:\n    eksRoleArn: \"arn:aws:iam::123456789012:role/g\"\n\
             registry:\n  serviceAccount:\n    annotations:\n      \
             eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/r\n",
        );
        let global = v.global_irsa_role().unwrap();
        assert_eq!(global.path, "global.platform.eksRoleArn");
        let own = v.own_irsa_role(Component::Registry).unwrap();
        assert_eq!(
            own.value,
            RoleValue::Valid("arn:aws:iam::123456789012:role/r".into())
        );
        assert_eq!(v.own_irsa_role(Component::Webservice), None);
    }
}
