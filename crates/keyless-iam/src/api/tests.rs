//! The IAM API driven without a transport: parameters in, XML out.

use std::sync::Arc;

use super::*;
use crate::{EmbeddedIam, IamState, Identity};

const ACCOUNT: &str = "111122223333";

struct Fixture {
    store: EmbeddedIam,
}

impl Fixture {
    fn new() -> Self {
        Self {
            store: EmbeddedIam::in_memory(ACCOUNT, IamState::default()).unwrap(),
        }
    }

    fn call_as(&self, caller: &Caller, action: &str, params: &[(&str, &str)]) -> ApiResponse {
        let params = Params::new(
            params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        let req = ApiRequest {
            action,
            params: &params,
            caller,
            source_ip: Some("127.0.0.1".parse().unwrap()),
            secure_transport: false,
            now: 1_795_608_000,
        };
        handle(&self.store, &req, "req-1")
    }

    fn call(&self, action: &str, params: &[(&str, &str)]) -> ApiResponse {
        self.call_as(&Caller::Root, action, params)
    }

    /// Calls as root and expects an error with `status` whose body holds `text`.
    fn fails(&self, action: &str, params: &[(&str, &str)], status: u16, text: &str) {
        let r = self.call(action, params);
        assert_eq!(r.status, status, "{action}: {}", r.body);
        assert!(r.body.contains(text), "{action}: {}", r.body);
    }

    fn ok(&self, action: &str, params: &[(&str, &str)]) -> String {
        let r = self.call(action, params);
        assert_eq!(r.status, 200, "{action}: {}", r.body);
        r.body
    }

    fn user(&self, name: &str) -> Caller {
        let snapshot = self.store.snapshot();
        let user = snapshot.state.user(name).unwrap();
        Caller::User(Arc::new(Identity {
            name: user.name.clone(),
            user_id: user.id.clone(),
            arn: user.arn(ACCOUNT),
            account_id: ACCOUNT.into(),
            policies: snapshot.state.user_policies(ACCOUNT, user).unwrap(),
        }))
    }
}

fn between<'a>(body: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = body.find(&open).unwrap() + open.len();
    let end = body[start..].find(&format!("</{tag}>")).unwrap();
    &body[start..start + end]
}

#[test]
fn user_lifecycle_in_iam_xml() {
    let f = Fixture::new();
    let body = f.ok("CreateUser", &[("UserName", "bob"), ("Path", "/team/")]);
    assert!(
        body.contains(
            "<CreateUserResult><User><Path>/team/</Path><UserName>bob</UserName><UserId>AIDA"
        ),
        "{body}"
    );
    assert!(body.contains("<Arn>arn:aws:iam::111122223333:user/team/bob</Arn><CreateDate>2026-11-25T12:00:00Z</CreateDate>"));
    f.fails(
        "CreateUser",
        &[("UserName", "BOB")],
        409,
        "<Code>EntityAlreadyExists</Code><Message>User with name BOB already exists.</Message>",
    );
    let got = f.ok("GetUser", &[("UserName", "bob")]);
    assert!(got.contains("<UserName>bob</UserName>"));
    f.ok("DeleteUser", &[("UserName", "bob")]);
    f.fails(
        "GetUser",
        &[("UserName", "bob")],
        404,
        "<Type>Sender</Type><Code>NoSuchEntity</Code><Message>The user with name bob cannot be found.</Message>",
    );
    f.fails(
        "CreateUser",
        &[],
        400,
        "Value null at 'userName' failed to satisfy constraint: Member must not be null",
    );
    let unknown = f.call("CreateGroup", &[]);
    assert!(unknown.body.contains("<Code>InvalidAction</Code>"));
}

#[test]
fn listings_page_with_markers() {
    let f = Fixture::new();
    for name in ["carol", "alice", "bob"] {
        f.ok("CreateUser", &[("UserName", name)]);
    }
    let first = f.ok("ListUsers", &[("MaxItems", "2")]);
    let names: Vec<&str> = first
        .match_indices("<UserName>")
        .map(|(i, _)| &first[i + 10..i + 13])
        .collect();
    assert_eq!(names, ["ali", "bob"]);
    assert_eq!(between(&first, "IsTruncated"), "true");
    let marker = between(&first, "Marker").to_owned();
    let rest = f.ok("ListUsers", &[("MaxItems", "2"), ("Marker", &marker)]);
    assert!(rest.contains("<UserName>carol</UserName>") && !rest.contains("bob"));
    assert_eq!(between(&rest, "IsTruncated"), "false");
    assert_eq!(f.call("ListUsers", &[("MaxItems", "0")]).status, 400);
}

