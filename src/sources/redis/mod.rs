//! Redis as a source: snapshots taken over the replication handshake (as `redis-cli --rdb`
//! does), checked as they stream, and restored to a `dump.rdb` or into a running server.

pub mod endpoint;
pub mod info;
pub mod probe;
pub mod rdb;
pub mod snapshot;
pub mod sync;
pub mod tls;
