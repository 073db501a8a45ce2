//! Recovery planning, in one place: the recovery target (one type, from the command line to the
//! recovery settings), loading the planner's inputs from the repository, and the pure planner
//! (timelines, the stop record, windows), which does no I/O.
//!
//! * [`target`]: what recovery is asked to do. May import `pg/` only.
//! * [`planner`]: the pure planner. May import `pg/` and [`target`].
//! * [`inputs`], [`segment_events`]: what the planner reads from a stanza. May import `repo/`,
//!   `pg/`, `archive::walk_archived` (archived segments read back and checked) and the above.
//!
//! Above `archive/`, `backup/` and `restore/` (DESIGN §2): nothing below imports it except
//! `restore/`, which runs a restore (it plans before it writes anything, and writes the
//! target's recovery settings); nothing here imports `restore/`.

pub mod inputs;
pub mod planner;
pub mod segment_events;
pub mod target;
