//! `JwksCache`: the key sets of external issuers, found through their discovery documents,
//! cached for an hour, refetched at most every 10 seconds when a token names an unknown key;
//! and key sets an admin gives for an issuer, never fetched.
//!
//! <https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderConfigurationValidation>
//! (the document's `issuer` must be the issuer), <https://openid.net/specs/openid-connect-core-1_0.html#RotateSigKeys>
//! (refetch on an unknown `kid`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde_json::Value;

use crate::OidcError;
use crate::fetch::Fetch;
use crate::jwks::KeySet;
use crate::jwt;
use crate::url::{check_fetch_url, discovery_url};

/// How long fetched keys are used before they are fetched again, in seconds.
pub const JWKS_TTL_SECONDS: i64 = 3600;
/// The least time between two fetches for one issuer, in seconds: an attacker spraying
/// unknown `kid`s makes one fetch every 10 seconds, not one per token.
pub const MIN_REFRESH_SECONDS: i64 = 10;
/// How long keys are still used when the issuer cannot be reached, in seconds.
pub const MAX_STALE_SECONDS: i64 = 24 * 3600;

/// The key sets of issuers, by issuer URL. Fetched ones come from `{issuer}/.well-known/openid-configuration`
/// and its `jwks_uri`; static ones from [`JwksCache::set_static`]. Call it only for issuers of
/// registered providers: every issuer asked for gets an entry.
pub struct JwksCache {
    fetch: Arc<dyn Fetch>,
    /// Issuers fetched otherwise than with `fetch`: another CA, a bearer token.
    fetch_for: RwLock<HashMap<String, Arc<dyn Fetch>>>,
    fixed: RwLock<HashMap<String, Arc<KeySet>>>,
    fetched: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>,
}

#[derive(Default)]
struct Entry {
    keys: Option<Arc<KeySet>>,
    fetched_at: i64,
    attempted_at: Option<i64>,
    last_error: Option<OidcError>,
}

impl JwksCache {
    /// A cache that fetches with `fetch`.
    pub fn new(fetch: Arc<dyn Fetch>) -> JwksCache {
        JwksCache {
            fetch,
            fetch_for: RwLock::default(),
            fixed: RwLock::default(),
            fetched: Mutex::default(),
        }
    }

    /// Fetches `issuer`'s discovery document, and the key set it names, with `fetch` (a
    /// private CA, the pod's token for the cluster's own issuer) instead of the default. The
    /// key set is read at the path the document names but on the issuer's own origin: a
    /// Kubernetes API server names its external address (a host a token must not go to
    /// unchecked) and serves the same keys on every address.
    pub fn set_fetch(&self, issuer: &str, fetch: Arc<dyn Fetch>) {
        self.fetch_for
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(issuer.to_owned(), fetch);
    }

    /// Uses the JWKS document `jwks` for `issuer`, from now on and without HTTP (an admin's
    /// file, for an issuer that is not reachable).
    pub fn set_static(&self, issuer: &str, jwks: &[u8]) -> Result<(), OidcError> {
        let keys = Arc::new(KeySet::from_jwks_json(jwks)?);
        self.fixed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(issuer.to_owned(), keys);
        Ok(())
    }

    /// The keys of `issuer` at `now` (unix seconds): cached ones while younger than
    /// [`JWKS_TTL_SECONDS`], else fetched. If the fetch fails, keys up to
    /// [`MAX_STALE_SECONDS`] old are still used. Concurrent callers for one issuer wait for a
    /// single fetch.
    pub async fn keys_for(&self, issuer: &str, now: i64) -> Result<Arc<KeySet>, OidcError> {
        if let Some(keys) = self.fixed(issuer) {
            return Ok(keys);
        }
        let entry = self.entry(issuer);
        let mut entry = entry.lock().await;
        if let Some(keys) = &entry.keys
            && (entry.fetched_at..entry.fetched_at.saturating_add(JWKS_TTL_SECONDS)).contains(&now)
        {
            return Ok(keys.clone());
        }
        self.fetch_into(&mut entry, issuer, now).await
    }

    /// Fetches the keys of `issuer` again, after a token named a `kid` they lack
    /// ([`OidcError::UnknownKey`]); but at most once per [`MIN_REFRESH_SECONDS`], answering
    /// the keys at hand in between. Then verify once more, and refuse if the key is still
    /// unknown.
    pub async fn refresh(&self, issuer: &str, now: i64) -> Result<Arc<KeySet>, OidcError> {
        if let Some(keys) = self.fixed(issuer) {
            return Ok(keys);
        }
        let entry = self.entry(issuer);
        let mut entry = entry.lock().await;
        self.fetch_into(&mut entry, issuer, now).await
    }

