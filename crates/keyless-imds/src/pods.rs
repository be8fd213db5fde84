//! `PodIndex`: the pods of this node by IP address and by UID, and their namespaces, as the pod
//! source last told; with events for prefetching, and a short wait for pods the source has not
//! told of yet (a pod may ask for credentials before the watch has seen it: kube2iam issue #46,
//! <https://github.com/jtblin/kube2iam/issues/46>).
//!
//! An IP address answers for one pod only: when a pod is removed, or another pod takes its
//! address, the old mapping dies at once, so a new pod on a reused address never gets the old
//! pod's role. Pods without an address, or that have finished (`Succeeded`, `Failed`), are not
//! indexed at all; the source leaves them out.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

/// How many events a slow subscriber may fall behind before it is told it lagged.
const EVENT_CAPACITY: usize = 1024;

/// A running pod of this node, as much of it as role resolution needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Its address, the source address of its requests.
    pub ip: IpAddr,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID, unique over the cluster's lifetime (names and addresses are reused).
    pub uid: String,
    /// Its service account.
    pub service_account: String,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A namespace and its annotations (which restrict the roles of its pods).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Its name.
    pub name: String,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A change of the index, for subscribers that prefetch credentials or drop them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodEvent {
    /// A pod appeared or changed (its address, annotations, service account).
    Upserted(Arc<Pod>),
    /// A pod left: removed by the source, finished, or its address taken by another pod.
    Removed(Arc<Pod>),
}

#[derive(Default)]
struct State {
    by_uid: HashMap<String, Arc<Pod>>,
    by_ip: HashMap<IpAddr, String>,
    namespaces: HashMap<String, Arc<Namespace>>,
}

impl State {
    /// Indexes `pod`; returns the pods it displaced (another pod on its address).
    fn insert(&mut self, pod: Arc<Pod>) -> Vec<Arc<Pod>> {
        let mut displaced = Vec::new();
        if let Some(old) = self.by_uid.get(&pod.uid)
            && old.ip != pod.ip
            && self.by_ip.get(&old.ip) == Some(&pod.uid)
        {
            self.by_ip.remove(&old.ip);
        }
        if let Some(holder) = self.by_ip.insert(pod.ip, pod.uid.clone())
            && holder != pod.uid
            && let Some(old) = self.by_uid.remove(&holder)
        {
            displaced.push(old);
        }
        self.by_uid.insert(pod.uid.clone(), pod);
        displaced
    }

    fn remove(&mut self, uid: &str) -> Option<Arc<Pod>> {
        let pod = self.by_uid.remove(uid)?;
        if self.by_ip.get(&pod.ip).map(String::as_str) == Some(uid) {
            self.by_ip.remove(&pod.ip);
        }
        Some(pod)
    }
}

struct Inner {
    state: RwLock<State>,
    events: broadcast::Sender<PodEvent>,
    /// Bumped on every change, so that [`PodIndex::wait_for`] wakes up.
    generation: watch::Sender<u64>,
    /// Whether the pod source has delivered a full, current listing (readiness).
    synced: watch::Sender<bool>,
}

/// The pods of this node by address and UID, and the namespaces. Cheap to clone: clones share
/// one index.
#[derive(Clone)]
pub struct PodIndex {
    inner: Arc<Inner>,
}

impl Default for PodIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PodIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.read();
        f.debug_struct("PodIndex")
            .field("pods", &state.by_uid.len())
            .field("namespaces", &state.namespaces.len())
            .finish()
    }
}

