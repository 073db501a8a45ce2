//! A small tmpfs for one test, owned by the cluster owner and unmounted when dropped: a real
//! file system that fills up, where a test needs one. Mounting needs root, as the tests run;
//! a mount that fails fails the test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::give_to_owner;

pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes at `path` (created if missing), mode 0700.
    pub fn mount(path: &Path, size: u64) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount a tmpfs at {} ({status}): the tests must run as root",
            path.display()
        );
        give_to_owner(path).unwrap();
        Tmpfs {
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names in its top directory.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still has a file open in it; it goes once that is closed.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}