#[test]
fn access_keys_are_created_listed_deactivated_and_deleted() {
    let f = Fixture::new();
    f.ok("CreateUser", &[("UserName", "bob")]);
    let created = f.ok("CreateAccessKey", &[("UserName", "bob")]);
    let id = between(&created, "AccessKeyId").to_owned();
    let secret = between(&created, "SecretAccessKey").to_owned();
    assert!(id.starts_with("AKIA") && secret.len() == 40);
    assert_eq!(between(&created, "Status"), "Active");
    let snap = f.store.snapshot();
    assert_eq!(
        snap.directory.credential(&id).unwrap().secret.expose(),
        secret
    );
    let listed = f.ok("ListAccessKeys", &[("UserName", "bob")]);
    assert!(
        listed.contains(&format!("<AccessKeyId>{id}</AccessKeyId>")) && !listed.contains(&secret)
    );
    f.ok(
        "UpdateAccessKey",
        &[
            ("UserName", "bob"),
            ("AccessKeyId", &id),
            ("Status", "Inactive"),
        ],
    );
    assert!(f.store.snapshot().directory.credential(&id).is_none());
    let bad = f.call(
        "UpdateAccessKey",
        &[("UserName", "bob"), ("AccessKeyId", &id), ("Status", "Off")],
    );
    assert!(bad.body.contains("<Code>ValidationError</Code>"));
    f.ok(
        "DeleteAccessKey",
        &[("UserName", "bob"), ("AccessKeyId", &id)],
    );
    let root_self = f.call("CreateAccessKey", &[]);
    assert!(
        root_self.body.contains("Must specify userName"),
        "{}",
        root_self.body
    );
}

#[test]
fn documents_come_back_url_encoded_and_managed_policies_attach() {
    let f = Fixture::new();
    f.ok("CreateUser", &[("UserName", "bob")]);
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;
    f.ok(
        "PutUserPolicy",
        &[
            ("UserName", "bob"),
            ("PolicyName", "read"),
            ("PolicyDocument", doc),
        ],
    );
    let got = f.ok(
        "GetUserPolicy",
        &[("UserName", "bob"), ("PolicyName", "read")],
    );
    let encoded = between(&got, "PolicyDocument");
    assert!(
        encoded.starts_with("%7B%22Version%22%3A%222012-10-17%22"),
        "{encoded}"
    );
    let decoded = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .unwrap();
    assert_eq!(decoded, doc);
    let bad = f.call(
        "PutUserPolicy",
        &[
            ("UserName", "bob"),
            ("PolicyName", "x"),
            ("PolicyDocument", "{"),
        ],
    );
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("<Code>MalformedPolicyDocument</Code>"));

    let created = f.ok(
        "CreatePolicy",
        &[
            ("PolicyName", "rw"),
            ("PolicyDocument", doc),
            ("Description", "d"),
        ],
    );
    assert!(
        created.contains("<Arn>arn:aws:iam::111122223333:policy/rw</Arn>")
            && created.contains("<DefaultVersionId>v1</DefaultVersionId>")
    );
    let arn = "arn:aws:iam::111122223333:policy/rw";
    f.ok(
        "AttachUserPolicy",
        &[("UserName", "bob"), ("PolicyArn", arn)],
    );
    f.ok(
        "AttachUserPolicy",
        &[
            ("UserName", "bob"),
            (
                "PolicyArn",
                "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
            ),
        ],
    );
    let nope = f.call(
        "AttachUserPolicy",
        &[
            ("UserName", "bob"),
            ("PolicyArn", "arn:aws:iam::aws:policy/Nope"),
        ],
    );
    assert!(nope.body.contains("<Message>Policy arn:aws:iam::aws:policy/Nope does not exist or is not attachable.</Message>"), "{}", nope.body);
    let attached = f.ok("ListAttachedUserPolicies", &[("UserName", "bob")]);
    assert!(attached.contains("<member><PolicyName>AmazonS3ReadOnlyAccess</PolicyName><PolicyArn>arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess</PolicyArn></member>"), "{attached}");
    let policy = f.ok("GetPolicy", &[("PolicyArn", arn)]);
    assert_eq!(between(&policy, "AttachmentCount"), "1");
    let conflict = f.call("DeletePolicy", &[("PolicyArn", arn)]);
    assert_eq!(conflict.status, 409);
    let version = f.ok(
        "GetPolicyVersion",
        &[("PolicyArn", arn), ("VersionId", "v1")],
    );
    assert_eq!(between(&version, "IsDefaultVersion"), "true");
    let local = f.ok("ListPolicies", &[("Scope", "Local")]);
    assert_eq!(local.matches("<PolicyName>").count(), 1);
    let all = f.ok("ListPolicies", &[]);
    assert!(all.contains("<PolicyName>AmazonS3FullAccess</PolicyName>"));
    let attached_only = f.ok("ListPolicies", &[("OnlyAttached", "true")]);
    assert_eq!(attached_only.matches("<PolicyName>").count(), 2);
}

