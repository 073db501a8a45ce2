//! Tidemark's test kit: throwaway servers (PostgreSQL, s3s-fs, Redis), the lab that runs
//! Tidemark's programs against them the way PostgreSQL would, workloads whose committed state is
//! known (PostgreSQL's and Redis's), the steps the end-to-end tests share, and `tidemark demo`,
//! which walks through them. It does not use Tidemark's library (the `tidemark` package depends
//! on it for the demo): it drives the built programs only.

pub mod demo;
pub mod http_relay;
pub mod lab;
pub mod owner;
pub mod pgbench;
pub mod processes;
pub mod recovery;
pub mod redis_relay;
pub mod redis_workload;
pub mod servers;
pub mod steps;
pub mod workload;

pub use lab::{Lab, TidemarkBinaries};
pub use owner::{SharedTempDir, give_to_owner, owner_command, run_as_owner};
pub use servers::postgres::{PgBinaries, SUPPORTED_MAJORS, ThrowawayCluster};
pub use servers::redis::{RedisOptions, RedisServer};
pub use steps::switch_and_wait_for_archive;
