//! Files that hold secrets (a passphrase, a key, a configuration with S3 keys): one rule for all
//! of them, as ssh and libpq have. A secret in a file others can read, or in a file someone else
//! owns and could replace, is refused, with the fix in the same line.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use zeroize::Zeroizing;

/// What is wrong with a secret file's mode or owner, said so that it can follow the file's name
/// ("… is readable by others (mode 0644): chmod 600 it"); `None` when nothing is. The rule: no
/// group or other permission bits at all, and owned by the user running this program or by root.
pub fn secret_file_problem(metadata: &Metadata) -> Option<String> {
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        let what = if mode & 0o044 != 0 {
            "readable"
        } else {
            "writable"
        };
        return Some(format!(
            "is {what} by others (mode {mode:04o}): chmod 600 it"
        ));
    }
    let euid = rustix::process::geteuid().as_raw();
    let owner = metadata.uid();
    if owner != euid && owner != 0 {
        return Some(format!(
            "is owned by uid {owner}, neither root nor the user running this command (uid {euid}): chown it to that user"
        ));
    }
    None
}

/// Reads the secret file `path`, which the configuration names as `what` ("passphrase_file"):
/// at most `limit` bytes, checked by [`secret_file_problem`] on the very file opened (so it
/// cannot be swapped between the check and the read), into memory wiped when dropped.
pub fn read_secret_file(
    path: &Path,
    what: &str,
    limit: usize,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut file = File::open(path).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "it must be readable by the user running this command (for archive_command, PostgreSQL's)"
            }
            _ => "check the path",
        };
        anyhow::anyhow!("cannot read {what} {}: {e}; {hint}", path.display())
    })?;
    let metadata = file
        .metadata()
        .with_context(|| format!("inspect {what} {}", path.display()))?;
    if !metadata.is_file() {
        bail!(
            "{what} {} is not a regular file: name the file that holds it",
            path.display()
        );
    }
    if let Some(problem) = secret_file_problem(&metadata) {
        bail!("{what} {} {problem}", path.display());
    }
    // Room for one byte more than allowed, so that a file too long is seen without the buffer
    // ever growing (a reallocation would leave a copy of the secret behind, unwiped).
    let mut bytes = Zeroizing::new(Vec::with_capacity(limit + 1));
    (&mut file)
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("read {what} {}", path.display()))?;
    if bytes.len() > limit {
        bail!(
            "{what} {} is longer than {limit} bytes, more than any {what} holds: name the right file",
            path.display()
        );
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with_mode(dir: &Path, mode: u32, text: &[u8]) -> std::path::PathBuf {
        let path = dir.join(format!("secret-{mode:o}"));
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_file_others_can_read_or_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (mode, expected) in [
            (0o644, "is readable by others (mode 0644): chmod 600 it"),
            (0o640, "is readable by others (mode 0640): chmod 600 it"),
            (0o604, "is readable by others (mode 0604): chmod 600 it"),
            (0o620, "is writable by others (mode 0620): chmod 600 it"),
            (0o602, "is writable by others (mode 0602): chmod 600 it"),
        ] {
            let path = file_with_mode(dir.path(), mode, b"hunter2");
            let error = read_secret_file(&path, "passphrase_file", 100).unwrap_err();
            assert_eq!(
                format!("{error:#}"),
                format!("passphrase_file {} {expected}", path.display())
            );
        }
        for mode in [0o600, 0o400] {
            let path = file_with_mode(dir.path(), mode, b"hunter2");
            let read = read_secret_file(&path, "passphrase_file", 100).unwrap();
            assert_eq!(&read[..], b"hunter2");
        }
    }

    #[test]
    fn a_file_of_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with_mode(dir.path(), 0o600, b"hunter2");
        let euid = rustix::process::geteuid().as_raw();
        // Running as root, give the file to another user; as anyone else, the test's own file
        // is owned by the euid, and only the accepting half can be shown.
        if euid == 0 {
            rustix::fs::chown(&path, Some(rustix::fs::Uid::from_raw(4242)), None).unwrap();
            let error = read_secret_file(&path, "key_file", 100).unwrap_err();
            assert_eq!(
                format!("{error:#}"),
                format!(
                    "key_file {} is owned by uid 4242, neither root nor the user running this command (uid 0): chown it to that user",
                    path.display()
                )
            );
        } else {
            read_secret_file(&path, "key_file", 100).unwrap();
        }
    }

    #[test]
    fn a_missing_or_overlong_file_is_refused_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let error = format!(
            "{:#}",
            read_secret_file(&missing, "key_file", 100).unwrap_err()
        );
        assert_eq!(
            error,
            format!(
                "cannot read key_file {}: No such file or directory (os error 2); check the path",
                missing.display()
            )
        );
        let long = file_with_mode(dir.path(), 0o600, &[b'x'; 101]);
        let error = format!(
            "{:#}",
            read_secret_file(&long, "key_file", 100).unwrap_err()
        );
        assert!(
            error.ends_with(
                "is longer than 100 bytes, more than any key_file holds: name the right file"
            ),
            "{error}"
        );
        assert_eq!(read_secret_file(&long, "key_file", 101).unwrap().len(), 101);
        let error = format!(
            "{:#}",
            read_secret_file(dir.path(), "key_file", 100).unwrap_err()
        );
        assert!(
            error.ends_with("is not a regular file: name the file that holds it"),
            "{error}"
        );
    }
}
