//! [`mutate`]: the JSON Patch that gives a pod what its service account asks for.
//!
//! What each container gets (init containers, native sidecars among them, then containers;
//! never ephemeral containers; minus `eks.amazonaws.com/skip-containers`), appended after its
//! own `env`, each only when the container does not set it already (by name, in `env`):
//!
//! 1. `AWS_STS_REGIONAL_ENDPOINTS=regional`, with regional STS.
//! 2. `AWS_DEFAULT_REGION` and `AWS_REGION`, with a region, unless either is set (either
//!    suppresses both, as in AWS's webhook).
//! 3. `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE` (web identity) or
//!    `AWS_CONTAINER_CREDENTIALS_FULL_URI` and `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`
//!    (container credentials), unless either of the pair is set (either suppresses both, as in
//!    AWS's webhook; half a pair set by the user gets a warning, since the SDKs then skip it).
//! 4. Keyless's: `AWS_ENDPOINT_URL_STS` and `AWS_ENDPOINT_URL_S3`, each unless set, and neither
//!    when the container sets `AWS_ENDPOINT_URL` (the user's choice for every service); then
//!    `AWS_CA_BUNDLE`, with a CA bundle.
//!
//! and the read-only mount of the token (and of the CA bundle), unless a mount of that name is
//! there; a mount of another volume at the same path is a conflict, warned of and left alone.
//! The pod gets the projected token volume unless it has one of that name; a volume of that
//! name that is not a service-account token (AWS's issue #315) leaves the pod unmutated, with a
//! warning. A pod running as a non-root user without `fsGroup` gets `fsGroup` (its `runAsGroup`,
//! else its `runAsUser`), so that the kubelet makes the token readable by its group, which every
//! container of the pod is in (AWS leaves this to the user: its issue #8). Windows pods (by
//! `nodeSelector`) get Windows paths in the environment.
//!
//! Every operation is an `add` at the place it changes, computed on the raw JSON: nothing of
//! the pod is re-serialized, so fields this crate does not know survive (AWS's issues #84,
//! #208, #114), and a pod that has everything gets no operation at all (reinvocation is safe,
//! and a container added by a later webhook gets its share: AWS's issue #91).

use std::collections::{BTreeMap, HashSet};

use keyless_imds::{Namespace, Pod, ROLE_ANNOTATION, Resolution, RoleResolver};
use serde_json::{Value, json};

use crate::identity::{Identity, IdentityKind, identity};
use crate::{
    Associations, CA_MOUNT_PATH, CA_VOLUME, DEFAULT_AUDIENCE, DEFAULT_CONTAINER_CREDENTIALS_URI,
    DEFAULT_TOKEN_EXPIRATION, IRSA_MOUNT_PATH, IRSA_TOKEN_FILE, POD_IDENTITY_LABEL,
    POD_IDENTITY_MOUNT_PATH, POD_IDENTITY_TOKEN_FILE, S3_ENDPOINT_ANNOTATION, SKIP_CONTAINERS,
    SKIP_LABEL, STS_ENDPOINT_ANNOTATION, ServiceAccount,
};

/// A ConfigMap holding the CA bundle that signs Keyless's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle {
    /// The ConfigMap's name, in the pod's namespace.
    pub config_map: String,
    /// Its key holding the PEM bundle.
    pub key: String,
}

/// The webhook's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The web-identity token's audience when the service account names none.
    pub audience: String,
    /// The token's lifetime when neither pod nor service account says, in seconds.
    pub token_expiration: i64,
    /// Where the web-identity token is mounted.
    pub mount_path: String,
    /// The region given to pods (`AWS_REGION`, `AWS_DEFAULT_REGION`); none when `None`.
    pub region: Option<String>,
    /// Whether pods use the regional STS endpoint unless the service account says.
    pub regional_sts: bool,
    /// `AWS_ENDPOINT_URL_STS` (a namespace's or service account's annotation overrides it).
    pub sts_endpoint: Option<String>,
    /// `AWS_ENDPOINT_URL_S3` (a namespace's or service account's annotation overrides it).
    pub s3_endpoint: Option<String>,
    /// The CA bundle mounted and named in `AWS_CA_BUNDLE`.
    pub ca_bundle: Option<CaBundle>,
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub container_credentials_uri: String,
    /// Whether a non-root pod without `fsGroup` gets one, so that a kubelet before 1.19 (which
    /// writes the token 0600 for root) lets it read its token.
    pub token_fs_group: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            audience: DEFAULT_AUDIENCE.into(),
            token_expiration: DEFAULT_TOKEN_EXPIRATION,
            mount_path: IRSA_MOUNT_PATH.into(),
            region: None,
            regional_sts: false,
            sts_endpoint: None,
            s3_endpoint: None,
            ca_bundle: None,
            container_credentials_uri: DEFAULT_CONTAINER_CREDENTIALS_URI.into(),
            token_fs_group: false,
        }
    }
}

