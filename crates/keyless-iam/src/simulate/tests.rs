//! The simulator against AWS's documented examples.

use super::*;
use serde_json::{Value, json};

fn simulate(input: Value) -> Result<Value, IamError> {
    let input: SimulateCustomPolicyInput = serde_json::from_value(input).unwrap();
    let output = Simulation::from_input(&input)?.run();
    Ok(serde_json::to_value(output).unwrap())
}

const DYNAMO_POLICY: &str = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"dynamodb:*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2018-08-16T12:00:00Z"}}}}"#;

fn dynamo(current_time: &str) -> Value {
    json!({
        "PolicyInputList": [DYNAMO_POLICY],
        "ActionNames": ["dynamodb:CreateBackup"],
        "ContextEntries": [{
            "ContextKeyName": "aws:CurrentTime",
            "ContextKeyValues": [current_time],
            "ContextKeyType": "date"
        }]
    })
}

#[test]
fn awscli_example_1_allowed() {
    assert_eq!(
        simulate(dynamo("2019-04-25T11:00:00Z")).unwrap(),
        json!({
            "EvaluationResults": [{
                "EvalActionName": "dynamodb:CreateBackup",
                "EvalResourceName": "*",
                "EvalDecision": "allowed",
                "MatchedStatements": [{
                    "SourcePolicyId": "PolicyInputList.1",
                    "SourcePolicyType": "IAM Policy",
                    "StartPosition": {"Line": 1, "Column": 38},
                    "EndPosition": {"Line": 1, "Column": 167}
                }],
                "MissingContextValues": []
            }],
            "IsTruncated": false
        })
    );
}

#[test]
fn awscli_example_2_implicit_deny() {
    assert_eq!(
        simulate(dynamo("2014-04-25T11:00:00Z")).unwrap(),
        json!({
            "EvaluationResults": [{
                "EvalActionName": "dynamodb:CreateBackup",
                "EvalResourceName": "*",
                "EvalDecision": "implicitDeny",
                "MatchedStatements": [],
                "MissingContextValues": []
            }],
            "IsTruncated": false
        })
    );
}

#[test]
fn missing_context_is_reported() {
    let mut input = dynamo("x");
    input["ContextEntries"] = json!([]);
    let out = simulate(input).unwrap();
    assert_eq!(out["EvaluationResults"][0]["EvalDecision"], "implicitDeny");
    assert_eq!(
        out["EvaluationResults"][0]["MissingContextValues"],
        json!(["aws:CurrentTime"])
    );
}

