//! What a new bucket snapshot must read, decided from the listing and the previous snapshot's
//! objects alone — no request per object: an object listed with the size, ETag and time it had
//! is kept as it was; one with the same size and ETag but a newer time had only its headers
//! replaced (a copy onto itself), so only they are read again; anything else is read whole.
//! Listed by versions, the version decides first: the same version is the same object; another
//! version with the same size and ETag has only its headers read. Keys the previous snapshot had
//! and the listing lacks were deleted.

use std::collections::BTreeMap;

use super::client::Listed;
use super::manifest::ObjectEntry;

/// What to do for one listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Unchanged since the previous snapshot: its entry as it was.
    Keep(ObjectEntry),
    /// Same content, newer time: its headers read again, its chunks kept.
    Refresh {
        listed: Listed,
        previous: ObjectEntry,
    },
    /// New, or its content may have changed: read and stored.
    Fetch {
        listed: Listed,
        previous: Option<ObjectEntry>,
    },
}

/// The steps, in key order, and the keys deleted since the previous snapshot.
#[derive(Debug, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub deleted: Vec<String>,
}

/// Plans a snapshot of `listed` after one that held `previous`.
pub fn plan(listed: Vec<Listed>, previous: Vec<ObjectEntry>) -> Plan {
    let mut before: BTreeMap<String, ObjectEntry> =
        previous.into_iter().map(|e| (e.key.clone(), e)).collect();
    let steps = listed
        .into_iter()
        .map(|listed| match before.remove(&listed.key) {
            None => Step::Fetch {
                listed,
                previous: None,
            },
            Some(previous) => step_for(listed, previous),
        })
        .collect();
    Plan {
        steps,
        deleted: before.into_keys().collect(),
    }
}

