//! Restoring a snapshot into a running Redis (`source restore --into URL`): the target is made
//! a replica of a primary Tidemark serves, loads the snapshot by a full resynchronisation (its
//! own loader: every type, module data and function), and is made a primary again.
//!
//! Every refusal comes before the target changes: a replica (re-pointing it at its old primary
//! afterwards would wipe the restore), a target holding keys without `--flush` (a full sync
//! replaces its whole dataset), a snapshot newer than its RDB loader. Once `REPLICAOF` is sent,
//! any failure sends `REPLICAOF NO ONE` and says the target may be empty or partly loaded.
//! The target needs no `masterauth`: the primary accepts any `AUTH`.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::info::{DbKeys, InfoFields, parse_info, parse_keyspace};
use super::primary::{Offer, Primary, Serving};
use super::versions;

/// How often the target's state is asked for while it syncs and loads.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// How often progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The slowest transfer and load rate allowed for before giving up: the wait for a snapshot
/// of `len` bytes is `timeout + len / LOAD_RATE`.
const LOAD_RATE: u64 = 4 << 20;

/// How a snapshot is restored into a running server.
pub struct IntoRestore {
    /// Replace the keys the target holds (refused without).
    pub flush: bool,
    /// Where the primary listens for the target (port 0: any free port).
    pub listen: SocketAddr,
    /// The host the target connects to, when not the listen address (needed for `0.0.0.0`).
    pub advertise: Option<String>,
    /// The bound on each step (connecting, each command); the wait for the load adds time
    /// for the snapshot's size.
    pub timeout: Duration,
}

/// The target once restored.
#[derive(Debug)]
pub struct IntoOutcome {
    /// Keys (and keys with a TTL) per database number, from the target's `INFO keyspace`.
    pub keys: BTreeMap<u32, DbKeys>,
}

/// Loads the snapshot read from `rdb` (`len` bytes of RDB `rdb_version`, announced at
/// `repl_offset`) into `target`, named `target_display` in messages.
pub fn restore_into(
    target: &mut redis::Connection,
    target_display: &str,
    rdb: Box<dyn Read + Send>,
    len: u64,
    rdb_version: u32,
    repl_offset: u64,
    opts: &IntoRestore,
) -> anyhow::Result<IntoOutcome> {
    let fail = |e: anyhow::Error| e.context(format!("restore the snapshot into {target_display}"));
    target
        .set_read_timeout(Some(opts.timeout))
        .and_then(|()| target.set_write_timeout(Some(opts.timeout)))
        .map_err(|e| fail(e.into()))?;
    refuse_unfit_target(target, target_display, rdb_version, opts).map_err(fail)?;
    let host = advertised_host(opts).map_err(fail)?;
    let primary = Primary::bind(opts.listen).map_err(fail)?;
    let port = primary.local_addr().map_err(fail)?.port();
    let offer = Offer {
        len,
        rdb_version,
        repl_offset,
        accept_timeout: opts.timeout,
        io_timeout: opts.timeout,
    };
    let serving = primary.serve(rdb, offer);
    let replicaof: redis::RedisResult<()> =
        redis::cmd("REPLICAOF").arg(&host).arg(port).query(target);
    match replicaof {
        Ok(()) => {}
        // The server answered with a refusal (an ACL without +replicaof, a renamed command).
        Err(e) if e.code().is_some() => {
            let _ = serving.stop();
            return Err(fail(anyhow::Error::new(e).context(format!(
                "tell it REPLICAOF {host} {port} (its ACL user needs +replicaof +info); it is \
                 unchanged"
            ))));
        }
        // No answer: the command may have taken effect.
        Err(e) => {
            let e = anyhow::Error::new(e).context(format!("tell it REPLICAOF {host} {port}"));
            return Err(fail(abandon(target, serving, e)));
        }
    }
    tracing::info!("{target_display} replicates from {host}:{port}: serving {len} bytes");
    match wait_loaded(target, &serving, len, opts.timeout) {
        Ok(()) => finish(target, target_display, serving).map_err(fail),
        Err(e) => Err(fail(abandon(target, serving, e))),
    }
}

/// The refusals: a replica, keys without `--flush`, a snapshot newer than the target loads.
fn refuse_unfit_target(
    target: &mut redis::Connection,
    display: &str,
    rdb_version: u32,
    opts: &IntoRestore,
) -> anyhow::Result<()> {
    let replication = info(target, "replication")?;
    if field(&replication, "role") == Some("slave") {
        bail!(
            "{display} is a replica of {}:{}; restore into a primary (REPLICAOF NO ONE on it \
             first, or restore into its primary)",
            field(&replication, "master_host").unwrap_or("?"),
            field(&replication, "master_port").unwrap_or("?")
        );
    }
    let keys = parse_keyspace(&info(target, "keyspace")?)?;
    let total: u64 = keys.values().map(|db| db.keys).sum();
    if total > 0 && !opts.flush {
        let dbs: Vec<String> = keys
            .iter()
            .map(|(db, n)| format!("db{db}: {}", n.keys))
            .collect();
        bail!(
            "{display} holds {total} keys ({}); the restore replaces them all: give --flush to \
             allow it",
            dbs.join(", ")
        );
    }
    versions::check_loadable(display, &info(target, "server")?, rdb_version)
}

