//! The configuration file's tests: the documented example, S3 repositories, secrets in readable
//! files, every mistake's one-line error, the choice of stanza, and retention policies.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::repo::Compression;
use crate::repo::retention::{ArchiveRetention, Gfs, RetentionPolicy};
use crate::units::ByteSize;

const GOOD: &str = r#"
[repo]
path = "/var/lib/tidemark"
compress = "lz4"

[stanza.main]
pgdata = "/var/lib/postgresql/15/main"
conninfo = "host=/var/run/postgresql port=5432 user=postgres"
"#;

/// The documented example with `keys` (lines of `[repo]`) in place of its `compress` key.
fn good_with_repo_keys(keys: &str) -> String {
    GOOD.replace("compress = \"lz4\"", keys)
}

/// The documented example with `section` (a header and its keys) before its stanza.
fn good_with_section(section: &str) -> String {
    GOOD.replace("[stanza.main]", &format!("{section}\n[stanza.main]"))
}

#[test]
fn reads_the_documented_example() {
    let config = Config::parse(GOOD).unwrap();
    assert_eq!(config.repo.path, PathBuf::from("/var/lib/tidemark"));
    assert_eq!(config.repo.compress, Compression::Lz4);
    let (name, stanza) = config.select_stanza(None).unwrap();
    assert_eq!(name, "main");
    assert_eq!(
        stanza.pgdata.unwrap(),
        PathBuf::from("/var/lib/postgresql/15/main")
    );
    let defaults = Config::parse("[repo]\npath = \"/r\"\n").unwrap();
    assert_eq!(defaults.repo.compress, Compression::Zstd);
    let fast = Config::parse(&good_with_repo_keys("compress_level = -3")).unwrap();
    assert_eq!(fast.repo.compress_level, Some(-3));
    assert!(!defaults.archive.work_ahead);
    let work_ahead = Config::parse(&good_with_section(
        "[archive]\nasync = true\nworkers = 4\nspool_path = \"/var/spool/tidemark\"",
    ))
    .unwrap();
    assert!(work_ahead.archive.work_ahead);
    assert_eq!(work_ahead.archive.workers, Some(4));
    assert_eq!(defaults.restore.prefetch(), DEFAULT_PREFETCH);
    let no_prefetch = Config::parse(&good_with_section("[restore]\nprefetch = 0")).unwrap();
    assert_eq!(no_prefetch.restore.prefetch(), 0);
}

/// An S3 repository with the keys it cannot do without, then `keys` (lines of `[repo]`).
fn s3_repo(keys: &str) -> String {
    format!("[repo]\ntype = \"s3\"\nbucket = \"pg-archive\"\nregion = \"us-east-1\"\n{keys}\n")
}

#[test]
fn reads_an_s3_repository() {
    let config = Config::parse(&s3_repo(
        "prefix = \"prod\"\nendpoint = \"http://127.0.0.1:9000\"\npath_style = true\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\nstorage_class = \"STANDARD_IA\"\nsse = \"AES256\"\nmultipart_part_size = \"64MiB\"",
    ))
    .unwrap();
    assert_eq!(config.repo.kind, RepoType::S3);
    assert_eq!(config.repo.multipart_part_size, Some(ByteSize(64 << 20)));
    assert_eq!(config.repo.bucket.as_deref(), Some("pg-archive"));
    assert!(config.repo.path_style);
    assert_eq!(
        config.open_repository().unwrap().storage().location(),
        "s3://pg-archive/prod at http://127.0.0.1:9000"
    );
    // A size may also be a number of bytes.
    let in_bytes = Config::parse(&s3_repo("multipart_part_size = 5242880")).unwrap();
    assert_eq!(in_bytes.repo.multipart_part_size, Some(ByteSize(5 << 20)));
    let profile = Config::parse(&s3_repo("profile = \"prod\"")).unwrap();
    assert_eq!(profile.repo.profile.as_deref(), Some("prod"));
    let instance = Config::parse(&s3_repo("credentials = \"instance\"")).unwrap();
    assert_eq!(instance.repo.credentials, Some(CredentialSource::Instance));
}

