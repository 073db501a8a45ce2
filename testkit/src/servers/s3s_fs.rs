//! An S3-compatible server for tests and benches: `s3s-fs` (install it with
//! `cargo install s3s-fs@0.14.1 --features binary --locked`; `.ci/run` does), started on a free
//! loopback port with its own directory and keys. A missing `s3s-fs` fails the test.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const ACCESS_KEY: &str = "tidemark-test";
pub const SECRET_KEY: &str = "tidemark-test-secret";
pub const BUCKET: &str = "archive";

/// An `s3s-fs` process, killed with its directory when dropped.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    root: TempDir,
}

impl S3Server {
    /// The directory `s3s-fs` serves: one subdirectory per bucket, and its own files beside them.
    pub fn data_dir(&self) -> &Path {
        self.root.path()
    }

    /// The server's traces of multipart uploads not completed nor aborted, by file name. s3s-fs
    /// 0.14.1 has no ListMultipartUploads (it answers 501 NotImplemented), so this looks where
    /// it keeps them, beside the buckets: `.upload-ID.json` for each open upload,
    /// `.upload_id-ID.part-N` for each part stored, and `.bucket-B.object-K.upload-ID.metadata.json`
    /// for its attributes. Completing or aborting an upload removes all three.
    pub fn unfinished_uploads(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.data_dir())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".upload") || name.contains(".upload-"))
            .collect();
        names.sort();
        names
    }

    /// How many parts of unfinished uploads the server has stored.
    pub fn stored_parts(&self) -> usize {
        self.unfinished_uploads()
            .iter()
            .filter(|name| name.starts_with(".upload_id-") && name.contains(".part-"))
            .count()
    }

    /// Stops the server, keeping its directory: the bucket no longer answers.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Serves the same directory again, on a new free port (`endpoint` says which).
    pub fn restart(&mut self) {
        self.stop();
        let (child, endpoint) = spawn(self.root.path());
        self.child = child;
        self.endpoint = endpoint;
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `s3s-fs` program: on PATH, else where `cargo install` puts it.
fn s3s_fs() -> PathBuf {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("s3s-fs"))
                .collect()
        })
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    on_path
        .into_iter()
        .chain(cargo_home.map(|home| home.join("bin/s3s-fs")))
        .find(|path| path.is_file())
        .expect(
            "s3s-fs is not installed: run `cargo install s3s-fs@0.14.1 --features binary --locked` (.ci/run does)",
        )
}

/// A loopback port nothing listens on: bound, then let go.
pub fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `s3s-fs` on a free loopback port with an empty bucket.
pub fn start_server() -> S3Server {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join(BUCKET)).unwrap();
    let (child, endpoint) = spawn(root.path());
    S3Server {
        child,
        endpoint,
        root,
    }
}

/// Runs `s3s-fs` serving `root` on a free loopback port, once it listens; returns it and its
/// endpoint.
fn spawn(root: &Path) -> (Child, String) {
    let port = unused_port();
    let child = Command::new(s3s_fs())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3s-fs");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, format!("http://127.0.0.1:{port}"))
}
