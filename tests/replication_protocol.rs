//! The replication client against a real PostgreSQL 15: SCRAM-SHA-256, md5 and cleartext
//! logins, a wrong password refused with the server's SQLSTATE, IDENTIFY_SYSTEM, and a whole
//! BASE_BACKUP stream decoded into archives, a manifest and start/end positions.

use std::fs;

use testkit::{PgBinaries, SharedTempDir, ThrowawayCluster};
use tidemark::protocol::base_backup::{BackupEvent, BaseBackupDecoder, BaseBackupOptions};
use tidemark::protocol::{ConnectTarget, ReplicationConnection, ServerError};

/// A running cluster with users `scram`, `md5` and `clear`, each allowed to replicate only with
/// its password method.
fn cluster_with_password_logins(tmp: &SharedTempDir) -> ThrowawayCluster {
    let pg = PgBinaries::locate().unwrap();
    let mut cluster = ThrowawayCluster::init(&pg, tmp.path(), "auth", 1).unwrap();
    let hba = cluster.data_dir().join("pg_hba.conf");
    let existing = fs::read_to_string(&hba).unwrap();
    // First match wins: these come before initdb's trust lines.
    fs::write(
        &hba,
        format!("local replication scram scram-sha-256\nlocal replication md5 md5\nlocal replication clear password\n{existing}"),
    )
    .unwrap();
    cluster.start().unwrap();
    cluster
        .query("SET password_encryption = 'scram-sha-256'; CREATE ROLE scram LOGIN REPLICATION PASSWORD 'scram secret'")
        .unwrap();
    cluster
        .query("SET password_encryption = 'md5'; CREATE ROLE md5 LOGIN REPLICATION PASSWORD 'md5 secret'")
        .unwrap();
    cluster
        .query("CREATE ROLE clear LOGIN REPLICATION PASSWORD 'clear secret'")
        .unwrap();
    cluster
}

fn target(cluster: &ThrowawayCluster, user: &str, password: &str) -> ConnectTarget {
    let conninfo = format!(
        "host={} port={} user={user} password='{password}'",
        cluster.socket_dir().display(),
        cluster.port()
    );
    ConnectTarget::from_conninfo(&conninfo).unwrap()
}

#[tokio::test]
async fn logs_in_with_each_password_method_and_identifies_the_system() {
    let tmp = SharedTempDir::new("tm-proto-").unwrap();
    let cluster = cluster_with_password_logins(&tmp);
    let system_id: u64 = cluster.system_identifier().unwrap();
    for (user, password) in [
        ("scram", "scram secret"),
        ("md5", "md5 secret"),
        ("clear", "clear secret"),
    ] {
        let mut connection = ReplicationConnection::connect(&target(&cluster, user, password))
            .await
            .unwrap();
        assert!(connection.server_version_num >= 150000);
        let identity = connection.identify_system().await.unwrap();
        assert_eq!(identity.system_id, system_id, "{user}");
        assert_eq!(identity.timeline, 1);
        connection.close().await;
    }

    let error = ReplicationConnection::connect(&target(&cluster, "scram", "wrong"))
        .await
        .err()
        .unwrap();
    let server = error
        .downcast_ref::<ServerError>()
        .expect("the server's own error");
    assert_eq!(server.code, "28P01");
    let message = format!("{error:#}");
    assert!(
        message.starts_with(&format!(
            "log in to {}/.s.PGSQL.{} as scram: server says: password authentication failed for user \"scram\" (SQLSTATE 28P01)",
            cluster.socket_dir().display(),
            cluster.port()
        )),
        "{message}"
    );
    assert!(
        !message.contains("wrong"),
        "the password must not appear: {message}"
    );
}

#[tokio::test]
async fn decodes_a_real_base_backup_stream() {
    let tmp = SharedTempDir::new("tm-proto-").unwrap();
    let cluster = cluster_with_password_logins(&tmp);
    let mut connection = ReplicationConnection::connect(&target(&cluster, "scram", "scram secret"))
        .await
        .unwrap();
    let options = BaseBackupOptions {
        label: "protocol test".into(),
        fast_checkpoint: true,
        include_wal: false,
    };
    connection
        .start_query(&options.command(connection.server_version_num).unwrap())
        .await
        .unwrap();
    let mut decoder = BaseBackupDecoder::new(connection.server_version_num);
    let mut events = Vec::new();
    while !decoder.is_done() {
        let message = connection.next_message().await.unwrap();
        events.extend(decoder.feed(message).unwrap());
    }
    let (mut tar, mut manifest, mut archives, mut start, mut end) =
        (Vec::new(), Vec::new(), Vec::new(), None, None);
    for event in events {
        match event {
            BackupEvent::Started { start_lsn, .. } => start = Some(start_lsn),
            BackupEvent::ArchiveStart { name, .. } => archives.push(name),
            BackupEvent::ArchiveData(bytes) => tar.extend_from_slice(&bytes),
            BackupEvent::ManifestData(bytes) => manifest.extend_from_slice(&bytes),
            BackupEvent::Finished { end_lsn, .. } => end = Some(end_lsn),
            _ => {}
        }
    }
    assert_eq!(archives, ["base.tar"]);
    assert!(end.unwrap() > start.unwrap());
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest["PostgreSQL-Backup-Manifest-Version"], 1);
    // The tar's first member is backup_label; its last is global/pg_control.
    assert_eq!(&tar[..12], b"backup_label");
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.last().map(String::as_str), Some("global/pg_control"));
    let listed = manifest["Files"].as_array().unwrap().len();
    assert!(
        listed > 900 && names.len() > listed,
        "{listed} files in the manifest, {} tar entries",
        names.len()
    );
    connection.close().await;
}
