//! `Reflector`: the watch events of pods and of namespaces, folded into a [`PodIndex`].
//!
//! <https://docs.rs/kube-runtime/latest/kube_runtime/watcher/enum.Event.html>
//!
//! Each watcher starts, and after a lost watch (`410 Gone`, a broken connection) starts again,
//! with `Init`, the listed objects as `InitApply`, then `InitDone`; then `Apply` and `Delete`
//! as they happen. The reflector keeps the last complete view of both kinds: a listing is
//! buffered until its `InitDone` and then replaces the index whole ([`PodIndex::replace`]), so
//! pods that left while the watch was down leave the index; `Apply` and `Delete` change one
//! entry at once, and a pod that finishes is removed by the `Apply` that says so.
//!
//! Nothing is published until both pods and namespaces have been listed once: a pod whose
//! namespace is not known yet would get its role without the namespace's restrictions (without
//! `restrict_namespaces` an unknown namespace restricts nothing). Until then pods asking for
//! credentials wait ([`PodIndex::wait_for`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as k8s;
use keyless_imds::{Namespace, Pod, PodIndex};
use kube::runtime::watcher::Event;

use crate::convert;

/// A listing in progress: what was listed so far, and how many pods were left out.
struct Listing<T> {
    items: Vec<T>,
    skipped: usize,
}

// Not derived: the derive would ask `T: Default`.
impl<T> Default for Listing<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            skipped: 0,
        }
    }
}

/// The last complete view of pods and namespaces, and the index it feeds.
pub(crate) struct Reflector {
    index: PodIndex,
    /// Indexed pods by UID.
    pods: BTreeMap<String, Pod>,
    namespaces: BTreeMap<String, Namespace>,
    pod_listing: Option<Listing<Pod>>,
    namespace_listing: Option<Listing<Namespace>>,
    pods_listed: bool,
    namespaces_listed: bool,
}

impl Reflector {
    /// A reflector that will feed `index`; it publishes nothing until both kinds are listed.
    pub(crate) fn new(index: PodIndex) -> Self {
        Self {
            index,
            pods: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            pod_listing: None,
            namespace_listing: None,
            pods_listed: false,
            namespaces_listed: false,
        }
    }

    /// Whether the index is being fed (both kinds listed once).
    fn live(&self) -> bool {
        self.pods_listed && self.namespaces_listed
    }

    /// Folds one event of the pod watcher in.
    pub(crate) fn pod_event(&mut self, event: Event<k8s::Pod>) {
        match event {
            Event::Init => self.pod_listing = Some(Listing::default()),
            Event::InitApply(object) => {
                let listing = self.pod_listing.get_or_insert_with(Listing::default);
                match convert_pod(object) {
                    (_, Some(pod)) => listing.items.push(pod),
                    (_, None) => listing.skipped += 1,
                }
            }
            Event::InitDone => {
                let listing = self.pod_listing.take().unwrap_or_default();
                self.pods = listing
                    .items
                    .into_iter()
                    .map(|pod| (pod.uid.clone(), pod))
                    .collect();
                self.pods_listed = true;
                tracing::info!(
                    pods = self.pods.len(),
                    skipped = listing.skipped,
                    "k8s: pods listed"
                );
                self.publish_all();
            }
            Event::Apply(object) => match convert_pod(object) {
                (_, Some(pod)) => {
                    if self.pods.get(&pod.uid) == Some(&pod) {
                        return; // a change of something the index does not keep
                    }
                    tracing::debug!(namespace = %pod.namespace, pod = %pod.name, ip = %pod.ip, "k8s: pod indexed");
                    self.pods.insert(pod.uid.clone(), pod.clone());
                    if self.live() {
                        self.index.upsert_pod(pod);
                    }
                }
                (Some(uid), None) => self.remove_pod(&uid),
                (None, None) => {}
            },
            Event::Delete(object) => {
                if let Some(uid) = object.metadata.uid {
                    self.remove_pod(&uid);
                }
            }
        }
    }