#[test]
fn a_secret_in_a_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tidemark.toml");
    std::fs::write(
        &path,
        s3_repo("access_key_id = \"k\"\nsecret_access_key = \"s\""),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = format!("{:#}", Config::load(&path).unwrap_err());
    assert!(
        refused.ends_with(
            "holds repo.secret_access_key but is readable by others (mode 0644): chmod 600 it"
        ),
        "{refused}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    Config::load(&path).unwrap();
    // Someone else's file could be replaced under us: refused too, by the rule passphrase and
    // key files follow. Only root can give a file away to show it.
    if rustix::process::geteuid().is_root() {
        rustix::fs::chown(&path, Some(rustix::fs::Uid::from_raw(4242)), None).unwrap();
        let refused = format!("{:#}", Config::load(&path).unwrap_err());
        assert!(
            refused.ends_with(
                "holds repo.secret_access_key but is owned by uid 4242, neither root nor the user running this command (uid 0): chown it to that user"
            ),
            "{refused}"
        );
    }
}

#[test]
fn every_mistake_is_named_on_one_line() {
    let cases = mistakes_in_any_section()
        .into_iter()
        .chain(mistakes_in_repo_keys())
        .chain(mistakes_in_azure_keys())
        .chain(mistakes_in_sizes_types_and_ranges());
    for (text, expected) in cases {
        let message = format!("{:#}", Config::parse(&text).unwrap_err());
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        assert!(!message.contains('\n'), "{message:?} is not one line");
    }
}

/// Files with one mistake each, and what their error must say: unknown keys and variants,
/// paths, levels, `[archive]` and stanza names.
fn mistakes_in_any_section() -> Vec<(String, &'static str)> {
    vec![
        (
            GOOD.replace("compress =", "compresss ="),
            "line 4: unknown key `compresss`, expected one of",
        ),
        (
            GOOD.replace("pgdata", "pg_data"),
            "line 7: unknown key `pg_data`",
        ),
        (
            GOOD.replace("\"lz4\"", "\"gzip\""),
            "line 4: unknown variant `gzip`, expected one of `zstd`, `lz4`, `none`",
        ),
        (
            GOOD.replace("/var/lib/tidemark", "relative/dir"),
            "repo.path 'relative/dir' must be an absolute path",
        ),
        (
            GOOD.replace("[repo]", "[repository]"),
            "unknown key `repository`",
        ),
        (
            format!("{GOOD}compress_level = 30\n"),
            "unknown key `compress_level`",
        ),
        (
            good_with_repo_keys("compress_level = 30"),
            "repo.compress_level 30 is out of range",
        ),
        (
            good_with_repo_keys("compress_level = 0"),
            "repo.compress_level 0 is out of range: use 1 to 19, or -7 to -1 for zstd's fast levels",
        ),
        (
            good_with_repo_keys("compress_level = -8"),
            "repo.compress_level -8 is out of range",
        ),
        (
            good_with_repo_keys("compress_level = \"3\""),
            "line 4: invalid type: string \"3\", expected an integer",
        ),
        (
            good_with_repo_keys("compress = \"lz4\"\ncompress_level = 3"),
            "repo.compress_level applies to zstd only, but compress = \"lz4\": remove compress_level",
        ),
        ("[stanza.main]\n".to_owned(), "missing key `repo`"),
        (
            GOOD.replace("stanza.main", "stanza.\"a/b\""),
            "'a/b' is not a valid stanza name",
        ),
        (
            good_with_section("[archive]\nasync = \"yes\""),
            "line 7: invalid type: string \"yes\", expected a boolean",
        ),
        (
            good_with_section("[archive]\nworkers = 0"),
            "archive.workers 0 is out of range: use 1 to 64",
        ),
        (
            good_with_section("[archive]\nspool_path = \"spool\""),
            "archive.spool_path 'spool' must be an absolute path",
        ),
        (
            good_with_section("[archive]\nasynch = true"),
            "line 7: unknown key `asynch`, expected one of `async`, `workers`, `spool_path`",
        ),
    ]
}

/// Mistakes in `[repo]`: keys of the other type, missing keys, sources of S3 keys.
fn mistakes_in_repo_keys() -> Vec<(String, &'static str)> {
    vec![
        (
            good_with_repo_keys("bucket = \"b\""),
            "repo.bucket applies to type = \"s3\" only: add type = \"s3\" to [repo], or remove bucket",
        ),
        (
            "[repo]\ncompress = \"lz4\"\n".to_owned(),
            "[repo] has no path: add path = \"/var/lib/tidemark\"",
        ),
        (
            s3_repo("path = \"/x\""),
            "repo.path applies to type = \"local\" only",
        ),
        (
            "[repo]\ntype = \"s3\"\nregion = \"us-east-1\"\n".to_owned(),
            "[repo] type = \"s3\" needs bucket = \"NAME\"",
        ),
        (
            "[repo]\ntype = \"s3\"\nbucket = \"b\"\n".to_owned(),
            "[repo] type = \"s3\" needs region = \"REGION\"",
        ),
        (
            s3_repo("endpoint = \"127.0.0.1:9000\""),
            "repo.endpoint '127.0.0.1:9000' must start with http:// or https://",
        ),
        (
            s3_repo("access_key_id = \"k\""),
            "[repo] has only one of access_key_id and secret_access_key",
        ),
        (
            s3_repo("credentials = \"static\""),
            "line 5: unknown variant `static`, expected `instance`",
        ),
        (
            s3_repo("profile = \"\""),
            "repo.profile is empty: name a profile of the AWS credentials file, or remove profile",
        ),
        (
            s3_repo("access_key_id = \"k\"\nsecret_access_key = \"s\"\nprofile = \"prod\""),
            "[repo] names more than one source of S3 credentials (access_key_id/secret_access_key, profile): keep one and remove the rest",
        ),
        (
            s3_repo("profile = \"prod\"\ncredentials = \"instance\""),
            "[repo] names more than one source of S3 credentials (profile, credentials = \"instance\"): keep one",
        ),
        (
            s3_repo("access_key_id = \"k\"\nsecret_access_key = \"s\"\ncredentials = \"instance\""),
            "(access_key_id/secret_access_key, credentials = \"instance\"): keep one",
        ),
        (
            good_with_repo_keys("profile = \"prod\""),
            "repo.profile applies to type = \"s3\" only: add type = \"s3\" to [repo], or remove profile",
        ),
        (
            good_with_repo_keys("credentials = \"instance\""),
            "repo.credentials applies to type = \"s3\" only",
        ),
        (
            s3_repo("sse = \"rot13\""),
            "repo.sse 'rot13' is not one of \"AES256\", \"aws:kms\"",
        ),
    ]
}

/// An Azure repository with the keys it cannot do without, then `keys` (lines of `[repo]`).
fn azure_repo(keys: &str) -> String {
    format!("[repo]\ntype = \"azure\"\naccount = \"pgarchive\"\ncontainer = \"wal\"\n{keys}\n")
}

/// Mistakes in `[repo]` of type "azure": names Azure refuses, keys of the other types, sources
/// of access.
fn mistakes_in_azure_keys() -> Vec<(String, &'static str)> {
    vec![
        (
            good_with_repo_keys("container = \"wal\""),
            "repo.container applies to type = \"azure\" only: add type = \"azure\" to [repo], or remove container",
        ),
        (
            good_with_repo_keys("prefix = \"prod\""),
            "repo.prefix applies to type = \"s3\" or \"azure\" only",
        ),
        (
            s3_repo("account = \"pgarchive\""),
            "repo.account applies to type = \"azure\" only",
        ),
        (
            azure_repo("bucket = \"b\""),
            "repo.bucket applies to type = \"s3\" only: add type = \"s3\" to [repo], or remove bucket",
        ),
        (
            azure_repo("path = \"/x\""),
            "repo.path applies to type = \"local\" only: a container has no path; remove it",
        ),
        (
            "[repo]\ntype = \"azure\"\ncontainer = \"wal\"\n".to_owned(),
            "[repo] type = \"azure\" needs account = \"NAME\"",
        ),
        (
            "[repo]\ntype = \"azure\"\naccount = \"pgarchive\"\n".to_owned(),
            "[repo] type = \"azure\" needs container = \"NAME\"",
        ),
        (
            azure_repo("").replace("pgarchive", "PG_Archive"),
            "repo.account 'PG_Archive' is not a storage account name: 3 to 24 lowercase letters and digits",
        ),
        (
            azure_repo("").replace("\"wal\"", "\"WAL\""),
            "repo.container 'WAL' is not a container name",
        ),
        (
            azure_repo("prefix = \"/prod\""),
            "repo.prefix '/prod' must be names of letters, digits",
        ),
        (
            azure_repo("endpoint = \"127.0.0.1:10000\""),
            "repo.endpoint '127.0.0.1:10000' must start with http:// or https://",
        ),
        (
            azure_repo("account_key_file = \"azure.key\""),
            "repo.account_key_file 'azure.key' must be an absolute path",
        ),
        (
            azure_repo("account_key_file = \"/etc/k\"\nsas_token_file = \"/etc/s\""),
            "[repo] names more than one source of Azure access (account_key_file, sas_token_file): keep one and remove the rest",
        ),
        (
            azure_repo("sas_token_file = \"/etc/s\"\nuse_managed_identity = true"),
            "(sas_token_file, use_managed_identity): keep one",
        ),
        (
            azure_repo("managed_identity_client_id = \"c\""),
            "repo.managed_identity_client_id applies with use_managed_identity = true only",
        ),
        (
            azure_repo("multipart_part_size = \"4001MiB\""),
            "repo.multipart_part_size 3.9 GiB is out of range: Azure takes blocks of \"1MiB\" to \"4000MiB\"",
        ),
    ]
}

#[test]
fn reads_an_azure_repository() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("azure.key");
    std::fs::write(&key_file, "AAEC\n").unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = Config::parse(&azure_repo(&format!(
        "prefix = \"prod/eu\"\nendpoint = \"http://127.0.0.1:10000/devstoreaccount1\"\naccount_key_file = \"{}\"\nmultipart_part_size = \"8MiB\"",
        key_file.display()
    )))
    .unwrap();
    assert_eq!(config.repo.kind, RepoType::Azure);
    assert_eq!(
        config.open_repository().unwrap().storage().location(),
        "azure://wal/prod/eu at http://127.0.0.1:10000/devstoreaccount1"
    );
    // The key file follows the secret-file rule, and must hold a key.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = format!("{:#}", config.repo.backend().unwrap_err());
    assert_eq!(
        refused,
        format!(
            "repo.account_key_file {} is readable by others (mode 0644): chmod 600 it",
            key_file.display()
        )
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&key_file, "not a key!").unwrap();
    let refused = format!("{:#}", config.repo.backend().unwrap_err());
    assert!(
        refused.ends_with(
            "is not a storage account key (base64, as `az storage account keys list` prints it)"
        ),
        "{refused}"
    );
    let identity = Config::parse(&azure_repo(
        "use_managed_identity = true\nmanaged_identity_client_id = \"0000-1111\"",
    ))
    .unwrap();
    assert!(identity.repo.use_managed_identity);
    assert_eq!(
        identity.repo.managed_identity_client_id.as_deref(),
        Some("0000-1111")
    );
}

