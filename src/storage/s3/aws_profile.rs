//! Keys from a named profile of the AWS shared files, found and read as the AWS CLI reads them:
//! the credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`) with `[NAME]`
//! sections, and the config file (`AWS_CONFIG_FILE`, else `~/.aws/config`) with
//! `[profile NAME]` sections (and `[default]`); a key in the credentials file wins.
//!
//! Only keys written in the profile are taken. A profile that gets its keys some other way
//! (assuming a role, running a process, SSO) is refused by name rather than half-followed.
//! Hand-written rather than aws-config's profile provider: that one logs every load at INFO
//! (a line in PostgreSQL's log per archived segment), folds its errors into strings that cannot
//! say what to fix, and follows those other ways without being asked.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The keys a profile holds.
pub struct ProfileKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// `aws_session_token`, for temporary keys.
    pub session_token: Option<String>,
}

/// Where the two shared files are for this process.
pub struct SharedFiles {
    pub credentials: PathBuf,
    pub config: PathBuf,
}

impl SharedFiles {
    /// The files named by `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE`, else those under
    /// `$HOME/.aws`; `variable` reads the environment.
    pub fn locate(variable: impl Fn(&str) -> Option<OsString>) -> Result<SharedFiles, String> {
        let home = variable("HOME").filter(|home| !home.is_empty());
        let path = |name: &str, default: &str| {
            match variable(name).filter(|p| !p.is_empty()) {
            // The SDKs expand a leading `~/` here too.
            Some(path) => match (Path::new(&path).strip_prefix("~"), &home) {
                (Ok(rest), Some(home)) => Ok(Path::new(home).join(rest)),
                _ => Ok(PathBuf::from(path)),
            },
            None => home.as_ref().map(|home| Path::new(home).join(default)).ok_or_else(|| {
                format!("HOME is not set, so ~/{default} cannot be found: set HOME, or {name} to the file")
            }),
        }
        };
        Ok(SharedFiles {
            credentials: path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")?,
            config: path("AWS_CONFIG_FILE", ".aws/config")?,
        })
    }
}

/// Keys that make a profile get its keys some other way than by holding them.
const OTHER_WAYS: [&str; 6] = [
    "role_arn",
    "credential_source",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
];

/// The keys of profile `name`, or one line that says what is wrong and what to do.
pub fn read_profile(name: &str, files: &SharedFiles) -> Result<ProfileKeys, String> {
    let credentials_text = read_if_present(&files.credentials)?;
    let config_text = read_if_present(&files.config)?;
    if credentials_text.is_none() && config_text.is_none() {
        return Err(format!(
            "[repo] profile = \"{name}\", but neither {} nor {} exists: write the profile's keys to the first, or set AWS_SHARED_CREDENTIALS_FILE to the file that has them",
            files.credentials.display(),
            files.config.display()
        ));
    }
    let in_credentials = parse_profiles(credentials_text.as_deref().unwrap_or(""), false);
    let in_config = parse_profiles(config_text.as_deref().unwrap_or(""), true);
    let (found_in, mut keys) = match (in_credentials.get(name), in_config.get(name)) {
        (Some(credentials), config) => {
            let mut keys = config.cloned().unwrap_or_default();
            keys.extend(credentials.clone());
            (&files.credentials, keys)
        }
        (None, Some(config)) => (&files.config, config.clone()),
        (None, None) => {
            let mut known: Vec<&str> = in_credentials
                .keys()
                .chain(in_config.keys())
                .map(String::as_str)
                .collect();
            known.sort_unstable();
            known.dedup();
            let known = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            return Err(format!(
                "profile '{name}' is in neither {} nor {} (they have: {known}): add a [{name}] section with its keys to the first, or fix [repo] profile",
                files.credentials.display(),
                files.config.display()
            ));
        }
    };
    let found_in = found_in.display();
    if let Some(way) = OTHER_WAYS.iter().find(|way| keys.contains_key(**way)) {
        return Err(format!(
            "profile '{name}' in {found_in} gets its keys through {way}, which Tidemark does not follow: use a profile with aws_access_key_id and aws_secret_access_key"
        ));
    }
    let mut take = |key: &str| keys.remove(key).filter(|value| !value.is_empty());
    match (take("aws_access_key_id"), take("aws_secret_access_key")) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(ProfileKeys {
            access_key_id,
            secret_access_key,
            session_token: take("aws_session_token"),
        }),
        (Some(_), None) => Err(format!(
            "profile '{name}' in {found_in} has aws_access_key_id but no aws_secret_access_key: add it"
        )),
        (None, Some(_)) => Err(format!(
            "profile '{name}' in {found_in} has aws_secret_access_key but no aws_access_key_id: add it"
        )),
        (None, None) => Err(format!(
            "profile '{name}' in {found_in} has no aws_access_key_id and aws_secret_access_key: add both"
        )),
    }
}

/// The file's text, or `None` if there is no such file.
fn read_if_present(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!(
            "cannot read {}: {e}; it must be readable by the user running this command (for archive_command, PostgreSQL's)",
            path.display()
        )),
    }
}

/// The profiles of one file: name, then key and value.
type Profiles = BTreeMap<String, BTreeMap<String, String>>;

