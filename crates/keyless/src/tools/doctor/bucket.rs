//! `--bucket`: proves list, write, read and delete on a bucket with a probe object under
//! `keyless-doctor/`, and names the permission that is missing when S3 refuses.
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html>

use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_sdk_s3::primitives::ByteStream;

use super::report::{Check, Status};

/// The prefix of probe objects.
pub(crate) const PROBE_PREFIX: &str = "keyless-doctor/";

/// One of the operations proved on a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    List,
    Write,
    Read,
    Delete,
}

impl Op {
    fn word(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Write => "write",
            Self::Read => "read",
            Self::Delete => "delete",
        }
    }

    /// The IAM action the operation needs and the resource it needs it on.
    pub(crate) fn permission(self, bucket: &str) -> (&'static str, String) {
        match self {
            Self::List => ("s3:ListBucket", format!("arn:aws:s3:::{bucket}")),
            Self::Write => ("s3:PutObject", format!("arn:aws:s3:::{bucket}/*")),
            Self::Read => ("s3:GetObject", format!("arn:aws:s3:::{bucket}/*")),
            Self::Delete => ("s3:DeleteObject", format!("arn:aws:s3:::{bucket}/*")),
        }
    }
}

fn step(op: Op, bucket: &str) -> String {
    format!("{} s3://{bucket}", op.word())
}

/// The check for a refused operation: a denial names the permission and who lacks it.
pub(crate) fn refused(op: Op, bucket: &str, who: &str, code: Option<&str>, message: &str) -> Check {
    let (action, resource) = op.permission(bucket);
    let step = step(op, bucket);
    match code {
        Some("AccessDenied" | "AllAccessDisabled" | "Forbidden") => Check::new(
            step,
            Status::Fail,
            format!("AccessDenied: {who} lacks {action} on {resource}"),
        )
        .detail("permission", action)
        .detail("resource", resource.clone())
        .detail("principal", who)
        .hint(format!(
            "allow {action} on {resource} in a policy of {} (and check that no bucket policy or \
             permissions boundary denies it)",
            grantee(who)
        )),
        Some("NoSuchBucket") => Check::new(
            step,
            Status::Fail,
            format!("the bucket {bucket} does not exist"),
        )
        .hint("create it, or check the bucket name and the endpoint"),
        _ => Check::new(
            step,
            Status::Fail,
            format!(
                "{}{message}",
                code.map(|c| format!("{c}: ")).unwrap_or_default()
            ),
        )
        .hint(format!(
            "{action} on {resource} is what this needs; see the message for the rest"
        )),
    }
}

/// Whom a permission is granted to: the role of a role session, else the caller itself.
pub(crate) fn grantee(who: &str) -> String {
    let role = who
        .split_once(":assumed-role/")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(role, _)| role);
    match role {
        Some(role) => format!("the role {role}"),
        None => who.to_owned(),
    }
}

/// The error's code and its message (the whole chain for transport failures).
fn error_parts<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> (Option<String>, String)
where
    E: std::error::Error + Send + Sync + 'static + aws_sdk_s3::error::ProvideErrorMetadata,
{
    let code = e.code().map(str::to_owned);
    let message = match e.message() {
        Some(m) => m.to_owned(),
        None => aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    };
    (code, message)
}

/// List, write, read back and delete a probe object; one check each.
pub(crate) async fn prove(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    who: &str,
    key: &str,
) -> Vec<Check> {
    let mut checks = Vec::new();
    match s3.list_objects_v2().bucket(bucket).max_keys(1).send().await {
        Ok(out) => checks.push(Check::new(
            step(Op::List, bucket),
            Status::Ok,
            format!(
                "ListObjectsV2 (max-keys 1) answered with {} key(s)",
                out.contents().len()
            ),
        )),
        Err(e) => {
            let (code, message) = error_parts(&e);
            checks.push(refused(Op::List, bucket, who, code.as_deref(), &message));
        }
    }
    let body = format!("keyless doctor probe {key}\n");
    if let Err(e) = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.clone().into_bytes()))
        .send()
        .await
    {
        let (code, message) = error_parts(&e);
        checks.push(refused(Op::Write, bucket, who, code.as_deref(), &message));
        for op in [Op::Read, Op::Delete] {
            checks.push(Check::new(
                step(op, bucket),
                Status::Skip,
                "not tried: the probe object could not be written",
            ));
        }
        return checks;
    }
    checks.push(
        Check::new(
            step(Op::Write, bucket),
            Status::Ok,
            format!("PutObject {key}"),
        )
        .detail("key", key),
    );
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => match out.body.collect().await.map(|d| d.into_bytes()) {
            Ok(data) if data.as_ref() == body.as_bytes() => {
                checks.push(Check::new(step(Op::Read, bucket), Status::Ok, "GetObject returned what was written"));
            }
            Ok(data) => checks.push(
                Check::new(
                    step(Op::Read, bucket),
                    Status::Fail,
                    format!("GetObject returned {} bytes that differ from the {} written", data.len(), body.len()),
                )
                .hint("something between the client and the storage changes objects (a proxy, a gateway, a broken backend)"),
            ),
            Err(e) => checks.push(Check::new(step(Op::Read, bucket), Status::Fail, format!("reading the body: {e}"))),
        },
        Err(e) => {
            let (code, message) = error_parts(&e);
            checks.push(refused(Op::Read, bucket, who, code.as_deref(), &message));
        }
    }
    match s3.delete_object().bucket(bucket).key(key).send().await {
        Ok(_) => checks.push(Check::new(
            step(Op::Delete, bucket),
            Status::Ok,
            "DeleteObject removed the probe object",
        )),
        Err(e) => {
            let (code, message) = error_parts(&e);
            let check = refused(Op::Delete, bucket, who, code.as_deref(), &message);
            let hint = format!(
                "{}\nthe probe object s3://{bucket}/{key} is left behind",
                check.hint.clone().unwrap_or_default()
            );
            checks.push(check.hint(hint));
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_names_its_action_and_resource() {
        assert_eq!(
            Op::List.permission("b"),
            ("s3:ListBucket", "arn:aws:s3:::b".to_owned())
        );
        assert_eq!(
            Op::Write.permission("b"),
            ("s3:PutObject", "arn:aws:s3:::b/*".to_owned())
        );
        assert_eq!(
            Op::Read.permission("b"),
            ("s3:GetObject", "arn:aws:s3:::b/*".to_owned())
        );
        assert_eq!(
            Op::Delete.permission("b"),
            ("s3:DeleteObject", "arn:aws:s3:::b/*".to_owned())
        );
    }

    #[test]
    fn a_denial_names_the_permission_and_who_lacks_it() {
        let role = "arn:aws:sts::000000000000:assumed-role/r/s";
        let check = refused(
            Op::Write,
            "registry",
            role,
            Some("AccessDenied"),
            "Access Denied",
        );
        assert_eq!(check.status, Status::Fail);
        assert_eq!(check.step, "write s3://registry");
        assert_eq!(
            check.message,
            format!("AccessDenied: {role} lacks s3:PutObject on arn:aws:s3:::registry/*")
        );
        assert_eq!(check.details["permission"], "s3:PutObject");
        let missing = refused(Op::List, "nope", role, Some("NoSuchBucket"), "");
        assert!(missing.message.contains("does not exist"));
        assert!(check.hint.unwrap().contains("in a policy of the role r "));
        assert_eq!(grantee("arn:aws:iam::0:user/ci"), "arn:aws:iam::0:user/ci");
        let other = refused(Op::Read, "b", role, None, "dispatch failure");
        assert_eq!(other.message, "dispatch failure");
    }
}