/// What became of a pod, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Operations were added.
    Mutated(IdentityKind),
    /// The pod has everything already.
    AlreadyMutated,
    /// Its service account asks for nothing.
    NoIdentity,
    /// The skip label.
    Skipped,
    /// Something of the user's stands in the way (the warning says what).
    Conflict,
}

impl Outcome {
    /// A short word for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Mutated(IdentityKind::WebIdentity) => "mutated (web identity)",
            Self::Mutated(IdentityKind::PodIdentity) => "mutated (container credentials)",
            Self::AlreadyMutated => "already mutated",
            Self::NoIdentity => "no role",
            Self::Skipped => "skipped by label",
            Self::Conflict => "not mutated (conflict)",
        }
    }
}

/// The answer for one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// The JSON Patch operations, empty when none are needed.
    pub patch: Vec<Value>,
    /// Admission warnings, which `kubectl` prints to whoever created the pod.
    pub warnings: Vec<String>,
    /// What became of the pod.
    pub outcome: Outcome,
}

/// The pod's service account: `spec.serviceAccountName`, else the deprecated
/// `spec.serviceAccount`, else `default` (as the API server's defaulting does).
pub fn service_account_name(pod: &Value) -> &str {
    let spec = &pod["spec"];
    [&spec["serviceAccountName"], &spec["serviceAccount"]]
        .into_iter()
        .find_map(|v| v.as_str().filter(|s| !s.is_empty()))
        .unwrap_or("default")
}

/// The JSON Patch for `pod` (the raw object of the AdmissionReview) in `namespace`, whose
/// service account is `account` (`None` when it does not exist) and whose namespace is
/// `namespace_object`. `roles` checks a kube2iam `iam.amazonaws.com/role` annotation against
/// the namespace's rules, as the agent will, and warns of a refusal to come.
pub fn mutate(
    settings: &Settings,
    roles: &RoleResolver,
    associations: &Associations,
    namespace: &str,
    pod: &Value,
    account: Option<&ServiceAccount>,
    namespace_object: Option<&Namespace>,
) -> Mutation {
    let view = PodView::new(pod, namespace);
    let mut warnings = kube2iam_warnings(roles, &view, namespace_object);
    let done = |outcome, warnings| Mutation {
        patch: Vec::new(),
        warnings,
        outcome,
    };
    if view.labels.contains_key(SKIP_LABEL) {
        return done(Outcome::Skipped, warnings);
    }
    let Some(identity) = identity(
        settings,
        namespace,
        &view.service_account,
        account,
        &view.annotations,
        associations,
    ) else {
        return done(Outcome::NoIdentity, warnings);
    };
    warnings.extend(identity.warnings.iter().cloned());
    let mut plan = Plan {
        settings,
        view: &view,
        identity: &identity,
        endpoints: Endpoints::of(settings, account, namespace_object),
        patch: Vec::new(),
        warnings,
    };
    if let Err(conflict) = plan.volumes() {
        plan.warnings.push(conflict);
        return done(Outcome::Conflict, plan.warnings);
    }
    plan.containers();
    let outcome = if plan.patch.is_empty() {
        Outcome::AlreadyMutated
    } else {
        Outcome::Mutated(identity.kind)
    };
    Mutation {
        patch: plan.patch,
        warnings: plan.warnings,
        outcome,
    }
}

/// The parts of the pod the rules read.
pub(crate) struct PodView<'a> {
    pub(crate) pod: &'a Value,
    pub(crate) namespace: &'a str,
    pub(crate) name: String,
    pub(crate) service_account: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) annotations: BTreeMap<String, String>,
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