/// Mistakes in sizes, in types and in `[restore]`'s range.
fn mistakes_in_sizes_types_and_ranges() -> Vec<(String, &'static str)> {
    vec![
        (
            good_with_repo_keys("multipart_part_size = \"16MiB\""),
            "repo.multipart_part_size applies to type = \"s3\" or \"azure\" only: add type = \"s3\" or \"azure\" to [repo], or remove multipart_part_size",
        ),
        (
            s3_repo("multipart_part_size = \"16MB\""),
            "line 5: \"16MB\" is not a size: write a whole number and one of B, KiB, MiB, GiB, TiB, such as \"16MiB\"",
        ),
        (
            s3_repo("multipart_part_size = \"1.5GiB\""),
            "line 5: \"1.5GiB\" is not a size: write a whole number",
        ),
        (
            s3_repo("multipart_part_size = \"\""),
            "line 5: \"\" is not a size",
        ),
        (
            s3_repo("multipart_part_size = -5"),
            "line 5: -5 is not a size: sizes are not negative",
        ),
        (
            s3_repo("multipart_part_size = true"),
            "line 5: invalid type: boolean `true`, expected a size such as \"16MiB\"",
        ),
        (
            s3_repo("multipart_part_size = \"99999999TiB\""),
            "line 5: \"99999999TiB\" is too large a size",
        ),
        (
            s3_repo("multipart_part_size = \"4MiB\""),
            "repo.multipart_part_size 4.0 MiB is out of range: S3 takes parts of \"5MiB\" to \"5GiB\"",
        ),
        (
            s3_repo("multipart_part_size = 0"),
            "repo.multipart_part_size 0 B is out of range",
        ),
        (
            s3_repo("multipart_part_size = \"6GiB\""),
            "repo.multipart_part_size 6.0 GiB is out of range: S3 takes parts of \"5MiB\" to \"5GiB\"",
        ),
        (
            "[repo]\ntype = \"ftp\"\n".to_owned(),
            "unknown variant `ftp`, expected one of `local`, `s3`, `azure`",
        ),
        (
            good_with_section("[restore]\nprefetch = 1000"),
            "restore.prefetch 1000 is out of range: use 0 (off) to 256",
        ),
        (
            good_with_section("[restore]\nprefetch = -1"),
            "line 7: invalid value: integer `-1`, expected usize",
        ),
    ]
}

