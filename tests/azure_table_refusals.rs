//! Bad input to an Azure Table source, against Azurite: a wrong key (the 403 explained), a
//! table the account lacks, a key file others can read, an endpoint that never answers (given
//! up on within the bounded attempts), `--row` without `--partition`, a table the snapshot
//! lacks, a filter that does not parse — each refused in one line, exit 1, with no snapshot
//! recorded and nothing written to the account.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::azure_tables::{TableSetup, TestTables, varied_entity};
use testkit::servers::azurite::start_azurite;
use tidemark::sources::azure_table::batch::WriteMode;

/// Every file under `dir`, with its content, for "nothing was written" checks.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.insert(path.clone(), fs::read(&path).unwrap());
        }
    }
    files
}

/// No snapshot record anywhere under the repository.
fn no_snapshot_recorded(setup: &TableSetup) {
    let recorded: Vec<PathBuf> = files_under(&setup.repo())
        .into_keys()
        .filter(|p| p.to_string_lossy().contains("snapshot"))
        .collect();
    assert!(recorded.is_empty(), "{recorded:?}");
}

#[test]
fn bad_input_is_refused_in_one_line_with_nothing_written() {
    let azurite = start_azurite();
    let tables = TestTables::new(&azurite.table_endpoint);
    tables.create("AuditLog");
    let entities: Vec<_> = (0..50).map(|n| varied_entity(n, 5)).collect();
    tables.write("AuditLog", WriteMode::Insert, &entities);

    let wrong = TableSetup::new(&azurite.table_endpoint, "[\"AuditLog\"]", "");
    let other_key =
        "AAAAAdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    fs::write(wrong.key_file(), other_key).unwrap();
    let refused = wrong.refused(&["source", "backup", "audit"]);
    assert!(
        refused.contains("list the tables: http://127.0.0.1:"),
        "{refused}"
    );
    assert!(
        refused.contains("refused the request (403 AuthorizationFailure"),
        "{refused}"
    );
    assert!(
        refused.contains("the key or SAS token is not one of account devstoreaccount1 (check key_file or AZURE_STORAGE_KEY, and source.audit.account)"),
        "{refused}"
    );
    no_snapshot_recorded(&wrong);
    let refused = wrong.refused(&["source", "check", "audit"]);
    assert!(refused.contains("403"), "{refused}");

    let unknown = TableSetup::new(&azurite.table_endpoint, "[\"AuditLog\", \"Missing\"]", "");
    let refused = unknown.refused(&["source", "backup", "audit"]);
    assert!(
        refused.ends_with("has no table Missing (it has: AuditLog): fix source.audit.tables"),
        "{refused}"
    );
    no_snapshot_recorded(&unknown);

    let open = TableSetup::new(&azurite.table_endpoint, "[\"AuditLog\"]", "");
    fs::set_permissions(open.key_file(), fs::Permissions::from_mode(0o644)).unwrap();
    let refused = open.refused(&["source", "backup", "audit"]);
    assert!(
        refused.ends_with(&format!(
            "key_file {} is readable by others (mode 0644): chmod 600 it",
            open.key_file().display()
        )),
        "{refused}"
    );
    no_snapshot_recorded(&open);

    let keyless = TableSetup::new(&azurite.table_endpoint, "[\"AuditLog\"]", "");
    let text = fs::read_to_string(&keyless.config).unwrap();
    let text: String = text
        .lines()
        .filter(|line| !line.starts_with("key_file"))
        .map(|line| format!("{line}\n"))
        .collect();
    fs::write(&keyless.config, text).unwrap();
    let refused = keyless.refused(&["source", "backup", "audit"]);
    assert!(
        refused.ends_with("source.audit has no key: set key_file = \"PATH\" (a file of mode 0600 holding the account key or a SAS token), or AZURE_STORAGE_KEY"),
        "{refused}"
    );

    // A good snapshot, then restores that are refused.
    let setup = TableSetup::new(&azurite.table_endpoint, "[\"AuditLog\"]", "");
    setup.ok(&["source", "backup", "audit"]);
    let repo_before = files_under(&setup.repo());
    let account_before = tables.tables();
    let held_before = tables.held("AuditLog");
    let restore = |args: &[&str]| {
        let mut all = vec!["source", "restore", "audit"];
        all.extend_from_slice(args);
        setup.refused(&all)
    };
    let refused = restore(&["--table", "AuditLog", "--row", "r"]);
    assert!(
        refused.contains("the following required arguments were not provided: --partition <PK>"),
        "{refused}"
    );
    let refused = restore(&["--table", "Nope", "--as", "Copy"]);
    assert!(
        refused.ends_with("has no table Nope (it has: AuditLog): name one of them with --table"),
        "{refused}"
    );
    let refused = restore(&[
        "--table", "AuditLog", "--as", "Copy", "--filter", "Count eq",
    ]);
    assert!(
        refused.ends_with(
            "--filter \"Count eq\": the filter ends where a property or a value was expected"
        ),
        "{refused}"
    );
    let refused = restore(&["--table", "AuditLog", "--as", "bad-name"]);
    assert!(
        refused.contains("--as \"bad-name\" is no table's name"),
        "{refused}"
    );
    let refused = restore(&["--table", "AuditLog", "--as", "Copy", "--partition", "none"]);
    assert!(refused.ends_with("has no partition \"none\""), "{refused}");
    let refused = restore(&["--to-bucket", "b", "--as", "Copy"]);
    assert!(refused.contains("--table"), "{refused}");
    fs::write(setup.key_file(), other_key).unwrap();
    let refused = restore(&["--table", "AuditLog", "--as", "Copy"]);
    assert!(refused.contains("403 AuthorizationFailure"), "{refused}");
    assert_eq!(files_under(&setup.repo()), repo_before);
    assert_eq!(tables.tables(), account_before);
    assert_eq!(tables.held("AuditLog"), held_before);
}

#[test]
fn an_endpoint_that_never_answers_is_given_up_on_in_bounded_time() {
    // Accepts connections and never answers: each attempt waits out the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/devstoreaccount1", silent.local_addr().unwrap());
    let setup = TableSetup::new(&endpoint, "\"*\"", "timeout = \"1s\"\n");
    let started = Instant::now();
    let mut child = std::process::Command::new(common::binaries().tidemark)
        .env_remove("AZURE_STORAGE_KEY")
        .env_remove("TIDEMARK_CONFIG")
        .arg("--config")
        .arg(&setup.config)
        .args(["source", "backup", "audit"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Far beyond 5 attempts of 1 s and their backoff (3.75 s): a hang fails the test.
    let limit = Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("source backup still waits after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap();
    assert!(
        last.contains("list the tables: http://127.0.0.1:")
            && last.contains("no answer within 1s (5 attempts): check that source.audit.endpoint is the account's Table service and that it is up"),
        "{stderr}"
    );
    // Each retry was logged before the last line.
    assert_eq!(stderr.matches("retrying in").count(), 4, "{stderr}");
    no_snapshot_recorded(&setup);
    drop(silent);
}