#[test]
fn each_action_against_each_resource() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Read","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::registry/*"},{"Sid":"NoDelete","Effect":"Deny","Action":"s3:DeleteObject","Resource":"*"}]}"#;
    let out = simulate(json!({
        "PolicyInputList": [policy],
        "ActionNames": ["s3:GetObject", "s3:DeleteObject"],
        "ResourceArns": ["arn:aws:s3:::registry/a", "arn:aws:s3:::other/a"]
    }))
    .unwrap();
    let decisions: Vec<(&str, &str, &str)> = out["EvaluationResults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["EvalActionName"].as_str().unwrap(),
                r["EvalResourceName"].as_str().unwrap(),
                r["EvalDecision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("s3:GetObject", "arn:aws:s3:::registry/a", "allowed"),
            ("s3:GetObject", "arn:aws:s3:::other/a", "implicitDeny"),
            ("s3:DeleteObject", "arn:aws:s3:::registry/a", "explicitDeny"),
            ("s3:DeleteObject", "arn:aws:s3:::other/a", "explicitDeny"),
        ]
    );
    let first = &out["EvaluationResults"][0];
    assert_eq!(first["EvalDecisionDetails"], json!({}));
    assert_eq!(
        first["ResourceSpecificResults"][0]["EvalResourceDecision"],
        "allowed"
    );
    assert_eq!(
        first["ResourceSpecificResults"][0]["EvalResourceName"],
        "arn:aws:s3:::registry/a"
    );
}

#[test]
fn cross_account_resource_policy_needs_both_sides() {
    let identity = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}}"#;
    let bucket = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::shared/*"}}"#;
    let input = |owner: &str| {
        json!({
            "PolicyInputList": [identity],
            "ActionNames": ["s3:GetObject"],
            "ResourceArns": ["arn:aws:s3:::shared/k"],
            "ResourcePolicy": bucket,
            "ResourceOwner": format!("arn:aws:iam::{owner}:root"),
            "CallerArn": "arn:aws:iam::111122223333:user/alice"
        })
    };
    let out = simulate(input("444455556666")).unwrap();
    let result = &out["EvaluationResults"][0];
    assert_eq!(result["EvalDecision"], "allowed");
    assert_eq!(
        result["EvalDecisionDetails"],
        json!({"IAM Policy": "allowed", "Resource Policy": "allowed"})
    );
    let types: Vec<&str> = result["MatchedStatements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["SourcePolicyType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["IAM Policy", "Resource Policy"]);
}

#[test]
fn boundary_detail() {
    let allow_all =
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#;
    let boundary =
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#;
    let out = simulate(json!({
        "PolicyInputList": [allow_all],
        "PermissionsBoundaryPolicyInputList": [boundary],
        "ActionNames": ["s3:PutObject", "iam:CreateUser"]
    }))
    .unwrap();
    let results = out["EvaluationResults"].as_array().unwrap();
    assert_eq!(results[0]["EvalDecision"], "allowed");
    assert_eq!(
        results[0]["PermissionsBoundaryDecisionDetail"],
        json!({"AllowedByPermissionsBoundary": true})
    );
    assert_eq!(results[1]["EvalDecision"], "implicitDeny");
    assert_eq!(
        results[1]["PermissionsBoundaryDecisionDetail"],
        json!({"AllowedByPermissionsBoundary": false})
    );
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let cases = [
        (
            json!({"PolicyInputList": [], "ActionNames": ["s3:GetObject"]}),
            "PolicyInputList must hold at least one policy",
        ),
        (
            json!({"PolicyInputList": ["{}"], "ActionNames": ["s3:GetObject"]}),
            "PolicyInputList.1: policy: missing `Statement`",
        ),
        (
            json!({"PolicyInputList": [DYNAMO_POLICY], "ActionNames": ["s3:*"]}),
            "ActionNames: `s3:*` has a wildcard; name each action to simulate",
        ),
        (
            json!({"PolicyInputList": [DYNAMO_POLICY], "ActionNames": ["s3:GetObject"], "ResourcePolicy": "{}"}),
            "CallerArn is required with a ResourcePolicy, so that its Principal can be matched",
        ),
        (
            json!({"PolicyInputList": [DYNAMO_POLICY], "ActionNames": ["s3:GetObject"], "ContextEntries": [{"ContextKeyName": "aws:SourceIp", "ContextKeyValues": ["nope"], "ContextKeyType": "ip"}]}),
            "ContextKeyValues of `aws:SourceIp`: `nope` is not a valid ip",
        ),
        (
            json!({"PolicyInputList": [DYNAMO_POLICY], "ActionNames": ["s3:GetObject"], "ContextEntries": [{"ContextKeyName": "aws:SourceIp", "ContextKeyValues": ["1.2.3.4", "5.6.7.8"], "ContextKeyType": "ip"}]}),
            "ContextKeyValues of `aws:SourceIp` must hold exactly one value for type ip",
        ),
        (
            json!({"PolicyInputList": [DYNAMO_POLICY], "ActionNames": ["s3:GetObject"], "CallerArn": "arn:aws:s3:::bucket"}),
            "CallerArn `arn:aws:s3:::bucket` is not the ARN of an IAM user, role or role session",
        ),
    ];
    for (input, message) in cases {
        assert_eq!(simulate(input).unwrap_err().to_string(), message);
    }
}

#[test]
fn unknown_fields_are_refused_like_awscli() {
    let err = serde_json::from_value::<SimulateCustomPolicyInput>(json!({
        "PolicyInputList": [DYNAMO_POLICY], "ActionNames": ["s3:GetObject"], "PolicyArns": []
    }))
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `PolicyArns`"),
        "{err}"
    );
}

#[test]
fn resource_owner_without_a_caller_does_not_deny_everything() {
    // Regression: with ResourceOwner but no CallerArn, every request was an implicit deny.
    let out = simulate(json!({
        "PolicyInputList": [r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#],
        "ActionNames": ["s3:GetObject"],
        "ResourceArns": ["arn:aws:s3:::b/k"],
        "ResourceOwner": "arn:aws:iam::111122223333:root"
    }))
    .unwrap();
    assert_eq!(out["EvaluationResults"][0]["EvalDecision"], "allowed");
    assert_eq!(
        out["EvaluationResults"][0]["EvalDecisionDetails"],
        json!({})
    );
}
