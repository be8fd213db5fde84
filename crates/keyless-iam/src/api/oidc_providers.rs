//! OpenID Connect identity providers: the issuers whose tokens `AssumeRoleWithWebIdentity`
//! accepts, and the audiences (client IDs) each may name.
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateOpenIDConnectProvider.html>
//! and the pages of the other actions below.

use super::roles::{tags, write_tags};
use super::{Cx, Outcome};
use crate::oidc_providers::{NewOidcProvider, parse_provider_url};
use keyless_types::xml::Xml;

fn owned(items: Vec<&str>) -> Vec<String> {
    items.into_iter().map(str::to_owned).collect()
}

pub(super) fn create_open_id_connect_provider(cx: &Cx<'_>) -> Outcome {
    let p = cx.params();
    let new = NewOidcProvider {
        url: p.required("Url")?.to_owned(),
        client_ids: owned(p.list("ClientIDList")),
        thumbprints: owned(p.list("ThumbprintList")),
        tags: tags(p)?,
    };
    let arn = parse_provider_url(&new.url)?.arn(cx.account());
    cx.authorize("iam:CreateOpenIDConnectProvider", &arn)?;
    let mut created = None;
    cx.update(&mut |s| {
        let provider = s.create_oidc_provider(new.clone(), cx.req.now)?;
        created = Some(provider.clone());
        Ok(())
    })?;
    let mut x = Xml::new();
    if let Some(provider) = created {
        x.text("OpenIDConnectProviderArn", &provider.arn(cx.account()));
        write_tags(&mut x, &provider.tags);
    }
    Ok(Some(x.finish()))
}

pub(super) fn get_open_id_connect_provider(cx: &Cx<'_>) -> Outcome {
    let arn = cx.params().required("OpenIDConnectProviderArn")?;
    cx.authorize("iam:GetOpenIDConnectProvider", arn)?;
    let snapshot = cx.store.snapshot();
    let provider = snapshot.state.oidc_provider(cx.account(), arn)?;
    let mut x = Xml::new();
    // IAM answers the URL without its scheme.
    x.text("Url", &provider.key());
    for (tag, items) in [
        ("ClientIDList", &provider.client_ids),
        ("ThumbprintList", &provider.thumbprints),
    ] {
        x.open(tag);
        for item in items {
            x.text("member", item);
        }
        x.close(tag);
    }
    x.date("CreateDate", provider.created);
    write_tags(&mut x, &provider.tags);
    Ok(Some(x.finish()))
}

pub(super) fn list_open_id_connect_providers(cx: &Cx<'_>) -> Outcome {
    cx.authorize("iam:ListOpenIDConnectProviders", "*")?;
    let snapshot = cx.store.snapshot();
    let mut x = Xml::new();
    x.members(
        "OpenIDConnectProviderList",
        snapshot.state.oidc_providers.values(),
        |x, provider| {
            x.text("Arn", &provider.arn(cx.account()));
        },
    );
    Ok(Some(x.finish()))
}

pub(super) fn delete_open_id_connect_provider(cx: &Cx<'_>) -> Outcome {
    let arn = cx.params().required("OpenIDConnectProviderArn")?;
    cx.authorize("iam:DeleteOpenIDConnectProvider", arn)?;
    let account = cx.account().to_owned();
    cx.update(&mut |s| s.delete_oidc_provider(&account, arn))?;
    Ok(None)
}

pub(super) fn add_client_id(cx: &Cx<'_>) -> Outcome {
    let arn = cx.params().required("OpenIDConnectProviderArn")?;
    let id = cx.params().required("ClientID")?;
    cx.authorize("iam:AddClientIDToOpenIDConnectProvider", arn)?;
    let account = cx.account().to_owned();
    cx.update(&mut |s| s.add_client_id(&account, arn, id))?;
    Ok(None)
}

pub(super) fn remove_client_id(cx: &Cx<'_>) -> Outcome {
    let arn = cx.params().required("OpenIDConnectProviderArn")?;
    let id = cx.params().required("ClientID")?;
    cx.authorize("iam:RemoveClientIDFromOpenIDConnectProvider", arn)?;
    let account = cx.account().to_owned();
    cx.update(&mut |s| s.remove_client_id(&account, arn, id))?;
    Ok(None)
}
