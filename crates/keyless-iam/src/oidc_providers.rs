//! OpenID Connect identity providers: the issuers whose tokens `AssumeRoleWithWebIdentity`
//! accepts, each with the audiences (client IDs) it may name, with the operations that change
//! them. A provider is known by its URL without the scheme (`oidc.eks.us-east-1.amazonaws.com/id/ABC`),
//! which is also the end of its ARN and what `GetOpenIDConnectProvider` answers as `Url`.
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateOpenIDConnectProvider.html>
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_create_oidc.html>

use keyless_types::{ProviderUrl, ProviderUrlError};

use crate::IamError;
use crate::rules::check_tags;
use crate::state::IamState;
pub use crate::state::OidcProvider;

/// Client IDs one provider may list.
pub const MAX_CLIENT_IDS: usize = 100;
/// Thumbprints one provider may list.
pub const MAX_THUMBPRINTS: usize = 5;
/// Providers one account may have.
pub const MAX_PROVIDERS: usize = 100;

/// What `CreateOpenIDConnectProvider` takes.
#[derive(Debug, Clone, Default)]
pub struct NewOidcProvider {
    /// `https://host[/path]` (`http://` for a loopback host).
    pub url: String,
    /// Audiences, up to [`MAX_CLIENT_IDS`].
    pub client_ids: Vec<String>,
    /// Up to [`MAX_THUMBPRINTS`] SHA-1 fingerprints.
    pub thumbprints: Vec<String>,
    /// Up to 50 tags.
    pub tags: Vec<(String, String)>,
}

/// Checks a provider URL by IAM's rules ([`ProviderUrl`]: `https://` and a host, with a path
/// if any, no user, query or fragment, at most 255 characters; `http://` for a loopback host
/// alone), failing with IAM's error code and text.
pub fn parse_provider_url(url: &str) -> Result<ProviderUrl, IamError> {
    use ProviderUrlError as E;
    ProviderUrl::parse(url).map_err(|e| match e {
        E::TooLong => IamError::Validation(format!(
            "1 validation error detected: Value '{url}' at 'url' failed to satisfy constraint: Member must have length less than or equal to 255"
        )),
        E::NoScheme => IamError::Validation("Invalid Open ID Connect Provider URL".into()),
        E::Scheme | E::NotLoopback => IamError::InvalidInput(
            "Invalid Open ID Connect Provider URL. The URL must begin with https://.".into(),
        ),
        E::Whitespace
        | E::Query
        | E::Fragment
        | E::UserInfo
        | E::Character(_)
        | E::Host => IamError::InvalidInput("Invalid Open ID Connect Provider URL.".into()),
    })
}

fn check_client_id(id: &str) -> Result<(), IamError> {
    let len = id.chars().count();
    if (1..=255).contains(&len) {
        return Ok(());
    }
    let bound = if len == 0 {
        "greater than or equal to 1"
    } else {
        "less than or equal to 255"
    };
    Err(IamError::Validation(format!(
        "1 validation error detected: Value '{id}' at 'clientID' failed to satisfy constraint: Member must have length {bound}"
    )))
}

/// Checks client IDs (1 to 255 characters each, at most [`MAX_CLIENT_IDS`]) and drops
/// repeats.
pub fn check_client_ids(ids: &[String]) -> Result<Vec<String>, IamError> {
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        check_client_id(id)?;
        if !out.contains(id) {
            out.push(id.clone());
        }
    }
    if out.len() > MAX_CLIENT_IDS {
        return Err(client_id_quota());
    }
    Ok(out)
}

fn client_id_quota() -> IamError {
    IamError::LimitExceeded(format!(
        "Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: {MAX_CLIENT_IDS}"
    ))
}

