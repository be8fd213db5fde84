//! Users, their access keys, inline policies and attached managed policies.
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateUser.html> and the pages of
//! the other actions below.

use super::{ApiError, Cx, Outcome};
use crate::state::{AccessKey, User};
use crate::{Caller, IamError, IamState, ids, managed};
use keyless_types::xml::Xml;

/// Parameters Keyless does not store yet: refused, rather than silently dropped.
fn refuse_unsupported(cx: &Cx<'_>, names: &[&str]) -> Result<(), ApiError> {
    for name in names {
        if cx.params().mentions(name) {
            return Err(ApiError::Iam(IamError::InvalidInput(format!(
                "{name} is not supported by this server"
            ))));
        }
    }
    Ok(())
}

fn write_user(x: &mut Xml, user: &User, account: &str) {
    x.open("User")
        .text("Path", &user.path)
        .text("UserName", &user.name)
        .text("UserId", &user.id)
        .text("Arn", &user.arn(account))
        .date("CreateDate", user.created)
        .close("User");
}

pub(super) fn create_user(cx: &Cx<'_>) -> Outcome {
    refuse_unsupported(cx, &["Tags", "PermissionsBoundary"])?;
    let name = cx.params().required("UserName")?;
    let path = cx.params().get("Path").unwrap_or("/");
    cx.authorize(
        "iam:CreateUser",
        &format!("arn:aws:iam::{}:user{path}{name}", cx.account()),
    )?;
    let id = ids::user_id()?;
    let mut created = None;
    cx.update(&mut |s| {
        created = Some(s.create_user(name, path, id.clone(), cx.req.now)?.clone());
        Ok(())
    })?;
    let mut x = Xml::new();
    if let Some(user) = created {
        write_user(&mut x, &user, cx.account());
    }
    Ok(Some(x.finish()))
}

pub(super) fn get_user(cx: &Cx<'_>) -> Outcome {
    let mut x = Xml::new();
    match (cx.params().get("UserName"), cx.req.caller) {
        (None, Caller::Root) => {
            // The root user describes itself by the account.
            x.open("User")
                .text("UserId", cx.account())
                .text("Arn", &format!("arn:aws:iam::{}:root", cx.account()))
                .date("CreateDate", 0)
                .close("User");
        }
        _ => {
            let name = cx.user_name_or_caller()?;
            cx.authorize("iam:GetUser", &cx.user_arn(&name))?;
            let snapshot = cx.store.snapshot();
            write_user(&mut x, snapshot.state.user(&name)?, cx.account());
        }
    }
    Ok(Some(x.finish()))
}

pub(super) fn list_users(cx: &Cx<'_>) -> Outcome {
    let prefix = cx.params().get("PathPrefix").unwrap_or("/");
    let page = cx.params().page()?;
    cx.authorize(
        "iam:ListUsers",
        &format!("arn:aws:iam::{}:user/", cx.account()),
    )?;
    let snapshot = cx.store.snapshot();
    let users: Vec<&User> = snapshot
        .state
        .users
        .values()
        .filter(|u| u.path.starts_with(prefix))
        .collect();
    let (users, next) = page.take(users, |u| u.name.to_lowercase());
    let mut x = Xml::new();
    x.members("Users", users, |x, u| {
        x.text("Path", &u.path)
            .text("UserName", &u.name)
            .text("UserId", &u.id)
            .text("Arn", &u.arn(cx.account()))
            .date("CreateDate", u.created);
    });
    truncation(&mut x, next);
    Ok(Some(x.finish()))
}

/// `IsTruncated` and, when more follow, `Marker`.
pub(super) fn truncation(x: &mut Xml, next: Option<String>) {
    x.value("IsTruncated", next.is_some());
    if let Some(marker) = next {
        x.text("Marker", &marker);
    }
}

pub(super) fn delete_user(cx: &Cx<'_>) -> Outcome {
    let name = cx.params().required("UserName")?;
    cx.authorize("iam:DeleteUser", &cx.user_arn(name))?;
    cx.update(&mut |s| s.delete_user(name))?;
    Ok(None)
}