#[test]
fn the_stanza_is_chosen_by_name_or_by_being_the_only_one() {
    let two = format!("{GOOD}[stanza.other]\n");
    let config = Config::parse(&two).unwrap();
    assert_eq!(config.select_stanza(Some("other")).unwrap().0, "other");
    let message = format!("{:#}", config.select_stanza(None).unwrap_err());
    assert!(
        message.contains("several stanzas (main, other)"),
        "{message}"
    );
    let message = format!("{:#}", config.select_stanza(Some("mian")).unwrap_err());
    assert!(
        message.contains("stanza 'mian' is not in the config file (it has: main, other)"),
        "{message}"
    );
}

/// `GOOD` with `[retention]` and `[stanza.main.retention]` sections holding these lines.
fn with_retention(default: &str, stanza: &str) -> String {
    format!("{GOOD}[retention]\n{default}\n[stanza.main.retention]\n{stanza}\n")
}

fn retention_policy(text: &str) -> Option<RetentionPolicy> {
    let config = Config::parse(text).unwrap();
    let (stanza_name, stanza) = config.select_stanza(Some("main")).unwrap();
    Selected {
        config,
        config_path: PathBuf::from("/etc/tidemark/tidemark.toml"),
        stanza_name,
        stanza,
    }
    .retention_policy()
    .unwrap()
}

