//! Restoring a snapshot to a directory as the `dump.rdb` a stopped Redis starts from
//! (`source restore --to DIR`): every refusal before anything is written, then a verified,
//! durable file that replaces the old one in one rename.
//!
//! A crash at any moment leaves either the old `dump.rdb` or the new one under that name, never
//! part of one: the bytes go to a temporary file beside it (removed by the next run if this one
//! is killed), are checked as they pass, and are fsynced before the rename and the directory's
//! fsync.

use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use super::info::parse_info;
use super::readback::ReadBack;
use super::versions;
use crate::storage::durable;

/// The file a Redis server loads at start (its default `dbfilename`).
pub const DUMP_NAME: &str = "dump.rdb";

/// How long a server on `--port` has to accept and answer `PING`.
const PORT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How much is copied at a time.
const COPY_BUF: usize = 1 << 20;

/// Where and how a snapshot is restored as a `dump.rdb`.
pub struct DirRestore<'a> {
    /// The server's `dir`; must exist.
    pub dir: &'a Path,
    /// Replace an existing `dump.rdb`.
    pub force: bool,
    /// The server's process ID: refused while it lives.
    pub pid: Option<u32>,
    /// The server's port: refused while anything answers there on 127.0.0.1.
    pub port: Option<u16>,
    /// The server that will load the file: refused if it loads only older RDB versions.
    pub check_against: Option<&'a mut redis::Connection>,
}

/// Writes the snapshot read from `rdb` (`len` bytes, trailer `crc64`, RDB `rdb_version`) to
/// `DIR/dump.rdb`, and returns that path once it is durable.
pub fn restore_to_dir(
    rdb: &mut dyn Read,
    len: u64,
    crc64: Option<u64>,
    rdb_version: u32,
    opts: DirRestore,
) -> anyhow::Result<PathBuf> {
    let dir = opts.dir;
    let target = dir.join(DUMP_NAME);
    refuse_unsafe_target(dir, &target, &opts)?;
    if let Some(conn) = opts.check_against {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(conn)
            .context("ask the --check-against server for INFO server")?;
        versions::check_loadable(
            "the --check-against server",
            &parse_info(&info),
            rdb_version,
        )?;
    }
    durable::remove_abandoned(dir, DUMP_NAME);
    let temp = TempFile::create(dir)?;
    write_checked(rdb, len, crc64, rdb_version, &temp)
        .with_context(|| format!("restore the snapshot to {}", target.display()))?;
    temp.put_in_place(&target, opts.force)?;
    Ok(target)
}

/// The refusals that need no reading of the snapshot: a missing directory, a `dump.rdb` there
/// without `--force`, a live `--pid`, an answering `--port`.
fn refuse_unsafe_target(dir: &Path, target: &Path, opts: &DirRestore) -> anyhow::Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!(
            "{} is not a directory: give --to the server's dir",
            dir.display()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => bail!(
            "{} does not exist: create the server's directory first (Tidemark writes only the \
             dump.rdb in it)",
            dir.display()
        ),
        Err(e) => bail!("look at {}: {e}", dir.display()),
    }
    match fs::symlink_metadata(target) {
        Ok(_) if !opts.force => bail!(
            "{} exists: stop its server and give --force to replace it",
            target.display()
        ),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => bail!("look at {}: {e}", target.display()),
    }
    if let Some(pid) = opts.pid {
        refuse_live_pid(pid)?;
    }
    if let Some(port) = opts.port {
        refuse_answering_port(port)?;
    }
    Ok(())
}

/// Refuses while process `pid` exists (signal 0 reaches it, or exists but is not ours to signal).
fn refuse_live_pid(pid: u32) -> anyhow::Result<()> {
    let Some(process) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        bail!("--pid {pid} is not a process ID: give the server's process ID");
    };
    match rustix::process::test_kill_process(process) {
        Err(rustix::io::Errno::SRCH) => Ok(()),
        Ok(()) | Err(rustix::io::Errno::PERM) => bail!(
            "process {pid} is running: stop the Redis server before restoring its dump.rdb \
             (it would overwrite the file at shutdown)"
        ),
        Err(e) => bail!("check whether process {pid} runs: {e}"),
    }
}

