//! The other stateful parts of a deployment, backed up into the same repository as snapshots:
//! each kind of source (`redis`) with its own protocol, beside what every kind shares.

pub mod redis;
