//! The other stateful parts of a deployment, backed up into the same repository as snapshots:
//! what every kind of source shares (the sink a snapshot streams into, reading a stored stream
//! back), and each kind with its own protocol (`redis`).

pub mod reader;
pub mod redis;
pub mod sink;