const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn reads_the_documented_retention_policy() {
    let policy = retention_policy(&with_retention(
        "full = 4\ntime = \"35d\"\ngfs = { daily = 7, weekly = 4, monthly = 12, yearly = 3 }\narchive = \"all\"\ntime_zone = \"Europe/Berlin\"",
        "",
    ));
    assert_eq!(
        policy,
        Some(RetentionPolicy {
            full: Some(4),
            time: Some(35 * DAY),
            gfs: Gfs {
                daily: Some(7),
                weekly: Some(4),
                monthly: Some(12),
                yearly: Some(3),
            },
            archive: ArchiveRetention::All,
            time_zone: "Europe/Berlin".to_owned(),
        })
    );
    for (time, seconds) in [
        ("12h", 12 * 3600),
        ("2w", 14 * 86_400),
        ("90m", 5400),
        ("3600s", 3600),
    ] {
        let policy = retention_policy(&with_retention(&format!("time = \"{time}\""), ""));
        assert_eq!(
            policy.unwrap().time,
            Some(Duration::from_secs(seconds)),
            "{time}"
        );
    }
}

#[test]
fn a_stanza_overrides_the_default_key_by_key() {
    let policy = retention_policy(&with_retention(
        "full = 4\ntime = \"35d\"\ngfs = { daily = 7, weekly = 4 }\narchive = \"all\"",
        "time = \"7d\"\ngfs = { monthly = 12 }\ntime_zone = \"europe/berlin\"",
    ));
    assert_eq!(
        policy,
        Some(RetentionPolicy {
            full: Some(4),
            time: Some(7 * DAY),
            // gfs is one key: the stanza's table replaces the default's.
            gfs: Gfs {
                monthly: Some(12),
                ..Gfs::default()
            },
            archive: ArchiveRetention::All,
            time_zone: "Europe/Berlin".to_owned(),
        })
    );
    let stanza_only = retention_policy(&format!("{GOOD}[stanza.main.retention]\nfull = 2\n"));
    assert_eq!(
        stanza_only,
        Some(RetentionPolicy {
            full: Some(2),
            time: None,
            gfs: Gfs::default(),
            archive: ArchiveRetention::Window,
            time_zone: "UTC".to_owned(),
        })
    );
}

#[test]
fn no_rule_is_no_policy() {
    assert_eq!(retention_policy(GOOD), None);
    assert_eq!(
        retention_policy(&with_retention("archive = \"all\"", "time_zone = \"UTC\"")),
        None
    );
    // Another stanza's rules are not this one's.
    let other = format!("{GOOD}[stanza.other.retention]\nfull = 2\n");
    assert_eq!(retention_policy(&other), None);
}

#[test]
fn every_retention_mistake_is_one_exact_line() {
    let cases = retention_mistakes_in_counts_and_names()
        .into_iter()
        .map(|(text, expected)| (text, expected.to_owned()))
        .chain(retention_mistakes_in_time());
    for (text, expected) in cases {
        let message = format!("{:#}", Config::parse(&text).unwrap_err());
        assert_eq!(message, expected, "{text}");
    }
}

/// One mistake in `[retention]` (at line 10 of the file) or `[stanza.main.retention]` (line 12).
fn in_default(line: &str) -> String {
    with_retention(line, "")
}

fn in_stanza(line: &str) -> String {
    with_retention("", line)
}