impl<'a> PodView<'a> {
    pub(crate) fn new(pod: &'a Value, namespace: &'a str) -> Self {
        let metadata = &pod["metadata"];
        let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        Self {
            pod,
            namespace,
            name: text(&metadata["name"])
                .or_else(|| text(&metadata["generateName"]))
                .unwrap_or_default(),
            service_account: service_account_name(pod).to_owned(),
            labels: string_map(&metadata["labels"]),
            annotations: string_map(&metadata["annotations"]),
        }
    }

    fn spec(&self) -> &Value {
        &self.pod["spec"]
    }

    fn windows(&self) -> bool {
        let selector = &self.spec()["nodeSelector"];
        ["kubernetes.io/os", "beta.kubernetes.io/os"]
            .iter()
            .any(|key| selector[key].as_str() == Some("windows"))
    }

    /// The volume named `name`.
    pub(crate) fn volume(&self, name: &str) -> Option<&Value> {
        self.spec()["volumes"]
            .as_array()?
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
    }
}

/// Whether `volume` is a projected volume with a service-account token.
pub(crate) fn is_token_volume(volume: &Value) -> bool {
    volume["projected"]["sources"]
        .as_array()
        .is_some_and(|sources| {
            sources
                .iter()
                .any(|s| s.get("serviceAccountToken").is_some())
        })
}

/// The warning for a kube2iam role the agent will refuse.
fn kube2iam_warnings(
    roles: &RoleResolver,
    view: &PodView<'_>,
    namespace: Option<&Namespace>,
) -> Vec<String> {
    if !view.annotations.contains_key(ROLE_ANNOTATION) {
        return Vec::new();
    }
    let pod = Pod {
        // Resolution reads no address; the pod has none before it is scheduled.
        ip: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        namespace: view.namespace.to_owned(),
        name: view.name.clone(),
        uid: String::new(),
        service_account: view.service_account.clone(),
        annotations: view.annotations.clone(),
    };
    match roles.resolve(&pod, namespace) {
        Resolution::Forbidden { role, reason } => vec![format!(
            "{ROLE_ANNOTATION} `{role}` will be refused by the metadata agent: {reason}"
        )],
        Resolution::Role(_) | Resolution::NoRole => Vec::new(),
    }
}

/// The endpoints a pod is sent to.
struct Endpoints {
    sts: Option<String>,
    s3: Option<String>,
}

impl Endpoints {
    /// The service account's annotation, else the namespace's, else the flag.
    fn of(
        settings: &Settings,
        account: Option<&ServiceAccount>,
        namespace: Option<&Namespace>,
    ) -> Self {
        let pick = |key: &str, flag: &Option<String>| {
            account
                .and_then(|a| a.annotation(key))
                .or_else(|| {
                    namespace.and_then(|ns| crate::directory::annotation(&ns.annotations, key))
                })
                .map(str::to_owned)
                .or_else(|| flag.clone())
        };
        Self {
            sts: pick(STS_ENDPOINT_ANNOTATION, &settings.sts_endpoint),
            s3: pick(S3_ENDPOINT_ANNOTATION, &settings.s3_endpoint),
        }
    }
}

/// The patch being computed.
struct Plan<'a> {
    settings: &'a Settings,
    view: &'a PodView<'a>,
    identity: &'a Identity,
    endpoints: Endpoints,
    patch: Vec<Value>,
    warnings: Vec<String>,
}

/// JSON Pointer escaping of one path segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