#[test]
fn users_act_only_as_their_policies_allow() {
    let f = Fixture::new();
    f.ok("CreateUser", &[("UserName", "admin")]);
    f.ok("CreateUser", &[("UserName", "reader")]);
    f.ok(
        "AttachUserPolicy",
        &[
            ("UserName", "reader"),
            ("PolicyArn", "arn:aws:iam::aws:policy/IAMReadOnlyAccess"),
        ],
    );
    let own_keys = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["iam:*AccessKey*"],"Resource":"arn:aws:iam::*:user/${aws:username}"}}"#;
    f.ok(
        "PutUserPolicy",
        &[
            ("UserName", "admin"),
            ("PolicyName", "own-keys"),
            ("PolicyDocument", own_keys),
        ],
    );
    let reader = f.user("reader");
    assert_eq!(f.call_as(&reader, "ListUsers", &[]).status, 200);
    let denied = f.call_as(&reader, "CreateUser", &[("UserName", "eve")]);
    assert_eq!(denied.status, 403);
    assert!(denied.body.contains("<Code>AccessDenied</Code><Message>User: arn:aws:iam::111122223333:user/reader is not authorized to perform: iam:CreateUser on resource: arn:aws:iam::111122223333:user/eve because no identity-based policy allows the iam:CreateUser action</Message>"), "{}", denied.body);
    assert!(f.store.snapshot().state.user("eve").is_err());
    let admin = f.user("admin");
    assert_eq!(f.call_as(&admin, "CreateAccessKey", &[]).status, 200);
    assert_eq!(
        f.call_as(&admin, "CreateAccessKey", &[("UserName", "reader")])
            .status,
        403
    );
}

#[test]
fn simulations_answer_in_xml() {
    let f = Fixture::new();
    let doc = r#"{"Version":"2012-10-17","Statement":{"Sid":"Read","Effect":"Allow","Action":"s3:GetObject","Resource":"*"}}"#;
    let custom = f.ok(
        "SimulateCustomPolicy",
        &[
            ("PolicyInputList.member.1", doc),
            ("ActionNames.member.1", "s3:GetObject"),
            ("ActionNames.member.2", "s3:PutObject"),
            ("ContextEntries.member.1.ContextKeyName", "aws:SourceIp"),
            (
                "ContextEntries.member.1.ContextKeyValues.member.1",
                "10.0.0.1",
            ),
            ("ContextEntries.member.1.ContextKeyType", "ip"),
        ],
    );
    assert!(custom.contains("<EvalActionName>s3:GetObject</EvalActionName><EvalResourceName>*</EvalResourceName><EvalDecision>allowed</EvalDecision><MatchedStatements><member><SourcePolicyId>PolicyInputList.1</SourcePolicyId><SourcePolicyType>IAM Policy</SourcePolicyType><StartPosition><Line>1</Line>"), "{custom}");
    assert!(custom.contains("<EvalDecision>implicitDeny</EvalDecision>"));
    f.ok("CreateUser", &[("UserName", "bob")]);
    f.ok(
        "PutUserPolicy",
        &[
            ("UserName", "bob"),
            ("PolicyName", "read"),
            ("PolicyDocument", doc),
        ],
    );
    let principal = f.ok(
        "SimulatePrincipalPolicy",
        &[
            ("PolicySourceArn", "arn:aws:iam::111122223333:user/bob"),
            ("ActionNames.member.1", "s3:GetObject"),
            ("ResourceArns.member.1", "arn:aws:s3:::b/k"),
        ],
    );
    assert!(
        principal.contains(
            "<SourcePolicyId>read</SourcePolicyId><SourcePolicyType>user</SourcePolicyType>"
        ),
        "{principal}"
    );
    assert!(principal.contains("<ResourceSpecificResults><member><EvalResourceName>arn:aws:s3:::b/k</EvalResourceName><EvalResourceDecision>allowed</EvalResourceDecision>"));
    let nobody = f.call(
        "SimulatePrincipalPolicy",
        &[
            ("PolicySourceArn", "arn:aws:iam::111122223333:user/nobody"),
            ("ActionNames.member.1", "s3:GetObject"),
        ],
    );
    assert_eq!(nobody.status, 404);
}