pub(super) fn create_access_key(cx: &Cx<'_>) -> Outcome {
    let name = cx.user_name_or_caller()?;
    cx.authorize("iam:CreateAccessKey", &cx.user_arn(&name))?;
    let (id, secret) = (ids::access_key_id()?, ids::secret_access_key()?);
    let mut created: Option<(String, AccessKey)> = None;
    cx.update(&mut |s| {
        let key = s.create_access_key(&name, id.clone(), secret.clone(), cx.req.now)?;
        created = Some((s.user(&name)?.name.clone(), key));
        Ok(())
    })?;
    let mut x = Xml::new();
    if let Some((user, key)) = created {
        x.open("AccessKey")
            .text("UserName", &user)
            .text("AccessKeyId", &key.id)
            .text("Status", status(key.active))
            .text("SecretAccessKey", key.secret.expose())
            .date("CreateDate", key.created)
            .close("AccessKey");
    }
    Ok(Some(x.finish()))
}

fn status(active: bool) -> &'static str {
    if active { "Active" } else { "Inactive" }
}

pub(super) fn list_access_keys(cx: &Cx<'_>) -> Outcome {
    let name = cx.user_name_or_caller()?;
    let page = cx.params().page()?;
    cx.authorize("iam:ListAccessKeys", &cx.user_arn(&name))?;
    let snapshot = cx.store.snapshot();
    let user = snapshot.state.user(&name)?;
    let (keys, next) = page.take(user.access_keys.iter().collect(), |k| k.id.clone());
    let mut x = Xml::new();
    x.members("AccessKeyMetadata", keys, |x, k| {
        x.text("UserName", &user.name)
            .text("AccessKeyId", &k.id)
            .text("Status", status(k.active))
            .date("CreateDate", k.created);
    });
    truncation(&mut x, next);
    Ok(Some(x.finish()))
}

pub(super) fn update_access_key(cx: &Cx<'_>) -> Outcome {
    let name = cx.user_name_or_caller()?;
    let id = cx.params().required("AccessKeyId")?;
    let active = match cx.params().required("Status")? {
        "Active" => true,
        "Inactive" => false,
        other => {
            return Err(ApiError::Iam(IamError::Validation(format!(
                "1 validation error detected: Value '{other}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
            ))));
        }
    };
    cx.authorize("iam:UpdateAccessKey", &cx.user_arn(&name))?;
    cx.update(&mut |s| s.update_access_key(&name, id, active))?;
    Ok(None)
}

pub(super) fn delete_access_key(cx: &Cx<'_>) -> Outcome {
    let name = cx.user_name_or_caller()?;
    let id = cx.params().required("AccessKeyId")?;
    cx.authorize("iam:DeleteAccessKey", &cx.user_arn(&name))?;
    cx.update(&mut |s| s.delete_access_key(&name, id))?;
    Ok(None)
}

pub(super) fn put_user_policy(cx: &Cx<'_>) -> Outcome {
    let p = cx.params();
    let (name, policy, document) = (
        p.required("UserName")?,
        p.required("PolicyName")?,
        p.required("PolicyDocument")?,
    );
    cx.authorize("iam:PutUserPolicy", &cx.user_arn(name))?;
    cx.update(&mut |s| s.put_user_policy(name, policy, document))?;
    Ok(None)
}

/// A policy document as IAM returns it: URL-encoded (RFC 3986); botocore decodes it.
pub(super) fn encode_document(document: &str) -> String {
    keyless_types::encoding::uri_encode(document, false)
}