/// The host the target is told to connect to.
fn advertised_host(opts: &IntoRestore) -> anyhow::Result<String> {
    if let Some(host) = &opts.advertise {
        return Ok(host.clone());
    }
    if opts.listen.ip().is_unspecified() {
        bail!(
            "--listen {} listens on every address: give --advertise HOST, the address the \
             target reaches this host at",
            opts.listen
        );
    }
    Ok(opts.listen.ip().to_string())
}

/// Waits until the target has loaded the whole snapshot and its link to us is up, bounded by
/// `timeout` plus the time the snapshot's size allows at the slowest rate.
fn wait_loaded(
    target: &mut redis::Connection,
    serving: &Serving,
    len: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let allowed = timeout + Duration::from_secs(len / LOAD_RATE);
    let start = Instant::now();
    let mut last_progress = start;
    loop {
        if serving.is_finished() {
            bail!("the replication primary stopped before the target had loaded the snapshot");
        }
        let replication = info(target, "replication")?;
        let persistence = info(target, "persistence")?;
        let link_up = field(&replication, "master_link_status") == Some("up");
        let syncing = field(&replication, "master_sync_in_progress") != Some("0");
        let loading = field(&persistence, "loading") != Some("0");
        if serving.served() && link_up && !syncing && !loading {
            return Ok(());
        }
        if start.elapsed() >= allowed {
            bail!(
                "the target had not loaded the snapshot after {}s ({} of {len} bytes sent, \
                 loading: {loading}): its log says why",
                allowed.as_secs(),
                serving.sent()
            );
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            tracing::info!(
                "{} of {len} bytes sent; the target is {}",
                serving.sent(),
                if loading { "loading" } else { "receiving" }
            );
            last_progress = Instant::now();
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Makes the loaded target a primary again and reads its keys.
fn finish(
    target: &mut redis::Connection,
    display: &str,
    serving: Serving,
) -> anyhow::Result<IntoOutcome> {
    serving.request_stop();
    let detached: redis::RedisResult<()> =
        redis::cmd("REPLICAOF").arg("NO").arg("ONE").query(target);
    let served = serving.stop();
    detached.with_context(|| {
        format!("tell {display} REPLICAOF NO ONE after it loaded the snapshot: it still replicates from a primary that is gone; send it REPLICAOF NO ONE")
    })?;
    served?;
    let replication = info(target, "replication")?;
    if field(&replication, "role") != Some("master") {
        bail!(
            "{display} reports role {:?} after REPLICAOF NO ONE: send it REPLICAOF NO ONE",
            field(&replication, "role").unwrap_or("?")
        );
    }
    Ok(IntoOutcome {
        keys: parse_keyspace(&info(target, "keyspace")?)?,
    })
}

/// After a failure once `REPLICAOF` was sent: stops serving, makes the target a primary again
/// (retrying while it is busy loading), and says what state it may be in. The primary's own
/// error, when it has one, is the cause: the wait only saw that it stopped.
fn abandon(
    target: &mut redis::Connection,
    serving: Serving,
    cause: anyhow::Error,
) -> anyhow::Error {
    serving.request_stop();
    let mut detached: redis::RedisResult<()> = Ok(());
    for _ in 0..10 {
        detached = redis::cmd("REPLICAOF").arg("NO").arg("ONE").query(target);
        match &detached {
            Err(e) if e.code() == Some("LOADING") => std::thread::sleep(Duration::from_secs(1)),
            _ => break,
        }
    }
    let cause = serving.stop().err().unwrap_or(cause);
    match detached {
        Ok(()) => cause.context(
            "REPLICAOF NO ONE sent: the target is a primary again but may be empty or partly \
             loaded",
        ),
        Err(e) => cause.context(format!(
            "REPLICAOF NO ONE failed too ({e}): the target may still replicate from a primary \
             that is gone, and may be empty or partly loaded; send it REPLICAOF NO ONE"
        )),
    }
}

/// One section of `INFO`, as fields.
fn info(target: &mut redis::Connection, section: &str) -> anyhow::Result<InfoFields> {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query(target)
        .with_context(|| format!("ask for INFO {section}"))?;
    Ok(parse_info(&text))
}

/// A field of an `INFO` section.
fn field<'a>(info: &'a InfoFields, name: &str) -> Option<&'a str> {
    info.get(name).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_every_address_listener_needs_an_advertised_host() {
        let mut opts = IntoRestore {
            flush: false,
            listen: "0.0.0.0:0".parse().unwrap(),
            advertise: None,
            timeout: Duration::from_secs(1),
        };
        assert!(
            advertised_host(&opts)
                .unwrap_err()
                .to_string()
                .contains("--advertise")
        );
        opts.advertise = Some("backup.example".to_owned());
        assert_eq!(advertised_host(&opts).unwrap(), "backup.example");
        opts.advertise = None;
        opts.listen = "127.0.0.1:0".parse().unwrap();
        assert_eq!(advertised_host(&opts).unwrap(), "127.0.0.1");
    }
}
