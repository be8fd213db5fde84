//! The check's result: how each GitLab component will authenticate to S3 and what is wrong,
//! as a human report (`Display`) or as JSON (`Serialize`).

use std::fmt;

use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Works, but not as intended or not everywhere.
    Warning,
    /// The component will not use its role, or will not start.
    Error,
}

/// One thing that is wrong, with a one-line fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// A stable kebab-case name for scripts (`static-keys`, `role-not-a-string`, ...).
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// What to change.
    pub fix: String,
}

impl Finding {
    pub(crate) fn error(code: &'static str, message: String, fix: String) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message,
            fix,
        }
    }

    pub(crate) fn warning(code: &'static str, message: String, fix: String) -> Self {
        Self {
            severity: Severity::Warning,
            code,
            message,
            fix,
        }
    }
}

/// A GitLab component that reaches S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    /// The container registry (`registry-storage.yaml`, docker distribution's S3 driver).
    Registry,
    /// Rails web (`object-storage.yaml`, Fog).
    Webservice,
    /// Rails background jobs (`object-storage.yaml`, Fog).
    Sidekiq,
    /// Backups (`s3cmd.config`); `toolbox`, called `task-runner` before chart 5.0.
    Toolbox,
}

impl Component {
    /// All components, in report order.
    pub const ALL: [Component; 4] = [
        Component::Registry,
        Component::Webservice,
        Component::Sidekiq,
        Component::Toolbox,
    ];

    /// The component's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Component::Registry => "registry",
            Component::Webservice => "webservice",
            Component::Sidekiq => "sidekiq",
            Component::Toolbox => "toolbox",
        }
    }
}

/// How the chart gives pods their role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// kube2iam/kiam: an `iam.amazonaws.com/role` pod annotation, credentials from the metadata
    /// service.
    Annotation,
    /// IAM roles for service accounts: a web identity token and `eks.amazonaws.com/role-arn`.
    Irsa,
    /// Both are configured.
    Both,
    /// No role is configured at all.
    None,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Annotation => "annotation mode (kube2iam/kiam `iam.amazonaws.com/role`)",
            Mode::Irsa => "IRSA mode (IAM roles for service accounts)",
            Mode::Both => "both annotation mode and IRSA",
            Mode::None => "no IAM role configured",
        })
    }
}

/// One component's part of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentReport {
    /// The component.
    pub component: Component,
    /// How it will authenticate, in one line.
    pub auth: String,
    /// Things worth knowing that are not wrong.
    pub notes: Vec<String>,
    /// What is wrong.
    pub findings: Vec<Finding>,
}

/// The whole result of `check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// How the chart gives pods their role.
    pub mode: Mode,
    /// Findings about the setup as a whole (service account, regions, modes).
    pub general: Vec<Finding>,
    /// One entry per component, in `Component::ALL` order.
    pub components: Vec<ComponentReport>,
}

impl Report {
    /// Every finding, general ones first.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.general
            .iter()
            .chain(self.components.iter().flat_map(|c| c.findings.iter()))
    }

    /// How many findings have this severity.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings().filter(|f| f.severity == severity).count()
    }

    /// The worst severity found, `None` when nothing is wrong.
    pub fn worst(&self) -> Option<Severity> {
        self.findings().map(|f| f.severity).max()
    }

    /// The process exit code: 0 with no findings, 1 with only warnings, 2 with errors.
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            None => 0,
            Some(Severity::Warning) => 1,
            Some(Severity::Error) => 2,
        }
    }
}

fn write_finding(f: &mut fmt::Formatter<'_>, finding: &Finding) -> fmt::Result {
    let label = match finding.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    writeln!(f, "  {label}: {} [{}]", finding.message, finding.code)?;
    writeln!(f, "    fix: {}", finding.fix)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "GitLab chart: {}", self.mode)?;
        for finding in &self.general {
            write_finding(f, finding)?;
        }
        for c in &self.components {
            writeln!(f)?;
            writeln!(f, "{}: {}", c.component.name(), c.auth)?;
            for note in &c.notes {
                writeln!(f, "  note: {note}")?;
            }
            for finding in &c.findings {
                write_finding(f, finding)?;
            }
        }
        writeln!(f)?;
        let (errors, warnings) = (self.count(Severity::Error), self.count(Severity::Warning));
        if errors + warnings == 0 {
            return writeln!(f, "no findings");
        }
        let plural = |n: usize, word: &str| {
            if n == 1 {
                format!("{n} {word}")
            } else {
                format!("{n} {word}s")
            }
        };
        writeln!(
            f,
            "{}, {}",
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(general: Vec<Finding>) -> Report {
        Report {
            mode: Mode::Irsa,
            general,
            components: vec![ComponentReport {
                component: Component::Registry,
                auth: "web identity".to_owned(),
                notes: vec!["a note".to_owned()],
                findings: vec![],
            }],
        }
    }

    #[test]
    fn exit_code_follows_the_worst_finding() {
        let w = Finding::warning("w", "m".into(), "f".into());
        let e = Finding::error("e", "m".into(), "f".into());
        assert_eq!(report(vec![]).exit_code(), 0);
        assert_eq!(report(vec![w.clone()]).exit_code(), 1);
        assert_eq!(report(vec![w, e]).exit_code(), 2);
    }

    #[test]
    fn human_report_names_component_auth_and_fix() {
        let e = Finding::error("static-keys", "keys win".into(), "remove them".into());
        let text = report(vec![e]).to_string();
        assert!(text.starts_with("GitLab chart: IRSA mode"), "{text}");
        assert!(text.contains("  error: keys win [static-keys]\n    fix: remove them\n"));
        assert!(text.contains("registry: web identity\n  note: a note\n"));
        assert!(text.ends_with("1 error, 0 warnings\n"), "{text}");
        assert!(report(vec![]).to_string().ends_with("no findings\n"));
    }

    #[test]
    fn json_uses_lowercase_names() {
        let json = serde_json::to_value(report(vec![])).unwrap();
        assert_eq!(json["mode"], "irsa");
        assert_eq!(json["components"][0]["component"], "registry");
    }
}