pub(super) fn get_user_policy(cx: &Cx<'_>) -> Outcome {
    let (name, policy) = (
        cx.params().required("UserName")?,
        cx.params().required("PolicyName")?,
    );
    cx.authorize("iam:GetUserPolicy", &cx.user_arn(name))?;
    let snapshot = cx.store.snapshot();
    let document = snapshot.state.user_policy(name, policy)?;
    let mut x = Xml::new();
    x.text("UserName", &snapshot.state.user(name)?.name)
        .text("PolicyName", policy)
        .text("PolicyDocument", &encode_document(document));
    Ok(Some(x.finish()))
}

pub(super) fn list_user_policies(cx: &Cx<'_>) -> Outcome {
    let name = cx.params().required("UserName")?;
    let page = cx.params().page()?;
    cx.authorize("iam:ListUserPolicies", &cx.user_arn(name))?;
    let snapshot = cx.store.snapshot();
    let names: Vec<&String> = snapshot.state.user(name)?.inline_policies.keys().collect();
    let (names, next) = page.take(names, |n| (*n).clone());
    let mut x = Xml::new();
    x.open("PolicyNames");
    for n in names {
        x.text("member", n);
    }
    x.close("PolicyNames");
    truncation(&mut x, next);
    Ok(Some(x.finish()))
}

pub(super) fn delete_user_policy(cx: &Cx<'_>) -> Outcome {
    let (name, policy) = (
        cx.params().required("UserName")?,
        cx.params().required("PolicyName")?,
    );
    cx.authorize("iam:DeleteUserPolicy", &cx.user_arn(name))?;
    cx.update(&mut |s| s.delete_user_policy(name, policy))?;
    Ok(None)
}

pub(super) fn attach_user_policy(cx: &Cx<'_>) -> Outcome {
    let (name, arn) = (
        cx.params().required("UserName")?,
        cx.params().required("PolicyArn")?,
    );
    cx.authorize_with(
        "iam:AttachUserPolicy",
        &cx.user_arn(name),
        &[("iam:PolicyARN", arn)],
    )?;
    let account = cx.account().to_owned();
    cx.update(&mut |s| s.attach_user_policy(&account, name, arn))?;
    Ok(None)
}

pub(super) fn detach_user_policy(cx: &Cx<'_>) -> Outcome {
    let (name, arn) = (
        cx.params().required("UserName")?,
        cx.params().required("PolicyArn")?,
    );
    cx.authorize_with(
        "iam:DetachUserPolicy",
        &cx.user_arn(name),
        &[("iam:PolicyARN", arn)],
    )?;
    cx.update(&mut |s| s.detach_user_policy(name, arn))?;
    Ok(None)
}

pub(super) fn list_attached_user_policies(cx: &Cx<'_>) -> Outcome {
    let name = cx.params().required("UserName")?;
    cx.authorize("iam:ListAttachedUserPolicies", &cx.user_arn(name))?;
    let snapshot = cx.store.snapshot();
    attached_policies(cx, &snapshot.state, &snapshot.state.user(name)?.attached)
}

/// A `ListAttached...Policies` result: `attached` (a user's or role's) with their names,
/// selected by `PathPrefix` and paged.
pub(super) fn attached_policies(cx: &Cx<'_>, state: &IamState, attached: &[String]) -> Outcome {
    let prefix = cx.params().get("PathPrefix").unwrap_or("/");
    let page = cx.params().page()?;
    let attached: Vec<(String, &String)> = attached
        .iter()
        .filter_map(|arn| match managed::by_arn(arn) {
            // AWS managed policies Keyless carries all live at `/`.
            Some(m) => prefix.eq("/").then(|| (m.name.to_owned(), arn)),
            None => state
                .policy(cx.account(), arn)
                .ok()
                .filter(|p| p.path.starts_with(prefix))
                .map(|p| (p.name.clone(), arn)),
        })
        .collect();
    let (attached, next) = page.take(attached, |(_, arn)| (*arn).clone());
    let mut x = Xml::new();
    x.members("AttachedPolicies", attached, |x, (name, arn)| {
        x.text("PolicyName", &name).text("PolicyArn", arn);
    });
    truncation(&mut x, next);
    Ok(Some(x.finish()))
}
