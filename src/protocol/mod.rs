//! The replication connection, on `postgres-protocol`'s message codecs: where to connect
//! (`conninfo`), TLS as `sslmode` asks (`tls`), authentication (trust, password, md5, SCRAM-SHA-256), simple queries such as
//! IDENTIFY_SYSTEM, and the BASE_BACKUP stream (`base_backup`, which decodes without I/O).
//!
//! Upstream tokio-postgres has no replication mode, so this speaks the protocol itself. No
//! password ever reaches a log line or an error message.

pub mod base_backup;
pub mod channel_binding;
pub mod connection;
pub mod conninfo;
pub mod server_error;
pub mod tls;

pub use connection::ReplicationConnection;
pub use conninfo::ConnectTarget;
pub use server_error::ServerError;