/// Reads the profiles of an INI file. In the config file only `[profile NAME]` and `[default]`
/// are profiles (`[sso-session X]`, `[services X]` are something else), as the AWS CLI has it.
fn parse_profiles(text: &str, is_config_file: bool) -> Profiles {
    let mut profiles = Profiles::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        // An indented line belongs to a nested setting (`s3 =` and what follows), never a key.
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let words: Vec<&str> = header
                .split(']')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            current = match (is_config_file, words.as_slice()) {
                (true, ["default"]) | (true, ["profile", _]) | (false, [_]) => {
                    words.last().map(|name| (*name).to_owned())
                }
                _ => None,
            };
            if let Some(name) = &current {
                profiles.entry(name.clone()).or_default();
            }
        } else if let (Some(name), Some((key, value))) = (&current, line.split_once('=')) {
            // The AWS CLI reads key names in any case.
            profiles
                .get_mut(name)
                .expect("entered with its header")
                .insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    profiles
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two files, written into `dir` when given.
    fn files_in(
        dir: &tempfile::TempDir,
        credentials: Option<&str>,
        config: Option<&str>,
    ) -> SharedFiles {
        let files = SharedFiles {
            credentials: dir.path().join("credentials"),
            config: dir.path().join("config"),
        };
        if let Some(text) = credentials {
            std::fs::write(&files.credentials, text).unwrap();
        }
        if let Some(text) = config {
            std::fs::write(&files.config, text).unwrap();
        }
        files
    }

    #[test]
    fn keys_come_from_either_file_and_the_credentials_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let files = files_in(
            &dir,
            Some(
                "# comment\n[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = s0\n\n[prod]\nAWS_ACCESS_KEY_ID=AKPROD\naws_secret_access_key = s1/+x\naws_session_token = tok\n",
            ),
            Some(
                "[default]\nregion = eu-west-1\n[profile prod]\naws_access_key_id = AKIGNORED\ns3 =\n  max_concurrent_requests = 4\n[profile only-config]\naws_access_key_id = AKCONF\naws_secret_access_key = s2\n[sso-session x]\naws_access_key_id = no\n[bare]\naws_access_key_id = no\n",
            ),
        );
        let prod = read_profile("prod", &files).unwrap();
        assert_eq!(prod.access_key_id, "AKPROD");
        assert_eq!(prod.secret_access_key, "s1/+x");
        assert_eq!(prod.session_token.as_deref(), Some("tok"));
        let default = read_profile("default", &files).unwrap();
        assert_eq!(default.access_key_id, "AKDEFAULT");
        assert_eq!(default.session_token, None);
        assert_eq!(
            read_profile("only-config", &files).unwrap().access_key_id,
            "AKCONF"
        );
        // Sections of the config file that are not profiles.
        for name in ["x", "bare"] {
            let message = read_profile(name, &files).err().unwrap();
            assert!(
                message.contains("(they have: default, only-config, prod)"),
                "{message}"
            );
        }
    }

    #[test]
    fn each_missing_piece_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let cases = [
            (
                None,
                None,
                "prod",
                format!(
                    "[repo] profile = \"prod\", but neither {} nor {} exists: write the profile's keys to the first, or set AWS_SHARED_CREDENTIALS_FILE",
                    path("credentials"),
                    path("config")
                ),
            ),
            (
                Some("[dev]\naws_access_key_id = a\naws_secret_access_key = b\n"),
                None,
                "prod",
                format!(
                    "profile 'prod' is in neither {} nor {} (they have: dev): add a [prod] section with its keys to the first, or fix [repo] profile",
                    path("credentials"),
                    path("config")
                ),
            ),
            (
                Some("[prod]\nregion = us-east-1\n"),
                None,
                "prod",
                format!(
                    "profile 'prod' in {} has no aws_access_key_id and aws_secret_access_key: add both",
                    path("credentials")
                ),
            ),
            (
                None,
                Some("[profile prod]\naws_access_key_id = a\naws_secret_access_key =\n"),
                "prod",
                format!(
                    "profile 'prod' in {} has aws_access_key_id but no aws_secret_access_key: add it",
                    path("config")
                ),
            ),
            (
                None,
                Some("[profile prod]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n"),
                "prod",
                format!(
                    "profile 'prod' in {} gets its keys through role_arn, which Tidemark does not follow",
                    path("config")
                ),
            ),
        ];
        for (credentials, config, name, expected) in cases {
            let _ = std::fs::remove_file(dir.path().join("credentials"));
            let _ = std::fs::remove_file(dir.path().join("config"));
            let files = files_in(&dir, credentials, config);
            let message = read_profile(name, &files).err().unwrap();
            assert!(
                message.starts_with(&expected),
                "{message:?} is not {expected:?}"
            );
            assert!(!message.contains('\n'), "{message:?}");
        }
    }

    #[test]
    fn the_files_are_found_as_the_aws_cli_finds_them() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| OsString::from(value))
            }
        };
        let home = SharedFiles::locate(env(&[("HOME", "/home/pg")])).unwrap();
        assert_eq!(home.credentials, Path::new("/home/pg/.aws/credentials"));
        assert_eq!(home.config, Path::new("/home/pg/.aws/config"));
        let set = SharedFiles::locate(env(&[
            ("HOME", "/home/pg"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/etc/tidemark/aws"),
            ("AWS_CONFIG_FILE", "~/cfg"),
        ]))
        .unwrap();
        assert_eq!(set.credentials, Path::new("/etc/tidemark/aws"));
        assert_eq!(set.config, Path::new("/home/pg/cfg"));
        let message = SharedFiles::locate(env(&[])).err().unwrap();
        assert_eq!(
            message,
            "HOME is not set, so ~/.aws/credentials cannot be found: set HOME, or AWS_SHARED_CREDENTIALS_FILE to the file"
        );
    }
}