/// Mistakes in keys, counts, `gfs`, `archive` and `time_zone`.
fn retention_mistakes_in_counts_and_names() -> Vec<(String, &'static str)> {
    vec![
        (
            in_default("keep = 3"),
            "line 10: unknown key `keep`, expected one of `full`, `time`, `gfs`, `archive`, `time_zone`",
        ),
        (
            in_stanza("fulll = 3"),
            "line 12: unknown key `fulll`, expected one of `full`, `time`, `gfs`, `archive`, `time_zone`",
        ),
        (
            in_default("full = 0"),
            "retention.full 0 is out of range: use 1 or more, e.g. full = 4",
        ),
        (
            in_stanza("full = -2"),
            "stanza.main.retention.full -2 is out of range: use 1 or more, e.g. full = 4",
        ),
        (
            in_default("full = 5000000000"),
            "retention.full 5000000000 is out of range: use at most 4294967295",
        ),
        (
            in_default("full = \"4\""),
            "line 10: invalid type: string \"4\", expected an integer",
        ),
        (
            in_default("gfs = { daily = 7, hourly = 24 }"),
            "retention.gfs.hourly is not a period: use daily, weekly, monthly, yearly",
        ),
        (
            in_stanza("gfs = { weekly = 0 }"),
            "stanza.main.retention.gfs.weekly 0 is out of range: use 1 or more, e.g. weekly = 4",
        ),
        (
            in_default("gfs = {}"),
            "retention.gfs names no period: write e.g. gfs = { daily = 7, weekly = 4, monthly = 12, yearly = 3 }, or remove gfs",
        ),
        (
            in_default("gfs = { daily = \"7\" }"),
            "line 10: invalid type: string \"7\", expected an integer",
        ),
        (
            in_default("archive = \"none\""),
            "retention.archive \"none\" is not one of \"window\", \"all\": write \"window\" to keep the WAL that kept backups need, or \"all\" to keep every WAL file",
        ),
        (
            in_stanza("time_zone = \"Mars/Olympus_Mons\""),
            "stanza.main.retention.time_zone \"Mars/Olympus_Mons\" is not a known IANA time zone: write a name such as \"UTC\" or \"Europe/Berlin\"",
        ),
        (
            in_default("time_zone = \"CET+1\""),
            "retention.time_zone \"CET+1\" is not a known IANA time zone: write a name such as \"UTC\" or \"Europe/Berlin\"",
        ),
    ]
}

/// Mistakes in `time`: each way a duration can be wrong.
fn retention_mistakes_in_time() -> Vec<(String, String)> {
    const WRITE: &str = ": write a whole number and one of s, m, h, d, w, such as \"35d\"";
    [
        ("time = \"-5d\"", "retention.time \"-5d\" is negative"),
        ("time = -35", "retention.time \"-35\" is negative"),
        (
            "time = \"1.5d\"",
            "retention.time \"1.5d\" is not a whole number",
        ),
        ("time = 1.5", "retention.time \"1.5\" is not a whole number"),
        ("time = \"35\"", "retention.time \"35\" has no unit"),
        ("time = 35", "retention.time \"35\" has no unit"),
        (
            "time = \"3y\"",
            "retention.time \"3y\" has an unknown unit \"y\"",
        ),
        (
            "time = \"35 days\"",
            "retention.time \"35 days\" has an unknown unit \"days\"",
        ),
        (
            "time = \"d\"",
            "retention.time \"d\" does not start with a number",
        ),
        (
            "time = \"\"",
            "retention.time \"\" does not start with a number",
        ),
        ("time = \"0d\"", "retention.time \"0d\" is zero"),
        (
            "time = \"99999999999999999999d\"",
            "retention.time \"99999999999999999999d\" is too long",
        ),
        (
            "time = \"9999999999999999w\"",
            "retention.time \"9999999999999999w\" is too long",
        ),
    ]
    .into_iter()
    .map(|(line, problem)| (in_default(line), format!("{problem}{WRITE}")))
    .chain([(
        in_default("time = true"),
        "line 10: invalid type: boolean `true`, expected a duration such as \"35d\"".to_owned(),
    )])
    .collect()
}

#[test]
fn retention_policy_names_the_file_and_the_key() {
    let config = Config::parse(GOOD).unwrap();
    let (stanza_name, mut stanza) = config.select_stanza(None).unwrap();
    // A value the loader would have refused, set after loading.
    stanza.retention.full = Some(0);
    let selected = Selected {
        config,
        config_path: PathBuf::from("/etc/tidemark/tidemark.toml"),
        stanza_name,
        stanza,
    };
    assert_eq!(
        format!("{:#}", selected.retention_policy().unwrap_err()),
        "config file /etc/tidemark/tidemark.toml: stanza.main.retention.full 0 is out of range: use 1 or more, e.g. full = 4"
    );
}

/// A configuration of a repository and `sources`, parsed.
fn with_sources(sources: &str) -> Config {
    Config::parse(&format!("[repo]\npath = \"/srv/tidemark\"\n\n{sources}")).unwrap()
}

#[test]
fn a_redis_source_is_read_with_its_defaults_and_retention_over_the_default() {
    let config = Config::parse(
        "[repo]\npath = \"/srv/tidemark\"\n[retention]\nfull = 4\ntime = \"7d\"\n\n[source.cache]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379/\"\n[source.cache.retention]\nfull = 2\n",
    )
    .unwrap();
    assert_eq!(config.source_names(), ["cache"]);
    let source = config.source("cache").unwrap();
    let SourceKind::Redis(redis) = &source.kind else {
        panic!("a Redis source")
    };
    assert_eq!(redis.url, "redis://127.0.0.1:6379/");
    assert_eq!(redis.connect_timeout, Duration::from_secs(10));
    let policy = config.source_retention(&source).unwrap().unwrap();
    assert_eq!(policy.full, Some(2));
    assert_eq!(policy.time, Some(Duration::from_secs(7 * 86400)));
}

