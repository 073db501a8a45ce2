//! Runs a program under Debian's `strace -f -y` and reads back the system calls it made, in
//! the order they returned, so tests can check what was written, fsynced, renamed and created,
//! and when; optionally with a fault injected (`-e inject=fsync:error=EIO:when=3`).
//!
//! Each call keeps the log lines where it started and where it returned: a call interrupted by
//! another thread's (`<unfinished ...>`, `<... resumed>`) spans several. "B after A" then means B
//! started after A returned, which is what makes an fsync cover a change: an fsync that was
//! already under way when a name was added may not.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where the tests expect Debian's strace.
pub const STRACE: &str = "/usr/bin/strace";

/// The calls traced: every call that names a file, writes, and fsyncs.
const TRACED: &str = "trace=%file,write,pwrite64,fsync,fdatasync";

/// One finished system call of a traced run.
#[derive(Clone, Debug)]
pub struct Syscall {
    pub pid: u32,
    pub name: String,
    /// The arguments as strace prints them, file descriptors decorated with their paths.
    pub args: String,
    /// What follows `= `: `0`, `3</path>`, `-1 EEXIST (File exists)`, or with ` (INJECTED)`.
    pub result: String,
    /// The log lines where the call started and where it returned.
    pub started: usize,
    pub ended: usize,
}

impl Syscall {
    /// Whether the call succeeded.
    pub fn succeeded(&self) -> bool {
        !self.result.starts_with('-')
            && !self.result.starts_with('?')
            && !self.result.contains("INJECTED")
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

    /// The arguments, split at top-level commas.
    pub fn arguments(&self) -> Vec<String> {
        split_arguments(&self.args)
    }

    /// The path of the first argument's decorated file descriptor (`fsync(3</a/b>)` → `/a/b`).
    pub fn fd_path(&self) -> Option<PathBuf> {
        decorated_path(self.arguments().first()?)
    }

    /// For a rename, whether it succeeded or not: (from, to), resolved against the
    /// directories their descriptors name.
    pub fn rename_paths(&self) -> Option<(PathBuf, PathBuf)> {
        match effects_of(&self.name, &self.arguments(), "0")?
            .into_iter()
            .next()?
        {
            Effect::Renamed { from, to } => Some((from, to)),
            _ => None,
        }
    }

    /// For a `mkdir`/`mkdirat`: the directory it made.
    pub fn made_dir(&self) -> Option<PathBuf> {
        if !self.name.starts_with("mkdir") {
            return None;
        }
        match self.effects().into_iter().next()? {
            Effect::Added(dir) => Some(dir),
            _ => None,
        }
    }

    pub fn is_fsync_of(&self, path: &Path) -> bool {
        matches!(self.name.as_str(), "fsync" | "fdatasync")
            && self.succeeded()
            && self.fd_path().as_deref() == Some(path)
    }

    /// What the call did to the file system; nothing if it failed or changes and syncs
    /// nothing.
    pub fn effects(&self) -> Vec<Effect> {
        if !self.succeeded() {
            return Vec::new();
        }
        effects_of(&self.name, &self.arguments(), &self.result).unwrap_or_default()
    }
}

/// What a system call did to the file system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A name appeared in its directory: a file created, a directory made, a link made.
    Added(PathBuf),
    /// A name left its directory.
    Removed(PathBuf),
    /// The name `from` now names what it named, under `to`.
    Renamed { from: PathBuf, to: PathBuf },
    /// A file was opened for writing (its content may change until an fsync after this).
    OpenedForWriting(PathBuf),
    /// A file or directory was fsynced (or fdatasynced).
    Fsynced(PathBuf),
}

/// One effect and the log lines where its call started and returned.
#[derive(Clone, Debug)]
pub struct Event {
    pub effect: Effect,
    pub started: usize,
    pub ended: usize,
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

