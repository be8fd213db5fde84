//! The findings of `keyless doctor`: one check per step of the chain, each with a status, and
//! the verdict and exit code they add up to; printed for people or as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// Works.
    Ok,
    /// Worth knowing; neither good nor bad (a source that is not configured).
    Info,
    /// Not tried, because an earlier check failed.
    Skip,
    /// Works, but not as intended (keys that shadow a role).
    Warn,
    /// Broken.
    Fail,
}

impl Status {
    /// The word of the human output.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Info => "info",
            Self::Skip => "skip",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        }
    }
}

/// One step of the chain and what it found.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Check {
    pub(crate) step: String,
    pub(crate) status: Status,
    pub(crate) message: String,
    /// What to do about it; given for anything not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hint: Option<String>,
    /// Facts behind the message (claims, endpoints, key ids; never a secret).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) details: BTreeMap<String, String>,
}

impl Check {
    pub(crate) fn new(step: impl Into<String>, status: Status, message: impl Into<String>) -> Self {
        Self {
            step: step.into(),
            status,
            message: message.into(),
            hint: None,
            details: BTreeMap::new(),
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn detail(mut self, key: &str, value: impl Into<String>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}

/// What the checks add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    /// Every check is ok or informational: exit 0.
    Works,
    /// Something works other than intended: exit 1.
    Warnings,
    /// Something fails: exit 2.
    Broken,
}

impl Verdict {
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Self::Works => 0,
            Self::Warnings => 1,
            Self::Broken => 2,
        }
    }
}

/// Every check, in the order of the chain.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Report {
    pub(crate) checks: Vec<Check>,
}

impl Report {
    pub(crate) fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    pub(crate) fn verdict(&self) -> Verdict {
        match self.checks.iter().map(|c| c.status).max() {
            Some(Status::Fail) => Verdict::Broken,
            Some(Status::Warn) => Verdict::Warnings,
            _ => Verdict::Works,
        }
    }

    /// `{"status": "works"|"warnings"|"broken", "checks": [...]}`.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({ "status": self.verdict(), "checks": self.checks })
    }

    /// One line per check, `STATUS STEP MESSAGE`, with the hint indented under anything not ok,
    /// and the verdict last.
    pub(crate) fn human(&self) -> String {
        let width = self
            .checks
            .iter()
            .map(|c| c.step.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for check in &self.checks {
            let _ = writeln!(
                out,
                "{:<4}  {:<width$}  {}",
                check.status.word(),
                check.step,
                check.message
            );
            if let Some(hint) = check.hint.as_deref().filter(|_| check.status != Status::Ok) {
                for line in hint.lines() {
                    let _ = writeln!(out, "{:<4}  {:<width$}  → {line}", "", "");
                }
            }
        }
        let _ = writeln!(
            out,
            "\n{}",
            match self.verdict() {
                Verdict::Works => "works (exit 0)",
                Verdict::Warnings => "works, with warnings (exit 1)",
                Verdict::Broken => "broken (exit 2)",
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_status_decides_the_verdict_and_exit_code() {
        let mut report = Report::default();
        assert_eq!(report.verdict(), Verdict::Works);
        report.push(Check::new("keys", Status::Ok, "none"));
        report.push(Check::new("imds", Status::Info, "disabled"));
        report.push(Check::new("read", Status::Skip, "not tried"));
        assert_eq!(report.verdict().exit_code(), 0);
        report.push(Check::new("keys", Status::Warn, "shadow the role"));
        assert_eq!(report.verdict(), Verdict::Warnings);
        assert_eq!(report.verdict().exit_code(), 1);
        report.push(Check::new("write", Status::Fail, "denied"));
        assert_eq!(report.verdict(), Verdict::Broken);
        assert_eq!(report.verdict().exit_code(), 2);
    }

    #[test]
    fn json_has_the_status_and_the_checks_with_optional_details() {
        let mut report = Report::default();
        report.push(Check::new("imds", Status::Info, "disabled"));
        report.push(
            Check::new("write s3://b", Status::Fail, "denied")
                .hint("grant s3:PutObject")
                .detail("permission", "s3:PutObject"),
        );
        let json = report.json();
        assert_eq!(json["status"], "broken");
        assert_eq!(json["checks"][0]["step"], "imds");
        assert_eq!(json["checks"][0]["status"], "info");
        assert!(json["checks"][0].get("details").is_none());
        assert_eq!(json["checks"][1]["status"], "fail");
        assert_eq!(json["checks"][1]["details"]["permission"], "s3:PutObject");
    }

    #[test]
    fn human_output_aligns_steps_and_indents_hints_of_what_is_not_ok() {
        let mut report = Report::default();
        report.push(Check::new("keys", Status::Ok, "none").hint("never shown"));
        report
            .push(Check::new("write s3://b", Status::Fail, "denied").hint("grant it\nthen retry"));
        let text = report.human();
        assert_eq!(
            text,
            "ok    keys          none\n\
             FAIL  write s3://b  denied\n\
             \x20                   → grant it\n\
             \x20                   → then retry\n\
             \nbroken (exit 2)\n"
        );
    }
}