    fn fixed(&self, issuer: &str) -> Option<Arc<KeySet>> {
        self.fixed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(issuer)
            .cloned()
    }

    fn entry(&self, issuer: &str) -> Arc<tokio::sync::Mutex<Entry>> {
        let mut fetched = self.fetched.lock().unwrap_or_else(PoisonError::into_inner);
        fetched.entry(issuer.to_owned()).or_default().clone()
    }

    /// Fetches unless the last attempt is too recent; on failure, falls back on keys that
    /// are not too stale.
    async fn fetch_into(
        &self,
        entry: &mut Entry,
        issuer: &str,
        now: i64,
    ) -> Result<Arc<KeySet>, OidcError> {
        let usable = |entry: &Entry| {
            entry
                .keys
                .clone()
                .filter(|_| now.saturating_sub(entry.fetched_at) <= MAX_STALE_SECONDS)
        };
        if let Some(at) = entry.attempted_at
            && (at..at.saturating_add(MIN_REFRESH_SECONDS)).contains(&now)
        {
            return match (usable(entry), &entry.last_error) {
                (Some(keys), _) => Ok(keys),
                (None, Some(error)) => Err(error.clone()),
                (None, None) => Err(OidcError::Discovery {
                    issuer: issuer.to_owned(),
                    reason: "its keys are too old and it was asked for them moments ago".to_owned(),
                }),
            };
        }
        entry.attempted_at = Some(now);
        let own = self
            .fetch_for
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(issuer)
            .cloned();
        let discovered = match own {
            Some(fetch) => discover(fetch.as_ref(), issuer, true).await,
            None => discover(self.fetch.as_ref(), issuer, false).await,
        };
        match discovered {
            Ok(keys) => {
                tracing::debug!(issuer, keys = keys.len(), "oidc: fetched key set");
                let keys = Arc::new(keys);
                entry.keys = Some(keys.clone());
                entry.fetched_at = now;
                entry.last_error = None;
                Ok(keys)
            }
            Err(error) => {
                tracing::warn!(issuer, error = %error, "oidc: cannot fetch the issuer's key set");
                entry.last_error = Some(error.clone());
                usable(entry).ok_or(error)
            }
        }
    }
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fixed = self
            .fixed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        let fetched = self
            .fetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("JwksCache")
            .field("fixed", &fixed)
            .field("fetched", &fetched)
            .finish()
    }
}

/// The issuer's key set, through its discovery document, whose `issuer` must be exactly the
/// issuer asked for.
/// The issuer's keys through its discovery document; with `on_issuer_origin`, read at the
/// `jwks_uri`'s path on the issuer's own scheme, host and port.
async fn discover(
    fetch: &dyn Fetch,
    issuer: &str,
    on_issuer_origin: bool,
) -> Result<KeySet, OidcError> {
    let refuse = |reason: String| OidcError::Discovery {
        issuer: issuer.to_owned(),
        reason,
    };
    let document = fetch.get(&discovery_url(issuer)).await?;
    let document = jwt::object(&document, "discovery document").map_err(refuse)?;
    match document.get("issuer") {
        Some(Value::String(named)) if named == issuer => {}
        Some(Value::String(named)) => return Err(refuse(format!("it names issuer `{named}`"))),
        _ => return Err(refuse("it has no `issuer`".to_owned())),
    }
    let Some(Value::String(jwks_uri)) = document.get("jwks_uri") else {
        return Err(refuse("it has no `jwks_uri`".to_owned()));
    };
    check_fetch_url(jwks_uri).map_err(|e| refuse(format!("`jwks_uri` `{jwks_uri}`: {e}")))?;
    let jwks_uri = match on_issuer_origin {
        true => on_origin_of(issuer, jwks_uri)
            .ok_or_else(|| refuse(format!("`jwks_uri` `{jwks_uri}` has no path")))?,
        false => jwks_uri.clone(),
    };
    KeySet::from_jwks_json(&fetch.get(&jwks_uri).await?)
}

