//! `KeyChain`: the keys a token is checked with, from the first of several sources that serves
//! its issuer, in the manner of aws-config's credentials-provider chain. Keyless asks, in turn,
//! its own issuer (keys in memory, never fetched), the JWKS files an administrator gave for
//! clusters whose issuer it cannot reach, and the issuers' own discovery documents
//! ([`JwksCache`]).
//!
//! Unlike a credentials chain, a source that serves an issuer and refuses the token ends the
//! chain: a token that claims Keyless's own issuer is never checked against keys fetched from
//! whatever that URL answers, nor one with a JWKS file against the network. Each step is kept
//! in [`Attempts`] for the logs and for `keyless doctor`: which sources passed, which one
//! decided, whether it fetched the keys again after an unknown `kid`.
//!
//! <https://docs.rs/aws-config/latest/aws_config/meta/credentials/struct.CredentialsProviderChain.html>

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use keyless_types::ProviderUrl;

use crate::OidcError;
use crate::jwks::KeySet;
use crate::remote::JwksCache;
use crate::verify::{Expectations, VerifiedToken, verify};

/// A place an issuer's signing keys come from.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// What the attempts call it: `own issuer`, `JWKS file`, `issuer discovery`.
    fn name(&self) -> &'static str;

    /// The keys of `issuer` at `now`, or `None` when this source does not serve it (the next
    /// source is asked).
    async fn keys(&self, issuer: &ProviderUrl, now: i64) -> Option<Result<Arc<KeySet>, OidcError>>;

    /// The keys of `issuer` again, after a token named a `kid` they lack (the issuer may have
    /// rotated). `None` when this source cannot do better than [`KeySource::keys`] did.
    async fn refresh(
        &self,
        _issuer: &ProviderUrl,
        _now: i64,
    ) -> Option<Result<Arc<KeySet>, OidcError>> {
        None
    }
}

/// Key sets given for fixed issuers, by [`ProviderUrl::key`]: JWKS files an administrator
/// provides for issuers that cannot be reached.
#[derive(Debug, Clone, Default)]
pub struct StaticKeys {
    by_issuer: HashMap<String, Arc<KeySet>>,
}

impl StaticKeys {
    /// Serves `keys`, each for the issuer whose provider key it is filed under.
    pub fn new(keys: impl IntoIterator<Item = (String, KeySet)>) -> Self {
        Self {
            by_issuer: keys.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        }
    }

    /// Whether no issuer has keys here.
    pub fn is_empty(&self) -> bool {
        self.by_issuer.is_empty()
    }
}

#[async_trait]
impl KeySource for StaticKeys {
    fn name(&self) -> &'static str {
        "JWKS file"
    }

    async fn keys(
        &self,
        issuer: &ProviderUrl,
        _now: i64,
    ) -> Option<Result<Arc<KeySet>, OidcError>> {
        self.by_issuer.get(issuer.key()).cloned().map(Ok)
    }
}

/// Every issuer, through its discovery document; keys cached, fetched again on an unknown
/// `kid` at most every [`crate::MIN_REFRESH_SECONDS`].
#[async_trait]
impl KeySource for JwksCache {
    fn name(&self) -> &'static str {
        "issuer discovery"
    }

    async fn keys(&self, issuer: &ProviderUrl, now: i64) -> Option<Result<Arc<KeySet>, OidcError>> {
        Some(self.keys_for(issuer.as_str(), now).await)
    }

    async fn refresh(
        &self,
        issuer: &ProviderUrl,
        now: i64,
    ) -> Option<Result<Arc<KeySet>, OidcError>> {
        Some(JwksCache::refresh(self, issuer.as_str(), now).await)
    }
}

/// What one source did with one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// [`KeySource::name`].
    pub source: &'static str,
    /// Whether these were keys fetched again after an unknown `kid`.
    pub refreshed: bool,
    /// How it went.
    pub step: Step,
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The source does not serve the token's issuer.
    NotServed,
    /// The source serves the issuer but has no keys for it (a fetch failed).
    NoKeys(OidcError),
    /// The keys refused the token.
    Refused(OidcError),
    /// The token checked out, signed by this key.
    Verified(Option<String>),
}

/// Every attempt made for one token, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempts(pub Vec<Attempt>);

impl fmt::Display for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, attempt) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(attempt.source)?;
            if attempt.refreshed {
                f.write_str(" (fetched again)")?;
            }
            match &attempt.step {
                Step::NotServed => f.write_str(": not its issuer"),
                Step::NoKeys(e) => write!(f, ": no keys ({e})"),
                Step::Refused(e) => write!(f, ": refused ({e})"),
                Step::Verified(Some(kid)) => write!(f, ": verified with key `{kid}`"),
                Step::Verified(None) => f.write_str(": verified"),
            }?;
        }
        Ok(())
    }
}

/// A token checked by a [`KeyChain`]: the outcome, and how it was reached.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The verified token, or why it was refused.
    pub result: Result<VerifiedToken, OidcError>,
    /// What each source did.
    pub attempts: Attempts,
}

