//! The Redis workload's ground truth is right: a population is the same from the same seed and
//! covers every type and encoding it claims, and a server a writer stopped at step N holds
//! exactly what `expected_state(seed, keys, N)` computes — which a different N does not.

use std::collections::BTreeSet;
use std::time::Duration;

use testkit::redis_workload::{
    DBS, Writer, committed_seq, expected_state, fill_random, keyspace_state, populate,
};
use testkit::{RedisOptions, RedisServer};

const SEED: u64 = 17;
const KEYS: u64 = 3_000;

fn populated(seed: u64) -> RedisServer {
    let server = RedisServer::start(&RedisOptions::default());
    populate(&mut server.client(), seed, KEYS);
    server
}

#[test]
fn the_same_seed_populates_the_same_keyspace_and_another_seed_does_not() {
    let (one, two, other) = (populated(SEED), populated(SEED), populated(SEED + 1));
    let state = keyspace_state(&mut one.client());
    assert_eq!(state, keyspace_state(&mut two.client()));
    assert_ne!(state.digest, keyspace_state(&mut other.client()).digest);
}

#[test]
fn a_population_has_its_keys_over_three_dbs_with_ttls() {
    let server = populated(SEED);
    let state = keyspace_state(&mut server.client());
    assert_eq!(state.dbs.keys().copied().collect::<Vec<_>>(), DBS.to_vec());
    assert_eq!(state.dbs.values().map(|db| db.keys).sum::<u64>(), KEYS);
    for (db, counts) in &state.dbs {
        assert!(
            counts.expires > 0,
            "db {db} has no key with a TTL: {state:?}"
        );
    }
}

#[test]
fn a_population_has_every_type_in_every_encoding() {
    let server = populated(SEED);
    let mut conn = server.client();
    let mut found = BTreeSet::new();
    for db in DBS {
        let () = redis::cmd("SELECT").arg(db).query(&mut conn).unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
        for key in keys {
            let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
            let encoding: String = redis::cmd("OBJECT")
                .arg("ENCODING")
                .arg(&key)
                .query(&mut conn)
                .unwrap();
            found.insert(format!("{kind}/{encoding}"));
        }
    }
    let expected = [
        "string/int",
        "string/embstr",
        "string/raw",
        "list/quicklist",
        "set/intset",
        "set/hashtable",
        "zset/listpack",
        "zset/skiplist",
        "hash/listpack",
        "hash/hashtable",
        "stream/stream",
    ];
    for kind in expected {
        assert!(found.contains(kind), "no {kind} key among {found:?}");
    }
    // Key i lives in db DBS[i % 3].
    let () = redis::cmd("SELECT")
        .arg(DBS[508 % 3])
        .query(&mut conn)
        .unwrap();
    let largest: usize = redis::cmd("STRLEN").arg("p:508").query(&mut conn).unwrap();
    assert_eq!(largest, 100 << 10, "p:508 is not the ~100 KiB string");
}

#[test]
fn a_writer_stopped_at_step_n_leaves_the_state_expected_for_n_and_not_for_n_minus_one() {
    let server = populated(SEED);
    let writer = Writer::start(&server.url(), None, SEED);
    writer.wait_for(300, Duration::from_secs(60));
    let n = writer.stop();
    let mut conn = server.client();
    assert_eq!(committed_seq(&mut conn), n);
    let state = keyspace_state(&mut conn);
    assert_eq!(state, expected_state(SEED, KEYS, n), "after {n} steps");
    assert_ne!(state.digest, expected_state(SEED, KEYS, n - 1).digest);
}

#[test]
fn a_writer_authenticates_with_the_password_it_is_given() {
    let server = RedisServer::start(&RedisOptions {
        requirepass: Some("writer-secret".to_string()),
        ..RedisOptions::default()
    });
    let writer = Writer::start(&server.url(), server.password(), SEED);
    writer.wait_for(10, Duration::from_secs(60));
    let n = writer.stop();
    assert_eq!(committed_seq(&mut server.client()), n);
}

#[test]
fn fill_random_writes_about_the_bytes_asked_for() {
    let server = RedisServer::start(&RedisOptions::default());
    let mut conn = server.client();
    fill_random(&mut conn, 4 << 20, SEED);
    let info: String = redis::cmd("INFO").arg("memory").query(&mut conn).unwrap();
    let used: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("INFO memory has used_memory");
    // Values of 4 MiB, with the keys' and the structures' overhead beside them.
    assert!(
        (4 << 20..64 << 20).contains(&used),
        "used_memory {used} after filling 4 MiB"
    );
}