fn step_for(listed: Listed, previous: ObjectEntry) -> Step {
    if let (Some(now), Some(then)) = (&listed.version_id, &previous.version_id) {
        return if now == then {
            Step::Keep(previous)
        } else if listed.size == previous.size
            && listed.etag.is_some()
            && listed.etag == previous.etag
        {
            Step::Refresh { listed, previous }
        } else {
            Step::Fetch {
                listed,
                previous: Some(previous),
            }
        };
    }
    let same_size = listed.size == previous.size;
    let same_etag = match (&listed.etag, &previous.etag) {
        (Some(now), Some(then)) => Some(now == then),
        // A server that lists no ETag (s3s-fs): the size and time decide.
        _ => None,
    };
    let same_time =
        listed.last_modified.is_some() && listed.last_modified == previous.last_modified;
    match (same_size, same_etag, same_time) {
        // A snapshot taken before the bucket was listed by versions learns the version it has.
        (true, Some(true) | None, true) => Step::Keep(ObjectEntry {
            version_id: listed.version_id,
            ..previous
        }),
        (true, Some(true), false) => Step::Refresh { listed, previous },
        _ => Step::Fetch {
            listed,
            previous: Some(previous),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(key: &str, size: u64, etag: Option<&str>, time: &str) -> Listed {
        Listed {
            key: key.into(),
            size,
            etag: etag.map(str::to_owned),
            last_modified: Some(time.into()),
            modified_secs: None,
            version_id: None,
        }
    }

    fn entry(key: &str, size: u64, etag: Option<&str>, time: &str) -> ObjectEntry {
        ObjectEntry {
            key: key.into(),
            size,
            etag: etag.map(str::to_owned),
            version_id: None,
            last_modified: Some(time.into()),
            headers: Default::default(),
            chunks: Vec::new(),
        }
    }

    fn kinds(plan: &Plan) -> Vec<(&str, &str)> {
        plan.steps
            .iter()
            .map(|step| match step {
                Step::Keep(e) => (e.key.as_str(), "keep"),
                Step::Refresh { listed, .. } => (listed.key.as_str(), "refresh"),
                Step::Fetch { listed, previous } => (
                    listed.key.as_str(),
                    if previous.is_some() {
                        "fetch changed"
                    } else {
                        "fetch new"
                    },
                ),
            })
            .collect()
    }

    #[test]
    fn each_kind_of_change_gets_its_step() {
        let previous = vec![
            entry("a", 1, Some("e1"), "t1"),
            entry("b", 2, Some("e2"), "t1"),
            entry("c", 3, Some("e3"), "t1"),
            entry("d", 4, Some("e4"), "t1"),
            entry("e", 5, Some("e5"), "t1"),
            entry("gone", 6, Some("e6"), "t1"),
        ];
        let now = vec![
            listed("a", 1, Some("e1"), "t1"),
            // The same size, other bytes: the ETag tells.
            listed("b", 2, Some("x2"), "t2"),
            // Headers replaced by a copy onto itself.
            listed("c", 3, Some("e3"), "t2"),
            listed("d", 40, Some("e4"), "t1"),
            // Rewritten with the same bytes: its headers are read again, its chunks kept.
            listed("e", 5, Some("e5"), "t2"),
            listed("new", 7, Some("e7"), "t2"),
        ];
        let plan = plan(now, previous);
        assert_eq!(
            kinds(&plan),
            vec![
                ("a", "keep"),
                ("b", "fetch changed"),
                ("c", "refresh"),
                ("d", "fetch changed"),
                ("e", "refresh"),
                ("new", "fetch new"),
            ]
        );
        assert_eq!(plan.deleted, vec!["gone".to_owned()]);
    }

    #[test]
    fn without_listed_etags_the_size_and_time_decide() {
        let previous = vec![
            entry("a", 1, Some("e1"), "t1"),
            entry("b", 2, Some("e2"), "t1"),
        ];
        let now = vec![listed("a", 1, None, "t1"), listed("b", 2, None, "t2")];
        assert_eq!(
            kinds(&plan(now, previous)),
            vec![("a", "keep"), ("b", "fetch changed")]
        );
    }

    #[test]
    fn an_object_listed_without_a_time_is_never_kept_unseen() {
        let previous = vec![
            entry("a", 1, Some("e1"), "t1"),
            entry("b", 2, Some("e2"), "t1"),
        ];
        let mut a = listed("a", 1, Some("e1"), "t1");
        a.last_modified = None;
        let mut b = listed("b", 2, None, "t1");
        b.last_modified = None;
        assert_eq!(
            kinds(&plan(vec![a, b], previous)),
            vec![("a", "refresh"), ("b", "fetch changed")]
        );
    }

    #[test]
    fn listed_by_versions_the_version_decides_first() {
        let versioned = |mut e: ObjectEntry, v: &str| {
            e.version_id = Some(v.into());
            e
        };
        let at = |mut l: Listed, v: &str| {
            l.version_id = Some(v.into());
            l
        };
        let previous = vec![
            versioned(entry("a", 1, Some("e1"), "t1"), "v1"),
            versioned(entry("b", 2, Some("e2"), "t1"), "v1"),
            versioned(entry("c", 3, Some("e3"), "t1"), "v1"),
            // Taken before the bucket was listed by versions.
            entry("d", 4, Some("e4"), "t1"),
        ];
        let now = vec![
            // The same version, whatever its listed time says.
            at(listed("a", 1, Some("e1"), "t9"), "v1"),
            // A new version of the same bytes, within the same second: its headers read again.
            at(listed("b", 2, Some("e2"), "t1"), "v2"),
            at(listed("c", 3, Some("x3"), "t1"), "v2"),
            at(listed("d", 4, Some("e4"), "t1"), "v7"),
        ];
        let plan = plan(now, previous);
        assert_eq!(
            kinds(&plan),
            vec![
                ("a", "keep"),
                ("b", "refresh"),
                ("c", "fetch changed"),
                ("d", "keep")
            ]
        );
        let Step::Keep(d) = &plan.steps[3] else {
            unreachable!()
        };
        assert_eq!(d.version_id.as_deref(), Some("v7"));
    }
}