#[test]
fn params_decode_forms_lists_and_structs() {
    let p = Params::parse_form(
        "Action=X&A.member.2=b&A.member.1=a%2Fz&C.member.1.K=k+1&C.member.1.V.member.1=v&Flag=TRUE",
    );
    assert_eq!(p.get("Action"), Some("X"));
    assert_eq!(p.list("A"), ["a/z", "b"]);
    let s = p.structs("C");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].get("K"), Some("k 1"));
    assert_eq!(s[0].list("V"), ["v"]);
    assert!(p.flag("Flag").unwrap());
    assert!(p.mentions("C") && !p.mentions("Ac"));
}

#[test]
fn attach_conditions_see_the_policy_arn() {
    let f = Fixture::new();
    f.ok("CreateUser", &[("UserName", "delegate")]);
    let guarded = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["iam:AttachUserPolicy","iam:DetachUserPolicy"],"Resource":"*","Condition":{"ArnNotEquals":{"iam:PolicyARN":"arn:aws:iam::aws:policy/AdministratorAccess"}}}}"#;
    f.ok(
        "PutUserPolicy",
        &[
            ("UserName", "delegate"),
            ("PolicyName", "guard"),
            ("PolicyDocument", guarded),
        ],
    );
    let delegate = f.user("delegate");
    let attach = |arn: &str| {
        f.call_as(
            &delegate,
            "AttachUserPolicy",
            &[("UserName", "delegate"), ("PolicyArn", arn)],
        )
        .status
    };
    assert_eq!(attach("arn:aws:iam::aws:policy/AdministratorAccess"), 403);
    assert_eq!(
        attach("arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"),
        200
    );
}

#[test]
fn simulations_page_and_are_bounded() {
    let f = Fixture::new();
    let doc =
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#;
    let params = |extra: &[(&'static str, &'static str)]| {
        let mut p = vec![
            ("PolicyInputList.member.1", doc),
            ("ActionNames.member.1", "s3:GetObject"),
            ("ActionNames.member.2", "s3:PutObject"),
            ("ActionNames.member.3", "s3:ListBucket"),
            ("MaxItems", "2"),
        ];
        p.extend_from_slice(extra);
        p
    };
    let first = f.ok("SimulateCustomPolicy", &params(&[]));
    assert_eq!(first.matches("<EvalActionName>").count(), 2);
    assert_eq!(between(&first, "IsTruncated"), "true");
    assert_eq!(between(&first, "Marker"), "2");
    let rest = f.ok("SimulateCustomPolicy", &params(&[("Marker", "2")]));
    assert!(rest.contains("<EvalActionName>s3:ListBucket</EvalActionName>"));
    assert_eq!(between(&rest, "IsTruncated"), "false");
    f.fails(
        "SimulateCustomPolicy",
        &params(&[("Marker", "9")]),
        400,
        "Marker",
    );

    let names: Vec<String> = (1..=101)
        .map(|i| format!("ActionNames.member.{i}"))
        .collect();
    let arns: Vec<String> = (1..=100)
        .map(|i| format!("ResourceArns.member.{i}"))
        .collect();
    let mut many: Vec<(&str, &str)> = vec![("PolicyInputList.member.1", doc)];
    many.extend(names.iter().map(|n| (n.as_str(), "s3:GetObject")));
    many.extend(arns.iter().map(|n| (n.as_str(), "arn:aws:s3:::b/k")));
    f.fails(
        "SimulateCustomPolicy",
        &many,
        400,
        "at most 10000 are simulated at once",
    );
}

#[test]
fn control_characters_never_reach_the_xml() {
    let f = Fixture::new();
    let body = f.call("CreateUser", &[("UserName", "a\u{1}b")]).body;
    assert!(
        !body.contains('\u{1}') && body.contains("a\u{fffd}b"),
        "{body}"
    );
}

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/oidc.example.com"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;

