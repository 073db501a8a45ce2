//! An `strace -f -y -s 4096` log read back as the file-system events that decide durability:
//! names added to or removed from a directory, files opened for writing, renames and fsyncs.
//!
//! Each event keeps the log positions (line numbers) where its system call started and where it
//! returned; a call interrupted by another thread's (`<unfinished ...>`, `<... resumed>`) spans
//! several lines. "B after A" then means B started after A returned, which is what makes an
//! fsync cover a change: an fsync that was already under way when a name was added may not.
//! Only calls that succeeded are kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

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

/// The events of a whole log, in the order the calls returned.
pub fn read(log: &str) -> Vec<Event> {
    let mut unfinished: HashMap<&str, (String, usize)> = HashMap::new();
    let mut events = Vec::new();
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
        if let Some(effects) = effects_of(&call) {
            events.extend(effects.into_iter().map(|effect| Event {
                effect,
                started,
                ended: line_number,
            }));
        }
    }
    events
}

/// The effects of one complete call line, `name(args) = result`; none if it failed or does not
/// change or sync anything.
fn effects_of(call: &str) -> Option<Vec<Effect>> {
    let (name, rest) = call.split_once('(')?;
    let (arguments, result) = split_result(rest)?;
    if result.starts_with('-') || result.starts_with('?') {
        return None;
    }
    let args = split_arguments(arguments);
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

/// Whether `path` is `root` or lies under it.
pub fn within(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

#[test]
fn calls_interrupted_by_other_threads_span_their_lines() {
    let log = "\
7 openat(AT_FDCWD</w>, \"d/f\", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 3</w/d/f>
8 fsync(4</w/d> <unfinished ...>
7 mkdir(\"/w/e\", 0777) = 0
8 <... fsync resumed>)       = 0
7 renameat2(AT_FDCWD</w>, \"/w/d/.t\", AT_FDCWD</w>, \"/w/d/g\", RENAME_NOREPLACE) = 0
7 unlink(\"/w/gone\") = -1 ENOENT (No such file or directory)
7 +++ exited with 0 +++
";
    let events = read(log);
    let effects: Vec<(&Effect, usize, usize)> = events
        .iter()
        .map(|e| (&e.effect, e.started, e.ended))
        .collect();
    let p = PathBuf::from;
    assert_eq!(
        effects,
        vec![
            (&Effect::Added(p("/w/d/f")), 0, 0),
            (&Effect::OpenedForWriting(p("/w/d/f")), 0, 0),
            (&Effect::Added(p("/w/e")), 2, 2),
            (&Effect::Fsynced(p("/w/d")), 1, 3),
            (
                &Effect::Renamed {
                    from: p("/w/d/.t"),
                    to: p("/w/d/g")
                },
                4,
                4
            ),
        ]
    );
}
