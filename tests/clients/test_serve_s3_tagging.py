"""Object and bucket tags as S3 has them, driven with boto3 and awscli: `x-amz-tagging` on PUT,
multipart and copies (COPY and REPLACE directives), Put/Get/DeleteObjectTagging and
Put/Get/DeleteBucketTagging with S3's limits, the tag count on GET, and tags in decisions: the
S3 User Guide's policies on `s3:RequestObjectTag/<key>` and `s3:RequestObjectTagKeys` for an
IAM user, as written.
"""
import json

import botocore
import pytest

from test_serve_s3 import Server, error_code, server  # noqa: F401


def tags_of(s3, key):
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket="bkt", Key=key)["TagSet"]}


@pytest.fixture
def s3(server):
    client = server.client()
    client.create_bucket(Bucket="bkt")
    return client


@pytest.mark.not_on("ceph", reason="Ceph 16.2 drops the x-amz-tagging of a CreateMultipartUpload")
@pytest.mark.not_on("garage", reason="Garage 2.5 has no object tags (PutObjectTagging is NotImplemented, x-amz-tagging ignored)")
def test_object_tags_on_put_copy_multipart_and_their_own_calls(s3, server):
    s3.put_object(Bucket="bkt", Key="k", Body=b"x", Tagging="project=gitlab&tier=backup%20daily")
    assert tags_of(s3, "k") == {"project": "gitlab", "tier": "backup daily"}
    assert s3.get_object(Bucket="bkt", Key="k")["TagCount"] == 2
    s3.put_object_tagging(Bucket="bkt", Key="k", Tagging={"TagSet": [{"Key": "project", "Value": "registry"}]})
    assert tags_of(s3, "k") == {"project": "registry"}
    # A copy keeps the source's tags unless told to replace them.
    s3.copy_object(Bucket="bkt", Key="copy", CopySource={"Bucket": "bkt", "Key": "k"})
    assert tags_of(s3, "copy") == {"project": "registry"}
    s3.copy_object(Bucket="bkt", Key="replaced", CopySource={"Bucket": "bkt", "Key": "k"},
                   TaggingDirective="REPLACE", Tagging="kind=copy")
    assert tags_of(s3, "replaced") == {"kind": "copy"}
    upload = s3.create_multipart_upload(Bucket="bkt", Key="mp", Tagging="kind=multipart")["UploadId"]
    etag = s3.upload_part(Bucket="bkt", Key="mp", UploadId=upload, PartNumber=1, Body=b"part")["ETag"]
    s3.complete_multipart_upload(Bucket="bkt", Key="mp", UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert tags_of(s3, "mp") == {"kind": "multipart"}
    s3.delete_object_tagging(Bucket="bkt", Key="k")
    assert tags_of(s3, "k") == {}
    assert "TagCount" not in s3.get_object(Bucket="bkt", Key="k")
    # awscli reads and writes them too.
    server.aws("s3api", "put-object-tagging", "--bucket", "bkt", "--key", "k",
               "--tagging", json.dumps({"TagSet": [{"Key": "by", "Value": "awscli"}]}))
    shown = json.loads(server.aws("s3api", "get-object-tagging", "--bucket", "bkt", "--key", "k").stdout)
    assert shown["TagSet"] == [{"Key": "by", "Value": "awscli"}]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_tagging(Bucket="bkt", Key="absent")
    assert error_code(e) == "NoSuchKey"


def test_tag_limits_are_s3s(s3):
    s3.put_object(Bucket="bkt", Key="k", Body=b"x")
    eleven = [{"Key": f"k{i}", "Value": "v"} for i in range(11)]
    for tag_set in (eleven, [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}],
                    [{"Key": "k" * 129, "Value": "v"}], [{"Key": "k", "Value": "v" * 257}]):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_object_tagging(Bucket="bkt", Key="k", Tagging={"TagSet": tag_set})
        assert error_code(e) == "InvalidTag", tag_set
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket="bkt", Key="k2", Body=b"x", Tagging="&".join(f"k{i}=v" for i in range(11)))
    assert error_code(e) == "InvalidTag"
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket="bkt", Key="k2")


def test_bucket_tags(s3):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_tagging(Bucket="bkt")
    assert error_code(e) == "NoSuchTagSet"
    s3.put_bucket_tagging(Bucket="bkt", Tagging={"TagSet": [{"Key": "cost-center", "Value": "gitlab"}]})
    assert s3.get_bucket_tagging(Bucket="bkt")["TagSet"] == [{"Key": "cost-center", "Value": "gitlab"}]
    s3.delete_bucket_tagging(Bucket="bkt")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_tagging(Bucket="bkt")
    assert error_code(e) == "NoSuchTagSet"


