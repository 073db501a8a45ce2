//! A Redis workload whose keyspace at any step is known exactly: a deterministic population
//! (every type and encoding, several dbs, TTLs), a writer whose every step is one transaction
//! that also counts itself in `__tm_seq`, and the ground truth — the state a server must have
//! once it holds the population and steps 1..=N — computed on a fresh server. A snapshot that
//! holds `__tm_seq = N` restores correctly iff the restored server's state equals
//! `expected_state(seed, keys, N)`. Also a bench dataset of a given size (`fill_random`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::{Connection, IntoConnectionInfo, Pipeline};

use crate::servers::redis::{RedisOptions, RedisServer};

/// The key every writer step increments, in db 0: the last step a keyspace holds.
pub const SEQ_KEY: &str = "__tm_seq";

/// The dbs the population spreads over.
pub const DBS: [u32; 3] = [0, 3, 9];

/// 2100-01-01T00:00:00Z in milliseconds: TTLs end after it, so none expires during a test and
/// none depends on when it was set.
const YEAR_2100_MS: u64 = 4_102_444_800_000;

/// How many commands one pipelined round trip carries.
const PIPELINE_COMMANDS: usize = 4_000;

/// How many keys of each writer family there are (`w:s:0` … `w:s:199`): few enough that steps
/// keep changing, deleting and re-creating the same keys.
const WRITER_KEYS: u64 = 200;

/// The writer rests 1 ms every this many steps, so it leaves the two-core machine's CPU to the
/// server and the program under test.
const STEPS_PER_REST: u64 = 10;

/// What a keyspace holds, as far as a restore must reproduce it: `DEBUG DIGEST` (every key,
/// value and the presence of a TTL, in every db) and the keys and keys with a TTL of each db.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyspaceState {
    pub digest: String,
    pub dbs: BTreeMap<u32, DbCounts>,
}

/// One db's line of `INFO keyspace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbCounts {
    pub keys: u64,
    pub expires: u64,
}

/// Writes the population of `seed`: `keys` keys over dbs 0, 3 and 9, of every type and
/// encoding (see [`population_key`]), pipelined. Leaves `conn` on db 0.
pub fn populate(conn: &mut Connection, seed: u64, keys: u64) {
    for (slot, db) in DBS.iter().enumerate() {
        let mut batch = Batch::new(conn);
        batch.pipe.cmd("SELECT").arg(*db).ignore();
        for i in (slot as u64..keys).step_by(DBS.len()) {
            population_key(&mut batch.pipe, seed, i);
            batch.flush_if_full();
        }
        batch.flush();
    }
    select(conn, 0);
}

/// Appends the commands writing key `i` of the population. Kinds rotate with `i` (ten kinds,
/// so each db gets each); ten keys in every thousand are large variants (quicklist, hashtable
/// and skiplist encodings, long streams); one in 10,000 strings is ~100 KiB; one key in 13 gets
/// a TTL in 2100.
fn population_key(pipe: &mut Pipeline, seed: u64, i: u64) {
    let mut rng = Rng::new(seed, i);
    let large = (i / 10) % 100 == 50;
    let (key, n) = (format!("p:{i}"), if large { 600 } else { 1 + i % 8 });
    match i % 10 {
        0 => pipe.cmd("SET").arg(&key).arg(rng.text(8, 40)),
        1 => pipe.cmd("SET").arg(&key).arg(rng.next() as i64 >> 8),
        2 => pipe
            .cmd("RPUSH")
            .arg(&key)
            .arg(rng.texts(2 * n as usize, 4, 60)),
        3 => pipe
            .cmd("SADD")
            .arg(&key)
            .arg((0..n).map(|_| rng.below(1 << 20)).collect::<Vec<_>>()),
        4 => pipe.cmd("SADD").arg(&key).arg(rng.texts(n as usize, 4, 30)),
        5 => {
            let members: Vec<(f64, String)> = (0..n)
                .map(|_| (rng.below(1 << 30) as f64 / 8.0, rng.text(4, 30)))
                .collect();
            pipe.cmd("ZADD").arg(&key).arg(members)
        }
        6 => {
            let fields: Vec<(String, String)> =
                (0..n).map(|f| (format!("f{f}"), rng.text(1, 50))).collect();
            pipe.cmd("HSET").arg(&key).arg(fields)
        }
        7 => stream(pipe, &key, &mut rng, n),
        8 => {
            let len = if i % 10_000 == 508 {
                100 << 10
            } else {
                100 + i % 300
            };
            pipe.cmd("SET")
                .arg(&key)
                .arg(rng.text(len as usize, len as usize))
        }
        _ => pipe.cmd("SET").arg(&key).arg(rng.next()),
    }
    .ignore();
    if i.is_multiple_of(13) {
        pipe.cmd("PEXPIREAT")
            .arg(&key)
            .arg(YEAR_2100_MS + i)
            .ignore();
    }
}