#[test]
fn a_bucket_source_is_read_with_its_defaults() {
    let config = with_sources(
        "[source.uploads]\ntype = \"bucket\"\nbucket = \"uploads\"\nprefix = \"tenant-a/\"\nendpoint = \"http://127.0.0.1:9000\"\nprofile = \"backup\"\n",
    );
    let source = config.source("uploads").unwrap();
    let SourceKind::Bucket(bucket) = &source.kind else {
        panic!("a bucket source")
    };
    assert_eq!(bucket.bucket, "uploads");
    assert_eq!(bucket.prefix, "tenant-a/");
    assert_eq!(bucket.region, "us-east-1");
    // An endpoint of its own: the bucket goes in the path, as MinIO wants.
    assert!(bucket.path_style);
    assert_eq!(bucket.concurrency, 8);
    assert_eq!(bucket.listing, crate::config::BucketListing::Walk);
    assert!(
        matches!(&bucket.credentials, crate::storage::S3Credentials::Profile(p) if p == "backup")
    );
}

#[test]
fn an_azure_table_source_is_read_with_its_defaults() {
    let config = with_sources(
        "[source.audit]\ntype = \"azure-table\"\naccount = \"myaccount\"\ntables = [\"Tenants\", \"AuditLog\", \"Tenants\"]\nkey_file = \"/etc/tidemark/azure.key\"\n\n[source.all]\ntype = \"azure-table\"\naccount = \"devstoreaccount1\"\nendpoint = \"http://127.0.0.1:10002/devstoreaccount1/\"\ntables = \"*\"\nconcurrency = 2\ntimeout = \"5s\"\nsigning = \"SharedKeyLite\"\n",
    );
    let source = config.source("audit").unwrap();
    let SourceKind::AzureTable(tables) = &source.kind else {
        panic!("an Azure Table source")
    };
    assert_eq!(source.kind.name(), "azure-table");
    assert_eq!(tables.endpoint, "https://myaccount.table.core.windows.net");
    assert_eq!(
        tables.tables,
        crate::config::TableChoice::Named(vec!["AuditLog".into(), "Tenants".into()])
    );
    assert_eq!(
        tables.key_file.as_deref(),
        Some(std::path::Path::new("/etc/tidemark/azure.key"))
    );
    assert_eq!(
        (tables.concurrency, tables.timeout),
        (8, Duration::from_secs(30))
    );
    let SourceKind::AzureTable(all) = config.source("all").unwrap().kind else {
        panic!("an Azure Table source")
    };
    assert_eq!(all.endpoint, "http://127.0.0.1:10002/devstoreaccount1");
    assert_eq!(all.tables, crate::config::TableChoice::All);
    assert_eq!((all.concurrency, all.timeout), (2, Duration::from_secs(5)));
    assert_eq!(all.key_file, None);
    assert_eq!(tables.signing, None);
    assert_eq!(
        all.signing,
        Some(crate::config::TableSigning::SharedKeyLite)
    );
}

#[test]
fn a_mistake_in_an_azure_table_section_is_refused_in_one_line() {
    let cases = [
        (
            "tables = \"*\"",
            "source.t has no account: add account = \"NAME\"",
        ),
        (
            "account = \"MyAccount\"\ntables = \"*\"",
            "source.t.account \"MyAccount\" is not a storage account's name: lowercase letters and digits only",
        ),
        (
            "account = \"a\"",
            "source.t has no tables: add tables = [\"NAME\", …], or tables = \"*\" for every table",
        ),
        (
            "account = \"a\"\ntables = \"Audit\"",
            "source.t.tables \"Audit\" is neither \"*\" nor a list: write tables = [\"Audit\"]",
        ),
        (
            "account = \"a\"\ntables = []",
            "source.t.tables is empty: name at least one table, or write tables = \"*\"",
        ),
        (
            "account = \"a\"\ntables = [\"audit-log\"]",
            "source.t.tables names \"audit-log\", which is no table's name: a letter, then 2 to 62 letters and digits",
        ),
        (
            "account = \"a\"\ntables = \"*\"\nendpoint = \"127.0.0.1:10002\"",
            "source.t.endpoint \"127.0.0.1:10002\" is not a URL: write http://HOST:PORT/ACCOUNT (an emulator) or https://HOST",
        ),
        (
            "account = \"a\"\ntables = \"*\"\ntimeout = \"0s\"",
            "source.t.timeout \"0s\" is not a duration: write a whole number and a unit, such as \"30s\"",
        ),
        (
            "account = \"a\"\ntables = \"*\"\nsigning = \"HMAC\"",
            "source.t.signing \"HMAC\" is not a signing scheme: write \"SharedKey\" (the default) or \"SharedKeyLite\"",
        ),
        (
            "account = \"a\"\ntables = \"*\"\nconcurrency = 65",
            "source.t.concurrency 65 is out of range: use 1 to 64",
        ),
        (
            "account = \"a\"\ntables = \"*\"\nbucket = \"b\"",
            "source.t.bucket is not a setting of an azure-table source: remove it, or fix source.t.type",
        ),
        (
            "account = \"a\"\ntables = \"*\"\nurl = \"redis://h/\"",
            "source.t.url is not a setting of an azure-table source: remove it, or fix source.t.type",
        ),
    ];
    for (section, expected) in cases {
        let config = with_sources(&format!("[source.t]\ntype = \"azure-table\"\n{section}\n"));
        let error = config.source("t").unwrap_err().to_string();
        assert_eq!(error, expected, "{section}");
    }
    let config = with_sources(
        "[source.t]\ntype = \"bucket\"\nbucket = \"b\"\nprofile = \"p\"\ntables = \"*\"\n",
    );
    assert_eq!(
        config.source("t").unwrap_err().to_string(),
        "source.t.tables is not a setting of a bucket source: remove it, or fix source.t.type"
    );
}