#[test]
fn role_lifecycle_in_iam_xml() {
    let f = Fixture::new();
    let created = f.ok(
        "CreateRole",
        &[
            ("RoleName", "registry"),
            ("Path", "/gitlab/"),
            ("AssumeRolePolicyDocument", TRUST),
            ("Description", "registry pods"),
            ("MaxSessionDuration", "7200"),
            (
                "PermissionsBoundary",
                "arn:aws:iam::aws:policy/AmazonS3FullAccess",
            ),
            ("Tags.member.1.Key", "team"),
            ("Tags.member.1.Value", "gitlab"),
        ],
    );
    assert!(
        created.contains(
            "<CreateRoleResult><Role><Path>/gitlab/</Path><RoleName>registry</RoleName><RoleId>AROA"
        ),
        "{created}"
    );
    assert!(created.contains("<Arn>arn:aws:iam::111122223333:role/gitlab/registry</Arn><CreateDate>2026-11-25T12:00:00Z</CreateDate><AssumeRolePolicyDocument>%7B%22Version%22"));
    assert!(created.contains("<Description>registry pods</Description><MaxSessionDuration>7200</MaxSessionDuration><PermissionsBoundary><PermissionsBoundaryType>PermissionsBoundaryPolicy</PermissionsBoundaryType><PermissionsBoundaryArn>arn:aws:iam::aws:policy/AmazonS3FullAccess</PermissionsBoundaryArn></PermissionsBoundary><Tags><member><Key>team</Key><Value>gitlab</Value></member></Tags></Role>"), "{created}");
    let encoded = between(&created, "AssumeRolePolicyDocument");
    let decoded = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .unwrap();
    assert_eq!(decoded, TRUST);
    f.fails(
        "CreateRole",
        &[("RoleName", "REGISTRY"), ("AssumeRolePolicyDocument", TRUST)],
        409,
        "<Code>EntityAlreadyExists</Code><Message>Role with name REGISTRY already exists.</Message>",
    );
    let got = f.ok("GetRole", &[("RoleName", "Registry")]);
    assert!(
        got.contains("<RoleLastUsed></RoleLastUsed></Role></GetRoleResult>"),
        "{got}"
    );
    let listed = f.ok("ListRoles", &[("PathPrefix", "/gitlab/")]);
    assert!(listed.contains("<Roles><member><Path>/gitlab/</Path><RoleName>registry</RoleName>"));
    assert!(!listed.contains("<Tags>") && !listed.contains("PermissionsBoundary"));
    assert!(
        !f.ok("ListRoles", &[("PathPrefix", "/other/")])
            .contains("<member>")
    );
    let role = f.store.snapshot();
    let compiled = role.directory.role("registry").unwrap();
    assert_eq!(compiled.max_session_duration, 7200);
    assert_eq!(
        compiled.boundary.as_ref().unwrap().name,
        "AmazonS3FullAccess"
    );

    f.ok(
        "UpdateRole",
        &[("RoleName", "registry"), ("MaxSessionDuration", "43200")],
    );
    f.fails(
        "UpdateRole",
        &[("RoleName", "registry"), ("MaxSessionDuration", "43201")],
        400,
        "Member must have value less than or equal to 43200",
    );
    let with_resource = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole","Resource":"*"}}"#;
    f.fails(
        "UpdateAssumeRolePolicy",
        &[("RoleName", "registry"), ("PolicyDocument", with_resource)],
        400,
        "<Code>MalformedPolicyDocument</Code><Message>Has prohibited field Resource</Message>",
    );
    let open = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}}"#;
    f.ok(
        "UpdateAssumeRolePolicy",
        &[("RoleName", "registry"), ("PolicyDocument", open)],
    );
    assert_eq!(
        f.store
            .snapshot()
            .state
            .role("registry")
            .unwrap()
            .assume_role_policy,
        open
    );
    f.fails(
        "GetRole",
        &[("RoleName", "nobody")],
        404,
        "<Message>The role with name nobody cannot be found.</Message>",
    );
}