/// A stream of `entries` entries with explicit ids (`1-1`, `1-2`, …), one consumer group with
/// one consumer (nothing read: delivery times are now, and not the workload's to fix).
fn stream<'p>(pipe: &'p mut Pipeline, key: &str, rng: &mut Rng, entries: u64) -> &'p mut Pipeline {
    for entry in 1..=entries {
        pipe.cmd("XADD")
            .arg(key)
            .arg(format!("1-{entry}"))
            .arg("field")
            .arg(rng.text(4, 40))
            .arg("n")
            .arg(entry)
            .ignore();
    }
    pipe.cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg("readers")
        .arg("0")
        .ignore();
    pipe.cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(key)
        .arg("readers")
        .arg("reader-1")
}

/// Appends writer step `seq`'s commands: its operation (see [`step_op`]) and `INCR __tm_seq`,
/// whose reply is the only one kept.
fn add_step(pipe: &mut Pipeline, seed: u64, seq: u64) {
    step_op(pipe, seed, seq);
    pipe.cmd("INCR").arg(SEQ_KEY);
}

/// Appends the operation of writer step `seq` on db 0: deterministic from (`seed`, `seq`),
/// nothing random or time-dependent on the server's side, and never an error (each family of
/// keys has one type; DEL and PEXPIREAT take any).
fn step_op(pipe: &mut Pipeline, seed: u64, seq: u64) {
    let mut rng = Rng::new(seed ^ 0x5772_6974_6572, seq);
    let n = rng.below(WRITER_KEYS);
    let key = |family: &str| format!("w:{family}:{n}");
    let member = format!("m{}", rng.below(50));
    match rng.below(14) {
        0 => pipe.cmd("SET").arg(key("s")).arg(rng.text(1, 80)),
        1 => pipe.cmd("APPEND").arg(key("s")).arg(format!("+{seq}")),
        2 => pipe
            .cmd("INCRBY")
            .arg(key("i"))
            .arg(rng.below(2_000) as i64 - 1_000),
        3 => pipe.cmd("LPUSH").arg(key("l")).arg(rng.text(1, 40)),
        4 => pipe.cmd("RPOP").arg(key("l")),
        5 => pipe.cmd("SADD").arg(key("t")).arg(&member),
        6 => pipe.cmd("SREM").arg(key("t")).arg(&member),
        7 => pipe
            .cmd("ZADD")
            .arg(key("z"))
            .arg(rng.below(1_000) as f64 / 4.0)
            .arg(&member),
        8 => pipe
            .cmd("ZINCRBY")
            .arg(key("z"))
            .arg(rng.below(100) as f64 / 2.0)
            .arg(&member),
        9 => pipe
            .cmd("HSET")
            .arg(key("h"))
            .arg(&member)
            .arg(rng.text(1, 40)),
        10 => pipe.cmd("HDEL").arg(key("h")).arg(&member),
        // Ids grow with the step, so each exceeds every id the stream has had.
        11 => pipe
            .cmd("XADD")
            .arg(key("x"))
            .arg(format!("{seq}-1"))
            .arg("v")
            .arg(rng.text(1, 40)),
        12 => pipe.cmd("DEL").arg(key(any_family(&mut rng))),
        _ => pipe
            .cmd("PEXPIREAT")
            .arg(key(any_family(&mut rng)))
            .arg(YEAR_2100_MS + seq),
    }
    .ignore();
}