/// `url`'s path and query on `issuer`'s scheme, host and port.
fn on_origin_of(issuer: &str, url: &str) -> Option<String> {
    let issuer: http::Uri = issuer.parse().ok()?;
    let url: http::Uri = url.parse().ok()?;
    Some(format!(
        "{}://{}{}",
        issuer.scheme_str()?,
        issuer.authority()?,
        url.path_and_query()?.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::{HttpFetch, MemoryFetch};
    use crate::testkit::server::{Reply, TestServer};
    use crate::testkit::{self, AUD, NOW};
    use crate::{Expectations, verify};

    const ISSUER: &str = "https://issuer.example/id/1";

    fn cache_with(jwks: &str) -> (Arc<MemoryFetch>, JwksCache) {
        let fetch = Arc::new(MemoryFetch::new());
        fetch.serve_issuer(ISSUER, jwks);
        (fetch.clone(), JwksCache::new(fetch))
    }

    #[tokio::test]
    async fn fetches_from_a_real_server_and_verifies() {
        let key = testkit::es256_key();
        let jwks = testkit::jwks_json(&[&key]);
        let server = TestServer::start(|_| Reply::status(404)).await;
        let issuer = server.url("/issuer");
        let (doc_issuer, keys_url) = (issuer.clone(), server.url("/issuer/keys"));
        server.set_handler(move |path| match path {
            "/issuer/.well-known/openid-configuration" => Reply::ok(
                serde_json::json!({ "issuer": doc_issuer, "jwks_uri": keys_url }).to_string(),
            ),
            "/issuer/keys" => Reply::ok(jwks.clone()),
            _ => Reply::status(404),
        });
        let fetch = HttpFetch::with_only_roots(include_bytes!("../testdata/ca.pem")).unwrap();
        let cache = JwksCache::new(Arc::new(fetch));
        let keys = cache.keys_for(&issuer, NOW).await.unwrap();
        assert_eq!(server.requests(), 2);
        let token = testkit::es256(
            &key,
            &testkit::claims_with(&[("iss", issuer.as_str().into())]),
        );
        let audiences = vec![AUD.to_owned()];
        assert!(verify(&token, &keys, &Expectations::new(&issuer, &audiences), NOW).is_ok());
        // A cache hit makes no request.
        cache
            .keys_for(&issuer, NOW + JWKS_TTL_SECONDS - 1)
            .await
            .unwrap();
        assert_eq!(server.requests(), 2);
        // An expired entry is fetched again.
        cache
            .keys_for(&issuer, NOW + JWKS_TTL_SECONDS)
            .await
            .unwrap();
        assert_eq!(server.requests(), 4);
    }

    #[tokio::test]
    async fn refuses_a_discovery_document_of_another_issuer() {
        let fetch = Arc::new(MemoryFetch::new());
        fetch.serve_issuer(
            "https://evil.example",
            &testkit::jwks_json(&[&testkit::es256_key()]),
        );
        let evil_doc = fetch
            .get(&discovery_url("https://evil.example"))
            .await
            .unwrap();
        fetch.insert(&discovery_url(ISSUER), evil_doc);
        let cache = JwksCache::new(fetch);
        let err = cache.keys_for(ISSUER, NOW).await.unwrap_err();
        assert_eq!(
            err,
            OidcError::Discovery {
                issuer: ISSUER.into(),
                reason: "it names issuer `https://evil.example`".into()
            }
        );
        // A trailing slash is a different issuer.
        let (_, cache) = cache_with("{}");
        let err = cache
            .keys_for(&format!("{ISSUER}/"), NOW)
            .await
            .unwrap_err();
        assert!(matches!(err, OidcError::Discovery { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn refuses_plain_http_jwks_uri() {
        let fetch = Arc::new(MemoryFetch::new());
        let doc = serde_json::json!({ "issuer": ISSUER, "jwks_uri": "http://issuer.example/keys" });
        fetch.insert(&discovery_url(ISSUER), doc.to_string());
        let err = JwksCache::new(fetch)
            .keys_for(ISSUER, NOW)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[tokio::test]
    async fn refresh_is_rate_limited() {
        let old = testkit::es256_key();
        let new = testkit::es256_key();
        let (fetch, cache) = cache_with(&testkit::jwks_json(&[&old]));
        cache.keys_for(ISSUER, NOW).await.unwrap();
        assert_eq!(fetch.requests(), 2);
        // The issuer rotates; a token with the new kid arrives.
        fetch.serve_issuer(ISSUER, &testkit::jwks_json(&[&new]));
        let keys = cache.refresh(ISSUER, NOW + 5).await.unwrap();
        assert_eq!(
            fetch.requests(),
            2,
            "refetched within 10 seconds of the last fetch"
        );
        assert!(
            keys.candidates(crate::jwt::Alg::Es256, Some(new.kid()))
                .is_err()
        );
        for second in 0..MIN_REFRESH_SECONDS {
            cache
                .refresh(ISSUER, NOW + MIN_REFRESH_SECONDS + second / 2)
                .await
                .unwrap();
        }
        assert_eq!(
            fetch.requests(),
            4,
            "one refetch for a burst of unknown kids"
        );
        let keys = cache
            .keys_for(ISSUER, NOW + MIN_REFRESH_SECONDS + 1)
            .await
            .unwrap();
        assert!(
            keys.candidates(crate::jwt::Alg::Es256, Some(new.kid()))
                .is_ok()
        );
        assert_eq!(fetch.requests(), 4);
    }

    #[tokio::test]
    async fn failures_are_rate_limited_and_stale_keys_expire() {
        let key = testkit::es256_key();
        let (fetch, cache) = cache_with(&testkit::jwks_json(&[&key]));
        cache.keys_for(ISSUER, NOW).await.unwrap();
        fetch.remove(&discovery_url(ISSUER));
        // Expired in the cache, the issuer down: the old keys still serve.
        let later = NOW + JWKS_TTL_SECONDS;
        assert!(cache.keys_for(ISSUER, later).await.is_ok());
        assert_eq!(fetch.requests(), 3);
        assert!(cache.keys_for(ISSUER, later + 1).await.is_ok());
        assert_eq!(fetch.requests(), 3, "no second attempt within 10 seconds");
        // Too stale: refused.
        let err = cache
            .keys_for(ISSUER, NOW + MAX_STALE_SECONDS + 1)
            .await
            .unwrap_err();
        assert!(matches!(err, OidcError::Fetch { .. }), "{err:?}");
        // An issuer never reached answers its error, once per 10 seconds.
        let before = fetch.requests();
        for _ in 0..5 {
            let err = cache
                .keys_for("https://down.example", NOW)
                .await
                .unwrap_err();
            assert_eq!(
                err.aws_message(),
                OidcError::Fetch {
                    url: String::new(),
                    reason: String::new()
                }
                .aws_message()
            );
        }
        assert_eq!(fetch.requests(), before + 1);
    }

    #[tokio::test]
    async fn concurrent_misses_fetch_once() {
        let (fetch, cache) = cache_with(&testkit::jwks_json(&[&testkit::es256_key()]));
        let cache = Arc::new(cache);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.keys_for(ISSUER, NOW).await })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().is_ok());
        }
        assert_eq!(fetch.requests(), 2);
    }

    #[tokio::test]
    async fn an_issuer_of_its_own_fetch_is_fetched_with_it_alone() {
        let key = testkit::rsa_key();
        let default = Arc::new(MemoryFetch::new());
        let own = Arc::new(MemoryFetch::new());
        // As a Kubernetes API server answers: its keys named on its external address, served
        // on every address. They are read on the issuer's own, where its token may go.
        own.insert(
            "https://issuer.example/id/1/.well-known/openid-configuration",
            serde_json::json!({"issuer": ISSUER, "jwks_uri": "https://10.0.0.1:6443/openid/v1/jwks"})
                .to_string(),
        );
        own.insert(
            "https://issuer.example/openid/v1/jwks",
            testkit::jwks_json(&[&key]),
        );
        let cache = JwksCache::new(default.clone());
        cache.set_fetch(ISSUER, own.clone());
        assert_eq!(cache.keys_for(ISSUER, NOW).await.unwrap().len(), 1);
        assert_eq!((own.requests(), default.requests()), (2, 0));
        // Other issuers still go through the default.
        assert!(cache.keys_for("https://other.example", NOW).await.is_err());
        assert_eq!(default.requests(), 1);
    }

    #[tokio::test]
    async fn static_keys_need_no_http() {
        let key = testkit::rsa_key();
        let fetch = Arc::new(MemoryFetch::new());
        let cache = JwksCache::new(fetch.clone());
        cache
            .set_static(ISSUER, testkit::jwks_json(&[&key]).as_bytes())
            .unwrap();
        assert_eq!(cache.keys_for(ISSUER, NOW).await.unwrap().len(), 1);
        assert_eq!(cache.refresh(ISSUER, NOW).await.unwrap().len(), 1);
        assert_eq!(fetch.requests(), 0);
        assert!(cache.set_static(ISSUER, b"{}").is_err());
        assert!(format!("{cache:?}").contains("fixed: 1"));
    }
}
