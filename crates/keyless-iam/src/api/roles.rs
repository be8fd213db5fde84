//! Roles: their trust policies, inline policies, attached managed policies and settings.
//!
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html> and the pages of
//! the other actions below; the `Role` type is
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_Role.html>.

use super::users::{attached_policies, encode_document, truncation};
use super::{Cx, Outcome, Params};
use crate::roles::{NewRole, Role};
use crate::rules::check_path;
use crate::{IamError, ids};
use keyless_types::xml::Xml;

/// How much of a role a response shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detail {
    /// `ListRoles`: no boundary, tags or last use (as IAM lists roles).
    Listed,
    /// `CreateRole`: everything it was given.
    Created,
    /// `GetRole`: everything, with `RoleLastUsed`.
    Full,
}

/// The fields of a role, inside `<Role>` or a list's `<member>`.
fn write_role(x: &mut Xml, role: &Role, account: &str, detail: Detail) {
    x.text("Path", &role.path)
        .text("RoleName", &role.name)
        .text("RoleId", &role.id)
        .text("Arn", &role.arn(account))
        .date("CreateDate", role.created)
        .text(
            "AssumeRolePolicyDocument",
            &encode_document(&role.assume_role_policy),
        );
    if let Some(description) = &role.description {
        x.text("Description", description);
    }
    x.value("MaxSessionDuration", role.max_session_duration);
    if detail == Detail::Listed {
        return;
    }
    if let Some(arn) = &role.permissions_boundary {
        x.open("PermissionsBoundary")
            .text("PermissionsBoundaryType", "PermissionsBoundaryPolicy")
            .text("PermissionsBoundaryArn", arn)
            .close("PermissionsBoundary");
    }
    write_tags(x, &role.tags);
    if detail == Detail::Full {
        // Keyless does not record when a role was last used; IAM answers an empty element
        // for a role never used.
        x.open("RoleLastUsed").close("RoleLastUsed");
    }
}

/// `<Tags>` with its members, when there are any.
pub(super) fn write_tags(x: &mut Xml, tags: &[(String, String)]) {
    if !tags.is_empty() {
        x.members("Tags", tags, |x, (key, value)| {
            x.text("Key", key).text("Value", value);
        });
    }
}

/// `Tags.member.N.Key` and `Tags.member.N.Value`.
pub(super) fn tags(p: &Params) -> Result<Vec<(String, String)>, IamError> {
    p.structs("Tags")
        .iter()
        .map(|t| {
            Ok((
                t.required("Key")?.to_owned(),
                t.get("Value").unwrap_or("").to_owned(),
            ))
        })
        .collect()
}

/// `MaxSessionDuration`, when given.
fn max_session_duration(p: &Params) -> Result<Option<u32>, IamError> {
    p.get("MaxSessionDuration")
        .map(|v| {
            v.parse::<u32>().map_err(|_| {
                IamError::Validation(format!(
                    "1 validation error detected: Value '{v}' at 'maxSessionDuration' failed to satisfy constraint: Member must have value greater than or equal to 3600"
                ))
            })
        })
        .transpose()
}

/// `arn:aws:iam::ACCOUNT:role/PATH/NAME` of role `name`, by its path if it exists.
fn role_arn(cx: &Cx<'_>, name: &str) -> String {
    match cx.store.snapshot().state.role(name) {
        Ok(role) => role.arn(cx.account()),
        Err(_) => format!("arn:aws:iam::{}:role/{name}", cx.account()),
    }
}

pub(super) fn create_role(cx: &Cx<'_>) -> Outcome {
    let p = cx.params();
    let name = p.required("RoleName")?;
    let path = p.get("Path").unwrap_or("/");
    let document = p.required("AssumeRolePolicyDocument")?;
    let new = NewRole {
        name,
        path,
        assume_role_policy: document,
        description: p.get("Description"),
        max_session_duration: max_session_duration(p)?,
        permissions_boundary: p.get("PermissionsBoundary"),
        tags: tags(p)?,
    };
    let resource = format!("arn:aws:iam::{}:role{path}{name}", cx.account());
    match new.permissions_boundary {
        Some(boundary) => cx.authorize_with(
            "iam:CreateRole",
            &resource,
            &[("iam:PermissionsBoundary", boundary)],
        )?,
        None => cx.authorize("iam:CreateRole", &resource)?,
    }
    let id = ids::role_id()?;
    let account = cx.account().to_owned();
    let mut created = None;
    cx.update(&mut |s| {
        let role = s.create_role(&account, new.clone(), id.clone(), cx.req.now)?;
        created = Some(role.clone());
        Ok(())
    })?;
    let mut x = Xml::new();
    if let Some(role) = created {
        x.open("Role");
        write_role(&mut x, &role, cx.account(), Detail::Created);
        x.close("Role");
    }
    Ok(Some(x.finish()))
}

pub(super) fn get_role(cx: &Cx<'_>) -> Outcome {
    let name = cx.params().required("RoleName")?;
    cx.authorize("iam:GetRole", &role_arn(cx, name))?;
    let snapshot = cx.store.snapshot();
    let mut x = Xml::new();
    x.open("Role");
    write_role(
        &mut x,
        snapshot.state.role(name)?,
        cx.account(),
        Detail::Full,
    );
    x.close("Role");
    Ok(Some(x.finish()))
}