fn any_family(rng: &mut Rng) -> &'static str {
    ["s", "i", "l", "t", "z", "h", "x"][rng.below(7) as usize]
}

/// Applies writer steps `from..=to` of `seed` to the server behind `conn` (db 0), pipelined:
/// on a server nobody else writes to, the same as the writer's transactions one by one.
pub fn apply_steps(conn: &mut Connection, seed: u64, from: u64, to: u64) {
    select(conn, 0);
    let mut batch = Batch::new(conn);
    for seq in from..=to {
        add_step(&mut batch.pipe, seed, seq);
        batch.pipe.ignore();
        batch.flush_if_full();
    }
    batch.flush();
}

/// The last writer step the server behind `conn` holds (`__tm_seq` in db 0; 0 when none).
/// Leaves `conn` on db 0.
pub fn committed_seq(conn: &mut Connection) -> u64 {
    select(conn, 0);
    let seq: Option<u64> = redis::cmd("GET")
        .arg(SEQ_KEY)
        .query(conn)
        .expect("GET __tm_seq");
    seq.unwrap_or(0)
}

/// The state of the keyspace behind `conn`.
pub fn keyspace_state(conn: &mut Connection) -> KeyspaceState {
    let digest: String = redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(conn)
        .expect("DEBUG DIGEST (is enable-debug-command on?)");
    let info: String = redis::cmd("INFO")
        .arg("keyspace")
        .query(conn)
        .expect("INFO keyspace");
    KeyspaceState {
        digest,
        dbs: parse_keyspace(&info),
    }
}

/// The keys and expires of each db an `INFO keyspace` reply lists (`db3:keys=5,expires=1,…`).
fn parse_keyspace(info: &str) -> BTreeMap<u32, DbCounts> {
    info.lines()
        .filter_map(|line| {
            let (db, fields) = line.trim().strip_prefix("db")?.split_once(':')?;
            let field = |name: &str| {
                fields
                    .split(',')
                    .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|value| value.parse().ok())
            };
            Some((
                db.parse().ok()?,
                DbCounts {
                    keys: field("keys")?,
                    expires: field("expires")?,
                },
            ))
        })
        .collect()
}

/// The state a server must have once it holds the population of (`seed`, `keys`) and writer
/// steps 1..=`seq`: built on a fresh server of its own, which is stopped afterwards.
pub fn expected_state(seed: u64, keys: u64, seq: u64) -> KeyspaceState {
    GroundTruth::prepare(seed, keys).state_at(seq)
}

/// [`expected_state`] in two halves, so a test can populate the reference server (the slow
/// part) while the program under test runs, before it knows which step it will need.
pub struct GroundTruth {
    server: RedisServer,
    seed: u64,
}

impl GroundTruth {
    /// A fresh server holding the population of (`seed`, `keys`).
    pub fn prepare(seed: u64, keys: u64) -> GroundTruth {
        let server = RedisServer::start(&RedisOptions::default());
        populate(&mut server.client(), seed, keys);
        GroundTruth { server, seed }
    }

    /// The state once writer steps 1..=`seq` are applied too; the server is stopped.
    pub fn state_at(mut self, seq: u64) -> KeyspaceState {
        let mut conn = self.server.client();
        apply_steps(&mut conn, self.seed, 1, seq);
        let state = keyspace_state(&mut conn);
        drop(conn);
        self.server.stop();
        state
    }
}

/// A thread writing steps 1, 2, … of a seed, each `MULTI; <op>; INCR __tm_seq; EXEC` in db 0.
pub struct Writer {
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<u64, String>>>,
}

