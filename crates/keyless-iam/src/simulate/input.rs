//! `SimulateCustomPolicy`'s request, as `aws iam simulate-custom-policy --cli-input-json` takes it.

use base64::Engine as _;
use serde::Deserialize;

use crate::IamError;

/// The request. Field names and types follow the IAM API model, so awscli's
/// `--cli-input-json` files work unchanged; unknown fields are refused as awscli refuses them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SimulateCustomPolicyInput {
    /// Identity-based policy documents (JSON text). Required.
    pub policy_input_list: Vec<String>,
    /// Permissions boundary documents.
    #[serde(default)]
    pub permissions_boundary_policy_input_list: Vec<String>,
    /// Actions to evaluate, such as `s3:GetObject`. Required; no wildcards.
    pub action_names: Vec<String>,
    /// Resources to evaluate each action against; `*` when empty.
    #[serde(default)]
    pub resource_arns: Vec<String>,
    /// A resource-based policy (a bucket policy) of the resources.
    pub resource_policy: Option<String>,
    /// The account that owns the resources (`arn:aws:iam::ACCOUNT:root`); the caller's account
    /// when absent.
    pub resource_owner: Option<String>,
    /// The caller, matched against the resource policy's `Principal`.
    pub caller_arn: Option<String>,
    /// Values of condition keys.
    #[serde(default)]
    pub context_entries: Vec<ContextEntry>,
    /// Accepted for compatibility; EC2 scenarios do not apply to Keyless.
    pub resource_handling_option: Option<String>,
    /// Accepted for compatibility; all results are returned at once.
    pub max_items: Option<u32>,
    /// Accepted for compatibility; all results are returned at once.
    pub marker: Option<String>,
}

/// One condition key and its values.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ContextEntry {
    /// The key, such as `aws:SourceIp`.
    pub context_key_name: String,
    /// Its values: one for a single-valued type, any number for a list type.
    #[serde(default)]
    pub context_key_values: Vec<String>,
    /// The type of the values.
    pub context_key_type: ContextKeyType,
}

/// The types IAM's simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub enum ContextKeyType {
    String,
    StringList,
    Numeric,
    NumericList,
    Boolean,
    BooleanList,
    Ip,
    IpList,
    Binary,
    BinaryList,
    Date,
    DateList,
}

impl ContextKeyType {
    /// Whether the key holds a list of values (a multivalued key).
    pub fn is_list(self) -> bool {
        matches!(
            self,
            Self::StringList
                | Self::NumericList
                | Self::BooleanList
                | Self::IpList
                | Self::BinaryList
                | Self::DateList
        )
    }

    fn accepts(self, value: &str) -> bool {
        match self {
            Self::String | Self::StringList => true,
            Self::Numeric | Self::NumericList => {
                value.trim().parse::<f64>().is_ok_and(f64::is_finite)
            }
            Self::Boolean | Self::BooleanList => {
                value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false")
            }
            Self::Ip | Self::IpList => value.trim().parse::<std::net::IpAddr>().is_ok(),
            Self::Binary | Self::BinaryList => base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .is_ok(),
            Self::Date | Self::DateList => keyless_policy::parse_date(value).is_some(),
        }
    }

    /// The type's name as IAM writes it (`stringList`).
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::StringList => "stringList",
            Self::Numeric => "numeric",
            Self::NumericList => "numericList",
            Self::Boolean => "boolean",
            Self::BooleanList => "booleanList",
            Self::Ip => "ip",
            Self::IpList => "ipList",
            Self::Binary => "binary",
            Self::BinaryList => "binaryList",
            Self::Date => "date",
            Self::DateList => "dateList",
        }
    }
}

impl std::str::FromStr for ContextKeyType {
    type Err = IamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_TYPES
            .iter()
            .copied()
            .find(|t| t.name() == s)
            .ok_or_else(|| invalid(format!("unknown ContextKeyType `{s}`")))
    }
}

