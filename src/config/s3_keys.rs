//! Where a section's S3 keys come from — `[repo]` of type "s3", or a `[source.NAME]` of type
//! "bucket": both keys in the file (which must then be mode 0600), a named profile, the instance's
//! role, else `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`. At most one source may be named.

use anyhow::bail;

use super::schema::CredentialSource;
use crate::storage::S3Credentials;

/// A section's key settings as written.
pub(super) struct WrittenKeys<'a> {
    /// `repo`, or `source.NAME`.
    pub section: &'a str,
    pub access_key_id: Option<&'a str>,
    pub secret_access_key: Option<&'a str>,
    pub profile: Option<&'a str>,
    pub credentials: Option<CredentialSource>,
}

impl WrittenKeys<'_> {
    /// Keys given whole, a profile that is named, and at most one source of them.
    pub fn check(&self) -> anyhow::Result<()> {
        let section = self.section;
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            bail!(
                "[{section}] has only one of access_key_id and secret_access_key: give both, or neither to use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            );
        }
        if self.profile == Some("") {
            bail!(
                "{section}.profile is empty: name a profile of the AWS credentials file, or remove profile"
            );
        }
        let sources: Vec<&str> = [
            (
                self.access_key_id.is_some(),
                "access_key_id/secret_access_key",
            ),
            (self.profile.is_some(), "profile"),
            (self.credentials.is_some(), "credentials = \"instance\""),
        ]
        .into_iter()
        .filter_map(|(set, source)| set.then_some(source))
        .collect();
        if sources.len() > 1 {
            bail!(
                "[{section}] names more than one source of S3 credentials ({}): keep one and remove the rest",
                sources.join(", ")
            );
        }
        Ok(())
    }

    /// The one source of keys the section names, else the environment's.
    pub fn resolve(&self) -> anyhow::Result<S3Credentials> {
        if let (Some(id), Some(secret)) = (self.access_key_id, self.secret_access_key) {
            return Ok(S3Credentials::keys(
                id.to_owned(),
                secret.to_owned(),
                None,
                "tidemark configuration",
            ));
        }
        if let Some(profile) = self.profile {
            return Ok(S3Credentials::Profile(profile.to_owned()));
        }
        if self.credentials == Some(CredentialSource::Instance) {
            return Ok(S3Credentials::InstanceMetadata);
        }
        let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        match (
            variable("AWS_ACCESS_KEY_ID"),
            variable("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => Ok(S3Credentials::keys(
                id,
                secret,
                variable("AWS_SESSION_TOKEN"),
                "environment",
            )),
            _ => bail!(
                "no S3 credentials: in [{}] set access_key_id and secret_access_key (in a file of mode 0600), profile = \"NAME\" or credentials = \"instance\"; or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                self.section
            ),
        }
    }
}