    /// Folds one event of the namespace watcher in.
    pub(crate) fn namespace_event(&mut self, event: Event<k8s::Namespace>) {
        match event {
            Event::Init => self.namespace_listing = Some(Listing::default()),
            Event::InitApply(object) => {
                let listing = self.namespace_listing.get_or_insert_with(Listing::default);
                match convert_namespace(object) {
                    Some(namespace) => listing.items.push(namespace),
                    None => listing.skipped += 1,
                }
            }
            Event::InitDone => {
                let listing = self.namespace_listing.take().unwrap_or_default();
                self.namespaces = listing
                    .items
                    .into_iter()
                    .map(|ns| (ns.name.clone(), ns))
                    .collect();
                self.namespaces_listed = true;
                tracing::info!(
                    namespaces = self.namespaces.len(),
                    skipped = listing.skipped,
                    "k8s: namespaces listed"
                );
                self.publish_all();
            }
            Event::Apply(object) => {
                if let Some(namespace) = convert_namespace(object) {
                    self.namespaces
                        .insert(namespace.name.clone(), namespace.clone());
                    if self.live() {
                        self.index.upsert_namespace(namespace);
                    }
                }
            }
            Event::Delete(object) => {
                if let Some(name) = object.metadata.name {
                    self.namespaces.remove(&name);
                    if self.live() {
                        self.index.remove_namespace(&name);
                    }
                }
            }
        }
    }

    fn remove_pod(&mut self, uid: &str) {
        if let Some(pod) = self.pods.remove(uid) {
            tracing::debug!(namespace = %pod.namespace, pod = %pod.name, ip = %pod.ip, "k8s: pod removed");
        }
        if self.live() {
            self.index.remove_pod(uid);
        }
    }

    /// Replaces the index with the whole view, once both kinds are listed.
    fn publish_all(&self) {
        if !self.live() {
            return;
        }
        self.index.replace(
            self.pods.values().cloned().collect(),
            self.namespaces.values().cloned().collect(),
        );
        self.index.set_synced(true);
    }
}

/// The pod's UID (when it has one) and the pod when it is to be indexed; a malformed pod is
/// logged and not indexed.
fn convert_pod(object: k8s::Pod) -> (Option<String>, Option<Pod>) {
    let uid = object.metadata.uid.clone();
    let name = convert::display_name(&object.metadata);
    match convert::pod(object) {
        Ok(pod) => (uid, pod),
        Err(reason) => {
            tracing::warn!(pod = %name, %reason, "k8s: pod not indexed");
            (uid, None)
        }
    }
}