const ALL_TYPES: [ContextKeyType; 12] = [
    ContextKeyType::String,
    ContextKeyType::StringList,
    ContextKeyType::Numeric,
    ContextKeyType::NumericList,
    ContextKeyType::Boolean,
    ContextKeyType::BooleanList,
    ContextKeyType::Ip,
    ContextKeyType::IpList,
    ContextKeyType::Binary,
    ContextKeyType::BinaryList,
    ContextKeyType::Date,
    ContextKeyType::DateList,
];

/// The most action and resource pairs one simulation evaluates: it bounds the work and the
/// memory one request can ask for.
pub(crate) const MAX_EVALUATIONS: usize = 10_000;

fn invalid(message: String) -> IamError {
    IamError::InvalidInput(message)
}

impl SimulateCustomPolicyInput {
    /// Checks the request; `other_policies` is whether policies come from elsewhere too (managed
    /// policies named by ARN), which lets `PolicyInputList` be empty.
    pub(super) fn validate(&self, other_policies: bool) -> Result<(), IamError> {
        if self.policy_input_list.is_empty() && !other_policies {
            return Err(invalid(
                "PolicyInputList must hold at least one policy".into(),
            ));
        }
        if self.action_names.is_empty() {
            return Err(invalid("ActionNames must hold at least one action".into()));
        }
        for action in &self.action_names {
            if !(3..=128).contains(&action.len()) || !action.contains(':') {
                return Err(invalid(format!(
                    "ActionNames: `{action}` is not an action name such as `s3:GetObject`"
                )));
            }
            if action.contains(['*', '?']) {
                return Err(invalid(format!(
                    "ActionNames: `{action}` has a wildcard; name each action to simulate"
                )));
            }
        }
        let pairs = self.action_names.len() * self.resource_arns.len().max(1);
        if pairs > MAX_EVALUATIONS {
            return Err(invalid(format!(
                "{pairs} action and resource pairs asked for; at most {MAX_EVALUATIONS} are simulated at once"
            )));
        }
        for arn in &self.resource_arns {
            if arn.is_empty() || arn.len() > 2048 {
                return Err(invalid(format!(
                    "ResourceArns: `{arn}` must be 1 to 2048 characters"
                )));
            }
        }
        if self.resource_policy.is_some() && self.caller_arn.is_none() {
            return Err(invalid(
                "CallerArn is required with a ResourcePolicy, so that its Principal can be matched"
                    .into(),
            ));
        }
        if let Some(max) = self.max_items.filter(|m| !(1..=1000).contains(m)) {
            return Err(invalid(format!(
                "MaxItems `{max}` must be between 1 and 1000"
            )));
        }
        for entry in &self.context_entries {
            let name = &entry.context_key_name;
            if !(5..=256).contains(&name.len()) {
                return Err(invalid(format!(
                    "ContextKeyName `{name}` must be 5 to 256 characters"
                )));
            }
            let kind = entry.context_key_type;
            if !kind.is_list() && entry.context_key_values.len() != 1 {
                return Err(invalid(format!(
                    "ContextKeyValues of `{name}` must hold exactly one value for type {}",
                    kind.name()
                )));
            }
            if let Some(bad) = entry.context_key_values.iter().find(|v| !kind.accepts(v)) {
                return Err(invalid(format!(
                    "ContextKeyValues of `{name}`: `{bad}` is not a valid {}",
                    kind.name()
                )));
            }
        }
        Ok(())
    }

    /// The request context built from `ContextEntries`.
    pub(super) fn context(&self) -> Result<keyless_policy::Context, IamError> {
        let mut ctx = keyless_policy::Context::new();
        for entry in &self.context_entries {
            if ctx.contains(&entry.context_key_name) {
                return Err(invalid(format!(
                    "ContextKeyName `{}` is given more than once",
                    entry.context_key_name
                )));
            }
            if entry.context_key_type.is_list() {
                ctx.insert_multi(
                    entry.context_key_name.clone(),
                    entry.context_key_values.iter().cloned(),
                );
            } else {
                ctx.insert(
                    entry.context_key_name.clone(),
                    entry.context_key_values[0].clone(),
                );
            }
        }
        Ok(ctx)
    }
}