    /// Every effect of every call, in the order the calls returned.
    pub fn events(&self) -> Vec<Event> {
        events(&self.calls)
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

/// Every effect of `calls`, in order.
pub fn events(calls: &[Syscall]) -> Vec<Event> {
    calls
        .iter()
        .flat_map(|call| {
            call.effects().into_iter().map(|effect| Event {
                effect,
                started: call.started,
                ended: call.ended,
            })
        })
        .collect()
}

/// Runs `command` (its program, arguments, environment changes and directory) under
/// `strace -f -y`, adding `extra` options such as `-e inject=…`, the log in `trace_file`. Fails
/// the test when strace is missing, rather than passing without having looked.
pub fn run(command: &Command, extra: &[&str], trace_file: &Path) -> Traced {
    assert!(
        Path::new(STRACE).is_file(),
        "{STRACE} is missing: install Debian's strace (apt-get install strace; .ci/run does)"
    );
    let mut traced = Command::new(STRACE);
    traced
        .args([
            "-f",
            "-y",
            "-qq",
            "-s",
            "4096",
            "-e",
            "signal=none",
            "-e",
            TRACED,
        ])
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
        calls: read(&text),
    }
}

/// The calls of a whole `strace -f` log, in the order they returned, with the calls that other
/// threads' interrupted joined again.
pub fn read(log: &str) -> Vec<Syscall> {
    let mut unfinished: HashMap<&str, (String, usize)> = HashMap::new();
    let mut calls = Vec::new();
    for (line_number, line) in log.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let (call, started) = if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            let Some((head, started)) = unfinished.remove(pid) else {
                continue;
            };
            (format!("{head}{tail}"), started)
        } else if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            unfinished.insert(pid, (head.to_owned(), line_number));
            continue;
        } else {
            (rest.to_owned(), line_number)
        };
        let (Ok(pid), Some((name, rest))) = (pid.parse(), call.split_once('(')) else {
            continue;
        };
        let Some((args, result)) = split_result(rest) else {
            continue;
        };
        calls.push(Syscall {
            pid,
            name: name.to_owned(),
            args: args.to_owned(),
            result: result.trim().to_owned(),
            started,
            ended: line_number,
        });
    }
    calls
}

/// The effects of a call that succeeded; none if it does not change or sync anything.
fn effects_of(name: &str, args: &[String], result: &str) -> Option<Vec<Effect>> {
    let path = |dir: Option<&str>, arg: &str| resolve(dir, arg);
    let opened = |dir: Option<&str>, name_arg: &str, flags: &str| {
        let mut effects = Vec::new();
        let file = decorated_path(result).unwrap_or_else(|| path(dir, name_arg));
        if flags.contains("O_CREAT") {
            effects.push(Effect::Added(file.clone()));
        }
        if flags.contains("O_WRONLY") || flags.contains("O_RDWR") {
            effects.push(Effect::OpenedForWriting(file));
        }
        effects
    };
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    Some(match name {
        "open" => opened(None, arg(0), arg(1)),
        "openat" | "openat2" => opened(Some(arg(0)), arg(1), arg(2)),
        "creat" => {
            let file = path(None, arg(0));
            vec![Effect::Added(file.clone()), Effect::OpenedForWriting(file)]
        }
        "mkdir" => vec![Effect::Added(path(None, arg(0)))],
        "mkdirat" => vec![Effect::Added(path(Some(arg(0)), arg(1)))],
        "symlink" | "link" => vec![Effect::Added(path(None, arg(1)))],
        "symlinkat" => vec![Effect::Added(path(Some(arg(1)), arg(2)))],
        "linkat" => vec![Effect::Added(path(Some(arg(2)), arg(3)))],
        "rename" => vec![Effect::Renamed {
            from: path(None, arg(0)),
            to: path(None, arg(1)),
        }],
        "renameat" | "renameat2" => vec![Effect::Renamed {
            from: path(Some(arg(0)), arg(1)),
            to: path(Some(arg(2)), arg(3)),
        }],
        "unlink" | "rmdir" => vec![Effect::Removed(path(None, arg(0)))],
        "unlinkat" => vec![Effect::Removed(path(Some(arg(0)), arg(1)))],
        "fsync" | "fdatasync" => vec![Effect::Fsynced(decorated_path(arg(0))?)],
        _ => return None,
    })
}

/// `args) = result`, where strace may pad before `=` to align results.
fn split_result(rest: &str) -> Option<(&str, &str)> {
    rest.rmatch_indices(" = ").find_map(|(at, _)| {
        let arguments = rest[..at].trim_end().strip_suffix(')')?;
        Some((arguments, &rest[at + 3..]))
    })
}

/// The path of a name argument, relative to the directory its decorated descriptor
/// (`AT_FDCWD</cwd>`, `5</dir>`) names when it is not absolute.
fn resolve(dir: Option<&str>, quoted: &str) -> PathBuf {
    let name = PathBuf::from(unquote(quoted));
    match dir.and_then(decorated_path) {
        Some(base) if name.is_relative() => base.join(name),
        _ => name,
    }
}

/// The path `-y` prints after a descriptor: `5</tmp/x>` gives `/tmp/x`.
fn decorated_path(text: &str) -> Option<PathBuf> {
    let start = text.find('<')?;
    let end = text.rfind('>')?;
    (end > start).then(|| PathBuf::from(unquote(&text[start + 1..end])))
}

/// A string argument without its quotes and escapes (the ones strace uses in paths).
fn unquote(text: &str) -> String {
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The top-level arguments of a call, split at commas outside quotes, `<...>`, `{...}` and
/// `[...]`.
fn split_arguments(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        if quoted {
            current.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '<' | '{' | '[' => depth += 1,
            '>' | '}' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                args.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        args.push(current.trim().to_owned());
    }
    args
}