/// The namespace; a malformed one is logged and left out.
fn convert_namespace(object: k8s::Namespace) -> Option<Namespace> {
    let name = convert::display_name(&object.metadata);
    convert::namespace(object)
        .inspect_err(
            |reason| tracing::warn!(namespace = %name, %reason, "k8s: namespace not indexed"),
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::IpAddr;

    fn pod(uid: &str, ip: &str, phase: &str, role: &str) -> k8s::Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("pod-{uid}"), "namespace": "shop", "uid": uid,
                         "annotations": {"iam.amazonaws.com/role": role}},
            "spec": {},
            "status": {"phase": phase, "podIP": ip},
        }))
        .unwrap()
    }

    fn namespace(name: &str, permitted: &str) -> k8s::Namespace {
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {"iam.amazonaws.com/permitted": permitted}},
        }))
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A reflector with pods and namespaces listed: `u1` on 10.0.0.1, namespace `shop`.
    fn listed() -> (Reflector, PodIndex) {
        let index = PodIndex::new();
        let mut reflector = Reflector::new(index.clone());
        for event in [
            Event::Init,
            Event::InitApply(pod("u1", "10.0.0.1", "Running", "a")),
            Event::InitDone,
        ] {
            reflector.pod_event(event);
        }
        for event in [
            Event::Init,
            Event::InitApply(namespace("shop", ".*")),
            Event::InitDone,
        ] {
            reflector.namespace_event(event);
        }
        (reflector, index)
    }

    #[test]
    fn publishes_nothing_until_pods_and_namespaces_are_listed() {
        let index = PodIndex::new();
        let mut reflector = Reflector::new(index.clone());
        reflector.pod_event(Event::Init);
        reflector.pod_event(Event::InitApply(pod("u1", "10.0.0.1", "Running", "a")));
        reflector.pod_event(Event::InitDone);
        reflector.pod_event(Event::Apply(pod("u2", "10.0.0.2", "Running", "b")));
        assert!(index.is_empty(), "pods before their namespaces");
        reflector.namespace_event(Event::Init);
        reflector.namespace_event(Event::InitApply(namespace("shop", "a")));
        assert!(index.is_empty(), "a namespace listing half done");
        reflector.namespace_event(Event::InitDone);
        assert_eq!(index.len(), 2);
        assert_eq!(index.by_ip(ip("10.0.0.2")).unwrap().uid, "u2");
        assert_eq!(
            index.namespace("shop").unwrap().annotations["iam.amazonaws.com/permitted"],
            "a"
        );
    }

    #[test]
    fn a_pod_that_finishes_or_is_deleted_leaves_at_once() {
        let (mut reflector, index) = listed();
        reflector.pod_event(Event::Apply(pod("u2", "10.0.0.2", "Running", "b")));
        reflector.pod_event(Event::Apply(pod("u1", "10.0.0.1", "Succeeded", "a")));
        assert!(index.by_ip(ip("10.0.0.1")).is_none());
        reflector.pod_event(Event::Delete(pod("u2", "10.0.0.2", "Running", "b")));
        assert!(index.is_empty());
        // A pod whose address is broken is not served with what it had.
        reflector.pod_event(Event::Apply(pod("u3", "10.0.0.3", "Running", "c")));
        reflector.pod_event(Event::Apply(pod("u3", "not-an-ip", "Running", "c")));
        assert!(index.is_empty());
    }

    #[test]
    fn a_relist_removes_what_left_while_the_watch_was_down() {
        let (mut reflector, index) = listed();
        let mut events = index.subscribe();
        reflector.pod_event(Event::Init);
        reflector.pod_event(Event::InitApply(pod("u2", "10.0.0.2", "Running", "b")));
        assert_eq!(
            index.by_ip(ip("10.0.0.1")).unwrap().uid,
            "u1",
            "kept until the listing is done"
        );
        reflector.pod_event(Event::InitDone);
        assert!(index.by_ip(ip("10.0.0.1")).is_none());
        assert_eq!(index.by_ip(ip("10.0.0.2")).unwrap().uid, "u2");
        let mut seen = Vec::new();
        while let Ok(event) = events.try_recv() {
            seen.push(format!("{event:?}").chars().take(8).collect::<String>());
        }
        seen.sort();
        assert_eq!(seen, ["Removed(", "Upserted"]);
    }

    #[test]
    fn a_namespace_relist_keeps_the_pods() {
        let (mut reflector, index) = listed();
        let mut events = index.subscribe();
        reflector.namespace_event(Event::Init);
        reflector.namespace_event(Event::InitApply(namespace("other", "b")));
        reflector.namespace_event(Event::InitDone);
        assert!(index.namespace("shop").is_none());
        assert!(index.namespace("other").is_some());
        assert_eq!(index.by_ip(ip("10.0.0.1")).unwrap().uid, "u1");
        assert!(
            events.try_recv().is_err(),
            "no pod event for a namespace relist"
        );
        reflector.namespace_event(Event::Apply(namespace("shop", "x")));
        assert!(index.namespace("shop").is_some());
        reflector.namespace_event(Event::Delete(namespace("shop", "x")));
        assert!(index.namespace("shop").is_none());
    }
}