pub(super) fn list_roles(cx: &Cx<'_>) -> Outcome {
    let prefix = cx.params().get("PathPrefix").unwrap_or("/");
    check_path("pathPrefix", prefix)?;
    let page = cx.params().page()?;
    cx.authorize(
        "iam:ListRoles",
        &format!("arn:aws:iam::{}:role/", cx.account()),
    )?;
    let snapshot = cx.store.snapshot();
    let roles: Vec<&Role> = snapshot
        .state
        .roles
        .values()
        .filter(|r| r.path.starts_with(prefix))
        .collect();
    let (roles, next) = page.take(roles, |r| r.name.to_lowercase());
    let mut x = Xml::new();
    x.members("Roles", roles, |x, r| {
        write_role(x, r, cx.account(), Detail::Listed);
    });
    truncation(&mut x, next);
    Ok(Some(x.finish()))
}

pub(super) fn delete_role(cx: &Cx<'_>) -> Outcome {
    let name = cx.params().required("RoleName")?;
    cx.authorize("iam:DeleteRole", &role_arn(cx, name))?;
    cx.update(&mut |s| s.delete_role(name))?;
    Ok(None)
}

pub(super) fn update_role(cx: &Cx<'_>) -> Outcome {
    let p = cx.params();
    let name = p.required("RoleName")?;
    let description = p.get("Description");
    let seconds = max_session_duration(p)?;
    cx.authorize("iam:UpdateRole", &role_arn(cx, name))?;
    cx.update(&mut |s| s.update_role(name, description, seconds))?;
    // UpdateRole answers an empty result element.
    Ok(Some(String::new()))
}

pub(super) fn update_assume_role_policy(cx: &Cx<'_>) -> Outcome {
    let name = cx.params().required("RoleName")?;
    let document = cx.params().required("PolicyDocument")?;
    cx.authorize("iam:UpdateAssumeRolePolicy", &role_arn(cx, name))?;
    cx.update(&mut |s| s.update_assume_role_policy(name, document))?;
    Ok(None)
}

pub(super) fn put_role_policy(cx: &Cx<'_>) -> Outcome {
    let p = cx.params();
    let (name, policy, document) = (
        p.required("RoleName")?,
        p.required("PolicyName")?,
        p.required("PolicyDocument")?,
    );
    cx.authorize("iam:PutRolePolicy", &role_arn(cx, name))?;
    cx.update(&mut |s| s.put_role_policy(name, policy, document))?;
    Ok(None)
}

pub(super) fn get_role_policy(cx: &Cx<'_>) -> Outcome {
    let (name, policy) = (
        cx.params().required("RoleName")?,
        cx.params().required("PolicyName")?,
    );
    cx.authorize("iam:GetRolePolicy", &role_arn(cx, name))?;
    let snapshot = cx.store.snapshot();
    let document = snapshot.state.role_policy(name, policy)?;
    let mut x = Xml::new();
    x.text("RoleName", &snapshot.state.role(name)?.name)
        .text("PolicyName", policy)
        .text("PolicyDocument", &encode_document(document));
    Ok(Some(x.finish()))
}

pub(super) fn list_role_policies(cx: &Cx<'_>) -> Outcome {
    let name = cx.params().required("RoleName")?;
    let page = cx.params().page()?;
    cx.authorize("iam:ListRolePolicies", &role_arn(cx, name))?;
    let snapshot = cx.store.snapshot();
    let names: Vec<&String> = snapshot.state.role(name)?.inline_policies.keys().collect();
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

pub(super) fn delete_role_policy(cx: &Cx<'_>) -> Outcome {
    let (name, policy) = (
        cx.params().required("RoleName")?,
        cx.params().required("PolicyName")?,
    );
    cx.authorize("iam:DeleteRolePolicy", &role_arn(cx, name))?;
    cx.update(&mut |s| s.delete_role_policy(name, policy))?;
    Ok(None)
}

pub(super) fn attach_role_policy(cx: &Cx<'_>) -> Outcome {
    let (name, arn) = (
        cx.params().required("RoleName")?,
        cx.params().required("PolicyArn")?,
    );
    cx.authorize_with(
        "iam:AttachRolePolicy",
        &role_arn(cx, name),
        &[("iam:PolicyARN", arn)],
    )?;
    let account = cx.account().to_owned();
    cx.update(&mut |s| s.attach_role_policy(&account, name, arn))?;
    Ok(None)
}

pub(super) fn detach_role_policy(cx: &Cx<'_>) -> Outcome {
    let (name, arn) = (
        cx.params().required("RoleName")?,
        cx.params().required("PolicyArn")?,
    );
    cx.authorize_with(
        "iam:DetachRolePolicy",
        &role_arn(cx, name),
        &[("iam:PolicyARN", arn)],
    )?;
    cx.update(&mut |s| s.detach_role_policy(name, arn))?;
    Ok(None)
}

pub(super) fn list_attached_role_policies(cx: &Cx<'_>) -> Outcome {
    let name = cx.params().required("RoleName")?;
    cx.authorize("iam:ListAttachedRolePolicies", &role_arn(cx, name))?;
    let snapshot = cx.store.snapshot();
    attached_policies(cx, &snapshot.state, &snapshot.state.role(name)?.attached)
}