@pytest.mark.not_on("garage", reason="Garage 2.5 has no object tags (PutObjectTagging is NotImplemented, x-amz-tagging ignored)")
def test_request_tags_decide_as_the_s3_user_guide_writes(s3, server):
    # "Example 2.1: Restrict uploads to objects with a specific tag", and "Example 2.3: Restrict
    # the tag keys" (ForAllValues on s3:RequestObjectTagKeys), for PutObject and PutObjectTagging.
    server.aws("iam", "create-user", "--user-name", "tagger")
    key = json.loads(server.aws("iam", "create-access-key", "--user-name", "tagger").stdout)["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:PutObjectTagging"], "Resource": "arn:aws:s3:::bkt/*",
         "Condition": {"StringEquals": {"s3:RequestObjectTag/project": "gitlab"},
                       "ForAllValues:StringLike": {"s3:RequestObjectTagKeys": ["project", "tier"]}}},
    ]}
    server.aws("iam", "put-user-policy", "--user-name", "tagger", "--policy-name", "tags",
               "--policy-document", json.dumps(policy))
    user = server.user(key["AccessKeyId"], key["SecretAccessKey"])
    user.put_object(Bucket="bkt", Key="ok", Body=b"x", Tagging="project=gitlab&tier=a")
    for tagging in ("project=other", "", "project=gitlab&owner=me"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            user.put_object(Bucket="bkt", Key="denied", Body=b"x", Tagging=tagging)
        assert error_code(e) == "AccessDenied", tagging
    user.put_object_tagging(Bucket="bkt", Key="ok", Tagging={"TagSet": [{"Key": "project", "Value": "gitlab"}]})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        user.put_object_tagging(Bucket="bkt", Key="ok", Tagging={"TagSet": [{"Key": "project", "Value": "x"}]})
    assert error_code(e) == "AccessDenied"
    assert tags_of(s3, "ok") == {"project": "gitlab"}


@pytest.mark.not_on("garage", reason="Garage 2.5 has no object tags (PutObjectTagging is NotImplemented, x-amz-tagging ignored)")
def test_existing_object_tags_decide_as_the_s3_user_guide_writes(s3, server):
    # "Example 1.1: Grant permission to read only objects that have a specific tag" (an IAM
    # user's policy), and the same condition in a bucket policy that denies reading what is
    # tagged confidential.
    s3.put_object(Bucket="bkt", Key="public.txt", Body=b"p", Tagging="environment=production")
    s3.put_object(Bucket="bkt", Key="staging.txt", Body=b"s", Tagging="environment=staging")
    s3.put_object(Bucket="bkt", Key="untagged.txt", Body=b"u")
    server.aws("iam", "create-user", "--user-name", "prod-reader")
    key = json.loads(server.aws("iam", "create-access-key", "--user-name", "prod-reader").stdout)["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectTagging"], "Resource": "arn:aws:s3:::bkt/*",
         "Condition": {"StringEquals": {"s3:ExistingObjectTag/environment": "production"}}},
    ]}
    server.aws("iam", "put-user-policy", "--user-name", "prod-reader", "--policy-name", "prod",
               "--policy-document", json.dumps(policy))
    user = server.user(key["AccessKeyId"], key["SecretAccessKey"])
    assert user.get_object(Bucket="bkt", Key="public.txt")["Body"].read() == b"p"
    assert tags_of(user, "public.txt") == {"environment": "production"}
    for key_name in ("staging.txt", "untagged.txt"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            user.get_object(Bucket="bkt", Key=key_name)
        assert error_code(e) == "AccessDenied", key_name
    # Retagged, the same object follows its new tags at once.
    s3.put_object_tagging(Bucket="bkt", Key="staging.txt",
                          Tagging={"TagSet": [{"Key": "environment", "Value": "production"}]})
    assert user.get_object(Bucket="bkt", Key="staging.txt")["Body"].read() == b"s"
    # A bucket policy's Deny on the tag binds even the root account's users with full access.
    server.aws("iam", "create-user", "--user-name", "admin")
    admin_key = json.loads(server.aws("iam", "create-access-key", "--user-name", "admin").stdout)["AccessKey"]
    server.aws("iam", "attach-user-policy", "--user-name", "admin",
               "--policy-arn", "arn:aws:iam::aws:policy/AmazonS3FullAccess")
    admin = server.user(admin_key["AccessKeyId"], admin_key["SecretAccessKey"])
    s3.put_object(Bucket="bkt", Key="secret.txt", Body=b"x", Tagging="classification=confidential")
    s3.put_bucket_policy(Bucket="bkt", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bkt/*",
         "Condition": {"StringEquals": {"s3:ExistingObjectTag/classification": "confidential"}}}]}))
    assert admin.get_object(Bucket="bkt", Key="untagged.txt")["Body"].read() == b"u"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        admin.get_object(Bucket="bkt", Key="secret.txt")
    assert error_code(e) == "AccessDenied"