#[test]
fn role_policies_are_put_attached_and_block_deletion() {
    let f = Fixture::new();
    f.ok(
        "CreateRole",
        &[("RoleName", "ci"), ("AssumeRolePolicyDocument", TRUST)],
    );
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;
    f.ok(
        "PutRolePolicy",
        &[
            ("RoleName", "ci"),
            ("PolicyName", "read"),
            ("PolicyDocument", doc),
        ],
    );
    let got = f.ok(
        "GetRolePolicy",
        &[("RoleName", "ci"), ("PolicyName", "read")],
    );
    assert!(
        got.contains("<RoleName>ci</RoleName><PolicyName>read</PolicyName><PolicyDocument>%7B")
    );
    let names = f.ok("ListRolePolicies", &[("RoleName", "ci")]);
    assert!(names.contains(
        "<PolicyNames><member>read</member></PolicyNames><IsTruncated>false</IsTruncated>"
    ));
    let arn = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";
    f.ok(
        "AttachRolePolicy",
        &[("RoleName", "ci"), ("PolicyArn", arn)],
    );
    let attached = f.ok("ListAttachedRolePolicies", &[("RoleName", "ci")]);
    assert!(attached.contains("<AttachedPolicies><member><PolicyName>AmazonS3ReadOnlyAccess</PolicyName><PolicyArn>arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess</PolicyArn></member></AttachedPolicies>"), "{attached}");
    let snapshot = f.store.snapshot();
    let names: Vec<&str> = snapshot
        .directory
        .role("ci")
        .unwrap()
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["read", "AmazonS3ReadOnlyAccess"]);
    f.fails(
        "DeleteRole",
        &[("RoleName", "ci")],
        409,
        "<Code>DeleteConflict</Code><Message>Cannot delete entity, must delete policies first.</Message>",
    );
    f.ok(
        "DeleteRolePolicy",
        &[("RoleName", "ci"), ("PolicyName", "read")],
    );
    f.fails(
        "GetRolePolicy",
        &[("RoleName", "ci"), ("PolicyName", "read")],
        404,
        "The role policy with name read cannot be found.",
    );
    f.fails(
        "DeleteRole",
        &[("RoleName", "ci")],
        409,
        "Cannot delete entity, must detach all policies first.",
    );
    f.fails(
        "AttachRolePolicy",
        &[
            ("RoleName", "ci"),
            ("PolicyArn", "arn:aws:iam::aws:policy/Nope"),
        ],
        404,
        "Policy arn:aws:iam::aws:policy/Nope does not exist or is not attachable.",
    );
    f.ok(
        "DetachRolePolicy",
        &[("RoleName", "ci"), ("PolicyArn", arn)],
    );
    f.ok("DeleteRole", &[("RoleName", "ci")]);
    assert!(f.store.snapshot().directory.role("ci").is_none());
}

#[test]
fn oidc_providers_in_iam_xml() {
    let f = Fixture::new();
    let url = "https://oidc.eks.us-east-1.amazonaws.com/id/ABC";
    let arn = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC";
    let created = f.ok(
        "CreateOpenIDConnectProvider",
        &[
            ("Url", url),
            ("ClientIDList.member.1", "sts.amazonaws.com"),
            (
                "ThumbprintList.member.1",
                "9e99a48a9960b14926bb7f3b02e22da2b0ab7280",
            ),
            ("Tags.member.1.Key", "cluster"),
            ("Tags.member.1.Value", "main"),
        ],
    );
    assert!(created.contains(&format!("<CreateOpenIDConnectProviderResult><OpenIDConnectProviderArn>{arn}</OpenIDConnectProviderArn><Tags><member><Key>cluster</Key>")), "{created}");
    let got = f.ok(
        "GetOpenIDConnectProvider",
        &[("OpenIDConnectProviderArn", arn)],
    );
    assert!(got.contains("<Url>oidc.eks.us-east-1.amazonaws.com/id/ABC</Url><ClientIDList><member>sts.amazonaws.com</member></ClientIDList><ThumbprintList><member>9e99a48a9960b14926bb7f3b02e22da2b0ab7280</member></ThumbprintList><CreateDate>2026-11-25T12:00:00Z</CreateDate>"), "{got}");
    let listed = f.ok("ListOpenIDConnectProviders", &[]);
    assert!(listed.contains(&format!(
        "<OpenIDConnectProviderList><member><Arn>{arn}</Arn></member></OpenIDConnectProviderList>"
    )));
    f.fails(
        "CreateOpenIDConnectProvider",
        &[("Url", url)],
        409,
        &format!("<Code>EntityAlreadyExists</Code><Message>Provider with url {url} already exists.</Message>"),
    );
    f.fails(
        "CreateOpenIDConnectProvider",
        &[("Url", "http://issuer.example")],
        400,
        "<Code>InvalidInput</Code><Message>Invalid Open ID Connect Provider URL. The URL must begin with https://.</Message>",
    );
    f.ok(
        "CreateOpenIDConnectProvider",
        &[("Url", "http://127.0.0.1:9000")],
    );
    let on = ("OpenIDConnectProviderArn", arn);
    f.ok(
        "AddClientIDToOpenIDConnectProvider",
        &[on, ("ClientID", "gitlab")],
    );
    f.ok(
        "AddClientIDToOpenIDConnectProvider",
        &[on, ("ClientID", "gitlab")],
    );
    f.ok(
        "RemoveClientIDFromOpenIDConnectProvider",
        &[on, ("ClientID", "sts.amazonaws.com")],
    );
    let snapshot = f.store.snapshot();
    let issuer = |url: &str| keyless_types::ProviderUrl::parse(url).unwrap();
    let provider = snapshot.directory.oidc_provider(&issuer(url)).unwrap();
    assert_eq!(provider.client_ids, ["gitlab"]);
    assert!(
        snapshot
            .directory
            .oidc_provider(&issuer("http://127.0.0.1:9000/"))
            .is_some()
    );
    assert!(
        snapshot
            .directory
            .oidc_provider(&issuer("https://127.0.0.1:9000"))
            .is_none(),
        "another scheme is another issuer"
    );
    f.ok("DeleteOpenIDConnectProvider", &[on]);
    f.fails(
        "GetOpenIDConnectProvider",
        &[on],
        404,
        &format!("<Message>OpenIDConnect Provider not found for arn {arn}</Message>"),
    );
    f.fails("DeleteOpenIDConnectProvider", &[on], 404, "NoSuchEntity");
}

