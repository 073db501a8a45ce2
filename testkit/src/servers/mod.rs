//! The servers the tests, the benches and the demo run against, each private to its caller
//! (a socket in its own directory, or a free loopback port) and stopped when dropped:
//! PostgreSQL (`postgres`), the S3-compatible `s3s-fs` (`s3s_fs`), moto's S3 server for object
//! versions (`moto`), Redis (`redis`) and the Azure Storage emulator (`azurite`). Other servers a
//! backend or source needs belong beside them, one module each.

pub mod azurite;
pub mod moto;
pub mod postgres;
pub mod redis;
pub mod s3s_fs;