impl Writer {
    /// Starts writing to the server at `url` (`redis://host:port/`), authenticated with
    /// `password` as the default user when given. The first step is 1: the server must not
    /// hold `__tm_seq` yet.
    pub fn start(url: &str, password: Option<&str>, seed: u64) -> Writer {
        let info = url
            .into_connection_info()
            .unwrap_or_else(|e| panic!("writer: {url} is not a Redis URL: {e}"));
        let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(password) = password {
            settings = settings.set_password(password);
        }
        let mut conn = redis::Client::open(info.set_redis_settings(settings))
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("writer: connect to {url}: {e}"));
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("set a read timeout");
        assert_eq!(
            committed_seq(&mut conn),
            0,
            "writer: {url} already holds {SEQ_KEY}"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, committed) = (stop.clone(), committed.clone());
            std::thread::spawn(move || write_steps(&mut conn, seed, &stop, &committed))
        };
        Writer {
            stop,
            committed,
            thread: Some(thread),
        }
    }

    /// The last step committed so far.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    /// Waits (at most `timeout`) until step `seq` has committed.
    pub fn wait_for(&self, seq: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.committed() < seq {
            assert!(
                Instant::now() < deadline,
                "the writer committed {} steps in {timeout:?}, not {seq}",
                self.committed()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops writing; returns the last step committed. Panics if the writer failed.
    pub fn stop(mut self) -> u64 {
        self.finish()
            .unwrap_or_else(|e| panic!("the Redis writer failed: {e}"))
    }

    fn finish(&mut self) -> Result<u64, String> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err("its thread panicked".to_string())),
            None => Ok(self.committed()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The writer's loop: one transaction per step until told to stop or a step fails.
fn write_steps(
    conn: &mut Connection,
    seed: u64,
    stop: &AtomicBool,
    committed: &AtomicU64,
) -> Result<u64, String> {
    let mut seq = 0;
    while !stop.load(Ordering::SeqCst) {
        let mut pipe = redis::pipe();
        pipe.atomic();
        add_step(&mut pipe, seed, seq + 1);
        let (counted,): (u64,) = pipe
            .query(conn)
            .map_err(|e| format!("step {}: {e}", seq + 1))?;
        if counted != seq + 1 {
            return Err(format!(
                "step {} made {SEQ_KEY} {counted}: someone else writes it",
                seq + 1
            ));
        }
        seq += 1;
        committed.store(seq, Ordering::SeqCst);
        if seq.is_multiple_of(STEPS_PER_REST) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(seq)
}

/// Fills db 0 with about `bytes` bytes of values (strings of 100 B to 16 KiB, and hashes,
/// lists, sets and sorted sets of 20 elements), keys `b:0`, `b:1`, …, values of random
/// letters and digits, which LZF (on in RDB files) cannot shrink much. Pipelined. Returns once
/// the server has finished rehashing db 0 (see [`wait_for_rehashing`]).
pub fn fill_random(conn: &mut Connection, bytes: u64, seed: u64) {
    select(conn, 0);
    let mut batch = Batch::new(conn);
    let (mut written, mut i) = (0u64, 0u64);
    while written < bytes {
        let mut rng = Rng::new(seed ^ 0x62_656e_6368, i);
        let key = format!("b:{i}");
        let elements = |rng: &mut Rng| rng.texts(20, 20, 200);
        let values: Vec<String> = match i % 6 {
            0 | 1 => {
                let value = rng.text(100, 16 << 10);
                batch.pipe.cmd("SET").arg(&key).arg(&value);
                vec![value]
            }
            2 => {
                let values = elements(&mut rng);
                let fields: Vec<(usize, &String)> = values.iter().enumerate().collect();
                batch.pipe.cmd("HSET").arg(&key).arg(fields);
                values
            }
            3 => {
                let values = elements(&mut rng);
                batch.pipe.cmd("RPUSH").arg(&key).arg(&values);
                values
            }
            4 => {
                let values = elements(&mut rng);
                batch.pipe.cmd("SADD").arg(&key).arg(&values);
                values
            }
            _ => {
                let values = elements(&mut rng);
                let members: Vec<(u64, &String)> =
                    values.iter().map(|v| (rng.below(1 << 40), v)).collect();
                batch.pipe.cmd("ZADD").arg(&key).arg(members);
                values
            }
        };
        batch.pipe.ignore();
        written += values.iter().map(|v| v.len() as u64).sum::<u64>();
        batch.pending_bytes += values.iter().map(String::len).sum::<usize>();
        batch.flush_if_full();
        i += 1;
    }
    batch.flush();
    wait_for_rehashing(conn, Duration::from_secs(120));
}

/// Waits (at most `limit`) until db 0's key table is not being rehashed, as `DEBUG HTSTATS 0`
/// says (the test servers allow DEBUG from loopback). A fork saves keys in the order of the
/// table(s) it finds; the server rehashes a grown table a little at a time, so two snapshots
/// of unchanged data taken while that goes on list the keys in different orders, and differ
/// nearly everywhere.
pub fn wait_for_rehashing(conn: &mut Connection, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let stats: String = redis::cmd("DEBUG")
            .arg("HTSTATS")
            .arg(0)
            .query(conn)
            .unwrap_or_else(|e| panic!("DEBUG HTSTATS 0: {e}"));
        if !stats.contains("rehashing target") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "db 0 was still being rehashed after {limit:?}: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn select(conn: &mut Connection, db: u32) {
    let () = redis::cmd("SELECT")
        .arg(db)
        .query(conn)
        .unwrap_or_else(|e| panic!("SELECT {db}: {e}"));
}

/// Commands gathered for one pipelined round trip.
struct Batch<'c> {
    conn: &'c mut Connection,
    pipe: Pipeline,
    /// Value bytes gathered, for batches of large values.
    pending_bytes: usize,
}

impl<'c> Batch<'c> {
    fn new(conn: &'c mut Connection) -> Batch<'c> {
        Batch {
            conn,
            pipe: redis::pipe(),
            pending_bytes: 0,
        }
    }

    fn flush_if_full(&mut self) {
        if self.pipe.len() >= PIPELINE_COMMANDS || self.pending_bytes >= 8 << 20 {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.pipe.is_empty() {
            self.pipe.exec(self.conn).unwrap_or_else(|e| {
                panic!("write a pipeline of {} commands: {e}", self.pipe.len())
            });
            self.pipe.clear();
            self.pending_bytes = 0;
        }
    }
}

/// SplitMix64 seeded from a seed and a stream number (a key's index, a step): deterministic
/// values without a dependency, each key's independent of how the work is batched.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Letters and digits, between `min` and `max` of them (eight from each number drawn).
    fn text(&mut self, min: usize, max: usize) -> String {
        const ALPHABET: &[u8; 62] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let len = min + self.below((max - min + 1) as u64) as usize;
        let mut text = String::with_capacity(len + 8);
        while text.len() < len {
            let bytes = self.next().to_le_bytes();
            text.extend(bytes.iter().map(|&b| ALPHABET[b as usize % 62] as char));
        }
        text.truncate(len);
        text
    }

    fn texts(&mut self, count: usize, min: usize, max: usize) -> Vec<String> {
        (0..count).map(|_| self.text(min, max)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_keyspace_lines_give_each_db_its_counts() {
        let info =
            "# Keyspace\r\ndb0:keys=12,expires=3,avg_ttl=0\r\ndb9:keys=1,expires=0,avg_ttl=0\r\n";
        let dbs = parse_keyspace(info);
        assert_eq!(
            dbs,
            BTreeMap::from([
                (
                    0,
                    DbCounts {
                        keys: 12,
                        expires: 3
                    }
                ),
                (
                    9,
                    DbCounts {
                        keys: 1,
                        expires: 0
                    }
                ),
            ])
        );
    }

    #[test]
    fn the_same_seed_and_stream_give_the_same_values_and_others_differ() {
        let text = |seed, stream| Rng::new(seed, stream).text(20, 20);
        assert_eq!(text(1, 2), text(1, 2));
        assert_ne!(text(1, 2), text(1, 3));
        assert_ne!(text(1, 2), text(2, 2));
    }
}