#[test]
fn a_mistake_in_a_source_section_is_refused_when_the_source_is_used_and_only_then() {
    let cases = [
        (
            "type = \"memcached\"\nurl = \"redis://h/\"",
            "source.cache.type \"memcached\" is not a kind of source Tidemark knows: use redis, bucket, azure-table",
        ),
        (
            "type = \"redis\"",
            "source.cache has no url: add url = \"redis://HOST:PORT/\"",
        ),
        (
            "type = \"redis\"\nurl = \"redis://h/\"\nconnect_timeout = \"soon\"",
            "source.cache.connect_timeout \"soon\" does not start with a number: write a whole number and a unit, such as \"10s\"",
        ),
        (
            "type = \"redis\"\nurl = \"redis://h/\"\nbucket = \"b\"",
            "source.cache.bucket is not a setting of a redis source: remove it, or fix source.cache.type",
        ),
        (
            "type = \"bucket\"\nurl = \"redis://h/\"\nbucket = \"b\"",
            "source.cache.url is not a setting of a bucket source: remove it, or fix source.cache.type",
        ),
        (
            "type = \"bucket\"\nendpoint = \"http://h:9000\"",
            "source.cache has no bucket: add bucket = \"NAME\"",
        ),
        (
            "type = \"bucket\"\nbucket = \"b\"\nendpoint = \"h:9000\"",
            "source.cache.endpoint \"h:9000\" is not a URL: write http://HOST:PORT or https://HOST",
        ),
        (
            "type = \"bucket\"\nbucket = \"b\"\naccess_key_id = \"k\"",
            "[source.cache] has only one of access_key_id and secret_access_key: give both, or neither to use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ),
        (
            "type = \"bucket\"\nbucket = \"b\"\nprofile = \"p\"\ncredentials = \"instance\"",
            "[source.cache] names more than one source of S3 credentials (profile, credentials = \"instance\"): keep one and remove the rest",
        ),
        (
            "type = \"bucket\"\nbucket = \"b\"\nprofile = \"p\"\nconcurrency = 0",
            "source.cache.concurrency 0 is out of range: use 1 to 64",
        ),
        (
            "type = \"bucket\"\nbucket = \"b\"\nprofile = \"p\"\nlisting = \"fast\"",
            "source.cache.listing \"fast\" is not a way to list: use \"walk\" (a listing per folder, the default), \"flat\" (one listing of every key) or \"versions\" (the current versions of a versioned bucket)",
        ),
        (
            "type = \"redis\"\nurl = \"redis://h/\"\nlisting = \"flat\"",
            "source.cache.listing is not a setting of a redis source: remove it, or fix source.cache.type",
        ),
        (
            "type = \"redis\"\nurl = \"redis://h/\"\n[source.cache.retention]\narchive = \"all\"",
            "source.cache.retention.archive is about WAL, which a source has none of: remove it",
        ),
    ];
    for (section, expected) in cases {
        // The file loads: archiving never depends on a source's section.
        let config = with_sources(&format!("[source.cache]\n{section}\n"));
        let error = config.source("cache").unwrap_err().to_string();
        assert_eq!(error, expected, "{section}");
    }
    let config = with_sources("[source.cache]\ntype = \"redis\"\nurl = \"redis://h/\"\nport = 1\n");
    let error = config.source("cache").unwrap_err().to_string();
    assert!(
        error.starts_with("source.cache: unknown key `port`"),
        "{error}"
    );
    let error = config.source("other").unwrap_err().to_string();
    assert_eq!(
        error,
        "source 'other' is not in the config file (it has: cache): fix the name or add a [source.other] section"
    );
}
