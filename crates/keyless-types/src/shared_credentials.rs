//! The key pair of a profile in the AWS shared credentials file (`[NAME]`) or config file
//! (`[profile NAME]`, `[default]`), read as the SDKs read these INI files: `#` and `;` lines
//! are comments, setting names are case-insensitive, blank values count as absent, and a
//! later value wins.
//!
//! <https://docs.aws.amazon.com/sdkref/latest/guide/file-format.html>

use crate::Secret;

/// Which of the two shared files a text is: they name profiles' sections differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedFile {
    /// `~/.aws/credentials`: `[NAME]`.
    Credentials,
    /// `~/.aws/config`: `[profile NAME]`, and `[default]` for the default profile.
    Config,
}

/// What a profile gives of a key pair; either may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileKeys {
    /// `aws_access_key_id`.
    pub access_key_id: Option<String>,
    /// `aws_secret_access_key`.
    pub secret_access_key: Option<Secret>,
}

impl ProfileKeys {
    /// Both halves, when the profile has both.
    pub fn pair(self) -> Option<(String, Secret)> {
        self.access_key_id.zip(self.secret_access_key)
    }
}

/// Whether the section header `[section]` (brackets removed) is `profile`'s in `file`.
fn is_profile(section: &str, profile: &str, file: SharedFile) -> bool {
    let section = section.trim();
    match file {
        SharedFile::Credentials => section == profile,
        SharedFile::Config => {
            section
                .strip_prefix("profile ")
                .is_some_and(|name| name.trim() == profile)
                || (profile == "default" && section == "default")
        }
    }
}

/// The key pair `profile` is given in `text`, a shared credentials or config file.
pub fn profile_keys(text: &str, profile: &str, file: SharedFile) -> ProfileKeys {
    let mut keys = ProfileKeys::default();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = is_profile(section, profile, file);
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        if !inside || value.is_empty() {
            continue;
        }
        match name.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => keys.access_key_id = Some(value.to_owned()),
            "aws_secret_access_key" => keys.secret_access_key = Some(Secret::new(value)),
            _ => {}
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(text: &str, profile: &str, file: SharedFile) -> Option<(String, String)> {
        let (id, secret) = profile_keys(text, profile, file).pair()?;
        Some((id, secret.expose().to_owned()))
    }

    #[test]
    fn keys_come_from_the_profiles_own_section() {
        let credentials = "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s1\n\
                           [operator]\naws_access_key_id=AKIAOPERATOR\naws_secret_access_key=s2\n\
                           [half]\naws_access_key_id = AKIAHALF\n";
        let file = SharedFile::Credentials;
        assert_eq!(
            pair(credentials, "default", file),
            Some(("AKIADEFAULT".into(), "s1".into()))
        );
        assert_eq!(
            pair(credentials, "operator", file),
            Some(("AKIAOPERATOR".into(), "s2".into()))
        );
        assert_eq!(pair(credentials, "half", file), None);
        assert_eq!(
            profile_keys(credentials, "half", file),
            ProfileKeys {
                access_key_id: Some("AKIAHALF".into()),
                secret_access_key: None,
            }
        );
        assert_eq!(pair(credentials, "nobody", file), None);
    }

    #[test]
    fn the_config_file_names_profiles_profile_name() {
        let config = "[profile ops]\nregion = us-east-1\naws_access_key_id = AKIAOPS\n\
                      aws_secret_access_key = s3\n[ops]\naws_access_key_id = AKIANOT\n";
        assert_eq!(
            pair(config, "ops", SharedFile::Config).map(|k| k.0),
            Some("AKIAOPS".into())
        );
        assert_eq!(
            pair(config, "ops", SharedFile::Credentials).map(|k| k.0),
            None,
            "[ops] has no secret"
        );
        let default = "[default]\naws_access_key_id = AKIAD\naws_secret_access_key = s\n";
        assert!(pair(default, "default", SharedFile::Config).is_some());
        let spelled = "[profile default]\naws_access_key_id = AKIAD\naws_secret_access_key = s\n";
        assert!(pair(spelled, "default", SharedFile::Config).is_some());
        let role_only =
            "[default]\nrole_arn = arn:aws:iam::1:role/x\nweb_identity_token_file = /t\n";
        assert_eq!(pair(role_only, "default", SharedFile::Config), None);
    }

    /// The binary's own reader took `AWS_ACCESS_KEY_ID =` for no key and a blank value for a
    /// key, where doctor (and the SDKs) did the opposite.
    #[test]
    fn names_are_case_insensitive_and_blank_values_absent() {
        let text = "# a comment = not a setting\n[ default ]\nAWS_ACCESS_KEY_ID = AKIAUP\n\
                    ; aws_secret_access_key = commented\naws_secret_access_key =\n\
                    Aws_Secret_Access_Key = s\n";
        assert_eq!(
            pair(text, "default", SharedFile::Credentials),
            Some(("AKIAUP".into(), "s".into()))
        );
        let blank = "[default]\naws_access_key_id =\naws_secret_access_key = s\n";
        assert_eq!(
            profile_keys(blank, "default", SharedFile::Credentials).access_key_id,
            None
        );
    }

    #[test]
    fn a_later_value_wins() {
        let text = "[a]\naws_access_key_id = ONE\n[b]\naws_access_key_id = B\n\
                    [a]\naws_access_key_id = TWO\naws_secret_access_key = s\n";
        assert_eq!(
            pair(text, "a", SharedFile::Credentials).map(|k| k.0),
            Some("TWO".into())
        );
    }
}