/// Sources of issuers' keys, asked in order; the first that serves a token's issuer decides.
#[derive(Clone, Default)]
pub struct KeyChain {
    sources: Vec<Arc<dyn KeySource>>,
}

impl fmt::Debug for KeyChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.sources.iter().map(|s| s.name()))
            .finish()
    }
}

impl KeyChain {
    /// A chain of no source, which refuses every token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks `source` after the sources already in the chain.
    pub fn with(mut self, source: Arc<dyn KeySource>) -> Self {
        self.sources.push(source);
        self
    }

    /// The sources' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.sources.iter().map(|s| s.name()).collect()
    }

    /// Checks `token` of `issuer` against `expect` at `now` with the keys of the first source
    /// that serves `issuer`; on [`OidcError::UnknownKey`], with that source's keys fetched
    /// again, once.
    pub async fn verify(
        &self,
        token: &str,
        issuer: &ProviderUrl,
        expect: &Expectations<'_>,
        now: i64,
    ) -> Checked {
        let mut attempts = Vec::new();
        let mut record = |source: &dyn KeySource, refreshed, step| {
            attempts.push(Attempt {
                source: source.name(),
                refreshed,
                step,
            });
        };
        for source in &self.sources {
            let keys = match source.keys(issuer, now).await {
                None => {
                    record(source.as_ref(), false, Step::NotServed);
                    continue;
                }
                Some(Err(e)) => {
                    record(source.as_ref(), false, Step::NoKeys(e.clone()));
                    return checked(Err(e), attempts);
                }
                Some(Ok(keys)) => keys,
            };
            let result = verify(token, &keys, expect, now);
            let Err(OidcError::UnknownKey { .. }) = &result else {
                record(source.as_ref(), false, step_of(&result));
                return checked(result, attempts);
            };
            record(source.as_ref(), false, step_of(&result));
            let result = match source.refresh(issuer, now).await {
                None => result,
                Some(Err(e)) => {
                    record(source.as_ref(), true, Step::NoKeys(e.clone()));
                    Err(e)
                }
                Some(Ok(keys)) => {
                    let result = verify(token, &keys, expect, now);
                    record(source.as_ref(), true, step_of(&result));
                    result
                }
            };
            return checked(result, attempts);
        }
        let no_source = OidcError::NoKeySource {
            issuer: issuer.as_str().to_owned(),
        };
        checked(Err(no_source), attempts)
    }
}

fn step_of(result: &Result<VerifiedToken, OidcError>) -> Step {
    match result {
        Ok(token) => Step::Verified(token.kid.clone()),
        Err(e) => Step::Refused(e.clone()),
    }
}