impl Plan<'_> {
    fn add(&mut self, path: String, value: Value) {
        self.patch
            .push(json!({"op": "add", "path": path, "value": value}));
    }

    /// Adds `items` to the array at `path` of `parent`: the whole array when there is none.
    fn append(&mut self, parent: &Value, field: &str, path: &str, items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        if parent[field].is_array() {
            for item in items {
                self.add(format!("{path}/{field}/-"), item);
            }
        } else {
            self.add(format!("{path}/{field}"), Value::Array(items));
        }
    }

    fn mount_path(&self) -> &str {
        match self.identity.kind {
            IdentityKind::WebIdentity => &self.settings.mount_path,
            IdentityKind::PodIdentity => POD_IDENTITY_MOUNT_PATH,
        }
    }

    /// A file of a mounted volume, as the container sees it.
    fn file(&self, mount: &str, file: &str) -> String {
        let path = format!("{}/{file}", mount.trim_end_matches('/'));
        if self.view.windows() {
            format!("C:{}", path.replace('/', "\\"))
        } else {
            path
        }
    }

    /// The label, the token volume (and the CA bundle's), and `fsGroup`; an error when a volume
    /// of the token's name is something else.
    fn volumes(&mut self) -> Result<(), String> {
        let kind = self.identity.kind;
        let token_volume = kind.volume();
        let spec = self.view.spec();
        let mut volumes = Vec::new();
        match self.view.volume(token_volume) {
            Some(existing) if is_token_volume(existing) => {}
            Some(_) => {
                return Err(format!(
                    "the pod has a volume named `{token_volume}` that is not a service-account token; it gets no credentials (rename that volume)"
                ));
            }
            None => {
                let path = match kind {
                    IdentityKind::WebIdentity => IRSA_TOKEN_FILE,
                    IdentityKind::PodIdentity => POD_IDENTITY_TOKEN_FILE,
                };
                volumes.push(
                    json!({"name": token_volume, "projected": {"sources": [{"serviceAccountToken": {
                        "audience": self.identity.audience,
                        "expirationSeconds": self.identity.expiration,
                        "path": path,
                    }}]}}),
                );
            }
        }
        if let Some(ca) = self.settings.ca_bundle.clone() {
            match self.view.volume(CA_VOLUME) {
                Some(existing) if existing.get("configMap").is_some() => {}
                Some(_) => self.warnings.push(format!(
                    "the pod has a volume named `{CA_VOLUME}` that is not a ConfigMap; the CA bundle is not mounted"
                )),
                None => volumes.push(json!({"name": CA_VOLUME, "configMap": {
                    "name": ca.config_map,
                    "items": [{"key": ca.key, "path": ca.key}],
                }})),
            }
        }
        if kind == IdentityKind::PodIdentity && !self.view.labels.contains_key(POD_IDENTITY_LABEL) {
            if self.view.pod["metadata"]["labels"].is_object() {
                self.add(
                    format!("/metadata/labels/{}", escape(POD_IDENTITY_LABEL)),
                    json!("enabled"),
                );
            } else {
                self.add(
                    "/metadata/labels".into(),
                    json!({POD_IDENTITY_LABEL: "enabled"}),
                );
            }
        }
        self.append(spec, "volumes", "/spec", volumes);
        self.fs_group();
        Ok(())
    }

    /// `fsGroup` for a non-root pod that has none.
    fn fs_group(&mut self) {
        if !self.settings.token_fs_group || self.view.windows() {
            return;
        }
        let spec = self.view.spec();
        let context = &spec["securityContext"];
        if !context["fsGroup"].is_null() {
            return;
        }
        let id = |context: &Value| {
            ["runAsGroup", "runAsUser"]
                .iter()
                .find_map(|key| context[key].as_i64().filter(|&id| id > 0))
        };
        let containers = ["initContainers", "containers"]
            .iter()
            .filter_map(|field| spec[field].as_array())
            .flatten();
        let Some(group) = id(context).or_else(|| {
            containers
                .into_iter()
                .find_map(|c| id(&c["securityContext"]))
        }) else {
            return;
        };
        if context.is_object() {
            self.add("/spec/securityContext/fsGroup".into(), json!(group));
        } else {
            self.add("/spec/securityContext".into(), json!({"fsGroup": group}));
        }
    }

    /// Each container's environment and mounts.
    fn containers(&mut self) {
        let skip: HashSet<String> = self
            .view
            .annotations
            .get(SKIP_CONTAINERS)
            .map(|csv| {
                csv.split(',')
                    .map(|name| name.trim().to_owned())
                    .filter(|name| !name.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let spec = self.view.spec();
        for field in ["initContainers", "containers"] {
            let Some(containers) = spec[field].as_array() else {
                continue;
            };
            for (index, container) in containers.iter().enumerate() {
                let name = container["name"].as_str().unwrap_or("");
                if skip.contains(name) {
                    continue;
                }
                let path = format!("/spec/{field}/{index}");
                self.container(container, name, &path);
            }
        }
    }

    fn container(&mut self, container: &Value, name: &str, path: &str) {
        // Mounts first: AWS_CA_BUNDLE names a file only a mounted CA volume provides.
        let (mounts, ca_mounted) = self.mounts(container, name);
        let set: HashSet<&str> = container["env"]
            .as_array()
            .map(|env| env.iter().filter_map(|e| e["name"].as_str()).collect())
            .unwrap_or_default();
        let has = |name: &str| set.contains(name);
        let mut env = Vec::new();
        let var = |name: &str, value: &str| json!({"name": name, "value": value});
        if self.identity.regional_sts && !has("AWS_STS_REGIONAL_ENDPOINTS") {
            env.push(var("AWS_STS_REGIONAL_ENDPOINTS", "regional"));
        }
        if let Some(region) = &self.settings.region
            && !has("AWS_DEFAULT_REGION")
            && !has("AWS_REGION")
        {
            env.push(var("AWS_DEFAULT_REGION", region));
            env.push(var("AWS_REGION", region));
        }
        let (first, second, first_value, token_file) = match self.identity.kind {
            IdentityKind::WebIdentity => (
                "AWS_ROLE_ARN",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                self.identity.role.clone(),
                self.file(self.mount_path(), IRSA_TOKEN_FILE),
            ),
            IdentityKind::PodIdentity => (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                self.settings.container_credentials_uri.clone(),
                self.file(self.mount_path(), POD_IDENTITY_TOKEN_FILE),
            ),
        };
        match (has(first), has(second)) {
            (false, false) => {
                env.push(var(first, &first_value));
                env.push(var(second, &token_file));
            }
            (true, false) | (false, true) => {
                let (set, missing) = if has(first) {
                    (first, second)
                } else {
                    (second, first)
                };
                self.warnings.push(format!(
                    "container `{name}` sets {set} but not {missing}; neither is added, and the AWS SDKs need both"
                ));
            }
            (true, true) => {}
        }
        if !has("AWS_ENDPOINT_URL") {
            for (key, value) in [
                ("AWS_ENDPOINT_URL_STS", &self.endpoints.sts),
                ("AWS_ENDPOINT_URL_S3", &self.endpoints.s3),
            ] {
                if let Some(value) = value
                    && !has(key)
                {
                    env.push(var(key, value));
                }
            }
        }
        if let Some(ca) = &self.settings.ca_bundle
            && ca_mounted
            && !has("AWS_CA_BUNDLE")
        {
            env.push(var("AWS_CA_BUNDLE", &self.file(CA_MOUNT_PATH, &ca.key)));
        }
        self.append(container, "env", path, env);
        self.append(container, "volumeMounts", path, mounts);
    }

    /// The mounts `container` lacks, and whether the CA bundle is (or will be) mounted in it.
    fn mounts(&mut self, container: &Value, name: &str) -> (Vec<Value>, bool) {
        let ca_volume_usable = self
            .view
            .volume(CA_VOLUME)
            .is_none_or(|v| v.get("configMap").is_some());
        let wanted = [
            Some((self.identity.kind.volume(), self.mount_path().to_owned())),
            self.settings
                .ca_bundle
                .as_ref()
                .filter(|_| ca_volume_usable)
                .map(|_| (CA_VOLUME, CA_MOUNT_PATH.to_owned())),
        ];
        let existing = container["volumeMounts"].as_array();
        let mut mounts = Vec::new();
        let mut ca_mounted = false;
        for (volume, mount_path) in wanted.into_iter().flatten() {
            let mounts_of = |key: &str, value: &str| {
                existing.is_some_and(|m| m.iter().any(|m| m[key].as_str() == Some(value)))
            };
            if mounts_of("name", volume) {
                ca_mounted |= volume == CA_VOLUME;
                continue;
            }
            if mounts_of("mountPath", &mount_path) {
                self.warnings.push(format!(
                    "container `{name}` mounts another volume at {mount_path}; `{volume}` is not mounted"
                ));
                continue;
            }
            ca_mounted |= volume == CA_VOLUME;
            mounts.push(json!({"name": volume, "readOnly": true, "mountPath": mount_path}));
        }
        (mounts, ca_mounted)
    }
}
