//! What `INFO` says about a server, read through the `redis` crate: its version, `run_id`,
//! role and keys per db, for a snapshot's record and for `source check`.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::endpoint::RedisEndpoint;
use super::sync::acl_rules_needed;

/// One db's key counts, as `INFO keyspace` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbKeys {
    pub keys: u64,
    pub expires: u64,
}

/// The fields of one `INFO` section, by name.
pub type InfoFields = BTreeMap<String, String>;

/// Runs `INFO section`; an ACL refusal says which rules the user needs.
pub fn info_section(
    connection: &mut redis::Connection,
    endpoint: &RedisEndpoint,
    section: &str,
) -> anyhow::Result<InfoFields> {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query(connection)
        .map_err(|e| {
            if e.code() == Some("NOPERM") {
                anyhow::anyhow!(
                    "Redis at {} refused INFO to ACL user {} ({e}): a snapshot's user needs {}",
                    endpoint.display(),
                    endpoint.user(),
                    acl_rules_needed(endpoint.user())
                )
            } else if matches!(e.code(), Some("NOAUTH" | "WRONGPASS")) {
                endpoint.connect_error(&e.to_string())
            } else {
                anyhow::Error::new(e).context(format!(
                    "run INFO {section} on Redis at {}",
                    endpoint.display()
                ))
            }
        })?;
    Ok(parse_info(&text))
}

/// `name:value` lines; comments (`# Server`) and blank lines skipped.
pub fn parse_info(text: &str) -> InfoFields {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// `db3:keys=10,expires=2,avg_ttl=0` lines, by db number.
pub fn parse_keyspace(fields: &InfoFields) -> anyhow::Result<BTreeMap<u32, DbKeys>> {
    let mut keys = BTreeMap::new();
    for (name, value) in fields {
        let Some(db) = name.strip_prefix("db").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let counts: BTreeMap<&str, &str> = value
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .collect();
        let count = |what: &str| -> anyhow::Result<u64> {
            counts
                .get(what)
                .with_context(|| format!("INFO keyspace line {name}:{value} has no {what}="))?
                .parse()
                .with_context(|| {
                    format!("INFO keyspace line {name}:{value}: {what} is not a count")
                })
        };
        keys.insert(
            db,
            DbKeys {
                keys: count("keys")?,
                expires: count("expires")?,
            },
        );
    }
    Ok(keys)
}

/// What a snapshot records of the server, read before it starts.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub redis_version: String,
    pub run_id: String,
    /// `master` or `slave`, as `INFO replication` says.
    pub role: String,
    /// Keys per db when the snapshot started (the RDB is from a moment later).
    pub keys: BTreeMap<u32, DbKeys>,
}

impl ServerFacts {
    /// Reads `INFO server`, `replication` and `keyspace`, one at a time (servers before 7.0
    /// take one section per INFO).
    pub fn read(
        connection: &mut redis::Connection,
        endpoint: &RedisEndpoint,
    ) -> anyhow::Result<ServerFacts> {
        let server = info_section(connection, endpoint, "server")?;
        let replication = info_section(connection, endpoint, "replication")?;
        let keyspace = info_section(connection, endpoint, "keyspace")?;
        let field = |fields: &InfoFields, name: &str, section: &str| {
            fields.get(name).cloned().with_context(|| {
                format!(
                    "Redis at {} gave no {name} in INFO {section}: is it Redis?",
                    endpoint.display()
                )
            })
        };
        Ok(ServerFacts {
            redis_version: field(&server, "redis_version", "server")?,
            run_id: field(&server, "run_id", "server")?,
            role: field(&replication, "role", "replication")?,
            keys: parse_keyspace(&keyspace)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_lines_are_counted_per_db() {
        let fields = parse_info(
            "# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=0\r\ndb9:keys=1,expires=0,avg_ttl=0,subexpiry=0\r\n",
        );
        let keys = parse_keyspace(&fields).unwrap();
        assert_eq!(
            keys[&0],
            DbKeys {
                keys: 10,
                expires: 2
            }
        );
        assert_eq!(
            keys[&9],
            DbKeys {
                keys: 1,
                expires: 0
            }
        );
        assert_eq!(keys.len(), 2);
        let bad = parse_info("db1:keys=x,expires=0\r\n");
        assert!(parse_keyspace(&bad).is_err());
    }
}