fn checked(result: Result<VerifiedToken, OidcError>, attempts: Vec<Attempt>) -> Checked {
    Checked {
        result,
        attempts: Attempts(attempts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Issuer, IssuerKeys, MemoryFetch, ServiceAccountClaims, SigningKey};

    const NOW: i64 = 1_700_000_000;
    const AUD: &str = "sts.amazonaws.com";

    fn url(text: &str) -> ProviderUrl {
        ProviderUrl::read(text).unwrap()
    }

    fn issuer(url: &str) -> Issuer {
        Issuer::new(
            url,
            IssuerKeys::new(SigningKey::generate_es256().unwrap(), NOW),
        )
        .unwrap()
    }

    fn token(issuer: &Issuer, now: i64) -> String {
        let claims = ServiceAccountClaims {
            namespace: "gitlab".into(),
            service_account: "registry".into(),
            audiences: vec![AUD.into()],
            duration_seconds: 3600,
            service_account_uid: None,
            pod: None,
        };
        issuer.mint(&claims, now).unwrap()
    }

    fn publish(issuer: &Issuer, fetch: &MemoryFetch) {
        fetch.serve_issuer(issuer.url(), &issuer.jwks_json());
    }

    fn kid(issuer: &Issuer) -> &str {
        issuer.keys().active().kid()
    }

    /// Serves one issuer with the keys in memory: the own issuer's shape.
    struct Own(Issuer);

    #[async_trait]
    impl KeySource for Own {
        fn name(&self) -> &'static str {
            "own issuer"
        }

        async fn keys(
            &self,
            issuer: &ProviderUrl,
            _now: i64,
        ) -> Option<Result<Arc<KeySet>, OidcError>> {
            (issuer.key() == url(self.0.url()).key()).then(|| Ok(Arc::new(self.0.key_set())))
        }
    }

    async fn check(chain: &KeyChain, token: &str, issuer: &str, now: i64) -> Checked {
        let aud = vec![AUD.to_owned()];
        chain
            .verify(token, &url(issuer), &Expectations::new(issuer, &aud), now)
            .await
    }

    #[tokio::test]
    async fn the_first_source_serving_the_issuer_decides_and_every_step_is_recorded() {
        let own = issuer("https://own.example");
        let other = issuer("https://cluster.example");
        let fetch = Arc::new(MemoryFetch::new());
        publish(&other, &fetch);
        let own_token = token(&own, NOW);
        let own_kid = kid(&own).to_owned();
        let chain = KeyChain::new()
            .with(Arc::new(Own(own)))
            .with(Arc::new(StaticKeys::default()))
            .with(Arc::new(JwksCache::new(fetch.clone())));
        assert_eq!(
            chain.names(),
            ["own issuer", "JWKS file", "issuer discovery"]
        );

        let checked = check(&chain, &own_token, "https://own.example", NOW).await;
        assert!(checked.result.is_ok(), "{:?}", checked.result);
        assert_eq!(
            checked.attempts.to_string(),
            format!("own issuer: verified with key `{own_kid}`")
        );
        assert_eq!(fetch.requests(), 0);

        let checked = check(&chain, &token(&other, NOW), other.url(), NOW).await;
        assert!(checked.result.is_ok(), "{:?}", checked.result);
        assert_eq!(
            checked.attempts.to_string(),
            format!(
                "own issuer: not its issuer; JWKS file: not its issuer; issuer discovery: verified with key `{}`",
                kid(&other)
            )
        );
    }

    #[tokio::test]
    async fn a_token_naming_the_own_issuer_is_never_checked_against_fetched_keys() {
        // Whatever `https://own.example` answers over the network is another key set: a token
        // signed by it claims the own issuer and is refused by the keys in memory.
        let own = issuer("https://own.example");
        let impostor = issuer("https://own.example");
        let fetch = Arc::new(MemoryFetch::new());
        publish(&impostor, &fetch);
        let chain = KeyChain::new()
            .with(Arc::new(Own(own)))
            .with(Arc::new(JwksCache::new(fetch.clone())));
        let checked = check(&chain, &token(&impostor, NOW), "https://own.example", NOW).await;
        assert!(
            matches!(checked.result, Err(OidcError::UnknownKey { .. })),
            "{:?}",
            checked.result
        );
        assert!(
            checked
                .attempts
                .to_string()
                .starts_with("own issuer: refused (no key"),
            "{}",
            checked.attempts
        );
        assert_eq!(fetch.requests(), 0, "nothing is fetched for the own issuer");
    }

    #[tokio::test]
    async fn an_unknown_kid_fetches_the_keys_again_once() {
        let mut cluster = issuer("https://cluster.example");
        let fetch = Arc::new(MemoryFetch::new());
        publish(&cluster, &fetch);
        let chain = KeyChain::new().with(Arc::new(JwksCache::new(fetch.clone())));
        let first = check(&chain, &token(&cluster, NOW), cluster.url(), NOW).await;
        assert!(first.result.is_ok(), "{:?}", first.result);

        let later = NOW + 60;
        cluster
            .keys_mut()
            .rotate(SigningKey::generate_es256().unwrap(), later)
            .unwrap();
        publish(&cluster, &fetch);
        let checked = check(&chain, &token(&cluster, later), cluster.url(), later).await;
        assert!(checked.result.is_ok(), "{:?}", checked.result);
        assert_eq!(
            checked.attempts.to_string(),
            format!(
                "issuer discovery: refused (no key `{kid}` in the issuer's key set); issuer discovery (fetched again): verified with key `{kid}`",
                kid = kid(&cluster)
            )
        );
    }

    #[tokio::test]
    async fn a_failed_fetch_ends_the_chain_and_no_serving_source_is_its_own_error() {
        let unreachable = issuer("https://unreachable.example");
        let chain = KeyChain::new().with(Arc::new(JwksCache::new(Arc::new(MemoryFetch::new()))));
        let checked = check(&chain, &token(&unreachable, NOW), unreachable.url(), NOW).await;
        assert!(
            matches!(checked.result, Err(OidcError::Fetch { .. })),
            "{:?}",
            checked.result
        );
        assert!(matches!(
            checked.attempts.0.as_slice(),
            [Attempt {
                step: Step::NoKeys(_),
                refreshed: false,
                ..
            }]
        ));

        let empty = KeyChain::new().with(Arc::new(StaticKeys::default()));
        let checked = check(&empty, &token(&unreachable, NOW), unreachable.url(), NOW).await;
        assert!(
            matches!(checked.result, Err(OidcError::NoKeySource { .. })),
            "{:?}",
            checked.result
        );
        assert_eq!(checked.attempts.to_string(), "JWKS file: not its issuer");
    }

    #[tokio::test]
    async fn static_keys_serve_their_issuer_by_provider_key() {
        let cluster = issuer("https://cluster.example/id/1");
        let keys = StaticKeys::new([(
            url("https://Cluster.Example/id/1").key().to_owned(),
            cluster.key_set(),
        )]);
        let chain = KeyChain::new().with(Arc::new(keys));
        let checked = check(&chain, &token(&cluster, NOW), cluster.url(), NOW).await;
        assert!(checked.result.is_ok(), "{:?}", checked.result);
        assert_eq!(
            checked.attempts.to_string(),
            format!("JWKS file: verified with key `{}`", kid(&cluster))
        );
    }
}
