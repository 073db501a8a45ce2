//! `source check` for Redis: logs in, reads what the server is (version, role, memory), and
//! finds whether the user may run what a snapshot needs (SYNC, REPLCONF, INFO), saying what
//! was checked and what could not be.

use anyhow::bail;

use super::endpoint::RedisEndpoint;
use super::info::info_section;
use super::sync::acl_rules_needed;

/// One line of the report `source check` prints: what was looked at, and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeLine {
    pub what: String,
    pub found: String,
}

impl ProbeLine {
    fn new(what: &str, found: String) -> ProbeLine {
        ProbeLine {
            what: what.to_owned(),
            found,
        }
    }
}

/// The commands a snapshot runs, with the arguments `ACL DRYRUN` is asked about.
const NEEDED: [&[&str]; 3] = [&["sync"], &["replconf", "capa", "eof"], &["info", "server"]];

/// Checks that a snapshot of `endpoint` can be taken, short of taking one: an error when it
/// cannot (with the ACL rules the user needs), else the lines to print.
pub fn probe(endpoint: &RedisEndpoint) -> anyhow::Result<Vec<ProbeLine>> {
    let mut connection = endpoint.connection()?;
    let mut lines = vec![ProbeLine::new(
        "login",
        format!(
            "{} as user {}: logged in",
            endpoint.display(),
            endpoint.user()
        ),
    )];
    let server = info_section(&mut connection, endpoint, "server")?;
    let replication = info_section(&mut connection, endpoint, "replication")?;
    let memory = info_section(&mut connection, endpoint, "memory")?;
    let get = |fields: &super::info::InfoFields, name: &str| {
        fields.get(name).cloned().unwrap_or_else(|| "?".to_owned())
    };
    lines.push(ProbeLine::new(
        "server",
        format!(
            "Redis {}, role {}, used memory {} (run_id {})",
            get(&server, "redis_version"),
            get(&replication, "role"),
            get(&memory, "used_memory_human"),
            get(&server, "run_id")
        ),
    ));
    lines.push(permissions(&mut connection, endpoint)?);
    Ok(lines)
}

/// Whether the user may run SYNC, REPLCONF and INFO: asked of `ACL DRYRUN` (Redis 7.0+) when
/// the user may run it; else REPLCONF is run for real (harmless on an ordinary connection),
/// INFO has just run, and SYNC is left unchecked (running it would start a BGSAVE).
fn permissions(
    connection: &mut redis::Connection,
    endpoint: &RedisEndpoint,
) -> anyhow::Result<ProbeLine> {
    let user = endpoint.user();
    let mut denied = Vec::new();
    let mut dryrun_error = None;
    for command in NEEDED {
        let mut dryrun = redis::cmd("ACL");
        dryrun.arg("DRYRUN").arg(user).arg(command);
        match dryrun.query::<redis::Value>(connection) {
            Ok(redis::Value::Okay) => {}
            Ok(redis::Value::SimpleString(text)) if text == "OK" => {}
            Ok(other) => denied.push(format!("{}: {}", command[0], value_text(&other))),
            Err(e) => {
                dryrun_error = Some(e.to_string());
                break;
            }
        }
    }
    if !denied.is_empty() {
        bail!(
            "ACL user {user} on Redis at {} may not run what a snapshot needs ({}): it needs {}",
            endpoint.display(),
            denied.join("; "),
            acl_rules_needed(user)
        );
    }
    let Some(why) = dryrun_error else {
        return Ok(ProbeLine::new(
            "permissions",
            format!("ACL DRYRUN says user {user} may run SYNC, REPLCONF and INFO"),
        ));
    };
    let replconf: redis::RedisResult<()> = redis::cmd("REPLCONF")
        .arg("capa")
        .arg("eof")
        .query(connection);
    if let Err(e) = replconf {
        if e.code() == Some("NOPERM") {
            bail!(
                "Redis at {} refused REPLCONF to ACL user {user} ({e}): a snapshot's user needs {}",
                endpoint.display(),
                acl_rules_needed(user)
            );
        }
        tracing::warn!(
            "Redis at {} refused REPLCONF capa eof: {e}; a snapshot goes on without it",
            endpoint.display()
        );
    }
    Ok(ProbeLine::new(
        "permissions",
        format!(
            "INFO and REPLCONF ran; SYNC not checked: ACL DRYRUN is not available to user {user} ({why}) and a real SYNC would start a snapshot; it needs {}",
            acl_rules_needed(user)
        ),
    ))
}

fn value_text(value: &redis::Value) -> String {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        redis::Value::SimpleString(text) => text.clone(),
        other => format!("{other:?}"),
    }
}
