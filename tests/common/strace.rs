//! Runs a program under Debian's `strace -f -y` and reads back the system calls it made, in
//! order, so tests can check what was fsynced, renamed and created, and when; optionally with a
//! fault injected (`-e inject=fsync:error=EIO:when=3`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The calls traced: what creating, writing, renaming and fsyncing files and directories uses.
const TRACED: &str = "trace=openat,write,pwrite64,fsync,fdatasync,rename,renameat,renameat2,\
                      link,linkat,mkdir,mkdirat,unlink,unlinkat,symlink,symlinkat";

/// One finished system call of a traced run.
#[derive(Clone, Debug)]
pub struct Syscall {
    pub pid: u32,
    pub name: String,
    /// The arguments as strace prints them, file descriptors decorated with their paths.
    pub args: String,
    /// What follows `= `: `0`, `3</path>`, `-1 EEXIST (File exists)`, or with ` (INJECTED)`.
    pub result: String,
}

impl Syscall {
    /// Whether the call succeeded.
    pub fn succeeded(&self) -> bool {
        !self.result.starts_with('-') && !self.result.contains("INJECTED")
    }

    /// The errno name it failed with (`EEXIST`), if it failed.
    pub fn errno(&self) -> Option<&str> {
        self.result
            .strip_prefix("-1 ")
            .and_then(|rest| rest.split_whitespace().next())
    }

    pub fn injected(&self) -> bool {
        self.result.contains("(INJECTED)")
    }

    /// The path of the first file descriptor argument (`fsync(3</a/b>)` → `/a/b`).
    pub fn fd_path(&self) -> Option<PathBuf> {
        let start = self.args.find('<')? + 1;
        let end = start + self.args[start..].find('>')?;
        Some(PathBuf::from(&self.args[start..end]))
    }

    /// The quoted string arguments (paths), in order.
    pub fn strings(&self) -> Vec<PathBuf> {
        self.args
            .split('"')
            .skip(1)
            .step_by(2)
            .map(PathBuf::from)
            .collect()
    }

    /// For a rename: (from, to).
    pub fn rename_paths(&self) -> Option<(PathBuf, PathBuf)> {
        let mut strings = self.strings().into_iter();
        Some((strings.next()?, strings.next()?))
    }

    pub fn is_fsync_of(&self, path: &Path) -> bool {
        matches!(self.name.as_str(), "fsync" | "fdatasync")
            && self.succeeded()
            && self.fd_path().as_deref() == Some(path)
    }
}

/// What a traced run did: its output and its calls.
pub struct Traced {
    pub output: Output,
    pub calls: Vec<Syscall>,
}

impl Traced {
    /// Index of the first call after `after` matching `wanted`.
    pub fn find_after(&self, after: usize, wanted: impl Fn(&Syscall) -> bool) -> Option<usize> {
        (after + 1..self.calls.len()).find(|&i| wanted(&self.calls[i]))
    }

    /// Index of the last call before `before` matching `wanted`.
    pub fn find_before(&self, before: usize, wanted: impl Fn(&Syscall) -> bool) -> Option<usize> {
        (0..before).rev().find(|&i| wanted(&self.calls[i]))
    }

    /// A readable listing of the calls, for failure messages.
    pub fn listing(&self) -> String {
        self.calls
            .iter()
            .map(|c| format!("{}({}) = {}", c.name, c.args, c.result))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs `command` (its program, arguments, environment changes and directory) under
/// `strace -f -y`, adding `extra` options such as `-e inject=…`. Fails the test when strace is
/// missing, rather than passing without having looked.
pub fn run(command: &Command, extra: &[&str], trace_file: &Path) -> Traced {
    let strace = Path::new("/usr/bin/strace");
    assert!(
        strace.exists(),
        "{} is missing: install Debian's strace (apt-get install strace; .ci/run does)",
        strace.display()
    );
    let mut traced = Command::new(strace);
    traced
        .args(["-f", "-y", "-qq", "-s", "4096", "-e", TRACED])
        .args(extra)
        .arg("-o")
        .arg(trace_file)
        .arg("--")
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => traced.env(key, value),
            None => traced.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        traced.current_dir(dir);
    }
    let output = traced.output().expect("run strace");
    let text = std::fs::read_to_string(trace_file).expect("read the strace output");
    Traced {
        output,
        calls: parse(&text),
    }
}

/// Parses `strace -f` output, joining calls that other threads' calls interrupted
/// (`<unfinished ...>` … `<... name resumed>`).
fn parse(text: &str) -> Vec<Syscall> {
    let mut unfinished: std::collections::HashMap<u32, String> = Default::default();
    let mut calls = Vec::new();
    for line in text.lines() {
        let Some((pid, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        let whole = if let Some(start) = rest.strip_suffix(" <unfinished ...>") {
            unfinished.insert(pid, start.to_owned());
            continue;
        } else if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some(start) = unfinished.remove(&pid) else {
                continue;
            };
            let tail = resumed.split_once("resumed>").map_or("", |(_, tail)| tail);
            format!("{start}{tail}")
        } else {
            rest.to_owned()
        };
        if let Some(call) = parse_call(pid, &whole) {
            calls.push(call);
        }
    }
    calls
}

/// `name(args) = result` → a call. strace pads short calls with spaces before the `=`.
fn parse_call(pid: u32, line: &str) -> Option<Syscall> {
    let open = line.find('(')?;
    let equals = line.rfind(" = ")?;
    let close = line[..equals].rfind(')')?;
    Some(Syscall {
        pid,
        name: line[..open].to_owned(),
        args: line[open + 1..close].to_owned(),
        result: line[equals + 3..].trim().to_owned(),
    })
}
