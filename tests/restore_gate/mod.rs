//! A gate in `restore_command`: after each file `tidemark-restore` restored, PostgreSQL's
//! recovery waits until the test lets it go on. A test then acts at exact points of a real
//! recovery (kill the fetcher, stop the repository, hold replay still) instead of racing it.
//!
//! The gate is a shell script run after a successful `tidemark-restore` (`&&`, so "not
//! archived" and failures pass straight through with their exit codes): it announces the file
//! as `arrived.<its pid>` in its directory and waits for `go.<its pid>`, at most 10 minutes.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use testkit::Lab;
use testkit::give_to_owner;

/// The gate of one lab.
pub struct Gate {
    dir: PathBuf,
    script: PathBuf,
}

/// A call held at the gate after restoring `file_name`.
#[derive(Debug)]
pub struct Arrival {
    pub file_name: String,
    token: String,
}

impl Gate {
    pub fn new(lab: &Lab) -> Gate {
        let dir = lab.tmp.path().join("gate");
        fs::create_dir(&dir).unwrap();
        give_to_owner(&dir).unwrap();
        let script = lab.bin_dir.join("restore-gate");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 dir='{}'\n\
                 echo \"$1\" > \"$dir/.arrived.$$\" && mv \"$dir/.arrived.$$\" \"$dir/arrived.$$\"\n\
                 i=0\n\
                 while [ ! -e \"$dir/go.$$\" ] && [ $i -lt 60000 ]; do sleep 0.01; i=$((i+1)); done\n\
                 rm -f \"$dir/go.$$\" \"$dir/arrived.$$\"\n",
                dir.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        Gate { dir, script }
    }

    /// The lab's `restore_command` with the gate after each file restored.
    pub fn restore_command(&self, lab: &Lab) -> String {
        format!("{} && {} %f", lab.restore_command(), self.script.display())
    }

    /// The next call held at the gate, waiting for one at most `patience`; `None` if none came.
    pub fn next_arrival(&self, patience: Duration) -> Option<Arrival> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(arrival) = self.held() {
                return Some(arrival);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A call held at the gate now, not yet let go.
    fn held(&self) -> Option<Arrival> {
        for entry in fs::read_dir(&self.dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let Some(token) = name.strip_prefix("arrived.") else {
                continue;
            };
            if self.dir.join(format!("go.{token}")).exists() {
                continue;
            }
            let file_name = fs::read_to_string(self.dir.join(&name)).ok()?;
            return Some(Arrival {
                file_name: file_name.trim().to_owned(),
                token: token.to_owned(),
            });
        }
        None
    }

    /// Lets the call go on.
    pub fn release(&self, arrival: &Arrival) {
        fs::write(self.dir.join(format!("go.{}", arrival.token)), b"").unwrap();
    }
}