/// Refuses while something accepts connections on 127.0.0.1:`port`: a Redis server answers
/// `PING` (or an authentication error); anything else listening is refused too, since it is
/// not known to be stopped.
fn refuse_answering_port(port: u16) -> anyhow::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = match TcpStream::connect_timeout(&addr, PORT_PROBE_TIMEOUT) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(()),
        Err(e) => bail!("check whether a server listens on {addr}: {e}"),
        Ok(stream) => stream,
    };
    let answer = ping(&mut stream).unwrap_or_default();
    if answer.starts_with('+') || answer.starts_with('-') {
        bail!(
            "a Redis server answers on {addr} ({}): stop it before restoring its dump.rdb",
            answer.trim_end()
        );
    }
    bail!("something listens on {addr}: stop the server there before restoring its dump.rdb");
}

/// Sends `PING` and returns the first line of the answer.
fn ping(stream: &mut TcpStream) -> io::Result<String> {
    stream.set_read_timeout(Some(PORT_PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PORT_PROBE_TIMEOUT))?;
    stream.write_all(b"PING\r\n")?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 256 && stream.read(&mut byte)? == 1 {
        line.push(byte[0]);
        if byte[0] == b'\n' {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Copies the snapshot into the temporary file through its check, and fsyncs it.
fn write_checked(
    rdb: &mut dyn Read,
    len: u64,
    crc64: Option<u64>,
    rdb_version: u32,
    temp: &TempFile,
) -> anyhow::Result<()> {
    let mut reader = ReadBack::new(rdb, len, crc64, rdb_version);
    let mut file = &temp.file;
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("read the snapshot at byte {}", reader.done()))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .with_context(|| format!("write {}", temp.path.display()))?;
    }
    reader.finish()?;
    temp.file
        .sync_all()
        .with_context(|| format!("fsync {}", temp.path.display()))
}

/// The temporary file beside `dump.rdb`, removed unless put in place.
struct TempFile {
    path: PathBuf,
    file: File,
    placed: bool,
}

impl TempFile {
    /// Creates it, mode 0600, owned (when we are root) by the directory's owner: the server
    /// that owns its directory must be able to read it, and no one else.
    fn create(dir: &Path) -> anyhow::Result<TempFile> {
        let path = durable::temp_path(dir, DUMP_NAME);
        let file = durable::create_temp(&path, 0o600)
            .with_context(|| format!("create {}", path.display()))?;
        let temp = TempFile {
            path,
            file,
            placed: false,
        };
        if rustix::process::geteuid().is_root() {
            let meta = fs::metadata(dir).with_context(|| format!("look at {}", dir.display()))?;
            std::os::unix::fs::fchown(&temp.file, Some(meta.uid()), Some(meta.gid()))
                .with_context(|| format!("give {} its directory's owner", temp.path.display()))?;
        }
        Ok(temp)
    }

    /// Renames it to `target` (over an existing one only when `replace`) and fsyncs the directory.
    fn put_in_place(mut self, target: &Path, replace: bool) -> anyhow::Result<()> {
        let dir = durable::parent_dir(target);
        if replace {
            fs::rename(&self.path, target).with_context(|| {
                format!("rename {} to {}", self.path.display(), target.display())
            })?;
        } else if !durable::rename_no_replace(&self.path, target)
            .with_context(|| format!("rename {} to {}", self.path.display(), target.display()))?
        {
            bail!(
                "{} appeared while the snapshot was written: give --force to replace it",
                target.display()
            );
        }
        self.placed = true;
        durable::fsync_dir(dir).with_context(|| format!("fsync {}", dir.display()))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.placed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::readback::tests::{sample_rdb, trailer};
    use super::*;
    use std::net::TcpListener;

    fn opts(dir: &Path) -> DirRestore<'_> {
        DirRestore {
            dir,
            force: false,
            pid: None,
            port: None,
            check_against: None,
        }
    }

    fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        entries.sort();
        entries
    }

    fn restore(rdb: &[u8], crc: Option<u64>, o: DirRestore) -> anyhow::Result<PathBuf> {
        restore_to_dir(&mut &rdb[..], rdb.len() as u64, crc, 10, o)
    }

    #[test]
    fn the_dump_is_written_whole_and_alone() {
        let dir = tempfile::tempdir().unwrap();
        let rdb = sample_rdb(10);
        let path = restore(&rdb, Some(trailer(&rdb)), opts(dir.path())).unwrap();
        assert_eq!(path, dir.path().join(DUMP_NAME));
        assert_eq!(listing(dir.path()), vec![(DUMP_NAME.to_owned(), rdb)]);
    }

    #[test]
    fn refusals_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let rdb = sample_rdb(10);
        let crc = Some(trailer(&rdb));
        fs::write(dir.path().join(DUMP_NAME), b"old").unwrap();
        let before = listing(dir.path());

        let exists = restore(&rdb, crc, opts(dir.path())).unwrap_err();
        assert!(exists.to_string().contains("--force"), "{exists}");

        let mut live = opts(dir.path());
        live.force = true;
        live.pid = Some(std::process::id());
        let live = restore(&rdb, crc, live).unwrap_err();
        assert!(live.to_string().contains("is running"), "{live}");

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut answering = opts(dir.path());
        answering.force = true;
        answering.port = Some(listener.local_addr().unwrap().port());
        let answering = restore(&rdb, crc, answering).unwrap_err();
        assert!(answering.to_string().contains("listens on"), "{answering}");

        let not_a_dir = dir.path().join(DUMP_NAME);
        let file = restore(&rdb, crc, opts(&not_a_dir)).unwrap_err();
        assert!(file.to_string().contains("is not a directory"), "{file}");

        let missing = dir.path().join("missing");
        let absent = restore(&rdb, crc, opts(&missing)).unwrap_err();
        assert!(absent.to_string().contains("does not exist"), "{absent}");

        assert_eq!(listing(dir.path()), before);
    }

    #[test]
    fn a_damaged_snapshot_leaves_the_old_dump_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let rdb = sample_rdb(10);
        let crc = Some(trailer(&rdb));
        fs::write(dir.path().join(DUMP_NAME), b"old").unwrap();
        let before = listing(dir.path());
        let mut bad = rdb.clone();
        bad[12] ^= 1;
        let mut forced = opts(dir.path());
        forced.force = true;
        let damaged = restore(&bad, crc, forced).unwrap_err();
        assert!(format!("{damaged:#}").contains("damaged"), "{damaged:#}");
        assert_eq!(listing(dir.path()), before);

        let mut forced = opts(dir.path());
        forced.force = true;
        restore(&rdb, crc, forced).unwrap();
        assert_eq!(listing(dir.path()), vec![(DUMP_NAME.to_owned(), rdb)]);
    }

    #[test]
    fn a_killed_run_s_temporary_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let rdb = sample_rdb(10);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = durable::temp_path(dir.path(), DUMP_NAME)
            .to_string_lossy()
            .replace(&format!(".{}.", std::process::id()), &format!(".{dead}."));
        fs::write(&stale, b"half a dump").unwrap();
        restore(&rdb, Some(trailer(&rdb)), opts(dir.path())).unwrap();
        assert_eq!(listing(dir.path()), vec![(DUMP_NAME.to_owned(), rdb)]);
    }

    #[test]
    fn a_stopped_server_is_no_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let rdb = sample_rdb(10);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut stopped = opts(dir.path());
        stopped.port = Some(port);
        stopped.pid = Some(pid);
        restore(&rdb, Some(trailer(&rdb)), stopped).unwrap();
    }
}