impl PodIndex {
    /// An empty index.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (generation, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                state: RwLock::default(),
                events,
                generation,
                synced: watch::channel(false).0,
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, events: Vec<PodEvent>) {
        for event in events {
            // No subscriber is not an error.
            let _ = self.inner.events.send(event);
        }
        self.inner
            .generation
            .send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Records whether the pod source has delivered a full, current listing: what the agent's
    /// `/readyz` waits for. A source that loses its pods (a pods file gone) clears it.
    pub fn set_synced(&self, synced: bool) {
        self.inner.synced.send_if_modified(|s| {
            let changed = *s != synced;
            *s = synced;
            changed
        });
    }

    /// Whether the pod source has delivered a full, current listing.
    pub fn is_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// [`PodIndex::is_synced`] as it changes, for readiness.
    pub fn watch_synced(&self) -> watch::Receiver<bool> {
        self.inner.synced.subscribe()
    }

    /// Replaces everything with `pods` and `namespaces` (a full resync). Pods that left are
    /// announced as removed, new and changed ones as upserted; unchanged ones are not
    /// announced. An address that two pods of `pods` claim answers for neither.
    pub fn replace(&self, pods: Vec<Pod>, namespaces: Vec<Namespace>) {
        let mut claims: HashMap<IpAddr, usize> = HashMap::new();
        for pod in &pods {
            *claims.entry(pod.ip).or_default() += 1;
        }
        let mut next = State::default();
        for pod in pods {
            // Two live pods on one address: neither is trusted with it (kube2iam's `PodByIP`
            // refuses too), rather than whichever the listing names last.
            if claims[&pod.ip] > 1 {
                tracing::warn!(ip = %pod.ip, pod = %format!("{}/{}", pod.namespace, pod.name), "imds: address claimed by several pods; none is served");
                continue;
            }
            next.insert(Arc::new(pod));
        }
        next.namespaces = namespaces
            .into_iter()
            .map(|ns| (ns.name.clone(), Arc::new(ns)))
            .collect();
        let mut events = Vec::new();
        {
            let mut state = self.write();
            for (uid, old) in &state.by_uid {
                if !next.by_uid.contains_key(uid) {
                    events.push(PodEvent::Removed(old.clone()));
                }
            }
            for (uid, new) in &next.by_uid {
                if state.by_uid.get(uid) != Some(new) {
                    events.push(PodEvent::Upserted(new.clone()));
                }
            }
            *state = next;
        }
        self.publish(events);
    }

    /// Adds or updates one pod. A pod already on its address is removed.
    pub fn upsert_pod(&self, pod: Pod) {
        let pod = Arc::new(pod);
        let mut events = Vec::new();
        {
            let mut state = self.write();
            if state.by_uid.get(&pod.uid) == Some(&pod) {
                return;
            }
            for old in state.insert(pod.clone()) {
                events.push(PodEvent::Removed(old));
            }
        }
        events.push(PodEvent::Upserted(pod));
        self.publish(events);
    }

    /// Removes the pod of UID `uid` (deleted, or finished); its address answers for no pod.
    pub fn remove_pod(&self, uid: &str) {
        let removed = self.write().remove(uid);
        if let Some(pod) = removed {
            self.publish(vec![PodEvent::Removed(pod)]);
        }
    }

    /// Adds or updates a namespace.
    pub fn upsert_namespace(&self, namespace: Namespace) {
        self.write()
            .namespaces
            .insert(namespace.name.clone(), Arc::new(namespace));
        self.publish(Vec::new());
    }

    /// Removes a namespace.
    pub fn remove_namespace(&self, name: &str) {
        self.write().namespaces.remove(name);
        self.publish(Vec::new());
    }

    /// The pod on address `ip`, if any.
    pub fn by_ip(&self, ip: IpAddr) -> Option<Arc<Pod>> {
        let state = self.read();
        let uid = state.by_ip.get(&ip)?;
        state.by_uid.get(uid).cloned()
    }

    /// The pod of UID `uid`, if any.
    pub fn by_uid(&self, uid: &str) -> Option<Arc<Pod>> {
        self.read().by_uid.get(uid).cloned()
    }

    /// The namespace called `name`, if the source told of it.
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.read().namespaces.get(name).cloned()
    }

    /// Every pod, in no particular order (for a subscriber that lagged and starts over).
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.read().by_uid.values().cloned().collect()
    }

    /// How many pods are indexed.
    pub fn len(&self) -> usize {
        self.read().by_uid.len()
    }

    /// Whether no pod is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pod on address `ip`, waiting up to `timeout` for the source to tell of it.
    pub async fn wait_for(&self, ip: IpAddr, timeout: Duration) -> Option<Arc<Pod>> {
        // Subscribe before looking, so that no change between the look and the wait is missed.
        let mut changes = self.inner.generation.subscribe();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            if let Some(pod) = self.by_ip(ip) {
                return Some(pod);
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = &mut deadline => return None,
            }
        }
    }

    /// Pod events from now on. A receiver that falls more than 1024 events behind gets
    /// `RecvError::Lagged` and should start over from [`PodIndex::pods`].
    pub fn subscribe(&self) -> broadcast::Receiver<PodEvent> {
        self.inner.events.subscribe()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A pod of namespace `ns` called `name`, of UID `uid`, on `ip`, with `annotations`.
    pub(crate) fn pod(
        uid: &str,
        ip: &str,
        ns: &str,
        name: &str,
        annotations: &[(&str, &str)],
    ) -> Pod {
        Pod {
            ip: ip.parse().unwrap(),
            namespace: ns.into(),
            name: name.into(),
            uid: uid.into(),
            service_account: "default".into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// A namespace called `name` with `annotations`.
    pub(crate) fn namespace(name: &str, annotations: &[(&str, &str)]) -> Namespace {
        Namespace {
            name: name.into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn finds_pods_by_address_and_uid() {
        let index = PodIndex::new();
        index.upsert_pod(pod("u1", "10.0.0.1", "default", "web", &[]));
        index.upsert_namespace(namespace("default", &[]));
        assert_eq!(index.by_ip(ip("10.0.0.1")).unwrap().name, "web");
        assert_eq!(index.by_uid("u1").unwrap().ip, ip("10.0.0.1"));
        assert!(index.by_ip(ip("10.0.0.2")).is_none());
        assert!(index.namespace("default").is_some());
        index.remove_namespace("default");
        assert!(index.namespace("default").is_none());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn an_address_two_listed_pods_claim_answers_for_neither() {
        let index = PodIndex::new();
        index.replace(
            vec![
                pod("a", "10.0.0.1", "ns", "a", &[]),
                pod("b", "10.0.0.1", "ns", "b", &[]),
                pod("c", "10.0.0.2", "ns", "c", &[]),
            ],
            vec![],
        );
        assert!(index.by_ip("10.0.0.1".parse().unwrap()).is_none());
        assert_eq!(index.by_ip("10.0.0.2".parse().unwrap()).unwrap().uid, "c");
    }

    #[test]
    fn a_removed_pod_frees_its_address_at_once() {
        let index = PodIndex::new();
        let mut events = index.subscribe();
        index.upsert_pod(pod("u1", "10.0.0.1", "default", "web", &[]));
        index.remove_pod("u1");
        assert!(index.by_ip(ip("10.0.0.1")).is_none());
        assert!(index.is_empty());
        assert!(matches!(events.try_recv(), Ok(PodEvent::Upserted(p)) if p.uid == "u1"));
        assert!(matches!(events.try_recv(), Ok(PodEvent::Removed(p)) if p.uid == "u1"));
        // Removing an unknown pod changes nothing and says nothing.
        index.remove_pod("u1");
        assert!(events.try_recv().is_err());
    }

    #[test]
    fn a_new_pod_on_a_reused_address_displaces_the_old_one() {
        let index = PodIndex::new();
        index.upsert_pod(pod("old", "10.0.0.1", "a", "old", &[]));
        let mut events = index.subscribe();
        index.upsert_pod(pod("new", "10.0.0.1", "b", "new", &[]));
        assert_eq!(index.by_ip(ip("10.0.0.1")).unwrap().uid, "new");
        assert!(index.by_uid("old").is_none());
        assert!(matches!(events.try_recv(), Ok(PodEvent::Removed(p)) if p.uid == "old"));
        assert!(matches!(events.try_recv(), Ok(PodEvent::Upserted(p)) if p.uid == "new"));
        // The old pod's late deletion does not unmap the new pod.
        index.remove_pod("old");
        assert_eq!(index.by_ip(ip("10.0.0.1")).unwrap().uid, "new");
    }

    #[test]
    fn a_pod_that_moves_leaves_its_old_address() {
        let index = PodIndex::new();
        index.upsert_pod(pod("u1", "10.0.0.1", "default", "web", &[]));
        index.upsert_pod(pod("u1", "10.0.0.9", "default", "web", &[]));
        assert!(index.by_ip(ip("10.0.0.1")).is_none());
        assert_eq!(index.by_ip(ip("10.0.0.9")).unwrap().uid, "u1");
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_resync_announces_only_differences() {
        let index = PodIndex::new();
        index.replace(
            vec![
                pod("u1", "10.0.0.1", "default", "a", &[]),
                pod("u2", "10.0.0.2", "default", "b", &[]),
            ],
            vec![namespace("default", &[])],
        );
        let mut events = index.subscribe();
        index.replace(
            vec![
                pod("u1", "10.0.0.1", "default", "a", &[]),
                pod("u3", "10.0.0.2", "default", "c", &[("k", "v")]),
            ],
            vec![],
        );
        let mut seen = Vec::new();
        while let Ok(event) = events.try_recv() {
            seen.push(match event {
                PodEvent::Upserted(p) => format!("+{}", p.uid),
                PodEvent::Removed(p) => format!("-{}", p.uid),
            });
        }
        seen.sort();
        assert_eq!(seen, ["+u3", "-u2"]);
        assert_eq!(index.by_ip(ip("10.0.0.2")).unwrap().uid, "u3");
        assert!(index.namespace("default").is_none());
        assert_eq!(index.pods().len(), 2);
    }

    #[test]
    fn an_unchanged_upsert_says_nothing() {
        let index = PodIndex::new();
        index.upsert_pod(pod("u1", "10.0.0.1", "default", "web", &[]));
        let mut events = index.subscribe();
        index.upsert_pod(pod("u1", "10.0.0.1", "default", "web", &[]));
        assert!(events.try_recv().is_err());
    }

    #[tokio::test]
    async fn waits_for_a_pod_the_source_has_not_told_of_yet() {
        let index = PodIndex::new();
        let late = index.clone();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            late.upsert_namespace(namespace("default", &[]));
            tokio::time::sleep(Duration::from_millis(30)).await;
            late.upsert_pod(pod("u1", "10.0.0.1", "default", "web", &[]));
        });
        let found = index.wait_for(ip("10.0.0.1"), Duration::from_secs(5)).await;
        assert_eq!(found.unwrap().uid, "u1");
        writer.await.unwrap();
        let missing = index
            .wait_for(ip("10.0.0.2"), Duration::from_millis(20))
            .await;
        assert!(missing.is_none());
    }
}