/// Checks thumbprints: at most [`MAX_THUMBPRINTS`], each 40 hex digits.
pub fn check_thumbprints(thumbprints: &[String]) -> Result<(), IamError> {
    if thumbprints.len() > MAX_THUMBPRINTS {
        return Err(IamError::InvalidInput(
            "Thumbprint list must contain fewer than 5 entries.".into(),
        ));
    }
    for t in thumbprints {
        if t.len() != 40 {
            return Err(IamError::InvalidInput(
                "Thumbprint must be exactly 40 characters.".into(),
            ));
        }
        if !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(IamError::InvalidInput(format!(
                "Thumbprint {t} is not a hex-encoded SHA-1 fingerprint."
            )));
        }
    }
    Ok(())
}

fn not_found(arn: &str) -> IamError {
    IamError::NoSuchEntity(format!("OpenIDConnect Provider not found for arn {arn}"))
}

impl IamState {
    /// The provider with this ARN.
    pub fn oidc_provider(&self, account_id: &str, arn: &str) -> Result<&OidcProvider, IamError> {
        arn_key(account_id, arn)
            .and_then(|key| self.oidc_providers.get(key))
            .ok_or_else(|| not_found(arn))
    }

    fn oidc_provider_mut(
        &mut self,
        account_id: &str,
        arn: &str,
    ) -> Result<&mut OidcProvider, IamError> {
        arn_key(account_id, arn)
            .and_then(|key| self.oidc_providers.get_mut(key))
            .ok_or_else(|| not_found(arn))
    }

    /// Creates a provider; one URL (without regard to a trailing `/`, nor to the case of its
    /// scheme and host) names one provider.
    pub fn create_oidc_provider(
        &mut self,
        new: NewOidcProvider,
        now: i64,
    ) -> Result<&OidcProvider, IamError> {
        let key = parse_provider_url(&new.url)?.key().to_owned();
        let client_ids = check_client_ids(&new.client_ids)?;
        check_thumbprints(&new.thumbprints)?;
        check_tags(&new.tags)?;
        if self.oidc_providers.contains_key(&key) {
            return Err(IamError::EntityAlreadyExists(format!(
                "Provider with url {} already exists.",
                new.url
            )));
        }
        if self.oidc_providers.len() >= MAX_PROVIDERS {
            return Err(IamError::LimitExceeded(format!(
                "Cannot exceed quota for OpenIdConnectProvidersPerAccount: {MAX_PROVIDERS}"
            )));
        }
        Ok(self.oidc_providers.entry(key).or_insert(OidcProvider {
            url: new.url,
            client_ids,
            thumbprints: new.thumbprints,
            created: now,
            tags: new.tags,
        }))
    }

    /// Deletes a provider. Roles that trust it keep their trust policies; tokens it issues
    /// assume nothing any more.
    pub fn delete_oidc_provider(&mut self, account_id: &str, arn: &str) -> Result<(), IamError> {
        let key = arn_key(account_id, arn)
            .filter(|key| self.oidc_providers.contains_key(*key))
            .ok_or_else(|| {
                IamError::NoSuchEntity(format!("OpenId connect Provider {arn} cannot be found."))
            })?
            .to_owned();
        self.oidc_providers.remove(&key);
        Ok(())
    }

    /// Adds an audience to a provider; adding one it has changes nothing.
    pub fn add_client_id(&mut self, account_id: &str, arn: &str, id: &str) -> Result<(), IamError> {
        check_client_id(id)?;
        let provider = self.oidc_provider_mut(account_id, arn)?;
        if provider.client_ids.iter().any(|c| c == id) {
            return Ok(());
        }
        if provider.client_ids.len() >= MAX_CLIENT_IDS {
            return Err(client_id_quota());
        }
        provider.client_ids.push(id.to_owned());
        Ok(())
    }

    /// Removes an audience from a provider; removing one it lacks changes nothing.
    pub fn remove_client_id(
        &mut self,
        account_id: &str,
        arn: &str,
        id: &str,
    ) -> Result<(), IamError> {
        check_client_id(id)?;
        self.oidc_provider_mut(account_id, arn)?
            .client_ids
            .retain(|c| c != id);
        Ok(())
    }

