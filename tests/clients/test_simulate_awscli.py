"""`keyless policy simulate` judged by awscli and botocore themselves.

For every request in examples/simulate/:
- botocore's client validates the request against the IAM model, so the file is one that
  `aws iam simulate-custom-policy --cli-input-json` accepts;
- botocore's Stubber validates keyless's response against the model's output shape (member
  names, nesting, types);
- botocore's paginator and awscli's JSON formatter print that response, and what they print
  must be byte for byte what keyless prints.
"""

import argparse
import io
import json
import subprocess

import botocore.session
import pytest
from awscli.formatter import JSONFormatter
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber

from conftest import REPO

EXAMPLES = sorted((REPO / "examples" / "simulate").glob("*.json"))


def iam_client():
    session = botocore.session.get_session()
    return session.create_client(
        "iam",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    )


def run_keyless(keyless_bin, *args):
    proc = subprocess.run([keyless_bin, *args], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def awscli_prints(request, response):
    """What awscli prints when IAM answers `request` with `response`."""
    client = iam_client()
    stubber = Stubber(client)
    stubber.add_response("simulate_custom_policy", response, expected_params=request)
    with stubber:
        result = client.get_paginator("simulate_custom_policy").paginate(**request).build_full_result()
    stream = io.StringIO()
    JSONFormatter(argparse.Namespace(query=None))("simulate-custom-policy", result, stream)
    return stream.getvalue()


def test_there_are_examples():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_awscli_accepts_the_request_and_prints_what_keyless_prints(keyless_bin, example):
    request = json.loads(example.read_text())
    printed = run_keyless(keyless_bin, "policy", "simulate", "--cli-input-json", f"file://{example}")
    response = json.loads(printed)
    # IAM's response carries IsTruncated; awscli's paginator drops it when printing.
    response["IsTruncated"] = False
    assert awscli_prints(request, response) == printed


def test_the_stubber_refuses_a_wrong_shape(keyless_bin):
    """The judge has teeth: a response that strays from the model is refused."""
    example = REPO / "examples" / "simulate" / "awscli-example-1.json"
    request = json.loads(example.read_text())
    response = json.loads(run_keyless(keyless_bin, "policy", "simulate", "--cli-input-json", f"file://{example}"))
    response["EvaluationResults"][0]["MatchedStatements"][0]["StartPosition"]["Line"] = "1"
    with pytest.raises(ParamValidationError):
        awscli_prints(request, response)
    response = json.loads(run_keyless(keyless_bin, "policy", "simulate", "--cli-input-json", f"file://{example}"))
    response["EvaluationResults"][0]["Decision"] = "allowed"
    with pytest.raises(ParamValidationError):
        awscli_prints(request, response)


def test_awscli_example_output_matches_the_documentation(keyless_bin):
    """awscli's documented output for simulate-custom-policy example 1 (plus SourcePolicyType,
    which IAM has sent since)."""
    example = REPO / "examples" / "simulate" / "awscli-example-1.json"
    result = json.loads(run_keyless(keyless_bin, "policy", "simulate", "--cli-input-json", f"file://{example}"))
    (evaluation,) = result["EvaluationResults"]
    assert evaluation["EvalDecision"] == "allowed"
    assert evaluation["MatchedStatements"] == [
        {
            "SourcePolicyId": "PolicyInputList.1",
            "SourcePolicyType": "IAM Policy",
            "StartPosition": {"Line": 1, "Column": 38},
            "EndPosition": {"Line": 1, "Column": 167},
        }
    ]


def test_boto3_request_shape_is_what_keyless_reads(keyless_bin, tmp_path):
    """A request written the way a boto3 user writes it (kwargs of simulate_custom_policy) is
    valid for botocore and gives the documented denial for a date before the condition's."""
    request = {
        "PolicyInputList": [
            '{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"dynamodb:*","Resource":"*",'
            '"Condition":{"DateGreaterThan":{"aws:CurrentTime":"2018-08-16T12:00:00Z"}}}}'
        ],
        "ActionNames": ["dynamodb:CreateBackup"],
        "ContextEntries": [
            {"ContextKeyName": "aws:CurrentTime", "ContextKeyValues": ["2014-04-25T11:00:00Z"], "ContextKeyType": "date"}
        ],
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    printed = run_keyless(keyless_bin, "policy", "simulate", "--cli-input-json", f"file://{path}")
    response = json.loads(printed)
    assert response == {
        "EvaluationResults": [
            {
                "EvalActionName": "dynamodb:CreateBackup",
                "EvalResourceName": "*",
                "EvalDecision": "implicitDeny",
                "MatchedStatements": [],
                "MissingContextValues": [],
            }
        ]
    }
    response["IsTruncated"] = False
    assert awscli_prints(request, response) == printed