#[test]
fn role_and_provider_actions_are_authorized() {
    let f = Fixture::new();
    f.ok("CreateUser", &[("UserName", "reader")]);
    f.ok(
        "AttachUserPolicy",
        &[
            ("UserName", "reader"),
            ("PolicyArn", "arn:aws:iam::aws:policy/IAMReadOnlyAccess"),
        ],
    );
    f.ok("CreateUser", &[("UserName", "delegate")]);
    let bounded = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iam:CreateRole","Resource":"arn:aws:iam::111122223333:role/app/*","Condition":{"StringEquals":{"iam:PermissionsBoundary":"arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"}}}}"#;
    f.ok(
        "PutUserPolicy",
        &[
            ("UserName", "delegate"),
            ("PolicyName", "bounded"),
            ("PolicyDocument", bounded),
        ],
    );
    f.ok(
        "CreateRole",
        &[("RoleName", "ci"), ("AssumeRolePolicyDocument", TRUST)],
    );
    let reader = f.user("reader");
    assert_eq!(
        f.call_as(&reader, "GetRole", &[("RoleName", "ci")]).status,
        200
    );
    assert_eq!(
        f.call_as(&reader, "ListOpenIDConnectProviders", &[]).status,
        200
    );
    let denied = f.call_as(&reader, "DeleteRole", &[("RoleName", "ci")]);
    assert!(denied.body.contains("<Message>User: arn:aws:iam::111122223333:user/reader is not authorized to perform: iam:DeleteRole on resource: arn:aws:iam::111122223333:role/ci because no identity-based policy allows the iam:DeleteRole action</Message>"), "{}", denied.body);
    let denied = f.call_as(
        &reader,
        "CreateOpenIDConnectProvider",
        &[("Url", "https://issuer.example")],
    );
    assert!(denied.body.contains("iam:CreateOpenIDConnectProvider on resource: arn:aws:iam::111122223333:oidc-provider/issuer.example"), "{}", denied.body);

    let delegate = f.user("delegate");
    let create = |boundary: Option<&str>| {
        let mut params = vec![
            ("RoleName", "app-role"),
            ("Path", "/app/"),
            ("AssumeRolePolicyDocument", TRUST),
        ];
        params.extend(boundary.map(|b| ("PermissionsBoundary", b)));
        f.call_as(&delegate, "CreateRole", &params).status
    };
    assert_eq!(create(None), 403);
    assert_eq!(
        create(Some("arn:aws:iam::aws:policy/AdministratorAccess")),
        403
    );
    assert_eq!(
        create(Some("arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")),
        200
    );
}