    /// Replaces a provider's client IDs and thumbprints (the configuration file's way).
    pub fn set_oidc_provider_lists(
        &mut self,
        account_id: &str,
        arn: &str,
        client_ids: &[String],
        thumbprints: &[String],
    ) -> Result<(), IamError> {
        let client_ids = check_client_ids(client_ids)?;
        check_thumbprints(thumbprints)?;
        let provider = self.oidc_provider_mut(account_id, arn)?;
        provider.client_ids = client_ids;
        provider.thumbprints = thumbprints.to_vec();
        Ok(())
    }
}

/// The provider key an ARN of this account names.
fn arn_key<'a>(account_id: &str, arn: &'a str) -> Option<&'a str> {
    arn.strip_prefix("arn:aws:iam::")?
        .strip_prefix(account_id)?
        .strip_prefix(":oidc-provider/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "111122223333";
    const EKS: &str = "https://oidc.eks.us-east-1.amazonaws.com/id/ABC";
    const THUMB: &str = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280";

    fn create<'s>(
        s: &'s mut IamState,
        url: &str,
        thumbprints: &[&str],
    ) -> Result<&'s OidcProvider, IamError> {
        let new = NewOidcProvider {
            url: url.into(),
            client_ids: vec!["sts.amazonaws.com".into()],
            thumbprints: thumbprints.iter().map(|t| (*t).to_owned()).collect(),
            tags: Vec::new(),
        };
        s.create_oidc_provider(new, 5)
    }

    fn check_provider_url(url: &str) -> Result<String, IamError> {
        parse_provider_url(url).map(|u| u.key().to_owned())
    }

    #[test]
    fn urls_follow_iams_rules_with_loopback_http() {
        assert_eq!(
            check_provider_url(EKS).unwrap(),
            "oidc.eks.us-east-1.amazonaws.com/id/ABC"
        );
        assert_eq!(
            check_provider_url("https://a.example/").unwrap(),
            "a.example"
        );
        assert_eq!(
            check_provider_url("HTTPS://Issuer.example/X").unwrap(),
            "issuer.example/X"
        );
        for ok in [
            "http://127.0.0.1:9000",
            "http://127.1.2.3/issuer",
            "http://[::1]:8080",
            "http://localhost:9000/",
            "https://issuer.example:8443/realms/x",
        ] {
            assert!(check_provider_url(ok).is_ok(), "{ok}");
        }
        let err = |url: &str| check_provider_url(url).unwrap_err().to_string();
        assert_eq!(
            err("http://issuer.example"),
            "Invalid Open ID Connect Provider URL. The URL must begin with https://."
        );
        assert_eq!(
            err("http://10.0.0.1"),
            "Invalid Open ID Connect Provider URL. The URL must begin with https://."
        );
        assert_eq!(
            err("issuer.example"),
            "Invalid Open ID Connect Provider URL"
        );
        for bad in [
            "https://a.example?x=1",
            "https://a.example/#f",
            "https://user@a.example",
            "https://",
            "https://a.example:0",
            "https://a.example:x",
            "https://[::1",
            "https://a b",
        ] {
            assert_eq!(err(bad), "Invalid Open ID Connect Provider URL.", "{bad}");
        }
        let long = format!("https://{}.example", "a".repeat(250));
        assert!(err(&long).contains("less than or equal to 255"));
    }

    #[test]
    fn providers_are_created_found_by_arn_and_deleted() {
        let mut s = IamState::default();
        let arn = create(&mut s, EKS, &[THUMB]).unwrap().arn(ACCOUNT);
        assert_eq!(
            arn,
            "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"
        );
        let dup = create(&mut s, &format!("{EKS}/"), &[]).unwrap_err();
        assert_eq!(dup.code(), "EntityAlreadyExists");
        let shouting = "HTTPS://OIDC.EKS.us-east-1.amazonaws.com/id/ABC";
        assert_eq!(
            create(&mut s, shouting, &[]).unwrap_err().code(),
            "EntityAlreadyExists",
            "scheme and host are case-insensitive"
        );
        create(
            &mut s,
            "https://oidc.eks.us-east-1.amazonaws.com/id/abc",
            &[],
        )
        .expect("the path is case-sensitive");
        assert_eq!(
            dup.to_string(),
            format!("Provider with url {EKS}/ already exists.")
        );
        assert_eq!(s.oidc_provider(ACCOUNT, &arn).unwrap().url, EKS);
        let other =
            "arn:aws:iam::444455556666:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC";
        assert_eq!(
            s.oidc_provider(ACCOUNT, other).unwrap_err().to_string(),
            format!("OpenIDConnect Provider not found for arn {other}")
        );
        s.delete_oidc_provider(ACCOUNT, &arn).unwrap();
        assert_eq!(
            s.delete_oidc_provider(ACCOUNT, &arn).unwrap_err().code(),
            "NoSuchEntity"
        );
    }

    /// A state stored before `ProviderUrl` filed `HTTPS://Issuer.example/x` under
    /// `Issuer.example/x`; loaded, it is found by the ARN it is now given.
    #[test]
    fn providers_stored_under_an_older_key_are_found_by_their_arn() {
        let old = r#"{"users":{},"policies":{},"oidc_providers":{"Issuer.example/x":
            {"url":"HTTPS://Issuer.example/x","client_ids":["sts.amazonaws.com"],"created":1}}}"#;
        let s: IamState = serde_json::from_str(old).unwrap();
        let provider = s.oidc_providers.values().next().unwrap();
        let arn = provider.arn(ACCOUNT);
        assert_eq!(
            arn,
            "arn:aws:iam::111122223333:oidc-provider/issuer.example/x"
        );
        assert_eq!(
            s.oidc_provider(ACCOUNT, &arn).unwrap().url,
            "HTTPS://Issuer.example/x"
        );
    }

    #[test]
    fn client_ids_are_added_and_removed_idempotently() {
        let mut s = IamState::default();
        let arn = create(&mut s, EKS, &[THUMB]).unwrap().arn(ACCOUNT);
        s.add_client_id(ACCOUNT, &arn, "gitlab").unwrap();
        s.add_client_id(ACCOUNT, &arn, "gitlab").unwrap();
        s.remove_client_id(ACCOUNT, &arn, "absent").unwrap();
        assert_eq!(
            s.oidc_provider(ACCOUNT, &arn).unwrap().client_ids,
            ["sts.amazonaws.com", "gitlab"]
        );
        s.remove_client_id(ACCOUNT, &arn, "sts.amazonaws.com")
            .unwrap();
        assert_eq!(
            s.oidc_provider(ACCOUNT, &arn).unwrap().client_ids,
            ["gitlab"]
        );
        let long = "c".repeat(256);
        assert_eq!(
            s.add_client_id(ACCOUNT, &arn, &long).unwrap_err().code(),
            "ValidationError"
        );
        let many: Vec<String> = (0..=MAX_CLIENT_IDS).map(|i| format!("c{i}")).collect();
        assert_eq!(check_client_ids(&many).unwrap_err().code(), "LimitExceeded");
    }

    #[test]
    fn thumbprints_are_optional_but_well_formed() {
        let mut s = IamState::default();
        let bare = NewOidcProvider {
            url: "https://a.example".into(),
            ..Default::default()
        };
        s.create_oidc_provider(bare, 0).unwrap();
        assert_eq!(
            create(&mut s, "https://b.example", &["abc"])
                .unwrap_err()
                .to_string(),
            "Thumbprint must be exactly 40 characters."
        );
        assert_eq!(
            create(&mut s, "https://c.example", &[THUMB; 6])
                .unwrap_err()
                .code(),
            "InvalidInput"
        );
        let not_hex = "z".repeat(40);
        assert!(create(&mut s, "https://d.example", &[&not_hex]).is_err());
        assert_eq!(s.oidc_providers.len(), 1);
    }
}
