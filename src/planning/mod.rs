//! Recovery planning: the recovery target, loading the planner's inputs from the repository,
//! and the pure planner.

pub mod inputs;
pub mod planner;
pub mod segment_events;
pub mod target;
